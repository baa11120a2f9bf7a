//! [`MessageBus`] on RabbitMQ (AMQP 0-9-1, the `lapin` crate), chosen with
//! `AMQP_URL` (docs/messaging.md).
//!
//! What each step does against loss and duplication:
//! - **Topology, declared at start**: per topic a durable direct exchange; per
//!   (topic, group) a durable queue bound to it, whose dead letters go through
//!   the exchange `<prefix>dead-letters` to the queue `<queue>.dead`.
//! - **Publish**: persistent (delivery mode 2), `mandatory`, on a channel in
//!   confirm mode; [`MessageBus::publish`] returns only when the broker has
//!   confirmed (`basic.ack`), so the outbox row is marked sent only then. A
//!   `basic.nack`, a returned (unroutable) message or no answer within the
//!   bound is an error: the row stays, and the relay sends it again.
//! - **Consume**: `basic.consume` without auto-ack and a bounded prefetch
//!   (`basic.qos`): the broker hands this consumer at most `prefetch`
//!   unacknowledged messages. The consumer acknowledges a delivery after its
//!   effect committed; a delivery never acknowledged goes back to the queue
//!   when the consumer's channel or connection closes, flagged `redelivered`,
//!   for this consumer or another.
//! - **Give up**: `basic.reject` without requeue sends a delivery to the
//!   dead-letter queue.
//!
//! Every step is bounded (connect, declare, publish and confirm, ack). One
//! connection publishes, another consumes (RabbitMQ stops reading a
//! publishing connection during a resource alarm). Connections are opened on
//! the runtime the bus was created on: lapin drives each from a thread of its
//! own that uses that runtime, which must outlive it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, BasicRejectOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{
    Acker, BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};
use parking_lot::Mutex;

use super::bus::{BusError, Delivery, MessageBus};
use super::redis_kv::strip_password;

/// Persistent messages: written to disk by the broker (AMQP delivery mode 2).
const PERSISTENT: u8 = 2;
/// How long a receive waits for a first delivery before it returns none.
const RECEIVE_WAIT: Duration = Duration::from_millis(100);

/// A topic and one group that consumes it: one queue.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub topic: &'static str,
    pub group: &'static str,
}

/// How to reach RabbitMQ and how to use it.
#[derive(Debug, Clone)]
pub struct AmqpConfig {
    pub url: String,
    /// Put before every exchange and queue name (`KV_PREFIX`).
    pub prefix: String,
    /// The most unacknowledged deliveries the broker hands one consumer.
    pub prefetch: u16,
    /// How long a connection attempt, a confirm or an ack may take.
    pub bound: Duration,
    /// The queues to declare at start.
    pub routes: Vec<Route>,
}

pub struct AmqpBus {
    config: AmqpConfig,
    url_for_logs: String,
    /// The runtime that drives the connection (see the module's doc).
    runtime: tokio::runtime::Handle,
    link: tokio::sync::Mutex<Option<Link>>,
    /// The connection the consumers' channels are on.
    consuming: tokio::sync::Mutex<Option<Connection>>,
    /// One consumer per queue, on a channel of its own.
    consumers: tokio::sync::Mutex<HashMap<String, GroupConsumer>>,
    /// Deliveries handed out and not yet acknowledged, by delivery id.
    outstanding: Mutex<HashMap<String, Outstanding>>,
    /// Deliveries the consumer asked to see again later ([`MessageBus::retry_later`]).
    held: Mutex<Vec<Held>>,
    /// Numbers the consumer channels, so that a delivery tag (which restarts
    /// at 1 on every channel) names one delivery.
    channels_opened: AtomicU64,
}

/// The publishing connection and its channel (in confirm mode).
struct Link {
    connection: Connection,
    publisher: Channel,
}

struct GroupConsumer {
    channel: Channel,
    stream: lapin::Consumer,
    number: u64,
}

struct Outstanding {
    acker: Acker,
    queue: String,
    channel_number: u64,
}

struct Held {
    due: Instant,
    queue: String,
    delivery: Delivery,
}

impl std::fmt::Debug for AmqpBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpBus")
            .field("url", &self.url_for_logs)
            .field("prefix", &self.config.prefix)
            .finish()
    }
}

