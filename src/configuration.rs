//! Settings (docs/design.md §4): one `clap` struct, every setting a flag and an
//! environment variable with its default, so `flashguard --help` lists them all.
//!
//! Every variable is optional. With neither `DATABASE_URL` nor `REDIS_URL` set the
//! service runs on a SQLite file under `./data/` and an in-process key store.
//! Secrets that are not given are generated at random at start; they are never
//! fixed defaults.

use std::time::Duration;

use clap::{Args, Parser};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};

use crate::store::redis_kv::RedisTarget;

/// Where the embedded SQLite database lives when `DATABASE_URL` is unset.
pub const DEFAULT_SQLITE_PATH: &str = "data/flashguard.db";
const DEFAULT_DATABASE_URL: &str = "sqlite://data/flashguard.db?mode=rwc";

/// Every tunable of the service.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "flashguard",
    version,
    about = "A flash-sale order and payment backend that shows every idempotency defense (幂等性) at work."
)]
pub struct Settings {
    /// `postgres://…` for the real stack, `sqlite://…` for a chosen file.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,
    /// `redis://…`; unset (and no cluster) selects the in-process key store (one instance only).
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// A Redis Cluster's seed nodes, `redis://h:p,redis://h:p,…` (instead of `REDIS_URL`).
    #[arg(long, env = "REDIS_CLUSTER_URLS")]
    pub redis_cluster_urls: Option<String>,
    /// `amqp://user:password@host:port/vhost`: the "order paid" messages go
    /// through RabbitMQ instead of the Redis stream (docs/messaging.md).
    #[arg(long, env = "AMQP_URL")]
    pub amqp_url: Option<String>,
    /// The most unacknowledged messages RabbitMQ hands this instance's
    /// consumer at once (`basic.qos` prefetch).
    #[arg(long = "amqp-prefetch", env = "AMQP_PREFETCH", default_value = "32", value_parser = clap::value_parser!(u16).range(1..))]
    pub amqp_prefetch: u16,
    /// How long one Redis command or connection attempt may take (ms); past
    /// it, it counts as a Redis failure and the breaker opens for 500 ms
    /// (the order path then goes on without the gate, docs/reliability.md).
    #[arg(long = "redis-command-timeout-ms", env = "REDIS_COMMAND_TIMEOUT_MS", default_value = "500", value_parser = positive_millis)]
    pub redis_command_timeout: Duration,
    /// Listen address.
    #[arg(long, env = "BIND_ADDR", default_value = "127.0.0.1:8080")]
    pub bind_addr: String,
    #[command(flatten)]
    pub secrets: Secrets,
    /// How long a login token is valid (s).
    #[arg(long = "login-token-ttl-secs", env = "LOGIN_TOKEN_TTL_SECS", default_value = "43200", value_parser = secs)]
    pub login_token_ttl: Duration,
    /// Prefix of every key this instance writes to the key store (no braces:
    /// the keys' hash tags follow it, docs/scaling.md).
    #[arg(long, env = "KV_PREFIX", default_value = "flashguard:", value_parser = kv_prefix)]
    pub kv_prefix: String,
    /// Database pool size [default: 16 on Postgres, 8 on SQLite].
    #[arg(long, env = "DB_MAX_CONNECTIONS")]
    pub db_max_connections: Option<u32>,
    /// How long a request waits for a database connection before 503 (ms).
    #[arg(long = "db-acquire-timeout-ms", env = "DB_ACQUIRE_TIMEOUT_MS", default_value = "2000", value_parser = millis)]
    pub db_acquire_timeout: Duration,
    /// One deadline per API request for its dependency work (ms; 0: off):
    /// past it the request is answered 503 `dependency_unavailable`, naming
    /// what it waited on (docs/reliability.md).
    #[arg(long = "request-deadline-ms", env = "REQUEST_DEADLINE_MS", default_value = "2500", value_parser = millis)]
    pub request_deadline: Duration,
    /// The database's own bound on one statement (ms; 0: the server's
    /// default): a statement left running by a request that ended holds its
    /// locks and connection no longer than this.
    #[arg(long = "db-statement-timeout-ms", env = "DB_STATEMENT_TIMEOUT_MS", default_value = "10000", value_parser = millis)]
    pub db_statement_timeout: Duration,
    #[command(flatten)]
    pub idempotency: IdempotencySettings,
    #[command(flatten)]
    pub version_lock: VersionLockSettings,
    #[command(flatten)]
    pub payments: PaymentSettings,
    #[command(flatten)]
    pub providers: ProviderSettings,
    #[command(flatten)]
    pub rewards: RewardsSettings,
    #[command(flatten)]
    pub limits: LimitSettings,
    /// How often each instance reconciles the stock gate with the database (s).
    #[arg(long = "gate-reconcile-secs", env = "GATE_RECONCILE_SECS", default_value = "5", value_parser = secs)]
    pub gate_reconcile_every: Duration,
    /// Hot stock in buckets: each product's gate counter split into this many
    /// counters in different hash slots (on a Redis Cluster, different
    /// masters); 1 to 16. Every instance must use the same value
    /// (docs/scaling.md, step 4).
    #[arg(long = "gate-buckets", env = "GATE_BUCKETS", default_value = "1", value_parser = clap::value_parser!(u32).range(1..=16))]
    pub gate_buckets: u32,
    /// How often each instance records its heartbeat in the key store (ms; 0:
    /// off). An instance silent for three beats is taken for dead and its
    /// stock-gate claims are released by the others (docs/scaling.md).
    #[arg(long = "instance-heartbeat-ms", env = "INSTANCE_HEARTBEAT_MS", default_value = "1000", value_parser = millis)]
    pub instance_heartbeat: Duration,
    /// How often each instance reads the shared defense switches (ms).
    #[arg(long = "switches-refresh-ms", env = "SWITCHES_REFRESH_MS", default_value = "500", value_parser = millis)]
    pub switches_refresh_every: Duration,
    /// How old the audit served without the admin token may be (ms): a crowd
    /// of readers costs one run per period.
    #[arg(long = "audit-public-max-age-ms", env = "AUDIT_PUBLIC_MAX_AGE_MS", default_value = "1000", value_parser = millis)]
    pub audit_public_max_age: Duration,
    /// Teaching aid: a pause between reading and writing shared state, applied
    /// only where the defense that closes that race is off (the lab can change it).
    #[arg(long = "race-window-ms", env = "RACE_WINDOW_MS", default_value = "0", value_parser = millis)]
    pub race_window: Duration,
}

