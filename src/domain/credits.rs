//! Credits: whole, non-negative, and only ever changed by checked arithmetic.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Largest amount a request may carry (10^12 credits).
pub const MAX_AMOUNT_CREDITS: i64 = 1_000_000_000_000;

/// A non-negative number of credits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Credits(i64);

impl Credits {
    /// No credits.
    pub const ZERO: Credits = Credits(0);

    /// Credits from a stored balance; `None` when negative.
    pub fn new(value: i64) -> Option<Credits> {
        (value >= 0).then_some(Credits(value))
    }

    /// An amount a caller asked for: 1..=10^12.
    pub fn amount(value: i64) -> Option<Credits> {
        (1..=MAX_AMOUNT_CREDITS).contains(&value).then_some(Credits(value))
    }

    /// A size or allowance a caller set: 0..=10^12.
    pub fn setting(value: i64) -> Option<Credits> {
        (0..=MAX_AMOUNT_CREDITS).contains(&value).then_some(Credits(value))
    }

    /// The raw value.
    pub fn get(self) -> i64 {
        self.0
    }

    /// True when zero.
    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// `self + other`, `None` on overflow.
    pub fn checked_add(self, other: Credits) -> Option<Credits> {
        self.0.checked_add(other.0).map(Credits)
    }

    /// `self - other`, `None` when it would go negative.
    pub fn checked_sub(self, other: Credits) -> Option<Credits> {
        self.0.checked_sub(other.0).and_then(Credits::new)
    }

    /// `max(0, self - other)`.
    pub fn saturating_sub(self, other: Credits) -> Credits {
        Credits(self.0.saturating_sub(other.0).max(0))
    }
}

impl TryFrom<i64> for Credits {
    type Error = String;
    fn try_from(value: i64) -> Result<Credits, String> {
        Credits::new(value).ok_or_else(|| format!("credits must not be negative, got {value}"))
    }
}

impl From<Credits> for i64 {
    fn from(credits: Credits) -> i64 {
        credits.0
    }
}

impl fmt::Display for Credits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_one_to_ten_to_the_twelfth() {
        assert_eq!(Credits::amount(0), None);
        assert_eq!(Credits::amount(-1), None);
        assert_eq!(Credits::amount(1), Some(Credits(1)));
        assert_eq!(Credits::amount(MAX_AMOUNT_CREDITS), Some(Credits(MAX_AMOUNT_CREDITS)));
        assert_eq!(Credits::amount(MAX_AMOUNT_CREDITS + 1), None);
    }

    #[test]
    fn subtraction_never_goes_negative() {
        assert_eq!(Credits(3).checked_sub(Credits(4)), None);
        assert_eq!(Credits(3).saturating_sub(Credits(4)), Credits::ZERO);
        assert_eq!(Credits(i64::MAX).checked_add(Credits(1)), None);
    }
}
