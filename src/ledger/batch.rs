//! Group commit for the hot path.
//!
//! Every hot-path call joins its scope's queue (a workspace, or an account's personal credits).
//! Committer tasks, a bounded number at once, take the ready scopes' calls into batches: each
//! batch is one transaction that, scope after scope in one global lock order, locks the scope's
//! rows once (account; or workspace, then members in account order) and lets the domain apply its
//! calls one after another to the loaded state (`load`, then the pure `decide`), and then writes
//! wallets, charges, journal, events and idempotency records of all its scopes together
//! (`write`). Each call still succeeds or fails on its own: it is applied to a copy of the state
//! that is kept only if the call succeeds.
//!
//! Within a process a scope is in one batch at a time, so its calls never wait on each other's
//! row locks in the database; replicas still serialise on those locks, and lock scopes in the same
//! order, so their batches cannot deadlock. Calls that share an idempotency or charge key never
//! share a batch, so the later one sees the earlier one committed. `BatchLimits::scopes` of 1
//! keeps each transaction on one scope (one Citus shard).

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Mutex, PoisonError};

use serde_json::Value;
use tokio::sync::oneshot;
use tracing::Instrument as _;

use super::charges::{ChargeOutcome, HotCall};
use super::idempotency::replay_stored;
use super::{Ledger, LedgerError, LedgerSettings};
use crate::domain::{
    Account, AccountId, Charge, ChargeKey, ChargeState, DomainError, IdempotencyKey, Member, Movement, Notification,
    PoolAccess, Tenant, Wallet, Workspace, WorkspaceId, low_balance_crossings, overage_started,
};
use crate::store::{BatchRows, Lock, Store, StoreTx};

/// A call, its request as stored for idempotency, and where its answer goes.
#[derive(Debug)]
pub(super) struct Pending {
    call: HotCall,
    key: IdempotencyKey,
    /// `None` for calls that keep no idempotency record (expiry).
    request: Option<Value>,
    reply: oneshot::Sender<Result<ChargeOutcome, LedgerError>>,
    /// The caller's span, so the batch that applies the call is traced under its RPC.
    span: tracing::Span,
}

/// How much one transaction applies, and how many run at once.
#[derive(Debug, Clone, Copy)]
pub(super) struct BatchLimits {
    /// Most calls in one transaction, all scopes together.
    pub(super) calls: usize,
    /// Most scopes in one transaction (1 keeps every transaction on one Citus shard).
    pub(super) scopes: usize,
    /// Most batch transactions in flight: the next batch fills while these commit.
    pub(super) transactions: usize,
}

/// One scope's calls in a batch, in arrival order.
struct ScopeBatch {
    scope: Tenant,
    calls: Vec<Pending>,
}

/// The waiting calls and the batches in flight.
#[derive(Debug, Default)]
struct Queues {
    /// A scope has an entry while calls of it wait or a batch of it is in flight.
    waiting: HashMap<Tenant, VecDeque<Pending>>,
    /// Scopes with waiting calls and no batch in flight, each once, oldest first.
    ready: VecDeque<Tenant>,
    /// Scopes with a batch in flight: a scope's batches run one after another, so its calls
    /// apply in arrival order and never wait on each other's row locks.
    in_flight: HashSet<Tenant>,
    /// Committer tasks running.
    committers: usize,
}

/// The hot path's queues: calls wait here for a committer to take them into a batch.
#[derive(Debug)]
pub(super) struct Batcher {
    limits: BatchLimits,
    queues: Mutex<Queues>,
    /// When each scope last had a batch with replays: a retry storm outlives many batches.
    replayed: Mutex<HashMap<Tenant, std::time::Instant>>,
}

/// How long a batch with replays makes the scope's next batches look everything up first.
const REPLAY_MEMORY: std::time::Duration = std::time::Duration::from_secs(1);

/// Beyond this many remembered scopes, the ones without a recent replay are forgotten.
const REPLAY_MEMORY_SCOPES: usize = 4_096;

impl Batcher {
    /// Batches within `limits` (each at least 1).
    pub(super) fn new(limits: BatchLimits) -> Batcher {
        let limits = BatchLimits {
            calls: limits.calls.max(1),
            scopes: limits.scopes.max(1),
            transactions: limits.transactions.max(1),
        };
        Batcher { limits, queues: Mutex::default(), replayed: Mutex::default() }
    }

    fn queues(&self) -> std::sync::MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the scope had a batch with replays within [`REPLAY_MEMORY`].
    fn expects_replays(&self, scope: &Tenant) -> bool {
        let replayed = self.replayed.lock().unwrap_or_else(PoisonError::into_inner);
        replayed.get(scope).is_some_and(|at| at.elapsed() < REPLAY_MEMORY)
    }

    /// Notes whether the scope's latest batch held replays.
    fn note_replays(&self, scope: &Tenant, replays: bool) {
        let mut replayed = self.replayed.lock().unwrap_or_else(PoisonError::into_inner);
        if !replays {
            replayed.remove(scope);
            return;
        }
        if replayed.len() >= REPLAY_MEMORY_SCOPES {
            replayed.retain(|_, at| at.elapsed() < REPLAY_MEMORY);
        }
        replayed.insert(scope.clone(), std::time::Instant::now());
    }

    /// Queues `pending`; true when the caller must start one more committer.
    fn enqueue(&self, scope: &Tenant, pending: Pending) -> bool {
        let mut queues = self.queues();
        let queue = queues.waiting.entry(scope.clone()).or_default();
        queue.push_back(pending);
        if queue.len() == 1 && !queues.in_flight.contains(scope) {
            queues.ready.push_back(scope.clone());
        }
        // A call of a scope in flight waits for that batch's committer, which takes the scope
        // again when it finishes: no new committer for it.
        if !queues.ready.is_empty() && queues.committers < self.limits.transactions {
            queues.committers += 1;
            return true;
        }
        false
    }

