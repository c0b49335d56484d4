//! The model-based randomized test: concurrent clients send random sequences of every mutating
//! RPC to one owner account and its workspaces: hot-path calls (Consume, Reserve, Commit,
//! Release, Refund, with and without overflow consent) of the members of one workspace, and
//! admin calls (accounts, plans, purchases, workspaces, pool sizes, top-ups, thresholds, members,
//! roles, allowances, renewals, pool funding, profiles and their members, the overflow pool and
//! its contract periods), with replays of earlier calls, some of them racing on two servers that
//! share one database. An in-memory model of the rules, written apart from the domain code,
//! then checks every answer:
//!
//! - the calls that took effect, in the order their answers were recorded, applied one by one
//!   to the model, each get the answer the server gave (the split, the overflow units, what went
//!   back, and the pools, balances, allowances, usage and profiles the answer shows);
//! - every refusal is one the model gives at some point of that order between the calls that had
//!   finished before it was sent and those sent after it was answered;
//! - every answer under one key is the same answer, and a call that succeeded is never refused
//!   on a retry (C7);
//! - at the end the account, every pool (the overflow pool too), each member, the profiles and
//!   the open holds equal the model's, the journal moved for each call what the model's call
//!   moved (and nothing for a call the model refuses), and VerifyLedger is clean.
//!
//! The order evidence: every call that takes effect writes its idempotency record's answer in the
//! transaction that holds its scope's locks, so the order of those writes is a serial order of
//! every scope (calls of different scopes that share no lock touch disjoint state). The test
//! installs a trigger on `idempotency_records` that logs each answer's key to a table of its
//! own, numbered as written; the service's schema and statements are as in production.
//!
//! Short by default (CI, both stores). The long mode is
//! `MODEL_OPERATIONS=1000000 cargo test --release --test api model:: -- --nocapture`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use creditpool::proto::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rstest::rstest;
use tonic::Code;

use crate::helpers::{Backend, TestApp, key};

const OWNER: &str = "owner";
const WORKSPACE: &str = "team";
const MEMBERS: usize = 8;
/// The member that sometimes acts as admin; it is an EDITOR until a role change says otherwise.
const ACTING_MEMBER: usize = 0;

/// One call as generated. Members are indexes (`m<i>`); actors and workspaces are ids.
#[derive(Debug, Clone)]
enum Op {
    Consume {
        key: String,
        member: usize,
        amount: i64,
        allow_overflow: bool,
    },
    Reserve {
        key: String,
        member: usize,
        amount: i64,
        allow_overflow: bool,
    },
    Commit {
        hold: String,
        member: usize,
        amount: i64,
        allow_overflow: bool,
    },
    Release {
        hold: String,
        member: usize,
    },
    Refund {
        key: String,
        consumption: String,
        member: usize,
        amount: Option<i64>,
    },
    CreateAccount {
        key: String,
        account: String,
    },
    SetAccountPlan {
        key: String,
        monthly: i64,
    },
    AddAccountCredits {
        key: String,
        amount: i64,
    },
    CreateWorkspace {
        key: String,
        workspace: String,
    },
    SetPoolSize {
        key: String,
        workspace: String,
        actor: String,
        size: i64,
    },
    TopUpWorkspace {
        key: String,
        workspace: String,
        actor: String,
        amount: i64,
    },
    SetLowBalanceThresholds {
        key: String,
        actor: String,
        monthly_pool: i64,
    },
    AddMember {
        key: String,
        actor: String,
        member: usize,
        role: Role,
    },
    RemoveMember {
        key: String,
        actor: String,
        member: usize,
    },
    SetMemberRole {
        key: String,
        actor: String,
        member: usize,
        role: Role,
    },
    SetMemberAllowance {
        key: String,
        actor: String,
        member: usize,
        monthly: i64,
        top_up: i64,
    },
    RenewAccount {
        key: String,
        period: String,
    },
    FundWorkspacePools {
        key: String,
    },
    CreateProfile {
        key: String,
        actor: String,
        profile: String,
        pool_access: bool,
        requires_consent: bool,
    },
    UpdateProfile {
        key: String,
        actor: String,
        profile: String,
        pool_access: Option<bool>,
        requires_consent: Option<bool>,
    },
    DeleteProfile {
        key: String,
        actor: String,
        profile: String,
    },
    AssignProfileMembers {
        key: String,
        actor: String,
        profile: String,
        members: Vec<usize>,
    },
    UnassignProfileMembers {
        key: String,
        actor: String,
        profile: String,
        members: Vec<usize>,
    },
    ConfigureOverflowPool {
        key: String,
        actor: String,
        quota: i64,
        ratio: (i64, i64),
        limit: Option<i64>,
        enabled: bool,
        label: String,
    },
}

impl Op {
    /// The key its idempotency record is stored under.
    fn reference(&self) -> String {
        match self {
            Op::Consume { key, .. } => format!("Consume/{key}"),
            Op::Reserve { key, .. } => format!("Reserve/{key}"),
            Op::Commit { hold, .. } => format!("Commit/{hold}"),
            Op::Release { hold, .. } => format!("Release/{hold}"),
            // One renewal per period, whatever the key (R6).
            Op::RenewAccount { period, .. } => format!("RenewAccount/{period}"),
            Op::Refund { key, .. }
            | Op::CreateAccount { key, .. }
            | Op::SetAccountPlan { key, .. }
            | Op::AddAccountCredits { key, .. }
            | Op::CreateWorkspace { key, .. }
            | Op::SetPoolSize { key, .. }
            | Op::TopUpWorkspace { key, .. }
            | Op::SetLowBalanceThresholds { key, .. }
            | Op::AddMember { key, .. }
            | Op::RemoveMember { key, .. }
            | Op::SetMemberRole { key, .. }
            | Op::SetMemberAllowance { key, .. }
            | Op::FundWorkspacePools { key }
            | Op::CreateProfile { key, .. }
            | Op::UpdateProfile { key, .. }
            | Op::DeleteProfile { key, .. }
            | Op::AssignProfileMembers { key, .. }
            | Op::UnassignProfileMembers { key, .. }
            | Op::ConfigureOverflowPool { key, .. } => key.clone(),
        }
    }
}

fn member_id(member: usize) -> String {
    format!("m{member}")
}

/// What an answer says, as numbers the model can say too (see `Model::apply`).
type Effect = Vec<i64>;

/// A successful answer: what the model compares, and the whole response for comparing replays.
#[derive(Debug, Clone)]
struct Success {
    effect: Effect,
    response: String,
}

/// One call as the client saw it.
#[derive(Debug)]
struct Call {
    op: Op,
    started: Duration,
    ended: Duration,
    answer: Result<Success, (Code, String)>,
}

fn credits_of<const N: usize>(parts: &[SplitPart], buckets: [Bucket; N]) -> [i64; N] {
    buckets.map(|bucket| parts.iter().filter(|p| p.bucket() == bucket).map(|p| p.amount_credits).sum())
}

/// A workspace draw chain: monthly pool, top-up pool, overflow pool.
fn pools(parts: &[SplitPart]) -> [i64; 3] {
    credits_of(parts, [Bucket::WorkspaceMonthly, Bucket::WorkspaceTopUp, Bucket::Overflow])
}

/// An owner's account buckets.
fn account_buckets(parts: &[SplitPart]) -> [i64; 2] {
    credits_of(parts, [Bucket::AccountMonthly, Bucket::AccountTopUp])
}

fn profile_effect(profile: Option<&Profile>) -> Effect {
    let p = profile.cloned().unwrap_or_default();
    let members = p.member_account_ids.iter().filter_map(|id| id[1..].parse::<u32>().ok()).map(|m| 1 << m).sum();
    vec![i64::from(p.pool_access), i64::from(p.notify_on_assign), i64::from(p.requires_consent), members]
}

fn account_effect(account: Option<&Account>) -> Effect {
    let a = account.cloned().unwrap_or_default();
    vec![a.monthly_credits, a.top_up_credits, a.owned_pool_size_credits]
}

fn workspace_effect(workspace: Option<&Workspace>) -> Effect {
    let w = workspace.cloned().unwrap_or_default();
    let overflow =
        w.overflow_pool.map_or([0; 4], |p| [i64::from(p.enabled), p.quota_units, p.used_units, p.overage_units]);
    let pools = vec![
        w.pool_size_credits,
        w.monthly_pool_credits,
        w.top_up_pool_credits,
        i64::from(w.monthly_pool_funded),
        w.funded_pool_size_credits,
        w.monthly_reserved_credits,
        w.top_up_reserved_credits,
    ];
    [pools, overflow.to_vec()].concat()
}

fn member_effect(member: Option<&Member>) -> Effect {
    let m = member.cloned().unwrap_or_default();
    let (monthly, top_up) = (m.monthly.unwrap_or_default(), m.top_up.unwrap_or_default());
    vec![
        i64::from(m.role),
        monthly.allowance_credits,
        monthly.used_credits,
        top_up.allowance_credits,
        top_up.used_credits,
    ]
}

/// A hot-path answer: [captured or drawn monthly, top-up, overflow, returned monthly, top-up,
/// overflow, forfeited].
fn charge_effect(split: &[SplitPart], returned: &[SplitPart], forfeited: i64) -> Effect {
    let units = |parts: &[SplitPart]| {
        let overflow = parts.iter().filter(|p| p.bucket() == Bucket::Overflow);
        overflow.fold([0, 0], |[units, overage], p| [units + p.overflow_units, overage + p.overage_units])
    };
    [pools(split).as_slice(), &units(split), &pools(returned), &units(returned), &[forfeited]].concat()
}

/// The model's side of [`charge_effect`]: the charge's split and the units it holds (total,
/// overage), what went back and the units the pool took back, and the forfeited credits.
fn hot_answer(split: Split, holds: (i64, i64), given: Given) -> Effect {
    let units = [holds.0 + holds.1, holds.1];
    let back = [given.units.0 + given.units.1, given.units.1];
    [split.as_slice(), &units, &given.credits, &back, &[given.forfeited]].concat()
}

