//! What the lab keeps between experiments: where this server listens, an HTTP
//! client, and the lock that lets one experiment run at a time. Held by
//! `AppState`; imports only the leaf `causes`. A leaf beside `state`, not inside
//! `lab`: the lab's experiments use the state, so the state may not use the lab
//! (docs/architecture.md, Layers).

use std::sync::OnceLock;
use std::time::Duration;

use crate::causes::Causes;

/// The lab's runner, built once at start-up.
#[derive(Debug)]
pub struct Lab {
    base_url: OnceLock<String>,
    http: reqwest::Client,
    running: tokio::sync::Mutex<()>,
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
            http,
            running: tokio::sync::Mutex::new(()),
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

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The right to run one experiment; `None` while another runs.
    pub fn try_start(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        self.running.try_lock().ok()
    }
}
