//! Workspace pools: set-up and funding (W1–W3).

use serde::{Deserialize, Serialize};

use super::{
    Account, AccountId, BucketRef, Cause, Credits, DomainError, DrawBucket, Member, Movement, OverflowPool,
    OverflowUnits, Role, Split, WorkspaceId,
};

/// When LOW_BALANCE fires for a workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LowBalanceThresholds {
    /// Monthly pool at or below this is low.
    pub monthly_pool: Credits,
    /// Top-up pool at or below this is low.
    pub top_up_pool: Credits,
    /// Member remaining at or below this percent of the allowance is low.
    pub member_remaining_percent: u8,
    /// Overflow quota with this many units or fewer left is low.
    #[serde(default)]
    pub overflow_units: i64,
}

impl Default for LowBalanceThresholds {
    /// Defaults: pools at 0 credits (fires when a pool is emptied), members at 10 % left.
    fn default() -> Self {
        LowBalanceThresholds {
            monthly_pool: Credits::ZERO,
            top_up_pool: Credits::ZERO,
            member_remaining_percent: 10,
            overflow_units: 0,
        }
    }
}

/// A team workspace and its two pools.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workspace {
    /// The id.
    pub id: WorkspaceId,
    /// The owning account.
    pub owner: AccountId,
    /// What the monthly pool receives each renewal.
    pub pool_size: Credits,
    /// What the monthly pool received this period (raising the size tops it up to the new size).
    pub funded_pool_size: Credits,
    /// False after a failed renewal until funded again.
    pub monthly_pool_funded: bool,
    /// Credits in the monthly pool.
    pub monthly_pool: Credits,
    /// Credits in the top-up pool.
    pub top_up_pool: Credits,
    /// Counts the monthly pool's renewals; a draw remembers it to know whether its monthly
    /// credits would have expired.
    pub monthly_cycle: i64,
    /// Low-balance thresholds.
    pub thresholds: LowBalanceThresholds,
    /// The enterprise overflow pool, once configured (C4).
    #[serde(default)]
    pub overflow: Option<OverflowPool>,
    /// Credits the overflow pool has lent and not got back: minus its journal balance (L1).
    #[serde(default)]
    pub overflow_lent: Credits,
    /// When created (unix ms).
    pub created_at_ms: i64,
    /// How many memberships [`admit`](Self::admit) has begun; the newest one's number.
    #[serde(default)]
    pub memberships: i64,
}

/// What a pool size change did now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSizeChange {
    /// Moved from the owner's account into the monthly pool now.
    pub funded: Credits,
    /// Where it came from.
    pub draw: Split,
}

impl Workspace {
    /// A new workspace with empty pools.
    pub fn new(id: WorkspaceId, owner: AccountId, now_ms: i64) -> Workspace {
        Workspace {
            id,
            owner,
            pool_size: Credits::ZERO,
            funded_pool_size: Credits::ZERO,
            monthly_pool_funded: true,
            monthly_pool: Credits::ZERO,
            top_up_pool: Credits::ZERO,
            monthly_cycle: 0,
            thresholds: LowBalanceThresholds::default(),
            overflow: None,
            overflow_lent: Credits::ZERO,
            created_at_ms: now_ms,
            memberships: 0,
        }
    }

    /// M1: a new membership of `account_id` (any role but OWNER), numbered after every earlier
    /// one, so an account removed and added again starts a membership of its own.
    pub fn admit(&mut self, account_id: AccountId, role: Role, now_ms: i64) -> Result<Member, DomainError> {
        let mut member = Member::join(self.id.clone(), account_id, role, now_ms)?;
        self.memberships = self.memberships.saturating_add(1);
        member.membership = self.memberships;
        Ok(member)
    }