/// What the model compares in `response`, and the whole of it for comparing replays.
fn reply<R: std::fmt::Debug>(response: tonic::Response<R>, effect: impl FnOnce(&R) -> Effect) -> (Effect, String) {
    let response = response.into_inner();
    (effect(&response), format!("{response:?}"))
}

async fn send(app: &TestApp, op: &Op) -> Result<Success, (Code, String)> {
    let mut credit = app.credit.clone();
    let mut admin = app.admin.clone();
    let workspace_id = || WORKSPACE.to_owned();
    let owner = || OWNER.to_owned();
    let idempotency_key = op.reference();
    let answer: Result<(Effect, String), tonic::Status> = match op.clone() {
        Op::Consume { key, member, amount, allow_overflow } => credit
            .consume(ConsumeRequest {
                idempotency_key: key,
                account_id: member_id(member),
                workspace_id: workspace_id(),
                amount_credits: amount,
                allow_overflow,
            })
            .await
            .map(|r| reply(r, |r| charge_effect(&r.consumption.clone().unwrap_or_default().split, &[], 0))),
        Op::Reserve { key, member, amount, allow_overflow } => credit
            .reserve(ReserveRequest {
                reservation_key: key,
                account_id: member_id(member),
                workspace_id: workspace_id(),
                amount_credits: amount,
                allow_overflow,
                ..Default::default()
            })
            .await
            .map(|r| {
                let mut r = r.into_inner();
                let effect = charge_effect(&r.reservation.clone().unwrap_or_default().split, &[], 0);
                // The age is of the moment of answering, so a replay's differs.
                if let Some(reservation) = r.reservation.as_mut() {
                    reservation.age_seconds = 0;
                }
                (effect, format!("{r:?}"))
            }),
        Op::Commit { hold, member, amount, allow_overflow } => credit
            .commit(CommitRequest {
                reservation_key: hold,
                account_id: member_id(member),
                workspace_id: workspace_id(),
                amount_credits: amount,
                allow_overflow,
            })
            .await
            .map(|r| {
                let r = r.into_inner();
                let split = r.consumption.clone().unwrap_or_default().split;
                (charge_effect(&split, &r.returned, r.forfeited_credits), format!("{r:?}"))
            }),
        Op::Release { hold, member } => credit
            .release(ReleaseRequest {
                reservation_key: hold,
                account_id: member_id(member),
                workspace_id: workspace_id(),
            })
            .await
            .map(|r| {
                let mut r = r.into_inner();
                let effect = charge_effect(&[], &r.returned, r.forfeited_credits);
                if let Some(reservation) = r.reservation.as_mut() {
                    reservation.age_seconds = 0;
                }
                (effect, format!("{r:?}"))
            }),
        Op::Refund { key, consumption, member, amount } => credit
            .refund(RefundRequest {
                idempotency_key: key,
                account_id: member_id(member),
                workspace_id: workspace_id(),
                consumption_key: consumption,
                amount_credits: amount,
            })
            .await
            .map(|r| reply(r, |r| charge_effect(&[], &r.returned, r.forfeited_credits))),
        Op::CreateAccount { account, .. } => admin
            .create_account(CreateAccountRequest { idempotency_key, account_id: account })
            .await
            .map(|r| reply(r, |r| account_effect(r.account.as_ref()))),
        Op::SetAccountPlan { monthly, .. } => admin
            .set_account_plan(SetAccountPlanRequest {
                idempotency_key,
                account_id: owner(),
                monthly_credits: monthly,
                billing_anchor: None,
            })
            .await
            .map(|r| reply(r, |r| [vec![r.granted_credits], account_effect(r.account.as_ref())].concat())),
        Op::AddAccountCredits { amount, .. } => admin
            .add_account_credits(AddAccountCreditsRequest {
                idempotency_key,
                account_id: owner(),
                amount_credits: amount,
            })
            .await
            .map(|r| reply(r, |r| account_effect(r.account.as_ref()))),
        Op::CreateWorkspace { workspace, .. } => admin
            .create_workspace(CreateWorkspaceRequest {
                idempotency_key,
                workspace_id: workspace,
                owner_account_id: owner(),
            })
            .await
            .map(|r| reply(r, |r| workspace_effect(r.workspace.as_ref()))),
        Op::SetPoolSize { workspace, actor, size, .. } => admin
            .set_pool_size(SetPoolSizeRequest {
                idempotency_key,
                workspace_id: workspace,
                actor_account_id: actor,
                pool_size_credits: size,
            })
            .await
            .map(|r| {
                reply(r, |r| {
                    [
                        vec![r.funded_credits],
                        account_buckets(&r.funded_from).to_vec(),
                        workspace_effect(r.workspace.as_ref()),
                    ]
                    .concat()
                })
            }),
        Op::TopUpWorkspace { workspace, actor, amount, .. } => admin
            .top_up_workspace(TopUpWorkspaceRequest {
                idempotency_key,
                workspace_id: workspace,
                actor_account_id: actor,
                amount_credits: amount,
            })
            .await
            .map(|r| {
                reply(r, |r| {
                    [account_buckets(&r.funded_from).to_vec(), workspace_effect(r.workspace.as_ref())].concat()
                })
            }),
        Op::SetLowBalanceThresholds { actor, monthly_pool, .. } => admin
            .set_low_balance_thresholds(SetLowBalanceThresholdsRequest {
                idempotency_key,
                workspace_id: workspace_id(),
                actor_account_id: actor,
                thresholds: Some(LowBalanceThresholds {
                    monthly_pool_credits: monthly_pool,
                    member_remaining_percent: 10,
                    ..Default::default()
                }),
            })
            .await
            .map(|r| reply(r, |r| workspace_effect(r.workspace.as_ref()))),
        Op::AddMember { actor, member, role, .. } => admin
            .add_member(AddMemberRequest {
                idempotency_key,
                workspace_id: workspace_id(),
                actor_account_id: actor,
                account_id: member_id(member),
                role: role.into(),
            })
            .await
            .map(|r| reply(r, |r| member_effect(r.member.as_ref()))),
        Op::RemoveMember { actor, member, .. } => admin
            .remove_member(RemoveMemberRequest {
                idempotency_key,
                workspace_id: workspace_id(),
                actor_account_id: actor,
                account_id: member_id(member),
            })
            .await
            .map(|r| {
                reply(r, |r| [vec![i64::from(r.released_reservations)], member_effect(r.member.as_ref())].concat())
            }),
        Op::SetMemberRole { actor, member, role, .. } => admin
            .set_member_role(SetMemberRoleRequest {
                idempotency_key,
                workspace_id: workspace_id(),
                actor_account_id: actor,
                account_id: member_id(member),
                role: role.into(),
            })
            .await
            .map(|r| reply(r, |r| member_effect(r.member.as_ref()))),
        Op::SetMemberAllowance { actor, member, monthly, top_up, .. } => admin
            .set_member_allowance(SetMemberAllowanceRequest {
                idempotency_key,
                workspace_id: workspace_id(),
                actor_account_id: actor,
                account_id: member_id(member),
                monthly_allowance_credits: monthly,
                top_up_allowance_credits: top_up,
            })
            .await
            .map(|r| reply(r, |r| [member_effect(r.member.as_ref()), workspace_effect(r.workspace.as_ref())].concat())),
        Op::RenewAccount { key, period } => admin
            .renew_account(RenewAccountRequest { idempotency_key: key, account_id: owner(), period })
            .await
            .map(|r| {
                let r = r.into_inner();
                let succeeded = r.outcome() == RenewalOutcome::Succeeded;
                let mut effect = vec![i64::from(succeeded), r.required_credits, r.available_credits];
                effect.extend(account_effect(r.account.as_ref()));
                for workspace in &r.workspaces {
                    effect.extend(workspace_effect(Some(workspace)));
                }
                // The same period under another key answers the first renewal (R6).
                (effect, format!("{:?}", (&r.account, r.outcome, r.required_credits, &r.workspaces)))
            }),
        Op::FundWorkspacePools { .. } => admin
            .fund_workspace_pools(FundWorkspacePoolsRequest { idempotency_key, account_id: owner() })
            .await
            .map(|r| {
                reply(r, |r| {
                    let mut effect = vec![r.funded_credits];
                    effect.extend(account_effect(r.account.as_ref()));
                    for workspace in &r.workspaces {
                        effect.extend(workspace_effect(Some(workspace)));
                    }
                    effect
                })
            }),
        Op::CreateProfile { actor, profile, pool_access, requires_consent, .. } => admin
            .create_profile(CreateProfileRequest {
                idempotency_key,
                workspace_id: workspace_id(),
                actor_account_id: actor,
                profile_id: profile.clone(),
                name: profile,
                pool_access,
                notify_on_assign: true,
                requires_consent,
            })
            .await
            .map(|r| reply(r, |r| profile_effect(r.profile.as_ref()))),
        Op::UpdateProfile { actor, profile, pool_access, requires_consent, .. } => admin
            .update_profile(UpdateProfileRequest {
                idempotency_key,
                workspace_id: workspace_id(),
                actor_account_id: actor,
                profile_id: profile,
                name: None,
                pool_access,
                notify_on_assign: None,
                requires_consent,
            })
            .await
            .map(|r| reply(r, |r| profile_effect(r.profile.as_ref()))),
        Op::DeleteProfile { actor, profile, .. } => admin
            .delete_profile(DeleteProfileRequest {
                idempotency_key,
                workspace_id: workspace_id(),
                actor_account_id: actor,
                profile_id: profile,
            })
            .await
            .map(|r| reply(r, |r| profile_effect(r.profile.as_ref()))),
        Op::AssignProfileMembers { actor, profile, members, .. } => admin
            .assign_profile_members(AssignProfileMembersRequest {
                idempotency_key,
                workspace_id: workspace_id(),
                actor_account_id: actor,
                profile_id: profile,
                account_ids: members.into_iter().map(member_id).collect(),
            })
            .await
            .map(|r| reply(r, |r| profile_effect(r.profile.as_ref()))),
        Op::UnassignProfileMembers { actor, profile, members, .. } => admin
            .unassign_profile_members(UnassignProfileMembersRequest {
                idempotency_key,
                workspace_id: workspace_id(),
                actor_account_id: actor,
                profile_id: profile,
                account_ids: members.into_iter().map(member_id).collect(),
            })
            .await
            .map(|r| reply(r, |r| profile_effect(r.profile.as_ref()))),
        Op::ConfigureOverflowPool { actor, quota, ratio, limit, enabled, label, .. } => admin
            .configure_overflow_pool(ConfigureOverflowPoolRequest {
                idempotency_key,
                workspace_id: workspace_id(),
                actor_account_id: actor,
                quota_units: quota,
                units_per_credit_num: ratio.0,
                units_per_credit_den: ratio.1,
                overage_limit_units: limit,
                enabled,
                contract_period: label,
            })
            .await
            .map(|r| reply(r, |r| workspace_effect(r.workspace.as_ref()))),
    };
    answer.map(|(effect, response)| Success { effect, response }).map_err(|s| (s.code(), s.message().to_owned()))
}