impl AmqpBus {
    /// Connects and declares the topology; fails if RabbitMQ cannot be reached.
    pub async fn connect(config: AmqpConfig) -> Result<Self, BusError> {
        let bus = Self {
            url_for_logs: strip_password(&config.url),
            config,
            runtime: tokio::runtime::Handle::current(),
            link: tokio::sync::Mutex::new(None),
            consuming: tokio::sync::Mutex::new(None),
            consumers: tokio::sync::Mutex::new(HashMap::new()),
            outstanding: Mutex::new(HashMap::new()),
            held: Mutex::new(Vec::new()),
            channels_opened: AtomicU64::new(0),
        };
        bus.publisher().await?;
        Ok(bus)
    }

    fn exchange(&self, topic: &str) -> String {
        format!("{}{topic}", self.config.prefix)
    }

    /// The queue of `group` on `topic`.
    pub fn queue(&self, topic: &str, group: &str) -> String {
        format!("{}{topic}.{group}", self.config.prefix)
    }

    fn dead_exchange(&self) -> String {
        format!("{}dead-letters", self.config.prefix)
    }

    fn dead_queue(queue: &str) -> String {
        format!("{queue}.dead")
    }

    /// The publishing channel, connecting (and declaring) first if needed.
    async fn publisher(&self) -> Result<Channel, BusError> {
        let mut link = self.link.lock().await;
        Ok(self.live_link(&mut link).await?.publisher.clone())
    }

    /// A new channel for a consumer, on the consuming connection. Publishing
    /// and consuming use a connection each: when RabbitMQ blocks publishers (a
    /// memory or disk alarm), it stops reading their connection, and acks
    /// sent on it would wait with the messages they should drain.
    async fn new_channel(&self) -> Result<Channel, BusError> {
        // The publishing connection declares the topology on (re)connecting.
        self.publisher().await?;
        let mut consuming = self.consuming.lock().await;
        let alive = consuming
            .as_ref()
            .is_some_and(|connection| connection.status().connected());
        if !alive {
            *consuming = None;
            *consuming = Some(self.open_connection("consume").await?);
        }
        let connection = consuming.as_ref().ok_or(BusError::Timeout {
            what: "a connection",
            bound: self.config.bound,
        })?;
        bounded(self.config.bound, "a channel", connection.create_channel()).await
    }

