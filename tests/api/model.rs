//! The model-based randomized test: concurrent clients send random hot-path calls (Consume,
//! Reserve, Commit, Release, Refund) to one workspace, with replays of earlier calls, some of
//! them racing on two servers that share one database. An in-memory model of the rules, written
//! apart from the domain code, then checks every answer:
//!
//! - the calls that took effect, in the journal's commit order, applied one by one to the model,
//!   each get the answer the server gave (same split, same credits returned);
//! - every refusal is one the model gives at some point of that order between the calls that had
//!   finished before it was sent and those sent after it was answered;
//! - every answer under one key is the same answer, and a call that succeeded is never refused
//!   on a retry (C7);
//! - at the end the pools, each member's usage and the open holds equal the model's, and
//!   VerifyLedger is clean.
//!
//! Short by default (CI, both stores). The long mode is
//! `MODEL_OPERATIONS=1000000 cargo test --release --test api model:: -- --nocapture`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use creditpool::proto::*;
use rand::{Rng, SeedableRng};
use rstest::rstest;
use tonic::Code;

use crate::helpers::{Backend, TestApp, key};

const WORKSPACE: &str = "team";
const MEMBERS: usize = 8;

/// One hot-path call as generated.
#[derive(Debug, Clone)]
enum Op {
    Consume { key: String, member: usize, amount: i64 },
    Reserve { key: String, member: usize, amount: i64 },
    Commit { hold: String, member: usize, amount: i64 },
    Release { hold: String, member: usize },
    Refund { key: String, consumption: String, member: usize, amount: Option<i64> },
}

impl Op {
    /// The journal reference of its entries, and its idempotency key.
    fn reference(&self) -> String {
        match self {
            Op::Consume { key, .. } => format!("Consume/{key}"),
            Op::Reserve { key, .. } => format!("Reserve/{key}"),
            Op::Commit { hold, .. } => format!("Commit/{hold}"),
            Op::Release { hold, .. } => format!("Release/{hold}"),
            Op::Refund { key, .. } => key.clone(),
        }
    }
}

fn member_id(member: usize) -> String {
    format!("m{member}")
}

/// What a call did to the pools: the charge's split after it, and what it gave back
/// (monthly, top-up).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Effect {
    split: (i64, i64),
    returned: (i64, i64),
}

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

fn pair(parts: &[SplitPart]) -> (i64, i64) {
    let of = |bucket: Bucket| parts.iter().filter(|p| p.bucket() == bucket).map(|p| p.amount_credits).sum();
    (of(Bucket::WorkspaceMonthly), of(Bucket::WorkspaceTopUp))
}

async fn send(app: &TestApp, op: &Op) -> Result<Success, (Code, String)> {
    let workspace_id = WORKSPACE.to_owned();
    let mut credit = app.credit.clone();
    let answer = match op.clone() {
        Op::Consume { key, member, amount } => credit
            .consume(ConsumeRequest {
                idempotency_key: key,
                account_id: member_id(member),
                workspace_id,
                amount_credits: amount,
                ..Default::default()
            })
            .await
            .map(|r| {
                let r = r.into_inner();
                let split = pair(&r.consumption.clone().unwrap_or_default().split);
                (Effect { split, returned: (0, 0) }, format!("{r:?}"))
            }),
        Op::Reserve { key, member, amount } => credit
            .reserve(ReserveRequest {
                reservation_key: key,
                account_id: member_id(member),
                workspace_id,
                amount_credits: amount,
                ..Default::default()
            })
            .await
            .map(|r| {
                let mut r = r.into_inner();
                let split = pair(&r.reservation.clone().unwrap_or_default().split);
                // The age is of the moment of answering, so a replay's differs.
                if let Some(reservation) = r.reservation.as_mut() {
                    reservation.age_seconds = 0;
                }
                (Effect { split, returned: (0, 0) }, format!("{r:?}"))
            }),
        Op::Commit { hold, member, amount } => credit
            .commit(CommitRequest {
                reservation_key: hold,
                account_id: member_id(member),
                workspace_id,
                amount_credits: amount,
                ..Default::default()
            })
            .await
            .map(|r| {
                let r = r.into_inner();
                let split = pair(&r.consumption.clone().unwrap_or_default().split);
                (Effect { split, returned: pair(&r.returned) }, format!("{r:?}"))
            }),
        Op::Release { hold, member } => credit
            .release(ReleaseRequest { reservation_key: hold, account_id: member_id(member), workspace_id })
            .await
            .map(|r| {
                let mut r = r.into_inner();
                if let Some(reservation) = r.reservation.as_mut() {
                    reservation.age_seconds = 0;
                }
                (Effect { split: (0, 0), returned: pair(&r.returned) }, format!("{r:?}"))
            }),
        Op::Refund { key, consumption, member, amount } => credit
            .refund(RefundRequest {
                idempotency_key: key,
                account_id: member_id(member),
                workspace_id,
                consumption_key: consumption,
                amount_credits: amount,
            })
            .await
            .map(|r| {
                let r = r.into_inner();
                (Effect { split: (0, 0), returned: pair(&r.returned) }, format!("{r:?}"))
            }),
    };
    answer.map(|(effect, response)| Success { effect, response }).map_err(|s| (s.code(), s.message().to_owned()))
}

