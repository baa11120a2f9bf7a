//! The message bus behind the at-least-once "order paid" message.
//!
//! Three implementations of one trait (docs/messaging.md):
//! - a Redis Stream with a consumer group (`REDIS_URL`): XADD, XREADGROUP,
//!   XACK, and XAUTOCLAIM to take back entries a consumer received but never
//!   acknowledged ([`super::redis_bus`]);
//! - RabbitMQ (`AMQP_URL`): a durable exchange and queue, persistent messages,
//!   publisher confirms, manual acks, a bounded prefetch and a dead-letter
//!   queue ([`super::amqp_bus`]);
//! - [`MemoryBus`] (embedded): the stream's semantics in process memory.
//!
//! Either way a message is delivered until it is acknowledged, so it may be
//! delivered twice: the consumer must deduplicate (the `message_dedup` defense).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;

/// One delivery of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The bus's id of this delivery (the stream entry id; on RabbitMQ the
    /// channel and its delivery tag), used to acknowledge it.
    pub delivery_id: String,
    /// The producer's id of the message: the same on every redelivery.
    pub message_id: String,
    pub payload: String,
    /// True when the message was delivered before and not acknowledged.
    pub redelivered: bool,
}

/// The bus did not do what was asked; the message is not lost (the outbox
/// row stays unpublished, an unacknowledged delivery comes again).
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("the Redis stream is unavailable")]
    Redis(#[from] redis::RedisError),
    #[error("RabbitMQ is unavailable")]
    Amqp(#[from] lapin::Error),
    #[error("RabbitMQ did not answer {what} within {bound:?}")]
    Timeout { what: &'static str, bound: Duration },
    #[error("RabbitMQ refused the message (publisher confirm: nack)")]
    Nacked,
    #[error("RabbitMQ returned the message: no queue is bound to {0}")]
    Unroutable(String),
}

impl BusError {
    /// The dependency to name in a 503 `dependency_unavailable`.
    pub fn dependency(&self) -> &'static str {
        match self {
            Self::Redis(_) => "redis",
            _ => "rabbitmq",
        }
    }
}

#[async_trait]
pub trait MessageBus: Send + Sync + std::fmt::Debug {
    /// Returns once the bus holds the message (on RabbitMQ: once the broker
    /// confirmed it), so that the caller may mark it sent.
    async fn publish(&self, topic: &str, message_id: &str, payload: &str) -> Result<(), BusError>;

    /// Up to `count` deliveries for `group`: first entries delivered more than
    /// `redeliver_after` ago and never acknowledged, then new entries.
    async fn receive(
        &self,
        topic: &str,
        group: &str,
        consumer: &str,
        count: usize,
        redeliver_after: Duration,
    ) -> Result<Vec<Delivery>, BusError>;

    async fn ack(&self, topic: &str, group: &str, delivery_id: &str) -> Result<(), BusError>;

    /// The consumer could not handle `delivery` now: deliver it again, not
    /// before `after`, flagged redelivered. Nothing to do on a stream (the
    /// default): the entry stays pending and comes back by itself once idle
    /// for `redeliver_after` (XAUTOCLAIM). RabbitMQ's stay with this consumer,
    /// which offers them again.
    async fn retry_later(
        &self,
        _topic: &str,
        _group: &str,
        _delivery: &Delivery,
        _after: Duration,
    ) -> Result<(), BusError> {
        Ok(())
    }

    /// Gives up on `delivery`: it leaves the group's queue for its dead-letter
    /// queue, where an operator finds it.
    async fn dead_letter(
        &self,
        topic: &str,
        group: &str,
        delivery: &Delivery,
    ) -> Result<(), BusError>;

    /// How many messages the group's dead-letter queue holds.
    async fn dead_letters(&self, topic: &str, group: &str) -> Result<u64, BusError>;

    /// The consumer goes away holding its unacknowledged deliveries: the
    /// lab's crash, or a bus error in the middle of a batch. Nothing to do on
    /// a stream (the default): they stay pending and come back after
    /// `redeliver_after`. On RabbitMQ the consumer's channel closes and the
    /// broker puts them back in the queue, flagged redelivered.
    async fn drop_consumer(&self, _topic: &str, _group: &str) -> Result<(), BusError> {
        Ok(())
    }

    /// Messages of `group` not yet acknowledged: a stream's pending entries
    /// (delivered to any consumer of the group, waiting for their ack); on
    /// RabbitMQ, those still queued plus those this process holds (another
    /// instance's unacknowledged deliveries are not visible to it).
    async fn pending(&self, topic: &str, group: &str) -> Result<u64, BusError>;

    /// Forgets every message (the admin reset).
    async fn clear(&self, topic: &str) -> Result<(), BusError>;

    /// A short name for logs, the banner and the admin view.
    fn describe(&self) -> String;
}

/// What this process's consumer saw: how many times it failed to handle
/// each message (so that one that keeps failing goes to the dead-letter queue
/// after `MESSAGE_MAX_DELIVERIES` tries instead of looping forever), and how
/// many deliveries came flagged redelivered, were duplicates, or were
/// dead-lettered. Kept in
/// memory: a restart starts the counts again (a broker's own delivery count,
/// such as a RabbitMQ quorum queue's, would survive one; docs/messaging.md).
#[derive(Debug, Default)]
pub struct DeliveryCounts {
    failures: Mutex<HashMap<String, u32>>,
    redelivered: AtomicU64,
    dead_lettered: AtomicU64,
    duplicates: AtomicU64,
}

/// The map forgets everything past this many messages (bounded memory).
const MAX_TRACKED_FAILURES: usize = 10_000;

impl DeliveryCounts {
    /// Counts one more failure of `message_id`; returns the count.
    pub fn failed(&self, message_id: &str) -> u32 {
        let mut failures = self.failures.lock();
        if failures.len() >= MAX_TRACKED_FAILURES {
            failures.clear();
        }
        let count = failures.entry(message_id.to_string()).or_insert(0);
        *count += 1;
        *count
    }

    /// The message was handled: forget its failures.
    pub fn settled(&self, message_id: &str) {
        self.failures.lock().remove(message_id);
    }

    pub fn saw_redelivery(&self) {
        self.redelivered.fetch_add(1, Ordering::Relaxed);
    }

    /// The message was given up on: forget its failures, count it.
    pub fn gave_up(&self, message_id: &str) {
        self.settled(message_id);
        self.dead_lettered.fetch_add(1, Ordering::Relaxed);
    }

    /// A delivery of a message processed before (stopped by `message_dedup`).
    pub fn saw_duplicate(&self) {
        self.duplicates.fetch_add(1, Ordering::Relaxed);
    }

    /// Duplicates stopped since this process started.
    pub fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }

    /// Deliveries flagged redelivered since this process started.
    pub fn redelivered(&self) -> u64 {
        self.redelivered.load(Ordering::Relaxed)
    }

    /// Deliveries this process sent to the dead letters since it started.
    pub fn dead_lettered(&self) -> u64 {
        self.dead_lettered.load(Ordering::Relaxed)
    }
}

