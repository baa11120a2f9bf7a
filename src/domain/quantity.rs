//! How many units one order buys: 1 to [`Quantity::MAX`] (a flash sale limits it).

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Quantity(i64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("quantity must be a whole number from 1 to {max}, got {got}", max = Quantity::MAX)]
pub struct QuantityError {
    pub got: i64,
}

impl Quantity {
    pub const MAX: i64 = 10;

    pub fn parse(raw: i64) -> Result<Self, QuantityError> {
        if (1..=Self::MAX).contains(&raw) {
            Ok(Self(raw))
        } else {
            Err(QuantityError { got: raw })
        }
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_one_to_max() {
        assert_eq!(Quantity::parse(1).map(Quantity::get), Ok(1));
        assert_eq!(
            Quantity::parse(Quantity::MAX).map(Quantity::get),
            Ok(Quantity::MAX)
        );
    }

    #[test]
    fn refuses_zero_negative_and_too_many() {
        assert!(Quantity::parse(0).is_err());
        assert!(Quantity::parse(-3).is_err());
        assert!(Quantity::parse(Quantity::MAX + 1).is_err());
    }
}
