//! [`MessageBus`] on a Redis Stream with a consumer group. Shares the process's
//! one Redis connection manager. No blocking reads: a blocking XREADGROUP would
//! stall every other command on the multiplexed connection, so consumers poll.

use std::time::Duration;

use async_trait::async_trait;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamId, StreamReadOptions, StreamReadReply,
};

use super::bus::{Delivery, MessageBus};
use super::kv::KvError;

#[derive(Clone)]
pub struct RedisBus {
    connection: ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBus")
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl RedisBus {
    pub fn new(connection: ConnectionManager, prefix: &str) -> Self {
        Self {
            connection,
            prefix: prefix.to_string(),
        }
    }

    fn stream(&self, topic: &str) -> String {
        format!("{}stream:{topic}", self.prefix)
    }

    /// Creates the group at the start of the stream (idempotent: BUSYGROUP is fine).
    async fn ensure_group(&self, stream: &str, group: &str) -> Result<(), KvError> {
        let mut connection = self.connection.clone();
        let created: Result<(), redis::RedisError> =
            connection.xgroup_create_mkstream(stream, group, "0").await;
        match created {
            Err(error) if error.code() != Some("BUSYGROUP") => Err(error.into()),
            _ => Ok(()),
        }
    }
}

fn to_delivery(entry: &StreamId, redelivered: bool) -> Option<Delivery> {
    Some(Delivery {
        delivery_id: entry.id.clone(),
        message_id: entry.get("message_id")?,
        payload: entry.get("payload")?,
        redelivered,
    })
}

#[async_trait]
impl MessageBus for RedisBus {
    async fn publish(&self, topic: &str, message_id: &str, payload: &str) -> Result<(), KvError> {
        let mut connection = self.connection.clone();
        let _: String = connection
            .xadd(
                self.stream(topic),
                "*",
                &[("message_id", message_id), ("payload", payload)],
            )
            .await?;
        Ok(())
    }

    async fn receive(
        &self,
        topic: &str,
        group: &str,
        consumer: &str,
        count: usize,
        redeliver_after: Duration,
    ) -> Result<Vec<Delivery>, KvError> {
        let stream = self.stream(topic);
        self.ensure_group(&stream, group).await?;
        let mut connection = self.connection.clone();
        let claimed: StreamAutoClaimReply = connection
            .xautoclaim_options(
                &stream,
                group,
                consumer,
                redeliver_after.as_millis() as u64,
                "0-0",
                StreamAutoClaimOptions::default().count(count),
            )
            .await?;
        let mut out: Vec<Delivery> = claimed
            .claimed
            .iter()
            .filter_map(|entry| to_delivery(entry, true))
            .collect();
        if out.len() < count {
            let options = StreamReadOptions::default()
                .group(group, consumer)
                .count(count - out.len());
            let fresh: StreamReadReply = connection
                .xread_options(&[&stream], &[">"], &options)
                .await?;
            out.extend(
                fresh
                    .keys
                    .iter()
                    .flat_map(|key| key.ids.iter())
                    .filter_map(|entry| to_delivery(entry, false)),
            );
        }
        Ok(out)
    }

    async fn ack(&self, topic: &str, group: &str, delivery_id: &str) -> Result<(), KvError> {
        let mut connection = self.connection.clone();
        let _: i64 = connection
            .xack(self.stream(topic), group, &[delivery_id])
            .await?;
        Ok(())
    }

    async fn pending(&self, topic: &str, group: &str) -> Result<u64, KvError> {
        let stream = self.stream(topic);
        self.ensure_group(&stream, group).await?;
        let mut connection = self.connection.clone();
        let reply: redis::Value = redis::cmd("XPENDING")
            .arg(&stream)
            .arg(group)
            .query_async(&mut connection)
            .await?;
        // XPENDING <stream> <group> → [count, smallest id, greatest id, consumers]
        let count = match reply {
            redis::Value::Array(items) => match items.first() {
                Some(redis::Value::Int(count)) => *count as u64,
                _ => 0,
            },
            _ => 0,
        };
        Ok(count)
    }

    async fn clear(&self, topic: &str) -> Result<(), KvError> {
        let mut connection = self.connection.clone();
        let _: i64 = connection.del(self.stream(topic)).await?;
        Ok(())
    }
}
