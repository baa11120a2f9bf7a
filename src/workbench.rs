//! What the lab keeps between experiments: where this server listens, an HTTP
//! client, the lock that lets one experiment or simulation run at a time, and
//! the recent simulations' series (docs/design.md §2.6). Held by
//! `AppState`; imports only the leaf `causes`. A leaf beside `state`, not inside
//! `lab`: the lab's experiments use the state, so the state may not use the lab
//! (docs/architecture.md, Layers).

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::Value;

use crate::causes::Causes;

/// The lab's runner, built once at start-up.
#[derive(Debug)]
pub struct Lab {
    base_url: OnceLock<String>,
    /// The runtime that outlives the HTTP workers (each actix worker runs a
    /// runtime of its own, dropped at shutdown with every task spawned on it).
    runtime: OnceLock<tokio::runtime::Handle>,
    http: reqwest::Client,
    running: Arc<tokio::sync::Mutex<()>>,
    /// Set once the server stops: a simulation still running ends early.
    stopping: tokio::sync::watch::Sender<bool>,
    pub simulations: Simulations,
}

impl Default for Lab {
    fn default() -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(64)
            .build()
            .unwrap_or_else(|error| {
                tracing::error!(error = %Causes(&error), "lab: no HTTP client with a timeout; using the default client");
                reqwest::Client::new()
            });
        Self {
            base_url: OnceLock::new(),
            runtime: OnceLock::new(),
            http,
            running: Arc::new(tokio::sync::Mutex::new(())),
            stopping: tokio::sync::watch::Sender::new(false),
            simulations: Simulations::default(),
        }
    }
}

impl Lab {
    /// Where the attacks are sent: this server, once it listens.
    pub fn set_base_url(&self, url: String) {
        let _ = self.base_url.set(url);
    }

    pub fn base_url(&self) -> Option<&str> {
        self.base_url.get().map(String::as_str)
    }

    pub fn set_runtime(&self, runtime: tokio::runtime::Handle) {
        let _ = self.runtime.set(runtime);
    }

    /// Spawns a lab run on the runtime that outlives the HTTP workers, so that
    /// the server's shutdown can wait for it to put the switches back.
    pub fn spawn<F>(&self, run: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match self.runtime.get() {
            Some(runtime) => runtime.spawn(run),
            None => tokio::spawn(run),
        }
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The right to run one experiment; `None` while another runs.
    pub fn try_start(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        self.running.try_lock().ok()
    }

    /// The same right, for a run that outlives the request that started it
    /// (a simulation runs in a task of its own).
    pub fn try_start_owned(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        self.running.clone().try_lock_owned().ok()
    }

    /// Resolves once the server is stopping.
    pub async fn stopping(&self) {
        let mut stopping = self.stopping.subscribe();
        let _ = stopping.wait_for(|stopping| *stopping).await;
    }

    /// The server stops: a simulation still running is told to end, and this
    /// waits (at most `bound`) until the run that holds the lab has put its
    /// switches back, so that the next start does not find them as a run left them.
    pub async fn stop_runs(&self, bound: Duration) {
        self.stopping.send_replace(true);
        if tokio::time::timeout(bound, self.running.lock())
            .await
            .is_err()
        {
            tracing::warn!("a lab run was still holding the lab when the server stopped");
        }
    }
}

/// How many finished simulations this instance keeps.
const KEPT_SIMULATIONS: usize = 8;

/// The recent simulations of this instance, newest last.
#[derive(Debug, Default)]
pub struct Simulations {
    runs: Mutex<VecDeque<Arc<SimulationLog>>>,
}

impl Simulations {
    /// Opens the log of a new run (forgetting the oldest beyond the kept number).
    pub fn open(&self, request: Value) -> Arc<SimulationLog> {
        let log = Arc::new(SimulationLog::new(request));
        let mut runs = self.runs.lock();
        runs.push_back(log.clone());
        while runs.len() > KEPT_SIMULATIONS {
            runs.pop_front();
        }
        log
    }

    pub fn find(&self, id: &str) -> Option<Arc<SimulationLog>> {
        self.runs.lock().iter().find(|log| log.id == id).cloned()
    }

    /// The runs this instance keeps, oldest first.
    pub fn all(&self) -> Vec<Arc<SimulationLog>> {
        self.runs.lock().iter().cloned().collect()
    }
}

/// One simulation: what was asked, its ticks so far, and how it ended. Readers
/// follow it through `changes` (a counter bumped on every write).
#[derive(Debug)]
pub struct SimulationLog {
    pub id: String,
    pub request: Value,
    written: Mutex<Written>,
    changes: tokio::sync::watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct Written {
    ticks: Vec<Value>,
    end: Option<Value>,
}

/// What a reader has not seen yet: the ticks from its cursor on, and the end
/// once the run is over.
#[derive(Debug)]
pub struct Unread {
    pub ticks: Vec<Value>,
    pub end: Option<Value>,
}

impl SimulationLog {
    fn new(request: Value) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            request,
            written: Mutex::new(Written::default()),
            changes: tokio::sync::watch::Sender::new(0),
        }
    }

    pub fn push_tick(&self, tick: Value) {
        self.written.lock().ticks.push(tick);
        self.changes.send_modify(|count| *count += 1);
    }

    /// The run is over (its `done` event); nothing is written after it.
    pub fn end(&self, end: Value) {
        self.written.lock().end = Some(end);
        self.changes.send_modify(|count| *count += 1);
    }

    pub fn unread(&self, cursor: usize) -> Unread {
        let written = self.written.lock();
        Unread {
            ticks: written.ticks.get(cursor..).unwrap_or_default().to_vec(),
            end: written.end.clone(),
        }
    }

    /// Everything written so far: the ticks and the end, if any.
    pub fn everything(&self) -> Unread {
        self.unread(0)
    }

    /// `running`, or the end's `state` (`done`, `failed`).
    pub fn state(&self) -> String {
        match &self.written.lock().end {
            None => "running".to_string(),
            Some(end) => end["state"].as_str().unwrap_or("done").to_string(),
        }
    }

    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }
}