/// The three secrets; each one left unset is generated at random at start.
#[derive(Debug, Clone, Args)]
pub struct Secrets {
    /// Bearer token of the admin API [default: random, written to data/generated-secrets.env].
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true, default_value = "", hide_default_value = true, value_parser = secret)]
    pub admin_token: SecretString,
    /// HMAC secret shared with the payment provider [default: random].
    #[arg(long, env = "PSP_SECRET", hide_env_values = true, default_value = "", hide_default_value = true, value_parser = secret)]
    pub psp_secret: SecretString,
    /// Key that signs login tokens [default: random].
    #[arg(long, env = "SESSION_SECRET", hide_env_values = true, default_value = "", hide_default_value = true, value_parser = secret)]
    pub session_secret: SecretString,
    /// Names of the secrets that were generated because their variable was unset.
    #[arg(skip)]
    pub generated: Vec<&'static str>,
}

#[derive(Debug, Clone, Args)]
pub struct IdempotencySettings {
    /// How long a first request holds its key before a retry may take it over (s).
    #[arg(long = "idempotency-lease-secs", env = "IDEMPOTENCY_LEASE_SECS", default_value = "30", value_parser = secs)]
    pub lease: Duration,
    /// How long a completed answer is kept and replayed (s).
    #[arg(long = "idempotency-retention-secs", env = "IDEMPOTENCY_RETENTION_SECS", default_value = "86400", value_parser = secs)]
    pub retention: Duration,
    /// How often expired keys are removed (s).
    #[arg(long = "idempotency-sweep-secs", env = "IDEMPOTENCY_SWEEP_SECS", default_value = "60", value_parser = secs)]
    pub sweep_every: Duration,
    /// Completed answers kept in this instance's memory, in MiB; 0 keeps none
    /// (`src/answer_cache.rs`).
    #[arg(
        long = "local-answer-cache-mb",
        env = "LOCAL_ANSWER_CACHE_MB",
        default_value = "8"
    )]
    pub local_cache_mb: u64,
}

