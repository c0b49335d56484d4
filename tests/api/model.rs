//! The model-based randomized test: concurrent clients send random sequences of every mutating
//! RPC but the profile and overflow ones (see below) to one owner account and its workspaces:
//! hot-path calls (Consume, Reserve, Commit, Release, Refund) of the members of one workspace,
//! and admin calls (accounts, plans, purchases, workspaces, pool sizes, top-ups, thresholds,
//! members, roles, allowances, renewals, pool funding), with replays of earlier calls, some of
//! them racing on two servers that share one database. An in-memory model of the rules, written
//! apart from the domain code, then checks every answer:
//!
//! - the calls that took effect, in the order their answers were recorded, applied one by one
//!   to the model, each get the answer the server gave (the split, what went back, the pools,
//!   balances, allowances and usage the answer shows);
//! - every refusal is one the model gives at some point of that order between the calls that had
//!   finished before it was sent and those sent after it was answered;
//! - every answer under one key is the same answer, and a call that succeeded is never refused
//!   on a retry (C7);
//! - at the end the account, every pool, each member and the open holds equal the model's, and
//!   VerifyLedger is clean.
//!
//! The order evidence: every call that takes effect writes its idempotency record's answer in the
//! transaction that holds its scope's locks, so the order of those writes is a serial order of
//! every scope (calls of different scopes that share no lock touch disjoint state). The test
//! installs a trigger on `idempotency_records` that logs each answer's key to a table of its
//! own, numbered as written; the service's schema and statements are as in production.
//!
//! Profiles and the overflow pool are not in this model yet.
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
    Consume { key: String, member: usize, amount: i64 },
    Reserve { key: String, member: usize, amount: i64 },
    Commit { hold: String, member: usize, amount: i64 },
    Release { hold: String, member: usize },
    Refund { key: String, consumption: String, member: usize, amount: Option<i64> },
    CreateAccount { key: String, account: String },
    SetAccountPlan { key: String, monthly: i64 },
    AddAccountCredits { key: String, amount: i64 },
    CreateWorkspace { key: String, workspace: String },
    SetPoolSize { key: String, workspace: String, actor: String, size: i64 },
    TopUpWorkspace { key: String, workspace: String, actor: String, amount: i64 },
    SetLowBalanceThresholds { key: String, actor: String, monthly_pool: i64 },
    AddMember { key: String, actor: String, member: usize, role: Role },
    RemoveMember { key: String, actor: String, member: usize },
    SetMemberRole { key: String, actor: String, member: usize, role: Role },
    SetMemberAllowance { key: String, actor: String, member: usize, monthly: i64, top_up: i64 },
    RenewAccount { key: String, period: String },
    FundWorkspacePools { key: String },
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
            | Op::FundWorkspacePools { key } => key.clone(),
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

fn pair(parts: &[SplitPart], buckets: (Bucket, Bucket)) -> [i64; 2] {
    let of = |bucket: Bucket| parts.iter().filter(|p| p.bucket() == bucket).map(|p| p.amount_credits).sum();
    [of(buckets.0), of(buckets.1)]
}

/// Workspace pools.
fn pools(parts: &[SplitPart]) -> [i64; 2] {
    pair(parts, (Bucket::WorkspaceMonthly, Bucket::WorkspaceTopUp))
}

/// An owner's account buckets.
fn account_buckets(parts: &[SplitPart]) -> [i64; 2] {
    pair(parts, (Bucket::AccountMonthly, Bucket::AccountTopUp))
}

fn account_effect(account: Option<&Account>) -> Effect {
    let a = account.cloned().unwrap_or_default();
    vec![a.monthly_credits, a.top_up_credits, a.owned_pool_size_credits]
}

