//! Builds the application: stores, state, routes, the HTTP server, the
//! background jobs. `main` and the tests use the very same code (tests bind
//! port 0). Nothing in the library imports this module (docs/design.md §3.1).

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use tracing_actix_web::TracingLogger;

use crate::auth::AdminToken;
use crate::causes::Causes;
use crate::configuration::Settings;
use crate::defenses::stock_gate::{GateError, Load};
use crate::flows::orders::batch::{self, OrderBatches};
use crate::flows::{JobError, closing, notifications, rewards, shared};
use crate::psp::keys::{KeyError, ProviderKeys};
use crate::state::AppState;
use crate::store::amqp_bus::{AmqpBus, AmqpConfig, Route};
use crate::store::bus::MemoryBus;
use crate::store::db::DbSetupError;
use crate::store::instance_lock::{self, InstanceLockError, KeyStoreMode};
use crate::store::memory_kv::MemoryKv;
use crate::store::redis_kv::RedisKv;
use crate::store::{Db, KeyStore, KvError, MessageBus, StoreError, products};
use crate::{metrics, routes};

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Database(#[from] DbSetupError),
    #[error("cannot seed the catalogue")]
    Seed(#[source] StoreError),
    #[error("cannot connect to Redis")]
    KeyStore(#[from] KvError),
    #[error("the key store's settings: {0}")]
    KeyStoreSettings(String),
    #[error("cannot connect to RabbitMQ (AMQP_URL)")]
    MessageBus(#[from] crate::store::bus::BusError),
    #[error(transparent)]
    InstanceLock(#[from] InstanceLockError),
    #[error("cannot load the stock gate")]
    Gate(#[from] GateError),
    #[error("cannot read the shared switch board")]
    Switches(#[from] JobError),
    #[error("the payment channels' keys")]
    ProviderKeys(#[from] KeyError),
    #[error(
        "cannot listen on {addr} (another flashguard running? choose a port with BIND_ADDR=127.0.0.1:8081)"
    )]
    Bind {
        addr: String,
        source: std::io::Error,
    },
}

pub struct Application {
    local: SocketAddr,
    server: Server,
    state: web::Data<AppState>,
    order_batches: web::Data<OrderBatches>,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let state = web::Data::new(build_state(settings).await?);
        shared::load(&state).await?;
        state.gate.load(Load::OnlyMissing).await?;
        // Registered before the first claim, so no other instance takes this
        // one's claims for a dead instance's.
        if let Err(error) = state.gate.beat().await {
            tracing::warn!(error = %Causes(&error), "first heartbeat failed; the next one retries");
        }
        let bind_error = |source| StartupError::Bind {
            addr: state.settings.bind_addr.clone(),
            source,
        };
        let listener = TcpListener::bind(&state.settings.bind_addr).map_err(bind_error)?;
        let local = listener.local_addr().map_err(bind_error)?;
        state
            .psp
            .set_callback_url(callback_url(&state.settings, &local));
        let notify_base = state.settings.providers.notify_base_url.clone();
        state
            .psp
            .set_notify_base_url(notify_base.unwrap_or_else(|| own_url(&local)));
        state.lab.set_base_url(own_url(&local));
        // Lab runs outlive requests: they go on this runtime, not a worker's.
        state.lab.set_runtime(tokio::runtime::Handle::current());
        spawn_background_work(&state);
        let order_batches = web::Data::new(order_batches(&state));
        let server =
            run_server(listener, state.clone(), order_batches.clone()).map_err(bind_error)?;
        Ok(Self {
            local,
            server,
            state,
            order_batches,
        })
    }

    pub fn port(&self) -> u16 {
        self.local.port()
    }

    /// Whether the server listens on the loopback interface only.
    pub fn is_loopback(&self) -> bool {
        self.local.ip().is_loopback()
    }

    pub fn url(&self) -> String {
        format!("http://{}:{}", self.local.ip(), self.local.port())
    }

    /// The shared state, so that tests can look into the stores.
    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// The group commit's queue, so that tests can count its batches.
    pub fn order_batches(&self) -> web::Data<OrderBatches> {
        self.order_batches.clone()
    }

    /// Serves until stopped; then a lab run still in progress is ended and its
    /// switches put back (bounded) before the process goes.
    pub async fn run_until_stopped(self) -> Result<(), std::io::Error> {
        let state = self.state();
        let served = self.server.await;
        state.lab.stop_runs(Duration::from_secs(15)).await;
        served
    }
}

async fn build_state(settings: Settings) -> Result<AppState, StartupError> {
    let db = Db::connect(&settings.database_url, settings.pool_bounds()).await?;
    db.migrate().await?;
    seed_if_empty(&db).await.map_err(StartupError::Seed)?;
    let target = settings
        .redis_target()
        .map_err(StartupError::KeyStoreSettings)?;
    let mode = match target {
        Some(_) => KeyStoreMode::Shared,
        None => KeyStoreMode::InProcess,
    };
    let lock = instance_lock::hold(
        &settings.database_url,
        db.backend(),
        mode,
        settings.db_acquire_timeout,
    )
    .await?;
    let (kv, stream): (Arc<dyn KeyStore>, Arc<dyn MessageBus>) = match &target {
        Some(target) => {
            let redis =
                RedisKv::connect(target, &settings.kv_prefix, settings.redis_command_timeout)
                    .await?;
            (Arc::new(redis.clone()), Arc::new(redis.bus()))
        }
        None => (Arc::new(MemoryKv::new()), Arc::new(MemoryBus::new())),
    };
    let bus = match &settings.amqp_url {
        Some(url) => Arc::new(AmqpBus::connect(amqp_config(&settings, url)).await?),
        None => stream,
    };
    tracing::info!(database = ?db.backend(), key_store = %kv.describe(), bus = %bus.describe(), "stores ready");
    let provider_keys = ProviderKeys::resolve(&settings.providers)?;
    let state = AppState::new(settings, db, kv, bus, provider_keys);
    *state.instance_lock.lock() = lock;
    Ok(state)
}

/// How long one exchange with RabbitMQ may take (connect, confirm, ack).
const AMQP_BOUND: Duration = Duration::from_secs(2);

/// RabbitMQ: this instance's names, and the one queue it consumes.
fn amqp_config(settings: &Settings, url: &str) -> AmqpConfig {
    AmqpConfig {
        url: url.to_string(),
        prefix: settings.kv_prefix.clone(),
        prefetch: settings.amqp_prefetch,
        bound: AMQP_BOUND,
        routes: vec![Route {
            topic: rewards::ORDER_PAID_TOPIC,
            group: rewards::REWARDS_GROUP,
        }],
    }
}

/// A fresh database starts with the seed catalogue.
async fn seed_if_empty(db: &Db) -> Result<(), StoreError> {
    if products::count(db.pool()).await? == 0 {
        products::insert_all(db, &products::seed_catalogue()).await?;
        tracing::info!("seeded the catalogue");
    }
    Ok(())
}

/// Where the mock provider posts its callbacks: `PSP_CALLBACK_URL`, or this server.
fn callback_url(settings: &Settings, local: &SocketAddr) -> String {
    match &settings.payments.psp_callback_url {
        Some(url) => url.clone(),
        None => format!("{}/api/payments/callback", own_url(local)),
    }
}

/// How this process reaches itself (loopback when it listens on every address).
fn own_url(local: &SocketAddr) -> String {
    let host = if local.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        local.ip().to_string()
    };
    format!("http://{host}:{}", local.port())
}

/// The periodic work of every instance; each step is safe on several at once.
fn spawn_background_work(state: &web::Data<AppState>) {
    spawn_defense_work(state);
    spawn_session_work(state);
    spawn_message_work(state);
}

/// Keys, gate and switches kept in step with the database.
fn spawn_defense_work(state: &web::Data<AppState>) {
    let settings = &state.settings;
    every(
        state,
        settings.idempotency.sweep_every,
        "idempotency key sweep",
        |state| async move { Ok(state.keys.sweep_expired().await?) },
    );
    every(
        state,
        settings.gate_reconcile_every,
        "stock gate reconciliation",
        |state| async move { Ok(state.gate.reconcile_all().await?) },
    );
    if let Some(period) = settings.heartbeat() {
        every(state, period, "instance heartbeat", |state| async move {
            Ok(state.gate.beat().await?)
        });
    }
    every(
        state,
        settings.switches_refresh_every,
        "shared switches",
        |state| async move { shared::refresh(&state).await },
    );
    every(
        state,
        settings.payments.close_every,
        "closing unpaid orders",
        |state| async move { closing::close_expired_orders(&state).await },
    );
    // 主动查单: twice per query window, so a payment is asked about soon after it is due.
    every(
        state,
        settings.providers.query_after / 2,
        "payment queries",
        |state| async move { notifications::query_unsettled(&state).await },
    );
}

/// Revoked login tokens shared between instances; the rate limiters' memory.
fn spawn_session_work(state: &web::Data<AppState>) {
    every(
        state,
        state.settings.switches_refresh_every,
        "revoked login tokens",
        |state| async move { shared::refresh_revoked_tokens(&state).await },
    );
    every(
        state,
        Duration::from_secs(60),
        "rate limiter cleanup",
        |state| async move {
            state.limits.retain_recent();
            Ok(0)
        },
    );
}

/// The "order paid" messages: relay, consumer, and the reconciliation that
/// publishes again what was lost.
fn spawn_message_work(state: &web::Data<AppState>) {
    let settings = &state.settings;
    every(
        state,
        settings.rewards.poll_every,
        "outbox relay",
        |state| async move { Ok(rewards::relay_once(&state).await? as u64) },
    );
    if settings.rewards.consume {
        every(
            state,
            settings.rewards.poll_every,
            "rewards consumer",
            |state| async move { Ok(rewards::consume_once(&state).await? as u64) },
        );
    }
    let reconcile_every = settings.rewards.settle / 2;
    every(
        state,
        reconcile_every,
        "rewards reconciliation",
        |state| async move { rewards::republish_missing(&state).await },
    );
}

/// Runs `job` every `period` in the background; logs what it did and its failures.
fn every<Job, Fut>(state: &web::Data<AppState>, period: Duration, name: &'static str, job: Job)
where
    Job: Fn(web::Data<AppState>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<u64, JobError>> + Send,
{
    let state = state.clone();
    let period = period.max(Duration::from_millis(10));
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            match job(state.clone()).await {
                Ok(0) => {}
                Ok(count) => tracing::debug!(job = name, count, "background work done"),
                Err(error) => {
                    tracing::warn!(job = name, error = %Causes(&error), "background work failed")
                }
            }
        }
    });
}

/// The group commit of orders (docs/design.md §2.3): one queue, its batches
/// run on the state.
fn order_batches(state: &web::Data<AppState>) -> OrderBatches {
    let settings = &state.settings.version_lock;
    OrderBatches::new(
        settings.batch_window,
        settings.batch_max,
        batch::runner(state.clone().into_inner()),
    )
}

fn run_server(
    listener: TcpListener,
    state: web::Data<AppState>,
    order_batches: web::Data<OrderBatches>,
) -> Result<Server, std::io::Error> {
    let secrets = &state.settings.secrets;
    let session_keys = web::Data::from(state.sessions.clone());
    let limits = web::Data::from(state.limits.clone());
    let admin_token = web::Data::new(AdminToken::new(secrets.admin_token.clone()));
    let metrics_handle = web::Data::new(metrics::handle());
    let server = HttpServer::new(move || {
        App::new()
            .wrap(actix_web::middleware::from_fn(routes::deadline::enforce))
            .wrap(actix_web::middleware::from_fn(routes::remember_lang))
            .wrap(actix_web::middleware::from_fn(routes::trace_when_on))
            .wrap(actix_web::middleware::from_fn(crate::limits::enforce))
            .wrap(actix_web::middleware::from_fn(routes::problems_everywhere))
            .wrap(actix_web::middleware::from_fn(metrics::observe))
            .wrap(actix_web::middleware::from_fn(
                crate::telemetry::echo_request_id,
            ))
            .wrap(TracingLogger::default())
            .app_data(state.clone())
            .app_data(order_batches.clone())
            .app_data(session_keys.clone())
            .app_data(admin_token.clone())
            .app_data(limits.clone())
            .app_data(metrics_handle.clone())
            .app_data(routes::json_config())
            .app_data(routes::path_config())
            .app_data(routes::query_config())
            .configure(routes::configure)
    })
    .listen(listener)?
    .shutdown_timeout(10)
    .run();
    Ok(server)
}
