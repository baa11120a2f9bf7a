//! The mock payment provider (in-process), behaving the way real providers do:
//! it accepts a charge at once and reports the result later, by callback, at least
//! once — possibly duplicated, concurrent, delayed and out of order (a FAILED after
//! the SUCCEEDED). It speaks a Stripe-style webhook scheme: callbacks are signed
//! with an HMAC over timestamp and body with the shared `PSP_SECRET` (see
//! [`signature`]), and any 2xx answer counts as received. A callback that is not
//! answered 2xx is sent again after waits borrowed from Alipay's notification
//! intervals (4m, 10m, 10m, 1h, 2h, 6h, 15h; compressible by `PSP_RETRY_SCALE`) —
//! only the waits: Alipay itself signs with RSA2 and stops only on the body
//! `success` (the callback_dedup lesson compares the schemes).

pub mod signature;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::RwLock;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// How the provider behaves; set with `PUT /api/admin/psp`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PspBehaviour {
    /// How many times the SUCCEEDED callback is delivered (0: none, a test sends its own).
    pub callbacks: u32,
    /// Pause before the first delivery.
    pub delay_ms: u64,
    /// Deliver the copies all at once instead of one after another.
    pub concurrent: bool,
    /// After the successes, also deliver a FAILED event for the same payment (out of order).
    pub failed_after_success: bool,
}

impl Default for PspBehaviour {
    fn default() -> Self {
        Self {
            callbacks: 3,
            delay_ms: 200,
            concurrent: true,
            failed_after_success: false,
        }
    }
}

/// A partial update of the behaviour; unknown fields are refused.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PspBehaviourPatch {
    /// How many times the SUCCEEDED callback is delivered (0: none).
    #[schema(maximum = 20)]
    pub callbacks: Option<u32>,
    /// Delay before the first callback (ms).
    #[schema(maximum = 60_000)]
    pub delay_ms: Option<u64>,
    /// Send the copies at once instead of one after another.
    pub concurrent: Option<bool>,
    /// After SUCCEEDED, send a late FAILED too.
    pub failed_after_success: Option<bool>,
}

pub const MAX_CALLBACKS: u32 = 20;
pub const MAX_DELAY_MS: u64 = 60_000;

impl PspBehaviour {
    /// Applies `patch`, or says which field is out of range.
    pub fn patched(&self, patch: PspBehaviourPatch) -> Result<Self, String> {
        let next = Self {
            callbacks: patch.callbacks.unwrap_or(self.callbacks),
            delay_ms: patch.delay_ms.unwrap_or(self.delay_ms),
            concurrent: patch.concurrent.unwrap_or(self.concurrent),
            failed_after_success: patch
                .failed_after_success
                .unwrap_or(self.failed_after_success),
        };
        if next.callbacks > MAX_CALLBACKS {
            return Err(format!("callbacks must be 0 to {MAX_CALLBACKS}"));
        }
        if next.delay_ms > MAX_DELAY_MS {
            return Err(format!("delay_ms must be 0 to {MAX_DELAY_MS}"));
        }
        Ok(next)
    }
}

/// The callback body (docs/design.md §4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderEvent {
    #[schema(min_length = 1, max_length = 64, pattern = "^[!-~]{1,64}$")]
    pub event_id: String,
    #[schema(min_length = 1, max_length = 64, pattern = "^[!-~]{1,64}$")]
    pub order_no: String,
    #[schema(min_length = 1, max_length = 64, pattern = "^[!-~]{1,64}$")]
    pub payment_no: String,
    #[schema(min_length = 1, max_length = 64, pattern = "^[!-~]{1,64}$")]
    pub provider_txn_id: String,
    pub status: EventStatus,
    pub amount_cents: i64,
}

/// The longest id a provider event may carry.
pub const MAX_EVENT_ID_LEN: usize = 64;

