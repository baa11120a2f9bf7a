//! `AppState`: what the flows work with — the stores, the defenses (each a small
//! struct holding only what it reads), the mock provider and the settings.
//! Built once at start-up and shared through `web::Data`. It imports nothing
//! above it (no route, flow or start-up code), so the module graph stays layered
//! (docs/design.md §3.1).

use std::sync::Arc;

use crate::auth::SessionKeys;
use crate::configuration::Settings;
use crate::defenses::idempotency_key::IdempotencyKeys;
use crate::defenses::order_lock::OrderLocks;
use crate::defenses::payment_token::PaymentTokens;
use crate::defenses::stock_gate::{GateSetup, StockGate};
use crate::defenses::version_lock::VersionLock;
use crate::faults::Faults;
use crate::limits::Limits;
use crate::psp::keys::ProviderKeys;
use crate::psp::{MockProvider, ProviderConfig};
use crate::store::bus::DeliveryCounts;
use crate::store::{Db, KeyStore, MessageBus};
use crate::switches::SwitchBoard;
use crate::workbench::Lab;

#[derive(Debug)]
pub struct AppState {
    pub db: Db,
    pub kv: Arc<dyn KeyStore>,
    pub bus: Arc<dyn MessageBus>,
    pub psp: Arc<MockProvider>,
    /// What verifies the channels' notifications: Alipay's and WeChat Pay's
    /// public keys, the platform serial, the APIv3 key.
    pub provider_keys: Arc<ProviderKeys>,
    pub switches: Arc<SwitchBoard>,
    pub settings: Arc<Settings>,
    pub keys: IdempotencyKeys,
    pub gate: StockGate,
    pub version_lock: VersionLock,
    pub order_locks: OrderLocks,
    pub payment_tokens: PaymentTokens,
    pub faults: Faults,
    /// What the rewards consumer saw: failures per message, redeliveries, dead letters.
    pub deliveries: DeliveryCounts,
    pub lab: Lab,
    /// Signs and checks login tokens (also registered as its own `web::Data`).
    pub sessions: Arc<SessionKeys>,
    /// Request rates and body bounds (also registered as its own `web::Data`).
    pub limits: Arc<Limits>,
    /// The public audit: computed at most once a second (the admin's is fresh).
    pub public_audit: tokio::sync::Mutex<Option<(std::time::Instant, String)>>,
    /// Names this process among several instances (its consumer name on the bus).
    pub instance_id: String,
    /// Held while this instance runs: one in-process key store per database
    /// (`store::instance_lock`).
    pub instance_lock: parking_lot::Mutex<Option<crate::store::instance_lock::InstanceLock>>,
}

/// The defense switches, with the lab's settings.
fn switch_board(settings: &Settings) -> Arc<SwitchBoard> {
    Arc::new(SwitchBoard::new(
        settings.race_window,
        settings.rewards.redeliver_after,
    ))
}

/// What the defenses are built on.
struct Stores<'a> {
    db: &'a Db,
    kv: &'a Arc<dyn KeyStore>,
    switches: &'a Arc<SwitchBoard>,
}

impl Stores<'_> {
    fn idempotency_keys(&self, settings: &Settings) -> IdempotencyKeys {
        let (db, kv, switches) = (self.db.clone(), self.kv.clone(), self.switches.clone());
        IdempotencyKeys::new(db, kv, switches, settings.idempotency.clone())
    }

    fn payment_tokens(&self, settings: &Settings) -> PaymentTokens {
        let (kv, switches) = (self.kv.clone(), self.switches.clone());
        PaymentTokens::new(kv, switches, settings.payments.token_ttl)
    }

    /// The stock gate of this instance.
    fn stock_gate(&self, settings: &Settings, instance_id: &str) -> StockGate {
        StockGate::new(GateSetup {
            db: self.db.clone(),
            kv: self.kv.clone(),
            switches: self.switches.clone(),
            // A gate claim lives as long as a key's lease.
            claim_ttl: settings.idempotency.lease,
            // Short: every pending claim carries it.
            instance: instance_id.chars().take(21).collect(),
            heartbeat: settings.heartbeat(),
            buckets: settings.gate_buckets,
        })
    }
}

impl AppState {
    /// Builds every defense from the stores and the settings.
    pub fn new(
        settings: Settings,
        db: Db,
        kv: Arc<dyn KeyStore>,
        bus: Arc<dyn MessageBus>,
        provider_keys: ProviderKeys,
    ) -> Self {
        let switches = switch_board(&settings);
        let stores = Stores {
            db: &db,
            kv: &kv,
            switches: &switches,
        };
        let instance_id = format!("instance-{}", uuid::Uuid::new_v4().simple());
        Self {
            keys: stores.idempotency_keys(&settings),
            gate: stores.stock_gate(&settings, &instance_id),
            version_lock: VersionLock::new(switches.clone(), settings.version_lock.clone()),
            order_locks: OrderLocks::new(kv.clone(), switches.clone(), &settings.payments),
            payment_tokens: stores.payment_tokens(&settings),
            psp: Arc::new(mock_provider(&settings, &provider_keys, &db)),
            provider_keys: Arc::new(provider_keys),
            faults: Faults::default(),
            deliveries: DeliveryCounts::default(),
            lab: Lab::default(),
            limits: Arc::new(Limits::new(&settings.limits)),
            public_audit: Default::default(),
            sessions: Arc::new(SessionKeys::from_settings(&settings)),
            instance_id,
            instance_lock: Default::default(),
            settings: Arc::new(settings),
            switches,
            db,
            kv,
            bus,
        }
    }
}

/// The in-process payment provider, signing with the mock's keys.
fn mock_provider(settings: &Settings, keys: &ProviderKeys, db: &Db) -> MockProvider {
    let config = ProviderConfig {
        secret: settings.secrets.psp_secret.clone(),
        keys: keys.clone(),
        alipay_app_id: settings.providers.alipay_app_id.clone(),
        retry_scale: settings.payments.psp_retry_scale,
    };
    MockProvider::new(config, db.clone())
}