#[derive(Debug, Clone, Args)]
pub struct VersionLockSettings {
    /// Optimistic-lock retries before 503 busy_retry.
    #[arg(
        long = "version-lock-max-retries",
        env = "VERSION_LOCK_MAX_RETRIES",
        default_value = "20"
    )]
    pub max_retries: u32,
    /// Base of the jittered back-off between attempts (ms).
    #[arg(long = "version-lock-backoff-ms", env = "VERSION_LOCK_BACKOFF_MS", default_value = "2", value_parser = millis)]
    pub backoff_base: Duration,
    /// Database transactions on one stock row at once, per instance.
    #[arg(
        long = "per-product-writers",
        env = "PER_PRODUCT_WRITERS",
        default_value = "4"
    )]
    pub per_product_writers: usize,
    /// Group commit: how long a batch of orders (on any products) gathers (ms).
    #[arg(long = "order-batch-window-ms", env = "ORDER_BATCH_WINDOW_MS", default_value = "1", value_parser = millis)]
    pub batch_window: Duration,
    /// Group commit: at most this many orders per transaction (0 or 1: one
    /// order per transaction, no batching).
    #[arg(
        long = "order-batch-max",
        env = "ORDER_BATCH_MAX",
        default_value = "64"
    )]
    pub batch_max: usize,
}

#[derive(Debug, Clone, Args)]
pub struct PaymentSettings {
    /// Lifetime of a one-time payment token (s).
    #[arg(long = "payment-token-ttl-secs", env = "PAYMENT_TOKEN_TTL_SECS", default_value = "900", value_parser = secs)]
    pub token_ttl: Duration,
    /// How long an order lock lives if its holder dies (ms).
    #[arg(long = "order-lock-ttl-ms", env = "ORDER_LOCK_TTL_MS", default_value = "10000", value_parser = millis)]
    pub lock_ttl: Duration,
    /// How long a pay request waits for the order lock before 409 order_locked (ms).
    #[arg(long = "order-lock-wait-ms", env = "ORDER_LOCK_WAIT_MS", default_value = "3000", value_parser = millis)]
    pub lock_wait: Duration,
    /// How long an order may stay unpaid before it is closed and its stock returned (s).
    #[arg(long = "payment-window-secs", env = "PAYMENT_WINDOW_SECS", default_value = "900", value_parser = secs)]
    pub payment_window: Duration,
    /// How often unpaid orders past the window are closed (s).
    #[arg(long = "order-close-every-secs", env = "ORDER_CLOSE_EVERY_SECS", default_value = "30", value_parser = secs)]
    pub close_every: Duration,
    /// Callbacks signed longer ago than this are refused (signature_expired).
    #[arg(skip = Duration::from_secs(300))]
    pub signature_tolerance: Duration,
    /// Factor on the mock provider's redelivery waits (each channel's own schedule).
    #[arg(
        long = "psp-retry-scale",
        env = "PSP_RETRY_SCALE",
        default_value = "1.0"
    )]
    pub psp_retry_scale: f64,
    /// Where the mock provider posts callbacks [default: this server's /api/payments/callback].
    #[arg(long = "psp-callback-url", env = "PSP_CALLBACK_URL")]
    pub psp_callback_url: Option<String>,
}

