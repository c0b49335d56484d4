//! Where a charge draws from (C1, C2) and how credits go back (C5, C6).

use serde::{Deserialize, Serialize};

use super::{
    Account, AccountId, BucketRef, Cause, Credits, DomainError, DrawBucket, Member, Movement, OverflowTake,
    OverflowUnits, PoolAccess, Split, Workspace, WorkspaceId,
};

/// The shard key of a change: the workspace it happens in, or the account in personal context
/// (account mutations and personal charges). Charges, idempotency records, batch queues and the
/// journal's `ledger_scope_id` are all keyed by it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Tenant {
    /// A workspace: its pools, members and charges.
    Workspace(WorkspaceId),
    /// An account: its own credits (personal context). Stored JSON calls it "Personal", as the
    /// release before this name did.
    #[serde(rename = "Personal")]
    Account(AccountId),
}

impl Tenant {
    /// The scope's id (workspace or account).
    pub fn id(&self) -> &str {
        match self {
            Tenant::Workspace(id) => id.as_str(),
            Tenant::Account(id) => id.as_str(),
        }
    }

    /// The bucket holding this scope's open holds.
    pub fn held(&self) -> BucketRef {
        match self {
            Tenant::Workspace(id) => BucketRef::WorkspaceHeld(id.clone()),
            Tenant::Account(id) => BucketRef::AccountHeld(id.clone()),
        }
    }
}

/// The buckets one charge draws from, loaded and locked.
#[derive(Debug, Clone, PartialEq, Eq)]
#[expect(clippy::large_enum_variant, reason = "a wallet lives for one call; boxing would allocate per call")]
pub enum Wallet {
    /// A member's allowances over its workspace's pools, and its access to the overflow pool.
    Workspace {
        /// The workspace (its pools).
        workspace: Workspace,
        /// The member (its allowances and usage).
        member: Member,
        /// What the member's profiles, and the call's consent, allow of the overflow pool.
        access: PoolAccess,
    },
    /// An account's own credits (A1).
    Personal {
        /// The account.
        account: Account,
    },
}

/// Where credits coming back were drawn: the monthly cycle and the membership.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Origin {
    /// The monthly cycle of the draw; monthly credits of an earlier cycle are forfeited.
    pub cycle: i64,
    /// The membership that drew ([`Member::membership`]).
    pub membership: i64,
}

/// What went back to the buckets, and what could not because its billing cycle has renewed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GivenBack {
    /// Returned to the buckets it came from.
    pub returned: Split,
    /// Monthly credits drawn in an earlier cycle: they expire instead of returning.
    pub forfeited: Credits,
    /// Overflow units returned to the pool with the overflow credits.
    #[serde(default, skip_serializing_if = "OverflowUnits::is_zero")]
    pub units: OverflowUnits,
}

/// What a draw took: the split, the overflow units its overflow part cost, and the movements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drawn {
    /// By bucket.
    pub split: Split,
    /// The units the overflow part cost (C4).
    pub units: OverflowUnits,
    /// The journal entries.
    pub movements: Vec<Movement>,
}

/// One movement to be: from, to, how much, of which link, with which overflow units.
struct Leg {
    from: BucketRef,
    to: BucketRef,
    amount: Credits,
    part: Option<DrawBucket>,
    units: OverflowUnits,
}

impl Wallet {
    /// A member's wallet; REVIEWER and CLIENT cannot consume (M1).
    pub fn for_member(workspace: Workspace, member: Member, access: PoolAccess) -> Result<Wallet, DomainError> {
        if !member.role.holds_allowance() {
            return Err(DomainError::RoleCannotConsume { role: member.role });
        }
        Ok(Wallet::Workspace { workspace, member, access })
    }

    /// The scope charges on this wallet belong to.
    pub fn scope(&self) -> Tenant {
        match self {
            Wallet::Workspace { workspace, .. } => Tenant::Workspace(workspace.id.clone()),
            Wallet::Personal { account } => Tenant::Account(account.id.clone()),
        }
    }

    /// The account charged.
    pub fn account_id(&self) -> &AccountId {
        match self {
            Wallet::Workspace { member, .. } => &member.account_id,
            Wallet::Personal { account } => &account.id,
        }
    }

    /// The membership drawing ([`Member::membership`]); 0 in personal context.
    pub fn membership(&self) -> i64 {
        match self {
            Wallet::Workspace { member, .. } => member.membership,
            Wallet::Personal { .. } => 0,
        }
    }

