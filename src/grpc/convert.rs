//! Request checks (each failure names its field) and domain → proto conversions.

use tonic::Status;

use super::status::invalid_argument;
use crate::domain::{
    AccountId, AllowanceState, BillingAnchor, Cause, Charge, ChargeKey, ChargeState, Credits, DrawBucket, GivenBack,
    IdempotencyKey, LowBalanceThresholds, MAX_AMOUNT_CREDITS, MAX_PROFILE_NAME_BYTES, MAX_RATIO_TERM, Member,
    NotificationKind, NotificationPayload, OverflowPool, OverflowSettings, OverflowUnits, Period, PoolAccess, PoolKind,
    Profile, ProfileId, Role, Split, Tenant, UnitRatio, Wallet, WorkspaceId,
};
use crate::ledger::{AccountView, Balance, MAX_PAGE_SIZE, MemberView, ReportRange, UsageReport, WorkspaceView};
use crate::proto;
use crate::store::{HoldCursor, JournalFilter, JournalRow, NotificationFilter, PublishedNotification};

/// Checks an account id field.
pub(super) fn account_id(field: &str, value: String) -> Result<AccountId, Status> {
    let id = AccountId::parse(value).map_err(|e| invalid_argument(field, e))?;
    if field == "account_id" {
        crate::observe::record_scope("account_id", id.as_str());
    }
    Ok(id)
}

/// Checks a workspace id field.
pub(super) fn workspace_id(field: &str, value: String) -> Result<WorkspaceId, Status> {
    let id = WorkspaceId::parse(value).map_err(|e| invalid_argument(field, e))?;
    if field == "workspace_id" {
        crate::observe::record_scope("workspace_id", id.as_str());
    }
    Ok(id)
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

/// Checks a billing period: "YYYY-MM".
pub(super) fn period(field: &str, value: &str) -> Result<Period, Status> {
    Period::parse(value).map_err(|e| invalid_argument(field, e))
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
        next_renewal_at: account.next_renewal_at_ms.map(timestamp),
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
            overflow_units: workspace.thresholds.overflow_units,
        }),
        overflow_pool: workspace.overflow.as_ref().map(overflow_pool),
        created_at: Some(timestamp(workspace.created_at_ms)),
    }
}

pub(super) fn allowance(state: AllowanceState) -> proto::Allowance {
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
        profile_ids: view.profile_ids.iter().map(ToString::to_string).collect(),
        open_reservations: view.open_reservations,
        created_at: Some(timestamp(member.created_at_ms)),
    }
}

/// Where an account draw came from, as split parts (zero parts left out).
pub(super) fn account_draw(draw: Split) -> Vec<proto::SplitPart> {
    parts(false, draw, OverflowUnits::default())
}

/// Checks a charge key field (a Consume idempotency key, a hold or consumption key).
pub(super) fn charge_key(field: &str, value: String) -> Result<ChargeKey, Status> {
    ChargeKey::parse(value).map_err(|e| invalid_argument(field, e))
}

/// Checks an optional workspace id: empty means personal context.
pub(super) fn optional_workspace_id(field: &str, value: String) -> Result<Option<WorkspaceId>, Status> {
    if value.is_empty() { Ok(None) } else { workspace_id(field, value).map(Some) }
}

/// The proto bucket of one link of the draw chain, in a workspace or in personal context.
fn bucket(in_workspace: bool, bucket: DrawBucket) -> proto::Bucket {
    match (in_workspace, bucket) {
        (true, DrawBucket::Monthly) => proto::Bucket::WorkspaceMonthly,
        (true, DrawBucket::TopUp) => proto::Bucket::WorkspaceTopUp,
        (_, DrawBucket::Overflow) => proto::Bucket::Overflow,
        (false, DrawBucket::Monthly) => proto::Bucket::AccountMonthly,
        (false, DrawBucket::TopUp) => proto::Bucket::AccountTopUp,
    }
}

