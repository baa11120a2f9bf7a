//! One deadline per request for dependency work (`REQUEST_DEADLINE_MS`,
//! docs/reliability.md "One deadline per request").
//!
//! **What it prevents**: each wait on a dependency is bounded on its own (a
//! pool acquire by `DB_ACQUIRE_TIMEOUT_MS`, a Redis command by
//! `REDIS_COMMAND_TIMEOUT_MS`), but a request can wait several times in a
//! row — during a database outage an order queued behind a group-commit
//! batch that waits its 2 s acquire, then waits its own batch's 2 s — and the
//! client sees 4 to 6 s instead of the promised bound.
//!
//! **How**: the API's requests (not the admin's and the lab's, which run long
//! on purpose) carry a deadline from their arrival. Deliberate waits look at
//! it and end before it with their own answer (a loser's wait for orders
//! being placed answers "sold out for now"); whatever still waits when it
//! passes is dropped — exactly as when the client goes away, which every
//! defense is built for — and the client gets 503 `dependency_unavailable`
//! with `Retry-After`, naming the dependency the request was waiting on.
//! Nothing is stored with the key, so the retry runs again. The middleware
//! is `routes::deadline`.

use std::cell::Cell;
use std::time::Duration;

use tokio::time::Instant;

/// A request's deadline, and the dependency it is waiting on now.
struct RequestDeadline {
    until: Instant,
    waiting_on: Cell<&'static str>,
}

tokio::task_local! {
    static DEADLINE: RequestDeadline;
}

/// What a request waits on when no key-store command is running: the
/// database (a pool acquire, a statement, a group-commit batch).
const DATABASE: &str = "database";

/// When the current request's deadline passes (`None`: no deadline here —
/// a background job, an admin or lab request, or deadlines off).
pub fn until() -> Option<Instant> {
    DEADLINE.try_with(|deadline| deadline.until).ok()
}

/// Marks the current request as waiting on `dependency` until
/// [`WaitingOn::done`] (the key store's bounded connection marks `"redis"`).
/// A wait cut off by the deadline never reaches `done`: the mark names it.
pub fn waiting_on(dependency: &'static str) -> WaitingOn {
    let _ = DEADLINE.try_with(|deadline| deadline.waiting_on.set(dependency));
    WaitingOn
}

/// A [`waiting_on`] mark, ended by [`WaitingOn::done`].
#[derive(Debug)]
#[must_use = "call done() when the wait is over"]
pub struct WaitingOn;

impl WaitingOn {
    /// The wait is over: the request waits on the database again, if anything.
    pub fn done(self) {
        let _ = DEADLINE.try_with(|deadline| deadline.waiting_on.set(DATABASE));
    }
}

/// Runs `work` under a deadline `bound` from now; `Err(dependency)` names
/// what it was waiting on when the deadline passed.
pub async fn within<F: Future>(bound: Duration, work: F) -> Result<F::Output, &'static str> {
    let deadline = RequestDeadline {
        until: Instant::now() + bound,
        waiting_on: Cell::new(DATABASE),
    };
    DEADLINE
        .scope(deadline, async move {
            let until = DEADLINE.with(|deadline| deadline.until);
            match tokio::time::timeout_at(until, work).await {
                Ok(output) => Ok(output),
                Err(_) => Err(DEADLINE.with(|deadline| deadline.waiting_on.get())),
            }
        })
        .await
}

/// Clean-up owed if a request is cut off — its future dropped at the
/// deadline, or because the client went away — before the point that
/// disarms it: spawned when dropped armed. (A gate claim given back, an
/// in-flight mark removed: without it, the retry would meet them until
/// their lease ends.)
pub struct IfCutOff {
    work: parking_lot::Mutex<Option<std::pin::Pin<Box<dyn Future<Output = ()> + Send>>>>,
}

impl IfCutOff {
    pub fn new(work: impl Future<Output = ()> + Send + 'static) -> Self {
        Self {
            work: parking_lot::Mutex::new(Some(Box::pin(work))),
        }
    }

    /// The request got there: nothing to clean up.
    pub fn disarm(&self) {
        self.work.lock().take();
    }
}

impl std::fmt::Debug for IfCutOff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let armed = self.work.lock().is_some();
        f.debug_struct("IfCutOff").field("armed", &armed).finish()
    }
}

impl Drop for IfCutOff {
    fn drop(&mut self) {
        let Some(work) = self.work.get_mut().take() else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(work);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_cut_off_request_leaves_its_clean_up_and_a_finished_one_does_not() {
        let (done, mut told) = tokio::sync::mpsc::unbounded_channel();
        let cut_off = IfCutOff::new({
            let done = done.clone();
            async move {
                let _ = done.send("cut off");
            }
        });
        let finished = IfCutOff::new(async move {
            let _ = done.send("finished");
        });
        finished.disarm();
        let work = async move {
            let _held = (cut_off, finished);
            tokio::time::sleep(Duration::from_secs(5)).await;
        };
        assert!(within(Duration::from_millis(20), work).await.is_err());
        assert_eq!(told.recv().await, Some("cut off"));
        assert_eq!(told.recv().await, None, "only the armed one ran");
    }

    #[tokio::test]
    async fn the_deadline_names_what_the_request_was_waiting_on() {
        let slow_redis = async {
            let mark = waiting_on("redis");
            tokio::time::sleep(Duration::from_secs(5)).await;
            mark.done();
        };
        assert_eq!(
            within(Duration::from_millis(20), slow_redis).await,
            Err("redis")
        );
        let slow_database = tokio::time::sleep(Duration::from_secs(5));
        let waited = within(Duration::from_millis(20), slow_database).await;
        assert_eq!(waited, Err("database"));
        let quick = within(Duration::from_secs(5), async { until().is_some() }).await;
        assert_eq!(quick, Ok(true), "the work sees its deadline");
        assert!(until().is_none(), "and nothing outside it does");
    }
}