// ---------------------------------------------------------------------------------------------
// The model: C1–C3, C5 and C6 for one workspace, written apart from the domain code.

#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    monthly_allowance: i64,
    monthly_used: i64,
    top_up_allowance: i64,
    top_up_used: i64,
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
    state: State,
    split: (i64, i64),
    refunded: (i64, i64),
}

#[derive(Debug, Clone)]
struct Model {
    monthly_pool: i64,
    top_up_pool: i64,
    members: Vec<Usage>,
    charges: HashMap<String, ModelCharge>,
    /// Open holds per member (C5b caps them).
    open_holds: Vec<u32>,
}

/// C5b: the service's default cap on open holds per member.
const MAX_OPEN_HOLDS: u32 = 100;

/// What a call would change: the member's draw (positive) or return (negative) per bucket, the
/// charge as it becomes, and the answer.
struct Change {
    member: usize,
    delta: (i64, i64),
    charge: (String, ModelCharge),
    effect: Effect,
}

impl Model {
    /// What `member` could draw now from each bucket (C2): the smaller of its remaining
    /// allowance and the pool.
    fn available(&self, member: usize, delta: (i64, i64)) -> (i64, i64) {
        let usage = self.members[member];
        let monthly = (usage.monthly_allowance - usage.monthly_used - delta.0).min(self.monthly_pool - delta.0);
        let top_up = (usage.top_up_allowance - usage.top_up_used - delta.1).min(self.top_up_pool - delta.1);
        (monthly.max(0), top_up.max(0))
    }

    /// C1: monthly first, then top-up; all or nothing.
    fn draw(&self, member: usize, amount: i64, delta: (i64, i64)) -> Result<(i64, i64), Code> {
        let (monthly, top_up) = self.available(member, delta);
        if monthly + top_up < amount {
            return Err(Code::ResourceExhausted);
        }
        let from_monthly = amount.min(monthly);
        Ok((from_monthly, amount - from_monthly))
    }

    fn owned(&self, key: &str, member: usize) -> Result<&ModelCharge, Code> {
        self.charges.get(key).filter(|charge| charge.member == member).ok_or(Code::NotFound)
    }

    /// `amount` of `of`, last-drawn bucket (top-up) first.
    fn last_drawn(of: (i64, i64), amount: i64) -> (i64, i64) {
        let top_up = amount.min(of.1);
        (amount - top_up, top_up)
    }