/// A split as parts in draw order, zero parts left out; the overflow part carries `units`.
fn parts(in_workspace: bool, split: Split, units: OverflowUnits) -> Vec<proto::SplitPart> {
    split
        .parts()
        .filter(|(_, amount)| !amount.is_zero())
        .map(|(part, amount)| {
            let units = if part == DrawBucket::Overflow { units } else { OverflowUnits::default() };
            proto::SplitPart {
                bucket: bucket(in_workspace, part).into(),
                amount_credits: amount.get(),
                overflow_units: units.total(),
                overage_units: units.overage,
            }
        })
        .collect()
}

/// A split as parts in draw order (zero parts left out), named by the scope's buckets.
pub(super) fn split(scope: &Tenant, split: Split, units: OverflowUnits) -> Vec<proto::SplitPart> {
    parts(matches!(scope, Tenant::Workspace(_)), split, units)
}

/// What went back, last-drawn bucket first (the order it was returned in).
pub(super) fn returned(scope: &Tenant, given_back: GivenBack) -> Vec<proto::SplitPart> {
    let mut parts = split(scope, given_back.returned, given_back.units);
    parts.reverse();
    parts
}

fn workspace_of(scope: &Tenant) -> String {
    match scope {
        Tenant::Workspace(id) => id.to_string(),
        Tenant::Account(_) => String::new(),
    }
}

pub(super) fn consumption(charge: &Charge) -> proto::Consumption {
    proto::Consumption {
        consumption_key: charge.key.to_string(),
        account_id: charge.account_id.to_string(),
        workspace_id: workspace_of(&charge.scope),
        amount_credits: charge.split.total().get(),
        split: split(&charge.scope, charge.split, charge.overflow.units),
        refunded_credits: charge.refunded.total().get(),
        period: String::new(),
        created_at: Some(timestamp(charge.created_at_ms)),
    }
}

pub(super) fn reservation(charge: &Charge, now_ms: i64) -> proto::Reservation {
    let state = match charge.state {
        ChargeState::Held => proto::ReservationState::Open,
        ChargeState::Captured => proto::ReservationState::Committed,
        ChargeState::Released => proto::ReservationState::Released,
        ChargeState::Expired => proto::ReservationState::Expired,
    };
    proto::Reservation {
        reservation_key: charge.key.to_string(),
        account_id: charge.account_id.to_string(),
        workspace_id: workspace_of(&charge.scope),
        amount_credits: charge.split.total().get(),
        split: split(&charge.scope, charge.split, charge.overflow.units),
        state: state.into(),
        created_at: Some(timestamp(charge.created_at_ms)),
        expires_at: charge.expires_at_ms.map(timestamp),
        age_seconds: now_ms.saturating_sub(charge.created_at_ms).max(0) / 1_000,
        period: String::new(),
    }
}

/// Encodes where a page of holds continues; `|` cannot appear in ids, so it separates.
pub(super) fn hold_page_token(cursor: &HoldCursor) -> String {
    format!("{}|{}|{}", cursor.account_id, cursor.created_at_ms, cursor.key)
}

/// Decodes a hold page token; empty for the first page.
pub(super) fn hold_cursor(field: &str, value: String) -> Result<Option<HoldCursor>, Status> {
    if value.is_empty() {
        return Ok(None);
    }
    let forged = || invalid_argument(field, "is not a token this service returned");
    let mut parts = value.splitn(3, '|');
    let (Some(account_id), Some(created_at_ms), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(forged());
    };
    let account_id = AccountId::parse(account_id).map_err(|_| forged())?;
    let key = ChargeKey::parse(key).map_err(|_| forged())?;
    let created_at_ms = created_at_ms.parse().map_err(|_| forged())?;
    Ok(Some(HoldCursor { account_id: account_id.to_string(), created_at_ms, key: key.to_string() }))
}

