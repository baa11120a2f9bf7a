//! [`KeyStore`] on Redis: one multiplexed connection manager per thread
//! (it reconnects by itself; see `redis_connection`), and Lua scripts where a check and a write must be
//! one atomic step.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManagerConfig;
use redis::{AsyncCommands, Script};

use super::kv::{Claim, Door, DoorAnswer, GateKeys, KeyStore, KvError, Reconcile};
use super::redis_connection::{BoundedConnection, Target};

// [lesson redis::compare_and_delete]
/// The Redis the key store runs on (configuration.rs reads it from the environment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One server (`REDIS_URL`).
    Node(String),
    /// A cluster's seed nodes (`REDIS_CLUSTER_URLS`).
    Cluster(Vec<String>),
}

/// Deletes the key only when it still holds the caller's value.
const COMPARE_AND_DELETE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;
// [/lesson]

// [lesson redis::claim_and_decrement]
/// The stock gate: repeat check before stock, decrement only if enough, and the
/// claim recorded three times: its own key (refuses a repeat), a member of the
/// product's pending set (for the reconciliation, until its lease ends) and of
/// its placing set (until the order commits or fails), both scored by expiry.
/// KEYS: counter, claim, pending, placing. ARGV: by, ttl ms, member, expires
/// at (ms), now (ms). Returns left stock, or -1 short, -2 repeat, -3 not
/// loaded, or -3 - n: short while n other claims are still placing their order.
const CLAIM_AND_DECREMENT: &str = r#"
if redis.call('EXISTS', KEYS[2]) == 1 then
  return -2
end
local stock = tonumber(redis.call('GET', KEYS[1]))
if stock == nil then
  return -3
end
local by = tonumber(ARGV[1])
if stock < by then
  local held = redis.call('ZCOUNT', KEYS[4], '(' .. ARGV[5], '+inf')
  if held > 0 then
    return -3 - held
  end
  return -1
end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[3])
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[3])
return redis.call('DECRBY', KEYS[1], by)
"#;

/// Gives a claim back: the stock returns only if the claim was still there.
/// KEYS: counter, claim, pending, placing. ARGV: by, member.
const RELEASE_CLAIM: &str = r#"
if redis.call('DEL', KEYS[2]) == 1 then
  redis.call('ZREM', KEYS[3], ARGV[2])
  redis.call('ZREM', KEYS[4], ARGV[2])
  redis.call('INCRBY', KEYS[1], ARGV[1])
  return 1
end
return 0
"#;

/// The reconciliation: drops the claims whose lease ended or whose instance
/// is gone (from both sets), then counter = database stock − units of the
/// remaining claims without an order. A member is `<units>|<user>:<key>@<instance>`.
/// KEYS: counter, pending, placing. ARGV: stock, now (ms), number of live
/// instances (-1: unknown), the live instances..., the committed claims...
const RECONCILE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then
  return false
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[2])
local live_count = tonumber(ARGV[3])
local live = {}
for i = 4, 3 + math.max(live_count, 0) do
  live[ARGV[i]] = true
end
local committed = {}
for i = 4 + math.max(live_count, 0), #ARGV do
  committed[ARGV[i]] = true
end
local pending = 0
for _, member in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  local claim, instance = string.match(member, '^(.*)@([^@]*)$')
  if claim == nil then
    claim = member
  end
  if live_count >= 0 and instance ~= nil and not live[instance] then
    redis.call('ZREM', KEYS[2], member)
    redis.call('ZREM', KEYS[3], member)
  elseif not committed[claim] then
    pending = pending + (tonumber(string.match(member, '^(%d+)|')) or 1)
  end
end
local value = math.max(0, tonumber(ARGV[1]) - pending)
redis.call('SET', KEYS[1], value)
return value
"#;

/// An instance's heartbeat: ZADD its beat, forget the lapsed, list the live.
/// KEYS: registry. ARGV: instance, now (ms), lapsed before (ms).
const BEAT: &str = r#"
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3])
return redis.call('ZRANGE', KEYS[1], 0, -1)
"#;
// [/lesson]

// [lesson redis::cached_or_short]
/// The front door in one round trip: a replay's cached answer, or a loser's
/// "sold out" decided on the gate's counter — cached for its retry only when
/// no claim is still placing its order (else units may come back).
/// KEYS: cached answer, counter, placing ('' when not asked). ARGV: need,
/// refusal ('': do not cache), ttl ms, now ms.
/// Returns {'cached', answer} | {'short'} | {'placing', claims held} | {'open'}.
const CACHED_OR_SHORT: &str = r#"
if KEYS[1] ~= '' then
  local cached = redis.call('GET', KEYS[1])
  if cached then
    return {'cached', cached}
  end
