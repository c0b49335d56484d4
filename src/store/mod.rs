//! Persistence: a transaction trait the ledger's scripts are written against, and its
//! implementations. SQL lives only in this module.
//!
//! A transaction locks rows in the fixed order account → workspace → member (DESIGN §5); the
//! ledger calls the `lock_*` methods in that order, so concurrent scripts cannot deadlock on each
//! other's rows.

mod error;
pub mod postgres;
pub(crate) mod records;
mod sql_tx;
pub mod sqlite;

use std::future::Future;

pub use error::StoreError;
use serde_json::Value;

pub use crate::domain::Account;
use crate::domain::{
    AccountId, Charge, ChargeKey, Credits, IdempotencyKey, Member, Movement, Notification, OverflowPool, PoolAccess,
    Profile, ProfileId, Split, Tenant, Workspace, WorkspaceId,
};

/// Whether a read takes a row lock until commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    /// Plain read.
    None,
    /// Exclusive row lock (`SELECT … FOR UPDATE` on Postgres).
    Update,
}

/// How an idempotency record stores the tenant it lives in: its id, and "workspace" or
/// "account" (charges spell the account kind "personal", see `records::scope_kind`).
pub(crate) fn idempotency_parts(tenant: &Tenant) -> (&str, &'static str) {
    match tenant {
        Tenant::Account(id) => (id.as_str(), "account"),
        Tenant::Workspace(id) => (id.as_str(), "workspace"),
    }
}

/// The outcome of claiming an idempotency key.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// The key was free and is now held by this transaction.
    Claimed,
    /// The key was used by a committed request.
    Used {
        /// That request.
        request: Value,
        /// Its response.
        response: Value,
    },
}

/// What a hot-path batch writes, beside its personal accounts and events.
#[derive(Debug, Clone, Copy)]
pub struct BatchRows<'a> {
    /// Workspaces whose pools changed.
    pub workspaces: &'a [Workspace],
    /// Memberships whose usage changed.
    pub members: &'a [Member],
    /// Existing charges that changed.
    pub updated_charges: &'a [Charge],
    /// Charges the batch made.
    pub new_charges: &'a [Charge],
    /// Movements, each with the key of the request that caused it.
    pub journal: &'a [(&'a IdempotencyKey, &'a Movement)],
    /// Answered requests: scope, key, request, response.
    pub records: &'a [(Tenant, IdempotencyKey, Value, Value)],
}

/// How many of a batch's charges and records were new.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchWritten {
    /// New charges.
    pub charges: u64,
    /// New idempotency records.
    pub records: u64,
}

/// A member's (or personal account's) open holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenHolds {
    /// How many.
    pub count: u32,
    /// Credits they hold.
    pub held: Credits,
}

/// Where a page of open holds continues: after this member, creation time and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldCursor {
    /// Member account id.
    pub account_id: String,
    /// Creation time (unix ms).
    pub created_at_ms: i64,
    /// Charge key.
    pub key: String,
}

/// How the notification stream is woken: the publisher on `outbox` when events are written,
/// subscribers on `published` (a generation counter) when events are published.
#[derive(Debug, Clone)]
pub struct WakeUps {
    /// Events were written somewhere: publish.
    pub outbox: std::sync::Arc<tokio::sync::Notify>,
    /// Events were published somewhere: read on.
    pub published: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
}

/// What a subscriber wants to see.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotificationFilter {
    /// Only events of this account (as the account concerned or the member); empty for all.
    pub account_id: String,
    /// Only events of this workspace; empty for all.
    pub workspace_id: String,
    /// Only these kinds (stored names); empty for all.
    pub kinds: Vec<&'static str>,
}

impl NotificationFilter {
    /// Whether `notification` passes, as the table query decides it (account concerned or
    /// member; workspace; kind).
    pub fn matches(&self, notification: &Notification) -> bool {
        let account = self.account_id.is_empty()
            || notification.account_id.as_str() == self.account_id
            || notification.member_account_id.as_ref().is_some_and(|member| member.as_str() == self.account_id);
        let workspace = self.workspace_id.is_empty()
            || notification.workspace_id.as_ref().is_some_and(|workspace| workspace.as_str() == self.workspace_id);
        let kind = self.kinds.is_empty() || self.kinds.contains(&notification.kind.as_str());
        account && workspace && kind
    }
}

/// An event as published on the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedNotification {
    /// Its stream position.
    pub position: i64,
    /// The event.
    pub notification: Notification,
    /// When the change that caused it committed (unix ms).
    pub created_at_ms: i64,
}