impl ProviderEvent {
    /// Every id is 1 to 64 visible ASCII characters: what a provider sends.
    /// Anything else (a NUL byte, which Postgres cannot store in text) is
    /// refused here, before a query sees it.
    pub fn check(&self) -> Result<(), String> {
        let fields = [
            ("event_id", &self.event_id),
            ("order_no", &self.order_no),
            ("payment_no", &self.payment_no),
            ("provider_txn_id", &self.provider_txn_id),
        ];
        for (name, value) in fields {
            let visible = value.bytes().all(|b| b.is_ascii_graphic());
            if value.is_empty() || value.len() > MAX_EVENT_ID_LEN || !visible {
                return Err(format!(
                    "{name} must be 1 to {MAX_EVENT_ID_LEN} visible ASCII characters"
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventStatus {
    Succeeded,
    Failed,
}

impl EventStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
        }
    }
}

/// What the merchant asks the provider to charge.
#[derive(Debug, Clone)]
pub struct ChargeRequest {
    pub order_no: String,
    pub payment_no: String,
    pub amount_cents: i64,
}

/// The waits between deliveries of one callback, in seconds: Alipay's
/// notification intervals (about 25 hours in all).
pub const RETRY_SCHEDULE_SECS: [u64; 7] = [
    4 * 60,
    10 * 60,
    10 * 60,
    3600,
    2 * 3600,
    6 * 3600,
    15 * 3600,
];

#[derive(Debug)]
pub struct MockProvider {
    behaviour: RwLock<PspBehaviour>,
    secret: SecretString,
    http: reqwest::Client,
    callback_url: OnceLock<String>,
    retry_scale: f64,
}

impl MockProvider {
    /// The provider with the signing secret and retry schedule of `settings`.
    pub fn from_settings(settings: &crate::configuration::Settings) -> Self {
        Self::new(
            settings.secrets.psp_secret.clone(),
            settings.payments.psp_retry_scale,
        )
    }

    pub fn new(secret: SecretString, retry_scale: f64) -> Self {
        Self {
            behaviour: RwLock::new(PspBehaviour::default()),
            secret,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_else(|error| {
                    tracing::error!(%error, "mock provider: no HTTP client with a timeout; using the default client");
                    reqwest::Client::new()
                }),
            callback_url: OnceLock::new(),
            retry_scale: retry_scale.max(0.0),
        }
    }

    /// Where callbacks go; set once the server knows its address.
    pub fn set_callback_url(&self, url: String) {
        let _ = self.callback_url.set(url);
    }

    pub fn behaviour(&self) -> PspBehaviour {
        self.behaviour.read().clone()
    }

    pub fn set_behaviour(&self, behaviour: PspBehaviour) {
        *self.behaviour.write() = behaviour;
    }

    /// Accepts a charge: returns the provider's transaction id at once and
    /// delivers the outcome later by callback.
    pub fn charge(self: &Arc<Self>, charge: ChargeRequest) -> String {
        let provider_txn_id = format!("PSP{}", uuid::Uuid::now_v7().simple());
        let behaviour = self.behaviour();
        let success = self.event(&charge, &provider_txn_id, EventStatus::Succeeded);
        let failure = self.event(&charge, &provider_txn_id, EventStatus::Failed);
        let provider = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(behaviour.delay_ms)).await;
            provider
                .deliver_copies(&success, behaviour.callbacks, behaviour.concurrent)
                .await;
            if behaviour.failed_after_success && behaviour.callbacks > 0 {
                provider.deliver_with_retries(&failure).await;
            }
        });
        provider_txn_id
    }

    fn event(
        &self,
        charge: &ChargeRequest,
        provider_txn_id: &str,
        status: EventStatus,
    ) -> ProviderEvent {
        ProviderEvent {
            event_id: format!("EVT{}", uuid::Uuid::new_v4().simple()),
            order_no: charge.order_no.clone(),
            payment_no: charge.payment_no.clone(),
            provider_txn_id: provider_txn_id.to_string(),
            status,
            amount_cents: charge.amount_cents,
        }
    }

    /// The same event, `copies` times: the provider's at-least-once delivery.
    async fn deliver_copies(
        self: &Arc<Self>,
        event: &ProviderEvent,
        copies: u32,
        concurrent: bool,
    ) {
        if concurrent {
            let tasks: Vec<_> = (0..copies)
                .map(|_| {
                    let (provider, event) = (Arc::clone(self), event.clone());
                    tokio::spawn(async move { provider.deliver_with_retries(&event).await })
                })
                .collect();
            for task in tasks {
                let _ = task.await;
            }
        } else {
            for _ in 0..copies {
                self.deliver_with_retries(event).await;
            }
        }
    }

    /// Delivers until a 2xx answer, pausing along the (scaled) retry schedule.
    async fn deliver_with_retries(&self, event: &ProviderEvent) {
        let Some(url) = self.callback_url.get() else {
            tracing::error!("mock provider has no callback URL");
            return;
        };
        let body = match serde_json::to_string(event) {
            Ok(body) => body,
            Err(error) => {
                tracing::error!(%error, event = %event.event_id, "mock provider cannot serialise a callback");
                return;
            }
        };
        for (attempt, pause) in std::iter::once(0).chain(RETRY_SCHEDULE_SECS).enumerate() {
            tokio::time::sleep(Duration::from_secs_f64(pause as f64 * self.retry_scale)).await;
            let header = signature::sign(&self.secret, signature::now_unix(), &body);
            let answer = self
                .http
                .post(url)
                .header(signature::SIGNATURE_HEADER, header)
                .header("Content-Type", "application/json")
                .body(body.clone())
                .send()
                .await;
            match answer {
                Ok(response) if response.status().is_success() => return,
                Ok(response) => {
                    tracing::warn!(attempt, status = %response.status(), event = %event.event_id, "callback refused; will retry")
                }
                Err(error) => {
                    tracing::warn!(attempt, %error, event = %event.event_id, "callback failed; will retry")
                }
            }
        }
        tracing::error!(event = %event.event_id, "mock provider gave up on a callback");
    }
}