end
if KEYS[2] ~= '' then
  local left = tonumber(redis.call('GET', KEYS[2]))
  if left ~= nil and left < tonumber(ARGV[1]) then
    if KEYS[3] ~= '' then
      local held = redis.call('ZCOUNT', KEYS[3], '(' .. ARGV[4], '+inf')
      if held > 0 then
        return {'placing', tostring(held)}
      end
    end
    if KEYS[4] ~= '' and redis.call('EXISTS', KEYS[4]) == 1 then
      return {'open'}
    end
    if KEYS[1] ~= '' and ARGV[2] ~= '' then
      redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
    end
    return {'short'}
  end
end
return {'open'}
"#;

/// A short gate's refusal, on the key's own slot (its cached answer and its
/// in-flight mark share the `{u<id>}` hash tag): an answer already cached
/// wins, a key still in flight stays open, else the refusal is cached.
/// KEYS[2], the mark, is absent when the door does not ask it.
const STORE_REFUSAL: &str = r#"
local cached = redis.call('GET', KEYS[1])
if cached then
  return {'cached', cached}
end
if KEYS[2] and redis.call('EXISTS', KEYS[2]) == 1 then
  return {'open'}
end
if ARGV[1] ~= '' then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return {'short'}
"#;
// [/lesson]

/// What the front door's scripts returned.
fn door_answer(answer: Vec<String>) -> DoorAnswer {
    match answer.as_slice() {
        [kind, cached] if kind == "cached" => DoorAnswer::Cached(cached.clone()),
        [kind] if kind == "short" => DoorAnswer::Short,
        [kind, held] if kind == "placing" => DoorAnswer::ShortWhilePlacing {
            held: held.parse().unwrap_or(1),
        },
        _ => DoorAnswer::Open,
    }
}

const ADD_IF_PRESENT: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('INCRBY', KEYS[1], ARGV[1])
end
return 0
"#;

#[derive(Clone)]
pub struct RedisKv {
    connection: BoundedConnection,
    prefix: String,
    url_for_logs: String,
    compare_and_delete: Script,
    claim_and_decrement: Script,
    release_claim: Script,
    reconcile: Script,
    add_if_present: Script,
    cached_or_short: Script,
    store_refusal: Script,
    beat: Script,
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
    /// Connects to one Redis or to a cluster (its seed nodes); a command (or a
    /// connection attempt) gives up after `command_bound`.
    pub async fn connect(
        target: &RedisTarget,
        prefix: &str,
        command_bound: Duration,
    ) -> Result<Self, KvError> {
        let (target, url_for_logs) = match target {
            RedisTarget::Node(url) => (
                Target::Node {
                    client: redis::Client::open(url.as_str())?,
                    config: bounded(command_bound),
                },
                strip_password(url),
            ),
            RedisTarget::Cluster(seeds) => (
                Target::Cluster(bounded_cluster(seeds, command_bound)?),
                format!(
                    "cluster {}",
                    seeds
                        .iter()
                        .map(|url| strip_password(url))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            ),
        };
        let connection = BoundedConnection::open(target, command_bound).await?;
        Ok(Self {
            connection,
            prefix: prefix.to_string(),
            url_for_logs,
            compare_and_delete: Script::new(COMPARE_AND_DELETE),
            claim_and_decrement: Script::new(CLAIM_AND_DECREMENT),
            release_claim: Script::new(RELEASE_CLAIM),
            reconcile: Script::new(RECONCILE),
            add_if_present: Script::new(ADD_IF_PRESENT),
            cached_or_short: Script::new(CACHED_OR_SHORT),
            store_refusal: Script::new(STORE_REFUSAL),
            beat: Script::new(BEAT),
        })
    }

    /// A message bus on the same connection manager.
    pub fn bus(&self) -> super::redis_bus::RedisBus {
        super::redis_bus::RedisBus::new(self.connection.clone(), &self.prefix)
    }

    fn key(&self, key: &str) -> String {
        format!("{}{}", self.prefix, key)
    }

    // [lesson redis::cached_or_short_by_slot]
    /// The front door on a cluster: the user's cached answer (`{u<id>}`) and
    /// the product's counter (`{p<id>}`) live in two slots, which one script
    /// may not touch (`CROSSSLOT`). Both are read at once — one round trip of
    /// wall time, on two nodes — and the refusal is stored after, on the
    /// user's slot, by a script that lets an answer cached meanwhile win and
    /// leaves a key still in flight open (`STORE_REFUSAL`). Between the read
    /// and that write the counter may change; the refusal then caches a "sold
    /// out" a moment late, as the one-script door would a moment earlier.
    async fn cached_or_short_by_slot(&self, door: &Door<'_>) -> Result<DoorAnswer, KvError> {
        let (mut answers, mut counters) = (self.connection.clone(), self.connection.clone());
        let cached = async {
            match door.cached_key {
                Some(key) => answers.get::<_, Option<String>>(self.key(key)).await,
                None => Ok(None),
            }
        };
        let counter = async {
            match door.counter_key {
                Some(key) => counters.get::<_, Option<i64>>(self.key(key)).await,
                None => Ok(None),
            }
        };
        let (cached, counter) = tokio::try_join!(cached, counter)?;
        if let Some(cached) = cached {
            return Ok(DoorAnswer::Cached(cached));
        }
        if counter.is_none_or(|left| left >= door.need) {
            return Ok(DoorAnswer::Open);
        }
        let held = self.still_placing(door).await?;
        if held > 0 {
            return Ok(DoorAnswer::ShortWhilePlacing { held });
        }
        self.store_refusal(door).await
    }
    // [/lesson]

    /// How many claims of the door's product are still placing their order.
    async fn still_placing(&self, door: &Door<'_>) -> Result<i64, KvError> {
        let Some(placing) = door.placing_key else {
            return Ok(0);
        };
        let mut connection = self.connection.clone();
        Ok(connection
            .zcount(self.key(placing), format!("({}", door.now_ms), "+inf")
            .await?)
    }

    /// A cluster's keys of this namespace live on every master: `KEYS` is sent
    /// to each of them (the client combines the answers), and `DEL` is split
    /// by slot. (An admin reset, not a hot path.)
    async fn clear_namespace_on_every_master(&self) -> Result<(), KvError> {
        let mut connection = self.connection.clone();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.prefix))
            .query_async(&mut connection)
            .await?;
        for batch in keys.chunks(500) {
            let _: i64 = connection.del(batch).await?;
        }
        Ok(())
    }
}

