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
use crate::defenses::{SwitchBoard, idempotency_key};
use crate::routes;
use crate::store::db::DbSetupError;
use crate::store::memory_kv::MemoryKv;
use crate::store::redis_kv::RedisKv;
use crate::store::{Db, KeyStore, KvError, products};
use crate::telemetry;

/// Everything a request handler may use. Cheap to share: it lives in `web::Data`.
#[derive(Debug)]
pub struct AppState {
    pub db: Db,
    pub kv: Arc<dyn KeyStore>,
    pub switches: Arc<SwitchBoard>,
    pub settings: Arc<Settings>,
    pub session: SessionKeys,
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Database(#[from] DbSetupError),
    #[error("cannot seed the catalogue: {0}")]
    Seed(#[source] sqlx::Error),
    #[error("cannot connect to Redis: {0}")]
    KeyStore(#[from] KvError),
    #[error("cannot listen on {addr}: {source}")]
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
        let listener =
            TcpListener::bind(&state.settings.bind_addr).map_err(|source| StartupError::Bind {
                addr: state.settings.bind_addr.clone(),
                source,
            })?;
        let local = listener.local_addr().map_err(|source| StartupError::Bind {
            addr: state.settings.bind_addr.clone(),
            source,
        })?;
        spawn_key_sweeper(state.clone());
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
    let kv: Arc<dyn KeyStore> = match &settings.redis_url {
        Some(url) => Arc::new(RedisKv::connect(url, &settings.kv_prefix).await?),
        None => Arc::new(MemoryKv::new()),
    };
    tracing::info!(database = ?db.backend(), key_store = %kv.describe(), "stores ready");
    Ok(AppState {
        db,
        kv,
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

/// Removes expired idempotency keys now and then (retention, dead leases).
fn spawn_key_sweeper(state: web::Data<AppState>) {
    let every = state
        .settings
        .idempotency
        .sweep_every
        .max(Duration::from_secs(1));
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        loop {
            ticker.tick().await;
            match idempotency_key::sweep_expired(&state.db).await {
                Ok(0) => {}
                Ok(removed) => tracing::info!(removed, "expired idempotency keys removed"),
                Err(error) => tracing::warn!(%error, "idempotency key sweep failed"),
            }
        }
    });
}

fn run_server(listener: TcpListener, state: web::Data<AppState>) -> Result<Server, std::io::Error> {
    let server = HttpServer::new(move || {
        App::new()
            .wrap(actix_web::middleware::from_fn(
                telemetry::request_id_and_error_log,
            ))
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
