//! The enterprise overflow pool (C1 third link, C4): a quota of units per contract period, drawn
//! at a fixed ratio of units per credit by members of a pool-access profile once their
//! allowances are spent, running into overage up to a limit.

use serde::{Deserialize, Serialize};

use super::{Credits, DomainError};

/// Most units per credit (numerator or denominator) a ratio may name.
pub const MAX_RATIO_TERM: i64 = 1_000_000;

/// Units per credit, as a fraction: credits `c` cost `ceil(c × num / den)` units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitRatio {
    /// Numerator, 1..=10^6.
    pub num: i64,
    /// Denominator, 1..=10^6.
    pub den: i64,
}

impl Default for UnitRatio {
    fn default() -> Self {
        UnitRatio { num: 1, den: 1 }
    }
}

impl UnitRatio {
    /// A ratio with both terms in 1..=10^6; `None` otherwise.
    pub fn new(num: i64, den: i64) -> Option<UnitRatio> {
        let term = 1..=MAX_RATIO_TERM;
        (term.contains(&num) && term.contains(&den)).then_some(UnitRatio { num, den })
    }

    /// C4: what `credits` cost, rounded up (never in the caller's favour).
    pub fn units_for(self, credits: Credits) -> i64 {
        let scaled = i128::from(credits.get()) * i128::from(self.num);
        let den = i128::from(self.den.max(1));
        i64::try_from((scaled + den - 1) / den).unwrap_or(i64::MAX)
    }

    /// The most credits whose cost fits in `units`.
    pub fn credits_within(self, units: i64) -> Credits {
        let credits = i128::from(units.max(0)) * i128::from(self.den) / i128::from(self.num.max(1));
        Credits::new(i64::try_from(credits).unwrap_or(i64::MAX)).unwrap_or_default()
    }
}

/// Units of one draw or return, split into quota and overage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverflowUnits {
    /// Units within the quota.
    pub quota: i64,
    /// Units past the quota (billed at true-up).
    pub overage: i64,
}

impl OverflowUnits {
    /// Quota and overage together.
    pub fn total(self) -> i64 {
        self.quota.saturating_add(self.overage)
    }

    /// Whether there are none.
    pub fn is_zero(&self) -> bool {
        self.quota == 0 && self.overage == 0
    }

    /// Part by part sum (saturating: units are bounded by the amount limits).
    pub fn plus(self, other: OverflowUnits) -> OverflowUnits {
        OverflowUnits {
            quota: self.quota.saturating_add(other.quota),
            overage: self.overage.saturating_add(other.overage),
        }
    }

    /// C6: `units` of these, overage first; capped at what there is.
    pub fn last_drawn(self, units: i64) -> OverflowUnits {
        let overage = units.min(self.overage).max(0);
        let quota = units.saturating_sub(overage).min(self.quota).max(0);
        OverflowUnits { quota, overage }
    }
}

/// What one charge holds of the overflow pool, so returns give back exactly what it took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverflowTake {
    /// Units the charge still holds (net of returns).
    pub units: OverflowUnits,
    /// The ratio of its first overflow draw.
    pub ratio: UnitRatio,
    /// The contract period it drew in (see [`OverflowPool::cycle`]).
    pub cycle: i64,
}

impl OverflowTake {
    /// Whether the charge never drew the overflow pool (nothing worth storing).
    pub fn is_none(&self) -> bool {
        *self == OverflowTake::default()
    }

    /// Units to return when the charge's overflow credits go from `held` to `held - back`: the
    /// charge keeps the cost of what it keeps (at its ratio, never more than it took), so a full
    /// return gives back every unit and no rounding creates or destroys one.
    pub fn returning(&mut self, held: Credits, back: Credits) -> OverflowUnits {
        let kept = self.ratio.units_for(held.saturating_sub(back)).min(self.units.total());
        let returned = self.units.last_drawn(self.units.total().saturating_sub(kept));
        self.units.quota -= returned.quota;
        self.units.overage -= returned.overage;
        returned
    }
}

