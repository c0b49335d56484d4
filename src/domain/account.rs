//! Account credits (A1–A3) and drawing them to fund workspaces (W1, W3).

use serde::{Deserialize, Serialize};

use super::{AccountId, BucketRef, Cause, Credits, DomainError, DrawBucket, Movement, OverflowUnits, Period, Split};

/// When an account renews on its own: monthly on this day and time, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillingAnchor {
    /// 1..=28.
    pub day_of_month: u8,
    /// 0..=23.
    pub hour_utc: u8,
    /// 0..=59.
    pub minute_utc: u8,
}

impl BillingAnchor {
    /// Validates the ranges; `None` when out of range.
    pub fn new(day_of_month: u32, hour_utc: u32, minute_utc: u32) -> Option<BillingAnchor> {
        let in_range = (1..=28).contains(&day_of_month) && hour_utc <= 23 && minute_utc <= 59;
        in_range.then(|| BillingAnchor {
            day_of_month: u8::try_from(day_of_month).unwrap_or(1),
            hour_utc: u8::try_from(hour_utc).unwrap_or(0),
            minute_utc: u8::try_from(minute_utc).unwrap_or(0),
        })
    }
}

/// An account's subscription plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Monthly credits granted in the current period.
    pub monthly_credits: Credits,
    /// Monthly credits from the next renewal on, when a change is pending.
    pub next_monthly_credits: Option<Credits>,
    /// When the account renews on its own.
    pub anchor: Option<BillingAnchor>,
}

impl Plan {
    /// What the next renewal will grant.
    pub fn renewal_monthly_credits(&self) -> Credits {
        self.next_monthly_credits.unwrap_or(self.monthly_credits)
    }
}

/// An account and its own credits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The external id.
    pub id: AccountId,
    /// Monthly credits left this period.
    pub monthly: Credits,
    /// Bought credits left; never expire.
    pub top_up: Credits,
    /// The plan, once set.
    pub plan: Option<Plan>,
    /// The current billing period, once a plan is set.
    pub period: Option<Period>,
    /// When the current period started (unix ms).
    pub period_started_at_ms: Option<i64>,
    /// Counts the monthly credits' refreshes (see `Workspace::monthly_cycle`).
    pub monthly_cycle: i64,
    /// When the scheduler renews the account next (unix ms); `None` without a billing anchor.
    pub next_renewal_at_ms: Option<i64>,
    /// When the account was created (unix ms).
    pub created_at_ms: i64,
}

impl Account {
    /// A new account with no credits and no plan.
    pub fn new(id: AccountId, now_ms: i64) -> Account {
        Account {
            id,
            monthly: Credits::ZERO,
            top_up: Credits::ZERO,
            plan: None,
            period: None,
            period_started_at_ms: None,
            monthly_cycle: 0,
            next_renewal_at_ms: None,
            created_at_ms: now_ms,
        }
    }

    /// Monthly plus top-up credits.
    pub fn balance(&self) -> Credits {
        // Both are bounded far below i64::MAX / 2 by the amount limits; saturate rather than fail.
        self.monthly.checked_add(self.top_up).unwrap_or(Credits::new(i64::MAX).unwrap_or_default())
    }

    /// What the account will hold at its next renewal: plan monthly credits + current top-up (W2).
    pub fn renewal_capacity(&self) -> Credits {
        self.renewal_capacity_after(Split::default())
    }

    /// W2: what the account will hold at its next renewal once `draw` has left it now.
    pub fn renewal_capacity_after(&self, draw: Split) -> Credits {
        let plan = self.plan.as_ref().map_or(Credits::ZERO, Plan::renewal_monthly_credits);
        let top_up = self.top_up.saturating_sub(draw.top_up);
        plan.checked_add(top_up).unwrap_or(top_up)
    }

