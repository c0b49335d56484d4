//! Events written to the outbox in the same transaction as the change that causes them.

use serde::{Deserialize, Serialize};

use super::{AccountId, Charge, Credits, Period, PoolKind, ProfileId, Renewal, Wallet, WorkspaceId};

/// What a notification reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NotificationKind {
    /// A balance crossed its threshold downward.
    LowBalance,
    /// A renewal could not fund every pool.
    RenewalFailed,
    /// A renewal funded every pool.
    RenewalSucceeded,
    /// The overflow pool ran into overage.
    OverageStarted,
    /// A member was assigned to a notifying profile.
    MemberAssignedToProfile,
    /// A hold expired.
    ReservationExpired,
}

impl NotificationKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::LowBalance => "low_balance",
            NotificationKind::RenewalFailed => "renewal_failed",
            NotificationKind::RenewalSucceeded => "renewal_succeeded",
            NotificationKind::OverageStarted => "overage_started",
            NotificationKind::MemberAssignedToProfile => "member_assigned_to_profile",
            NotificationKind::ReservationExpired => "reservation_expired",
        }
    }
}

/// Details by kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NotificationPayload {
    /// LOW_BALANCE: a pool (or, with a member, its remaining allowance out of that pool) fell to
    /// or below its threshold.
    LowBalance {
        /// Which pool.
        pool: PoolKind,
        /// The balance (or remaining allowance) after the change.
        balance: Credits,
        /// The threshold crossed, in credits.
        threshold: Credits,
    },
    /// LOW_BALANCE of the overflow pool: units left in its quota fell to or below the threshold.
    OverflowLow {
        /// Units left in the quota after the change.
        quota_left_units: i64,
        /// The threshold crossed, in units.
        threshold_units: i64,
    },
    /// OVERAGE_STARTED: the overflow pool ran past its quota in this contract period.
    OverageStarted {
        /// Overage units after the draw.
        overage_units: i64,
        /// The limit, if any.
        overage_limit_units: Option<i64>,
        /// The contract period.
        period: String,
    },
    /// MEMBER_ASSIGNED_TO_PROFILE.
    ProfileAssigned {
        /// The profile.
        profile_id: ProfileId,
        /// Its name.
        profile_name: String,
    },
    /// RESERVATION_EXPIRED: the hold as released.
    ReservationExpired {
        /// The hold.
        charge: Charge,
    },
    /// RENEWAL_FAILED and RENEWAL_SUCCEEDED.
    Renewal {
        /// The period renewed.
        period: Period,
        /// The owner's workspaces.
        workspace_ids: Vec<WorkspaceId>,
        /// Credits the pools needed.
        required_credits: Credits,
        /// Credits the account had after its refresh.
        available_credits: Credits,
    },
}

/// One event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// The kind.
    pub kind: NotificationKind,
    /// The account concerned (the owner, for workspace events).
    pub account_id: AccountId,
    /// The workspace concerned, when any.
    pub workspace_id: Option<WorkspaceId>,
    /// The member concerned, when any.
    pub member_account_id: Option<AccountId>,
    /// Details.
    pub payload: NotificationPayload,
}

impl Notification {
    /// The key of the scope whose transaction writes the event (it keys the stored row): the
    /// workspace for a workspace's events, else the account.
    pub fn scope_id(&self) -> &str {
        self.workspace_id.as_ref().map_or(self.account_id.as_str(), WorkspaceId::as_str)
    }

    /// R2/R3: the renewal's outcome, for the owner.
    pub fn renewal(account_id: &AccountId, renewal: &Renewal) -> Notification {
        Notification {
            kind: if renewal.succeeded { NotificationKind::RenewalSucceeded } else { NotificationKind::RenewalFailed },
            account_id: account_id.clone(),
            workspace_id: None,
            member_account_id: None,
            payload: NotificationPayload::Renewal {
                period: renewal.period,
                workspace_ids: renewal.workspace_ids.clone(),
                required_credits: renewal.required,
                available_credits: renewal.available,
            },
        }
    }
}

impl Notification {
    /// C5: a hold released by the service after its TTL.
    pub fn reservation_expired(wallet: &Wallet, charge: &Charge) -> Notification {
        let (account_id, workspace_id) = owner_of(wallet);
        Notification {
            kind: NotificationKind::ReservationExpired,
            account_id,
            workspace_id,
            member_account_id: Some(charge.account_id.clone()),
            payload: NotificationPayload::ReservationExpired { charge: charge.clone() },
        }
    }
}

/// Who a workspace event is for (its owner) and its workspace; a personal wallet's account.
fn owner_of(wallet: &Wallet) -> (AccountId, Option<WorkspaceId>) {
    match wallet {
        Wallet::Workspace { workspace, .. } => (workspace.owner.clone(), Some(workspace.id.clone())),
        Wallet::Personal { account } => (account.id.clone(), None),
    }
}