    fn decide(&self, op: &Op) -> Result<Change, Code> {
        match op {
            Op::Consume { key, member, amount } | Op::Reserve { key, member, amount } => {
                if self.charges.contains_key(key) {
                    return Err(Code::AlreadyExists);
                }
                if matches!(op, Op::Reserve { .. }) && self.open_holds[*member] >= MAX_OPEN_HOLDS {
                    return Err(Code::FailedPrecondition);
                }
                let split = self.draw(*member, *amount, (0, 0))?;
                let state = if matches!(op, Op::Consume { .. }) { State::Captured } else { State::Held };
                Ok(Change {
                    member: *member,
                    delta: split,
                    charge: (key.clone(), ModelCharge { member: *member, state, split, refunded: (0, 0) }),
                    effect: Effect { split, returned: (0, 0) },
                })
            }
            Op::Commit { hold, member, amount } => {
                let charge = self.owned(hold, *member)?;
                if charge.state != State::Held {
                    return Err(Code::FailedPrecondition);
                }
                let held = charge.split.0 + charge.split.1;
                let (captured, returned, delta) = if *amount <= held {
                    let rest = Self::last_drawn(charge.split, held - amount);
                    let captured = (charge.split.0 - rest.0, charge.split.1 - rest.1);
                    (captured, rest, (-rest.0, -rest.1))
                } else {
                    let extra = self.draw(*member, amount - held, (0, 0))?;
                    ((charge.split.0 + extra.0, charge.split.1 + extra.1), (0, 0), extra)
                };
                Ok(Change {
                    member: *member,
                    delta,
                    charge: (
                        hold.clone(),
                        ModelCharge { member: *member, state: State::Captured, split: captured, refunded: (0, 0) },
                    ),
                    effect: Effect { split: captured, returned },
                })
            }
            Op::Release { hold, member } => {
                let charge = self.owned(hold, *member)?;
                if charge.state != State::Held {
                    return Err(Code::FailedPrecondition);
                }
                Ok(Change {
                    member: *member,
                    delta: (-charge.split.0, -charge.split.1),
                    charge: (hold.clone(), ModelCharge { state: State::Released, ..charge.clone() }),
                    effect: Effect { split: (0, 0), returned: charge.split },
                })
            }
            Op::Refund { consumption, member, amount, .. } => {
                let charge = self.owned(consumption, *member)?;
                if charge.state == State::Held {
                    return Err(Code::FailedPrecondition);
                }
                let remaining = (charge.split.0 - charge.refunded.0, charge.split.1 - charge.refunded.1);
                let refundable = if charge.state == State::Captured { remaining.0 + remaining.1 } else { 0 };
                let requested = amount.unwrap_or(refundable);
                if requested > refundable || requested == 0 {
                    return Err(Code::FailedPrecondition);
                }
                let back = Self::last_drawn(remaining, requested);
                let refunded = (charge.refunded.0 + back.0, charge.refunded.1 + back.1);
                Ok(Change {
                    member: *member,
                    delta: (-back.0, -back.1),
                    charge: (consumption.clone(), ModelCharge { refunded, ..charge.clone() }),
                    effect: Effect { split: (0, 0), returned: back },
                })
            }
        }
    }

    fn apply(&mut self, change: Change) -> Effect {
        let usage = &mut self.members[change.member];
        usage.monthly_used += change.delta.0;
        usage.top_up_used += change.delta.1;
        self.monthly_pool -= change.delta.0;
        self.top_up_pool -= change.delta.1;
        let was_held = self.charges.get(&change.charge.0).is_some_and(|c| c.state == State::Held);
        match (was_held, change.charge.1.state == State::Held) {
            (false, true) => self.open_holds[change.member] += 1,
            (true, false) => self.open_holds[change.member] -= 1,
            _ => {}
        }
        self.charges.insert(change.charge.0, change.charge.1);
        change.effect
    }
}

// ---------------------------------------------------------------------------------------------
// The traffic.

/// How much traffic: `MODEL_OPERATIONS` in all (default 800), over 16 clients (64 from 10,000
/// operations up).
fn size() -> (usize, usize) {
    let operations: usize = std::env::var("MODEL_OPERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(800);
    let clients = if operations >= 10_000 { 64 } else { 16 };
    (clients, operations.div_ceil(clients))
}

/// One client's random calls: mostly new, some replays of its earlier calls, some of those
/// sent to both servers at once.
async fn client(servers: Arc<Vec<TestApp>>, client: usize, steps: usize, epoch: Instant) -> Vec<Call> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed ^ client as u64);
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
        let racing = servers.len() > 1 && rng.random_bool(0.1);
        let started = epoch.elapsed();
        if racing {
            let (first, second) = tokio::join!(send(&servers[0], &op), send(&servers[1], &op));
            let ended = epoch.elapsed();
            calls.push(Call { op: op.clone(), started, ended, answer: first });
            calls.push(Call { op: op.clone(), started, ended, answer: second });
        } else {
            let server = &servers[rng.random_range(0..servers.len())];
            let answer = send(server, &op).await;
            calls.push(Call { op: op.clone(), started, ended: epoch.elapsed(), answer });
        }
        sent.push(op);
    }
    calls
}

/// Codes that say nothing was decided (the call may or may not have applied; the journal tells).
fn undecided(code: Code) -> bool {
    matches!(code, Code::Unavailable | Code::DeadlineExceeded | Code::Aborted | Code::Cancelled)
}