    /// The billing cycle the monthly bucket is in; it changes when the bucket renews.
    pub fn monthly_cycle(&self) -> i64 {
        match self {
            Wallet::Workspace { workspace, .. } => workspace.monthly_cycle,
            Wallet::Personal { account } => account.monthly_cycle,
        }
    }

    /// What a new overflow draw on this wallet would record on its charge: the pool's ratio and
    /// contract period.
    pub fn overflow_take(&self) -> OverflowTake {
        match self {
            Wallet::Workspace { workspace: Workspace { overflow: Some(pool), .. }, .. } => {
                OverflowTake { units: OverflowUnits::default(), ratio: pool.ratio, cycle: pool.cycle }
            }
            _ => OverflowTake::default(),
        }
    }

    /// C2: what a draw could take now from each bucket: in a workspace, the smaller of the
    /// member's remaining allowance and the backing pool, then what the overflow pool could lend
    /// a member with access.
    pub fn drawable(&self) -> Split {
        match self {
            Wallet::Workspace { workspace, member, access } => Split {
                monthly: member.monthly.remaining().min(workspace.monthly_pool),
                top_up: member.top_up.remaining().min(workspace.top_up_pool),
                overflow: match (&workspace.overflow, access) {
                    (Some(pool), PoolAccess::Granted | PoolAccess::NeedsConsent) => pool.drawable(),
                    _ => Credits::ZERO,
                },
            },
            Wallet::Personal { account } => account.drawable(),
        }
    }

    /// C1–C4: takes `amount` along the draw chain into `to` (spent, or a hold); all or nothing.
    /// Member usage goes up by what was taken from the allowances; the overflow part costs units.
    pub fn draw(&mut self, amount: Credits, to: &BucketRef, cause: Cause) -> Result<Drawn, DomainError> {
        let drawable = self.drawable();
        let split = Split::first_drawn(drawable, amount)
            .ok_or(DomainError::InsufficientCredits { requested: amount, available: drawable.total() })?;
        if let Wallet::Workspace { access: PoolAccess::NeedsConsent, workspace, .. } = self
            && !split.overflow.is_zero()
        {
            let units = workspace.overflow.as_ref().map_or(0, |pool| pool.ratio.units_for(split.overflow));
            return Err(DomainError::OverflowNeedsConsent { credits: split.overflow, units });
        }
        let mut units = OverflowUnits::default();
        let mut legs = Vec::new();
        for (bucket, part) in split.parts() {
            let taken = self.take(bucket, part)?;
            if bucket == DrawBucket::Overflow {
                units = taken;
            }
            legs.push(Leg {
                from: self.bucket(bucket),
                to: to.clone(),
                amount: part,
                part: Some(bucket),
                units: taken,
            });
        }
        Ok(Drawn { split, units, movements: self.movements(legs, cause) })
    }

    /// Takes `amount` out of one link of the chain: usage goes up with it; the overflow pool
    /// answers with the units it cost (zero for the other links).
    fn take(&mut self, bucket: DrawBucket, amount: Credits) -> Result<OverflowUnits, DomainError> {
        let overflow = DomainError::BalanceOverflow;
        match (self, bucket) {
            (Wallet::Workspace { workspace, member, .. }, DrawBucket::Monthly) => {
                workspace.monthly_pool = workspace.monthly_pool.saturating_sub(amount);
                member.monthly.used = member.monthly.used.checked_add(amount).ok_or(overflow)?;
            }
            (Wallet::Workspace { workspace, member, .. }, DrawBucket::TopUp) => {
                workspace.top_up_pool = workspace.top_up_pool.saturating_sub(amount);
                member.top_up.used = member.top_up.used.checked_add(amount).ok_or(overflow)?;
            }
            (Wallet::Workspace { workspace, .. }, DrawBucket::Overflow) => {
                if amount.is_zero() {
                    return Ok(OverflowUnits::default());
                }
                let pool = workspace.overflow.as_mut().ok_or(DomainError::BalanceOverflow)?;
                let units = pool.draw(amount)?;
                workspace.overflow_lent = workspace.overflow_lent.checked_add(amount).ok_or(overflow)?;
                return Ok(units);
            }
            (Wallet::Personal { account }, bucket) => account.take(bucket, amount),
        }
        Ok(OverflowUnits::default())
    }

