//! What the group commit of orders passes around (docs/design.md §2.3): a
//! winner's ticket, and what its batch did with it. The batch itself is
//! `flows::orders::run_batch`; the meeting point is [`crate::group_commit`].

use crate::defenses::idempotency_key::{InFlight, Reply};
use crate::domain::IdempotencyKey;
use crate::group_commit::GroupCommit;

/// One buyer who passed the front door and the gate, waiting for a batch.
#[derive(Debug)]
pub struct OrderTicket {
    pub product_id: i64,
    pub user_id: i64,
    pub key: IdempotencyKey,
    pub quantity: i64,
    pub flight: InFlight,
    /// Kept until the batch ends, so that a request cut off meanwhile has its
    /// gate claim settled or given back only then (`StockGate`).
    pub gate_cut_off: Option<std::sync::Arc<crate::deadline::IfCutOff>>,
}

/// What the batch did for one ticket.
#[derive(Debug)]
pub enum Batched {
    /// Committed: the order, its share of the stock, the key row with this answer.
    Placed(Reply),
    /// Committed: the key row with this refusal (not enough stock left).
    Refused(Reply),
    /// The unique index already holds an order for this (user, key).
    Duplicate,
    /// Another request committed this key first.
    AnsweredBefore,
    /// The batch could not run (product gone, sale not open, a database error,
    /// retries exhausted): this request takes the one-order path, which
    /// answers it precisely.
    OnItsOwn,
    /// The batch failed because the database did not answer (no connection,
    /// a statement timed out): the one-order path would only wait for it
    /// again, so this request is answered 503 at once.
    DatabaseUnavailable,
}

/// The queue of the group commit: one for every product, so that orders on
/// many products share a commit too (docs/design.md §2.3).
pub type OrderBatches = GroupCommit<OrderTicket, Batched>;

/// The one queue's id in [`OrderBatches`].
pub const ALL_PRODUCTS: i64 = 0;