/// Checks thresholds: pools 0..=10^12 credits, members 0..=100 percent.
pub(super) fn thresholds(
    field: &str,
    value: Option<proto::LowBalanceThresholds>,
) -> Result<LowBalanceThresholds, Status> {
    let value = value.ok_or_else(|| invalid_argument(field, "must be set"))?;
    let percent =
        u8::try_from(value.member_remaining_percent).ok().filter(|percent| *percent <= 100).ok_or_else(|| {
            invalid_argument(
                field,
                format!("member_remaining_percent must be 0..=100, got {}", value.member_remaining_percent),
            )
        })?;
    Ok(LowBalanceThresholds {
        monthly_pool: setting(&format!("{field}.monthly_pool_credits"), value.monthly_pool_credits)?,
        top_up_pool: setting(&format!("{field}.top_up_pool_credits"), value.top_up_pool_credits)?,
        member_remaining_percent: percent,
        overflow_units: setting(&format!("{field}.overflow_units"), value.overflow_units)?.get(),
    })
}

/// Checks a subscription's filter.
pub(super) fn notification_filter(
    account_id: String,
    workspace_id: String,
    kinds: &[i32],
) -> Result<NotificationFilter, Status> {
    if !account_id.is_empty() {
        AccountId::parse(account_id.clone()).map_err(|e| invalid_argument("account_id", e))?;
    }
    if !workspace_id.is_empty() {
        WorkspaceId::parse(workspace_id.clone()).map_err(|e| invalid_argument("workspace_id", e))?;
    }
    let kinds = kinds
        .iter()
        .map(|kind| match proto::NotificationKind::try_from(*kind) {
            Ok(proto::NotificationKind::LowBalance) => Ok(NotificationKind::LowBalance.as_str()),
            Ok(proto::NotificationKind::RenewalFailed) => Ok(NotificationKind::RenewalFailed.as_str()),
            Ok(proto::NotificationKind::RenewalSucceeded) => Ok(NotificationKind::RenewalSucceeded.as_str()),
            Ok(proto::NotificationKind::OverageStarted) => Ok(NotificationKind::OverageStarted.as_str()),
            Ok(proto::NotificationKind::MemberAssignedToProfile) => {
                Ok(NotificationKind::MemberAssignedToProfile.as_str())
            }
            Ok(proto::NotificationKind::ReservationExpired) => Ok(NotificationKind::ReservationExpired.as_str()),
            Ok(proto::NotificationKind::Unspecified) | Err(_) => {
                Err(invalid_argument("kinds", format!("unknown kind {kind}")))
            }
        })
        .collect::<Result<Vec<_>, Status>>()?;
    Ok(NotificationFilter { account_id, workspace_id, kinds })
}

fn pool_bucket(pool: PoolKind) -> proto::Bucket {
    match pool {
        PoolKind::Monthly => proto::Bucket::WorkspaceMonthly,
        PoolKind::TopUp => proto::Bucket::WorkspaceTopUp,
    }
}

/// A published event as sent to subscribers.
pub(super) fn notification(event: &PublishedNotification) -> proto::Notification {
    let n = &event.notification;
    let kind = match n.kind {
        NotificationKind::LowBalance => proto::NotificationKind::LowBalance,
        NotificationKind::RenewalFailed => proto::NotificationKind::RenewalFailed,
        NotificationKind::RenewalSucceeded => proto::NotificationKind::RenewalSucceeded,
        NotificationKind::OverageStarted => proto::NotificationKind::OverageStarted,
        NotificationKind::MemberAssignedToProfile => proto::NotificationKind::MemberAssignedToProfile,
        NotificationKind::ReservationExpired => proto::NotificationKind::ReservationExpired,
    };
    let payload = match &n.payload {
        NotificationPayload::LowBalance { pool, balance, threshold } => {
            proto::notification::Payload::LowBalance(proto::LowBalancePayload {
                bucket: pool_bucket(*pool).into(),
                balance: balance.get(),
                threshold: threshold.get(),
            })
        }
        NotificationPayload::Renewal { period, workspace_ids, required_credits, available_credits } => {
            proto::notification::Payload::Renewal(proto::RenewalPayload {
                period: period.to_string(),
                workspace_ids: workspace_ids.iter().map(ToString::to_string).collect(),
                required_credits: required_credits.get(),
                available_credits: available_credits.get(),
            })
        }
        NotificationPayload::ReservationExpired { charge } => {
            proto::notification::Payload::ExpiredReservation(reservation(charge, event.created_at_ms))
        }
        NotificationPayload::OverflowLow { quota_left_units, threshold_units } => {
            proto::notification::Payload::LowBalance(proto::LowBalancePayload {
                bucket: proto::Bucket::Overflow.into(),
                balance: *quota_left_units,
                threshold: *threshold_units,
            })
        }
        NotificationPayload::OverageStarted { overage_units, overage_limit_units, .. } => {
            proto::notification::Payload::Overage(proto::OveragePayload {
                overage_units: *overage_units,
                overage_limit_units: *overage_limit_units,
            })
        }
        NotificationPayload::ProfileAssigned { profile_id, profile_name } => {
            proto::notification::Payload::ProfileAssignment(proto::ProfileAssignmentPayload {
                profile_id: profile_id.to_string(),
                profile_name: profile_name.clone(),
            })
        }
    };
    proto::Notification {
        sequence: event.position,
        kind: kind.into(),
        account_id: n.account_id.to_string(),
        workspace_id: n.workspace_id.as_ref().map(ToString::to_string).unwrap_or_default(),
        member_account_id: n.member_account_id.as_ref().map(ToString::to_string).unwrap_or_default(),
        created_at: Some(timestamp(event.created_at_ms)),
        payload: Some(payload),
    }
}

