//! Billing periods, named "YYYY-MM" after the month they start in; ordered as they occur.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a string is not a period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PeriodError {
    /// Not of the form `YYYY-MM` with a year 1970..=9999 and a month 01..=12.
    #[error("must be \"YYYY-MM\" (year 1970..=9999, month 01..=12)")]
    IllFormed,
}

/// A billing period: a year and a month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Period {
    year: u16,
    month: u8,
}

impl Period {
    /// Parses `YYYY-MM`.
    pub fn parse(value: &str) -> Result<Period, PeriodError> {
        let bytes = value.as_bytes();
        let well_formed =
            bytes.len() == 7 && bytes[4] == b'-' && bytes[..4].iter().chain(&bytes[5..]).all(u8::is_ascii_digit);
        if !well_formed {
            return Err(PeriodError::IllFormed);
        }
        let year: u16 = value[..4].parse().map_err(|_| PeriodError::IllFormed)?;
        let month: u8 = value[5..].parse().map_err(|_| PeriodError::IllFormed)?;
        if !(1970..=9999).contains(&year) || !(1..=12).contains(&month) {
            return Err(PeriodError::IllFormed);
        }
        Ok(Period { year, month })
    }

    /// The period (UTC month) containing the instant `unix_ms`.
    pub fn containing(unix_ms: i64) -> Period {
        let date = time::OffsetDateTime::from_unix_timestamp(unix_ms.div_euclid(1000))
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        Period { year: u16::try_from(date.year()).unwrap_or(1970), month: u8::from(date.month()) }
    }
}

impl TryFrom<String> for Period {
    type Error = PeriodError;
    fn try_from(value: String) -> Result<Period, PeriodError> {
        Period::parse(&value)
    }
}

impl From<Period> for String {
    fn from(period: Period) -> String {
        period.to_string()
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_round_trip_and_order_as_they_occur() {
        let november = Period::parse("2026-11").unwrap();
        let december = Period::parse("2026-12").unwrap();
        let january = Period::parse("2027-01").unwrap();
        assert_eq!(november.to_string(), "2026-11");
        assert!(november < december && december < january);
    }

    #[test]
    fn malformed_periods_are_refused() {
        for bad in ["", "2026-13", "2026-00", "2026-1", "26-11", "2026/11", "abcd-ef", "2026-11-01"] {
            assert_eq!(Period::parse(bad), Err(PeriodError::IllFormed), "{bad}");
        }
    }

    #[test]
    fn the_period_containing_an_instant_is_its_utc_month() {
        // 2026-11-21T23:53:00Z
        assert_eq!(Period::containing(1_795_305_180_000).to_string(), "2026-11");
        assert_eq!(Period::containing(0).to_string(), "1970-01");
    }
}
