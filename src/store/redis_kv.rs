//! [`KeyStore`] on Redis: one multiplexed connection manager for the whole process
//! (it reconnects by itself), and Lua scripts where a check and a write must be
//! one atomic step.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};

use super::kv::{KeyStore, KvError};

/// Deletes the key only when it still holds the caller's value.
const COMPARE_AND_DELETE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

/// Decrements only when the result stays non-negative; -1 means "refused".
const DECREMENT_IF_ENOUGH: &str = r#"
local current = tonumber(redis.call('GET', KEYS[1]))
local by = tonumber(ARGV[1])
if current == nil or current < by then
  return -1
end
return redis.call('DECRBY', KEYS[1], by)
"#;

#[derive(Clone)]
pub struct RedisKv {
    connection: ConnectionManager,
    prefix: String,
    url_for_logs: String,
    compare_and_delete: Script,
    decrement_if_enough: Script,
}

impl std::fmt::Debug for RedisKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisKv")
            .field("url", &self.url_for_logs)
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl RedisKv {
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, KvError> {
        let client = redis::Client::open(url)?;
        let connection = ConnectionManager::new(client).await?;
        Ok(Self {
            connection,
            prefix: prefix.to_string(),
            url_for_logs: strip_password(url),
            compare_and_delete: Script::new(COMPARE_AND_DELETE),
            decrement_if_enough: Script::new(DECREMENT_IF_ENOUGH),
        })
    }

    /// A message bus on the same connection manager.
    pub fn bus(&self) -> super::redis_bus::RedisBus {
        super::redis_bus::RedisBus::new(self.connection.clone(), &self.prefix)
    }

    fn key(&self, key: &str) -> String {
        format!("{}{}", self.prefix, key)
    }
}

fn strip_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://***{}", &url[..scheme_end], &url[at..])
        }
        _ => url.to_string(),
    }
}

fn ttl_ms(ttl: Duration) -> u64 {
    (ttl.as_millis() as u64).max(1)
}

#[async_trait]
impl KeyStore for RedisKv {
    async fn get(&self, key: &str) -> Result<Option<String>, KvError> {
        let mut connection = self.connection.clone();
        Ok(connection.get(self.key(key)).await?)
    }

    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<(), KvError> {
        let mut connection = self.connection.clone();
        let () = connection
            .pset_ex(self.key(key), value, ttl_ms(ttl))
            .await?;
        Ok(())
    }

    async fn set_if_absent(&self, key: &str, value: &str, ttl: Duration) -> Result<bool, KvError> {
        let mut connection = self.connection.clone();
        let reply: Option<String> = redis::cmd("SET")
            .arg(self.key(key))
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms(ttl))
            .query_async(&mut connection)
            .await?;
        Ok(reply.is_some())
    }

    async fn compare_and_delete(&self, key: &str, expected: &str) -> Result<bool, KvError> {
        let mut connection = self.connection.clone();
        let deleted: i64 = self
            .compare_and_delete
            .key(self.key(key))
            .arg(expected)
            .invoke_async(&mut connection)
            .await?;
        Ok(deleted == 1)
    }

    async fn take(&self, key: &str) -> Result<Option<String>, KvError> {
        let mut connection = self.connection.clone();
        Ok(connection.get_del(self.key(key)).await?)
    }

    async fn decrement_if_enough(&self, key: &str, by: i64) -> Result<Option<i64>, KvError> {
        let mut connection = self.connection.clone();
        let left: i64 = self
            .decrement_if_enough
            .key(self.key(key))
            .arg(by)
            .invoke_async(&mut connection)
            .await?;
        Ok((left >= 0).then_some(left))
    }

    async fn delete(&self, key: &str) -> Result<(), KvError> {
        let mut connection = self.connection.clone();
        let _: i64 = connection.del(self.key(key)).await?;
        Ok(())
    }

    async fn clear_namespace(&self) -> Result<(), KvError> {
        let mut connection = self.connection.clone();
        let pattern = format!("{}*", self.prefix);
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(500)
                .query_async(&mut connection)
                .await?;
            if !keys.is_empty() {
                let _: i64 = connection.del(keys).await?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    async fn ping(&self) -> Result<(), KvError> {
        let mut connection = self.connection.clone();
        let _: String = redis::cmd("PING").query_async(&mut connection).await?;
        Ok(())
    }

    fn describe(&self) -> String {
        format!(
            "Redis at {} (keys prefixed {:?})",
            self.url_for_logs, self.prefix
        )
    }
}
