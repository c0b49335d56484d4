//! Billing cycles (R1–R5): what a renewal does to an account and the workspaces it owns.

use serde::{Deserialize, Serialize};

use super::{Account, Credits, DomainError, Movement, Period, Workspace, WorkspaceId};

/// What a renewal did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Renewal {
    /// The period started.
    pub period: Period,
    /// R2 (every pool funded) or R3 (none funded).
    pub succeeded: bool,
    /// Sum of the pool sizes of the account's workspaces.
    pub required: Credits,
    /// Monthly plus top-up credits of the account after its refresh.
    pub available: Credits,
    /// The account's workspaces.
    pub workspace_ids: Vec<WorkspaceId>,
}

/// R1–R3: starts `period` for `account` and the `workspaces` it owns. If the refreshed account
/// covers every pool size, each monthly pool is reset and funded; if not, none is funded, every
/// pool is reset to zero and waits for `fund_unfunded` (R5). Member usage (R4) is the caller's to
/// reset, for every member of these workspaces, in either case.
pub fn renew(
    account: &mut Account,
    workspaces: &mut [Workspace],
    period: Period,
    now_ms: i64,
) -> Result<(Renewal, Vec<Movement>), DomainError> {
    let mut movements = account.refresh(period, now_ms)?;
    for workspace in workspaces.iter_mut() {
        movements.extend(workspace.reset_monthly_pool());
    }
    let available = account.balance();
    let required = workspaces
        .iter()
        .try_fold(Credits::ZERO, |sum, w| sum.checked_add(w.pool_size))
        .ok_or(DomainError::BalanceOverflow)?;
    let succeeded = match Workspace::fund_unfunded(account, workspaces) {
        Ok((_, funded)) => {
            movements.extend(funded);
            true
        }
        Err(DomainError::InsufficientCredits { .. }) => false,
        Err(other) => return Err(other),
    };
    let workspace_ids = workspaces.iter().map(|w| w.id.clone()).collect();
    Ok((Renewal { period, succeeded, required, available, workspace_ids }, movements))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AccountId, BucketRef, Cause};

    fn credits(value: i64) -> Credits {
        Credits::new(value).unwrap()
    }

    /// Plan 500, 700 bought, two pools of 400: the set-up draws 500 monthly and 300 top-up.
    fn owner_with_two_pools() -> (Account, Vec<Workspace>) {
        let mut owner = Account::new(AccountId::parse("owner").unwrap(), 0);
        owner.set_plan(credits(500), None, 0).unwrap();
        owner.add_purchase(credits(700)).unwrap();
        let mut workspaces: Vec<Workspace> = ["a", "b"]
            .into_iter()
            .map(|id| Workspace::new(WorkspaceId::parse(id).unwrap(), owner.id.clone(), 0))
            .collect();
        for workspace in &mut workspaces {
            workspace.set_pool_size(&mut owner, credits(400), credits(400)).unwrap();
        }
        assert_eq!((owner.monthly, owner.top_up), (Credits::ZERO, credits(400)));
        (owner, workspaces)
    }

    #[test]
    fn a_covered_renewal_refreshes_the_account_and_funds_every_pool_monthly_first() {
        let (mut owner, mut workspaces) = owner_with_two_pools();
        let next = owner.period.unwrap().next();
        let (renewal, movements) = renew(&mut owner, &mut workspaces, next, 10).unwrap();
        assert!(renewal.succeeded);
        assert_eq!((renewal.required, renewal.available), (credits(800), credits(900)));
        assert_eq!((owner.monthly, owner.top_up), (Credits::ZERO, credits(100)));
        assert!(
            workspaces.iter().all(|w| w.monthly_pool == credits(400) && w.monthly_pool_funded && w.monthly_cycle == 1)
        );
        let expired: i64 = movements.iter().filter(|m| m.to == BucketRef::Expired).map(|m| m.amount.get()).sum();
        assert_eq!(expired, 800, "both pools' remainders expire");
        assert_eq!((owner.period, owner.monthly_cycle), (Some(next), 1));
    }

    #[test]
    fn an_uncovered_renewal_funds_no_pool_until_the_owner_funds_them_all() {
        let (mut owner, mut workspaces) = owner_with_two_pools();
        let next = owner.period.unwrap().next();
        let sink = BucketRef::WorkspaceTopUp(workspaces[0].id.clone());
        owner.withdraw(owner.balance(), &sink, Cause::WorkspaceTopUp).unwrap();
        let (renewal, _) = renew(&mut owner, &mut workspaces, next, 10).unwrap();
        assert!(!renewal.succeeded);
        assert_eq!((renewal.required, renewal.available), (credits(800), credits(500)));
        assert!(workspaces.iter().all(|w| w.monthly_pool.is_zero() && !w.monthly_pool_funded));
        assert_eq!(owner.monthly, credits(500), "nothing was drawn");
        assert_eq!(
            Workspace::fund_unfunded(&mut owner, &mut workspaces).map(|(funded, _)| funded),
            Err(DomainError::InsufficientCredits { requested: credits(800), available: credits(500) })
        );
        owner.add_purchase(credits(300)).unwrap();
        let (funded, _) = Workspace::fund_unfunded(&mut owner, &mut workspaces).unwrap();
        assert_eq!(funded, credits(800));
        assert!(workspaces.iter().all(|w| w.monthly_pool == credits(400) && w.monthly_pool_funded));
    }

    #[test]
    fn periods_only_move_forward() {
        let (mut owner, mut workspaces) = owner_with_two_pools();
        let current = owner.period.unwrap();
        assert_eq!(
            renew(&mut owner, &mut workspaces, current, 10).map(|(r, _)| r.succeeded),
            Err(DomainError::PeriodNotAfter { current, requested: current })
        );
    }
}
