//! The message bus behind the at-least-once "order paid" message.
//!
//! Real stack: a Redis Stream with a consumer group (XADD, XREADGROUP, XACK, and
//! XAUTOCLAIM to take back entries a consumer received but never acknowledged).
//! Embedded: [`MemoryBus`], the same semantics in process memory. Either way a
//! message is delivered until it is acknowledged, so it may be delivered twice:
//! the consumer must deduplicate (the `message_dedup` defense).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;

use super::kv::KvError;

/// One delivery of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The bus's id of this entry (the stream entry id), used to acknowledge it.
    pub delivery_id: String,
    /// The producer's id of the message: the same on every redelivery.
    pub message_id: String,
    pub payload: String,
    /// True when the message was delivered before and not acknowledged.
    pub redelivered: bool,
}

#[async_trait]
pub trait MessageBus: Send + Sync + std::fmt::Debug {
    async fn publish(&self, topic: &str, message_id: &str, payload: &str) -> Result<(), KvError>;

    /// Up to `count` deliveries for `group`: first entries delivered more than
    /// `redeliver_after` ago and never acknowledged, then new entries.
    async fn receive(
        &self,
        topic: &str,
        group: &str,
        consumer: &str,
        count: usize,
        redeliver_after: Duration,
    ) -> Result<Vec<Delivery>, KvError>;

    async fn ack(&self, topic: &str, group: &str, delivery_id: &str) -> Result<(), KvError>;

    /// Deliveries received by `group` and not yet acknowledged.
    async fn pending(&self, topic: &str, group: &str) -> Result<u64, KvError>;

    /// Forgets every message (the admin reset).
    async fn clear(&self, topic: &str) -> Result<(), KvError>;
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
}

impl MemoryBus {
    pub fn new() -> Self {
        Self::default()
    }

    fn with_topic<T>(&self, topic: &str, operation: impl FnOnce(&mut Topic) -> T) -> T {
        let mut topics = self.topics.lock();
        operation(topics.entry(topic.to_string()).or_default())
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
    async fn publish(&self, topic: &str, message_id: &str, payload: &str) -> Result<(), KvError> {
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
    ) -> Result<Vec<Delivery>, KvError> {
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

    async fn ack(&self, topic: &str, group: &str, delivery_id: &str) -> Result<(), KvError> {
        let Ok(sequence) = delivery_id.parse::<u64>() else {
            return Ok(());
        };
        self.with_topic(topic, |topic| {
            if let Some(group) = topic.groups.get_mut(group) {
                group.pending.remove(&sequence);
            }
        });
        Ok(())
    }

    async fn pending(&self, topic: &str, group: &str) -> Result<u64, KvError> {
        Ok(self.with_topic(topic, |topic| {
            topic
                .groups
                .get(group)
                .map_or(0, |g| g.pending.len() as u64)
        }))
    }

    async fn clear(&self, topic: &str) -> Result<(), KvError> {
        self.with_topic(topic, |topic| *topic = Topic::default());
        Ok(())
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