/// Checks the calls against the model; the violations found.
fn check(calls: &[Call], order: &[String], initial: Model) -> (Model, Vec<String>) {
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
                        violations.push(format!("{reference}: answered OK but absent from the journal"));
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

    // Apply the journal's order; place each refusal at some position of its window.
    let mut model = initial;
    let mut open: Vec<(usize, Code, &Call)> = Vec::new();
    let mut next = 0;
    for position in 0..=order.len() {
        while next < refusals.len() && refusals[next].0 <= position {
            let (_, highest, code, call) = refusals[next];
            open.push((highest, code, call));
            next += 1;
        }
        open.retain(|(highest, code, call)| {
            if model.decide(&call.op).err() == Some(*code) {
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
            violations.push(format!("{reference}: in the journal but never sent"));
            continue;
        };
        match model.decide(op) {
            Ok(change) => {
                let effect = model.apply(change);
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

async fn model_run(backend: Backend, servers: usize) {
    let (clients, steps) = size();
    let per_member = i64::try_from(steps * clients / MEMBERS).unwrap_or(i64::MAX);
    let (monthly_allowance, top_up_allowance) = (per_member * 6, per_member * 2);
    // Holds outlive the longest run: the sweeper's releases are not calls of the traffic.
    let app = crate::helpers::spawn_app_with(backend, |config| config.reservation_default_ttl_seconds = 86_400).await;
    let pool = monthly_allowance * MEMBERS as i64;
    app.create_account_with_plan("owner", pool).await;
    app.create_workspace(WORKSPACE, "owner").await;
    app.set_pool_size(WORKSPACE, "owner", pool).await.expect("pool size");
    app.buy("owner", top_up_allowance * MEMBERS as i64).await;
    app.admin
        .clone()
        .top_up_workspace(TopUpWorkspaceRequest {
            idempotency_key: key(),
            workspace_id: WORKSPACE.into(),
            actor_account_id: "owner".into(),
            amount_credits: top_up_allowance * MEMBERS as i64,
        })
        .await
        .expect("top up");
    for member in 0..MEMBERS {
        app.create_account(&member_id(member)).await;
        app.add_member(WORKSPACE, "owner", &member_id(member), Role::Editor).await.expect("member");
        app.set_allowance(WORKSPACE, "owner", &member_id(member), monthly_allowance, top_up_allowance)
            .await
            .expect("allowance");
    }
    let initial = Model {
        monthly_pool: pool,
        top_up_pool: top_up_allowance * MEMBERS as i64,
        members: vec![Usage { monthly_allowance, monthly_used: 0, top_up_allowance, top_up_used: 0 }; MEMBERS],
        charges: HashMap::new(),
        open_holds: vec![0; MEMBERS],
    };
    let mut apps = vec![app];
    for _ in 1..servers {
        let replica = apps[0].spawn_replica_with(|config| config.reservation_default_ttl_seconds = 86_400).await;
        apps.push(replica);
    }
    let servers = Arc::new(apps);

    let epoch = Instant::now();
    let tasks = (0..clients).map(|c| tokio::spawn(client(Arc::clone(&servers), c, steps, epoch)));
    let calls: Vec<Call> = crate::helpers::join_all(tasks).await.into_iter().flatten().collect();
    let elapsed = epoch.elapsed();
    let app = &servers[0];
    // The set-up's entries (pool funding, top-up) are not calls of the traffic.
    let sent: std::collections::HashSet<String> = calls.iter().map(|c| c.op.reference()).collect();
    let order: Vec<String> = sqlx::query_scalar(
        "SELECT reference FROM journal_entries WHERE ledger_scope_id = 'team' GROUP BY reference ORDER BY MIN(entry_id)",
    )
    .fetch_all(&app.db)
    .await
    .expect("journal order");
    let order: Vec<String> = order.into_iter().filter(|r| sent.contains(r)).collect();

    let (model, mut violations) = check(&calls, &order, initial);

    let workspace = app.workspace(WORKSPACE).await;
    if (workspace.monthly_pool_credits, workspace.top_up_pool_credits) != (model.monthly_pool, model.top_up_pool) {
        violations.push(format!(
            "pools {:?}, the model's {:?}",
            (workspace.monthly_pool_credits, workspace.top_up_pool_credits),
            (model.monthly_pool, model.top_up_pool)
        ));
    }
    for member in app.members(WORKSPACE).await.iter().filter(|m| m.account_id != "owner") {
        let index: usize = member.account_id[1..].parse().expect("m<i>");
        let usage = model.members[index];
        let served = (member.monthly.expect("monthly").used_credits, member.top_up.expect("top_up").used_credits);
        if served != (usage.monthly_used, usage.top_up_used) {
            violations.push(format!(
                "{} used {served:?}, the model's {:?}",
                member.account_id,
                (usage.monthly_used, usage.top_up_used)
            ));
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
    let undecided_count = calls.iter().filter(|c| matches!(&c.answer, Err((code, _)) if undecided(*code))).count();
    println!(
        "model run on {backend:?}, {} server(s): {} calls ({} applied, {refused} refused, {undecided_count} undecided) \
         by {clients} clients in {:.1} s; {} violations",
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