/// In-process bus: one log per topic, a cursor and a pending list per group.
#[derive(Debug, Default)]
pub struct MemoryBus {
    topics: Mutex<HashMap<String, Topic>>,
}

#[derive(Debug, Default)]
struct Topic {
    /// (message id, payload), indexed by sequence number.
    log: BTreeMap<u64, (String, String)>,
    next_sequence: u64,
    groups: HashMap<String, Group>,
}

#[derive(Debug, Default)]
struct Group {
    next_to_deliver: u64,
    /// Sequence number → when it was last delivered.
    pending: BTreeMap<u64, Instant>,
    /// Sequence numbers given up on (the dead-letter queue).
    dead: Vec<u64>,
}

impl MemoryBus {
    pub fn new() -> Self {
        Self::default()
    }

    fn with_topic<T>(&self, topic: &str, operation: impl FnOnce(&mut Topic) -> T) -> T {
        let mut topics = self.topics.lock();
        operation(topics.entry(topic.to_string()).or_default())
    }

    /// Takes `delivery_id` off the group's pending entries and, if it was
    /// there, hands the group and its sequence number to `then`.
    fn settle(
        &self,
        topic: &str,
        group: &str,
        delivery_id: &str,
        then: impl FnOnce(&mut Group, u64),
    ) {
        let Ok(sequence) = delivery_id.parse::<u64>() else {
            return;
        };
        self.with_topic(topic, |topic| {
            if let Some(group) = topic.groups.get_mut(group)
                && group.pending.remove(&sequence).is_some()
            {
                then(group, sequence);
            }
        });
    }
}

fn delivery(sequence: u64, entry: &(String, String), redelivered: bool) -> Delivery {
    Delivery {
        delivery_id: sequence.to_string(),
        message_id: entry.0.clone(),
        payload: entry.1.clone(),
        redelivered,
    }
}

#[async_trait]
impl MessageBus for MemoryBus {
    async fn publish(&self, topic: &str, message_id: &str, payload: &str) -> Result<(), BusError> {
        self.with_topic(topic, |topic| {
            let sequence = topic.next_sequence;
            topic.next_sequence += 1;
            topic
                .log
                .insert(sequence, (message_id.to_string(), payload.to_string()));
        });
        Ok(())
    }