    /// C5b, C6: returns `split` from `from` (spent, or a hold) to the buckets it came from and
    /// lowers usage. A monthly part drawn in an earlier cycle is forfeited: it would have expired.
    /// An overflow part gives back the units `take` says it cost, overage first; units of a
    /// closed contract period stay counted there (the period's totals are final).
    /// `overflow_held` is the overflow credits the charge holds before this return.
    pub fn give_back(
        &mut self,
        split: Split,
        from: &BucketRef,
        origin: Origin,
        take: &mut OverflowTake,
        overflow_held: Credits,
        cause: Cause,
    ) -> Result<(GivenBack, Vec<Movement>), DomainError> {
        let renewed = origin.cycle != self.monthly_cycle();
        let drawer = origin.membership == self.membership();
        let forfeited = if renewed { split.monthly } else { Credits::ZERO };
        let returned = Split { monthly: split.monthly.saturating_sub(forfeited), ..split };
        let units = if returned.overflow.is_zero() {
            OverflowUnits::default()
        } else {
            let released = take.returning(overflow_held, returned.overflow);
            self.put_back_units(take.cycle, released)
        };
        let mut legs = Vec::new();
        for (bucket, part) in returned.parts().rev() {
            self.put_back(bucket, part, drawer)?;
            let units = if bucket == DrawBucket::Overflow { units } else { OverflowUnits::default() };
            legs.push(Leg { from: from.clone(), to: self.bucket(bucket), amount: part, part: Some(bucket), units });
        }
        let forfeit = OverflowUnits::default();
        legs.push(Leg {
            from: from.clone(),
            to: BucketRef::Expired,
            amount: forfeited,
            part: Some(DrawBucket::Monthly),
            units: forfeit,
        });
        Ok((GivenBack { returned, forfeited, units }, self.movements(legs, cause)))
    }

    /// Gives `units` of contract period `cycle` back to the overflow pool, if that period is
    /// still the pool's; answers what the pool took back.
    fn put_back_units(&mut self, cycle: i64, units: OverflowUnits) -> OverflowUnits {
        match self {
            Wallet::Workspace { workspace: Workspace { overflow: Some(pool), .. }, .. } if pool.cycle == cycle => {
                pool.give_back(units);
                units
            }
            _ => OverflowUnits::default(),
        }
    }

    /// Returns `amount` to one link of the chain; the member's usage goes down with it when
    /// `drawer` (its membership drew the credits; an earlier membership's usage is gone).
    fn put_back(&mut self, bucket: DrawBucket, amount: Credits, drawer: bool) -> Result<(), DomainError> {
        let overflow = DomainError::BalanceOverflow;
        let used = if drawer { amount } else { Credits::ZERO };
        match (self, bucket) {
            (Wallet::Workspace { workspace, member, .. }, DrawBucket::Monthly) => {
                workspace.monthly_pool = workspace.monthly_pool.checked_add(amount).ok_or(overflow)?;
                member.monthly.used = member.monthly.used.saturating_sub(used);
            }
            (Wallet::Workspace { workspace, member, .. }, DrawBucket::TopUp) => {
                workspace.top_up_pool = workspace.top_up_pool.checked_add(amount).ok_or(overflow)?;
                member.top_up.used = member.top_up.used.saturating_sub(used);
            }
            (Wallet::Workspace { workspace, .. }, DrawBucket::Overflow) => {
                workspace.overflow_lent = workspace.overflow_lent.saturating_sub(amount);
            }
            (Wallet::Personal { account }, bucket) => account.put_back(bucket, amount)?,
        }
        Ok(())
    }

    /// Moves `split` from one place to another without touching the wallet's buckets (a hold
    /// being captured).
    pub fn transfer(&self, split: Split, from: &BucketRef, to: &BucketRef, cause: Cause) -> Vec<Movement> {
        let legs = split
            .parts()
            .map(|(bucket, part)| Leg {
                from: from.clone(),
                to: to.clone(),
                amount: part,
                part: Some(bucket),
                units: OverflowUnits::default(),
            })
            .collect();
        self.movements(legs, cause)
    }

    /// The journal bucket behind one link of the chain.
    fn bucket(&self, bucket: DrawBucket) -> BucketRef {
        match (self, bucket) {
            (Wallet::Workspace { workspace, .. }, DrawBucket::Monthly) => {
                BucketRef::WorkspaceMonthly(workspace.id.clone())
            }
            (Wallet::Workspace { workspace, .. }, DrawBucket::TopUp) => BucketRef::WorkspaceTopUp(workspace.id.clone()),
            (Wallet::Workspace { workspace, .. }, DrawBucket::Overflow) => {
                BucketRef::WorkspaceOverflow(workspace.id.clone())
            }
            (Wallet::Personal { account }, bucket) => account.bucket(bucket),
        }
    }

