//! Rows as stored, and their checked conversion into domain types.

use crate::domain::{
    Account, AccountId, AllowanceState, BillingAnchor, Charge, ChargeKey, ChargeState, Credits, LowBalanceThresholds,
    Member, Period, Plan, Profile, ProfileId, Role, Split, Tenant, Workspace, WorkspaceId,
};

use super::{PublishedNotification, StoreError};
use crate::domain::{Notification, NotificationKind, NotificationPayload};

fn credits(column: &str, value: i64) -> Result<Credits, StoreError> {
    Credits::new(value).ok_or_else(|| StoreError::Corrupt(format!("{column} is negative: {value}")))
}

fn account_id(column: &str, value: String) -> Result<AccountId, StoreError> {
    AccountId::parse(value).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

fn workspace_id(column: &str, value: String) -> Result<WorkspaceId, StoreError> {
    WorkspaceId::parse(value).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

pub(crate) fn json<T: serde::de::DeserializeOwned>(column: &str, value: &str) -> Result<T, StoreError> {
    serde_json::from_str(value).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

/// A domain value stored as a JSON column. Serializing plain data with string keys cannot fail.
fn to_json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn small(column: &str, value: i32) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("{column} is negative: {value}")))
}

/// A row of `accounts`.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct AccountRecord {
    pub account_id: String,
    pub monthly_credits: i64,
    pub top_up_credits: i64,
    pub plan_monthly_credits: Option<i64>,
    pub plan_next_monthly_credits: Option<i64>,
    pub anchor_day_of_month: Option<i32>,
    pub anchor_hour_utc: Option<i32>,
    pub anchor_minute_utc: Option<i32>,
    pub current_period: Option<String>,
    pub period_started_at_ms: Option<i64>,
    pub monthly_cycle: i64,
    pub next_renewal_at_ms: Option<i64>,
    pub created_at_ms: i64,
}

impl TryFrom<AccountRecord> for Account {
    type Error = StoreError;

    fn try_from(row: AccountRecord) -> Result<Account, StoreError> {
        let anchor = match (row.anchor_day_of_month, row.anchor_hour_utc, row.anchor_minute_utc) {
            (Some(day), Some(hour), Some(minute)) => Some(
                BillingAnchor::new(
                    small("anchor_day_of_month", day)?,
                    small("anchor_hour_utc", hour)?,
                    small("anchor_minute_utc", minute)?,
                )
                .ok_or_else(|| StoreError::Corrupt(format!("billing anchor out of range: {day} {hour}:{minute}")))?,
            ),
            _ => None,
        };
        let plan = match row.plan_monthly_credits {
            Some(monthly) => Some(Plan {
                monthly_credits: credits("plan_monthly_credits", monthly)?,
                next_monthly_credits: row
                    .plan_next_monthly_credits
                    .map(|next| credits("plan_next_monthly_credits", next))
                    .transpose()?,
                anchor,
            }),
            None => None,
        };
        let period = row
            .current_period
            .map(|period| Period::parse(&period).map_err(|e| StoreError::Corrupt(format!("current_period: {e}"))))
            .transpose()?;
        Ok(Account {
            id: account_id("account_id", row.account_id)?,
            monthly: credits("monthly_credits", row.monthly_credits)?,
            top_up: credits("top_up_credits", row.top_up_credits)?,
            plan,
            period,
            period_started_at_ms: row.period_started_at_ms,
            monthly_cycle: row.monthly_cycle,
            next_renewal_at_ms: row.next_renewal_at_ms,
            created_at_ms: row.created_at_ms,
        })
    }
}

impl From<&Account> for AccountRecord {
    fn from(account: &Account) -> AccountRecord {
        let plan = account.plan.as_ref();
        let anchor = plan.and_then(|plan| plan.anchor);
        AccountRecord {
            account_id: account.id.to_string(),
            monthly_credits: account.monthly.get(),
            top_up_credits: account.top_up.get(),
            plan_monthly_credits: plan.map(|plan| plan.monthly_credits.get()),
            plan_next_monthly_credits: plan.and_then(|plan| plan.next_monthly_credits).map(Credits::get),
            anchor_day_of_month: anchor.map(|a| i32::from(a.day_of_month)),
            anchor_hour_utc: anchor.map(|a| i32::from(a.hour_utc)),
            anchor_minute_utc: anchor.map(|a| i32::from(a.minute_utc)),
            current_period: account.period.map(|period| period.to_string()),
            period_started_at_ms: account.period_started_at_ms,
            monthly_cycle: account.monthly_cycle,
            next_renewal_at_ms: account.next_renewal_at_ms,
            created_at_ms: account.created_at_ms,
        }
    }
}

