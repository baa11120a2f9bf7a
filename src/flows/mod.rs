//! The business steps, composing the defenses in the order they apply.

pub mod audit;
pub mod closing;
pub mod orders;
pub mod payments;
pub mod rewards;