    /// The connection and its publishing channel, opened again if they closed.
    async fn live_link<'a>(&self, link: &'a mut Option<Link>) -> Result<&'a Link, BusError> {
        let alive = link.as_ref().is_some_and(|live| {
            live.connection.status().connected() && live.publisher.status().connected()
        });
        if !alive {
            *link = None;
            let connection = self.open_connection("publish").await?;
            let bound = self.config.bound;
            let publisher = bounded(bound, "a channel", connection.create_channel()).await?;
            let confirms = publisher.confirm_select(ConfirmSelectOptions::default());
            bounded(bound, "confirm.select", confirms).await?;
            self.declare_topology(&publisher).await?;
            *link = Some(Link {
                connection,
                publisher,
            });
        }
        link.as_ref().ok_or(BusError::Timeout {
            what: "a connection",
            bound: self.config.bound,
        })
    }

    /// Opens a connection (named after its `role` in the broker's lists) on
    /// the bus's runtime, within the bound.
    async fn open_connection(&self, role: &str) -> Result<Connection, BusError> {
        let url = self.config.url.clone();
        let name = format!("flashguard {} {role}", self.config.prefix);
        let properties = ConnectionProperties::default().with_connection_name(name.into());
        let mut opening = self
            .runtime
            .spawn(async move { Connection::connect(&url, properties).await });
        match tokio::time::timeout(self.config.bound, &mut opening).await {
            Ok(Ok(connected)) => Ok(connected?),
            Ok(Err(_)) => Err(BusError::Timeout {
                what: "a connection (the runtime is stopping)",
                bound: self.config.bound,
            }),
            Err(_) => {
                opening.abort(); // No attempt outlives its bound.
                Err(BusError::Timeout {
                    what: "a connection",
                    bound: self.config.bound,
                })
            }
        }
    }

    /// Exchanges, queues and bindings (declaring again with the same
    /// properties changes nothing).
    async fn declare_topology(&self, channel: &Channel) -> Result<(), BusError> {
        let dead_exchange = self.dead_exchange();
        declare_exchange(channel, &dead_exchange, self.config.bound).await?;
        for route in &self.config.routes {
            self.declare_route(channel, route, &dead_exchange).await?;
        }
        Ok(())
    }

    /// The topic's exchange; the group's queue bound to it, dead-lettering
    /// through `dead_exchange` to its own dead-letter queue.
    async fn declare_route(
        &self,
        channel: &Channel,
        route: &Route,
        dead_exchange: &str,
    ) -> Result<(), BusError> {
        let bound = self.config.bound;
        let exchange = self.exchange(route.topic);
        let queue = self.queue(route.topic, route.group);
        let dead_queue = Self::dead_queue(&queue);
        declare_exchange(channel, &exchange, bound).await?;
        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(dead_exchange.into()),
        );
        arguments.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(dead_queue.as_str().into()),
        );
        declare_queue(channel, &queue, arguments, bound).await?;
        bind(channel, &queue, &exchange, route.topic, bound).await?;
        declare_queue(channel, &dead_queue, FieldTable::default(), bound).await?;
        bind(channel, &dead_queue, dead_exchange, &dead_queue, bound).await
    }

    /// After an error on the connection: the next call connects again.
    async fn forget_link(&self) {
        *self.link.lock().await = None;
    }

    /// A consumer on `queue` with the bounded prefetch, on a new channel.
    async fn open_consumer(&self, queue: &str, tag: &str) -> Result<GroupConsumer, BusError> {
        let bound = self.config.bound;
        let channel = self.new_channel().await?;
        bounded(
            bound,
            "basic.qos",
            channel.basic_qos(self.config.prefetch, BasicQosOptions::default()),
        )
        .await?;
        let number = self.channels_opened.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{tag}-{number}");
        let stream = bounded(
            bound,
            "basic.consume",
            channel.basic_consume(
                queue.into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            ),
        )
        .await?;
        Ok(GroupConsumer {
            channel,
            stream,
            number,
        })
    }

    /// A delivery from the broker, remembered until it is acknowledged.
    fn accept(&self, queue: &str, number: u64, delivery: lapin::message::Delivery) -> Delivery {
        let delivery_id = format!("{number}.{}", delivery.delivery_tag);
        let message_id = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.as_str().to_string())
            .unwrap_or_default();
        self.outstanding.lock().insert(
            delivery_id.clone(),
            Outstanding {
                acker: delivery.acker,
                queue: queue.to_string(),
                channel_number: number,
            },
        );
        Delivery {
            delivery_id,
            message_id,
            payload: String::from_utf8_lossy(&delivery.data).into_owned(),
            redelivered: delivery.redelivered,
        }
    }

    /// Held deliveries of `queue` whose time has come and whose channel is
    /// still the consumer's (after a channel closed, the broker redelivers them).
    fn due_held(&self, queue: &str, live_channel: u64, count: usize) -> Vec<Delivery> {
        let now = Instant::now();
        let outstanding = self.outstanding.lock();
        let mut held = self.held.lock();
        held.retain(|entry| {
            entry.queue != queue
                || outstanding
                    .get(&entry.delivery.delivery_id)
                    .is_some_and(|o| o.channel_number == live_channel)
        });
        let mut due = Vec::new();
        held.retain(|entry| {
            let take = entry.queue == queue && entry.due <= now && due.len() < count;
            if take {
                due.push(entry.delivery.clone());
            }
            !take
        });
        due
    }

    /// Forgets what this process held of `queue` (its channel is gone).
    fn forget_deliveries_of(&self, queue: &str) {
        self.outstanding.lock().retain(|_, o| o.queue != queue);
        self.held.lock().retain(|entry| entry.queue != queue);
    }

    /// The consumer of `queue`, opened (again) if it has none or its channel closed.
    async fn live_consumer<'a>(
        &self,
        consumers: &'a mut HashMap<String, GroupConsumer>,
        queue: &str,
        tag: &str,
    ) -> Result<&'a mut GroupConsumer, BusError> {
        if consumers
            .get(queue)
            .is_some_and(|c| !c.channel.status().connected())
        {
            consumers.remove(queue);
            self.forget_deliveries_of(queue);
        }
        if !consumers.contains_key(queue) {
            let opened = match self.open_consumer(queue, tag).await {
                Ok(opened) => opened,
                Err(error) => {
                    self.forget_link().await;
                    *self.consuming.lock().await = None;
                    return Err(error);
                }
            };
            consumers.insert(queue.to_string(), opened);
        }
        consumers.get_mut(queue).ok_or(BusError::Timeout {
            what: "basic.consume",
            bound: self.config.bound,
        })
    }

    /// Up to `count` deliveries the broker pushed: waits at most
    /// [`RECEIVE_WAIT`] for the first, then takes what is already there.
    /// `Some` second member: the consumer ended (`Ok`: cancelled by the broker).
    async fn pushed(
        &self,
        live: &mut GroupConsumer,
        queue: &str,
        count: usize,
    ) -> (Vec<Delivery>, Option<Result<(), lapin::Error>>) {
        let mut out = Vec::new();
        let Ok(mut next) = tokio::time::timeout(RECEIVE_WAIT, live.stream.next()).await else {
            return (out, None);
        };
        loop {
            match next {
                Some(Ok(delivery)) => out.push(self.accept(queue, live.number, delivery)),
                Some(Err(error)) => return (out, Some(Err(error))),
                None => return (out, Some(Ok(()))),
            }
            if out.len() >= count {
                return (out, None);
            }
            match live.stream.next().now_or_never() {
                Some(more) => next = more,
                None => return (out, None),
            }
        }
    }

    /// How many messages wait in `queue` (not counting those delivered).
    async fn ready_in(&self, queue: &str) -> Result<u64, BusError> {
        let channel = self.publisher().await?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let declared = bounded(
            self.config.bound,
            "queue.declare",
            channel.queue_declare(queue.into(), passive, FieldTable::default()),
        )
        .await;
        match declared {
            Ok(queue) => Ok(u64::from(queue.message_count())),
            Err(error) => {
                self.forget_link().await;
                Err(error)
            }
        }
    }
}

