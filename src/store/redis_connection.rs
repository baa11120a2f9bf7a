//! The Redis connection, with every wait bounded (docs/reliability.md): a
//! command gets `REDIS_COMMAND_TIMEOUT_MS` (500 by default), and after a
//! failure a small breaker stays open for 500 ms, during which commands fail at once instead of queueing behind a
//! reconnection. A request that needs Redis while it is down is therefore
//! answered (503, or served without the optional fast paths) in well under a
//! second, and the first command after Redis returns reconnects.
//!
//! One node (`REDIS_URL`) or a Redis Cluster (`REDIS_CLUSTER_URLS`, the
//! `redis` crate's async cluster client: MOVED/ASK redirections, slot refresh
//! and failover are its job); the bound and the breaker are the same.
//!
//! One multiplexed connection **per thread** (docs/design.md §2.4): a
//! multiplexed connection is driven by a task on the runtime that opened it,
//! and each actix worker runs its own runtime. With one connection for the
//! process, every command crossed threads twice (worker → driver → worker);
//! measured on the replay path, that hand-off cost a third of the server's CPU.
//! A connection failure seen on any thread retires every thread's connection
//! (a generation number), so that after Redis restarts no thread keeps using
//! a connection that died while it sat idle.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Client, Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, Value};

use super::now_ms;

thread_local! {
    /// This thread's connections, one per [`BoundedConnection`] (by its id),
    /// each with the generation it was opened in.
    static THREAD_CONNECTIONS: RefCell<Vec<ThreadConnection>> =
        const { RefCell::new(Vec::new()) };
}

/// Tells apart the Redis servers one process talks to (tests run several).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

struct ThreadConnection {
    id: u64,
    generation: u64,
    manager: Inner,
}

/// Where the connections go.
#[derive(Clone)]
pub enum Target {
    /// One Redis server.
    Node {
        client: Client,
        config: ConnectionManagerConfig,
    },
    /// A Redis Cluster, reached through its seed nodes.
    Cluster(ClusterClient),
}

/// One thread's connection, to a node or to the cluster.
#[derive(Clone)]
enum Inner {
    Node(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Inner {
    async fn open(target: &Target) -> Result<Self, RedisError> {
        match target {
            Target::Node { client, config } => {
                ConnectionManager::new_with_config(client.clone(), config.clone())
                    .await
                    .map(Self::Node)
            }
            Target::Cluster(client) => client.get_async_connection().await.map(Self::Cluster),
        }
    }
}

impl ConnectionLike for Inner {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Node(node) => node.req_packed_command(cmd),
            Self::Cluster(cluster) => cluster.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Node(node) => node.req_packed_commands(cmd, offset, count),
            Self::Cluster(cluster) => cluster.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Node(node) => node.get_db(),
            Self::Cluster(_) => 0,
        }
    }
}

/// How long the breaker stays open after a failure.
const OPEN_FOR_MS: i64 = 500;

#[derive(Clone)]
pub struct BoundedConnection {
    target: Target,
    /// How long one command may take (`REDIS_COMMAND_TIMEOUT_MS`).
    command_bound: Duration,
    id: u64,
    /// Raised by every connection failure: older connections are not used again.
    generation: Arc<AtomicU64>,
    /// Epoch ms until which commands fail at once (0: closed).
    open_until: Arc<AtomicI64>,
}

impl BoundedConnection {
    /// Opens the calling thread's connection at once, so that a wrong URL or
    /// a Redis that is down stops the start instead of the first request.
    pub async fn open(target: Target, command_bound: Duration) -> Result<Self, RedisError> {
        let connection = Self {
            target,
            command_bound,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            generation: Arc::new(AtomicU64::new(0)),
            open_until: Arc::new(AtomicI64::new(0)),
        };
        connection.thread_connection().await?;
        Ok(connection)
    }

    /// The calling thread's connection, opened on first use (and again after
    /// a connection failure anywhere).
    async fn thread_connection(&self) -> Result<Inner, RedisError> {
        let generation = self.generation.load(Ordering::Acquire);
        if let Some(found) = self.find_on_this_thread(generation) {
            return Ok(found);
        }
        let opened = Inner::open(&self.target).await?;
        // Another task of this thread may have opened one meanwhile: keep the first.
        Ok(self.find_on_this_thread(generation).unwrap_or_else(|| {
            THREAD_CONNECTIONS.with_borrow_mut(|all| {
                all.retain(|held| held.id != self.id);
                all.push(ThreadConnection {
                    id: self.id,
                    generation,
                    manager: opened.clone(),
                });
            });
            opened
        }))
    }

    /// Whether this is a cluster (some commands must then be split by slot).
    pub fn is_cluster(&self) -> bool {
        matches!(self.target, Target::Cluster(_))
    }

    fn find_on_this_thread(&self, generation: u64) -> Option<Inner> {
        THREAD_CONNECTIONS.with_borrow(|all| {
            all.iter()
                .find(|held| held.id == self.id && held.generation == generation)
                .map(|held| held.manager.clone())
        })
    }

    /// After a connection failure: every thread opens a fresh connection on
    /// its next command, on the runtime that runs it.
    fn retire_connections(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    fn is_open(&self) -> bool {
        self.open_until.load(Ordering::Relaxed) > now_ms()
    }

    fn trip(&self) {
        self.open_until
            .store(now_ms().saturating_add(OPEN_FOR_MS), Ordering::Relaxed);
    }

    /// Runs one exchange with Redis under the bound and the breaker.
    async fn bounded<T>(
        &self,
        exchange: impl std::future::Future<Output = Result<T, RedisError>>,
    ) -> Result<T, RedisError> {
        let waiting = crate::deadline::waiting_on("redis");
        let result = self.bounded_exchange(exchange).await;
        waiting.done();
        result
    }

    /// [`Self::bounded`] without the deadline's mark.
    async fn bounded_exchange<T>(
        &self,
        exchange: impl std::future::Future<Output = Result<T, RedisError>>,
    ) -> Result<T, RedisError> {
        if self.is_open() {
            return Err(RedisError::from((
                ErrorKind::IoError,
                "Redis failed a moment ago; not asked again yet",
            )));
        }
        match tokio::time::timeout(self.command_bound, exchange).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => {
                if is_connection_error(&error) {
                    self.trip();
                    self.retire_connections();
                }
                Err(error)
            }
            Err(_) => {
                self.trip();
                self.retire_connections();
                Err(RedisError::from((
                    ErrorKind::IoError,
                    "Redis did not answer within the command bound",
                    format!(
                        "{} ms (REDIS_COMMAND_TIMEOUT_MS)",
                        self.command_bound.as_millis()
                    ),
                )))
            }
        }
    }
}

/// A failure of the connection (not of one command, like a script error).
fn is_connection_error(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
}

impl ConnectionLike for BoundedConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let this = self.clone();
        Box::pin(async move {
            this.bounded(async {
                let mut inner = this.thread_connection().await?;
                inner.req_packed_command(cmd).await
            })
            .await
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let this = self.clone();
        Box::pin(async move {
            this.bounded(async {
                let mut inner = this.thread_connection().await?;
                inner.req_packed_commands(cmd, offset, count).await
            })
            .await
        })
    }

    fn get_db(&self) -> i64 {
        match &self.target {
            Target::Node { client, .. } => client.get_connection_info().redis.db,
            Target::Cluster(_) => 0,
        }
    }
}