/// A row of `workspaces`.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct WorkspaceRecord {
    pub workspace_id: String,
    pub owner_account_id: String,
    pub pool_size_credits: i64,
    pub funded_pool_size_credits: i64,
    pub monthly_pool_funded: bool,
    pub monthly_pool_credits: i64,
    pub top_up_pool_credits: i64,
    pub monthly_cycle: i64,
    pub low_monthly_pool_credits: i64,
    pub low_top_up_pool_credits: i64,
    pub low_member_remaining_percent: i32,
    pub overflow_pool: Option<String>,
    pub overflow_lent_credits: i64,
    pub low_overflow_units: i64,
    pub created_at_ms: i64,
    pub memberships: i64,
}

impl TryFrom<WorkspaceRecord> for Workspace {
    type Error = StoreError;

    fn try_from(row: WorkspaceRecord) -> Result<Workspace, StoreError> {
        let percent =
            u8::try_from(row.low_member_remaining_percent).ok().filter(|percent| *percent <= 100).ok_or_else(|| {
                StoreError::Corrupt(format!("low_member_remaining_percent: {}", row.low_member_remaining_percent))
            })?;
        Ok(Workspace {
            id: workspace_id("workspace_id", row.workspace_id)?,
            owner: account_id("owner_account_id", row.owner_account_id)?,
            pool_size: credits("pool_size_credits", row.pool_size_credits)?,
            funded_pool_size: credits("funded_pool_size_credits", row.funded_pool_size_credits)?,
            monthly_pool_funded: row.monthly_pool_funded,
            monthly_pool: credits("monthly_pool_credits", row.monthly_pool_credits)?,
            top_up_pool: credits("top_up_pool_credits", row.top_up_pool_credits)?,
            monthly_cycle: row.monthly_cycle,
            thresholds: LowBalanceThresholds {
                monthly_pool: credits("low_monthly_pool_credits", row.low_monthly_pool_credits)?,
                top_up_pool: credits("low_top_up_pool_credits", row.low_top_up_pool_credits)?,
                member_remaining_percent: percent,
                overflow_units: credits("low_overflow_units", row.low_overflow_units)?.get(),
            },
            overflow: row.overflow_pool.as_deref().map(|pool| json("overflow_pool", pool)).transpose()?,
            overflow_lent: credits("overflow_lent_credits", row.overflow_lent_credits)?,
            created_at_ms: row.created_at_ms,
            memberships: row.memberships,
        })
    }
}

impl From<&Workspace> for WorkspaceRecord {
    fn from(workspace: &Workspace) -> WorkspaceRecord {
        WorkspaceRecord {
            workspace_id: workspace.id.to_string(),
            owner_account_id: workspace.owner.to_string(),
            pool_size_credits: workspace.pool_size.get(),
            funded_pool_size_credits: workspace.funded_pool_size.get(),
            monthly_pool_funded: workspace.monthly_pool_funded,
            monthly_pool_credits: workspace.monthly_pool.get(),
            top_up_pool_credits: workspace.top_up_pool.get(),
            monthly_cycle: workspace.monthly_cycle,
            low_monthly_pool_credits: workspace.thresholds.monthly_pool.get(),
            low_top_up_pool_credits: workspace.thresholds.top_up_pool.get(),
            low_member_remaining_percent: i32::from(workspace.thresholds.member_remaining_percent),
            overflow_pool: workspace.overflow.as_ref().map(to_json),
            overflow_lent_credits: workspace.overflow_lent.get(),
            low_overflow_units: workspace.thresholds.overflow_units,
            created_at_ms: workspace.created_at_ms,
            memberships: workspace.memberships,
        }
    }
}

/// A row of `members`.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct MemberRecord {
    pub workspace_id: String,
    pub account_id: String,
    pub role: String,
    pub monthly_allowance_credits: i64,
    pub monthly_used_credits: i64,
    pub top_up_allowance_credits: i64,
    pub top_up_used_credits: i64,
    pub created_at_ms: i64,
    pub membership: i64,
}

