//! The one Redis connection of the process, with every wait bounded
//! (docs/reliability.md): a command gets 500 ms, and after a failure a small
//! breaker stays open for 500 ms, during which commands fail at once instead of
//! queueing behind a reconnection. A request that needs Redis while it is down
//! is therefore answered (503, or served without the optional fast paths) in
//! well under a second, and the first command after Redis returns reconnects.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, Value};

use super::now_ms;

/// How long one command may take.
const COMMAND_BOUND: Duration = Duration::from_millis(500);
/// How long the breaker stays open after a failure.
const OPEN_FOR_MS: i64 = 500;

#[derive(Clone)]
pub struct BoundedConnection {
    inner: ConnectionManager,
    /// Epoch ms until which commands fail at once (0: closed).
    open_until: Arc<AtomicI64>,
}

impl BoundedConnection {
    pub fn new(inner: ConnectionManager) -> Self {
        Self {
            inner,
            open_until: Arc::new(AtomicI64::new(0)),
        }
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
        if self.is_open() {
            return Err(RedisError::from((
                ErrorKind::IoError,
                "Redis failed a moment ago; not asked again yet",
            )));
        }
        match tokio::time::timeout(COMMAND_BOUND, exchange).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => {
                if is_connection_error(&error) {
                    self.trip();
                }
                Err(error)
            }
            Err(_) => {
                self.trip();
                Err(RedisError::from((
                    ErrorKind::IoError,
                    "Redis did not answer within 500 ms",
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
        let mut inner = self.inner.clone();
        let this = self.clone();
        Box::pin(async move { this.bounded(inner.req_packed_command(cmd)).await })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let mut inner = self.inner.clone();
        let this = self.clone();
        Box::pin(async move {
            this.bounded(inner.req_packed_commands(cmd, offset, count))
                .await
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}
