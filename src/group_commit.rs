//! Group commit (组提交): requests that want to write within a moment are
//! collected and written by one transaction, as databases do with their log.
//! On a flash sale's hot stock row, Postgres serialises every writer on the row
//! lock and every transaction pays a commit; one transaction for a batch of
//! winners takes their units with one version-checked update, inserts their
//! orders and commits once (docs/design.md §2.3). Orders on many products
//! share one queue, so that they share commits too.
//!
//! This module is only the meeting point, independent of what is written
//! (the orders' use of it, and the batch's transaction, are
//! `flows/orders/batch.rs`): the first request to find no batch being led
//! starts a leader task (spawned, so a client that goes away cannot strand the
//! others), which waits `window`, takes up to `max` waiting items, runs them
//! with the function given at construction, hands each its own result, and
//! goes on until the queue is empty. While one batch runs, the next one gathers.

use std::collections::VecDeque;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::FutureExt;
use parking_lot::Mutex;
use tokio::sync::oneshot;

/// Runs one batch: one result per item, in the items' order.
pub type RunBatch<T, R> =
    Arc<dyn Fn(Vec<T>) -> Pin<Box<dyn Future<Output = Vec<R>> + Send>> + Send + Sync>;

/// One queue of items waiting to be written together, and how a batch runs.
pub struct GroupCommit<T, R> {
    pace: Pace,
    run: RunBatch<T, R>,
    queue: Arc<Mutex<Queue<T, R>>>,
    totals: Arc<Totals>,
}

/// Batches run and items in them, since start.
#[derive(Debug, Default)]
struct Totals {
    batches: AtomicU64,
    items: AtomicU64,
}

impl<T, R> std::fmt::Debug for GroupCommit<T, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field("window", &self.pace.window)
            .field("max", &self.pace.max)
            .finish()
    }
}

struct Queue<T, R> {
    waiting: VecDeque<Waiting<T, R>>,
    /// A leader task is running (invariant: waiting ⇒ leading).
    leading: bool,
}

struct Waiting<T, R> {
    item: T,
    answer: oneshot::Sender<R>,
}

impl<T: Send + 'static, R: Send + 'static> GroupCommit<T, R> {
    /// `max` items per batch (at least 1), gathered for `window` before each,
    /// each batch run by `run`.
    pub fn new(window: Duration, max: usize, run: RunBatch<T, R>) -> Self {
        Self {
            pace: Pace {
                window,
                max: max.max(1),
            },
            run,
            queue: Arc::new(Mutex::new(Queue {
                waiting: VecDeque::new(),
                leading: false,
            })),
            totals: Arc::default(),
        }
    }

    /// (batches run, items in them) since start.
    pub fn totals(&self) -> (u64, u64) {
        (
            self.totals.batches.load(Ordering::Relaxed),
            self.totals.items.load(Ordering::Relaxed),
        )
    }

    /// Queues `item` and waits for its result (`None` only if its batch
    /// panicked: nothing of it was committed).
    pub async fn submit(&self, item: T) -> Option<R> {
        let (answer, result) = oneshot::channel();
        let start_leader = {
            let mut queue = self.queue.lock();
            queue.waiting.push_back(Waiting { item, answer });
            !std::mem::replace(&mut queue.leading, true)
        };
        if start_leader {
            let leader = Leader {
                queue: self.queue.clone(),
                pace: self.pace,
                totals: self.totals.clone(),
                run: self.run.clone(),
            };
            tokio::spawn(leader.lead());
        }
        result.await.ok()
    }
}

/// How a leader gathers: the window before each batch, the largest batch.
#[derive(Debug, Clone, Copy)]
struct Pace {
    window: Duration,
    max: usize,
}

/// The task that runs batch after batch until nobody waits.
struct Leader<T, R> {
    queue: Arc<Mutex<Queue<T, R>>>,
    pace: Pace,
    totals: Arc<Totals>,
    run: RunBatch<T, R>,
}

impl<T, R> Leader<T, R> {
    async fn lead(self) {
        loop {
            if !self.pace.window.is_zero() {
                tokio::time::sleep(self.pace.window).await;
            }
            let Some(batch) = self.next_batch() else {
                return;
            };
            self.totals.batches.fetch_add(1, Ordering::Relaxed);
            self.totals
                .items
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            let (items, answers): (Vec<T>, Vec<oneshot::Sender<R>>) = batch
                .into_iter()
                .map(|waiting| (waiting.item, waiting.answer))
                .unzip();
            // A panic must not strand the queue: the batch's callers get `None`.
            let Ok(results) = AssertUnwindSafe((self.run)(items)).catch_unwind().await else {
                tracing::error!(
                    "a group-commit batch panicked; its requests are answered as failed"
                );
                continue;
            };
            for (answer, result) in answers.into_iter().zip(results) {
                // The caller may be gone (client disconnected); its result was committed anyway.
                let _ = answer.send(result);
            }
        }
    }

    /// Up to `max` waiting items; `None` (and no longer leading) when none wait.
    fn next_batch(&self) -> Option<Vec<Waiting<T, R>>> {
        let mut queue = self.queue.lock();
        if queue.waiting.is_empty() {
            queue.leading = false;
            return None;
        }
        let take = queue.waiting.len().min(self.pace.max);
        Some(queue.waiting.drain(..take).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn summing(batches: Arc<Mutex<Vec<usize>>>) -> RunBatch<u32, u32> {
        Arc::new(move |items: Vec<u32>| {
            let batches = batches.clone();
            Box::pin(async move {
                batches.lock().push(items.len());
                tokio::time::sleep(Duration::from_millis(5)).await;
                items.into_iter().map(|item| item * 10).collect()
            })
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_item_gets_its_own_result_and_batches_stay_within_max() {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let commit = Arc::new(GroupCommit::new(
            Duration::from_millis(1),
            8,
            summing(batches.clone()),
        ));
        let tasks: Vec<_> = (0..100u32)
            .map(|item| {
                let commit = commit.clone();
                tokio::spawn(async move { (item, commit.submit(item).await) })
            })
            .collect();
        for task in tasks {
            let (item, result) = task.await.expect("task");
            assert_eq!(result, Some(item * 10));
        }
        let batches = batches.lock();
        assert_eq!(batches.iter().sum::<usize>(), 100);
        assert!(batches.iter().all(|size| *size <= 8), "{batches:?}");
        assert!(batches.len() < 100, "requests were grouped: {batches:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_batch_answers_none_and_the_queue_goes_on() {
        let calls = Arc::new(AtomicUsize::new(0));
        let run: RunBatch<u32, u32> = {
            let calls = calls.clone();
            Arc::new(move |items: Vec<u32>| {
                let first = calls.fetch_add(1, Ordering::SeqCst) == 0;
                Box::pin(async move {
                    assert!(!first, "the first batch fails");
                    items
                })
            })
        };
        let commit = GroupCommit::new(Duration::ZERO, 4, run);
        assert_eq!(commit.submit(5).await, None);
        assert_eq!(commit.submit(6).await, Some(6));
    }
}