    /// The journal key of the wallet's movements: its workspace, or the account in personal
    /// context.
    fn scope_id(&self) -> &str {
        match self {
            Wallet::Workspace { workspace, .. } => workspace.id.as_str(),
            Wallet::Personal { account } => account.id.as_str(),
        }
    }

    fn movements(&self, legs: Vec<Leg>, cause: Cause) -> Vec<Movement> {
        let member = Some(self.account_id().clone());
        let scope = Some(self.scope_id().to_owned());
        legs.into_iter()
            .filter(|leg| !leg.amount.is_zero())
            .map(|leg| Movement {
                from: leg.from,
                to: leg.to,
                amount: leg.amount,
                cause,
                member: member.clone(),
                scope: scope.clone(),
                part: leg.part,
                units: leg.units,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AllowanceState, Role};

    fn credits(value: i64) -> Credits {
        Credits::new(value).unwrap()
    }

    fn wallet(monthly_pool: i64, top_up_pool: i64, monthly_allowance: i64, top_up_allowance: i64) -> Wallet {
        let id = WorkspaceId::parse("w").unwrap();
        let mut workspace = Workspace::new(id.clone(), AccountId::parse("owner").unwrap(), 0);
        workspace.monthly_pool = credits(monthly_pool);
        workspace.top_up_pool = credits(top_up_pool);
        let mut member = Member::new(id, AccountId::parse("m").unwrap(), Role::Editor, 0);
        member.monthly = AllowanceState { allowance: credits(monthly_allowance), used: Credits::ZERO };
        member.top_up = AllowanceState { allowance: credits(top_up_allowance), used: Credits::ZERO };
        Wallet::for_member(workspace, member, PoolAccess::Denied).unwrap()
    }

    #[test]
    fn draws_monthly_allowance_first_then_top_up() {
        let mut wallet = wallet(500, 100, 150, 50);
        let Drawn { split, movements, .. } = wallet.draw(credits(180), &BucketRef::Consumed, Cause::Consume).unwrap();
        assert_eq!(split, Split::of(credits(150), credits(30)));
        assert_eq!(movements.len(), 2);
        let Wallet::Workspace { workspace, member, .. } = &wallet else { unreachable!() };
        assert_eq!((workspace.monthly_pool, workspace.top_up_pool), (credits(350), credits(70)));
        assert_eq!((member.monthly.used, member.top_up.used), (credits(150), credits(30)));
    }

    #[test]
    fn each_bucket_gives_at_most_the_smaller_of_allowance_and_pool_and_nothing_is_partial() {
        let mut wallet = wallet(40, 100, 150, 20);
        let before = wallet.clone();
        assert_eq!(wallet.drawable(), Split::of(credits(40), credits(20)));
        let refused = wallet.draw(credits(61), &BucketRef::Consumed, Cause::Consume);
        assert_eq!(refused, Err(DomainError::InsufficientCredits { requested: credits(61), available: credits(60) }));
        assert_eq!(wallet, before);
    }

    #[test]
    fn giving_back_after_a_renewal_forfeits_the_monthly_part() {
        let mut wallet = wallet(500, 100, 150, 50);
        let split = wallet.draw(credits(180), &BucketRef::Consumed, Cause::Consume).unwrap().split;
        if let Wallet::Workspace { workspace, .. } = &mut wallet {
            workspace.monthly_cycle += 1;
        }
        let (given, movements) = wallet
            .give_back(
                split,
                &BucketRef::Consumed,
                Origin::default(),
                &mut OverflowTake::default(),
                Credits::ZERO,
                Cause::Refund,
            )
            .unwrap();
        assert_eq!(
            given,
            GivenBack {
                returned: Split::of(Credits::ZERO, credits(30)),
                forfeited: credits(150),
                units: OverflowUnits::default()
            }
        );
        assert!(movements.iter().any(|m| m.to == BucketRef::Expired && m.amount == credits(150)));
    }

    #[test]
    fn reviewers_and_clients_cannot_consume() {
        let id = WorkspaceId::parse("w").unwrap();
        let workspace = Workspace::new(id.clone(), AccountId::parse("owner").unwrap(), 0);
        let member = Member::new(id, AccountId::parse("r").unwrap(), Role::Reviewer, 0);
        assert_eq!(
            Wallet::for_member(workspace, member, PoolAccess::Denied),
            Err(DomainError::RoleCannotConsume { role: Role::Reviewer })
        );
    }
}