fn workspace_effect(workspace: Option<&Workspace>) -> Effect {
    let w = workspace.cloned().unwrap_or_default();
    vec![
        w.pool_size_credits,
        w.monthly_pool_credits,
        w.top_up_pool_credits,
        i64::from(w.monthly_pool_funded),
        w.funded_pool_size_credits,
        w.monthly_reserved_credits,
        w.top_up_reserved_credits,
    ]
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

/// A hot-path answer: [captured or drawn monthly, top-up, returned monthly, top-up, forfeited].
fn charge_effect(split: &[SplitPart], returned: &[SplitPart], forfeited: i64) -> Effect {
    [pools(split), pools(returned)].concat().into_iter().chain([forfeited]).collect()
}

async fn send(app: &TestApp, op: &Op) -> Result<Success, (Code, String)> {
    let mut credit = app.credit.clone();
    let mut admin = app.admin.clone();
    let workspace_id = || WORKSPACE.to_owned();
    let owner = || OWNER.to_owned();
    let idempotency_key = op.reference();
    let answer: Result<(Effect, String), tonic::Status> = match op.clone() {
        Op::Consume { key, member, amount } => credit
            .consume(ConsumeRequest {
                idempotency_key: key,
                account_id: member_id(member),
                workspace_id: workspace_id(),
                amount_credits: amount,
                ..Default::default()
            })
            .await
            .map(|r| {
                let r = r.into_inner();
                (charge_effect(&r.consumption.clone().unwrap_or_default().split, &[], 0), format!("{r:?}"))
            }),
        Op::Reserve { key, member, amount } => credit
            .reserve(ReserveRequest {
                reservation_key: key,
                account_id: member_id(member),
                workspace_id: workspace_id(),
                amount_credits: amount,
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
        Op::Commit { hold, member, amount } => credit
            .commit(CommitRequest {
                reservation_key: hold,
                account_id: member_id(member),
                workspace_id: workspace_id(),
                amount_credits: amount,
                ..Default::default()
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
            .map(|r| {
                let r = r.into_inner();
                (charge_effect(&[], &r.returned, r.forfeited_credits), format!("{r:?}"))
            }),
        Op::CreateAccount { account, .. } => {
            admin.create_account(CreateAccountRequest { idempotency_key, account_id: account }).await.map(|r| {
                let r = r.into_inner();
                (account_effect(r.account.as_ref()), format!("{r:?}"))
            })
        }
        Op::SetAccountPlan { monthly, .. } => admin
            .set_account_plan(SetAccountPlanRequest {
                idempotency_key,
                account_id: owner(),
                monthly_credits: monthly,
                billing_anchor: None,
            })
            .await
            .map(|r| {
                let r = r.into_inner();
                ([vec![r.granted_credits], account_effect(r.account.as_ref())].concat(), format!("{r:?}"))
            }),
        Op::AddAccountCredits { amount, .. } => admin
            .add_account_credits(AddAccountCreditsRequest {
                idempotency_key,
                account_id: owner(),
                amount_credits: amount,
            })
            .await
            .map(|r| {
                let r = r.into_inner();
                (account_effect(r.account.as_ref()), format!("{r:?}"))
            }),
        Op::CreateWorkspace { workspace, .. } => admin
            .create_workspace(CreateWorkspaceRequest {
                idempotency_key,
                workspace_id: workspace,
                owner_account_id: owner(),
            })
            .await
            .map(|r| {
                let r = r.into_inner();
                (workspace_effect(r.workspace.as_ref()), format!("{r:?}"))
            }),
        Op::SetPoolSize { workspace, actor, size, .. } => admin
            .set_pool_size(SetPoolSizeRequest {
                idempotency_key,
                workspace_id: workspace,
                actor_account_id: actor,
                pool_size_credits: size,
            })
            .await
            .map(|r| {
                let r = r.into_inner();
                let effect = [
                    vec![r.funded_credits],
                    account_buckets(&r.funded_from).to_vec(),
                    workspace_effect(r.workspace.as_ref()),
                ]
                .concat();
                (effect, format!("{r:?}"))
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
                let r = r.into_inner();
                let effect =
                    [account_buckets(&r.funded_from).to_vec(), workspace_effect(r.workspace.as_ref())].concat();
                (effect, format!("{r:?}"))
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
            .map(|r| {
                let r = r.into_inner();
                (workspace_effect(r.workspace.as_ref()), format!("{r:?}"))
            }),
        Op::AddMember { actor, member, role, .. } => admin
            .add_member(AddMemberRequest {
                idempotency_key,
                workspace_id: workspace_id(),
                actor_account_id: actor,
                account_id: member_id(member),
                role: role.into(),
            })
            .await
            .map(|r| {
                let r = r.into_inner();
                (member_effect(r.member.as_ref()), format!("{r:?}"))
            }),
        Op::RemoveMember { actor, member, .. } => admin
            .remove_member(RemoveMemberRequest {
                idempotency_key,
                workspace_id: workspace_id(),
                actor_account_id: actor,
                account_id: member_id(member),
            })
            .await
            .map(|r| {
                let r = r.into_inner();
                let effect = [vec![i64::from(r.released_reservations)], member_effect(r.member.as_ref())].concat();
                (effect, format!("{r:?}"))
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
            .map(|r| {
                let r = r.into_inner();
                (member_effect(r.member.as_ref()), format!("{r:?}"))
            }),
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
            .map(|r| {
                let r = r.into_inner();
                let effect = [member_effect(r.member.as_ref()), workspace_effect(r.workspace.as_ref())].concat();
                (effect, format!("{r:?}"))
            }),
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
                let r = r.into_inner();
                let mut effect = vec![r.funded_credits];
                effect.extend(account_effect(r.account.as_ref()));
                for workspace in &r.workspaces {
                    effect.extend(workspace_effect(Some(workspace)));
                }
                (effect, format!("{r:?}"))
            }),
    };
    answer.map(|(effect, response)| Success { effect, response }).map_err(|s| (s.code(), s.message().to_owned()))
}

// ---------------------------------------------------------------------------------------------
// The model: A2, A3, W1–W3, R1–R5, M1–M3, C1–C3, C5, C5b, C6 for one owner, written apart from
// the domain code.

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

#[derive(Debug, Clone)]
struct ModelCharge {
    member: usize,
    membership: i64,
    cycle: i64,
    state: State,
    split: (i64, i64),
    refunded: (i64, i64),
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
}

/// C5b: the service's default cap on open holds per member.
const MAX_OPEN_HOLDS: usize = 100;

/// `amount` of `of`, last-drawn bucket (top-up) first.
fn last_drawn(of: (i64, i64), amount: i64) -> (i64, i64) {
    let top_up = amount.min(of.1);
    (amount - top_up, top_up)
}

/// `amount` from (monthly, top-up), monthly first; `None` when they do not cover it.
fn first_drawn(from: (i64, i64), amount: i64) -> Option<(i64, i64)> {
    (from.0 + from.1 >= amount).then(|| (amount.min(from.0), amount - amount.min(from.0)))
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

    /// C2: what `member` could draw now from each bucket.
    fn available(&self, member: &ModelMember) -> (i64, i64) {
        let team = &self.workspaces[WORKSPACE];
        let (monthly, top_up) = member.remaining();
        (monthly.min(team.monthly_pool).max(0), top_up.min(team.top_up_pool).max(0))
    }

    /// C1: monthly first, then top-up; all or nothing.
    fn draw(&self, member: &ModelMember, amount: i64) -> Result<(i64, i64), Code> {
        first_drawn(self.available(member), amount).ok_or(Code::ResourceExhausted)
    }

    fn open_holds(&self, member: usize) -> usize {
        self.charges.values().filter(|c| c.member == member && c.state == State::Held).count()
    }

    fn owned_charge(&self, key: &str, member: usize) -> Result<ModelCharge, Code> {
        self.charges.get(key).filter(|charge| charge.member == member).cloned().ok_or(Code::NotFound)
    }

    /// Takes `split` from the team's pools and adds it to `member`'s usage.
    fn take(&mut self, member: usize, split: (i64, i64)) {
        let team = self.team();
        team.monthly_pool -= split.0;
        team.top_up_pool -= split.1;
        let m = self.members[member].as_mut().expect("a drawing member");
        m.monthly_used += split.0;
        m.top_up_used += split.1;
    }

    /// C5b, C6: gives `split` of `charge` back; answers (returned, forfeited).
    fn give_back(&mut self, charge: &ModelCharge, split: (i64, i64)) -> ((i64, i64), i64) {
        let forfeited = if charge.cycle == self.workspaces[WORKSPACE].cycle { 0 } else { split.0 };
        let returned = (split.0 - forfeited, split.1);
        let team = self.team();
        team.monthly_pool += returned.0;
        team.top_up_pool += returned.1;
        if let Some(m) = self.members[charge.member].as_mut()
            && m.membership == charge.membership
        {
            m.monthly_used = (m.monthly_used - returned.0).max(0);
            m.top_up_used = (m.top_up_used - returned.1).max(0);
        }
        (returned, forfeited)
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
        vec![w.pool_size, w.monthly_pool, w.top_up_pool, i64::from(w.funded), w.funded_size, reserved.0, reserved.1]
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
        let split = first_drawn((self.owner.monthly, self.owner.top_up), amount).ok_or(Code::ResourceExhausted)?;
        self.owner.monthly -= split.0;
        self.owner.top_up -= split.1;
        Ok(split)
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
        self.decide(op, false)
    }

    /// The refusal the rules give `op` now, if any; changes nothing.
    fn refusal(&mut self, op: &Op) -> Option<Code> {
        self.decide(op, true).err()
    }

    /// Checks `op` against the rules, then (unless `dry`) changes the model as it does. Every
    /// arm checks everything before it changes anything, so a refusal changes nothing.
    fn decide(&mut self, op: &Op, dry: bool) -> Result<Effect, Code> {
        match op {
            Op::Consume { key, member, amount } | Op::Reserve { key, member, amount } => {
                if self.charges.contains_key(key) {
                    return Err(Code::AlreadyExists);
                }
                let held = matches!(op, Op::Reserve { .. });
                if held && self.open_holds(*member) >= MAX_OPEN_HOLDS {
                    return Err(Code::FailedPrecondition);
                }
                let m = self.member(*member)?;
                if !m.holds_allowance() {
                    return Err(Code::PermissionDenied);
                }
                let split = self.draw(&m, *amount)?;
                if dry {
                    return Ok(Vec::new());
                }
                self.take(*member, split);
                let charge = ModelCharge {
                    member: *member,
                    membership: m.membership,
                    cycle: self.workspaces[WORKSPACE].cycle,
                    state: if held { State::Held } else { State::Captured },
                    split,
                    refunded: (0, 0),
                };
                self.charges.insert(key.clone(), charge);
                Ok(vec![split.0, split.1, 0, 0, 0])
            }
            Op::Commit { hold, member, amount } => {
                let mut charge = self.owned_charge(hold, *member)?;
                let m = self.member(*member)?;
                if charge.state != State::Held {
                    return Err(Code::FailedPrecondition);
                }
                let held = charge.split.0 + charge.split.1;
                let (captured, returned, forfeited) = if *amount <= held {
                    if dry {
                        return Ok(Vec::new());
                    }
                    let rest = last_drawn(charge.split, held - amount);
                    let (returned, forfeited) = self.give_back(&charge, rest);
                    ((charge.split.0 - rest.0, charge.split.1 - rest.1), returned, forfeited)
                } else {
                    if charge.cycle != self.workspaces[WORKSPACE].cycle {
                        return Err(Code::FailedPrecondition);
                    }
                    let extra = self.draw(&m, amount - held)?;
                    if dry {
                        return Ok(Vec::new());
                    }
                    self.take(*member, extra);
                    ((charge.split.0 + extra.0, charge.split.1 + extra.1), (0, 0), 0)
                };
                charge.state = State::Captured;
                charge.split = captured;
                self.charges.insert(hold.clone(), charge);
                Ok(vec![captured.0, captured.1, returned.0, returned.1, forfeited])
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
                let (returned, forfeited) = self.give_back(&charge, charge.split);
                charge.state = State::Released;
                self.charges.insert(hold.clone(), charge);
                Ok(vec![0, 0, returned.0, returned.1, forfeited])
            }
            Op::Refund { consumption, member, amount, .. } => {
                let mut charge = self.owned_charge(consumption, *member)?;
                self.member(*member)?;
                if charge.state == State::Held {
                    return Err(Code::FailedPrecondition);
                }
                let remaining = (charge.split.0 - charge.refunded.0, charge.split.1 - charge.refunded.1);
                let refundable = if charge.state == State::Captured { remaining.0 + remaining.1 } else { 0 };
                let requested = amount.unwrap_or(refundable);
                if requested > refundable || requested == 0 {
                    return Err(Code::FailedPrecondition);
                }
                if dry {
                    return Ok(Vec::new());
                }
                let back = last_drawn(remaining, requested);
                let (returned, forfeited) = self.give_back(&charge, back);
                charge.refunded = (charge.refunded.0 + back.0, charge.refunded.1 + back.1);
                self.charges.insert(consumption.clone(), charge);
                Ok(vec![0, 0, returned.0, returned.1, forfeited])
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
                    let drawable = (self.owner.monthly, self.owner.top_up);
                    let draw = if funds_now { first_drawn(drawable, difference).unwrap_or(drawable) } else { (0, 0) };
                    let others: i64 =
                        self.workspaces.iter().filter(|(id, _)| *id != workspace).map(|(_, w)| w.pool_size).sum();
                    let capacity = self.owner.next_plan.unwrap_or(self.owner.plan) + self.owner.top_up - draw.1;
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
                    self.give_back(&charge, charge.split);
                    charge.state = State::Released;
                    self.charges.insert(key.clone(), charge);
                }
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
                self.owner.monthly = self.owner.plan;
                self.owner.period = period.clone();
                for w in self.workspaces.values_mut() {
                    w.monthly_pool = 0;
                    w.funded_size = 0;
                    w.funded = w.pool_size == 0;
                    w.cycle += 1;
                }
                let available = self.owner.monthly + self.owner.top_up;
                let required: i64 = self.workspaces.values().map(|w| w.pool_size).sum();
                // R2, R3: all pools or none.
                let succeeded = self.fund_unfunded().is_ok();
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
                let mut effect = vec![funded];
                effect.extend(self.account_view());
                for id in &ids {
                    effect.extend(self.workspace_view(id));
                }
                Ok(effect)
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
        let op = match rng.random_range(0..100) {
            _ if !sent.is_empty() && rng.random_bool(0.12) => sent[rng.random_range(0..sent.len())].clone(),
            0..=34 => Op::Consume { key: fresh, member, amount: rng.random_range(1..=40) },
            35..=54 if holds.len() < 20 => Op::Reserve { key: fresh, member, amount: rng.random_range(1..=40) },
            55..=69 if !holds.is_empty() => {
                let hold = holds.swap_remove(rng.random_range(0..holds.len()));
                consumed.push(hold.clone());
                Op::Commit { hold, member, amount: rng.random_range(1..=60) }
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
            _ => Op::Consume { key: fresh, member, amount: rng.random_range(1..=40) },
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
        let op = match rng.random_range(0..100) {
            _ if !sent.is_empty() && rng.random_bool(0.12) => sent[rng.random_range(0..sent.len())].clone(),
            0..=24 => Op::SetMemberAllowance {
                key,
                actor,
                member,
                monthly: rng.random_range(0..=per_member * 8),
                top_up: rng.random_range(0..=per_member * 3),
            },
            25..=31 => Op::SetMemberRole { key, actor, member, role: roles[rng.random_range(0..roles.len())] },
            32..=34 => Op::RemoveMember { key, actor, member },
            35..=37 => Op::AddMember { key, actor, member, role: roles[rng.random_range(0..3)] },
            41..=50 => Op::TopUpWorkspace { key, workspace, actor, amount: rng.random_range(1..=per_member * 4) },
            51..=58 => Op::SetPoolSize { key, workspace, actor, size: rng.random_range(0..=pool * 3 / 2) },
            59..=68 => Op::AddAccountCredits { key, amount: rng.random_range(1..=per_member * 8) },
            69..=72 => Op::SetAccountPlan { key, monthly: rng.random_range(pool / 2..=pool * 2) },
            73..=78 => {
                // Mostly the next period; sometimes one already started (refused, R6).
                let (first, next) = (&months.0, &months.1);
                let months_on = if rng.random_bool(0.85) { next.fetch_add(1, Ordering::SeqCst) } else { 0 };
                let mut period = first.clone();
                for _ in 0..months_on {
                    period = crate::helpers::next_period(&period);
                }
                Op::RenewAccount { key, period }
            }
            79..=82 => Op::FundWorkspacePools { key },
            83..=86 => Op::SetLowBalanceThresholds { key, actor, monthly_pool: rng.random_range(0..=per_member) },
            87..=92 => Op::CreateAccount { key, account: format!("x{}", rng.random_range(0..4)) },
            _ => Op::CreateWorkspace { key, workspace: format!("side{}", rng.random_range(0..3)) },
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
    let app = crate::helpers::spawn_app_with(backend, |config| config.reservation_default_ttl_seconds = 86_400).await;
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
    // Straight from the table: ListReservations pages, and a long run holds thousands.
    let held: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(monthly_credits + top_up_credits), 0) AS BIGINT) FROM charges WHERE state = 'held'",
    )
    .fetch_one(&app.db)
    .await
    .expect("held credits");
    let model_held: i64 =
        model.charges.values().filter(|c| c.state == State::Held).map(|c| c.split.0 + c.split.1).sum();
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
    println!("answers by kind: {kinds:?}");
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