/// GetBalance: what a usage bar needs, in a workspace or in personal context.
pub(super) fn balance(account_id: &AccountId, balance: &Balance) -> proto::GetBalanceResponse {
    let mut response = proto::GetBalanceResponse {
        account_id: account_id.to_string(),
        workspace_id: workspace_of(&balance.wallet.scope()),
        spendable_credits: balance.spendable.total().get(),
        held_credits: balance.held.get(),
        ..proto::GetBalanceResponse::default()
    };
    match &balance.wallet {
        Wallet::Workspace { workspace, member, access } => {
            response.monthly_pool_credits = workspace.monthly_pool.get();
            response.top_up_pool_credits = workspace.top_up_pool.get();
            response.monthly = Some(allowance(member.monthly));
            response.top_up = Some(allowance(member.top_up));
            if let Some(pool) = workspace.overflow.as_ref().filter(|pool| pool.enabled) {
                response.overflow_access = *access != PoolAccess::Denied;
                response.overflow_needs_consent = *access == PoolAccess::NeedsConsent;
                response.overflow_remaining_units = pool.quota_left();
                response.overflow_overage_units = pool.overage_units;
                response.overflow_spendable_credits = balance.spendable.overflow.get();
            }
        }
        Wallet::Personal { account } => {
            response.monthly_pool_credits = account.monthly.get();
            response.top_up_pool_credits = account.top_up.get();
        }
    }
    response
}

/// The overflow pool as the API shows it (used units include overage).
fn overflow_pool(pool: &OverflowPool) -> proto::OverflowPool {
    proto::OverflowPool {
        quota_units: pool.quota_units,
        used_units: pool.quota_used_units.saturating_add(pool.overage_units),
        overage_units: pool.overage_units,
        units_per_credit_num: pool.ratio.num,
        units_per_credit_den: pool.ratio.den,
        overage_limit_units: pool.overage_limit_units,
        enabled: pool.enabled,
        contract_period: pool.period.clone(),
        period_started_at: Some(timestamp(pool.period_started_at_ms)),
    }
}

/// A profile with its members.
pub(super) fn profile(profile: &Profile) -> proto::Profile {
    proto::Profile {
        profile_id: profile.id.to_string(),
        workspace_id: profile.workspace_id.to_string(),
        name: profile.name.clone(),
        pool_access: profile.pool_access,
        notify_on_assign: profile.notify_on_assign,
        member_account_ids: profile.members.iter().map(ToString::to_string).collect(),
        requires_consent: profile.requires_consent,
    }
}

/// Checks a profile id field.
pub(super) fn profile_id(field: &str, value: String) -> Result<ProfileId, Status> {
    ProfileId::parse(value).map_err(|e| invalid_argument(field, e))
}