    /// A3: the first plan starts a period now and grants its monthly credits; a later plan
    /// change takes effect at the next renewal. Returns the credits granted now.
    pub fn set_plan(
        &mut self,
        monthly_credits: Credits,
        anchor: Option<BillingAnchor>,
        now_ms: i64,
    ) -> Result<(Credits, Vec<Movement>), DomainError> {
        let granted = match &mut self.plan {
            Some(plan) => {
                plan.next_monthly_credits = (monthly_credits != plan.monthly_credits).then_some(monthly_credits);
                plan.anchor = anchor;
                Credits::ZERO
            }
            None => {
                self.monthly = self.monthly.checked_add(monthly_credits).ok_or(DomainError::BalanceOverflow)?;
                self.plan = Some(Plan { monthly_credits, next_monthly_credits: None, anchor });
                // With an anchor, the first period is the anchored one under way, so the first
                // renewal falls on the next anchor date.
                self.period = Some(match anchor {
                    Some(anchor) => Period::anchored_containing(now_ms, anchor),
                    None => Period::containing(now_ms),
                });
                self.period_started_at_ms = Some(now_ms);
                monthly_credits
            }
        };
        self.schedule_next_renewal();
        let grant =
            self.movement(BucketRef::External, BucketRef::AccountMonthly(self.id.clone()), granted, Cause::PlanGrant);
        Ok((granted, grant.into_iter().collect()))
    }

    /// When the next period starts, for an account with a billing anchor.
    fn schedule_next_renewal(&mut self) {
        let anchor = self.plan.as_ref().and_then(|plan| plan.anchor);
        self.next_renewal_at_ms = match (anchor, self.period) {
            (Some(anchor), Some(period)) => Some(period.next().starts_at_ms(anchor)),
            _ => None,
        };
    }

    /// R6: the scheduler renews only the period after the current one, once it has started.
    pub fn ensure_due(&self, period: Period, now_ms: i64) -> Result<(), DomainError> {
        let due =
            self.period.map(Period::next) == Some(period) && self.next_renewal_at_ms.is_some_and(|at| at <= now_ms);
        if due { Ok(()) } else { Err(DomainError::RenewalNotDue { requested: period }) }
    }

    /// R1: starts `period`: the monthly credits left expire, the plan's monthly credits (a
    /// pending plan change now applies) are granted, and the monthly cycle moves on.
    pub fn refresh(&mut self, period: Period, now_ms: i64) -> Result<Vec<Movement>, DomainError> {
        let plan = self.plan.as_mut().ok_or(DomainError::NoPlan)?;
        if let Some(current) = self.period
            && period <= current
        {
            return Err(DomainError::PeriodNotAfter { current, requested: period });
        }
        if let Some(next) = plan.next_monthly_credits.take() {
            plan.monthly_credits = next;
        }
        let grant = plan.monthly_credits;
        let expired = self.monthly;
        let id = self.id.clone();
        let movements = [
            self.movement(BucketRef::AccountMonthly(id.clone()), BucketRef::Expired, expired, Cause::Expiry),
            self.movement(BucketRef::External, BucketRef::AccountMonthly(id), grant, Cause::PlanGrant),
        ];
        self.monthly = grant;
        self.period = Some(period);
        self.period_started_at_ms = Some(now_ms);
        self.monthly_cycle += 1;
        self.schedule_next_renewal();
        Ok(movements.into_iter().flatten().collect())
    }

    /// A2: bought credits go to the top-up balance.
    pub fn add_purchase(&mut self, amount: Credits) -> Result<Vec<Movement>, DomainError> {
        self.top_up = self.top_up.checked_add(amount).ok_or(DomainError::BalanceOverflow)?;
        let purchase =
            self.movement(BucketRef::External, BucketRef::AccountTopUp(self.id.clone()), amount, Cause::Purchase);
        Ok(purchase.into_iter().collect())
    }

    /// Draws `amount` into `to`, monthly credits first, then top-up (W1, W3, A1); all or nothing.
    pub fn withdraw(
        &mut self,
        amount: Credits,
        to: &BucketRef,
        cause: Cause,
    ) -> Result<(Split, Vec<Movement>), DomainError> {
        let available = self.drawable();
        let split = Split::first_drawn(available, amount)
            .ok_or(DomainError::InsufficientCredits { requested: amount, available: available.total() })?;
        let mut movements = Vec::new();
        for (bucket, part) in split.parts() {
            self.take(bucket, part);
            movements.extend(self.movement(self.bucket(bucket), to.clone(), part, cause));
        }
        Ok((split, movements))
    }