    /// The next batch: ready scopes, oldest first, each with its waiting calls in arrival order
    /// up to the limits, leaving calls that share a key with an earlier call of the batch for a
    /// later one. `None` (and the committer counted out) when no scope is ready.
    fn next_batch(&self) -> Option<Vec<ScopeBatch>> {
        let mut queues = self.queues();
        let queues = &mut *queues;
        let mut batch = Vec::new();
        let mut calls = 0;
        while batch.len() < self.limits.scopes && calls < self.limits.calls {
            let Some(scope) = queues.ready.pop_front() else { break };
            let Some(queue) = queues.waiting.get_mut(&scope) else { continue };
            let taken = take_calls(queue, self.limits.calls - calls);
            calls += taken.len();
            queues.in_flight.insert(scope.clone());
            batch.push(ScopeBatch { scope, calls: taken });
        }
        if batch.is_empty() {
            queues.committers -= 1;
            return None;
        }
        Some(batch)
    }

    /// Ends the batches of `scopes`: those with calls left wait for the next batch.
    fn finish(&self, scopes: &[Tenant]) {
        let mut queues = self.queues();
        for scope in scopes {
            queues.in_flight.remove(scope);
            if queues.waiting.get(scope).is_some_and(|queue| !queue.is_empty()) {
                queues.ready.push_back(scope.clone());
            } else {
                queues.waiting.remove(scope);
            }
        }
    }

    /// Forgets the scopes of a committer that died, failing what waits (their senders drop).
    fn abandon(&self, scopes: &[Tenant]) {
        let mut queues = self.queues();
        for scope in scopes {
            queues.in_flight.remove(scope);
            queues.waiting.remove(scope);
        }
        queues.ready.retain(|scope| !scopes.contains(scope));
        queues.committers -= 1;
    }
}

/// Up to `limit` calls from the front of `queue`, in arrival order, skipping (and keeping) those
/// whose idempotency or charge key an earlier taken call has.
fn take_calls(queue: &mut VecDeque<Pending>, limit: usize) -> Vec<Pending> {
    let mut taken = Vec::new();
    let mut left = VecDeque::new();
    let (mut keys, mut charges) = (HashSet::new(), HashSet::new());
    while let Some(pending) = queue.pop_front() {
        let clashes = keys.contains(&pending.key) || charges.contains(pending.call.charge_key());
        if taken.len() >= limit || clashes {
            left.push_back(pending);
            continue;
        }
        keys.insert(pending.key.clone());
        charges.insert(pending.call.charge_key().clone());
        taken.push(pending);
    }
    *queue = left;
    taken
}

/// Frees a committer's scopes if its task unwinds, so later calls are taken by another.
struct CommitterGuard<'a> {
    batcher: &'a Batcher,
    scopes: Vec<Tenant>,
}

impl Drop for CommitterGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.batcher.abandon(&self.scopes);
        }
    }
}

/// The order a batch locks its scopes in, the same in every transaction so that two replicas'
/// batches cannot deadlock: accounts before workspaces (as the admin scripts lock them), then by
/// id.
fn lock_rank(scope: &Tenant) -> (u8, &str) {
    match scope {
        Tenant::Account(account) => (0, account.as_str()),
        Tenant::Workspace(workspace) => (1, workspace.as_str()),
    }
}

/// The scope's rows, locked and loaded once per batch.
#[expect(clippy::large_enum_variant, reason = "one per batch, never moved around")]
enum Wallets {
    /// The account, and whether a call changed it.
    Personal { account: Account, changed: bool },
    /// The workspace and the members the batch locked, and the members calls changed (a change
    /// to any member's wallet changes the workspace too).
    Workspace {
        workspace: Workspace,
        members: HashMap<AccountId, Member>,
        /// What each locked member's profiles allow of the overflow pool.
        access: HashMap<AccountId, PoolAccess>,
        changed: BTreeSet<AccountId>,
    },
}

impl Wallets {
    /// The wallet `account_id` draws from, as a copy.
    fn wallet(&self, account_id: &AccountId, scope: &Tenant) -> Result<Wallet, LedgerError> {
        match self {
            Wallets::Personal { account, .. } => Ok(Wallet::Personal { account: account.clone() }),
            Wallets::Workspace { workspace, members, access, .. } => match members.get(account_id) {
                Some(member) => Ok(Wallet::Workspace {
                    workspace: workspace.clone(),
                    member: member.clone(),
                    access: access.get(account_id).copied().unwrap_or_default(),
                }),
                None => Err(LedgerError::NotFound {
                    field: "account_id",
                    what: "member",
                    id: format!("{account_id} of workspace {}", scope.id()),
                }),
            },
        }
    }

    /// Keeps a wallet a call changed.
    fn keep(&mut self, wallet: Wallet) {
        match (self, wallet) {
            (Wallets::Personal { account, changed }, Wallet::Personal { account: kept }) => {
                *account = kept;
                *changed = true;
            }
            (
                Wallets::Workspace { workspace, members, changed, .. },
                Wallet::Workspace { workspace: kept, member, .. },
            ) => {
                *workspace = kept;
                changed.insert(member.account_id.clone());
                members.insert(member.account_id.clone(), member);
            }
            // A scope's wallets are all of its kind.
            _ => {}
        }
    }
}

/// A charge as loaded or made in this batch, and whether it must be written.
struct Tracked {
    charge: Charge,
    new: bool,
    changed: bool,
}

/// What a batch will write.
#[derive(Default)]
struct Writes {
    journal: Vec<(IdempotencyKey, Vec<Movement>)>,
    notifications: Vec<Notification>,
    /// Each successful call's scope, key, request and answer.
    records: Vec<(Tenant, IdempotencyKey, Value, Value)>,
}