/// Checks a profile name: 1..=256 bytes.
pub(super) fn profile_name(field: &str, value: String) -> Result<String, Status> {
    if value.is_empty() || value.len() > MAX_PROFILE_NAME_BYTES || value.chars().any(char::is_control) {
        return Err(invalid_argument(
            field,
            format!("must be 1..={MAX_PROFILE_NAME_BYTES} bytes without control characters, got {} bytes", value.len()),
        ));
    }
    Ok(value)
}

/// Most members one assignment names.
const MAX_ASSIGNED: usize = 1_000;

/// Checks a list of account ids: 1..=1000 of them, each an id.
pub(super) fn account_ids(field: &str, values: Vec<String>) -> Result<Vec<AccountId>, Status> {
    if values.is_empty() || values.len() > MAX_ASSIGNED {
        return Err(invalid_argument(field, format!("must name 1..={MAX_ASSIGNED} accounts, got {}", values.len())));
    }
    values
        .into_iter()
        .enumerate()
        .map(|(i, value)| AccountId::parse(value).map_err(|e| invalid_argument(&format!("{field}[{i}]"), e)))
        .collect()
}

/// Checks a page token that continues after a profile id; empty for the first page.
pub(super) fn profile_page_token(field: &str, value: String) -> Result<Option<ProfileId>, Status> {
    if value.is_empty() {
        return Ok(None);
    }
    ProfileId::parse(value).map(Some).map_err(|_| invalid_argument(field, "is not a token this service returned"))
}

/// Checks a contract period label: the id alphabet, 1..=128 bytes.
fn contract_period(field: &str, value: String) -> Result<String, Status> {
    ProfileId::parse(value).map(String::from).map_err(|e| invalid_argument(field, e))
}

/// Checks a ConfigureOverflowPool request's settings, naming the field at fault.
pub(super) fn overflow_settings(request: &proto::ConfigureOverflowPoolRequest) -> Result<OverflowSettings, Status> {
    let quota_units = setting("quota_units", request.quota_units)?.get();
    let term = |field: &str, value: i64| {
        if (1..=MAX_RATIO_TERM).contains(&value) {
            Ok(value)
        } else {
            Err(invalid_argument(field, format!("must be 1..={MAX_RATIO_TERM}, got {value}")))
        }
    };
    let num = term("units_per_credit_num", request.units_per_credit_num)?;
    let den = term("units_per_credit_den", request.units_per_credit_den)?;
    let ratio = UnitRatio::new(num, den).ok_or_else(|| invalid_argument("units_per_credit_num", "out of range"))?;
    let overage_limit_units =
        request.overage_limit_units.map(|limit| setting("overage_limit_units", limit).map(Credits::get)).transpose()?;
    let period = contract_period("contract_period", request.contract_period.clone())?;
    Ok(OverflowSettings { enabled: request.enabled, quota_units, ratio, overage_limit_units, period })
}

/// Checks an optional instant: a valid timestamp, as unix ms.
pub(super) fn instant_ms(field: &str, value: Option<prost_types::Timestamp>) -> Result<Option<i64>, Status> {
    let Some(value) = value else { return Ok(None) };
    // Up to the year 9999, whole nanoseconds below one second.
    if !(0..=253_402_300_799).contains(&value.seconds) || !(0..1_000_000_000).contains(&value.nanos) {
        return Err(invalid_argument(field, "must be a timestamp between 1970 and 9999"));
    }
    Ok(Some(value.seconds * 1_000 + i64::from(value.nanos / 1_000_000)))
}

/// Checks a usage report's range: a time range, or a contract period label, not both.
pub(super) fn report_range(
    from_time: Option<prost_types::Timestamp>,
    to_time: Option<prost_types::Timestamp>,
    contract_period: String,
) -> Result<ReportRange, Status> {
    let from_ms = instant_ms("from_time", from_time)?;
    let to_ms = instant_ms("to_time", to_time)?;
    if !contract_period.is_empty() {
        if from_ms.is_some() || to_ms.is_some() {
            return Err(invalid_argument("contract_period", "cannot be combined with from_time or to_time"));
        }
        return Ok(ReportRange::ContractPeriod(self::contract_period("contract_period", contract_period)?));
    }
    if let (Some(from), Some(to)) = (from_ms, to_ms)
        && from >= to
    {
        return Err(invalid_argument("to_time", "must be after from_time"));
    }
    Ok(ReportRange::Time { from_ms, to_ms })
}