    async fn receive(
        &self,
        topic: &str,
        group: &str,
        _consumer: &str,
        count: usize,
        redeliver_after: Duration,
    ) -> Result<Vec<Delivery>, BusError> {
        let now = Instant::now();
        Ok(self.with_topic(topic, |topic| {
            let Topic { log, groups, .. } = topic;
            let group = groups.entry(group.to_string()).or_default();
            let mut out = Vec::new();
            for (sequence, delivered_at) in group.pending.iter_mut() {
                if out.len() == count {
                    break;
                }
                if now.duration_since(*delivered_at) >= redeliver_after
                    && let Some(entry) = log.get(sequence)
                {
                    *delivered_at = now;
                    out.push(delivery(*sequence, entry, true));
                }
            }
            let fresh: Vec<u64> = log
                .range(group.next_to_deliver..)
                .take(count - out.len())
                .map(|(sequence, _)| *sequence)
                .collect();
            for sequence in fresh {
                if let Some(entry) = log.get(&sequence) {
                    out.push(delivery(sequence, entry, false));
                }
                group.pending.insert(sequence, now);
                group.next_to_deliver = sequence + 1;
            }
            out
        }))
    }

    async fn ack(&self, topic: &str, group: &str, delivery_id: &str) -> Result<(), BusError> {
        self.settle(topic, group, delivery_id, |_, _| {});
        Ok(())
    }

    async fn dead_letter(
        &self,
        topic: &str,
        group: &str,
        delivery: &Delivery,
    ) -> Result<(), BusError> {
        self.settle(topic, group, &delivery.delivery_id, |group, sequence| {
            group.dead.push(sequence);
        });
        Ok(())
    }

    async fn dead_letters(&self, topic: &str, group: &str) -> Result<u64, BusError> {
        Ok(self.with_topic(topic, |topic| {
            topic.groups.get(group).map_or(0, |g| g.dead.len() as u64)
        }))
    }

    async fn pending(&self, topic: &str, group: &str) -> Result<u64, BusError> {
        Ok(self.with_topic(topic, |topic| {
            topic
                .groups
                .get(group)
                .map_or(0, |g| g.pending.len() as u64)
        }))
    }

    async fn clear(&self, topic: &str) -> Result<(), BusError> {
        self.with_topic(topic, |topic| *topic = Topic::default());
        Ok(())
    }

    fn describe(&self) -> String {
        "in-process".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Duration = Duration::ZERO;
    const LATER: Duration = Duration::from_secs(3600);

    #[tokio::test]
    async fn delivers_each_message_once_until_it_is_redelivered() {
        let bus = MemoryBus::new();
        bus.publish("t", "m1", "p1").await.unwrap();
        bus.publish("t", "m2", "p2").await.unwrap();

        let first = bus.receive("t", "g", "c", 10, LATER).await.unwrap();
        assert_eq!(
            first
                .iter()
                .map(|d| d.message_id.as_str())
                .collect::<Vec<_>>(),
            ["m1", "m2"]
        );
        assert!(
            bus.receive("t", "g", "c", 10, LATER)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(bus.pending("t", "g").await.unwrap(), 2);

        bus.ack("t", "g", &first[0].delivery_id).await.unwrap();
        let again = bus.receive("t", "g", "c", 10, NOW).await.unwrap();
        assert_eq!(again.len(), 1, "only the unacknowledged one comes back");
        assert_eq!(again[0].message_id, "m2");
        assert!(again[0].redelivered);
    }

    #[tokio::test]
    async fn a_dead_lettered_delivery_leaves_the_pending_list_for_the_dead_ones() {
        let bus = MemoryBus::new();
        bus.publish("t", "m1", "p1").await.unwrap();
        let delivered = bus.receive("t", "g", "c", 10, LATER).await.unwrap();
        bus.dead_letter("t", "g", &delivered[0]).await.unwrap();
        assert_eq!(bus.pending("t", "g").await.unwrap(), 0);
        assert_eq!(bus.dead_letters("t", "g").await.unwrap(), 1);
        let again = bus.receive("t", "g", "c", 10, NOW).await.unwrap();
        assert!(again.is_empty(), "a dead letter is not delivered again");
    }

    #[tokio::test]
    async fn groups_have_their_own_cursor() {
        let bus = MemoryBus::new();
        bus.publish("t", "m1", "p1").await.unwrap();
        assert_eq!(
            bus.receive("t", "a", "c", 10, LATER).await.unwrap().len(),
            1
        );
        assert_eq!(
            bus.receive("t", "b", "c", 10, LATER).await.unwrap().len(),
            1
        );
    }
}