impl TryFrom<MemberRecord> for Member {
    type Error = StoreError;

    fn try_from(row: MemberRecord) -> Result<Member, StoreError> {
        Ok(Member {
            workspace_id: workspace_id("workspace_id", row.workspace_id)?,
            account_id: account_id("account_id", row.account_id)?,
            role: Role::from_stored(&row.role).ok_or_else(|| StoreError::Corrupt(format!("role: {}", row.role)))?,
            monthly: AllowanceState {
                allowance: credits("monthly_allowance_credits", row.monthly_allowance_credits)?,
                used: credits("monthly_used_credits", row.monthly_used_credits)?,
            },
            top_up: AllowanceState {
                allowance: credits("top_up_allowance_credits", row.top_up_allowance_credits)?,
                used: credits("top_up_used_credits", row.top_up_used_credits)?,
            },
            created_at_ms: row.created_at_ms,
            membership: row.membership,
        })
    }
}

impl From<&Member> for MemberRecord {
    fn from(member: &Member) -> MemberRecord {
        MemberRecord {
            workspace_id: member.workspace_id.to_string(),
            account_id: member.account_id.to_string(),
            role: member.role.as_str().to_owned(),
            monthly_allowance_credits: member.monthly.allowance.get(),
            monthly_used_credits: member.monthly.used.get(),
            top_up_allowance_credits: member.top_up.allowance.get(),
            top_up_used_credits: member.top_up.used.get(),
            created_at_ms: member.created_at_ms,
            membership: member.membership,
        }
    }
}

/// A row of `profiles` (its members are read apart).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ProfileRecord {
    pub workspace_id: String,
    pub profile_id: String,
    pub name: String,
    pub pool_access: bool,
    pub notify_on_assign: bool,
    pub requires_consent: bool,
    pub created_at_ms: i64,
}

impl ProfileRecord {
    /// The profile with `members`.
    pub(crate) fn with_members(self, members: Vec<String>) -> Result<Profile, StoreError> {
        Ok(Profile {
            workspace_id: workspace_id("workspace_id", self.workspace_id)?,
            id: ProfileId::parse(self.profile_id).map_err(|e| StoreError::Corrupt(format!("profile_id: {e}")))?,
            name: self.name,
            pool_access: self.pool_access,
            notify_on_assign: self.notify_on_assign,
            requires_consent: self.requires_consent,
            members: members.into_iter().map(|id| account_id("account_id", id)).collect::<Result<_, _>>()?,
            created_at_ms: self.created_at_ms,
        })
    }
}

/// The stored kind of a charge scope.
pub(crate) fn scope_kind(scope: &Tenant) -> &'static str {
    match scope {
        Tenant::Workspace(_) => "workspace",
        Tenant::Account(_) => "personal",
    }
}

/// The tenant of a charge row, from its stored kind and id.
pub(crate) fn charge_tenant(kind: &str, id: String) -> Result<Tenant, StoreError> {
    match kind {
        "workspace" => Ok(Tenant::Workspace(workspace_id("scope_id", id)?)),
        "personal" => Ok(Tenant::Account(account_id("scope_id", id)?)),
        other => Err(StoreError::Corrupt(format!("scope_kind: {other}"))),
    }
}

/// A row of `charges`.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ChargeRecord {
    pub scope_id: String,
    pub scope_kind: String,
    pub charge_key: String,
    pub account_id: String,
    pub state: String,
    pub monthly_credits: i64,
    pub top_up_credits: i64,
    pub refunded_monthly_credits: i64,
    pub refunded_top_up_credits: i64,
    pub forfeited_credits: i64,
    pub cycle: i64,
    pub created_at_ms: i64,
    pub expires_at_ms: Option<i64>,
    pub overflow_credits: i64,
    pub refunded_overflow_credits: i64,
    pub overflow_take: Option<String>,
    pub membership: i64,
}

impl TryFrom<ChargeRecord> for Charge {
    type Error = StoreError;