/// One scope's rows, locked and loaded for a batch, as its calls leave them.
struct Loaded {
    wallets: Wallets,
    charges: HashMap<ChargeKey, Tracked>,
    /// Open holds per member, for the Reserves of the batch (C5b).
    open_holds: HashMap<AccountId, u32>,
}

/// Each call's result so far, and how many were replays of stored answers.
struct Answers {
    results: Vec<Option<Result<ChargeOutcome, LedgerError>>>,
    replays: usize,
}

impl Answers {
    fn undecided(calls: usize) -> Answers {
        Answers { results: (0..calls).map(|_| None).collect(), replays: 0 }
    }
}

impl<S: Store> Ledger<S> {
    /// Queues a hot-path call for its scope and waits for its batch to commit.
    pub(super) async fn submit(
        &self,
        scope: Tenant,
        call: HotCall,
        key: IdempotencyKey,
        request: Option<Value>,
    ) -> Result<ChargeOutcome, LedgerError> {
        let (reply, answer) = oneshot::channel();
        if self.batcher.enqueue(&scope, Pending { call, key, request, reply, span: tracing::Span::current() }) {
            // The committer is its own task: a caller that goes away must not strand the queue.
            let ledger = self.clone();
            let committer = async move { ledger.commit_batches().await };
            match self.store.committer_runtime() {
                Some(runtime) => drop(runtime.spawn(committer)),
                None => drop(tokio::spawn(committer)),
            }
        }
        answer.await.map_err(|_| LedgerError::internal("the batch committer stopped before answering"))?
    }

    /// Takes batches and commits them until no scope is ready.
    async fn commit_batches(&self) {
        let mut guard = CommitterGuard { batcher: &self.batcher, scopes: Vec::new() };
        while let Some(mut batch) = self.batcher.next_batch() {
            batch.sort_by(|a, b| lock_rank(&a.scope).cmp(&lock_rank(&b.scope)));
            guard.scopes = batch.iter().map(|part| part.scope.clone()).collect();
            let calls: usize = batch.iter().map(|part| part.calls.len()).sum();
            let started = std::time::Instant::now();
            let span = batch_span(&batch, calls);
            // After a batch with replays the scope's next one likely holds some too (a retry
            // storm), and looking everything up at once saves the optimistic attempt.
            let careful: Vec<bool> = batch.iter().map(|part| self.batcher.expects_replays(&part.scope)).collect();
            // The first attempt is optimistic (see `apply_batch`) for scopes without recent
            // replays; a replay it runs into, or a lock conflict, reruns it carefully at once, and
            // further conflicts back off.
            let first = self
                .apply_batch(&batch, &careful)
                .instrument(tracing::info_span!(parent: &span, "db.transaction", attempt = 1))
                .await;
            let applied = match first {
                Err(error) if error.is_conflict() => {
                    let careful = vec![true; batch.len()];
                    self.retrying(|| self.apply_batch(&batch, &careful)).instrument(span).await
                }
                other => other,
            };
            crate::metrics::batch_finished(calls, started.elapsed());
            tracing::debug!(scopes = batch.len(), calls, elapsed_us = started.elapsed().as_micros(), "batch committed");
            let answers: Vec<Vec<Result<ChargeOutcome, LedgerError>>> = match applied {
                Ok(answers) => batch
                    .iter()
                    .zip(answers)
                    .map(|(part, answers)| {
                        self.batcher.note_replays(&part.scope, answers.replays > 0);
                        let undecided = || Err(LedgerError::internal("call left undecided"));
                        answers.results.into_iter().map(|result| result.unwrap_or_else(undecided)).collect()
                    })
                    .collect(),
                Err(error) => batch.iter().map(|part| vec![Err(error.clone()); part.calls.len()]).collect(),
            };
            self.batcher.finish(&guard.scopes);
            guard.scopes.clear();
            for (part, answers) in batch.into_iter().zip(answers) {
                for (pending, answer) in part.calls.into_iter().zip(answers) {
                    // The caller may have gone away; its result is committed all the same.
                    let _ = pending.reply.send(answer);
                }
            }
        }
    }

    /// One transaction for a batch: its scopes are locked in lock order, then loaded together
    /// (each kind of row in one lookup for all of them), then each scope's calls decided; then
    /// everything the batch changed is written, and committed.
    ///
    /// C7 without a lookup in the common case: an optimistic scope (`careful` false) assumes no
    /// call is a replay and does not look up idempotency records or the charges new calls will
    /// make. A replay cannot slip through: one that succeeds again collides with its own record
    /// or charge when written (the batch is rerun carefully), and one that fails (a Commit of a
    /// hold it already committed) has its record looked up before it is answered. A careful
    /// scope looks every record up, but only once it is locked.
    ///
    /// A scope that does not exist answers its own calls NOT_FOUND; a database error fails the
    /// whole batch, as its transaction is lost.
    async fn apply_batch(&self, batch: &[ScopeBatch], careful: &[bool]) -> Result<Vec<Answers>, LedgerError> {
        let mut tx = self.store.begin().await?;
        let now_ms = self.now_ms();
        let mut answers: Vec<Answers> = batch.iter().map(|part| Answers::undecided(part.calls.len())).collect();
        let mut writes = Writes::default();
        let mut wallets = Vec::with_capacity(batch.len());
        for ((part, answered), locked) in batch.iter().zip(&mut answers).zip(lock_wallets(&mut tx, batch).await?) {
            wallets.push(match locked {
                Ok(locked) => Some(locked),
                Err(refused) => {
                    answered.results = part.calls.iter().map(|_| Some(Err(refused.clone()))).collect();
                    None
                }
            });
        }
        // Every record is committed or not yet begun under the scopes' row locks, so a careful
        // scope answers its replays before anything else (C7).
        let locked: Vec<bool> = wallets.iter().map(Option::is_some).collect();
        let undecided_of_careful = |part: usize, result: &Option<_>| careful[part] && locked[part] && result.is_none();
        answer_replays(&mut tx, batch, &mut answers, undecided_of_careful).await?;
        let mut changed = load(&mut tx, batch, wallets, careful, &answers).await?;
        for ((part, answered), loaded) in batch.iter().zip(&mut answers).zip(&mut changed) {
            if let Some(loaded) = loaded {
                decide(&self.settings, part, loaded, &mut answered.results, &mut writes, now_ms)?;
            }
        }
        // After an optimistic decide, a failed call may be a replay whose first run changed what it
        // now fails on, so its record, if any, answers it.
        let failed_of_optimistic = |part: usize, result: &Option<Result<ChargeOutcome, LedgerError>>| {
            !careful[part] && locked[part] && matches!(result, Some(Err(_)))
        };
        answer_replays(&mut tx, batch, &mut answers, failed_of_optimistic).await?;
        let changed: Vec<Loaded> = changed.into_iter().flatten().collect();
        write(&mut tx, &changed, &writes, now_ms).await?;
        self.commit_transaction(tx, !writes.notifications.is_empty()).await?;
        Ok(answers)
    }
}