/// The usage report, overflow units on each overflow part.
pub(super) fn usage_report(report: &UsageReport) -> proto::GetUsageReportResponse {
    proto::GetUsageReportResponse {
        members: report
            .members
            .iter()
            .map(|member| proto::MemberUsage {
                account_id: member.account_id.to_string(),
                consumed: parts(true, member.consumed, member.units),
            })
            .collect(),
        overflow_units: report.units.total(),
        overage_units: report.units.overage,
        totals: parts(true, report.totals, report.units),
        from_time: Some(timestamp(report.from_ms)),
        to_time: Some(timestamp(report.to_ms)),
    }
}

/// Checks whose journal: a workspace, or (with an empty workspace) an account.
pub(super) fn journal_scope(workspace_id: String, account_id: String) -> Result<Tenant, Status> {
    match (workspace_id.is_empty(), account_id.is_empty()) {
        (false, true) => Ok(Tenant::Workspace(self::workspace_id("workspace_id", workspace_id)?)),
        (true, false) => Ok(Tenant::Account(self::account_id("account_id", account_id)?)),
        (true, true) => Err(invalid_argument("workspace_id", "a workspace_id or an account_id must be set")),
        (false, false) => Err(invalid_argument("account_id", "must be empty when workspace_id is set")),
    }
}

/// Checks a journal filter; unset selects everything.
pub(super) fn journal_filter(filter: Option<proto::JournalFilter>) -> Result<JournalFilter, Status> {
    let filter = filter.unwrap_or_default();
    let member = if filter.member_account_id.is_empty() {
        None
    } else {
        Some(account_id("filter.member_account_id", filter.member_account_id)?)
    };
    let cause = if filter.cause.is_empty() {
        None
    } else {
        let known = Cause::ALL.map(Cause::as_str).join(", ");
        Some(Cause::from_stored(&filter.cause).ok_or_else(|| {
            invalid_argument("filter.cause", format!("must be one of {known}, got {:?}", filter.cause))
        })?)
    };
    let from_ms = instant_ms("filter.from_time", filter.from_time)?.unwrap_or(0);
    let to_ms = instant_ms("filter.to_time", filter.to_time)?.unwrap_or(i64::MAX);
    if from_ms >= to_ms {
        return Err(invalid_argument("filter.to_time", "must be after filter.from_time"));
    }
    Ok(JournalFilter { member, cause, from_ms, to_ms })
}

/// Decodes a journal page token (the last entry id of the previous page); empty for the first.
pub(super) fn journal_page_token(field: &str, value: &str) -> Result<i64, Status> {
    if value.is_empty() {
        return Ok(0);
    }
    value
        .parse::<i64>()
        .ok()
        .filter(|after| *after > 0)
        .ok_or_else(|| invalid_argument(field, "is not a token this service returned"))
}

/// A journal entry as the API shows it.
pub(super) fn journal_entry(entry: &JournalRow) -> proto::JournalEntry {
    proto::JournalEntry {
        entry_id: entry.entry_id,
        from_bucket: entry.from_bucket.clone(),
        from_owner_id: entry.from_owner_id.clone().unwrap_or_default(),
        to_bucket: entry.to_bucket.clone(),
        to_owner_id: entry.to_owner_id.clone().unwrap_or_default(),
        amount_credits: entry.amount_credits,
        cause: entry.cause.clone(),
        reference: entry.reference.clone(),
        member_account_id: entry.member_account_id.clone().unwrap_or_default(),
        created_at: Some(timestamp(entry.created_at_ms)),
        part: entry.part.clone().unwrap_or_default(),
        overflow_units: entry.overflow_units,
        overage_units: entry.overage_units,
    }
}