/// The payment channels' keys and addresses (docs/payments.md, "Channels").
/// A key is PEM text, a path to a PEM file, or (public keys) bare Base64 DER,
/// as Alipay's tools show it. A key pair left unset is generated at start
/// (`psp::keys`); `flashguard` run from the shell keeps it in `data/`.
#[derive(Debug, Clone, Args)]
pub struct ProviderSettings {
    /// The merchant's Alipay app id: a notification for another one is refused.
    #[arg(
        long = "alipay-app-id",
        env = "ALIPAY_APP_ID",
        default_value = "2021000000000000"
    )]
    pub alipay_app_id: String,
    /// Alipay's public key, which verifies its notifications (RSA2) [default: generated].
    #[arg(
        long = "alipay-public-key",
        env = "ALIPAY_PUBLIC_KEY",
        default_value = "",
        hide_default_value = true
    )]
    pub alipay_public_key: String,
    /// The private key the mock Alipay signs with [default: generated with the public key].
    #[arg(long = "mock-alipay-private-key", env = "MOCK_ALIPAY_PRIVATE_KEY", hide_env_values = true, default_value = "", hide_default_value = true, value_parser = secret)]
    pub mock_alipay_private_key: SecretString,
    /// WeChat Pay's platform public key, which verifies its notifications [default: generated].
    #[arg(
        long = "wechatpay-platform-public-key",
        env = "WECHATPAY_PLATFORM_PUBLIC_KEY",
        default_value = "",
        hide_default_value = true
    )]
    pub wechatpay_platform_public_key: String,
    /// The private key the mock WeChat Pay signs with [default: generated with the public key].
    #[arg(long = "mock-wechatpay-private-key", env = "MOCK_WECHATPAY_PRIVATE_KEY", hide_env_values = true, default_value = "", hide_default_value = true, value_parser = secret)]
    pub mock_wechatpay_private_key: SecretString,
    /// The serial number that names the platform key in `Wechatpay-Serial`
    /// [default: derived from the key].
    #[arg(
        long = "wechatpay-platform-serial",
        env = "WECHATPAY_PLATFORM_SERIAL",
        default_value = "",
        hide_default_value = true
    )]
    pub wechatpay_platform_serial: String,
    /// The APIv3 key (32 characters) that decrypts WeChat Pay's resources [default: random].
    #[arg(long = "wechatpay-apiv3-key", env = "WECHATPAY_APIV3_KEY", hide_env_values = true, default_value = "", hide_default_value = true, value_parser = secret)]
    pub wechatpay_apiv3_key: SecretString,
    /// A payment still processing this long after it was created is queried from the provider (s, at least 1).
    #[arg(long = "psp-query-after-secs", env = "PSP_QUERY_AFTER_SECS", default_value = "60", value_parser = positive_secs)]
    pub query_after: Duration,
    /// Where the mock provider sends Alipay and WeChat Pay notifications:
    /// `<base>/api/payments/callback/alipay|wechatpay` [default: this server].
    #[arg(long = "psp-notify-base-url", env = "PSP_NOTIFY_BASE_URL")]
    pub notify_base_url: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct RewardsSettings {
    /// How often the outbox relay and the rewards consumer poll (ms).
    #[arg(long = "outbox-poll-ms", env = "OUTBOX_POLL_MS", default_value = "100", value_parser = millis)]
    pub poll_every: Duration,
    /// A delivered message not acknowledged after this long is delivered again (ms).
    #[arg(long = "rewards-redeliver-after-ms", env = "REWARDS_REDELIVER_AFTER_MS", default_value = "5000", value_parser = millis)]
    pub redeliver_after: Duration,
    /// Whether this instance runs the rewards consumer (false: it publishes
    /// the messages but leaves them to other instances, an API-only node).
    #[arg(long = "rewards-consumer", env = "REWARDS_CONSUMER", default_value_t = true, action = clap::ArgAction::Set)]
    pub consume: bool,
    /// A message whose handling failed this many times goes to the
    /// dead-letter queue (an unreadable one at once).
    #[arg(long = "message-max-deliveries", env = "MESSAGE_MAX_DELIVERIES", default_value = "5", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_deliveries: u32,
    /// The audit expects a paid order's reward after this long (s).
    #[arg(long = "rewards-settle-secs", env = "REWARDS_SETTLE_SECS", default_value = "30", value_parser = secs)]
    pub settle: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct LimitSettings {
    /// Logins per second per client IP, with bursts of ten times that (0: off).
    #[arg(
        long = "rate-limit-login-per-sec",
        env = "RATE_LIMIT_LOGIN_PER_SEC",
        default_value = "10"
    )]
    pub login_per_ip: u32,
    /// Writes (POST, PUT) per second per logged-in user, bursts of ten times that (0: off).
    #[arg(
        long = "rate-limit-writes-per-sec",
        env = "RATE_LIMIT_WRITES_PER_SEC",
        default_value = "20"
    )]
    pub writes_per_user: u32,
    /// Writes per second per client IP, bursts of ten times that (0: off).
    #[arg(
        long = "rate-limit-ip-writes-per-sec",
        env = "RATE_LIMIT_IP_WRITES_PER_SEC",
        default_value = "200"
    )]
    pub writes_per_ip: u32,
    /// A write's whole body must arrive within this long, or 408 (s).
    #[arg(long = "request-body-timeout-secs", env = "REQUEST_BODY_TIMEOUT_SECS", default_value = "10", value_parser = secs)]
    pub body_timeout: Duration,
}

