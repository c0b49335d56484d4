//! Billing periods, named "YYYY-MM" after the month they start in; ordered as they occur.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::BillingAnchor;

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

    /// The period after this one.
    pub fn next(self) -> Period {
        if self.month == 12 {
            Period { year: self.year + 1, month: 1 }
        } else {
            Period { year: self.year, month: self.month + 1 }
        }
    }

    /// The period before this one.
    pub fn previous(self) -> Period {
        if self.month == 1 {
            Period { year: self.year - 1, month: 12 }
        } else {
            Period { year: self.year, month: self.month - 1 }
        }
    }

    /// When this period starts for an account renewing on `anchor` (unix ms): its month, on
    /// the anchor's day and time, UTC.
    pub fn starts_at_ms(self, anchor: BillingAnchor) -> i64 {
        let month = time::Month::try_from(self.month).unwrap_or(time::Month::January);
        let date =
            time::Date::from_calendar_date(i32::from(self.year), month, anchor.day_of_month).unwrap_or(time::Date::MIN);
        let time = time::Time::from_hms(anchor.hour_utc, anchor.minute_utc, 0).unwrap_or(time::Time::MIDNIGHT);
        let instant = time::PrimitiveDateTime::new(date, time).assume_utc();
        i64::try_from(instant.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
    }

    /// The period an account renewing on `anchor` is in at `unix_ms`: the one whose start is
    /// the latest not after it.
    pub fn anchored_containing(unix_ms: i64, anchor: BillingAnchor) -> Period {
        let month = Period::containing(unix_ms);
        if month.starts_at_ms(anchor) <= unix_ms { month } else { month.previous() }
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
    fn anchored_periods_start_on_the_anchor_day_and_roll_over_the_year() {
        let anchor = BillingAnchor::new(25, 9, 30).unwrap();
        let december = Period::parse("2026-12").unwrap();
        // 2026-12-25T09:30:00Z
        assert_eq!(december.starts_at_ms(anchor), 1_798_191_000_000);
        assert_eq!(december.next(), Period::parse("2027-01").unwrap());
        assert_eq!(december.next().previous(), december);
        assert_eq!(Period::anchored_containing(1_798_191_000_000 - 1, anchor), Period::parse("2026-11").unwrap());
        assert_eq!(Period::anchored_containing(1_798_191_000_000, anchor), december);
    }

    #[test]
    fn the_period_containing_an_instant_is_its_utc_month() {
        // 2026-11-21T23:53:00Z
        assert_eq!(Period::containing(1_795_305_180_000).to_string(), "2026-11");
        assert_eq!(Period::containing(0).to_string(), "1970-01");
    }
}