    /// W1, W2: sets the pool size. Raising it above what the pool received this period moves the
    /// difference from the owner now; lowering it waits for the next renewal.
    /// `other_pool_sizes` is the sum of the pool sizes of the owner's other workspaces.
    pub fn set_pool_size(
        &mut self,
        owner: &mut Account,
        new_size: Credits,
        other_pool_sizes: Credits,
    ) -> Result<(PoolSizeChange, Vec<Movement>), DomainError> {
        debug_assert_eq!(owner.id, self.owner);
        // An unfunded pool (after a failed renewal) is funded by FundWorkspacePools at its size.
        let difference = new_size.saturating_sub(self.funded_pool_size);
        let funds_now = self.monthly_pool_funded && !difference.is_zero();
        if new_size > self.pool_size {
            // What the account will hold at renewal once the difference has left it: top-up
            // credits spent on funding now cannot fund the next period too.
            // A difference the account cannot fund would take all it has (refused below anyway).
            let draw = match funds_now {
                true => Split::first_drawn(owner.drawable(), difference).unwrap_or(owner.drawable()),
                false => Split::default(),
            };
            let owned_total = other_pool_sizes.checked_add(new_size).ok_or(DomainError::BalanceOverflow)?;
            let renewal_capacity = owner.renewal_capacity_after(draw);
            if owned_total > renewal_capacity {
                return Err(DomainError::PoolSizesExceedRenewal { owned_total, renewal_capacity });
            }
        }
        let mut change = PoolSizeChange::default();
        let mut movements = Vec::new();
        if funds_now {
            let to = BucketRef::WorkspaceMonthly(self.id.clone());
            let (draw, drawn) = owner.withdraw(difference, &to, Cause::PoolFunding)?;
            self.monthly_pool = self.monthly_pool.checked_add(difference).ok_or(DomainError::BalanceOverflow)?;
            self.funded_pool_size = new_size;
            change = PoolSizeChange { funded: difference, draw };
            movements = drawn;
        }
        self.pool_size = new_size;
        Ok((change, movements))
    }

    /// R2, R3: at renewal the monthly pool's remainder expires and the pool waits for funding;
    /// a pool of size 0 has nothing to wait for.
    pub fn reset_monthly_pool(&mut self) -> Vec<Movement> {
        let expired = self.monthly_pool;
        self.monthly_pool = Credits::ZERO;
        self.funded_pool_size = Credits::ZERO;
        self.monthly_pool_funded = self.pool_size.is_zero();
        self.monthly_cycle += 1;
        let expiry = Movement {
            from: BucketRef::WorkspaceMonthly(self.id.clone()),
            to: BucketRef::Expired,
            amount: expired,
            cause: Cause::Expiry,
            member: None,
            scope: None,
            part: Some(DrawBucket::Monthly),
            units: OverflowUnits::default(),
        };
        (!expired.is_zero()).then_some(expiry).into_iter().collect()
    }

    /// R2, R5: funds every unfunded pool among `workspaces` with its pool size from `owner`
    /// (monthly first, then top-up), all or nothing. Returns the credits moved.
    pub fn fund_unfunded(
        owner: &mut Account,
        workspaces: &mut [Workspace],
    ) -> Result<(Credits, Vec<Movement>), DomainError> {
        let unfunded = |w: &&mut Workspace| !w.monthly_pool_funded;
        let required = workspaces
            .iter_mut()
            .filter(unfunded)
            .try_fold(Credits::ZERO, |sum, w| sum.checked_add(w.pool_size))
            .ok_or(DomainError::BalanceOverflow)?;
        let available = owner.balance();
        if required > available {
            return Err(DomainError::InsufficientCredits { requested: required, available });
        }
        let mut movements = Vec::new();
        for workspace in workspaces.iter_mut().filter(unfunded) {
            let to = BucketRef::WorkspaceMonthly(workspace.id.clone());
            let (_, drawn) = owner.withdraw(workspace.pool_size, &to, Cause::PoolFunding)?;
            workspace.monthly_pool =
                workspace.monthly_pool.checked_add(workspace.pool_size).ok_or(DomainError::BalanceOverflow)?;
            workspace.funded_pool_size = workspace.pool_size;
            workspace.monthly_pool_funded = true;
            movements.extend(drawn);
        }
        Ok((required, movements))
    }

