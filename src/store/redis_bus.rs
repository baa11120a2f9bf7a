//! [`MessageBus`] on a Redis Stream with a consumer group. Shares the key store's
//! Redis connections (one per thread). No blocking reads: a blocking XREADGROUP would
//! stall every other command on the multiplexed connection, so consumers poll.
//!
//! A stream has no dead-letter queue of its own: a delivery given up on is
//! added to a second stream, `<stream>:dead` (naming its group), and
//! acknowledged in the first.

use std::time::Duration;

use async_trait::async_trait;
use redis::AsyncCommands;
use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamId, StreamPendingReply, StreamReadOptions,
    StreamReadReply,
};

use super::bus::{BusError, Delivery, MessageBus};
use super::redis_connection::BoundedConnection;

#[derive(Clone)]
pub struct RedisBus {
    connection: BoundedConnection,
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
    pub fn new(connection: BoundedConnection, prefix: &str) -> Self {
        Self {
            connection,
            prefix: prefix.to_string(),
        }
    }

    fn stream(&self, topic: &str) -> String {
        format!("{}stream:{topic}", self.prefix)
    }

    fn dead_stream(&self, topic: &str) -> String {
        format!("{}:dead", self.stream(topic))
    }

    /// Entries delivered more than `idle` ago and never acknowledged, taken over
    /// by this consumer (XAUTOCLAIM): the redeliveries.
    async fn claim_stale(
        &self,
        reader: &Reader<'_>,
        count: usize,
        idle: Duration,
    ) -> Result<Vec<Delivery>, BusError> {
        let mut connection = self.connection.clone();
        let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
        let claimed: StreamAutoClaimReply = connection
            .xautoclaim_options(
                reader.stream,
                reader.group,
                reader.consumer,
                idle_ms,
                "0-0",
                StreamAutoClaimOptions::default().count(count),
            )
            .await?;
        Ok(claimed
            .claimed
            .iter()
            .filter_map(|entry| to_delivery(entry, true))
            .collect())
    }

    /// Entries never delivered to the group (XREADGROUP `>`).
    async fn read_new(&self, reader: &Reader<'_>, count: usize) -> Result<Vec<Delivery>, BusError> {
        let mut connection = self.connection.clone();
        let options = StreamReadOptions::default()
            .group(reader.group, reader.consumer)
            .count(count);
        let fresh: StreamReadReply = connection
            .xread_options(&[reader.stream], &[">"], &options)
            .await?;
        Ok(fresh
            .keys
            .iter()
            .flat_map(|key| key.ids.iter())
            .filter_map(|entry| to_delivery(entry, false))
            .collect())
    }

    /// Creates the group at the start of the stream (idempotent: BUSYGROUP is fine).
    async fn ensure_group(&self, stream: &str, group: &str) -> Result<(), BusError> {
        let mut connection = self.connection.clone();
        let created: Result<(), redis::RedisError> =
            connection.xgroup_create_mkstream(stream, group, "0").await;
        match created {
            Err(error) if error.code() != Some("BUSYGROUP") => Err(error.into()),
            _ => Ok(()),
        }
    }
}

/// Who reads which stream.
struct Reader<'a> {
    stream: &'a str,
    group: &'a str,
    consumer: &'a str,
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
    async fn publish(&self, topic: &str, message_id: &str, payload: &str) -> Result<(), BusError> {
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

    // [lesson message_dedup::stream_receive]
    /// What a dead consumer held (idle long enough) first, then new entries.
    async fn receive(
        &self,
        topic: &str,
        group: &str,
        consumer: &str,
        count: usize,
        redeliver_after: Duration,
    ) -> Result<Vec<Delivery>, BusError> {
        let stream = self.stream(topic);
        self.ensure_group(&stream, group).await?;
        let reader = Reader {
            stream: &stream,
            group,
            consumer,
        };
        let mut out = self.claim_stale(&reader, count, redeliver_after).await?;
        if out.len() < count {
            out.extend(self.read_new(&reader, count - out.len()).await?);
        }
        Ok(out)
    }
    // [/lesson]

    async fn ack(&self, topic: &str, group: &str, delivery_id: &str) -> Result<(), BusError> {
        let mut connection = self.connection.clone();
        let _: i64 = connection
            .xack(self.stream(topic), group, &[delivery_id])
            .await?;
        Ok(())
    }

    async fn dead_letter(
        &self,
        topic: &str,
        group: &str,
        delivery: &Delivery,
    ) -> Result<(), BusError> {
        let mut connection = self.connection.clone();
        let fields = [
            ("group", group),
            ("message_id", delivery.message_id.as_str()),
            ("payload", delivery.payload.as_str()),
        ];
        let _: String = connection
            .xadd(self.dead_stream(topic), "*", &fields)
            .await?;
        self.ack(topic, group, &delivery.delivery_id).await
    }

    async fn dead_letters(&self, topic: &str, _group: &str) -> Result<u64, BusError> {
        let mut connection = self.connection.clone();
        Ok(connection.xlen(self.dead_stream(topic)).await?)
    }

    async fn pending(&self, topic: &str, group: &str) -> Result<u64, BusError> {
        let stream = self.stream(topic);
        self.ensure_group(&stream, group).await?;
        let mut connection = self.connection.clone();
        let reply: StreamPendingReply = connection.xpending(&stream, group).await?;
        Ok(reply.count() as u64)
    }

    async fn clear(&self, topic: &str) -> Result<(), BusError> {
        let mut connection = self.connection.clone();
        // One key per command: on a cluster the two may be in different slots.
        let _: i64 = connection.del(self.stream(topic)).await?;
        let _: i64 = connection.del(self.dead_stream(topic)).await?;
        Ok(())
    }

    fn describe(&self) -> String {
        format!("Redis stream {}", self.stream("*"))
    }
}