/// Locks every scope's wallet rows in the global lock order (the batch is sorted by
/// [`lock_rank`]): the personal accounts, then the workspaces and their members (in one
/// statement where the store can). Every call's account is locked, replays included, because
/// whether a call is a replay is only known once its scope is locked. A scope that does not exist
/// gets NOT_FOUND.
async fn lock_wallets(
    tx: &mut impl StoreTx,
    batch: &[ScopeBatch],
) -> Result<Vec<Result<Wallets, LedgerError>>, LedgerError> {
    // An expiry names its charge, not its account: the holders of all expiring charges, at once.
    let expiring: Vec<(Tenant, ChargeKey)> = batch
        .iter()
        .flat_map(|part| {
            let expiries = part.calls.iter().filter(|p| matches!(p.call, HotCall::Expire(_)));
            expiries.map(|p| (part.scope.clone(), p.call.charge_key().clone()))
        })
        .collect();
    let mut holders: HashMap<Tenant, Vec<AccountId>> = HashMap::new();
    for charge in tx.charges(&expiring, Lock::None).await? {
        holders.entry(charge.scope).or_default().push(charge.account_id);
    }
    let mut accounts_of = Vec::with_capacity(batch.len());
    for part in batch {
        let mut accounts: Vec<AccountId> = part.calls.iter().filter_map(|p| p.call.account_id().cloned()).collect();
        accounts.extend(holders.remove(&part.scope).unwrap_or_default());
        accounts.sort();
        accounts.dedup();
        accounts_of.push(accounts);
    }
    let mut personal = HashMap::new();
    for part in batch {
        if let Tenant::Account(id) = &part.scope
            && let Some(account) = tx.account(id, Lock::Update).await?
        {
            personal.insert(id.clone(), account);
        }
    }
    let ids: Vec<WorkspaceId> = batch
        .iter()
        .filter_map(|part| match &part.scope {
            Tenant::Workspace(id) => Some(id.clone()),
            Tenant::Account(_) => None,
        })
        .collect();
    let memberships: Vec<(WorkspaceId, AccountId)> = batch
        .iter()
        .zip(&accounts_of)
        .filter_map(|(part, accounts)| match &part.scope {
            Tenant::Workspace(id) => Some((id, accounts)),
            Tenant::Account(_) => None,
        })
        .flat_map(|(id, accounts)| accounts.iter().map(move |account| (id.clone(), account.clone())))
        .collect();
    let (locked, locked_members) = tx.lock_workspaces_and_members(&ids, &memberships).await?;
    let mut workspaces: HashMap<WorkspaceId, Workspace> = locked.into_iter().map(|w| (w.id.clone(), w)).collect();
    let mut members: HashMap<WorkspaceId, HashMap<AccountId, Member>> = HashMap::new();
    for member in locked_members {
        members.entry(member.workspace_id.clone()).or_default().insert(member.account_id.clone(), member);
    }
    let mut wallets = Vec::with_capacity(batch.len());
    for (part, accounts) in batch.iter().zip(&accounts_of) {
        wallets.push(match &part.scope {
            Tenant::Account(id) => match personal.remove(id) {
                Some(account) => Ok(Wallets::Personal { account, changed: false }),
                None => Err(LedgerError::NotFound { field: "account_id", what: "account", id: id.to_string() }),
            },
            Tenant::Workspace(id) => match workspaces.remove(id) {
                Some(workspace) => {
                    let access = super::views::pool_access(tx, &workspace, accounts).await?;
                    let members = members.remove(id).unwrap_or_default();
                    Ok(Wallets::Workspace { workspace, members, access, changed: BTreeSet::new() })
                }
                None => Err(LedgerError::NotFound { field: "workspace_id", what: "workspace", id: id.to_string() }),
            },
        });
    }
    Ok(wallets)
}