    /// W3: moves credits from the owner (monthly first, then top-up) into the top-up pool.
    pub fn top_up(&mut self, owner: &mut Account, amount: Credits) -> Result<(Split, Vec<Movement>), DomainError> {
        debug_assert_eq!(owner.id, self.owner);
        let to = BucketRef::WorkspaceTopUp(self.id.clone());
        let top_up_pool = self.top_up_pool.checked_add(amount).ok_or(DomainError::BalanceOverflow)?;
        let (draw, movements) = owner.withdraw(amount, &to, Cause::WorkspaceTopUp)?;
        self.top_up_pool = top_up_pool;
        Ok((draw, movements))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credits(value: i64) -> Credits {
        Credits::new(value).unwrap()
    }

    #[test]
    fn each_admission_is_a_membership_of_its_own() {
        let mut workspace = Workspace::new(WorkspaceId::parse("w").unwrap(), AccountId::parse("o").unwrap(), 0);
        let first = workspace.admit(AccountId::parse("m").unwrap(), Role::Editor, 0).unwrap();
        let again = workspace.admit(AccountId::parse("m").unwrap(), Role::Editor, 0).unwrap();
        assert_eq!((first.membership, again.membership, workspace.memberships), (1, 2, 2));
        assert!(workspace.admit(AccountId::parse("x").unwrap(), Role::Owner, 0).is_err());
        assert_eq!(workspace.memberships, 2, "a refused admission numbers nothing");
    }

    fn owner_with_plan(monthly: i64) -> Account {
        let mut owner = Account::new(AccountId::parse("owner").unwrap(), 0);
        owner.set_plan(credits(monthly), None, 0).unwrap();
        owner
    }

    fn workspace(id: &str) -> Workspace {
        Workspace::new(WorkspaceId::parse(id).unwrap(), AccountId::parse("owner").unwrap(), 0)
    }

    #[test]
    fn two_pools_of_500_fit_a_1000_plan_and_a_third_of_1_does_not() {
        let mut owner = owner_with_plan(1_000);
        let (mut a, mut b, mut c) = (workspace("a"), workspace("b"), workspace("c"));
        a.set_pool_size(&mut owner, credits(500), Credits::ZERO).unwrap();
        b.set_pool_size(&mut owner, credits(500), credits(500)).unwrap();
        let refused = c.set_pool_size(&mut owner, credits(1), credits(1_000));
        assert_eq!(
            refused,
            Err(DomainError::PoolSizesExceedRenewal { owned_total: credits(1_001), renewal_capacity: credits(1_000) })
        );
        assert_eq!((a.monthly_pool, b.monthly_pool, c.monthly_pool), (credits(500), credits(500), Credits::ZERO));
        assert_eq!(owner.monthly, Credits::ZERO);
    }

    #[test]
    fn lowering_the_pool_size_waits_for_renewal_and_raising_tops_up_to_the_new_size() {
        let mut owner = owner_with_plan(1_000);
        let mut a = workspace("a");
        a.set_pool_size(&mut owner, credits(500), Credits::ZERO).unwrap();
        let (lowered, _) = a.set_pool_size(&mut owner, credits(300), Credits::ZERO).unwrap();
        assert_eq!((lowered.funded, a.monthly_pool, a.pool_size), (Credits::ZERO, credits(500), credits(300)));
        let (raised, _) = a.set_pool_size(&mut owner, credits(600), Credits::ZERO).unwrap();
        assert_eq!((raised.funded, a.monthly_pool), (credits(100), credits(600)));
        assert_eq!(owner.monthly, credits(400));
    }

    #[test]
    fn top_up_draws_the_owner_monthly_first_then_top_up() {
        let mut owner = owner_with_plan(100);
        owner.add_purchase(credits(100)).unwrap();
        let mut a = workspace("a");
        let (draw, movements) = a.top_up(&mut owner, credits(150)).unwrap();
        assert_eq!(draw, Split::of(credits(100), credits(50)));
        assert_eq!(movements.len(), 2);
        assert_eq!(a.top_up_pool, credits(150));
    }
}
