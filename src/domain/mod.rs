//! Parsed values: once a handler holds one of these, it is valid ("parse, don't validate").

mod idempotency_key;
mod order_no;
mod quantity;
mod username;

pub use idempotency_key::{IdempotencyKey, IdempotencyKeyError};
pub use order_no::OrderNo;
pub use quantity::{Quantity, QuantityError};
pub use username::{Username, UsernameError};

/// The states an order moves through; only conditional updates change them.
pub mod order_status {
    pub const PENDING_PAYMENT: &str = "PENDING_PAYMENT";
    pub const PAID: &str = "PAID";
    pub const CLOSED: &str = "CLOSED";
}