#[async_trait]
impl MessageBus for AmqpBus {
    // [lesson message_dedup::amqp_publish]
    /// Persistent, mandatory, and sent only once the broker confirms it.
    async fn publish(&self, topic: &str, message_id: &str, payload: &str) -> Result<(), BusError> {
        let channel = self.publisher().await?;
        let properties = BasicProperties::default()
            .with_message_id(message_id.into())
            .with_delivery_mode(PERSISTENT)
            .with_content_type("application/json".into());
        let mandatory = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        let exchange = self.exchange(topic);
        let sent = async {
            let confirm = channel
                .basic_publish(
                    exchange.as_str().into(),
                    topic.into(),
                    mandatory,
                    payload.as_bytes(),
                    properties,
                )
                .await?;
            confirm.await
        };
        let confirmation = match bounded(self.config.bound, "a publisher confirm", sent).await {
            Ok(confirmation) => confirmation,
            Err(error) => {
                self.forget_link().await;
                return Err(error);
            }
        };
        let refused = match confirmation {
            Confirmation::Ack(None) => return Ok(()),
            Confirmation::Ack(Some(_)) => BusError::Unroutable(exchange),
            Confirmation::Nack(_) | Confirmation::NotRequested => BusError::Nacked,
        };
        // Connect and declare again next time: the queue or its binding may
        // have been deleted while this connection lived.
        self.forget_link().await;
        Err(refused)
    }
    // [/lesson]

    /// Deliveries the consumer asked to see again first, then what the broker
    /// pushed (waiting at most 100 ms for the first).
    async fn receive(
        &self,
        topic: &str,
        group: &str,
        consumer: &str,
        count: usize,
        _redeliver_after: Duration,
    ) -> Result<Vec<Delivery>, BusError> {
        let queue = self.queue(topic, group);
        let mut consumers = self.consumers.lock().await;
        let live = self.live_consumer(&mut consumers, &queue, consumer).await?;
        let mut out = self.due_held(&queue, live.number, count);
        if out.len() >= count {
            return Ok(out);
        }
        let (pushed, ended) = self.pushed(live, &queue, count - out.len()).await;
        out.extend(pushed);
        match ended {
            None => Ok(out),
            Some(ended) => {
                // The stream ended (an error, or the broker cancelled the
                // consumer): its channel is gone, and the broker delivers
                // again what it held.
                consumers.remove(&queue);
                self.forget_deliveries_of(&queue);
                match ended {
                    Ok(()) => Ok(Vec::new()),
                    Err(error) if out.is_empty() => Err(error.into()),
                    Err(_) => Ok(Vec::new()),
                }
            }
        }
    }

