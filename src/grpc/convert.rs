//! Request checks (each failure names its field) and domain → proto conversions.

use tonic::Status;

use super::status::invalid_argument;
use crate::domain::{
    AccountDraw, AccountId, AllowanceState, BillingAnchor, Credits, IdempotencyKey, MAX_AMOUNT_CREDITS, Member, Role,
    WorkspaceId,
};
use crate::ledger::{AccountView, MAX_PAGE_SIZE, MemberView, WorkspaceView};
use crate::proto;

/// Checks an account id field.
pub(super) fn account_id(field: &str, value: String) -> Result<AccountId, Status> {
    AccountId::parse(value).map_err(|e| invalid_argument(field, e))
}

/// Checks a workspace id field.
pub(super) fn workspace_id(field: &str, value: String) -> Result<WorkspaceId, Status> {
    WorkspaceId::parse(value).map_err(|e| invalid_argument(field, e))
}

/// Checks an idempotency key field.
pub(super) fn idempotency_key(field: &str, value: String) -> Result<IdempotencyKey, Status> {
    IdempotencyKey::parse(value).map_err(|e| invalid_argument(field, e))
}

/// Checks an amount: 1..=10^12.
pub(super) fn amount(field: &str, value: i64) -> Result<Credits, Status> {
    Credits::amount(value)
        .ok_or_else(|| invalid_argument(field, format!("must be 1..={MAX_AMOUNT_CREDITS}, got {value}")))
}

/// Checks a size or allowance: 0..=10^12.
pub(super) fn setting(field: &str, value: i64) -> Result<Credits, Status> {
    Credits::setting(value)
        .ok_or_else(|| invalid_argument(field, format!("must be 0..={MAX_AMOUNT_CREDITS}, got {value}")))
}

/// Checks a role that an admin assigns: set, known, and not OWNER.
pub(super) fn assignable_role(field: &str, value: i32) -> Result<Role, Status> {
    match proto::Role::try_from(value) {
        Ok(proto::Role::Owner) => {
            Err(invalid_argument(field, "OWNER cannot be assigned; a workspace has one owner, its creator"))
        }
        Ok(proto::Role::Admin) => Ok(Role::Admin),
        Ok(proto::Role::Editor) => Ok(Role::Editor),
        Ok(proto::Role::Reviewer) => Ok(Role::Reviewer),
        Ok(proto::Role::Client) => Ok(Role::Client),
        Ok(proto::Role::Unspecified) => Err(invalid_argument(field, "must be set")),
        Err(_) => Err(invalid_argument(field, format!("unknown role {value}"))),
    }
}

/// Checks an optional billing anchor.
pub(super) fn billing_anchor(
    field: &str,
    value: Option<proto::BillingAnchor>,
) -> Result<Option<BillingAnchor>, Status> {
    value
        .map(|anchor| {
            BillingAnchor::new(anchor.day_of_month, anchor.hour_utc, anchor.minute_utc).ok_or_else(|| {
                invalid_argument(field, "day_of_month must be 1..=28, hour_utc 0..=23, minute_utc 0..=59")
            })
        })
        .transpose()
}

/// Checks a page size: 0 (default) up to the maximum.
pub(super) fn page_size(field: &str, value: u32) -> Result<u32, Status> {
    if value > MAX_PAGE_SIZE {
        return Err(invalid_argument(field, format!("must be at most {MAX_PAGE_SIZE}, got {value}")));
    }
    Ok(value)
}

/// Checks a page token that continues after an account id; empty for the first page.
pub(super) fn account_page_token(field: &str, value: String) -> Result<Option<AccountId>, Status> {
    if value.is_empty() {
        return Ok(None);
    }
    AccountId::parse(value).map(Some).map_err(|_| invalid_argument(field, "is not a token this service returned"))
}

/// A Unix-millisecond instant as a protobuf timestamp.
pub(super) fn timestamp(unix_ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: unix_ms.div_euclid(1000),
        nanos: i32::try_from(unix_ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    }
}