fn secs(value: &str) -> Result<Duration, String> {
    value
        .trim()
        .parse()
        .map(Duration::from_secs)
        .map_err(|_| format!("{value:?} is not a whole number of seconds"))
}

/// At least one second: a period of zero would spin.
fn positive_secs(value: &str) -> Result<Duration, String> {
    secs(value).and_then(|duration| {
        if duration.is_zero() {
            Err(format!("{value:?}: at least 1 second"))
        } else {
            Ok(duration)
        }
    })
}

/// A key prefix without `{` or `}`: a brace in it would become the hash tag of
/// every key, and put them all in one slot of a Redis Cluster.
fn kv_prefix(value: &str) -> Result<String, String> {
    if value.contains(['{', '}']) {
        return Err(format!(
            "{value:?}: no braces, please (they would be every key's hash tag)"
        ));
    }
    Ok(value.to_string())
}

fn millis(value: &str) -> Result<Duration, String> {
    value
        .trim()
        .parse()
        .map(Duration::from_millis)
        .map_err(|_| format!("{value:?} is not a whole number of milliseconds"))
}

fn positive_millis(value: &str) -> Result<Duration, String> {
    match millis(value)? {
        bound if bound.is_zero() => Err("must be at least 1 ms".to_string()),
        bound => Ok(bound),
    }
}

fn secret(value: &str) -> Result<SecretString, String> {
    Ok(SecretString::from(value.trim().to_string()))
}

impl Settings {
    /// The database pool's size and waits.
    pub fn pool_bounds(&self) -> crate::store::PoolBounds {
        crate::store::PoolBounds {
            max_connections: self.pool_size(),
            acquire_timeout: self.db_acquire_timeout,
            statement_timeout: (!self.db_statement_timeout.is_zero())
                .then_some(self.db_statement_timeout),
        }
    }

    /// The request deadline, `None` when off.
    pub fn request_deadline(&self) -> Option<Duration> {
        (!self.request_deadline.is_zero()).then_some(self.request_deadline)
    }

    /// The heartbeat period, `None` when heartbeats are off.
    pub fn heartbeat(&self) -> Option<Duration> {
        (!self.instance_heartbeat.is_zero()).then_some(self.instance_heartbeat)
    }

    /// Every setting at its default, the environment ignored; secrets left
    /// unset. The tests start here and override what they test, so they cannot
    /// drift from the defaults the service runs with.
    pub fn defaults() -> Result<Self, clap::Error> {
        use clap::{CommandFactory, FromArgMatches};
        let command = Self::command().mut_args(|arg| arg.env(None::<&str>));
        let mut settings = Self::from_arg_matches(&command.try_get_matches_from(["flashguard"])?)?;
        settings.treat_empty_as_unset();
        Ok(settings)
    }

    /// Reads the command line and the environment; generates missing secrets.
    /// Exits with clap's message on `--help`, `--version` or a bad value.
    pub fn from_env() -> Self {
        let mut settings = Self::parse();
        settings.treat_empty_as_unset();
        settings.secrets.generate_missing();
        settings
            .providers
            .generate_missing_apiv3_key(&mut settings.secrets.generated);
        settings
    }

    /// `REDIS_URL=` (empty, as docker compose passes an unset `${VAR:-}`) means unset.
    fn treat_empty_as_unset(&mut self) {
        let non_empty = |value: Option<String>| value.filter(|v| !v.trim().is_empty());
        self.redis_url = non_empty(self.redis_url.take());
        self.redis_cluster_urls = non_empty(self.redis_cluster_urls.take());
        self.amqp_url = non_empty(self.amqp_url.take());
        self.payments.psp_callback_url = non_empty(self.payments.psp_callback_url.take());
        self.providers.notify_base_url = non_empty(self.providers.notify_base_url.take());
        if self.database_url.trim().is_empty() {
            self.database_url = DEFAULT_DATABASE_URL.to_string();
        }
    }