/// The URL for logs: any password replaced by `***`.
pub(super) fn strip_password(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // Cannot fail for a URL that already has a password (it has a host).
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "(unparsable URL)".to_string(),
    }
}

/// Every wait bounded (docs/reliability.md): a command or a connection attempt
/// gives up after `bound` (`REDIS_COMMAND_TIMEOUT_MS`), and reconnecting backs off 100 ms × 2ⁿ, at most 1 s,
/// so an instance is back within about a second of Redis coming back.
fn bounded(bound: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(bound)
        .set_response_timeout(bound)
        .set_exponent_base(2)
        .set_factor(100)
        .set_max_delay(1_000)
        .set_number_of_retries(2)
}

/// The same bounds on a cluster: `bound` to connect or answer, four retries
/// (a MOVED or ASK redirection is one: after a failover the first request to a
/// moved slot meets the dead node, then the redirection; two retries were seen
/// to run out there — tests/api/redis_cluster.rs, the failover test).
fn bounded_cluster(
    seeds: &[String],
    bound: Duration,
) -> Result<redis::cluster::ClusterClient, KvError> {
    Ok(redis::cluster::ClusterClient::builder(seeds.to_vec())
        .connection_timeout(bound)
        .response_timeout(bound)
        .retries(4)
        .min_retry_wait(50)
        .max_retry_wait(500)
        .build()?)
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

    async fn cached_or_short(&self, door: &Door<'_>) -> Result<DoorAnswer, KvError> {
        if self.connection.is_cluster() {
            return self.cached_or_short_by_slot(door).await;
        }
        let mut connection = self.connection.clone();
        let key = |name: Option<&str>| name.map(|name| self.key(name)).unwrap_or_default();
        let answer: Vec<String> = self
            .cached_or_short
            .key(key(door.cached_key))
            .key(key(door.counter_key))
            .key(key(door.placing_key))
            .key(key(door.in_flight_key))
            .arg(door.need)
            .arg(door.refusal.unwrap_or_default())
            .arg(ttl_ms(door.ttl))
            .arg(door.now_ms)
            .invoke_async(&mut connection)
            .await?;
        Ok(door_answer(answer))
    }

    async fn store_refusal(&self, door: &Door<'_>) -> Result<DoorAnswer, KvError> {
        let Some(cached_key) = door.cached_key else {
            return Ok(DoorAnswer::Short); // the key is not asked: nothing to store
        };
        let mut connection = self.connection.clone();
        let mut invocation = self.store_refusal.key(self.key(cached_key));
        // No empty key for an absent mark: on a cluster it names slot 0.
        if let Some(in_flight) = door.in_flight_key {
            invocation.key(self.key(in_flight));
        }
        let answer: Vec<String> = invocation
            .arg(door.refusal.unwrap_or_default())
            .arg(ttl_ms(door.ttl))
            .invoke_async(&mut connection)
            .await?;
        Ok(door_answer(answer))
    }

    async fn claim_and_decrement(
        &self,
        keys: &GateKeys<'_>,
        by: i64,
        claim_ttl: Duration,
        now_ms: i64,
    ) -> Result<Claim, KvError> {
        let mut connection = self.connection.clone();
        let ttl = ttl_ms(claim_ttl);
        let expires_at = now_ms.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX));
        let answer: i64 = self
            .claim_and_decrement
            .key(self.key(keys.counter))
            .key(self.key(keys.claim))
            .key(self.key(keys.pending))
            .key(self.key(keys.placing))
            .arg(by)
            .arg(ttl)
            .arg(keys.member)
            .arg(expires_at)
            .arg(now_ms)
            .invoke_async(&mut connection)
            .await?;
        Ok(match answer {
            -1 => Claim::Short,
            -2 => Claim::Repeat,
            -3 => Claim::NotLoaded,
            left if left >= 0 => Claim::Taken { left },
            held_code => Claim::ShortWhilePlacing {
                held: -3 - held_code,
            },
        })
    }

    async fn release_claim(&self, keys: &GateKeys<'_>, by: i64) -> Result<bool, KvError> {
        let mut connection = self.connection.clone();
        let released: i64 = self
            .release_claim
            .key(self.key(keys.counter))
            .key(self.key(keys.claim))
            .key(self.key(keys.pending))
            .key(self.key(keys.placing))
            .arg(by)
            .arg(keys.member)
            .invoke_async(&mut connection)
            .await?;
        Ok(released == 1)
    }

    async fn settle_claim(&self, keys: &GateKeys<'_>) -> Result<(), KvError> {
        let mut connection = self.connection.clone();
        let _: i64 = connection.zrem(self.key(keys.placing), keys.member).await?;
        Ok(())
    }

    async fn reconcile_counter(&self, job: &Reconcile<'_>) -> Result<Option<i64>, KvError> {
        let mut connection = self.connection.clone();
        let mut invocation = self.reconcile.key(self.key(job.counter));
        invocation
            .key(self.key(job.pending))
            .key(self.key(job.placing))
            .arg(job.stock)
            .arg(job.now_ms);
        match job.live {
            Some(live) => {
                invocation.arg(live.len());
                for instance in live {
                    invocation.arg(instance);
                }
            }
            None => {
                invocation.arg(-1);
            }
        }
        for member in job.committed {
            invocation.arg(member);
        }
        Ok(invocation.invoke_async(&mut connection).await?)
    }

    async fn beat(
        &self,
        registry: &str,
        instance: &str,
        now_ms: i64,
        lapsed_before: i64,
    ) -> Result<Vec<String>, KvError> {
        let mut connection = self.connection.clone();
        Ok(self
            .beat
            .key(self.key(registry))
            .arg(instance)
            .arg(now_ms)
            .arg(lapsed_before)
            .invoke_async(&mut connection)
            .await?)
    }

    async fn live_instances(
        &self,
        registry: &str,
        lapsed_before: i64,
    ) -> Result<Vec<String>, KvError> {
        let mut connection = self.connection.clone();
        Ok(connection
            .zrangebyscore(self.key(registry), lapsed_before, "+inf")
            .await?)
    }

    async fn pending_members(
        &self,
        pending_key: &str,
        now_ms: i64,
    ) -> Result<Vec<String>, KvError> {
        let mut connection = self.connection.clone();
        let members: Vec<String> = connection
            .zrangebyscore(self.key(pending_key), format!("({now_ms}"), "+inf")
            .await?;
        Ok(members)
    }

    async fn add_if_present(&self, key: &str, by: i64) -> Result<(), KvError> {
        let mut connection = self.connection.clone();
        let _: i64 = self
            .add_if_present
            .key(self.key(key))
            .arg(by)
            .invoke_async(&mut connection)
            .await?;
        Ok(())
    }

    async fn set_forever(&self, key: &str, value: &str) -> Result<(), KvError> {
        let mut connection = self.connection.clone();
        let () = connection.set(self.key(key), value).await?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), KvError> {
        let mut connection = self.connection.clone();
        let _: i64 = connection.del(self.key(key)).await?;
        Ok(())
    }

    async fn clear_namespace(&self) -> Result<(), KvError> {
        if self.connection.is_cluster() {
            return self.clear_namespace_on_every_master().await;
        }
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