/// Which journal entries to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JournalFilter {
    /// Only movements made for this member.
    pub member: Option<AccountId>,
    /// Only this cause.
    pub cause: Option<crate::domain::Cause>,
    /// Written at or after (unix ms).
    pub from_ms: i64,
    /// Written before (unix ms); `i64::MAX` for no end.
    pub to_ms: i64,
}

/// One journal entry as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct JournalRow {
    /// Increasing within its scope, in commit order.
    pub entry_id: i64,
    /// Source bucket kind.
    pub from_bucket: String,
    /// Source bucket owner.
    pub from_owner_id: Option<String>,
    /// Destination bucket kind.
    pub to_bucket: String,
    /// Destination bucket owner.
    pub to_owner_id: Option<String>,
    /// Credits moved.
    pub amount_credits: i64,
    /// Why.
    pub cause: String,
    /// The request that caused it.
    pub reference: String,
    /// The member it was for.
    pub member_account_id: Option<String>,
    /// When written (unix ms).
    pub created_at_ms: i64,
    /// The draw chain link.
    pub part: Option<String>,
    /// Overflow quota units moved.
    pub overflow_units: i64,
    /// Overage units moved.
    pub overage_units: i64,
}

/// One member's net usage of one link of the draw chain, summed from the journal.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UsageRow {
    /// The member.
    pub member_account_id: String,
    /// The link ("monthly", "top_up", "overflow").
    pub part: String,
    /// Credits into `consumed` minus credits out of it.
    pub consumed_credits: i64,
    /// Overflow quota units taken from the pool minus those given back.
    pub overflow_units: i64,
    /// Overage units taken minus given back.
    pub overage_units: i64,
}

/// A bucket whose stored balance differs from the sum of its journal entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discrepancy {
    /// Bucket kind.
    pub bucket: String,
    /// Owner id.
    pub owner_id: String,
    /// Stored balance.
    pub recorded: i64,
    /// Journal sum.
    pub journal: i64,
}

/// The result of recomputing balances from the journal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerCheck {
    /// Differences found.
    pub discrepancies: Vec<Discrepancy>,
    /// Journal entries read.
    pub entries_checked: i64,
    /// Buckets compared.
    pub buckets_checked: i64,
}

impl LedgerCheck {
    /// Counts one compared bucket, and keeps it as a discrepancy when its stored value differs
    /// from the one recomputed.
    pub(crate) fn compare(
        &mut self,
        bucket: impl Into<String>,
        owner_id: impl Into<String>,
        recorded: i64,
        journal: i64,
    ) {
        self.buckets_checked += 1;
        if recorded != journal {
            self.discrepancies.push(Discrepancy {
                bucket: bucket.into(),
                owner_id: owner_id.into(),
                recorded,
                journal,
            });
        }
    }
}

/// What the database and its pool hold right now, for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreGauges {
    /// Connections lent out.
    pub pool_in_use: u32,
    /// Connections open and idle.
    pub pool_idle: u32,
    /// Open holds (reservations).
    pub open_holds: i64,
    /// When the oldest committed but unpublished notification was written (unix ms).
    pub oldest_unpublished_ms: Option<i64>,
}

/// The migrations sqlx recorded as applied.
const APPLIED_MIGRATIONS: &str = include_str!("sql/store/applied_migrations.sql");
/// What the metrics sampler reports: open holds, and when the oldest unpublished event committed.
const GAUGES: &str = include_str!("sql/store/gauges.sql");

/// The embedded migrations of `migrator` missing from `applied`.
fn pending_of(migrator: &sqlx::migrate::Migrator, applied: &[i64]) -> Vec<i64> {
    migrator
        .iter()
        .filter(|migration| migration.migration_type.is_up_migration() && !applied.contains(&migration.version))
        .map(|migration| migration.version)
        .collect()
}

/// Opens one connection of `pool`'s kind outside the pool, and closes it (see
/// [`Store::connect_once`]).
async fn connect_once<DB: sqlx::Database>(pool: &sqlx::Pool<DB>) -> Result<(), StoreError> {
    use sqlx::{ConnectOptions as _, Connection as _};
    pool.connect_options().connect().await?.close().await?;
    Ok(())
}

/// The gauges, from what the database reported and what `pool` holds.
fn gauges_of<DB: sqlx::Database>(
    pool: &sqlx::Pool<DB>,
    (open_holds, oldest_unpublished_ms): (i64, Option<i64>),
) -> StoreGauges {
    let idle = u32::try_from(pool.num_idle()).unwrap_or(u32::MAX);
    StoreGauges { pool_in_use: pool.size().saturating_sub(idle), pool_idle: idle, open_holds, oldest_unpublished_ms }
}

