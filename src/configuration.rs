//! Settings from the environment (DESIGN §4), with the embedded defaults.
//!
//! Every variable is optional. With neither `DATABASE_URL` nor `REDIS_URL` set the
//! service runs on a SQLite file under `./data/` and an in-process key store.
//! Secrets that are not given are generated at random at start; they are never
//! fixed defaults.

use std::time::Duration;

use rand::RngCore;
use secrecy::SecretString;

/// Where the embedded SQLite database lives when `DATABASE_URL` is unset.
pub const DEFAULT_SQLITE_PATH: &str = "data/flashguard.db";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} must be {expected}, got {value:?}")]
    Invalid {
        name: &'static str,
        expected: &'static str,
        value: String,
    },
}

/// Every tunable of the service. Tests build one with [`Settings::for_tests`]-like
/// helpers of their own; `main` uses [`Settings::from_env`].
#[derive(Debug, Clone)]
pub struct Settings {
    /// `postgres://…` or `sqlite://…`.
    pub database_url: String,
    /// `redis://…`; `None` selects the in-process key store.
    pub redis_url: Option<String>,
    pub bind_addr: String,
    pub secrets: Secrets,
    /// Prefix of every key this instance writes to the key store (tests use one
    /// per test so that they can share a Redis server).
    pub kv_prefix: String,
    pub db_max_connections: u32,
    pub idempotency: IdempotencySettings,
    pub version_lock: VersionLockSettings,
    pub payments: PaymentSettings,
    pub rewards: RewardsSettings,
    /// Teaching aid: a pause between reading and writing shared state, applied
    /// only where the defense that closes that race is switched off, so that the
    /// anomaly appears reliably in the lab. Zero by default.
    pub race_window: Duration,
}

#[derive(Debug, Clone)]
pub struct Secrets {
    pub admin_token: SecretString,
    pub psp_secret: SecretString,
    pub session_secret: SecretString,
    /// Names of the secrets that were generated because their variable was unset.
    pub generated: Vec<&'static str>,
}

#[derive(Debug, Clone)]
pub struct IdempotencySettings {
    /// How long a first request holds its key before another may take it over.
    pub lease: Duration,
    /// How long a completed response is kept and replayed.
    pub retention: Duration,
    /// How often expired keys are removed.
    pub sweep_every: Duration,
}

#[derive(Debug, Clone)]
pub struct VersionLockSettings {
    /// Attempts after the first one before answering 503 `busy_retry`.
    pub max_retries: u32,
    /// Base of the jittered back-off between attempts.
    pub backoff_base: Duration,
    /// Database transactions on one product's stock row in flight at once, per
    /// instance: a hot row is fastest with few writers (the rest wait in process).
    pub per_product_writers: usize,
}