pub(super) fn account(view: &AccountView) -> proto::Account {
    let account = &view.account;
    proto::Account {
        account_id: account.id.to_string(),
        monthly_credits: account.monthly.get(),
        top_up_credits: account.top_up.get(),
        plan: account.plan.as_ref().map(|plan| proto::AccountPlan {
            monthly_credits: plan.monthly_credits.get(),
            next_monthly_credits: plan.next_monthly_credits.map(Credits::get),
            billing_anchor: plan.anchor.map(|anchor| proto::BillingAnchor {
                day_of_month: u32::from(anchor.day_of_month),
                hour_utc: u32::from(anchor.hour_utc),
                minute_utc: u32::from(anchor.minute_utc),
            }),
        }),
        current_period: account.period.map(|period| period.to_string()).unwrap_or_default(),
        period_started_at: account.period_started_at_ms.map(timestamp),
        owned_pool_size_credits: view.owned_pool_size.get(),
        created_at: Some(timestamp(account.created_at_ms)),
    }
}

pub(super) fn workspace(view: &WorkspaceView) -> proto::Workspace {
    let workspace = &view.workspace;
    proto::Workspace {
        workspace_id: workspace.id.to_string(),
        owner_account_id: workspace.owner.to_string(),
        pool_size_credits: workspace.pool_size.get(),
        monthly_pool_credits: workspace.monthly_pool.get(),
        top_up_pool_credits: workspace.top_up_pool.get(),
        monthly_reserved_credits: view.monthly_reserved.get(),
        top_up_reserved_credits: view.top_up_reserved.get(),
        monthly_unallocated_credits: workspace.monthly_pool.saturating_sub(view.monthly_reserved).get(),
        top_up_unallocated_credits: workspace.top_up_pool.saturating_sub(view.top_up_reserved).get(),
        monthly_pool_funded: workspace.monthly_pool_funded,
        funded_pool_size_credits: workspace.funded_pool_size.get(),
        low_balance_thresholds: Some(proto::LowBalanceThresholds {
            monthly_pool_credits: workspace.thresholds.monthly_pool.get(),
            top_up_pool_credits: workspace.thresholds.top_up_pool.get(),
            member_remaining_percent: u32::from(workspace.thresholds.member_remaining_percent),
            overflow_units: 0,
        }),
        overflow_pool: None,
        created_at: Some(timestamp(workspace.created_at_ms)),
    }
}

fn allowance(state: AllowanceState) -> proto::Allowance {
    proto::Allowance {
        allowance_credits: state.allowance.get(),
        used_credits: state.used.get(),
        remaining_credits: state.remaining().get(),
    }
}

fn role(role: Role) -> proto::Role {
    match role {
        Role::Owner => proto::Role::Owner,
        Role::Admin => proto::Role::Admin,
        Role::Editor => proto::Role::Editor,
        Role::Reviewer => proto::Role::Reviewer,
        Role::Client => proto::Role::Client,
    }
}

pub(super) fn member(view: &MemberView) -> proto::Member {
    let member: &Member = &view.member;
    proto::Member {
        account_id: member.account_id.to_string(),
        workspace_id: member.workspace_id.to_string(),
        role: role(member.role).into(),
        monthly: Some(allowance(member.monthly)),
        top_up: Some(allowance(member.top_up)),
        profile_ids: Vec::new(),
        open_reservations: 0,
        created_at: Some(timestamp(member.created_at_ms)),
    }
}

/// Where an account draw came from, as split parts (zero parts left out).
pub(super) fn account_draw(draw: AccountDraw) -> Vec<proto::SplitPart> {
    [(proto::Bucket::AccountMonthly, draw.monthly), (proto::Bucket::AccountTopUp, draw.top_up)]
        .into_iter()
        .filter(|(_, amount)| !amount.is_zero())
        .map(|(bucket, amount)| proto::SplitPart {
            bucket: bucket.into(),
            amount_credits: amount.get(),
            overflow_units: 0,
            overage_units: 0,
        })
        .collect()
}