// ---------------------------------------------------------------------------------------------
// The model: A2, A3, W1–W3, R1–R5, M1–M3, C1–C6 (the overflow pool and profiles included) for
// one owner, written apart from the domain code.

#[derive(Debug, Clone)]
struct ModelAccount {
    monthly: i64,
    top_up: i64,
    plan: i64,
    /// A plan change waiting for the next renewal (A3).
    next_plan: Option<i64>,
    period: String,
}

#[derive(Debug, Clone, Default)]
struct ModelWorkspace {
    pool_size: i64,
    /// What the monthly pool received this period.
    funded_size: i64,
    funded: bool,
    monthly_pool: i64,
    top_up_pool: i64,
    /// Counts renewals; a charge's monthly credits of an earlier cycle are forfeited.
    cycle: i64,
}

#[derive(Debug, Clone, Copy)]
struct ModelMember {
    role: Role,
    /// Which admission this is: an account removed and added again is a new membership.
    membership: i64,
    monthly_allowance: i64,
    monthly_used: i64,
    top_up_allowance: i64,
    top_up_used: i64,
}

impl ModelMember {
    fn holds_allowance(&self) -> bool {
        matches!(self.role, Role::Owner | Role::Admin | Role::Editor)
    }

    fn remaining(&self) -> (i64, i64) {
        ((self.monthly_allowance - self.monthly_used).max(0), (self.top_up_allowance - self.top_up_used).max(0))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Held,
    Captured,
    Released,
}

/// Credits per link of the draw chain: monthly, top-up, overflow (C1).
type Split = [i64; 3];

/// The units an overflow draw cost: (quota, overage), at its ratio, in its contract period (C4).
#[derive(Debug, Clone, Copy, Default)]
struct Take {
    units: (i64, i64),
    ratio: (i64, i64),
    period: i64,
}

#[derive(Debug, Clone)]
struct ModelCharge {
    member: usize,
    membership: i64,
    cycle: i64,
    state: State,
    split: Split,
    refunded: Split,
    take: Take,
}

/// What a return gave back: credits per link, the units the overflow pool took back (quota,
/// overage), and the monthly credits forfeited to a renewal.
#[derive(Debug, Clone, Copy, Default)]
struct Given {
    credits: Split,
    units: (i64, i64),
    forfeited: i64,
}

/// The enterprise overflow pool of the team (C4).
#[derive(Debug, Clone)]
struct ModelPool {
    enabled: bool,
    quota: i64,
    used: i64,
    overage: i64,
    /// Units per credit: (numerator, denominator).
    ratio: (i64, i64),
    limit: Option<i64>,
    label: String,
    /// Counts contract periods: units of a closed one stay counted there.
    period: i64,
}

impl ModelPool {
    /// ceil(credits × num / den): never in the caller's favour.
    fn units_for(ratio: (i64, i64), credits: i64) -> i64 {
        (credits * ratio.0 + ratio.1 - 1) / ratio.1
    }

    /// The most credits the pool could lend now.
    fn lendable(&self) -> i64 {
        if !self.enabled {
            return 0;
        }
        match self.limit {
            Some(limit) => {
                let units = (self.quota - self.used).max(0) + (limit - self.overage).max(0);
                units * self.ratio.1 / self.ratio.0
            }
            None => i64::MAX / 4,
        }
    }
}

/// A product profile of the team (C1).
#[derive(Debug, Clone, Default)]
struct ModelProfile {
    pool_access: bool,
    notify_on_assign: bool,
    requires_consent: bool,
    members: std::collections::BTreeSet<usize>,
}

impl ModelProfile {
    fn view(&self) -> Effect {
        let members = self.members.iter().map(|m| 1 << m).sum();
        vec![i64::from(self.pool_access), i64::from(self.notify_on_assign), i64::from(self.requires_consent), members]
    }
}

/// Whether a member may draw the overflow pool (C1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Denied,
    NeedsConsent,
    Granted,
}

#[derive(Debug, Clone)]
struct Model {
    accounts: HashSet<String>,
    owner: ModelAccount,
    /// Every workspace of the owner, by id; the members are of `WORKSPACE`.
    workspaces: BTreeMap<String, ModelWorkspace>,
    members: Vec<Option<ModelMember>>,
    memberships: i64,
    charges: HashMap<String, ModelCharge>,
    overflow: Option<ModelPool>,
    profiles: BTreeMap<String, ModelProfile>,
    /// Open holds per member (C5b caps them).
    open_holds: Vec<usize>,
    /// L1: the credits each call's journal entries move, by reference.
    journal: HashMap<String, i64>,
    /// What the call being applied moves.
    moving: i64,
}

/// C5b: the service's default cap on open holds per member.
const MAX_OPEN_HOLDS: usize = 100;

/// `amount` of `of`, the last-drawn bucket first.
fn last_drawn<const N: usize>(of: [i64; N], amount: i64) -> [i64; N] {
    let mut left = amount;
    let mut split = [0; N];
    for i in (0..N).rev() {
        split[i] = left.min(of[i]);
        left -= split[i];
    }
    split
}

/// `amount` from `from`, the first bucket first; `None` when they do not cover it.
fn first_drawn<const N: usize>(from: [i64; N], amount: i64) -> Option<[i64; N]> {
    let mut left = amount;
    let mut split = [0; N];
    for i in 0..N {
        split[i] = left.min(from[i]);
        left -= split[i];
    }
    (left == 0).then_some(split)
}

fn plus<const N: usize>(a: [i64; N], b: [i64; N]) -> [i64; N] {
    std::array::from_fn(|i| a[i] + b[i])
}

fn minus<const N: usize>(a: [i64; N], b: [i64; N]) -> [i64; N] {
    std::array::from_fn(|i| a[i] - b[i])
}

impl Model {
    fn team(&mut self) -> &mut ModelWorkspace {
        self.workspaces.get_mut(WORKSPACE).expect("the team workspace")
    }

    fn member(&self, member: usize) -> Result<ModelMember, Code> {
        self.members[member].ok_or(Code::NotFound)
    }

    /// The role of `actor` in `workspace`: the owner owns them all; members are of the team.
    fn role_of(&self, actor: &str, workspace: &str) -> Option<Role> {
        if actor == OWNER {
            return Some(Role::Owner);
        }
        let index: usize = actor[1..].parse().ok()?;
        (workspace == WORKSPACE).then(|| self.members[index].map(|m| m.role)).flatten()
    }

    /// M1: members and allowances need an OWNER or ADMIN; funding needs the OWNER.
    fn authorize(&self, actor: &str, workspace: &str, funding: bool) -> Result<(), Code> {
        match self.role_of(actor, workspace) {
            Some(Role::Owner) => Ok(()),
            Some(Role::Admin) if !funding => Ok(()),
            _ => Err(Code::PermissionDenied),
        }
    }

    /// C1: a member is in the pool if any of its profiles has access; consent is needed when
    /// every such profile requires it.
    fn access(&self, member: usize, allow_overflow: bool) -> Access {
        let grants: Vec<bool> = self
            .profiles
            .values()
            .filter(|p| p.pool_access && p.members.contains(&member))
            .map(|p| p.requires_consent)
            .collect();
        match grants.iter().any(|consent| !consent) || (!grants.is_empty() && allow_overflow) {
            true => Access::Granted,
            false if grants.is_empty() => Access::Denied,
            false => Access::NeedsConsent,
        }
    }

    /// C2: what `member` could draw now from each link of the chain.
    fn available(&self, member: &ModelMember, access: Access) -> Split {
        let team = &self.workspaces[WORKSPACE];
        let (monthly, top_up) = member.remaining();
        let overflow = match (&self.overflow, access) {
            (Some(pool), Access::Granted | Access::NeedsConsent) => pool.lendable(),
            _ => 0,
        };
        [monthly.min(team.monthly_pool).max(0), top_up.min(team.top_up_pool).max(0), overflow]
    }

    /// C1, C2, C4: monthly, then top-up, then overflow; all or nothing. The split and the
    /// units its overflow part costs.
    fn draw(
        &self,
        index: usize,
        member: &ModelMember,
        amount: i64,
        allow_overflow: bool,
    ) -> Result<(Split, (i64, i64)), Code> {
        let access = self.access(index, allow_overflow);
        let split = first_drawn(self.available(member, access), amount).ok_or(Code::ResourceExhausted)?;
        if split[2] == 0 {
            return Ok((split, (0, 0)));
        }
        let pool = self.overflow.as_ref().ok_or(Code::ResourceExhausted)?;
        if access == Access::NeedsConsent {
            return Err(Code::ResourceExhausted);
        }
        let units = ModelPool::units_for(pool.ratio, split[2]);
        let quota = units.min((pool.quota - pool.used).max(0));
        let overage = units - quota;
        if !pool.enabled || pool.limit.is_some_and(|limit| pool.overage + overage > limit) {
            return Err(Code::ResourceExhausted);
        }
        Ok((split, (quota, overage)))
    }