#[derive(Debug, Clone)]
pub struct PaymentSettings {
    /// Lifetime of a one-time payment token.
    pub token_ttl: Duration,
    /// How long an order lock lives if its holder dies.
    pub lock_ttl: Duration,
    /// How long a pay request waits for the order lock before 409 `order_locked`.
    pub lock_wait: Duration,
    /// How long an order may stay unpaid before it is closed and its stock returned.
    pub payment_window: Duration,
    /// How often unpaid orders past the window are closed.
    pub close_every: Duration,
    /// Callbacks signed longer ago than this are refused (`signature_expired`).
    pub signature_tolerance: Duration,
    /// The mock provider's retry schedule (Alipay's) is multiplied by this.
    pub psp_retry_scale: f64,
    /// Where the mock provider sends callbacks; default: this server's own address.
    pub psp_callback_url: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RewardsSettings {
    /// How often the outbox relay and the rewards consumer poll.
    pub poll_every: Duration,
    /// A delivered message not acknowledged after this long is delivered again.
    pub redeliver_after: Duration,
}

impl Settings {
    /// Reads the variables of DESIGN §4 plus the tuning knobs documented in the README.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut generated = Vec::new();
        let secrets = Secrets {
            admin_token: secret_var("ADMIN_TOKEN", &mut generated),
            psp_secret: secret_var("PSP_SECRET", &mut generated),
            session_secret: secret_var("SESSION_SECRET", &mut generated),
            generated,
        };
        let database_url = non_empty_var("DATABASE_URL")
            .unwrap_or_else(|| format!("sqlite://{DEFAULT_SQLITE_PATH}?mode=rwc"));
        Ok(Self {
            db_max_connections: parse_var("DB_MAX_CONNECTIONS", default_pool_size(&database_url))?,
            database_url,
            redis_url: non_empty_var("REDIS_URL"),
            bind_addr: non_empty_var("BIND_ADDR").unwrap_or_else(|| "127.0.0.1:8080".into()),
            secrets,
            kv_prefix: non_empty_var("KV_PREFIX").unwrap_or_else(|| "flashguard:".into()),
            idempotency: IdempotencySettings {
                lease: Duration::from_secs(parse_var("IDEMPOTENCY_LEASE_SECS", 30)?),
                retention: Duration::from_secs(parse_var("IDEMPOTENCY_RETENTION_SECS", 86_400)?),
                sweep_every: Duration::from_secs(parse_var("IDEMPOTENCY_SWEEP_SECS", 60)?),
            },
            version_lock: VersionLockSettings {
                max_retries: parse_var("VERSION_LOCK_MAX_RETRIES", 20)?,
                backoff_base: Duration::from_millis(parse_var("VERSION_LOCK_BACKOFF_MS", 2)?),
                per_product_writers: parse_var("PER_PRODUCT_WRITERS", 4)?,
            },
            payments: PaymentSettings {
                token_ttl: Duration::from_secs(parse_var("PAYMENT_TOKEN_TTL_SECS", 900)?),
                lock_ttl: Duration::from_millis(parse_var("ORDER_LOCK_TTL_MS", 10_000)?),
                lock_wait: Duration::from_millis(parse_var("ORDER_LOCK_WAIT_MS", 3_000)?),
                payment_window: Duration::from_secs(parse_var("PAYMENT_WINDOW_SECS", 900)?),
                close_every: Duration::from_secs(parse_var("ORDER_CLOSE_EVERY_SECS", 30)?),
                signature_tolerance: Duration::from_secs(300),
                psp_retry_scale: parse_var("PSP_RETRY_SCALE", 1.0)?,
                psp_callback_url: non_empty_var("PSP_CALLBACK_URL"),
            },
            rewards: RewardsSettings {
                poll_every: Duration::from_millis(parse_var("OUTBOX_POLL_MS", 100)?),
                redeliver_after: Duration::from_millis(parse_var(
                    "REWARDS_REDELIVER_AFTER_MS",
                    5_000,
                )?),
            },
            race_window: Duration::from_millis(parse_var("RACE_WINDOW_MS", 0)?),
        })
    }

    pub fn is_embedded_database(&self) -> bool {
        self.database_url.starts_with("sqlite:")
    }

    /// The absolute directory of the embedded default's SQLite file, when the
    /// database is the default one (`./data/` under the working directory).
    pub fn embedded_data_dir(&self) -> Option<std::path::PathBuf> {
        let default_url = format!("sqlite://{DEFAULT_SQLITE_PATH}?mode=rwc");
        if self.database_url != default_url {
            return None;
        }
        let relative = std::path::Path::new(DEFAULT_SQLITE_PATH).parent()?;
        Some(std::env::current_dir().ok()?.join(relative))
    }
}

fn default_pool_size(database_url: &str) -> u32 {
    if database_url.starts_with("sqlite:") {
        8
    } else {
        16
    }
}

/// The secret in `name`, or a fresh random one (and `name` noted as generated).
fn secret_var(name: &'static str, generated: &mut Vec<&'static str>) -> SecretString {
    match non_empty_var(name) {
        Some(value) => SecretString::from(value),
        None => {
            generated.push(name);
            SecretString::from(random_hex(32))
        }
    }
}

fn non_empty_var(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .filter(|value| !value.trim().is_empty())
}

fn parse_var<T: std::str::FromStr>(name: &'static str, default: T) -> Result<T, ConfigError> {
    match non_empty_var(name) {
        None => Ok(default),
        Some(value) => value.trim().parse().map_err(|_| ConfigError::Invalid {
            name,
            expected: "a non-negative number",
            value,
        }),
    }
}

/// `bytes` random bytes as lowercase hex, from the operating system's generator.
pub fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    // ThreadRng is a CSPRNG seeded from the operating system.
    rand::rng().fill_bytes(&mut buffer);
    hex::encode(buffer)
}
