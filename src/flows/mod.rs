//! The business steps, composing the defenses in the order they apply.

pub mod audit;
pub mod orders;
