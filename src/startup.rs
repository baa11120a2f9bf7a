//! Builds the application: stores, state, routes, the HTTP server. `main` and
//! the tests use the very same code (tests bind port 0).

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use tracing_actix_web::TracingLogger;

use crate::auth::SessionKeys;
use crate::configuration::Settings;
use crate::defenses::{SwitchBoard, idempotency_key, stock_gate};
use crate::flows::rewards::Faults;
use crate::flows::{closing, rewards};
use crate::psp::MockProvider;
use crate::store::bus::MemoryBus;
use crate::store::db::DbSetupError;
use crate::store::memory_kv::MemoryKv;
use crate::store::redis_kv::RedisKv;
use crate::store::{Db, KeyStore, KvError, MessageBus, products};
use crate::telemetry;
use crate::{metrics, routes};

/// Everything a request handler may use. Cheap to share: it lives in `web::Data`.
#[derive(Debug)]
pub struct AppState {
    pub db: Db,
    pub kv: Arc<dyn KeyStore>,
    pub bus: Arc<dyn MessageBus>,
    pub psp: Arc<MockProvider>,
    pub faults: Faults,
    /// Names this process among several instances (its consumer name on the bus).
    pub instance_id: String,
    pub switches: Arc<SwitchBoard>,
    pub settings: Arc<Settings>,
    pub session: SessionKeys,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// Per-product admission to the stock row (version_lock).
    pub row_admission: crate::defenses::version_lock::RowAdmission,
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Database(#[from] DbSetupError),
    #[error("cannot seed the catalogue: {0}")]
    Seed(#[source] sqlx::Error),
    #[error("cannot connect to Redis: {0}")]
    KeyStore(#[from] KvError),
    #[error("cannot load the stock gate: {0}")]
    Gate(String),
    #[error(
        "cannot listen on {addr}: {source} (another flashguard running? choose a port with BIND_ADDR=127.0.0.1:8081)"
    )]
    Bind {
        addr: String,
        source: std::io::Error,
    },
}

pub struct Application {
    port: u16,
    host: String,
    server: Server,
    state: web::Data<AppState>,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let state = web::Data::new(build_state(settings).await?);
        stock_gate::load(&state, stock_gate::Load::OnlyMissing)
            .await
            .map_err(|error| StartupError::Gate(error.to_string()))?;
        let listener =
            TcpListener::bind(&state.settings.bind_addr).map_err(|source| StartupError::Bind {
                addr: state.settings.bind_addr.clone(),
                source,
            })?;
        let local = listener.local_addr().map_err(|source| StartupError::Bind {
            addr: state.settings.bind_addr.clone(),
            source,
        })?;
        state
            .psp
            .set_callback_url(callback_url(&state.settings, &local));
        spawn_background_work(state.clone());
        let server = run_server(listener, state.clone()).map_err(|source| StartupError::Bind {
            addr: state.settings.bind_addr.clone(),
            source,
        })?;
        Ok(Self {
            port: local.port(),
            host: local.ip().to_string(),
            server,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }

    /// The shared state, so that tests can look into the stores.
    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    pub async fn run_until_stopped(self) -> Result<(), std::io::Error> {
        self.server.await
    }
}

async fn build_state(settings: Settings) -> Result<AppState, StartupError> {
    let db = Db::connect(&settings.database_url, settings.db_max_connections).await?;
    db.migrate().await?;
    seed_if_empty(&db).await.map_err(StartupError::Seed)?;
    let (kv, bus): (Arc<dyn KeyStore>, Arc<dyn MessageBus>) = match &settings.redis_url {
        Some(url) => {
            let redis = RedisKv::connect(url, &settings.kv_prefix).await?;
            (Arc::new(redis.clone()), Arc::new(redis.bus()))
        }
        None => (Arc::new(MemoryKv::new()), Arc::new(MemoryBus::new())),
    };
    tracing::info!(database = ?db.backend(), key_store = %kv.describe(), "stores ready");
    Ok(AppState {
        metrics: metrics::handle(),
        row_admission: Default::default(),
        db,
        kv,
        bus,
        psp: Arc::new(MockProvider::new(
            settings.secrets.psp_secret.clone(),
            settings.payments.psp_retry_scale,
        )),
        faults: Faults::default(),
        instance_id: format!("instance-{}", uuid::Uuid::new_v4().simple()),
        switches: Arc::new(SwitchBoard::default()),
        session: SessionKeys::new(settings.secrets.session_secret.clone()),
        settings: Arc::new(settings),
    })
}

/// A fresh database starts with the seed catalogue.
async fn seed_if_empty(db: &Db) -> Result<(), sqlx::Error> {
    if products::count(db).await? == 0 {
        products::insert_all(db, &products::seed_catalogue()).await?;
        tracing::info!("seeded the catalogue");
    }
    Ok(())
}

/// Where the mock provider posts its callbacks: `PSP_CALLBACK_URL`, or this server.
fn callback_url(settings: &Settings, local: &std::net::SocketAddr) -> String {
    if let Some(url) = &settings.payments.psp_callback_url {
        return url.clone();
    }
    let host = if local.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        local.ip().to_string()
    };
    format!("http://{host}:{}/api/payments/callback", local.port())
}

/// The periodic work of every instance; each step is safe on several at once.
fn spawn_background_work(state: web::Data<AppState>) {
    let settings = state.settings.clone();
    every(
        state.clone(),
        settings.idempotency.sweep_every,
        "idempotency key sweep",
        |state| {
            Box::pin(async move {
                idempotency_key::sweep_expired(&state.db)
                    .await
                    .map(|n| n as usize)
                    .map_err(|e| e.to_string())
            })
        },
    );
    every(
        state.clone(),
        settings.payments.close_every,
        "closing unpaid orders",
        |state| {
            Box::pin(async move {
                closing::close_expired_orders(&state)
                    .await
                    .map(|n| n as usize)
                    .map_err(|e| e.to_string())
            })
        },
    );
    every(
        state.clone(),
        settings.rewards.poll_every,
        "outbox relay",
        |state| {
            Box::pin(async move { rewards::relay_once(&state).await.map_err(|e| e.to_string()) })
        },
    );
    every(
        state,
        settings.rewards.poll_every,
        "rewards consumer",
        |state| {
            Box::pin(async move {
                rewards::consume_once(&state)
                    .await
                    .map_err(|e| e.to_string())
            })
        },
    );
}

type Job = fn(
    web::Data<AppState>,
)
    -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<usize, String>> + Send>>;

/// Runs `job` every `period` in the background; logs what it did and its failures.
fn every(state: web::Data<AppState>, period: Duration, name: &'static str, job: Job) {
    let period = period.max(Duration::from_millis(10));
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            match job(state.clone()).await {
                Ok(0) => {}
                Ok(count) => tracing::debug!(job = name, count, "background work done"),
                Err(error) => tracing::warn!(job = name, %error, "background work failed"),
            }
        }
    });
}

fn run_server(listener: TcpListener, state: web::Data<AppState>) -> Result<Server, std::io::Error> {
    let server = HttpServer::new(move || {
        App::new()
            .wrap(actix_web::middleware::from_fn(metrics::observe))
            .wrap(actix_web::middleware::from_fn(telemetry::echo_request_id))
            .wrap(TracingLogger::default())
            .app_data(state.clone())
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
