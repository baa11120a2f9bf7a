//! The business steps, composing the defenses in the order they apply
//! (docs/design.md §2.1). Flows work on [`crate::state::AppState`] and answer
//! with [`crate::error::ApiError`]; background jobs answer with [`JobError`].

pub mod audit;
pub mod closing;
pub mod keyed;
pub mod notifications;
pub mod orders;
pub mod payments;
pub mod reconciliation;
pub mod rewards;
pub mod shared;

use crate::store::{KvError, StoreError};

/// Why one round of a background job (closing, relay, consumer, sweep) failed.
/// The job logs it and tries again next round.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    KeyStore(#[from] KvError),
    #[error(transparent)]
    Bus(#[from] crate::store::bus::BusError),
    #[error("cannot serialise a message")]
    Serialize(#[from] serde_json::Error),
    #[error(transparent)]
    Gate(#[from] crate::defenses::stock_gate::GateError),
    #[error("fault injection: {0}")]
    Injected(&'static str),
}

impl From<JobError> for crate::error::ApiError {
    fn from(error: JobError) -> Self {
        match error {
            JobError::Store(error) => Self::Database(error),
            JobError::KeyStore(error) => Self::KeyStore(error),
            JobError::Bus(error) => Self::MessageBus(error),
            JobError::Serialize(error) => Self::Serialize(error),
            JobError::Gate(error) => error.into(),
            JobError::Injected(what) => Self::Internal(what.to_string()),
        }
    }
}