/// Answers from their records the calls that `selected` (given the call's scope index and result
/// so far) picks among those that keep one, every scope's in one lookup; counts the replays.
async fn answer_replays(
    tx: &mut impl StoreTx,
    batch: &[ScopeBatch],
    answers: &mut [Answers],
    selected: impl Fn(usize, &Option<Result<ChargeOutcome, LedgerError>>) -> bool,
) -> Result<(), LedgerError> {
    let (mut places, mut keys, mut requests) = (Vec::new(), Vec::new(), Vec::new());
    for (index, (part, answered)) in batch.iter().zip(answers.iter()).enumerate() {
        for (call, (pending, result)) in part.calls.iter().zip(&answered.results).enumerate() {
            if let Some(request) = &pending.request
                && selected(index, result)
            {
                places.push((index, call));
                keys.push((part.scope.clone(), pending.key.clone()));
                requests.push(request);
            }
        }
    }
    for ((index, call), replayed) in places.into_iter().zip(replay_stored(tx, &keys, &requests).await?) {
        if replayed.is_some() {
            answers[index].results[call] = replayed;
            answers[index].replays += 1;
        }
    }
    Ok(())
}

/// Loads what the locked scopes' undecided calls need beyond their wallets, every scope's in one
/// statement each: their charges (an optimistic scope's new charges are not looked up), and the
/// open holds of members who Reserve. `None` for a scope that was refused.
async fn load(
    tx: &mut impl StoreTx,
    batch: &[ScopeBatch],
    wallets: Vec<Option<Wallets>>,
    careful: &[bool],
    answers: &[Answers],
) -> Result<Vec<Option<Loaded>>, LedgerError> {
    let makes_new_charge = |p: &Pending| matches!(p.call, HotCall::Consume(_) | HotCall::Reserve(_));
    let undecided = |index: usize| {
        let part: &ScopeBatch = &batch[index];
        part.calls.iter().zip(&answers[index].results).filter(|(_, r)| r.is_none()).map(|(p, _)| p)
    };
    let mut keys = Vec::new();
    for (index, part) in batch.iter().enumerate() {
        if wallets[index].is_some() {
            let looked_up = undecided(index).filter(|p| careful[index] || !makes_new_charge(p));
            keys.extend(looked_up.map(|p| (part.scope.clone(), p.call.charge_key().clone())));
        }
    }
    let mut charges: HashMap<Tenant, HashMap<ChargeKey, Tracked>> = HashMap::new();
    for charge in tx.charges(&keys, Lock::Update).await? {
        let tracked = Tracked { charge, new: false, changed: false };
        charges.entry(tracked.charge.scope.clone()).or_default().insert(tracked.charge.key.clone(), tracked);
    }
    let mut holders: Vec<(Tenant, AccountId)> = Vec::new();
    for (index, part) in batch.iter().enumerate() {
        if wallets[index].is_some() {
            for pending in undecided(index) {
                if let HotCall::Reserve(call) = &pending.call {
                    holders.push((part.scope.clone(), call.account_id.clone()));
                }
            }
        }
    }
    let mut seen = HashSet::new();
    holders.retain(|holder| seen.insert(holder.clone()));
    let mut open_holds: HashMap<Tenant, HashMap<AccountId, u32>> = HashMap::new();
    for ((scope, account), count) in holders.iter().zip(tx.open_hold_counts(&holders).await?) {
        open_holds.entry(scope.clone()).or_default().insert(account.clone(), count);
    }
    let loaded = batch.iter().zip(wallets).map(|(part, wallets)| {
        let (charges, open_holds) =
            (charges.remove(&part.scope).unwrap_or_default(), open_holds.remove(&part.scope).unwrap_or_default());
        wallets.map(|wallets| Loaded { wallets, charges, open_holds })
    });
    Ok(loaded.collect())
}

/// Applies the scope's undecided calls one after another to the loaded state, each on its own,
/// and adds what the successful ones write to `writes`. Pure: no store, no clock.
fn decide(
    settings: &LedgerSettings,
    part: &ScopeBatch,
    loaded: &mut Loaded,
    results: &mut [Option<Result<ChargeOutcome, LedgerError>>],
    writes: &mut Writes,
    now_ms: i64,
) -> Result<(), LedgerError> {
    for (pending, result) in part.calls.iter().zip(results.iter_mut()) {
        if result.is_some() {
            continue;
        }
        let outcome = apply_call(settings, &part.scope, pending, loaded, writes, now_ms);
        if let (Ok(outcome), Some(request)) = (&outcome, &pending.request) {
            let response = serde_json::to_value(outcome)
                .map_err(|e| LedgerError::internal(format!("result not serialisable: {e}")))?;
            writes.records.push((part.scope.clone(), pending.key.clone(), request.clone(), response));
        }
        *result = Some(outcome);
    }
    Ok(())
}

/// Writes what the successful calls of every scope changed, and nothing else: each scope's
/// wallet rows and changed charges, then the new charges, journal, events and records of the
/// whole batch, a statement each.
async fn write(tx: &mut impl StoreTx, changed: &[Loaded], writes: &Writes, now_ms: i64) -> Result<(), LedgerError> {
    let (mut workspaces, mut members, mut new, mut updated) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for loaded in changed {
        match &loaded.wallets {
            Wallets::Personal { account, changed: true } => tx.update_account(account).await?,
            Wallets::Personal { changed: false, .. } => {}
            Wallets::Workspace { workspace, members: locked, changed, .. } => {
                if !changed.is_empty() {
                    workspaces.push(workspace.clone());
                    members.extend(changed.iter().filter_map(|id| locked.get(id).cloned()));
                }
            }
        }
        for tracked in loaded.charges.values().filter(|t| t.changed || t.new) {
            if tracked.new { &mut new } else { &mut updated }.push(tracked.charge.clone());
        }
    }
    let entries: Vec<(&IdempotencyKey, &Movement)> = writes
        .journal
        .iter()
        .flat_map(|(reference, movements)| movements.iter().map(move |m| (reference, m)))
        .collect();
    let rows = BatchRows {
        workspaces: &workspaces,
        members: &members,
        updated_charges: &updated,
        new_charges: &new,
        journal: &entries,
        records: &writes.records,
    };
    let written = tx.write_batch(&rows, now_ms).await?;
    // A key made meanwhile through another replica: rerun the batch to see it.
    if written.charges != new.len() as u64 || written.records != writes.records.len() as u64 {
        return Err(conflict());
    }
    tx.insert_notifications(&writes.notifications, now_ms).await?;
    Ok(())
}