    async fn ack(&self, _topic: &str, _group: &str, delivery_id: &str) -> Result<(), BusError> {
        let Some(outstanding) = self.outstanding.lock().remove(delivery_id) else {
            return Ok(()); // Its channel closed: the broker delivers it again.
        };
        let acked = outstanding.acker.ack(BasicAckOptions::default());
        bounded(self.config.bound, "basic.ack", acked).await?;
        Ok(())
    }

    async fn retry_later(
        &self,
        topic: &str,
        group: &str,
        delivery: &Delivery,
        after: Duration,
    ) -> Result<(), BusError> {
        let mut again = delivery.clone();
        again.redelivered = true;
        self.held.lock().push(Held {
            due: Instant::now() + after,
            queue: self.queue(topic, group),
            delivery: again,
        });
        Ok(())
    }

    async fn dead_letter(
        &self,
        _topic: &str,
        _group: &str,
        delivery: &Delivery,
    ) -> Result<(), BusError> {
        let Some(outstanding) = self.outstanding.lock().remove(&delivery.delivery_id) else {
            return Ok(()); // Its channel closed: the broker delivers it again.
        };
        let rejected = outstanding
            .acker
            .reject(BasicRejectOptions { requeue: false });
        bounded(self.config.bound, "basic.reject", rejected).await?;
        Ok(())
    }

    async fn dead_letters(&self, topic: &str, group: &str) -> Result<u64, BusError> {
        self.ready_in(&Self::dead_queue(&self.queue(topic, group)))
            .await
    }

    async fn drop_consumer(&self, topic: &str, group: &str) -> Result<(), BusError> {
        let queue = self.queue(topic, group);
        let consumer = self.consumers.lock().await.remove(&queue);
        self.forget_deliveries_of(&queue);
        if let Some(consumer) = consumer {
            let closing = consumer
                .channel
                .close(200, "the consumer lets go of its deliveries".into());
            bounded(self.config.bound, "channel.close", closing).await?;
        }
        Ok(())
    }

    /// Queued plus delivered and not acknowledged by this process.
    async fn pending(&self, topic: &str, group: &str) -> Result<u64, BusError> {
        let queue = self.queue(topic, group);
        let ready = self.ready_in(&queue).await?;
        let delivered = self
            .outstanding
            .lock()
            .values()
            .filter(|o| o.queue == queue)
            .count() as u64;
        Ok(ready + delivered)
    }

    /// Closes the topic's consumers (what they held goes back to the queue),
    /// then purges its queues and their dead letters.
    async fn clear(&self, topic: &str) -> Result<(), BusError> {
        let routes: Vec<Route> = self
            .config
            .routes
            .iter()
            .filter(|route| route.topic == topic)
            .copied()
            .collect();
        for route in routes {
            self.drop_consumer(route.topic, route.group).await?;
            let queue = self.queue(route.topic, route.group);
            let channel = self.publisher().await?;
            for name in [Self::dead_queue(&queue), queue] {
                let purged =
                    channel.queue_purge(name.as_str().into(), QueuePurgeOptions::default());
                bounded(self.config.bound, "queue.purge", purged).await?;
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("RabbitMQ {}", self.url_for_logs)
    }
}

/// Runs one exchange with RabbitMQ under `bound`.
async fn bounded<T>(
    bound: Duration,
    what: &'static str,
    exchange: impl std::future::Future<Output = Result<T, lapin::Error>>,
) -> Result<T, BusError> {
    match tokio::time::timeout(bound, exchange).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(BusError::Timeout { what, bound }),
    }
}

/// A durable direct exchange.
async fn declare_exchange(channel: &Channel, name: &str, bound: Duration) -> Result<(), BusError> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    let declared = channel.exchange_declare(
        name.into(),
        ExchangeKind::Direct,
        durable,
        FieldTable::default(),
    );
    bounded(bound, "exchange.declare", declared).await
}

async fn declare_queue(
    channel: &Channel,
    name: &str,
    arguments: FieldTable,
    bound: Duration,
) -> Result<(), BusError> {
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let declared = channel.queue_declare(name.into(), durable, arguments);
    bounded(bound, "queue.declare", declared).await.map(drop)
}

async fn bind(
    channel: &Channel,
    queue: &str,
    exchange: &str,
    routing_key: &str,
    bound: Duration,
) -> Result<(), BusError> {
    let bound_to = channel.queue_bind(
        queue.into(),
        exchange.into(),
        routing_key.into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    );
    bounded(bound, "queue.bind", bound_to).await
}
