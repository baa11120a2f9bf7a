//! The state machines (状态机) of orders and payments: the states, and the only
//! transitions allowed between them (docs/design.md §4). The `state_check`
//! defense applies each transition as one conditional update; nothing else moves
//! a status.

use serde::Serialize;
use strum::{Display, EnumIter, EnumString, IntoStaticStr};
use utoipa::ToSchema;

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Display,
    EnumIter,
    EnumString,
    IntoStaticStr,
    ToSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    PendingPayment,
    Paid,
    Closed,
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Display,
    EnumIter,
    EnumString,
    IntoStaticStr,
    ToSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentStatus {
    Processing,
    Succeeded,
    Failed,
}

/// One allowed move of a state machine. Only the constants below exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition<S> {
    pub from: S,
    pub to: S,
}

// [lesson status::transitions]
impl OrderStatus {
    /// The payment succeeded.
    pub const PAY: Transition<Self> = Transition {
        from: Self::PendingPayment,
        to: Self::Paid,
    };
    /// The payment window passed (the stock goes back).
    pub const CLOSE: Transition<Self> = Transition {
        from: Self::PendingPayment,
        to: Self::Closed,
    };
    pub const TRANSITIONS: [Transition<Self>; 2] = [Self::PAY, Self::CLOSE];
}

impl PaymentStatus {
    pub const SUCCEED: Transition<Self> = Transition {
        from: Self::Processing,
        to: Self::Succeeded,
    };
    pub const FAIL: Transition<Self> = Transition {
        from: Self::Processing,
        to: Self::Failed,
    };
    pub const TRANSITIONS: [Transition<Self>; 2] = [Self::SUCCEED, Self::FAIL];
}
// [/lesson]

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Reading a status back from its column (`#[sqlx(try_from = "String")]`).
macro_rules! from_column {
    ($status:ty) => {
        impl TryFrom<String> for $status {
            type Error = strum::ParseError;

            fn try_from(value: String) -> Result<Self, Self::Error> {
                value.parse()
            }
        }
    };
}
from_column!(OrderStatus);
from_column!(PaymentStatus);

#[cfg(test)]
mod tests {
    use strum::IntoEnumIterator;

    use super::*;

    #[test]
    fn statuses_round_trip_through_their_column_text() {
        for status in OrderStatus::iter() {
            assert_eq!(
                OrderStatus::try_from(status.as_str().to_string()),
                Ok(status)
            );
        }
        for status in PaymentStatus::iter() {
            assert_eq!(PaymentStatus::try_from(status.to_string()), Ok(status));
        }
        assert_eq!(OrderStatus::PendingPayment.as_str(), "PENDING_PAYMENT");
        assert!(OrderStatus::try_from("paid".to_string()).is_err());
    }

    #[test]
    fn no_transition_leaves_a_final_state() {
        for transition in OrderStatus::TRANSITIONS {
            assert_eq!(transition.from, OrderStatus::PendingPayment);
            assert_ne!(transition.from, transition.to);
        }
        for transition in PaymentStatus::TRANSITIONS {
            assert_eq!(transition.from, PaymentStatus::Processing);
        }
    }
}