/// Applies one call to copies of the state it touches; keeps them only if it succeeds.
fn apply_call(
    settings: &LedgerSettings,
    scope: &Tenant,
    pending: &Pending,
    loaded: &mut Loaded,
    writes: &mut Writes,
    now_ms: i64,
) -> Result<ChargeOutcome, LedgerError> {
    let Loaded { wallets, charges, open_holds } = loaded;
    let (wallets, charges, open_holds) = (&mut *wallets, &mut *charges, &mut *open_holds);
    let taken = |charges: &HashMap<ChargeKey, Tracked>, key: &ChargeKey, field: &'static str| {
        if charges.contains_key(key) {
            Err(LedgerError::AlreadyExists { field, what: "charge", id: format!("{key} in {}", scope.id()) })
        } else {
            Ok(())
        }
    };
    let own = |charges: &HashMap<ChargeKey, Tracked>, key: &ChargeKey, account: &AccountId, field: &'static str| {
        match charges.get(key) {
            Some(tracked) if tracked.charge.account_id == *account => Ok(tracked.charge.clone()),
            _ => Err(LedgerError::NotFound {
                field,
                what: "charge",
                id: format!("{key} of {account} in {}", scope.id()),
            }),
        }
    };
    // A wallet for a new charge: the member must hold allowances (M1).
    let drawing = |wallets: &Wallets, account: &AccountId, allow_overflow: bool| -> Result<Wallet, LedgerError> {
        match consenting(wallets.wallet(account, scope)?, allow_overflow) {
            Wallet::Workspace { workspace, member, access } => Ok(Wallet::for_member(workspace, member, access)?),
            personal => Ok(personal),
        }
    };

    let (charge, mut wallet, given_back, movements, new) = match &pending.call {
        HotCall::Consume(call) => {
            taken(charges, &call.idempotency_key, "idempotency_key")?;
            let mut wallet = drawing(wallets, &call.account_id, call.allow_overflow)?;
            let (charge, movements) =
                Charge::consume(call.idempotency_key.clone(), &mut wallet, call.amount_credits, now_ms)?;
            (charge, wallet, Default::default(), movements, true)
        }
        HotCall::Reserve(call) => {
            taken(charges, &call.reservation_key, "reservation_key")?;
            let open = open_holds.get(&call.account_id).copied().unwrap_or(0);
            if open >= settings.max_open_holds_per_member {
                return Err(DomainError::TooManyOpenHolds { open }.into());
            }
            let mut wallet = drawing(wallets, &call.account_id, call.allow_overflow)?;
            let expires_at_ms = now_ms.saturating_add(i64::from(call.ttl_seconds) * 1_000);
            let (charge, movements) =
                Charge::hold(call.reservation_key.clone(), &mut wallet, call.amount_credits, now_ms, expires_at_ms)?;
            (charge, wallet, Default::default(), movements, true)
        }
        HotCall::Commit(call) => {
            let mut charge = own(charges, &call.reservation_key, &call.account_id, "reservation_key")?;
            let mut wallet = consenting(wallets.wallet(&call.account_id, scope)?, call.allow_overflow);
            let (captured, movements) = charge.commit(&mut wallet, call.amount_credits)?;
            (charge, wallet, captured.given_back, movements, false)
        }
        HotCall::Release(call) => {
            let mut charge = own(charges, &call.reservation_key, &call.account_id, "reservation_key")?;
            let mut wallet = wallets.wallet(&call.account_id, scope)?;
            let (given_back, movements) = charge.release(&mut wallet, false)?;
            (charge, wallet, given_back, movements, false)
        }
        HotCall::Refund(call) => {
            let mut charge = own(charges, &call.consumption_key, &call.account_id, "consumption_key")?;
            let mut wallet = wallets.wallet(&call.account_id, scope)?;
            let (given_back, movements) = charge.refund(&mut wallet, call.amount_credits)?;
            (charge, wallet, given_back, movements, false)
        }
        HotCall::Expire(key) => {
            let Some(tracked) = charges.get(key) else {
                return Err(LedgerError::NotFound { field: "reservation_key", what: "charge", id: key.to_string() });
            };
            let mut charge = tracked.charge.clone();
            if charge.expires_at_ms.is_none_or(|at| at > now_ms) {
                return Err(DomainError::HoldNotOpen { state: charge.state }.into());
            }
            let mut wallet = wallets.wallet(&charge.account_id, scope)?;
            let (given_back, movements) = charge.release(&mut wallet, true)?;
            (charge, wallet, given_back, movements, false)
        }
    };

    // The call succeeded: keep what it changed, and say what it crossed.
    if let Ok(before) = wallets.wallet(&charge.account_id, scope) {
        writes.notifications.extend(low_balance_crossings(&before, &wallet));
    }
    writes.notifications.extend(overage_started(&mut wallet));
    if charge.state == ChargeState::Expired {
        writes.notifications.push(Notification::reservation_expired(&wallet, &charge));
    }
    let was_open = charges.get(&charge.key).is_some_and(|t| t.charge.state == ChargeState::Held);
    let count = open_holds.entry(charge.account_id.clone()).or_insert(0);
    match (was_open, charge.state == ChargeState::Held) {
        (false, true) => *count += 1,
        (true, false) => *count = count.saturating_sub(1),
        _ => {}
    }
    wallets.keep(wallet);
    writes.journal.push((pending.key.clone(), movements));
    let still_new = new || charges.get(&charge.key).is_some_and(|t| t.new);
    charges.insert(charge.key.clone(), Tracked { charge: charge.clone(), new: still_new, changed: true });
    Ok(ChargeOutcome { charge, given_back })
}

