//! Where a charge draws from (C1, C2) and how credits go back (C5, C6).

use serde::{Deserialize, Serialize};

use super::{
    Account, AccountId, BucketRef, Cause, Credits, DomainError, DrawBucket, Member, Movement, Split, Workspace,
    WorkspaceId,
};

/// Whose charge it is: a workspace's, or an account's own (personal context).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChargeScope {
    /// Drawn from a workspace's pools.
    Workspace(WorkspaceId),
    /// Drawn from the account's own credits.
    Personal(AccountId),
}

impl ChargeScope {
    /// The scope's id (workspace or account).
    pub fn id(&self) -> &str {
        match self {
            ChargeScope::Workspace(id) => id.as_str(),
            ChargeScope::Personal(id) => id.as_str(),
        }
    }

    /// The bucket holding this scope's open holds.
    pub fn held(&self) -> BucketRef {
        match self {
            ChargeScope::Workspace(id) => BucketRef::WorkspaceHeld(id.clone()),
            ChargeScope::Personal(id) => BucketRef::AccountHeld(id.clone()),
        }
    }
}

/// The buckets one charge draws from, loaded and locked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wallet {
    /// A member's allowances over its workspace's pools.
    Workspace {
        /// The workspace (its pools).
        workspace: Workspace,
        /// The member (its allowances and usage).
        member: Member,
    },
    /// An account's own credits (A1).
    Personal {
        /// The account.
        account: Account,
    },
}

/// What went back to the buckets, and what could not because its billing cycle has renewed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GivenBack {
    /// Returned to the buckets it came from.
    pub returned: Split,
    /// Monthly credits drawn in an earlier cycle: they expire instead of returning.
    pub forfeited: Credits,
}

impl Wallet {
    /// A member's wallet; REVIEWER and CLIENT cannot consume (M1).
    pub fn for_member(workspace: Workspace, member: Member) -> Result<Wallet, DomainError> {
        if !member.role.holds_allowance() {
            return Err(DomainError::RoleCannotConsume { role: member.role });
        }
        Ok(Wallet::Workspace { workspace, member })
    }

    /// The scope charges on this wallet belong to.
    pub fn scope(&self) -> ChargeScope {
        match self {
            Wallet::Workspace { workspace, .. } => ChargeScope::Workspace(workspace.id.clone()),
            Wallet::Personal { account } => ChargeScope::Personal(account.id.clone()),
        }
    }

    /// The account charged.
    pub fn account_id(&self) -> &AccountId {
        match self {
            Wallet::Workspace { member, .. } => &member.account_id,
            Wallet::Personal { account } => &account.id,
        }
    }

    /// The billing cycle the monthly bucket is in; it changes when the bucket renews.
    pub fn monthly_cycle(&self) -> i64 {
        match self {
            Wallet::Workspace { workspace, .. } => workspace.monthly_cycle,
            Wallet::Personal { account } => account.monthly_cycle,
        }
    }

    /// C2: what a draw could take now from each bucket: in a workspace, the smaller of the
    /// member's remaining allowance and the backing pool.
    pub fn drawable(&self) -> Split {
        match self {
            Wallet::Workspace { workspace, member } => Split::of(
                member.monthly.remaining().min(workspace.monthly_pool),
                member.top_up.remaining().min(workspace.top_up_pool),
            ),
            Wallet::Personal { account } => account.drawable(),
        }
    }

    /// C1–C3: takes `amount`, monthly first, then top-up, into `to` (spent, or a hold); all or
    /// nothing. Member usage goes up by what was taken.
    pub fn draw(
        &mut self,
        amount: Credits,
        to: &BucketRef,
        cause: Cause,
    ) -> Result<(Split, Vec<Movement>), DomainError> {
        let drawable = self.drawable();
        let split = Split::first_drawn(drawable, amount)
            .ok_or(DomainError::InsufficientCredits { requested: amount, available: drawable.total() })?;
        for (bucket, part) in split.parts() {
            self.take(bucket, part)?;
        }
        let parts: Vec<_> = split.parts().map(|(bucket, part)| (self.bucket(bucket), to.clone(), part)).collect();
        Ok((split, self.movements(&parts, cause)))
    }

    /// Takes `amount` out of one link of the chain; usage goes up with it.
    fn take(&mut self, bucket: DrawBucket, amount: Credits) -> Result<(), DomainError> {
        let overflow = DomainError::BalanceOverflow;
        match (self, bucket) {
            (Wallet::Workspace { workspace, member }, DrawBucket::Monthly) => {
                workspace.monthly_pool = workspace.monthly_pool.saturating_sub(amount);
                member.monthly.used = member.monthly.used.checked_add(amount).ok_or(overflow)?;
            }
            (Wallet::Workspace { workspace, member }, DrawBucket::TopUp) => {
                workspace.top_up_pool = workspace.top_up_pool.saturating_sub(amount);
                member.top_up.used = member.top_up.used.checked_add(amount).ok_or(overflow)?;
            }
            (Wallet::Personal { account }, bucket) => account.take(bucket, amount),
            (Wallet::Workspace { .. }, DrawBucket::Overflow) => {
                debug_assert!(amount.is_zero(), "the overflow pool is drawn only where it is loaded");
            }
        }
        Ok(())
    }