/// The overflow pool of a workspace, as configured and drawn in the current contract period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverflowPool {
    /// Whether it can be drawn at all.
    pub enabled: bool,
    /// Units in the quota.
    pub quota_units: i64,
    /// Units of the quota used this contract period.
    pub quota_used_units: i64,
    /// Units past the quota this contract period.
    pub overage_units: i64,
    /// Units per credit.
    pub ratio: UnitRatio,
    /// Most overage units allowed; `None` is no limit.
    pub overage_limit_units: Option<i64>,
    /// The contract period's label (e.g. "2026"); a new label starts a new period.
    pub period: String,
    /// Counts contract periods; a charge remembers it to know whether its units are still this
    /// period's.
    pub cycle: i64,
    /// When the current contract period started (unix ms).
    pub period_started_at_ms: i64,
    /// Whether OVERAGE_STARTED was written this contract period.
    pub overage_notified: bool,
}

impl OverflowPool {
    /// Units left in the quota.
    pub fn quota_left(&self) -> i64 {
        self.quota_units.saturating_sub(self.quota_used_units).max(0)
    }

    /// Units a draw may still take (quota left plus overage room); `None` without a limit.
    fn units_left(&self) -> Option<i64> {
        let limit = self.overage_limit_units?;
        Some(self.quota_left().saturating_add(limit.saturating_sub(self.overage_units).max(0)))
    }

    /// C2, C4: the most credits a draw could take now.
    pub fn drawable(&self) -> Credits {
        if !self.enabled {
            return Credits::ZERO;
        }
        match self.units_left() {
            Some(units) => self.ratio.credits_within(units),
            None => Credits::new(i64::MAX).unwrap_or_default(),
        }
    }

    /// C4: draws `credits`, quota first, then overage up to the limit; all or nothing.
    pub fn draw(&mut self, credits: Credits) -> Result<OverflowUnits, DomainError> {
        let units = self.ratio.units_for(credits);
        let quota = units.min(self.quota_left());
        let overage = units - quota;
        let overage_after = self.overage_units.checked_add(overage).ok_or(DomainError::BalanceOverflow)?;
        if !self.enabled || self.overage_limit_units.is_some_and(|limit| overage_after > limit) {
            return Err(DomainError::InsufficientCredits { requested: credits, available: self.drawable() });
        }
        self.quota_used_units += quota;
        self.overage_units = overage_after;
        Ok(OverflowUnits { quota, overage })
    }

    /// C6: takes back `units` a charge of this period returns.
    pub fn give_back(&mut self, units: OverflowUnits) {
        self.quota_used_units = self.quota_used_units.saturating_sub(units.quota).max(0);
        self.overage_units = self.overage_units.saturating_sub(units.overage).max(0);
    }

    /// Whether this change starts the period's overage (OVERAGE_STARTED fires once a period).
    pub fn overage_started(&mut self) -> bool {
        let started = self.overage_units > 0 && !self.overage_notified;
        self.overage_notified |= started;
        started
    }

    /// The pool a configuration sets up: a new contract period label (or a first pool) starts a
    /// period with nothing used; the same label keeps what was used and changes later draws only.
    pub fn configure(current: Option<&OverflowPool>, settings: OverflowSettings, now_ms: i64) -> OverflowPool {
        let (quota_used_units, overage_units, cycle, period_started_at_ms, overage_notified) = match current {
            Some(pool) if pool.period == settings.period => (
                pool.quota_used_units,
                pool.overage_units,
                pool.cycle,
                pool.period_started_at_ms,
                pool.overage_notified,
            ),
            Some(pool) => (0, 0, pool.cycle + 1, now_ms, false),
            None => (0, 0, 0, now_ms, false),
        };
        OverflowPool {
            enabled: settings.enabled,
            quota_units: settings.quota_units,
            quota_used_units,
            overage_units,
            ratio: settings.ratio,
            overage_limit_units: settings.overage_limit_units,
            period: settings.period,
            cycle,
            period_started_at_ms,
            overage_notified,
        }
    }
}