    fn try_from(row: ChargeRecord) -> Result<Charge, StoreError> {
        let scope = charge_tenant(&row.scope_kind, row.scope_id)?;
        Ok(Charge {
            key: ChargeKey::parse(row.charge_key).map_err(|e| StoreError::Corrupt(format!("charge_key: {e}")))?,
            scope,
            account_id: account_id("account_id", row.account_id)?,
            state: ChargeState::from_stored(&row.state)
                .ok_or_else(|| StoreError::Corrupt(format!("state: {}", row.state)))?,
            split: Split {
                monthly: credits("monthly_credits", row.monthly_credits)?,
                top_up: credits("top_up_credits", row.top_up_credits)?,
                overflow: credits("overflow_credits", row.overflow_credits)?,
            },
            refunded: Split {
                monthly: credits("refunded_monthly_credits", row.refunded_monthly_credits)?,
                top_up: credits("refunded_top_up_credits", row.refunded_top_up_credits)?,
                overflow: credits("refunded_overflow_credits", row.refunded_overflow_credits)?,
            },
            overflow: row
                .overflow_take
                .as_deref()
                .map(|take| json("overflow_take", take))
                .transpose()?
                .unwrap_or_default(),
            forfeited: credits("forfeited_credits", row.forfeited_credits)?,
            cycle: row.cycle,
            created_at_ms: row.created_at_ms,
            expires_at_ms: row.expires_at_ms,
            membership: row.membership,
        })
    }
}

impl From<&Charge> for ChargeRecord {
    fn from(charge: &Charge) -> ChargeRecord {
        ChargeRecord {
            scope_id: charge.scope.id().to_owned(),
            scope_kind: scope_kind(&charge.scope).to_owned(),
            charge_key: charge.key.to_string(),
            account_id: charge.account_id.to_string(),
            state: charge.state.as_str().to_owned(),
            monthly_credits: charge.split.monthly.get(),
            top_up_credits: charge.split.top_up.get(),
            refunded_monthly_credits: charge.refunded.monthly.get(),
            refunded_top_up_credits: charge.refunded.top_up.get(),
            forfeited_credits: charge.forfeited.get(),
            cycle: charge.cycle,
            created_at_ms: charge.created_at_ms,
            expires_at_ms: charge.expires_at_ms,
            overflow_credits: charge.split.overflow.get(),
            refunded_overflow_credits: charge.refunded.overflow.get(),
            overflow_take: (!charge.overflow.units.is_zero() || !charge.split.overflow.is_zero())
                .then(|| to_json(&charge.overflow)),
            membership: charge.membership,
        }
    }
}

/// A published row of `notifications`.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct NotificationRecord {
    pub position: i64,
    pub kind: String,
    pub account_id: String,
    pub workspace_id: Option<String>,
    pub member_account_id: Option<String>,
    pub payload: String,
    pub created_at_ms: i64,
}

impl TryFrom<NotificationRecord> for PublishedNotification {
    type Error = StoreError;

    fn try_from(row: NotificationRecord) -> Result<PublishedNotification, StoreError> {
        let kind = [
            NotificationKind::LowBalance,
            NotificationKind::RenewalFailed,
            NotificationKind::RenewalSucceeded,
            NotificationKind::OverageStarted,
            NotificationKind::MemberAssignedToProfile,
            NotificationKind::ReservationExpired,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == row.kind)
        .ok_or_else(|| StoreError::Corrupt(format!("notification kind: {}", row.kind)))?;
        let payload: NotificationPayload = serde_json::from_str(&row.payload)
            .map_err(|e| StoreError::Corrupt(format!("notification {} payload: {e}", row.position)))?;
        Ok(PublishedNotification {
            position: row.position,
            notification: Notification {
                kind,
                account_id: account_id("account_id", row.account_id)?,
                workspace_id: row.workspace_id.map(|id| workspace_id("workspace_id", id)).transpose()?,
                member_account_id: row.member_account_id.map(|id| account_id("member_account_id", id)).transpose()?,
                payload,
            },
            created_at_ms: row.created_at_ms,
        })
    }
}

/// What each member's pool-access profiles allow, from (member, requires consent) rows.
pub(crate) fn pool_access(
    rows: Vec<(String, bool)>,
) -> Result<std::collections::HashMap<AccountId, crate::domain::PoolAccess>, StoreError> {
    let mut grants: std::collections::HashMap<AccountId, Vec<bool>> = std::collections::HashMap::new();
    for (account, requires_consent) in rows {
        grants.entry(account_id("account_id", account)?).or_default().push(requires_consent);
    }
    Ok(grants.into_iter().map(|(account, grants)| (account, crate::domain::PoolAccess::from_grants(grants))).collect())
}