/// `wallet` with the call's consent: `allow_overflow` opens an overflow pool whose profiles
/// require consent (C1, consent).
fn consenting(wallet: Wallet, allow_overflow: bool) -> Wallet {
    match wallet {
        Wallet::Workspace { workspace, member, access: PoolAccess::NeedsConsent } if allow_overflow => {
            Wallet::Workspace { workspace, member, access: PoolAccess::Granted }
        }
        wallet => wallet,
    }
}

/// The span of one batch: a child of its first call's RPC span, following from the others.
fn batch_span(batch: &[ScopeBatch], calls: usize) -> tracing::Span {
    let mut pendings = batch.iter().flat_map(|part| &part.calls);
    let Some(first) = pendings.next() else { return tracing::Span::none() };
    let scope = batch.first().map_or("", |part| part.scope.id());
    let span = tracing::info_span!(parent: &first.span, "batch.commit", scope, scopes = batch.len(), calls);
    for pending in pendings {
        span.follows_from(&pending.span);
    }
    span
}

fn conflict() -> LedgerError {
    LedgerError::from(crate::store::StoreError::Raced("a key of this batch was taken by a concurrent transaction"))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::domain::{AllowanceState, Credits, Role};
    use crate::ledger::charges::{Commit, Consume, Refund, Release, Reserve};

    const NOW_MS: i64 = 1_000_000;

    fn credits(value: i64) -> Credits {
        Credits::new(value).expect("credits")
    }

    fn workspace_id() -> WorkspaceId {
        WorkspaceId::parse("team").expect("id")
    }

    fn account(n: usize) -> AccountId {
        AccountId::parse(format!("m{n}")).expect("id")
    }

    /// A workspace of 200 monthly and 40 top-up credits; m0 may draw 80 + 20, m1 60 + 20.
    fn loaded() -> Loaded {
        let mut workspace = Workspace::new(workspace_id(), AccountId::parse("owner").expect("id"), 0);
        workspace.monthly_pool = credits(200);
        workspace.top_up_pool = credits(40);
        let members = [(0, 80), (1, 60)]
            .into_iter()
            .map(|(n, monthly)| {
                let mut member = Member::new(workspace_id(), account(n), Role::Editor, 0);
                member.monthly = AllowanceState { allowance: credits(monthly), used: Credits::ZERO };
                member.top_up = AllowanceState { allowance: credits(20), used: Credits::ZERO };
                (account(n), member)
            })
            .collect();
        Loaded {
            wallets: Wallets::Workspace { workspace, members, access: HashMap::new(), changed: BTreeSet::new() },
            charges: HashMap::new(),
            open_holds: HashMap::new(),
        }
    }

    /// A hot-path call as the property generates it: which call, member, key and amount.
    #[derive(Debug, Clone, Copy)]
    enum Spec {
        Consume(usize, usize, i64),
        Reserve(usize, usize, i64),
        Commit(usize, usize, i64),
        Release(usize, usize),
        Refund(usize, usize, u8, i64),
    }

    fn pending(spec: Spec) -> Pending {
        let ws = Some(workspace_id());
        let charge = |key: usize| ChargeKey::parse(format!("c{key}")).expect("key");
        let (call, key) = match spec {
            Spec::Consume(m, k, amount) => (
                HotCall::Consume(Consume {
                    idempotency_key: charge(k),
                    account_id: account(m),
                    workspace_id: ws,
                    amount_credits: credits(amount),
                    allow_overflow: false,
                }),
                IdempotencyKey::for_operation("Consume", &charge(k)),
            ),
            Spec::Reserve(m, k, amount) => (
                HotCall::Reserve(Reserve {
                    reservation_key: charge(k),
                    account_id: account(m),
                    workspace_id: ws,
                    amount_credits: credits(amount),
                    ttl_seconds: 60,
                    allow_overflow: false,
                }),
                IdempotencyKey::for_operation("Reserve", &charge(k)),
            ),
            Spec::Commit(m, k, amount) => (
                HotCall::Commit(Commit {
                    reservation_key: charge(k),
                    account_id: account(m),
                    workspace_id: ws,
                    amount_credits: credits(amount),
                    allow_overflow: false,
                }),
                IdempotencyKey::for_operation("Commit", &charge(k)),
            ),
            Spec::Release(m, k) => (
                HotCall::Release(Release { reservation_key: charge(k), account_id: account(m), workspace_id: ws }),
                IdempotencyKey::for_operation("Release", &charge(k)),
            ),
            Spec::Refund(m, k, n, amount) => {
                let key = IdempotencyKey::parse(format!("refund-{k}-{n}")).expect("key");
                let refund = Refund {
                    idempotency_key: key.clone(),
                    account_id: account(m),
                    workspace_id: ws,
                    consumption_key: charge(k),
                    amount_credits: Some(credits(amount)),
                };
                (HotCall::Refund(refund), key)
            }
        };
        let (reply, _) = oneshot::channel();
        Pending { call, key, request: Some(Value::Null), reply, span: tracing::Span::none() }
    }

    fn batch(specs: &[Spec]) -> ScopeBatch {
        ScopeBatch { scope: Tenant::Workspace(workspace_id()), calls: specs.iter().copied().map(pending).collect() }
    }

    /// The state as text: pools, members, charges by key and open holds by member.
    fn snapshot(loaded: &Loaded) -> String {
        let Wallets::Workspace { workspace, members, .. } = &loaded.wallets else { unreachable!("a workspace") };
        let members: std::collections::BTreeMap<_, _> = members.iter().map(|(id, m)| (id.as_str(), m)).collect();
        let charges: std::collections::BTreeMap<_, _> =
            loaded.charges.iter().map(|(key, t)| (key.as_str(), (&t.charge, t.new, t.changed))).collect();
        let holds: std::collections::BTreeMap<_, _> =
            loaded.open_holds.iter().map(|(id, n)| (id.as_str(), n)).collect();
        format!("{workspace:?} {members:?} {charges:?} {holds:?}")
    }

    fn decided(results: &[Option<Result<ChargeOutcome, LedgerError>>]) -> Vec<String> {
        results.iter().map(|result| format!("{result:?}")).collect()
    }

    fn writes_text(writes: &Writes) -> String {
        format!("{:?} {:?} {:?}", writes.journal, writes.notifications, writes.records)
    }

    #[test]
    fn a_call_that_fails_in_a_batch_fails_alone_and_the_others_apply_in_order() {
        let settings = LedgerSettings::default();
        // m0 may draw 100 in all: the second consume (90 more) fails, the third (10) fits.
        let part = batch(&[Spec::Consume(0, 1, 90), Spec::Consume(0, 2, 90), Spec::Consume(0, 3, 10)]);
        let mut state = loaded();
        let mut results: Vec<_> = part.calls.iter().map(|_| None).collect();
        let mut writes = Writes::default();
        decide(&settings, &part, &mut state, &mut results, &mut writes, NOW_MS).expect("decided");

        assert!(matches!(results[0], Some(Ok(_))), "{results:?}");
        assert!(matches!(results[1], Some(Err(LedgerError::Rule(_)))), "{results:?}");
        assert!(matches!(results[2], Some(Ok(_))), "{results:?}");
        let Wallets::Workspace { workspace, members, changed, .. } = &state.wallets else { unreachable!() };
        assert_eq!(workspace.monthly_pool.get() + workspace.top_up_pool.get(), 240 - 100);
        assert_eq!(members[&account(0)].monthly.used.get() + members[&account(0)].top_up.used.get(), 100);
        assert!(changed.contains(&account(0)) && !changed.contains(&account(1)));
        assert_eq!((state.charges.len(), writes.records.len(), writes.journal.len()), (2, 2, 2));
        assert!(state.charges.values().all(|t| t.new && t.changed));
    }

    #[test]
    fn a_commit_after_its_reserve_in_one_batch_updates_the_new_charge_instead_of_inserting_twice() {
        let settings = LedgerSettings::default();
        let part = batch(&[Spec::Reserve(1, 7, 30), Spec::Commit(1, 7, 25), Spec::Release(1, 7)]);
        let mut state = loaded();
        let mut results: Vec<_> = part.calls.iter().map(|_| None).collect();
        let mut writes = Writes::default();
        decide(&settings, &part, &mut state, &mut results, &mut writes, NOW_MS).expect("decided");

        assert!(matches!(results[0], Some(Ok(_))) && matches!(results[1], Some(Ok(_))), "{results:?}");
        assert!(matches!(results[2], Some(Err(LedgerError::Rule(_)))), "a committed hold cannot be released");
        let tracked = &state.charges[&ChargeKey::parse("c7").expect("key")];
        assert!(tracked.new, "still one insert");
        assert_eq!(tracked.charge.state, ChargeState::Captured);
        assert_eq!(state.open_holds.get(&account(1)).copied(), Some(0));
    }

    fn spec() -> impl Strategy<Value = Spec> {
        let (member, key, amount) = (0..2_usize, 0..6_usize, 1..60_i64);
        prop_oneof![
            (member.clone(), key.clone(), amount.clone()).prop_map(|(m, k, a)| Spec::Consume(m, k, a)),
            (member.clone(), key.clone(), amount.clone()).prop_map(|(m, k, a)| Spec::Reserve(m, k, a)),
            (member.clone(), key.clone(), amount.clone()).prop_map(|(m, k, a)| Spec::Commit(m, k, a)),
            (member.clone(), key.clone()).prop_map(|(m, k)| Spec::Release(m, k)),
            (member, key, 0..3_u8, amount).prop_map(|(m, k, n, a)| Spec::Refund(m, k, n, a)),
        ]
    }

    proptest! {
        /// Any sequence of hot-path calls decided as one batch gives each call the outcome, and
        /// the state and rows to write, that deciding them one by one in arrival order gives; and
        /// a call that fails changes nothing.
        #[test]
        fn a_batch_decides_as_its_calls_one_after_another(specs in prop::collection::vec(spec(), 1..40)) {
            let settings = LedgerSettings { max_open_holds_per_member: 3, ..LedgerSettings::default() };

            let together = batch(&specs);
            let mut batched = loaded();
            let mut batched_results: Vec<_> = together.calls.iter().map(|_| None).collect();
            let mut batched_writes = Writes::default();
            decide(&settings, &together, &mut batched, &mut batched_results, &mut batched_writes, NOW_MS)
                .expect("decided");

            let mut alone = loaded();
            let mut alone_results = Vec::new();
            let mut alone_writes = Writes::default();
            for spec in &specs {
                let part = batch(&[*spec]);
                let before = (snapshot(&alone), writes_text(&alone_writes));
                let mut result = vec![None];
                decide(&settings, &part, &mut alone, &mut result, &mut alone_writes, NOW_MS).expect("decided");
                if matches!(result[0], Some(Err(_))) {
                    prop_assert_eq!(&before, &(snapshot(&alone), writes_text(&alone_writes)), "{:?} failed", spec);
                }
                alone_results.extend(result);
            }

            prop_assert_eq!(decided(&batched_results), decided(&alone_results));
            prop_assert_eq!(snapshot(&batched), snapshot(&alone));
            prop_assert_eq!(writes_text(&batched_writes), writes_text(&alone_writes));
        }
    }
}