/// What `ConfigureOverflowPool` sets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverflowSettings {
    /// Whether it can be drawn.
    pub enabled: bool,
    /// Units in the quota, 0..=10^12.
    pub quota_units: i64,
    /// Units per credit.
    pub ratio: UnitRatio,
    /// Most overage units; `None` is no limit.
    pub overage_limit_units: Option<i64>,
    /// The contract period's label.
    pub period: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credits(value: i64) -> Credits {
        Credits::new(value).unwrap()
    }

    fn pool(quota: i64, limit: Option<i64>, num: i64, den: i64) -> OverflowPool {
        let settings = OverflowSettings {
            enabled: true,
            quota_units: quota,
            ratio: UnitRatio::new(num, den).unwrap(),
            overage_limit_units: limit,
            period: "2026".into(),
        };
        OverflowPool::configure(None, settings, 0)
    }

    #[test]
    fn c4_units_round_up_never_in_the_callers_favour() {
        let ratio = UnitRatio::new(7, 3).unwrap();
        assert_eq!(ratio.units_for(credits(1)), 3);
        assert_eq!(ratio.units_for(credits(3)), 7);
        assert_eq!(UnitRatio::new(1, 1000).unwrap().units_for(credits(1)), 1);
        assert_eq!(ratio.credits_within(10), credits(4));
        assert_eq!(ratio.units_for(credits(4)), 10);
        assert!(UnitRatio::new(0, 1).is_none() && UnitRatio::new(1, 1_000_001).is_none());
    }

    #[test]
    fn c4_draws_take_the_quota_then_overage_up_to_the_limit_exactly() {
        let mut pool = pool(10, Some(5), 1, 1);
        assert_eq!(pool.drawable(), credits(15));
        assert_eq!(pool.draw(credits(12)).unwrap(), OverflowUnits { quota: 10, overage: 2 });
        assert!(pool.overage_started());
        assert!(!pool.overage_started());
        let before = pool.clone();
        assert!(pool.draw(credits(4)).is_err());
        assert_eq!(pool, before);
        assert_eq!(pool.draw(credits(3)).unwrap(), OverflowUnits { quota: 0, overage: 3 });
        assert_eq!(pool.drawable(), Credits::ZERO);
    }

    #[test]
    fn c6_partial_returns_give_back_overage_first_and_a_full_return_gives_back_every_unit() {
        let mut take = OverflowTake {
            units: OverflowUnits { quota: 4, overage: 3 },
            ratio: UnitRatio::new(7, 3).unwrap(),
            cycle: 0,
        };
        let first = take.returning(credits(3), credits(1));
        assert_eq!(first, OverflowUnits { quota: 0, overage: 2 });
        let rest = take.returning(credits(2), credits(2));
        assert_eq!(first.total() + rest.total(), 7);
        assert!(take.units.is_zero());
    }

    #[test]
    fn a_new_contract_period_resets_used_and_overage_and_the_same_one_keeps_them() {
        let mut pool = pool(10, None, 1, 1);
        pool.draw(credits(15)).unwrap();
        let same = OverflowSettings {
            enabled: true,
            quota_units: 20,
            ratio: UnitRatio::new(2, 1).unwrap(),
            overage_limit_units: None,
            period: "2026".into(),
        };
        let kept = OverflowPool::configure(Some(&pool), same.clone(), 5);
        assert_eq!((kept.quota_used_units, kept.overage_units, kept.cycle), (10, 5, 0));
        let next = OverflowPool::configure(Some(&pool), OverflowSettings { period: "2027".into(), ..same }, 5);
        assert_eq!((next.quota_used_units, next.overage_units, next.cycle, next.period_started_at_ms), (0, 0, 1, 5));
    }
}