/// The versions a database applied, from the result of reading its migrations table; a
/// database never migrated (no such table) has applied none.
fn applied(result: Result<Vec<i64>, sqlx::Error>) -> Result<Vec<i64>, StoreError> {
    match result.map_err(StoreError::from) {
        Ok(versions) => Ok(versions),
        Err(StoreError::Database(_)) => Ok(Vec::new()),
        Err(other) => Err(other),
    }
}

/// A database holding creditpool's state.
pub trait Store: Clone + Send + Sync + 'static {
    /// A transaction on it.
    type Tx: StoreTx;

    /// Starts a transaction.
    fn begin(&self) -> impl Future<Output = Result<Self::Tx, StoreError>> + Send;

    /// Opens one connection outside the pool and closes it: at start-up, a failure carries its
    /// cause (refused, authentication, TLS), where the pool only says it timed out.
    fn connect_once(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Checks the database answers; returns its clock (unix ms) when it keeps one of its own,
    /// apart from this process's (Postgres).
    fn ping(&self) -> impl Future<Output = Result<Option<i64>, StoreError>> + Send;

    /// L1: recomputes every balance from the journal.
    fn verify_ledger(&self) -> impl Future<Output = Result<LedgerCheck, StoreError>> + Send;

    /// Applies the embedded migrations.
    fn migrate(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The versions of the embedded migrations the database has not applied yet.
    fn pending_migrations(&self) -> impl Future<Output = Result<Vec<i64>, StoreError>> + Send;

    /// Reads the gauges the metrics report (two index scans, no lock).
    fn gauges(&self) -> impl Future<Output = Result<StoreGauges, StoreError>> + Send;

    /// Closes every connection.
    fn close(&self) -> impl Future<Output = ()> + Send;

    /// How many hot-path batches may be in flight when `configured` are asked for: fewer where
    /// the store runs fewer write transactions at once, as a further batch would only wait,
    /// holding calls the next batch could have taken.
    fn batches_in_flight(&self, configured: usize) -> usize {
        configured
    }

    /// Where the hot path's committer tasks run: `None` for the caller's runtime; a store whose
    /// connections need no runtime of their own may give a dedicated one, so a batch's
    /// statements do not wait in the run queue behind the requests' tasks.
    fn committer_runtime(&self) -> Option<tokio::runtime::Handle> {
        None
    }

    /// Relays other replicas' wake-ups into `wake_ups` until `shutdown` (Postgres `LISTEN`);
    /// returns at once for a store only one process uses.
    fn relay_wake_ups(
        &self,
        wake_ups: WakeUps,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> impl Future<Output = ()> + Send;
}

/// One database transaction; dropped without [`StoreTx::commit`] it rolls back.
pub trait StoreTx: Send {
    /// Claims `key` for this request, or returns the committed request that used it. A
    /// concurrent claim of the same key waits until this transaction ends.
    fn claim_idempotency(
        &mut self,
        scope: &Tenant,
        key: &IdempotencyKey,
        request: &Value,
        now_ms: i64,
    ) -> impl Future<Output = Result<Claim, StoreError>> + Send;

    /// Stores the response of the request that claimed `key`.
    fn record_response(
        &mut self,
        scope: &Tenant,
        key: &IdempotencyKey,
        response: &Value,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The committed records of `keys` (scope, key), of one scope or several: for each key that
    /// has one, (its index in `keys`, request, response).
    fn idempotency_records(
        &mut self,
        keys: &[(Tenant, IdempotencyKey)],
    ) -> impl Future<Output = Result<Vec<(usize, Value, Value)>, StoreError>> + Send;

    /// Reads an account.
    fn account(
        &mut self,
        id: &AccountId,
        lock: Lock,
    ) -> impl Future<Output = Result<Option<Account>, StoreError>> + Send;
    /// Inserts an account; false when the id is taken.
    fn insert_account(&mut self, account: &Account) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Saves an account's balances and plan.
    fn update_account(&mut self, account: &Account) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Sum of pool sizes over the workspaces `owner` owns, except `except`.
    fn pool_sizes_owned(
        &mut self,
        owner: &AccountId,
        except: Option<&WorkspaceId>,
    ) -> impl Future<Output = Result<Credits, StoreError>> + Send;

    /// Reads a workspace.
    fn workspace(
        &mut self,
        id: &WorkspaceId,
        lock: Lock,
    ) -> impl Future<Output = Result<Option<Workspace>, StoreError>> + Send;
    /// Inserts a workspace; false when the id is taken.
    fn insert_workspace(&mut self, workspace: &Workspace) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Saves a workspace's pools and settings.
    fn update_workspace(&mut self, workspace: &Workspace) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Locks a batch's wallet rows in the global lock order: the workspaces among `ids` that
    /// exist, in id order, then the memberships among `members` (workspace, account) that exist,
    /// in key order; in one round trip where the backend can.
    fn lock_workspaces_and_members(
        &mut self,
        ids: &[WorkspaceId],
        members: &[(WorkspaceId, AccountId)],
    ) -> impl Future<Output = Result<(Vec<Workspace>, Vec<Member>), StoreError>> + Send;

    /// Locks every workspace `owner` owns, one by one by key in id order; the caller holds the
    /// owner's account lock.
    fn lock_owned_workspaces(
        &mut self,
        owner: &AccountId,
    ) -> impl Future<Output = Result<Vec<Workspace>, StoreError>> + Send;
    /// R4: sets every member's monthly usage in `workspaces` to zero.
    fn reset_monthly_usage(
        &mut self,
        workspaces: &[WorkspaceId],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Accounts whose next renewal is due at `now_ms`, soonest first.
    fn due_renewals(
        &mut self,
        now_ms: i64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<AccountId>, StoreError>> + Send;
    /// Writes events to the outbox, in this transaction.
    fn insert_notifications(
        &mut self,
        notifications: &[Notification],
        now_ms: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Reads a membership.
    fn member(
        &mut self,
        workspace: &WorkspaceId,
        account: &AccountId,
        lock: Lock,
    ) -> impl Future<Output = Result<Option<Member>, StoreError>> + Send;
    /// Inserts a membership; false when the account is already a member.
    fn insert_member(&mut self, member: &Member) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Saves memberships' roles, allowances and usage, in one statement.
    fn update_members(&mut self, members: &[Member]) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Deletes a membership.
    fn delete_member(&mut self, member: &Member) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Members ordered by account id, after `after`, at most `limit`.
    fn members(
        &mut self,
        workspace: &WorkspaceId,
        after: Option<&AccountId>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Member>, StoreError>> + Send;
    /// M2: members' remaining allowances in a workspace (what is allocated out of each pool),
    /// leaving out `except`.
    fn allocated_totals(
        &mut self,
        workspace: &WorkspaceId,
        except: Option<&AccountId>,
    ) -> impl Future<Output = Result<Split, StoreError>> + Send;

    /// What the profiles of `accounts` (members of `workspace`) allow of the overflow pool;
    /// members in no pool-access profile are left out.
    fn pool_access(
        &mut self,
        workspace: &WorkspaceId,
        accounts: &[AccountId],
    ) -> impl Future<Output = Result<std::collections::HashMap<AccountId, PoolAccess>, StoreError>> + Send;
    /// Reads a profile and its members.
    fn profile(
        &mut self,
        workspace: &WorkspaceId,
        id: &ProfileId,
    ) -> impl Future<Output = Result<Option<Profile>, StoreError>> + Send;
    /// Profiles ordered by id, after `after`, at most `limit`, with their members.
    fn profiles(
        &mut self,
        workspace: &WorkspaceId,
        after: Option<&ProfileId>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Profile>, StoreError>> + Send;
    /// The profiles of the members of `workspace` whose account ids are in [`first`, `last`]:
    /// (member, profile), by member and profile.
    fn profile_assignments(
        &mut self,
        workspace: &WorkspaceId,
        first: &AccountId,
        last: &AccountId,
    ) -> impl Future<Output = Result<Vec<(AccountId, ProfileId)>, StoreError>> + Send;
    /// Inserts a profile (without members); false when the id is taken.
    fn insert_profile(&mut self, profile: &Profile) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Saves a profile's name and toggles.
    fn update_profile(&mut self, profile: &Profile) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Deletes a profile and its assignments.
    fn delete_profile(&mut self, profile: &Profile) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Assigns `added` to and unassigns `removed` from a profile.
    fn change_profile_members(
        &mut self,
        profile: &Profile,
        added: &[AccountId],
        removed: &[AccountId],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Keeps the totals of a contract period that `ended_at_ms` closed, for reports.
    fn insert_overflow_period(
        &mut self,
        workspace: &WorkspaceId,
        closed: &OverflowPool,
        ended_at_ms: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Journal entries of one scope (a workspace, or an account) after `after` in entry order,
    /// selected by `filter`, at most `limit`.
    fn journal_entries(
        &mut self,
        scope_id: &str,
        filter: &JournalFilter,
        after: i64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<JournalRow>, StoreError>> + Send;
    /// Net usage per member and draw-chain link of a workspace, over entries written in
    /// [`from_ms`, `to_ms`).
    fn usage_totals(
        &mut self,
        workspace: &WorkspaceId,
        from_ms: i64,
        to_ms: i64,
    ) -> impl Future<Output = Result<Vec<UsageRow>, StoreError>> + Send;
    /// The latest closed contract period labelled `period`: (started, ended) unix ms.
    fn closed_overflow_period(
        &mut self,
        workspace: &WorkspaceId,
        period: &str,
    ) -> impl Future<Output = Result<Option<(i64, i64)>, StoreError>> + Send;

    /// Reads the charges of `keys` (scope, key), of one scope or several, those that exist; with
    /// `Lock::Update`, locked in scope and key order.
    fn charges(
        &mut self,
        keys: &[(Tenant, ChargeKey)],
        lock: Lock,
    ) -> impl Future<Output = Result<Vec<Charge>, StoreError>> + Send;
    /// Saves charges' states, splits and refunds, in one statement.
    fn update_charges(&mut self, charges: &[Charge]) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// How many holds `account` has open in `scope`, and what they hold.
    fn open_holds_of(
        &mut self,
        scope: &Tenant,
        account: &AccountId,
    ) -> impl Future<Output = Result<OpenHolds, StoreError>> + Send;
    /// How many holds each of `holders` (scope, account), of one scope or several, has open, in
    /// their order.
    fn open_hold_counts(
        &mut self,
        holders: &[(Tenant, AccountId)],
    ) -> impl Future<Output = Result<Vec<u32>, StoreError>> + Send;
    /// How many holds each member of `workspace` has open (members with none are left out).
    fn open_holds_per_member(
        &mut self,
        workspace: &WorkspaceId,
    ) -> impl Future<Output = Result<Vec<(AccountId, u32)>, StoreError>> + Send;
    /// Open holds of a scope (of one member when `account` is given), by member and age.
    fn open_holds(
        &mut self,
        scope: &Tenant,
        account: Option<&AccountId>,
        after: Option<&HoldCursor>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Charge>, StoreError>> + Send;
    /// Holds open past `now_ms`, soonest expired first.
    fn expired_holds(
        &mut self,
        now_ms: i64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<(Tenant, ChargeKey)>, StoreError>> + Send;
    /// Deletes up to `limit` idempotency records created before `before_ms`; returns how many.
    fn prune_idempotency(&mut self, before_ms: i64, limit: u32)
    -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Waits for, and locks, the stream's last position: publishers take turns here.
    fn lock_stream_position(&mut self) -> impl Future<Output = Result<i64, StoreError>> + Send;
    /// Gives every committed, unpublished event the next position after `last`, in sequence
    /// order; returns how many.
    fn assign_positions(&mut self, last: i64) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// Moves the stream's last position on by `published` and wakes subscribers everywhere.
    fn advance_stream(&mut self, published: u64) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Published events after `position` that match `filter`, in stream order.
    fn notifications_after(
        &mut self,
        position: i64,
        filter: &NotificationFilter,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<PublishedNotification>, StoreError>> + Send;
    /// The last position handed out, and the oldest still kept.
    fn stream_bounds(&mut self) -> impl Future<Output = Result<(i64, Option<i64>), StoreError>> + Send;
    /// Deletes published events created before `before_ms`; returns how many.
    fn prune_notifications(&mut self, before_ms: i64) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Appends movements to the journal in one statement, each with the key of the request
    /// that caused it.
    fn append_journal(
        &mut self,
        entries: &[(&IdempotencyKey, &Movement)],
        now_ms: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Writes a hot-path batch's rows, in one statement where the backend can; returns how many
    /// charges and records were new (a key taken meanwhile is skipped, or fails the write with
    /// [`StoreError::Raced`]; either way the caller reruns).
    fn write_batch(
        &mut self,
        rows: &BatchRows<'_>,
        now_ms: i64,
    ) -> impl Future<Output = Result<BatchWritten, StoreError>> + Send;

    /// Commits.
    fn commit(self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// `statement` with every `$n` parameter renumbered `$renumber(n)`, to join single statements
/// into one.
pub(crate) fn renumber_parameters(statement: &str, renumber: impl Fn(usize) -> usize) -> String {
    let mut renumbered = String::with_capacity(statement.len());
    let mut rest = statement;
    while let Some(at) = rest.find('$') {
        renumbered.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let number: usize = rest[..digits].parse().expect("a statement's parameters are numbered");
        renumbered.push_str(&renumber(number).to_string());
        rest = &rest[digits..];
    }
    renumbered.push_str(rest);
    renumbered
}