    /// The key store asked for: one Redis, a Redis Cluster, or (neither) the
    /// in-process store.
    pub fn redis_target(&self) -> Result<Option<RedisTarget>, String> {
        match (&self.redis_url, &self.redis_cluster_urls) {
            (Some(_), Some(_)) => {
                Err("set REDIS_URL (one Redis) or REDIS_CLUSTER_URLS (a cluster), not both".into())
            }
            (Some(url), None) => Ok(Some(RedisTarget::Node(url.clone()))),
            (None, Some(urls)) => {
                let seeds: Vec<String> = urls
                    .split(',')
                    .map(str::trim)
                    .filter(|url| !url.is_empty())
                    .map(str::to_string)
                    .collect();
                if seeds.is_empty() {
                    return Err("REDIS_CLUSTER_URLS names no node".into());
                }
                Ok(Some(RedisTarget::Cluster(seeds)))
            }
            (None, None) => Ok(None),
        }
    }

    pub fn is_embedded_database(&self) -> bool {
        self.database_url.starts_with("sqlite:")
    }

    /// The pool size: as set, or 8 on SQLite (one writer anyway), 16 on Postgres.
    pub fn pool_size(&self) -> u32 {
        self.db_max_connections
            .unwrap_or(if self.is_embedded_database() { 8 } else { 16 })
    }

    /// The absolute directory of the embedded default's SQLite file, when the
    /// database is the default one (`./data/` under the working directory).
    pub fn embedded_data_dir(&self) -> Option<std::path::PathBuf> {
        if self.database_url != DEFAULT_DATABASE_URL {
            return None;
        }
        let relative = std::path::Path::new(DEFAULT_SQLITE_PATH).parent()?;
        Some(std::env::current_dir().ok()?.join(relative))
    }
}

impl Secrets {
    /// Replaces every empty secret with a fresh random one, noting its name.
    fn generate_missing(&mut self) {
        let generated = &mut self.generated;
        for (name, secret) in [
            ("ADMIN_TOKEN", &mut self.admin_token),
            ("PSP_SECRET", &mut self.psp_secret),
            ("SESSION_SECRET", &mut self.session_secret),
        ] {
            if secret.expose_secret().is_empty() {
                *secret = SecretString::from(random_hex(32));
                generated.push(name);
            }
        }
    }
}

impl ProviderSettings {
    /// A random APIv3 key (32 characters) when none is given, noted as generated.
    pub fn generate_missing_apiv3_key(&mut self, generated: &mut Vec<&'static str>) {
        if self.wechatpay_apiv3_key.expose_secret().is_empty() {
            self.wechatpay_apiv3_key = SecretString::from(random_hex(16));
            generated.push("WECHATPAY_APIV3_KEY");
        }
    }
}

/// `bytes` random bytes as lowercase hex, from the operating system's generator.
pub fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    // ThreadRng is a CSPRNG seeded from the operating system.
    rand::rng().fill_bytes(&mut buffer);
    hex::encode(buffer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_embedded_stack_with_random_secrets() {
        let mut settings = Settings::try_parse_from(["flashguard"]).expect("defaults parse");
        settings.database_url = DEFAULT_DATABASE_URL.into();
        settings.secrets.admin_token = SecretString::from(String::new());
        settings.secrets.generated.clear();
        settings.secrets.generate_missing();
        assert!(settings.secrets.generated.contains(&"ADMIN_TOKEN"));
        assert_eq!(settings.secrets.admin_token.expose_secret().len(), 64);
        assert_eq!(settings.pool_size(), 8);
    }

    #[test]
    fn flags_parse_into_durations_and_bad_numbers_are_refused() {
        let settings = Settings::try_parse_from([
            "flashguard",
            "--idempotency-lease-secs",
            "7",
            "--race-window-ms",
            "150",
        ])
        .expect("flags parse");
        assert_eq!(settings.idempotency.lease, Duration::from_secs(7));
        assert_eq!(settings.race_window, Duration::from_millis(150));
        assert!(
            Settings::try_parse_from(["flashguard", "--idempotency-lease-secs", "soon"]).is_err()
        );
    }

    #[test]
    fn the_redis_command_bound_is_500_ms_unless_set_and_never_zero() {
        let parse = |extra: &[&str]| {
            Settings::try_parse_from(["flashguard"].iter().chain(extra).copied())
                .map(|settings| settings.redis_command_timeout)
        };
        assert_eq!(parse(&[]).ok(), Some(Duration::from_millis(500)));
        let set = parse(&["--redis-command-timeout-ms", "3000"]).ok();
        assert_eq!(set, Some(Duration::from_secs(3)));
        assert!(parse(&["--redis-command-timeout-ms", "0"]).is_err());
    }
}