    /// What a new overflow draw records: the pool's ratio and contract period.
    fn fresh_take(&self) -> Take {
        self.overflow.as_ref().map_or_else(Take::default, |pool| Take {
            units: (0, 0),
            ratio: pool.ratio,
            period: pool.period,
        })
    }

    fn owned_charge(&self, key: &str, member: usize) -> Result<ModelCharge, Code> {
        self.charges.get(key).filter(|charge| charge.member == member).cloned().ok_or(Code::NotFound)
    }

    /// Takes `split` from the team's pools and `units` from the overflow pool, and adds the
    /// allowance parts to `member`'s usage.
    fn take(&mut self, member: usize, split: Split, units: (i64, i64)) {
        let team = self.team();
        team.monthly_pool -= split[0];
        team.top_up_pool -= split[1];
        let m = self.members[member].as_mut().expect("a drawing member");
        m.monthly_used += split[0];
        m.top_up_used += split[1];
        if let Some(pool) = self.overflow.as_mut() {
            pool.used += units.0;
            pool.overage += units.1;
        }
    }

    /// C4, C5b, C6: gives `back` of what `charge` holds (`holding`) back. The overflow part gives
    /// back the units beyond the cost of what the charge keeps, overage first, to the pool if its
    /// contract period is still the charge's.
    fn give_back(&mut self, charge: &mut ModelCharge, back: Split, holding: Split) -> Given {
        let forfeited = if charge.cycle == self.workspaces[WORKSPACE].cycle { 0 } else { back[0] };
        let returned = [back[0] - forfeited, back[1], back[2]];
        let mut units = (0, 0);
        if returned[2] > 0 {
            let take = &mut charge.take;
            let total = take.units.0 + take.units.1;
            let kept = ModelPool::units_for(take.ratio, holding[2] - returned[2]).min(total);
            let [quota, overage] = last_drawn([take.units.0, take.units.1], total - kept);
            take.units = (take.units.0 - quota, take.units.1 - overage);
            if let Some(pool) = self.overflow.as_mut().filter(|pool| pool.period == take.period) {
                pool.used = (pool.used - quota).max(0);
                pool.overage = (pool.overage - overage).max(0);
                units = (quota, overage);
            }
        }
        let team = self.team();
        team.monthly_pool += returned[0];
        team.top_up_pool += returned[1];
        if let Some(m) = self.members[charge.member].as_mut()
            && m.membership == charge.membership
        {
            m.monthly_used = (m.monthly_used - returned[0]).max(0);
            m.top_up_used = (m.top_up_used - returned[1]).max(0);
        }
        Given { credits: returned, units, forfeited }
    }

    fn account_view(&self) -> Effect {
        let owned = self.workspaces.values().map(|w| w.pool_size).sum();
        vec![self.owner.monthly, self.owner.top_up, owned]
    }

    fn workspace_view(&self, id: &str) -> Effect {
        let w = &self.workspaces[id];
        let reserved = if id == WORKSPACE {
            self.members.iter().flatten().map(ModelMember::remaining).fold((0, 0), |s, r| (s.0 + r.0, s.1 + r.1))
        } else {
            (0, 0)
        };
        let pool = self.overflow.as_ref().filter(|_| id == WORKSPACE);
        // The API's used units include the overage.
        let overflow = pool.map_or([0; 4], |p| [i64::from(p.enabled), p.quota, p.used + p.overage, p.overage]);
        [
            vec![
                w.pool_size,
                w.monthly_pool,
                w.top_up_pool,
                i64::from(w.funded),
                w.funded_size,
                reserved.0,
                reserved.1,
            ],
            overflow.to_vec(),
        ]
        .concat()
    }

    fn member_view(member: &ModelMember) -> Effect {
        vec![
            i64::from(member.role as i32),
            member.monthly_allowance,
            member.monthly_used,
            member.top_up_allowance,
            member.top_up_used,
        ]
    }

    /// Takes `amount` from the owner, monthly first (W1, W3).
    fn withdraw(&mut self, amount: i64) -> Result<(i64, i64), Code> {
        let [monthly, top_up] =
            first_drawn([self.owner.monthly, self.owner.top_up], amount).ok_or(Code::ResourceExhausted)?;
        self.owner.monthly -= monthly;
        self.owner.top_up -= top_up;
        Ok((monthly, top_up))
    }

    /// The pools waiting for funding, and what they need.
    fn unfunded(&self) -> (Vec<String>, i64) {
        let unfunded: Vec<String> =
            self.workspaces.iter().filter(|(_, w)| !w.funded).map(|(id, _)| id.clone()).collect();
        let required = unfunded.iter().map(|id| self.workspaces[id].pool_size).sum();
        (unfunded, required)
    }

    /// R2, R5: funds every unfunded pool with its size, all or nothing; the credits moved.
    fn fund_unfunded(&mut self) -> Result<(i64, Vec<String>), Code> {
        let (unfunded, required) = self.unfunded();
        if required > self.owner.monthly + self.owner.top_up {
            return Err(Code::ResourceExhausted);
        }
        for id in &unfunded {
            let size = self.workspaces[id].pool_size;
            self.withdraw(size)?;
            let w = self.workspaces.get_mut(id).expect("an owned workspace");
            w.monthly_pool += size;
            w.funded_size = size;
            w.funded = true;
        }
        Ok((required, unfunded))
    }

    /// Applies `op` to the model if the rules let it; what its answer must say.
    fn apply(&mut self, op: &Op) -> Result<Effect, Code> {
        self.moving = 0;
        let effect = self.decide(op, false)?;
        if self.moving > 0 {
            *self.journal.entry(op.reference()).or_default() += self.moving;
        }
        Ok(effect)
    }

    /// The refusal the rules give `op` now, if any; changes nothing.
    fn refusal(&mut self, op: &Op) -> Option<Code> {
        self.decide(op, true).err()
    }