/// LOW_BALANCE for every threshold the change from `before` to `after` crossed downward: from
/// above it to at or below it. Only a crossing fires, so a long drain fires once, and the
/// threshold re-arms as soon as a refund, top-up, renewal or raised allowance lifts the balance
/// above it again.
pub fn low_balance_crossings(before: &Wallet, after: &Wallet) -> Vec<Notification> {
    let (Wallet::Workspace { workspace: was, member: member_was, .. }, Wallet::Workspace { workspace, member, .. }) =
        (before, after)
    else {
        return Vec::new();
    };
    let thresholds = workspace.thresholds;
    let crossed = |was: Credits, now: Credits, threshold: Credits| was > threshold && now <= threshold;
    let event = |pool: PoolKind, balance: Credits, threshold: Credits, member: Option<&AccountId>| Notification {
        kind: NotificationKind::LowBalance,
        account_id: workspace.owner.clone(),
        workspace_id: Some(workspace.id.clone()),
        member_account_id: member.cloned(),
        payload: NotificationPayload::LowBalance { pool, balance, threshold },
    };
    let mut events = Vec::new();
    for (pool, was, now, threshold) in [
        (PoolKind::Monthly, was.monthly_pool, workspace.monthly_pool, thresholds.monthly_pool),
        (PoolKind::TopUp, was.top_up_pool, workspace.top_up_pool, thresholds.top_up_pool),
    ] {
        if crossed(was, now, threshold) {
            events.push(event(pool, now, threshold, None));
        }
    }
    for (pool, was, now) in
        [(PoolKind::Monthly, member_was.monthly, member.monthly), (PoolKind::TopUp, member_was.top_up, member.top_up)]
    {
        if now.allowance.is_zero() {
            continue;
        }
        let percent = i64::from(thresholds.member_remaining_percent);
        let threshold = Credits::new(now.allowance.get().saturating_mul(percent) / 100).unwrap_or_default();
        if crossed(was.remaining(), now.remaining(), threshold) {
            events.push(event(pool, now.remaining(), threshold, Some(&member.account_id)));
        }
    }
    if let (Some(pool_was), Some(pool)) = (&was.overflow, &workspace.overflow) {
        let threshold = thresholds.overflow_units;
        let (left_was, left) = (pool_was.quota_left(), pool.quota_left());
        if pool_was.cycle == pool.cycle && left_was > threshold && left <= threshold {
            events.push(Notification {
                kind: NotificationKind::LowBalance,
                account_id: workspace.owner.clone(),
                workspace_id: Some(workspace.id.clone()),
                member_account_id: Some(member.account_id.clone()),
                payload: NotificationPayload::OverflowLow { quota_left_units: left, threshold_units: threshold },
            });
        }
    }
    events
}

/// C4: OVERAGE_STARTED when a draw on `after` ran the overflow pool past its quota for the first
/// time in its contract period; marks the period so it fires once.
pub fn overage_started(after: &mut Wallet) -> Option<Notification> {
    let Wallet::Workspace { workspace, member, .. } = after else { return None };
    let pool = workspace.overflow.as_mut()?;
    pool.overage_started().then(|| Notification {
        kind: NotificationKind::OverageStarted,
        account_id: workspace.owner.clone(),
        workspace_id: Some(workspace.id.clone()),
        member_account_id: Some(member.account_id.clone()),
        payload: NotificationPayload::OverageStarted {
            overage_units: pool.overage_units,
            overage_limit_units: pool.overage_limit_units,
            period: pool.period.clone(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::PoolAccess;
    use crate::domain::{AllowanceState, BucketRef, Cause, Member, Role, Workspace};

    fn credits(value: i64) -> Credits {
        Credits::new(value).unwrap()
    }

    fn wallet() -> Wallet {
        let id = WorkspaceId::parse("w").unwrap();
        let mut workspace = Workspace::new(id.clone(), AccountId::parse("owner").unwrap(), 0);
        workspace.monthly_pool = credits(100);
        workspace.thresholds.monthly_pool = credits(40);
        let mut member = Member::new(id, AccountId::parse("m").unwrap(), Role::Editor, 0);
        member.monthly = AllowanceState { allowance: credits(100), used: Credits::ZERO };
        Wallet::for_member(workspace, member, PoolAccess::Denied).unwrap()
    }

    fn drain(wallet: &mut Wallet, amount: i64) -> Vec<Notification> {
        let before = wallet.clone();
        wallet.draw(credits(amount), &BucketRef::Consumed, Cause::Consume).unwrap();
        low_balance_crossings(&before, wallet)
    }

    #[test]
    fn a_threshold_fires_once_per_downward_crossing_and_re_arms_above_it() {
        let mut wallet = wallet();
        assert!(drain(&mut wallet, 50).is_empty(), "100 → 50: still above 40");
        let crossing = drain(&mut wallet, 10);
        assert_eq!(crossing.len(), 1, "50 → 40 crosses the pool threshold");
        assert_eq!(
            crossing[0].payload,
            NotificationPayload::LowBalance { pool: PoolKind::Monthly, balance: credits(40), threshold: credits(40) }
        );
        let member_crossing = drain(&mut wallet, 31);
        assert_eq!(member_crossing.len(), 1, "remaining 40 → 9 crosses the member's 10 %, the pool stays low");
        assert_eq!(member_crossing[0].member_account_id, Some(AccountId::parse("m").unwrap()));
        assert!(drain(&mut wallet, 1).is_empty(), "already low: no second event");
    }
}
