//! Parsed values: once a handler holds one of these, it is valid ("parse, don't
//! validate"); and the order and payment state machines.

mod channel;
mod idempotency_key;
mod order_no;
mod quantity;
mod status;
mod username;

pub use channel::Channel;
pub use idempotency_key::{IdempotencyKey, IdempotencyKeyError};
pub use order_no::OrderNo;
pub use quantity::{Quantity, QuantityError};
pub use status::{OrderStatus, PaymentStatus, Transition};
pub use username::{Username, UsernameError};