    /// What a draw could take: the monthly credits, then the top-up credits.
    pub fn drawable(&self) -> Split {
        Split::of(self.monthly, self.top_up)
    }

    /// Takes `amount` (at most what `drawable` says) out of one link of the chain.
    pub(super) fn take(&mut self, bucket: DrawBucket, amount: Credits) {
        match bucket {
            DrawBucket::Monthly => self.monthly = self.monthly.saturating_sub(amount),
            DrawBucket::TopUp => self.top_up = self.top_up.saturating_sub(amount),
            DrawBucket::Overflow => debug_assert!(amount.is_zero(), "an account has no overflow pool"),
        }
    }

    /// Returns `amount` to one link of the chain.
    pub(super) fn put_back(&mut self, bucket: DrawBucket, amount: Credits) -> Result<(), DomainError> {
        let part = match bucket {
            DrawBucket::Monthly => &mut self.monthly,
            DrawBucket::TopUp => &mut self.top_up,
            DrawBucket::Overflow => {
                debug_assert!(amount.is_zero(), "an account has no overflow pool");
                return Ok(());
            }
        };
        *part = part.checked_add(amount).ok_or(DomainError::BalanceOverflow)?;
        Ok(())
    }

    /// The journal bucket behind one link of the chain. An account has no overflow pool: its
    /// overflow part is always zero, and zero parts make no movement.
    pub(super) fn bucket(&self, bucket: DrawBucket) -> BucketRef {
        match bucket {
            DrawBucket::Monthly => BucketRef::AccountMonthly(self.id.clone()),
            DrawBucket::TopUp => BucketRef::AccountTopUp(self.id.clone()),
            DrawBucket::Overflow => BucketRef::External,
        }
    }

    fn movement(&self, from: BucketRef, to: BucketRef, amount: Credits, cause: Cause) -> Option<Movement> {
        (!amount.is_zero()).then_some(Movement {
            from,
            to,
            amount,
            cause,
            member: None,
            scope: None,
            part: None,
            units: OverflowUnits::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credits(value: i64) -> Credits {
        Credits::new(value).unwrap()
    }

    fn account() -> Account {
        Account::new(AccountId::parse("alice").unwrap(), 1_000)
    }

    #[test]
    fn first_plan_grants_its_monthly_credits_and_starts_a_period() {
        let mut account = account();
        let (granted, movements) = account.set_plan(credits(1_000), None, 1_000).unwrap();
        assert_eq!(granted, credits(1_000));
        assert_eq!(account.monthly, credits(1_000));
        assert_eq!(account.period, Some(Period::containing(1_000)));
        assert_eq!(movements.len(), 1);
        assert_eq!(movements[0].cause, Cause::PlanGrant);
    }

    #[test]
    fn later_plan_change_waits_for_the_next_renewal() {
        let mut account = account();
        account.set_plan(credits(1_000), None, 1_000).unwrap();
        let (granted, movements) = account.set_plan(credits(300), None, 2_000).unwrap();
        assert_eq!((granted, movements.len()), (Credits::ZERO, 0));
        assert_eq!(account.monthly, credits(1_000));
        let plan = account.plan.as_ref().unwrap();
        assert_eq!(plan.renewal_monthly_credits(), credits(300));
        assert_eq!(account.renewal_capacity(), credits(300));
    }

    #[test]
    fn withdraw_takes_monthly_first_then_top_up_and_refuses_overdraft() {
        let mut account = account();
        account.set_plan(credits(100), None, 1_000).unwrap();
        account.add_purchase(credits(50)).unwrap();
        let to = BucketRef::WorkspaceTopUp(crate::domain::WorkspaceId::parse("w").unwrap());
        let refused = account.withdraw(credits(151), &to, Cause::WorkspaceTopUp);
        assert_eq!(refused, Err(DomainError::InsufficientCredits { requested: credits(151), available: credits(150) }));
        let (draw, movements) = account.withdraw(credits(120), &to, Cause::WorkspaceTopUp).unwrap();
        assert_eq!(draw, Split::of(credits(100), credits(20)));
        assert_eq!(movements.len(), 2);
        assert_eq!((account.monthly, account.top_up), (Credits::ZERO, credits(30)));
    }
}