    /// Returns `amount` to one link of the chain; usage goes down with it.
    fn put_back(&mut self, bucket: DrawBucket, amount: Credits) -> Result<(), DomainError> {
        let overflow = DomainError::BalanceOverflow;
        match (self, bucket) {
            (Wallet::Workspace { workspace, member }, DrawBucket::Monthly) => {
                workspace.monthly_pool = workspace.monthly_pool.checked_add(amount).ok_or(overflow)?;
                member.monthly.used = member.monthly.used.saturating_sub(amount);
            }
            (Wallet::Workspace { workspace, member }, DrawBucket::TopUp) => {
                workspace.top_up_pool = workspace.top_up_pool.checked_add(amount).ok_or(overflow)?;
                member.top_up.used = member.top_up.used.saturating_sub(amount);
            }
            (Wallet::Personal { account }, bucket) => account.put_back(bucket, amount)?,
            (Wallet::Workspace { .. }, DrawBucket::Overflow) => {
                debug_assert!(amount.is_zero(), "the overflow pool is drawn only where it is loaded");
            }
        }
        Ok(())
    }

    /// C5b, C6: returns `split` from `from` (spent, or a hold) to the buckets it came from and
    /// lowers usage. A monthly part drawn in an earlier cycle is forfeited: it would have expired.
    pub fn give_back(
        &mut self,
        split: Split,
        from: &BucketRef,
        drawn_in_cycle: i64,
        cause: Cause,
    ) -> Result<(GivenBack, Vec<Movement>), DomainError> {
        let renewed = drawn_in_cycle != self.monthly_cycle();
        let forfeited = if renewed { split.monthly } else { Credits::ZERO };
        let returned = Split { monthly: split.monthly.saturating_sub(forfeited), ..split };
        for (bucket, part) in returned.parts() {
            self.put_back(bucket, part)?;
        }
        let mut parts: Vec<_> =
            returned.parts().rev().map(|(bucket, part)| (from.clone(), self.bucket(bucket), part)).collect();
        parts.push((from.clone(), BucketRef::Expired, forfeited));
        let movements = self.movements(&parts, cause);
        Ok((GivenBack { returned, forfeited }, movements))
    }

    /// Moves `split` from one place to another without touching the wallet's buckets (a hold
    /// being captured).
    pub fn transfer(&self, split: Split, from: &BucketRef, to: &BucketRef, cause: Cause) -> Vec<Movement> {
        let parts: Vec<_> = split.parts().map(|(_, part)| (from.clone(), to.clone(), part)).collect();
        self.movements(&parts, cause)
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

    fn movements(&self, parts: &[(BucketRef, BucketRef, Credits)], cause: Cause) -> Vec<Movement> {
        let member = Some(self.account_id().clone());
        let scope = Some(self.scope_id().to_owned());
        parts
            .iter()
            .filter(|(_, _, amount)| !amount.is_zero())
            .map(|(from, to, amount)| Movement {
                from: from.clone(),
                to: to.clone(),
                amount: *amount,
                cause,
                member: member.clone(),
                scope: scope.clone(),
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
        Wallet::for_member(workspace, member).unwrap()
    }

    #[test]
    fn draws_monthly_allowance_first_then_top_up() {
        let mut wallet = wallet(500, 100, 150, 50);
        let (split, movements) = wallet.draw(credits(180), &BucketRef::Consumed, Cause::Consume).unwrap();
        assert_eq!(split, Split::of(credits(150), credits(30)));
        assert_eq!(movements.len(), 2);
        let Wallet::Workspace { workspace, member } = &wallet else { unreachable!() };
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
        let (split, _) = wallet.draw(credits(180), &BucketRef::Consumed, Cause::Consume).unwrap();
        if let Wallet::Workspace { workspace, .. } = &mut wallet {
            workspace.monthly_cycle += 1;
        }
        let (given, movements) = wallet.give_back(split, &BucketRef::Consumed, 0, Cause::Refund).unwrap();
        assert_eq!(given, GivenBack { returned: Split::of(Credits::ZERO, credits(30)), forfeited: credits(150) });
        assert!(movements.iter().any(|m| m.to == BucketRef::Expired && m.amount == credits(150)));
    }

    #[test]
    fn reviewers_and_clients_cannot_consume() {
        let id = WorkspaceId::parse("w").unwrap();
        let workspace = Workspace::new(id.clone(), AccountId::parse("owner").unwrap(), 0);
        let member = Member::new(id, AccountId::parse("r").unwrap(), Role::Reviewer, 0);
        assert_eq!(Wallet::for_member(workspace, member), Err(DomainError::RoleCannotConsume { role: Role::Reviewer }));
    }
}