    /// Checks `op` against the rules, then (unless `dry`) changes the model as it does. Every
    /// arm checks everything before it changes anything, so a refusal changes nothing.
    fn decide(&mut self, op: &Op, dry: bool) -> Result<Effect, Code> {
        match op {
            Op::Consume { key, member, amount, allow_overflow }
            | Op::Reserve { key, member, amount, allow_overflow } => {
                if self.charges.contains_key(key) {
                    return Err(Code::AlreadyExists);
                }
                let held = matches!(op, Op::Reserve { .. });
                if held && self.open_holds[*member] >= MAX_OPEN_HOLDS {
                    return Err(Code::FailedPrecondition);
                }
                let m = self.member(*member)?;
                if !m.holds_allowance() {
                    return Err(Code::PermissionDenied);
                }
                let (split, units) = self.draw(*member, &m, *amount, *allow_overflow)?;
                if dry {
                    return Ok(Vec::new());
                }
                let take = Take { units, ..self.fresh_take() };
                self.take(*member, split, units);
                self.moving += amount;
                let charge = ModelCharge {
                    member: *member,
                    membership: m.membership,
                    cycle: self.workspaces[WORKSPACE].cycle,
                    state: if held { State::Held } else { State::Captured },
                    split,
                    refunded: [0; 3],
                    take,
                };
                self.open_holds[*member] += usize::from(held);
                self.charges.insert(key.clone(), charge);
                Ok(hot_answer(split, units, Given::default()))
            }
            Op::Commit { hold, member, amount, allow_overflow } => {
                let mut charge = self.owned_charge(hold, *member)?;
                let m = self.member(*member)?;
                if charge.state != State::Held {
                    return Err(Code::FailedPrecondition);
                }
                let held: i64 = charge.split.iter().sum();
                self.moving += held.max(*amount);
                let (captured, given) = if *amount <= held {
                    if dry {
                        return Ok(Vec::new());
                    }
                    let rest = last_drawn(charge.split, held - amount);
                    let holding = charge.split;
                    let given = self.give_back(&mut charge, rest, holding);
                    (minus(charge.split, rest), given)
                } else {
                    if charge.cycle != self.workspaces[WORKSPACE].cycle {
                        return Err(Code::FailedPrecondition);
                    }
                    // Nor may it add units to those of a closed contract period.
                    let period = self.overflow.as_ref().map_or(0, |pool| pool.period);
                    let of_closed_period = charge.take.units != (0, 0) && charge.take.period != period;
                    let access = self.access(*member, *allow_overflow);
                    let reaches_pool = first_drawn(self.available(&m, access), amount - held).is_some_and(|s| s[2] > 0);
                    if of_closed_period && reaches_pool {
                        return Err(Code::FailedPrecondition);
                    }
                    let (extra, units) = self.draw(*member, &m, amount - held, *allow_overflow)?;
                    if dry {
                        return Ok(Vec::new());
                    }
                    if units != (0, 0) {
                        if charge.take.units == (0, 0) {
                            charge.take = self.fresh_take();
                        }
                        charge.take.units = (charge.take.units.0 + units.0, charge.take.units.1 + units.1);
                    }
                    self.take(*member, extra, units);
                    (plus(charge.split, extra), Given::default())
                };
                charge.state = State::Captured;
                charge.split = captured;
                self.open_holds[*member] -= 1;
                let holds = charge.take.units;
                self.charges.insert(hold.clone(), charge);
                Ok(hot_answer(captured, holds, given))
            }
            Op::Release { hold, member } => {
                let mut charge = self.owned_charge(hold, *member)?;
                self.member(*member)?;
                if charge.state != State::Held {
                    return Err(Code::FailedPrecondition);
                }
                if dry {
                    return Ok(Vec::new());
                }
                let split = charge.split;
                let given = self.give_back(&mut charge, split, split);
                self.moving += split.iter().sum::<i64>();
                charge.state = State::Released;
                self.charges.insert(hold.clone(), charge);
                self.open_holds[*member] -= 1;
                Ok(hot_answer([0; 3], (0, 0), given))
            }
            Op::Refund { consumption, member, amount, .. } => {
                let mut charge = self.owned_charge(consumption, *member)?;
                self.member(*member)?;
                if charge.state == State::Held {
                    return Err(Code::FailedPrecondition);
                }
                let remaining = minus(charge.split, charge.refunded);
                let refundable = if charge.state == State::Captured { remaining.iter().sum() } else { 0 };
                let requested = amount.unwrap_or(refundable);
                if requested > refundable || requested == 0 {
                    return Err(Code::FailedPrecondition);
                }
                if dry {
                    return Ok(Vec::new());
                }
                let back = last_drawn(remaining, requested);
                let given = self.give_back(&mut charge, back, remaining);
                self.moving += requested;
                charge.refunded = plus(charge.refunded, back);
                self.charges.insert(consumption.clone(), charge);
                Ok(hot_answer([0; 3], (0, 0), given))
            }
            Op::CreateAccount { account, .. } => {
                if self.accounts.contains(account) {
                    return Err(Code::AlreadyExists);
                }
                if dry {
                    return Ok(Vec::new());
                }
                self.accounts.insert(account.clone());
                Ok(vec![0, 0, 0])
            }
            Op::SetAccountPlan { monthly, .. } => {
                if dry {
                    return Ok(Vec::new());
                }
                // A3: the owner has a plan; a change waits for the next renewal.
                self.owner.next_plan = (*monthly != self.owner.plan).then_some(*monthly);
                Ok([vec![0], self.account_view()].concat())
            }
            Op::AddAccountCredits { amount, .. } => {
                if dry {
                    return Ok(Vec::new());
                }
                self.owner.top_up += amount;
                self.moving += amount;
                Ok(self.account_view())
            }
            Op::CreateWorkspace { workspace, .. } => {
                if self.workspaces.contains_key(workspace) {
                    return Err(Code::AlreadyExists);
                }
                if dry {
                    return Ok(Vec::new());
                }
                self.workspaces.insert(workspace.clone(), ModelWorkspace { funded: true, ..Default::default() });
                Ok(self.workspace_view(workspace))
            }
            Op::SetPoolSize { workspace, actor, size, .. } => {
                let Some(w) = self.workspaces.get(workspace).cloned() else { return Err(Code::NotFound) };
                self.authorize(actor, workspace, true)?;
                let difference = (size - w.funded_size).max(0);
                let funds_now = w.funded && difference > 0;
                if *size > w.pool_size {
                    // W2: what the owner will hold at renewal once this funding has left.
                    let drawable = [self.owner.monthly, self.owner.top_up];
                    let draw = if funds_now { first_drawn(drawable, difference).unwrap_or(drawable) } else { [0, 0] };
                    let others: i64 =
                        self.workspaces.iter().filter(|(id, _)| *id != workspace).map(|(_, w)| w.pool_size).sum();
                    let capacity = self.owner.next_plan.unwrap_or(self.owner.plan) + self.owner.top_up - draw[1];
                    if others + size > capacity {
                        return Err(Code::FailedPrecondition);
                    }
                }
                if funds_now && difference > self.owner.monthly + self.owner.top_up {
                    return Err(Code::ResourceExhausted);
                }
                if dry {
                    return Ok(Vec::new());
                }
                let (funded, draw) = if funds_now { (difference, self.withdraw(difference)?) } else { (0, (0, 0)) };
                let w = self.workspaces.get_mut(workspace).expect("checked above");
                if funds_now {
                    w.monthly_pool += difference;
                    w.funded_size = *size;
                }
                w.pool_size = *size;
                self.moving += funded;
                Ok([vec![funded, draw.0, draw.1], self.workspace_view(workspace)].concat())
            }
            Op::TopUpWorkspace { workspace, actor, amount, .. } => {
                if !self.workspaces.contains_key(workspace) {
                    return Err(Code::NotFound);
                }
                self.authorize(actor, workspace, true)?;
                if *amount > self.owner.monthly + self.owner.top_up {
                    return Err(Code::ResourceExhausted);
                }
                if dry {
                    return Ok(Vec::new());
                }
                let draw = self.withdraw(*amount)?;
                self.workspaces.get_mut(workspace).expect("checked above").top_up_pool += amount;
                self.moving += amount;
                Ok([vec![draw.0, draw.1], self.workspace_view(workspace)].concat())
            }
            Op::SetLowBalanceThresholds { actor, .. } => {
                self.authorize(actor, WORKSPACE, false)?;
                if dry {
                    return Ok(Vec::new());
                }
                Ok(self.workspace_view(WORKSPACE))
            }
            Op::AddMember { actor, member, role, .. } => {
                self.authorize(actor, WORKSPACE, false)?;
                if self.members[*member].is_some() {
                    return Err(Code::AlreadyExists);
                }
                if dry {
                    return Ok(Vec::new());
                }
                self.memberships += 1;
                let m = ModelMember {
                    role: *role,
                    membership: self.memberships,
                    monthly_allowance: 0,
                    monthly_used: 0,
                    top_up_allowance: 0,
                    top_up_used: 0,
                };
                self.members[*member] = Some(m);
                Ok(Self::member_view(&m))
            }
            Op::RemoveMember { actor, member, .. } => {
                self.authorize(actor, WORKSPACE, false)?;
                self.member(*member)?;
                if dry {
                    return Ok(Vec::new());
                }
                // C5b: its open holds go back first.
                let holds: Vec<String> = self
                    .charges
                    .iter()
                    .filter(|(_, c)| c.member == *member && c.state == State::Held)
                    .map(|(k, _)| k.clone())
                    .collect();
                for key in &holds {
                    let mut charge = self.charges[key].clone();
                    let split = charge.split;
                    self.give_back(&mut charge, split, split);
                    self.moving += split.iter().sum::<i64>();
                    charge.state = State::Released;
                    self.charges.insert(key.clone(), charge);
                }
                // Its profile assignments go with the membership.
                for profile in self.profiles.values_mut() {
                    profile.members.remove(member);
                }
                self.open_holds[*member] = 0;
                let m = self.members[*member].take().expect("checked above");
                Ok([vec![holds.len() as i64], Self::member_view(&m)].concat())
            }
            Op::SetMemberRole { actor, member, role, .. } => {
                self.authorize(actor, WORKSPACE, false)?;
                let mut m = self.member(*member)?;
                if dry {
                    return Ok(Vec::new());
                }
                m.role = *role;
                if !m.holds_allowance() {
                    m.monthly_allowance = 0;
                    m.top_up_allowance = 0;
                }
                self.members[*member] = Some(m);
                Ok(Self::member_view(&m))
            }
            Op::SetMemberAllowance { actor, member, monthly, top_up, .. } => {
                self.authorize(actor, WORKSPACE, false)?;
                let mut m = self.member(*member)?;
                if (*monthly != 0 || *top_up != 0) && !m.holds_allowance() {
                    return Err(Code::FailedPrecondition);
                }
                // M2: a raise may reserve at most what the others leave of the pool.
                let others = self
                    .members
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| i != member)
                    .filter_map(|(_, m)| m.map(|m| m.remaining()))
                    .fold((0, 0), |s, r| (s.0 + r.0, s.1 + r.1));
                let team = &self.workspaces[WORKSPACE];
                let current = m.remaining();
                let next = ModelMember { monthly_allowance: *monthly, top_up_allowance: *top_up, ..m };
                let requested = next.remaining();
                let unallocated = ((team.monthly_pool - others.0).max(0), (team.top_up_pool - others.1).max(0));
                if (requested.0 > current.0 && requested.0 > unallocated.0)
                    || (requested.1 > current.1 && requested.1 > unallocated.1)
                {
                    return Err(Code::FailedPrecondition);
                }
                if dry {
                    return Ok(Vec::new());
                }
                m = next;
                self.members[*member] = Some(m);
                Ok([Self::member_view(&m), self.workspace_view(WORKSPACE)].concat())
            }
            Op::RenewAccount { period, .. } => {
                if *period <= self.owner.period {
                    return Err(Code::FailedPrecondition);
                }
                if dry {
                    return Ok(Vec::new());
                }
                // R1: the plan (a waiting change first) refreshes the monthly credits.
                if let Some(plan) = self.owner.next_plan.take() {
                    self.owner.plan = plan;
                }
                self.moving += self.owner.monthly + self.owner.plan;
                self.owner.monthly = self.owner.plan;
                self.owner.period = period.clone();
                for w in self.workspaces.values_mut() {
                    self.moving += w.monthly_pool;
                    w.monthly_pool = 0;
                    w.funded_size = 0;
                    w.funded = w.pool_size == 0;
                    w.cycle += 1;
                }
                let available = self.owner.monthly + self.owner.top_up;
                let required: i64 = self.workspaces.values().map(|w| w.pool_size).sum();
                // R2, R3: all pools or none.
                let succeeded = self.fund_unfunded().is_ok();
                self.moving += if succeeded { required } else { 0 };
                // R4: monthly usage starts again.
                for m in self.members.iter_mut().flatten() {
                    m.monthly_used = 0;
                }
                let mut effect = vec![i64::from(succeeded), required, available];
                effect.extend(self.account_view());
                for id in self.workspaces.keys() {
                    effect.extend(self.workspace_view(id));
                }
                Ok(effect)
            }
            Op::FundWorkspacePools { .. } => {
                if self.unfunded().1 > self.owner.monthly + self.owner.top_up {
                    return Err(Code::ResourceExhausted);
                }
                if dry {
                    return Ok(Vec::new());
                }
                let (funded, ids) = self.fund_unfunded()?;
                self.moving += funded;
                let mut effect = vec![funded];
                effect.extend(self.account_view());
                for id in &ids {
                    effect.extend(self.workspace_view(id));
                }
                Ok(effect)
            }
            Op::CreateProfile { actor, profile, pool_access, requires_consent, .. } => {
                self.authorize(actor, WORKSPACE, false)?;
                if self.profiles.contains_key(profile) {
                    return Err(Code::AlreadyExists);
                }
                if dry {
                    return Ok(Vec::new());
                }
                let created = ModelProfile {
                    pool_access: *pool_access,
                    notify_on_assign: true,
                    requires_consent: *requires_consent,
                    members: Default::default(),
                };
                let view = created.view();
                self.profiles.insert(profile.clone(), created);
                Ok(view)
            }
            Op::UpdateProfile { actor, profile, pool_access, requires_consent, .. } => {
                self.authorize(actor, WORKSPACE, false)?;
                let Some(p) = self.profiles.get_mut(profile) else { return Err(Code::NotFound) };
                if dry {
                    return Ok(Vec::new());
                }
                p.pool_access = pool_access.unwrap_or(p.pool_access);
                p.requires_consent = requires_consent.unwrap_or(p.requires_consent);
                Ok(p.view())
            }
            Op::DeleteProfile { actor, profile, .. } => {
                self.authorize(actor, WORKSPACE, false)?;
                if !self.profiles.contains_key(profile) {
                    return Err(Code::NotFound);
                }
                if dry {
                    return Ok(Vec::new());
                }
                Ok(self.profiles.remove(profile).expect("checked above").view())
            }
            Op::AssignProfileMembers { actor, profile, members, .. } => {
                self.authorize(actor, WORKSPACE, false)?;
                if !self.profiles.contains_key(profile) || members.iter().any(|m| self.members[*m].is_none()) {
                    return Err(Code::NotFound);
                }
                if dry {
                    return Ok(Vec::new());
                }
                let p = self.profiles.get_mut(profile).expect("checked above");
                p.members.extend(members.iter().copied());
                Ok(p.view())
            }
            Op::UnassignProfileMembers { actor, profile, members, .. } => {
                self.authorize(actor, WORKSPACE, false)?;
                let Some(p) = self.profiles.get_mut(profile) else { return Err(Code::NotFound) };
                if dry {
                    return Ok(Vec::new());
                }
                for member in members {
                    p.members.remove(member);
                }
                Ok(p.view())
            }
            Op::ConfigureOverflowPool { actor, quota, ratio, limit, enabled, label, .. } => {
                self.authorize(actor, WORKSPACE, true)?;
                if dry {
                    return Ok(Vec::new());
                }
                // C4: the same contract period keeps what it used; a new label starts afresh.
                let (used, overage, period) = match &self.overflow {
                    Some(pool) if pool.label == *label => (pool.used, pool.overage, pool.period),
                    Some(pool) => (0, 0, pool.period + 1),
                    None => (0, 0, 0),
                };
                self.overflow = Some(ModelPool {
                    enabled: *enabled,
                    quota: *quota,
                    used,
                    overage,
                    ratio: *ratio,
                    limit: *limit,
                    label: label.clone(),
                    period,
                });
                Ok(self.workspace_view(WORKSPACE))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The traffic.

/// How much traffic: `MODEL_OPERATIONS` in all (default 800), over 16 hot-path clients (64 from
/// 10,000 operations up) and 2 admin clients.
fn size() -> (usize, usize) {
    let operations: usize = std::env::var("MODEL_OPERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(800);
    let clients = if operations >= 10_000 { 64 } else { 16 };
    (clients, operations.div_ceil(clients + ADMIN_CLIENTS))
}

const ADMIN_CLIENTS: usize = 2;

/// Sends `op` (to both servers at once, sometimes), and notes what the client saw.
async fn call(servers: &[TestApp], rng: &mut StdRng, op: Op, epoch: Instant, calls: &mut Vec<Call>) {
    let racing = servers.len() > 1 && rng.random_bool(0.1);
    let started = epoch.elapsed();
    if racing {
        let (first, second) = tokio::join!(send(&servers[0], &op), send(&servers[1], &op));
        let ended = epoch.elapsed();
        calls.push(Call { op: op.clone(), started, ended, answer: first });
        calls.push(Call { op, started, ended, answer: second });
    } else {
        let server = &servers[rng.random_range(0..servers.len())];
        let answer = send(server, &op).await;
        calls.push(Call { op, started, ended: epoch.elapsed(), answer });
    }
}

/// One member's random hot-path calls: mostly new, some replays of its earlier calls.
async fn hot_path_client(servers: Arc<Vec<TestApp>>, client: usize, steps: usize, epoch: Instant) -> Vec<Call> {
    let mut rng = StdRng::seed_from_u64(0x5eed ^ client as u64);
    let member = client % MEMBERS;
    let mut calls = Vec::with_capacity(steps + steps / 4);
    let (mut holds, mut consumed, mut sent): (Vec<String>, Vec<String>, Vec<Op>) = Default::default();
    for step in 0..steps {
        let fresh = format!("c{client}-{step}");
        let allow_overflow = rng.random_bool(0.3);
        let op = match rng.random_range(0..100) {
            _ if !sent.is_empty() && rng.random_bool(0.12) => sent[rng.random_range(0..sent.len())].clone(),
            0..=34 => Op::Consume { key: fresh, member, amount: rng.random_range(1..=40), allow_overflow },
            35..=54 if holds.len() < 20 => {
                Op::Reserve { key: fresh, member, amount: rng.random_range(1..=40), allow_overflow }
            }
            55..=69 if !holds.is_empty() => {
                let hold = holds.swap_remove(rng.random_range(0..holds.len()));
                consumed.push(hold.clone());
                Op::Commit { hold, member, amount: rng.random_range(1..=60), allow_overflow }
            }
            70..=79 if !holds.is_empty() => {
                Op::Release { hold: holds.swap_remove(rng.random_range(0..holds.len())), member }
            }
            _ if !consumed.is_empty() => Op::Refund {
                key: fresh,
                consumption: consumed[rng.random_range(0..consumed.len())].clone(),
                member,
                amount: rng.random_bool(0.6).then(|| rng.random_range(1..=30)),
            },
            _ => Op::Consume { key: fresh, member, amount: rng.random_range(1..=40), allow_overflow },
        };
        match &op {
            Op::Consume { key, .. } if !consumed.contains(key) => consumed.push(key.clone()),
            Op::Reserve { key, .. } if !holds.contains(key) && !consumed.contains(key) => holds.push(key.clone()),
            _ => {}
        }
        call(&servers, &mut rng, op.clone(), epoch, &mut calls).await;
        sent.push(op);
    }
    calls
}

/// Random admin calls on the owner, its workspaces and the team's members, with replays.
/// `per_member` scales amounts to the traffic; `months` hands out renewal periods in order.
async fn admin_client(
    servers: Arc<Vec<TestApp>>,
    client: usize,
    steps: usize,
    epoch: Instant,
    per_member: i64,
    months: Arc<(String, AtomicU32)>,
) -> Vec<Call> {
    let mut rng = StdRng::seed_from_u64(0xad31 ^ client as u64);
    let mut calls = Vec::with_capacity(steps + steps / 4);
    let mut sent: Vec<Op> = Vec::new();
    let pool = per_member * 6 * MEMBERS as i64;
    let roles = [Role::Editor, Role::Editor, Role::Admin, Role::Reviewer, Role::Client];
    // What undoes a removal or a role without allowance, sent next (as the owner).
    let mut amends: std::collections::VecDeque<Op> = Default::default();
    for step in 0..steps {
        let key = format!("a{client}-{step}");
        if let Some(mut amend) = amends.pop_front() {
            match &mut amend {
                Op::AddMember { key: k, .. }
                | Op::SetMemberRole { key: k, .. }
                | Op::SetMemberAllowance { key: k, .. } => {
                    *k = key;
                }
                _ => {}
            }
            call(&servers, &mut rng, amend.clone(), epoch, &mut calls).await;
            sent.push(amend);
            continue;
        }
        let actor = if rng.random_bool(0.15) { member_id(ACTING_MEMBER) } else { OWNER.to_owned() };
        let member = rng.random_range(0..MEMBERS);
        let workspace =
            if rng.random_bool(0.8) { WORKSPACE.to_owned() } else { format!("side{}", rng.random_range(0..3)) };
        let profile = ["pa", "pb", "pc"][rng.random_range(0..3)].to_owned();
        let some_members: Vec<usize> = (0..rng.random_range(1..=3)).map(|_| rng.random_range(0..MEMBERS)).collect();
        let op = match rng.random_range(0..114) {
            _ if !sent.is_empty() && rng.random_bool(0.12) => sent[rng.random_range(0..sent.len())].clone(),
            0..=24 => {
                // Sometimes small, so members run into the overflow pool.
                let scale = if rng.random_bool(0.3) { 1 } else { 16 };
                Op::SetMemberAllowance {
                    key,
                    actor,
                    member,
                    monthly: rng.random_range(0..=per_member * scale / 2),
                    top_up: rng.random_range(0..=per_member * scale / 5),
                }
            }
            25..=31 => Op::SetMemberRole { key, actor, member, role: roles[rng.random_range(0..roles.len())] },
            32..=34 => Op::RemoveMember { key, actor, member },
            35..=37 => Op::AddMember { key, actor, member, role: roles[rng.random_range(0..3)] },
            38..=47 => Op::TopUpWorkspace { key, workspace, actor, amount: rng.random_range(1..=per_member * 4) },
            48..=55 => Op::SetPoolSize { key, workspace, actor, size: rng.random_range(0..=pool * 3 / 2) },
            56..=63 => Op::AddAccountCredits { key, amount: rng.random_range(1..=per_member * 8) },
            64..=67 => Op::SetAccountPlan { key, monthly: rng.random_range(pool / 2..=pool * 2) },
            68..=73 => {
                // Mostly the next period; sometimes one already started (refused, R6).
                let (first, next) = (&months.0, &months.1);
                let months_on = if rng.random_bool(0.85) { next.fetch_add(1, Ordering::SeqCst) } else { 0 };
                let mut period = first.clone();
                for _ in 0..months_on {
                    period = crate::helpers::next_period(&period);
                }
                Op::RenewAccount { key, period }
            }
            74..=77 => Op::FundWorkspacePools { key },
            78..=80 => Op::SetLowBalanceThresholds { key, actor, monthly_pool: rng.random_range(0..=per_member) },
            81..=84 => Op::CreateAccount { key, account: format!("x{}", rng.random_range(0..4)) },
            85..=87 => Op::CreateWorkspace { key, workspace: format!("side{}", rng.random_range(0..3)) },
            88..=91 => Op::CreateProfile {
                key,
                actor,
                profile,
                pool_access: rng.random_bool(0.8),
                requires_consent: rng.random_bool(0.3),
            },
            92..=96 => Op::UpdateProfile {
                key,
                actor,
                profile,
                pool_access: rng.random_bool(0.5).then(|| rng.random_bool(0.7)),
                requires_consent: rng.random_bool(0.5).then(|| rng.random_bool(0.3)),
            },
            97..=98 => Op::DeleteProfile { key, actor, profile },
            99..=106 => Op::AssignProfileMembers { key, actor, profile, members: some_members },
            107..=110 => Op::UnassignProfileMembers { key, actor, profile, members: some_members },
            _ => {
                // Ratios that round: 7 units per 3 credits, 3 per 7, one per thousand credits.
                let ratio = [(1, 1), (7, 3), (3, 7), (1, 1000)][rng.random_range(0..4)];
                let quota = rng.random_range(0..=per_member * 4);
                Op::ConfigureOverflowPool {
                    key,
                    actor,
                    quota,
                    ratio,
                    limit: rng.random_bool(0.7).then(|| rng.random_range(0..=quota)),
                    enabled: rng.random_bool(0.85),
                    label: format!("contract-{}", rng.random_range(0..3)),
                }
            }
        };
        call(&servers, &mut rng, op.clone(), epoch, &mut calls).await;
        let removed = match (&op, &calls.last().expect("just called").answer) {
            (Op::RemoveMember { member, .. }, Ok(_)) => Some(*member),
            (Op::SetMemberRole { member, role: Role::Reviewer | Role::Client, .. }, Ok(_)) => Some(*member),
            _ => None,
        };
        if let Some(member) = removed {
            let owner = OWNER.to_owned();
            let regain = match op {
                Op::RemoveMember { .. } => {
                    Op::AddMember { key: String::new(), actor: owner.clone(), member, role: Role::Editor }
                }
                _ => Op::SetMemberRole { key: String::new(), actor: owner.clone(), member, role: Role::Editor },
            };
            amends.push_back(regain);
            let (monthly, top_up) = (per_member * 6, per_member * 2);
            amends.push_back(Op::SetMemberAllowance { key: String::new(), actor: owner, member, monthly, top_up });
        }
        sent.push(op);
    }
    calls
}

/// Codes that say nothing was decided (the call may or may not have applied; the records tell).
fn undecided(code: Code) -> bool {
    matches!(code, Code::Unavailable | Code::DeadlineExceeded | Code::Aborted | Code::Cancelled)
}

/// Checks the calls against the model, given the order the answers were recorded in; the
/// violations found.
fn check(calls: &[Call], order: &[String], mut model: Model) -> (Model, Vec<String>) {
    let mut violations = Vec::new();
    let ops: HashMap<String, &Op> = calls.iter().map(|call| (call.op.reference(), &call.op)).collect();
    let rank: HashMap<&str, usize> = order.iter().enumerate().map(|(i, r)| (r.as_str(), i)).collect();

    // C7: one answer per key, and no refusal of a key that succeeded.
    let mut answered: HashMap<String, &Success> = HashMap::new();
    for call in calls {
        if let Ok(success) = &call.answer {
            let reference = call.op.reference();
            match answered.get(&reference) {
                Some(first) if first.response != success.response => violations
                    .push(format!("{reference}: two different answers: {} / {}", first.response, success.response)),
                Some(_) => {}
                None => {
                    answered.insert(reference.clone(), success);
                    if !rank.contains_key(reference.as_str()) {
                        violations.push(format!("{reference}: answered OK but no answer was recorded"));
                    }
                }
            }
        }
    }
    let mut first_answered: HashMap<String, Duration> = HashMap::new();
    for call in calls.iter().filter(|call| call.answer.is_ok()) {
        let end = first_answered.entry(call.op.reference()).or_insert(call.ended);
        *end = (*end).min(call.ended);
    }
    // A retry sent after the key's success was answered must replay it.
    let after_success =
        |call: &Call| first_answered.get(&call.op.reference()).is_some_and(|answered| call.started > *answered);
    for call in calls {
        if let Err((code, message)) = &call.answer
            && after_success(call)
            && !undecided(*code)
        {
            violations.push(format!("{}: succeeded, yet a retry got {code:?}: {message}", call.op.reference()));
        }
    }

    // Real-time bounds of each refusal: after every key answered OK before it was sent, before
    // every key first sent after it was answered.
    let mut first_start: HashMap<&str, Duration> = HashMap::new();
    let mut first_ok_end: HashMap<&str, Duration> = HashMap::new();
    for call in calls {
        let reference = call.op.reference();
        let Some((&key, _)) = rank.get_key_value(reference.as_str()) else { continue };
        let start = first_start.entry(key).or_insert(call.started);
        *start = (*start).min(call.started);
        if call.answer.is_ok() {
            let end = first_ok_end.entry(key).or_insert(call.ended);
            *end = (*end).min(call.ended);
        }
    }
    let mut by_end: Vec<(Duration, usize)> = first_ok_end.iter().map(|(k, end)| (*end, rank[k])).collect();
    by_end.sort_unstable();
    let mut before_max = Vec::with_capacity(by_end.len());
    let mut running = None;
    for (_, r) in &by_end {
        running = Some(running.map_or(*r, |m: usize| m.max(*r)));
        before_max.push(running.unwrap_or(0));
    }
    let mut by_start: Vec<(Duration, usize)> = first_start.iter().map(|(k, start)| (*start, rank[k])).collect();
    by_start.sort_unstable();
    let mut after_min = vec![order.len(); by_start.len() + 1];
    for i in (0..by_start.len()).rev() {
        after_min[i] = after_min[i + 1].min(by_start[i].1);
    }
    // (lowest position, highest position, code, call) of each refusal to place.
    let mut refusals: Vec<(usize, usize, Code, &Call)> = Vec::new();
    for call in calls {
        let Err((code, _)) = &call.answer else { continue };
        if undecided(*code) || after_success(call) {
            continue;
        }
        let finished_before = by_end.partition_point(|(end, _)| *end < call.started);
        let lowest = if finished_before == 0 { 0 } else { before_max[finished_before - 1] + 1 };
        let sent_after = by_start.partition_point(|(start, _)| *start <= call.ended);
        refusals.push((lowest, after_min[sent_after], *code, call));
    }
    refusals.sort_by_key(|(lowest, ..)| *lowest);

    // Apply the recorded order; place each refusal at some position of its window.
    let mut open: Vec<(usize, Code, &Call)> = Vec::new();
    let mut next = 0;
    for position in 0..=order.len() {
        while next < refusals.len() && refusals[next].0 <= position {
            let (_, highest, code, call) = refusals[next];
            open.push((highest, code, call));
            next += 1;
        }
        open.retain(|(highest, code, call)| {
            if model.refusal(&call.op) == Some(*code) {
                return false;
            }
            if *highest <= position {
                violations.push(format!(
                    "{:?} got {code:?} ({}), which no serial order allows",
                    call.op,
                    call.answer.as_ref().err().map_or("", |(_, m)| m.as_str())
                ));
                return false;
            }
            true
        });
        let Some(reference) = order.get(position) else { break };
        let Some(op) = ops.get(reference) else {
            violations.push(format!("{reference}: recorded but never sent"));
            continue;
        };
        match model.apply(op) {
            Ok(effect) => {
                if let Some(success) = answered.get(reference)
                    && success.effect != effect
                {
                    violations.push(format!("{reference}: answered {:?}, the model says {effect:?}", success.effect));
                }
            }
            Err(code) => violations.push(format!("{reference}: applied, but the model refuses it with {code:?}")),
        }
    }
    (model, violations)
}

/// Logs every idempotency record's answer, in the order written, to `model_answers`: the
/// test's evidence of the serial order (see the module's comment).
async fn record_answer_order(app: &TestApp, backend: Backend) {
    let statements: &[&str] = match backend {
        Backend::Postgres => &[
            "CREATE TABLE model_answers (position BIGSERIAL PRIMARY KEY, idempotency_key TEXT NOT NULL)",
            "CREATE FUNCTION model_answered() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             INSERT INTO model_answers (idempotency_key) VALUES (NEW.idempotency_key); RETURN NULL; END $$",
            "CREATE TRIGGER model_answered AFTER INSERT OR UPDATE OF response ON idempotency_records \
             FOR EACH ROW WHEN (NEW.response IS NOT NULL) EXECUTE FUNCTION model_answered()",
        ],
        Backend::Sqlite => &[
            "CREATE TABLE model_answers (position INTEGER PRIMARY KEY AUTOINCREMENT, idempotency_key TEXT NOT NULL)",
            "CREATE TRIGGER model_answered_insert AFTER INSERT ON idempotency_records \
             WHEN NEW.response IS NOT NULL \
             BEGIN INSERT INTO model_answers (idempotency_key) VALUES (NEW.idempotency_key); END",
            "CREATE TRIGGER model_answered_update AFTER UPDATE OF response ON idempotency_records \
             WHEN NEW.response IS NOT NULL \
             BEGIN INSERT INTO model_answers (idempotency_key) VALUES (NEW.idempotency_key); END",
        ],
    };
    for statement in statements {
        sqlx::raw_sql(sqlx::AssertSqlSafe(*statement)).execute(&app.db).await.expect("the answer-order trigger");
    }
}

async fn model_run(backend: Backend, servers: usize) {
    let (clients, steps) = size();
    // Enough that most draws succeed while renewals, pool sizes and allowances keep changing.
    let per_member = i64::try_from(3 * steps * clients / MEMBERS).unwrap_or(i64::MAX);
    let (monthly_allowance, top_up_allowance) = (per_member * 6, per_member * 2);
    // Holds outlive the longest run: the sweeper's releases are not calls of the traffic.
    // Local even with `CITUS_URL` set: the answer order is kept by a trigger, and Citus's workers
    // have no one order to keep it in.
    let app =
        crate::helpers::spawn_local_app_with(backend, |config| config.reservation_default_ttl_seconds = 86_400).await;
    let pool = monthly_allowance * MEMBERS as i64;
    let top_up_pool = top_up_allowance * MEMBERS as i64;
    app.create_account_with_plan(OWNER, pool).await;
    app.create_workspace(WORKSPACE, OWNER).await;
    app.set_pool_size(WORKSPACE, OWNER, pool).await.expect("pool size");
    app.buy(OWNER, top_up_pool).await;
    app.admin
        .clone()
        .top_up_workspace(TopUpWorkspaceRequest {
            idempotency_key: key(),
            workspace_id: WORKSPACE.into(),
            actor_account_id: OWNER.into(),
            amount_credits: top_up_pool,
        })
        .await
        .expect("top up");
    let mut members = Vec::new();
    for member in 0..MEMBERS {
        app.create_account(&member_id(member)).await;
        app.add_member(WORKSPACE, OWNER, &member_id(member), Role::Editor).await.expect("member");
        app.set_allowance(WORKSPACE, OWNER, &member_id(member), monthly_allowance, top_up_allowance)
            .await
            .expect("allowance");
        members.push(Some(ModelMember {
            role: Role::Editor,
            membership: member as i64 + 1,
            monthly_allowance,
            monthly_used: 0,
            top_up_allowance,
            top_up_used: 0,
        }));
    }
    // The overflow pool and a pool-access profile of half the members, from the start.
    let (quota, limit) = (per_member * 4, per_member * 2);
    let mut admin = app.admin.clone();
    admin
        .configure_overflow_pool(ConfigureOverflowPoolRequest {
            idempotency_key: key(),
            workspace_id: WORKSPACE.into(),
            actor_account_id: OWNER.into(),
            quota_units: quota,
            units_per_credit_num: 7,
            units_per_credit_den: 3,
            overage_limit_units: Some(limit),
            enabled: true,
            contract_period: "contract-0".into(),
        })
        .await
        .expect("overflow pool");
    admin
        .create_profile(CreateProfileRequest {
            idempotency_key: key(),
            workspace_id: WORKSPACE.into(),
            actor_account_id: OWNER.into(),
            profile_id: "pa".into(),
            name: "pa".into(),
            pool_access: true,
            notify_on_assign: true,
            requires_consent: false,
        })
        .await
        .expect("profile");
    admin
        .assign_profile_members(AssignProfileMembersRequest {
            idempotency_key: key(),
            workspace_id: WORKSPACE.into(),
            actor_account_id: OWNER.into(),
            profile_id: "pa".into(),
            account_ids: (0..MEMBERS / 2).map(member_id).collect(),
        })
        .await
        .expect("profile members");
    let overflow = ModelPool {
        enabled: true,
        quota,
        used: 0,
        overage: 0,
        ratio: (7, 3),
        limit: Some(limit),
        label: "contract-0".into(),
        period: 0,
    };
    let profile = ModelProfile {
        pool_access: true,
        notify_on_assign: true,
        requires_consent: false,
        members: (0..MEMBERS / 2).collect(),
    };
    let owner = app.account(OWNER).await;
    let team =
        ModelWorkspace { pool_size: pool, funded_size: pool, funded: true, monthly_pool: pool, top_up_pool, cycle: 0 };
    let initial = Model {
        accounts: [OWNER.to_owned()].into_iter().chain((0..MEMBERS).map(member_id)).collect(),
        owner: ModelAccount {
            monthly: owner.monthly_credits,
            top_up: owner.top_up_credits,
            plan: pool,
            next_plan: None,
            period: owner.current_period.clone(),
        },
        workspaces: [(WORKSPACE.to_owned(), team)].into_iter().collect(),
        members,
        memberships: MEMBERS as i64,
        charges: HashMap::new(),
        overflow: Some(overflow),
        profiles: [("pa".to_owned(), profile)].into_iter().collect(),
        open_holds: vec![0; MEMBERS],
        journal: HashMap::new(),
        moving: 0,
    };
    record_answer_order(&app, backend).await;
    let mut apps = vec![app];
    for _ in 1..servers {
        let replica = apps[0].spawn_replica_with(|config| config.reservation_default_ttl_seconds = 86_400).await;
        apps.push(replica);
    }
    let servers = Arc::new(apps);

    let epoch = Instant::now();
    let months = Arc::new((initial.owner.period.clone(), AtomicU32::new(1)));
    let hot_path = (0..clients).map(|c| tokio::spawn(hot_path_client(Arc::clone(&servers), c, steps, epoch)));
    let admin = (0..ADMIN_CLIENTS)
        .map(|c| tokio::spawn(admin_client(Arc::clone(&servers), c, steps, epoch, per_member, Arc::clone(&months))));
    let tasks: Vec<_> = hot_path.chain(admin).collect();
    let calls: Vec<Call> = crate::helpers::join_all(tasks).await.into_iter().flatten().collect();
    let elapsed = epoch.elapsed();
    let app = &servers[0];
    // The set-up's records are not calls of the traffic (it ran before the trigger).
    let sent: HashSet<String> = calls.iter().map(|c| c.op.reference()).collect();
    let logged: Vec<String> = sqlx::query_scalar("SELECT idempotency_key FROM model_answers ORDER BY position")
        .fetch_all(&app.db)
        .await
        .expect("answer order");
    let mut seen = HashSet::new();
    let order: Vec<String> = logged.into_iter().filter(|r| sent.contains(r) && seen.insert(r.clone())).collect();

    let (model, mut violations) = check(&calls, &order, initial);

    let owner = app.account(OWNER).await;
    let served = vec![owner.monthly_credits, owner.top_up_credits, owner.owned_pool_size_credits];
    if served != model.account_view() {
        violations.push(format!("owner {served:?}, the model's {:?}", model.account_view()));
    }
    for id in model.workspaces.keys() {
        let served = workspace_effect(Some(&app.workspace(id).await));
        if served != model.workspace_view(id) {
            violations.push(format!("workspace {id} {served:?}, the model's {:?}", model.workspace_view(id)));
        }
    }
    let listed: HashMap<String, Member> =
        app.members(WORKSPACE).await.into_iter().map(|m| (m.account_id.clone(), m)).collect();
    for (index, member) in model.members.iter().enumerate() {
        let served = listed.get(&member_id(index)).map(|m| member_effect(Some(m)));
        let modelled = member.as_ref().map(Model::member_view);
        if served != modelled {
            violations.push(format!("{} is {served:?}, the model's {modelled:?}", member_id(index)));
        }
    }
    let profiles = app
        .admin
        .clone()
        .list_profiles(ListProfilesRequest {
            workspace_id: WORKSPACE.into(),
            page_size: 100,
            page_token: String::new(),
        })
        .await
        .expect("ListProfiles")
        .into_inner()
        .profiles;
    let served: BTreeMap<String, Effect> =
        profiles.iter().map(|p| (p.profile_id.clone(), profile_effect(Some(p)))).collect();
    let modelled: BTreeMap<String, Effect> = model.profiles.iter().map(|(id, p)| (id.clone(), p.view())).collect();
    if served != modelled {
        violations.push(format!("profiles {served:?}, the model's {modelled:?}"));
    }
    // L1: the journal moved, call by call, what the model's calls moved; nothing for the rest.
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT reference, CAST(SUM(amount_credits) AS BIGINT) FROM journal_entries GROUP BY reference")
            .fetch_all(&app.db)
            .await
            .expect("journal totals");
    let journal: HashMap<String, i64> = rows.into_iter().filter(|(r, _)| sent.contains(r)).collect();
    if journal != model.journal {
        let differing: Vec<_> = sent
            .iter()
            .filter(|r| journal.get(*r) != model.journal.get(*r))
            .take(5)
            .map(|r| (r, journal.get(r), model.journal.get(r)))
            .collect();
        violations.push(format!("journal totals (reference, served, model's) differ: {differing:?}"));
    }
    // Straight from the table: ListReservations pages, and a long run holds thousands.
    let held: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(monthly_credits + top_up_credits + overflow_credits), 0) AS BIGINT) FROM charges \
         WHERE state = 'held'",
    )
    .fetch_one(&app.db)
    .await
    .expect("held credits");
    let model_held: i64 =
        model.charges.values().filter(|c| c.state == State::Held).map(|c| c.split.iter().sum::<i64>()).sum();
    if held != model_held {
        violations.push(format!("{held} credits held, the model's {model_held}"));
    }
    let refused = calls.iter().filter(|c| c.answer.is_err()).count();
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for call in calls.iter() {
        let kind = format!("{:?}", call.op).split([' ', '{']).next().unwrap_or("").to_owned();
        let outcome = match &call.answer {
            Ok(_) => "ok".to_owned(),
            Err((code, _)) => format!("{code:?}"),
        };
        *kinds.entry(format!("{kind} {outcome}")).or_default() += 1;
    }
    let overflow_draws = calls
        .iter()
        .filter(|c| matches!(c.op, Op::Consume { .. } | Op::Reserve { .. } | Op::Commit { .. }))
        .filter(|c| c.answer.as_ref().is_ok_and(|s| s.effect[2] > 0))
        .count();
    println!("answers by kind: {kinds:?}; {overflow_draws} drew on the overflow pool");
    let undecided_count = calls.iter().filter(|c| matches!(&c.answer, Err((code, _)) if undecided(*code))).count();
    let admin_calls = calls
        .iter()
        .filter(|c| c.op.reference().starts_with('a') || c.op.reference().starts_with("RenewAccount/"))
        .count();
    println!(
        "model run on {backend:?}, {} server(s): {} calls ({admin_calls} admin; {} applied, {refused} refused, \
         {undecided_count} undecided) by {clients} + {ADMIN_CLIENTS} clients in {:.1} s; {} violations",
        servers.len(),
        calls.len(),
        order.len(),
        elapsed.as_secs_f64(),
        violations.len()
    );
    assert!(
        violations.is_empty(),
        "{} violations, the first ones: {:#?}",
        violations.len(),
        &violations[..violations.len().min(10)]
    );
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_every_answer_is_one_a_serial_order_allows_and_the_end_state_is_the_model_s(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    model_run(backend, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_two_servers_racing_replays_on_one_database_answer_as_one_serial_order() {
    model_run(Backend::Postgres, 2).await;
}
