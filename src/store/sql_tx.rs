//! What both SQL stores share. A backend's transaction implements [`SqlTx`]: how it runs one
//! statement, and the statements whose form differs between the backends (lists as Postgres
//! arrays or as SQLite JSON, row locks or none). Every [`StoreTx`] method is then written once,
//! here, over that trait: each shared statement lives in a `.sql` file under `sql/`, included
//! by the method that runs it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;

use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;

use super::records::{
    AccountRecord, ChargeRecord, MemberRecord, NotificationRecord, ProfileRecord, WorkspaceRecord, charge_tenant,
    scope_kind,
};
use super::{
    BatchRows, BatchWritten, Claim, HoldCursor, JournalFilter, JournalRow, LedgerCheck, Lock, NotificationFilter,
    OpenHolds, PublishedNotification, StoreError, StoreTx, UsageRow, idempotency_parts,
};
use crate::domain::{
    Account, AccountId, Cause, Charge, ChargeKey, Credits, IdempotencyKey, Member, Movement, Notification,
    OverflowPool, PoolAccess, Profile, ProfileId, Split, Tenant, Workspace, WorkspaceId,
};

/// One parameter of a shared statement, in the few column types the schema uses.
#[derive(Debug, Clone)]
pub(crate) enum Param<'a> {
    /// `text`, or NULL.
    Text(Option<Cow<'a, str>>),
    /// `bigint`, or NULL.
    Integer(Option<i64>),
    /// `integer`, or NULL.
    Small(Option<i32>),
    /// `boolean`.
    Boolean(bool),
}

impl<'a> From<&'a str> for Param<'a> {
    fn from(value: &'a str) -> Param<'a> {
        Param::Text(Some(Cow::Borrowed(value)))
    }
}

impl<'a> From<Option<&'a str>> for Param<'a> {
    fn from(value: Option<&'a str>) -> Param<'a> {
        Param::Text(value.map(Cow::Borrowed))
    }
}

impl From<String> for Param<'_> {
    fn from(value: String) -> Self {
        Param::Text(Some(Cow::Owned(value)))
    }
}

impl From<Option<String>> for Param<'_> {
    fn from(value: Option<String>) -> Self {
        Param::Text(value.map(Cow::Owned))
    }
}

impl From<i64> for Param<'_> {
    fn from(value: i64) -> Self {
        Param::Integer(Some(value))
    }
}

impl From<Option<i64>> for Param<'_> {
    fn from(value: Option<i64>) -> Self {
        Param::Integer(value)
    }
}

impl From<i32> for Param<'_> {
    fn from(value: i32) -> Self {
        Param::Small(Some(value))
    }
}

impl From<Option<i32>> for Param<'_> {
    fn from(value: Option<i32>) -> Self {
        Param::Small(value)
    }
}

impl From<bool> for Param<'_> {
    fn from(value: bool) -> Self {
        Param::Boolean(value)
    }
}

/// A statement both backends run as written, with its parameters in `$n` order.
#[derive(Debug, Clone)]
pub(crate) struct Statement<'a> {
    /// The SQL text (a constant of the project's).
    pub text: &'static str,
    /// `$1`, `$2`, … in order.
    pub params: Vec<Param<'a>>,
}

/// `text` with no parameters bound yet.
pub(crate) fn statement<'a>(text: &'static str) -> Statement<'a> {
    Statement { text, params: Vec::new() }
}

impl<'a> Statement<'a> {
    /// Binds the next parameter.
    pub fn bind(mut self, value: impl Into<Param<'a>>) -> Statement<'a> {
        self.params.push(value.into());
        self
    }

    /// The parameters encoded for database `DB`.
    pub fn arguments<DB: sqlx::Database>(&self) -> Result<DB::Arguments, StoreError>
    where
        for<'t> Option<&'t str>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
        for<'t> Option<i64>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
        for<'t> Option<i32>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
        for<'t> bool: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    {
        use sqlx::Arguments as _;
        let mut arguments = DB::Arguments::default();
        for param in &self.params {
            match param {
                Param::Text(value) => arguments.add(value.as_deref()),
                Param::Integer(value) => arguments.add(*value),
                Param::Small(value) => arguments.add(*value),
                Param::Boolean(value) => arguments.add(*value),
            }
            .map_err(|error| StoreError::Database(sqlx::Error::Encode(error)))?;
        }
        Ok(arguments)
    }
}

/// A row both backends can decode (every record type, and tuples of plain columns).
pub(crate) trait Decoded:
    for<'r> sqlx::FromRow<'r, PgRow> + for<'r> sqlx::FromRow<'r, SqliteRow> + Send + Unpin
{
}

impl<T> Decoded for T where T: for<'r> sqlx::FromRow<'r, PgRow> + for<'r> sqlx::FromRow<'r, SqliteRow> + Send + Unpin {}

/// A signal a transaction sends to every replica when it commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// Events were written: publishers, publish.
    Outbox,
    /// Events were published: subscribers, read on.
    Published,
}

/// A SQL backend's transaction: how it runs a shared statement, and the statements whose form
/// is its own. [`StoreTx`] is implemented once for every such transaction.
pub(crate) trait SqlTx: Send {
    /// Whether a locking read needs its own statement (Postgres `FOR UPDATE`). SQLite's single
    /// connection holds the whole file for the transaction, so a plain read is a locked one.
    const ROW_LOCKS: bool;

    /// Runs `statement`; returns how many rows it changed.
    fn execute(&mut self, statement: Statement<'_>) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// Runs `statement`; returns its rows.
    fn fetch_all<R: Decoded>(
        &mut self,
        statement: Statement<'_>,
    ) -> impl Future<Output = Result<Vec<R>, StoreError>> + Send;
    /// Runs `statement`; returns its first row, if any.
    fn fetch_optional<R: Decoded>(
        &mut self,
        statement: Statement<'_>,
    ) -> impl Future<Output = Result<Option<R>, StoreError>> + Send;
    /// Runs `statement`, which always returns a row (an aggregate, a singleton table); returns it.
    fn fetch_one<R: Decoded>(&mut self, statement: Statement<'_>) -> impl Future<Output = Result<R, StoreError>> + Send
    where
        Self: Sized,
    {
        async move {
            let text = statement.text;
            self.fetch_optional(statement).await?.ok_or_else(|| StoreError::Corrupt(format!("no row from: {text}")))
        }
    }
    /// Sends `signal` to every replica once this transaction commits (nothing to do where one
    /// process owns the database).
    fn signal(&mut self, signal: Signal) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Commits.
    fn commit(self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The stored rows of [`StoreTx::idempotency_records`].
    fn idempotency_rows(
        &mut self,
        keys: &[(Tenant, IdempotencyKey)],
    ) -> impl Future<Output = Result<Vec<RecordRow>, StoreError>> + Send;
    /// The workspaces among `ids` that exist, locked in id order, in one statement where the
    /// backend can.
    fn lock_workspaces(
        &mut self,
        ids: &[WorkspaceId],
    ) -> impl Future<Output = Result<Vec<Workspace>, StoreError>> + Send;
    /// See [`StoreTx::reset_monthly_usage`].
    fn reset_monthly_usage(
        &mut self,
        workspaces: &[WorkspaceId],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The memberships among `members` (workspace, account) that exist, locked in key order, in
    /// one statement where the backend can. The caller holds the workspaces' locks.
    fn lock_members(
        &mut self,
        members: &[(WorkspaceId, AccountId)],
    ) -> impl Future<Output = Result<Vec<Member>, StoreError>> + Send;
    /// See [`StoreTx::update_members`].
    fn update_members(&mut self, members: &[Member]) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The (member, requires consent) rows of [`StoreTx::pool_access`].
    fn pool_access_grants(
        &mut self,
        workspace: &WorkspaceId,
        accounts: &[AccountId],
    ) -> impl Future<Output = Result<Vec<(String, bool)>, StoreError>> + Send;
    /// See [`StoreTx::charges`].
    fn charges(
        &mut self,
        keys: &[(Tenant, ChargeKey)],
        lock: Lock,
    ) -> impl Future<Output = Result<Vec<Charge>, StoreError>> + Send;
    /// The counts of [`StoreTx::open_hold_counts`], as read.
    fn open_hold_count_rows(
        &mut self,
        holders: &[(Tenant, AccountId)],
    ) -> impl Future<Output = Result<Vec<(i64,)>, StoreError>> + Send;
    /// See [`StoreTx::update_charges`].
    fn update_charges(&mut self, charges: &[Charge]) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// See [`StoreTx::append_journal`].
    fn append_journal(
        &mut self,
        entries: &[(&IdempotencyKey, &Movement)],
        now_ms: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// See [`StoreTx::lock_workspaces_and_members`]; by default the workspaces in one statement
    /// and then the members in another.
    fn lock_workspaces_and_members(
        &mut self,
        ids: &[WorkspaceId],
        members: &[(WorkspaceId, AccountId)],
    ) -> impl Future<Output = Result<(Vec<Workspace>, Vec<Member>), StoreError>> + Send
    where
        Self: Sized,
    {
        lock_workspaces_then_members(self, ids, members)
    }
    /// See [`StoreTx::write_batch`].
    fn write_batch(
        &mut self,
        rows: &BatchRows<'_>,
        now_ms: i64,
    ) -> impl Future<Output = Result<BatchWritten, StoreError>> + Send;
}

/// A batch's wallet rows locked in two statements: the workspaces, then their members.
pub(crate) async fn lock_workspaces_then_members<T: SqlTx>(
    tx: &mut T,
    ids: &[WorkspaceId],
    members: &[(WorkspaceId, AccountId)],
) -> Result<(Vec<Workspace>, Vec<Member>), StoreError> {
    let workspaces = tx.lock_workspaces(ids).await?;
    let members = if members.is_empty() { Vec::new() } else { tx.lock_members(members).await? };
    Ok((workspaces, members))
}

/// The plain or the locking form of a read, as the backend needs it.
fn read<T: SqlTx>(lock: Lock, plain: &'static str, locking: &'static str) -> &'static str {
    if lock == Lock::Update && T::ROW_LOCKS { locking } else { plain }
}

/// A count or sum the database returned, as credits.
fn credits_of(what: &str, value: i64) -> Result<Credits, StoreError> {
    Credits::new(value).ok_or_else(|| StoreError::Corrupt(format!("{what} is {value}")))
}

/// A count the database returned, as a small number.
fn count_of(what: &str, value: i64) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("{value} {what}")))
}

/// A stored idempotency record as read: its scope, key, request and response (`None` while its
/// claim is uncommitted).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct RecordRow {
    scope_id: String,
    scope_kind: String,
    #[sqlx(rename = "idempotency_key")]
    key: String,
    request: String,
    response: Option<String>,
}

/// A committed idempotency record's request and response, parsed.
fn parse_record(key: &str, request: &str, response: Option<&str>) -> Result<(Value, Value), StoreError> {
    let parse = |text: &str| {
        serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("idempotency record {key}: {e}")))
    };
    let response = response.ok_or_else(|| StoreError::Corrupt(format!("idempotency record {key} has no response")))?;
    Ok((parse(request)?, parse(response)?))
}

/// Binds an account's columns in the order of `accounts/insert.sql` and `accounts/update.sql`
/// (the update leaves out `created_at_ms`).
fn bind_account<'a>(statement: Statement<'a>, r: AccountRecord, created: bool) -> Statement<'a> {
    let statement = statement
        .bind(r.account_id)
        .bind(r.monthly_credits)
        .bind(r.top_up_credits)
        .bind(r.plan_monthly_credits)
        .bind(r.plan_next_monthly_credits)
        .bind(r.anchor_day_of_month)
        .bind(r.anchor_hour_utc)
        .bind(r.anchor_minute_utc)
        .bind(r.current_period)
        .bind(r.period_started_at_ms)
        .bind(r.monthly_cycle)
        .bind(r.next_renewal_at_ms);
    if created { statement.bind(r.created_at_ms) } else { statement }
}

impl<T: SqlTx> StoreTx for T {
    async fn claim_idempotency(
        &mut self,
        scope: &Tenant,
        key: &IdempotencyKey,
        request: &Value,
        now_ms: i64,
    ) -> Result<Claim, StoreError> {
        const CLAIM: &str = include_str!("sql/idempotency_records/claim.sql");
        const SELECT: &str = include_str!("sql/idempotency_records/select.sql");
        let (scope_id, kind) = idempotency_parts(scope);
        let claim = statement(CLAIM).bind(scope_id).bind(kind).bind(key.as_str()).bind(request.to_string());
        if self.execute(claim.bind(now_ms)).await? == 1 {
            return Ok(Claim::Claimed);
        }
        let select = statement(SELECT).bind(scope_id).bind(kind).bind(key.as_str());
        let (request, response): (String, Option<String>) = self.fetch_one(select).await?;
        let (request, response) = parse_record(key.as_str(), &request, response.as_deref())?;
        Ok(Claim::Used { request, response })
    }

    async fn record_response(
        &mut self,
        scope: &Tenant,
        key: &IdempotencyKey,
        response: &Value,
    ) -> Result<(), StoreError> {
        const RECORD: &str = include_str!("sql/idempotency_records/record_response.sql");
        let (scope_id, kind) = idempotency_parts(scope);
        let record = statement(RECORD).bind(scope_id).bind(kind).bind(key.as_str()).bind(response.to_string());
        self.execute(record).await?;
        Ok(())
    }

    async fn idempotency_records(
        &mut self,
        keys: &[(Tenant, IdempotencyKey)],
    ) -> Result<Vec<(usize, Value, Value)>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let positions: HashMap<(&str, &str, &str), usize> = keys
            .iter()
            .enumerate()
            .map(|(position, (scope, key))| {
                let (scope_id, kind) = idempotency_parts(scope);
                ((scope_id, kind, key.as_str()), position)
            })
            .collect();
        let rows = self.idempotency_rows(keys).await?;
        rows.into_iter()
            .filter_map(|row| {
                let position = positions.get(&(row.scope_id.as_str(), row.scope_kind.as_str(), row.key.as_str()))?;
                Some(
                    parse_record(&row.key, &row.request, row.response.as_deref())
                        .map(|(request, response)| (*position, request, response)),
                )
            })
            .collect()
    }

    async fn account(&mut self, id: &AccountId, lock: Lock) -> Result<Option<Account>, StoreError> {
        const SELECT: &str = include_str!("sql/accounts/select.sql");
        const LOCK: &str = include_str!("sql/accounts/lock.postgres.sql");
        let row: Option<AccountRecord> =
            self.fetch_optional(statement(read::<T>(lock, SELECT, LOCK)).bind(id.as_str())).await?;
        row.map(Account::try_from).transpose()
    }

    async fn insert_account(&mut self, account: &Account) -> Result<bool, StoreError> {
        const INSERT: &str = include_str!("sql/accounts/insert.sql");
        Ok(self.execute(bind_account(statement(INSERT), AccountRecord::from(account), true)).await? == 1)
    }

    async fn update_account(&mut self, account: &Account) -> Result<(), StoreError> {
        const UPDATE: &str = include_str!("sql/accounts/update.sql");
        self.execute(bind_account(statement(UPDATE), AccountRecord::from(account), false)).await?;
        Ok(())
    }

    async fn pool_sizes_owned(
        &mut self,
        owner: &AccountId,
        except: Option<&WorkspaceId>,
    ) -> Result<Credits, StoreError> {
        const SUM: &str = include_str!("sql/workspaces/pool_sizes_owned.sql");
        let sum = statement(SUM).bind(owner.as_str()).bind(except.map_or("", WorkspaceId::as_str));
        let (total,): (i64,) = self.fetch_one(sum).await?;
        credits_of(&format!("the pool sizes of {owner}"), total)
    }

    async fn workspace(&mut self, id: &WorkspaceId, lock: Lock) -> Result<Option<Workspace>, StoreError> {
        const SELECT: &str = include_str!("sql/workspaces/select.sql");
        const LOCK: &str = include_str!("sql/workspaces/lock.postgres.sql");
        let row: Option<WorkspaceRecord> =
            self.fetch_optional(statement(read::<T>(lock, SELECT, LOCK)).bind(id.as_str())).await?;
        row.map(Workspace::try_from).transpose()
    }

    async fn insert_workspace(&mut self, workspace: &Workspace) -> Result<bool, StoreError> {
        const INSERT: &str = include_str!("sql/workspaces/insert.sql");
        let r = WorkspaceRecord::from(workspace);
        let insert = statement(INSERT)
            .bind(r.workspace_id)
            .bind(r.owner_account_id)
            .bind(r.pool_size_credits)
            .bind(r.funded_pool_size_credits)
            .bind(r.monthly_pool_funded)
            .bind(r.monthly_pool_credits)
            .bind(r.top_up_pool_credits)
            .bind(r.monthly_cycle)
            .bind(r.low_monthly_pool_credits)
            .bind(r.low_top_up_pool_credits)
            .bind(r.low_member_remaining_percent)
            .bind(r.overflow_pool)
            .bind(r.overflow_lent_credits)
            .bind(r.low_overflow_units)
            .bind(r.created_at_ms)
            .bind(r.memberships);
        Ok(self.execute(insert).await? == 1)
    }

    async fn update_workspace(&mut self, workspace: &Workspace) -> Result<(), StoreError> {
        const UPDATE: &str = include_str!("sql/workspaces/update.sql");
        let r = WorkspaceRecord::from(workspace);
        let update = statement(UPDATE)
            .bind(r.workspace_id)
            .bind(r.pool_size_credits)
            .bind(r.funded_pool_size_credits)
            .bind(r.monthly_pool_funded)
            .bind(r.monthly_pool_credits)
            .bind(r.top_up_pool_credits)
            .bind(r.low_monthly_pool_credits)
            .bind(r.low_top_up_pool_credits)
            .bind(r.low_member_remaining_percent)
            .bind(r.monthly_cycle)
            .bind(r.overflow_pool)
            .bind(r.overflow_lent_credits)
            .bind(r.low_overflow_units)
            .bind(r.memberships);
        self.execute(update).await?;
        Ok(())
    }

    async fn lock_workspaces_and_members(
        &mut self,
        ids: &[WorkspaceId],
        members: &[(WorkspaceId, AccountId)],
    ) -> Result<(Vec<Workspace>, Vec<Member>), StoreError> {
        // A membership belongs to a workspace: with none, there is nothing to lock.
        if ids.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        SqlTx::lock_workspaces_and_members(self, ids, members).await
    }

    async fn lock_owned_workspaces(&mut self, owner: &AccountId) -> Result<Vec<Workspace>, StoreError> {
        // The ids only: the rows are then locked one by one by their key, which a distributed
        // table can do (a `FOR UPDATE` filtered by the owner cannot run on Citus). The caller holds
        // the owner's account lock, which creating a workspace takes too, so the ids cannot change
        // before the rows are locked.
        const OWNED: &str = include_str!("sql/workspaces/owned_ids.sql");
        let ids: Vec<(String,)> = self.fetch_all(statement(OWNED).bind(owner.as_str())).await?;
        let mut workspaces = Vec::with_capacity(ids.len());
        for (id,) in ids {
            let id = WorkspaceId::parse(id).map_err(|e| StoreError::Corrupt(format!("workspace id: {e}")))?;
            match self.workspace(&id, Lock::Update).await? {
                Some(workspace) => workspaces.push(workspace),
                None => return Err(StoreError::Corrupt(format!("workspace {id} vanished under its owner's lock"))),
            }
        }
        Ok(workspaces)
    }

    async fn reset_monthly_usage(&mut self, workspaces: &[WorkspaceId]) -> Result<(), StoreError> {
        if workspaces.is_empty() {
            return Ok(());
        }
        SqlTx::reset_monthly_usage(self, workspaces).await
    }

    async fn due_renewals(&mut self, now_ms: i64, limit: u32) -> Result<Vec<AccountId>, StoreError> {
        const DUE: &str = include_str!("sql/accounts/due_renewals.sql");
        let ids: Vec<(String,)> = self.fetch_all(statement(DUE).bind(now_ms).bind(i64::from(limit))).await?;
        ids.into_iter()
            .map(|(id,)| AccountId::parse(id).map_err(|e| StoreError::Corrupt(format!("due account id: {e}"))))
            .collect()
    }

    async fn insert_notifications(&mut self, notifications: &[Notification], now_ms: i64) -> Result<(), StoreError> {
        const INSERT: &str = include_str!("sql/notifications/insert.sql");
        for notification in notifications {
            let payload = serde_json::to_string(&notification.payload)
                .map_err(|e| StoreError::Corrupt(format!("notification payload: {e}")))?;
            let insert = statement(INSERT)
                .bind(notification.account_id.as_str())
                .bind(notification.kind.as_str())
                .bind(notification.workspace_id.as_ref().map(WorkspaceId::as_str))
                .bind(notification.member_account_id.as_ref().map(AccountId::as_str))
                .bind(payload)
                .bind(now_ms)
                .bind(notification.scope_id());
            self.execute(insert).await?;
        }
        if !notifications.is_empty() {
            self.signal(Signal::Outbox).await?;
        }
        Ok(())
    }

    async fn member(
        &mut self,
        workspace: &WorkspaceId,
        account: &AccountId,
        lock: Lock,
    ) -> Result<Option<Member>, StoreError> {
        const SELECT: &str = include_str!("sql/members/select.sql");
        const LOCK: &str = include_str!("sql/members/lock.postgres.sql");
        let select = statement(read::<T>(lock, SELECT, LOCK)).bind(workspace.as_str()).bind(account.as_str());
        let row: Option<MemberRecord> = self.fetch_optional(select).await?;
        row.map(Member::try_from).transpose()
    }

    async fn insert_member(&mut self, member: &Member) -> Result<bool, StoreError> {
        const INSERT: &str = include_str!("sql/members/insert.sql");
        let r = MemberRecord::from(member);
        let insert = statement(INSERT)
            .bind(r.workspace_id)
            .bind(r.account_id)
            .bind(r.role)
            .bind(r.monthly_allowance_credits)
            .bind(r.monthly_used_credits)
            .bind(r.top_up_allowance_credits)
            .bind(r.top_up_used_credits)
            .bind(r.created_at_ms)
            .bind(r.membership);
        Ok(self.execute(insert).await? == 1)
    }

    async fn update_members(&mut self, members: &[Member]) -> Result<(), StoreError> {
        if members.is_empty() {
            return Ok(());
        }
        SqlTx::update_members(self, members).await
    }

    async fn delete_member(&mut self, member: &Member) -> Result<(), StoreError> {
        const DELETE: &str = include_str!("sql/members/delete.sql");
        self.execute(statement(DELETE).bind(member.workspace_id.as_str()).bind(member.account_id.as_str())).await?;
        Ok(())
    }

    async fn members(
        &mut self,
        workspace: &WorkspaceId,
        after: Option<&AccountId>,
        limit: u32,
    ) -> Result<Vec<Member>, StoreError> {
        const PAGE: &str = include_str!("sql/members/page.sql");
        let page = statement(PAGE).bind(workspace.as_str()).bind(after.map_or("", AccountId::as_str));
        let rows: Vec<MemberRecord> = self.fetch_all(page.bind(i64::from(limit))).await?;
        rows.into_iter().map(Member::try_from).collect()
    }

    async fn allocated_totals(
        &mut self,
        workspace: &WorkspaceId,
        except: Option<&AccountId>,
    ) -> Result<Split, StoreError> {
        const TOTALS: &str = include_str!("sql/members/allocated_totals.sql");
        let totals = statement(TOTALS).bind(workspace.as_str()).bind(except.map_or("", AccountId::as_str));
        let (monthly, top_up): (i64, i64) = self.fetch_one(totals).await?;
        let what = format!("the allocations of {workspace}");
        Ok(Split::of(credits_of(&what, monthly)?, credits_of(&what, top_up)?))
    }

    async fn pool_access(
        &mut self,
        workspace: &WorkspaceId,
        accounts: &[AccountId],
    ) -> Result<HashMap<AccountId, PoolAccess>, StoreError> {
        if accounts.is_empty() {
            return Ok(HashMap::new());
        }
        super::records::pool_access(self.pool_access_grants(workspace, accounts).await?)
    }

    async fn profile(&mut self, workspace: &WorkspaceId, id: &ProfileId) -> Result<Option<Profile>, StoreError> {
        const SELECT: &str = include_str!("sql/profiles/select.sql");
        const MEMBERS: &str = include_str!("sql/profile_members/of_profile.sql");
        let row: Option<ProfileRecord> =
            self.fetch_optional(statement(SELECT).bind(workspace.as_str()).bind(id.as_str())).await?;
        let Some(row) = row else { return Ok(None) };
        let members: Vec<(String,)> =
            self.fetch_all(statement(MEMBERS).bind(workspace.as_str()).bind(id.as_str())).await?;
        row.with_members(members.into_iter().map(|(account,)| account).collect()).map(Some)
    }

    async fn profiles(
        &mut self,
        workspace: &WorkspaceId,
        after: Option<&ProfileId>,
        limit: u32,
    ) -> Result<Vec<Profile>, StoreError> {
        const PAGE: &str = include_str!("sql/profiles/page.sql");
        const MEMBERS: &str = include_str!("sql/profile_members/of_profiles_between.sql");
        let after = after.map_or("", ProfileId::as_str);
        let page = statement(PAGE).bind(workspace.as_str()).bind(after).bind(i64::from(limit));
        let rows: Vec<ProfileRecord> = self.fetch_all(page).await?;
        let Some(last) = rows.last().map(|row| row.profile_id.clone()) else { return Ok(Vec::new()) };
        let pairs: Vec<(String, String)> =
            self.fetch_all(statement(MEMBERS).bind(workspace.as_str()).bind(after).bind(last)).await?;
        let mut members: HashMap<String, Vec<String>> = HashMap::new();
        for (profile, account) in pairs {
            members.entry(profile).or_default().push(account);
        }
        rows.into_iter()
            .map(|row| {
                let of = members.remove(&row.profile_id).unwrap_or_default();
                row.with_members(of)
            })
            .collect()
    }

    async fn profile_assignments(
        &mut self,
        workspace: &WorkspaceId,
        first: &AccountId,
        last: &AccountId,
    ) -> Result<Vec<(AccountId, ProfileId)>, StoreError> {
        const BETWEEN: &str = include_str!("sql/profile_members/of_members_between.sql");
        let between = statement(BETWEEN).bind(workspace.as_str()).bind(first.as_str()).bind(last.as_str());
        let rows: Vec<(String, String)> = self.fetch_all(between).await?;
        rows.into_iter()
            .map(|(account, profile)| {
                let corrupt = |e: crate::domain::IdError| StoreError::Corrupt(format!("profile assignment: {e}"));
                Ok((AccountId::parse(account).map_err(corrupt)?, ProfileId::parse(profile).map_err(corrupt)?))
            })
            .collect()
    }

    async fn insert_profile(&mut self, profile: &Profile) -> Result<bool, StoreError> {
        const INSERT: &str = include_str!("sql/profiles/insert.sql");
        let insert = statement(INSERT)
            .bind(profile.workspace_id.as_str())
            .bind(profile.id.as_str())
            .bind(profile.name.as_str())
            .bind(profile.pool_access)
            .bind(profile.notify_on_assign)
            .bind(profile.requires_consent)
            .bind(profile.created_at_ms);
        Ok(self.execute(insert).await? == 1)
    }

    async fn update_profile(&mut self, profile: &Profile) -> Result<(), StoreError> {
        const UPDATE: &str = include_str!("sql/profiles/update.sql");
        let update = statement(UPDATE)
            .bind(profile.workspace_id.as_str())
            .bind(profile.id.as_str())
            .bind(profile.name.as_str())
            .bind(profile.pool_access)
            .bind(profile.notify_on_assign)
            .bind(profile.requires_consent);
        self.execute(update).await?;
        Ok(())
    }

    async fn delete_profile(&mut self, profile: &Profile) -> Result<(), StoreError> {
        const DELETE_MEMBERS: &str = include_str!("sql/profile_members/delete_of_profile.sql");
        const DELETE: &str = include_str!("sql/profiles/delete.sql");
        for text in [DELETE_MEMBERS, DELETE] {
            self.execute(statement(text).bind(profile.workspace_id.as_str()).bind(profile.id.as_str())).await?;
        }
        Ok(())
    }

    async fn change_profile_members(
        &mut self,
        profile: &Profile,
        added: &[AccountId],
        removed: &[AccountId],
    ) -> Result<(), StoreError> {
        const INSERT: &str = include_str!("sql/profile_members/insert.sql");
        const DELETE: &str = include_str!("sql/profile_members/delete.sql");
        let changes =
            added.iter().map(|account| (INSERT, account)).chain(removed.iter().map(|account| (DELETE, account)));
        for (text, account) in changes {
            let change = statement(text).bind(profile.workspace_id.as_str()).bind(profile.id.as_str());
            self.execute(change.bind(account.as_str())).await?;
        }
        Ok(())
    }

    async fn insert_overflow_period(
        &mut self,
        workspace: &WorkspaceId,
        closed: &OverflowPool,
        ended_at_ms: i64,
    ) -> Result<(), StoreError> {
        const INSERT: &str = include_str!("sql/overflow_periods/insert.sql");
        let insert = statement(INSERT)
            .bind(workspace.as_str())
            .bind(closed.cycle)
            .bind(closed.period.as_str())
            .bind(closed.quota_units)
            .bind(closed.quota_used_units.saturating_add(closed.overage_units))
            .bind(closed.overage_units)
            .bind(closed.period_started_at_ms)
            .bind(ended_at_ms);
        self.execute(insert).await?;
        Ok(())
    }

    async fn journal_entries(
        &mut self,
        scope_id: &str,
        filter: &JournalFilter,
        after: i64,
        limit: u32,
    ) -> Result<Vec<JournalRow>, StoreError> {
        const PAGE: &str = include_str!("sql/journal_entries/page.sql");
        let page = statement(PAGE)
            .bind(scope_id)
            .bind(after)
            .bind(filter.member.as_ref().map_or("", AccountId::as_str))
            .bind(filter.cause.map_or("", Cause::as_str))
            .bind(filter.from_ms)
            .bind(filter.to_ms)
            .bind(i64::from(limit));
        self.fetch_all(page).await
    }

    async fn usage_totals(
        &mut self,
        workspace: &WorkspaceId,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<UsageRow>, StoreError> {
        const TOTALS: &str = include_str!("sql/journal_entries/usage_totals.sql");
        self.fetch_all(statement(TOTALS).bind(workspace.as_str()).bind(from_ms).bind(to_ms)).await
    }

    async fn closed_overflow_period(
        &mut self,
        workspace: &WorkspaceId,
        period: &str,
    ) -> Result<Option<(i64, i64)>, StoreError> {
        const CLOSED: &str = include_str!("sql/overflow_periods/closed.sql");
        self.fetch_optional(statement(CLOSED).bind(workspace.as_str()).bind(period)).await
    }

    async fn charges(&mut self, keys: &[(Tenant, ChargeKey)], lock: Lock) -> Result<Vec<Charge>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        SqlTx::charges(self, keys, lock).await
    }

    async fn update_charges(&mut self, charges: &[Charge]) -> Result<(), StoreError> {
        if charges.is_empty() {
            return Ok(());
        }
        SqlTx::update_charges(self, charges).await
    }

    async fn open_holds_of(&mut self, scope: &Tenant, account: &AccountId) -> Result<OpenHolds, StoreError> {
        const OPEN: &str = include_str!("sql/charges/open_holds_of_member.sql");
        let open = statement(OPEN).bind(scope.id()).bind(scope_kind(scope)).bind(account.as_str());
        let (count, held): (i64, i64) = self.fetch_one(open).await?;
        Ok(OpenHolds { count: count_of("open holds", count)?, held: credits_of("what open holds hold", held)? })
    }

    async fn open_hold_counts(&mut self, holders: &[(Tenant, AccountId)]) -> Result<Vec<u32>, StoreError> {
        if holders.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self.open_hold_count_rows(holders).await?;
        if rows.len() != holders.len() {
            return Err(StoreError::Corrupt(format!("{} open-hold counts for {} holders", rows.len(), holders.len())));
        }
        rows.into_iter().map(|(count,)| count_of("open holds", count)).collect()
    }

    async fn open_holds_per_member(&mut self, workspace: &WorkspaceId) -> Result<Vec<(AccountId, u32)>, StoreError> {
        const PER_MEMBER: &str = include_str!("sql/charges/open_holds_per_member.sql");
        let rows: Vec<(String, i64)> = self.fetch_all(statement(PER_MEMBER).bind(workspace.as_str())).await?;
        rows.into_iter()
            .map(|(account, count)| {
                let account = AccountId::parse(account).map_err(|e| StoreError::Corrupt(format!("holder id: {e}")))?;
                Ok((account, count_of("open holds", count)?))
            })
            .collect()
    }

    async fn open_holds(
        &mut self,
        scope: &Tenant,
        account: Option<&AccountId>,
        after: Option<&HoldCursor>,
        limit: u32,
    ) -> Result<Vec<Charge>, StoreError> {
        const PAGE: &str = include_str!("sql/charges/open_holds.sql");
        let page = statement(PAGE)
            .bind(scope.id())
            .bind(scope_kind(scope))
            .bind(account.map_or("", AccountId::as_str))
            .bind(after.map_or("", |cursor| cursor.account_id.as_str()))
            .bind(after.map_or(i64::MIN, |cursor| cursor.created_at_ms))
            .bind(after.map_or("", |cursor| cursor.key.as_str()))
            .bind(i64::from(limit));
        let rows: Vec<ChargeRecord> = self.fetch_all(page).await?;
        rows.into_iter().map(Charge::try_from).collect()
    }

    async fn expired_holds(&mut self, now_ms: i64, limit: u32) -> Result<Vec<(Tenant, ChargeKey)>, StoreError> {
        const EXPIRED: &str = include_str!("sql/charges/expired_holds.sql");
        let rows: Vec<(String, String, String)> =
            self.fetch_all(statement(EXPIRED).bind(now_ms).bind(i64::from(limit))).await?;
        rows.into_iter()
            .map(|(scope_id, kind, key)| {
                let scope = charge_tenant(&kind, scope_id.clone())?;
                let key = ChargeKey::parse(key.clone())
                    .map_err(|e| StoreError::Corrupt(format!("expired hold {scope_id}/{key}: {e}")))?;
                Ok((scope, key))
            })
            .collect()
    }

    async fn prune_idempotency(&mut self, before_ms: i64, limit: u32) -> Result<u64, StoreError> {
        const PRUNE: &str = include_str!("sql/idempotency_records/prune.sql");
        self.execute(statement(PRUNE).bind(before_ms).bind(i64::from(limit))).await
    }

    async fn lock_stream_position(&mut self) -> Result<i64, StoreError> {
        const SELECT: &str = include_str!("sql/notification_stream/select.sql");
        const LOCK: &str = include_str!("sql/notification_stream/lock.postgres.sql");
        let (last,): (i64,) = self.fetch_one(statement(read::<T>(Lock::Update, SELECT, LOCK))).await?;
        Ok(last)
    }

    async fn assign_positions(&mut self, last: i64) -> Result<u64, StoreError> {
        const ASSIGN: &str = include_str!("sql/notifications/assign_positions.sql");
        self.execute(statement(ASSIGN).bind(last)).await
    }

    async fn advance_stream(&mut self, published: u64) -> Result<(), StoreError> {
        const ADVANCE: &str = include_str!("sql/notification_stream/advance.sql");
        let published = i64::try_from(published).map_err(|_| StoreError::Corrupt("published count".into()))?;
        self.execute(statement(ADVANCE).bind(published)).await?;
        self.signal(Signal::Published).await
    }

    async fn notifications_after(
        &mut self,
        position: i64,
        filter: &NotificationFilter,
        limit: u32,
    ) -> Result<Vec<PublishedNotification>, StoreError> {
        const AFTER: &str = include_str!("sql/notifications/after.sql");
        let kinds = if filter.kinds.is_empty() { String::new() } else { format!(",{},", filter.kinds.join(",")) };
        let after = statement(AFTER)
            .bind(position)
            .bind(filter.account_id.as_str())
            .bind(filter.workspace_id.as_str())
            .bind(kinds)
            .bind(i64::from(limit));
        let rows: Vec<NotificationRecord> = self.fetch_all(after).await?;
        rows.into_iter().map(PublishedNotification::try_from).collect()
    }

    async fn stream_bounds(&mut self) -> Result<(i64, Option<i64>), StoreError> {
        const BOUNDS: &str = include_str!("sql/notification_stream/bounds.sql");
        self.fetch_one(statement(BOUNDS)).await
    }

    async fn prune_notifications(&mut self, before_ms: i64) -> Result<u64, StoreError> {
        const PRUNE: &str = include_str!("sql/notifications/prune.sql");
        self.execute(statement(PRUNE).bind(before_ms)).await
    }

    async fn append_journal(
        &mut self,
        entries: &[(&IdempotencyKey, &Movement)],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        SqlTx::append_journal(self, entries, now_ms).await
    }

    async fn write_batch(&mut self, rows: &BatchRows<'_>, now_ms: i64) -> Result<BatchWritten, StoreError> {
        SqlTx::write_batch(self, rows, now_ms).await
    }

    async fn commit(self) -> Result<(), StoreError> {
        SqlTx::commit(self).await
    }
}

/// L1 on a transaction that sees one snapshot: every bucket's stored balance beside its journal.
pub(crate) async fn check_ledger<T: SqlTx>(tx: &mut T) -> Result<LedgerCheck, StoreError> {
    const BALANCES: &str = include_str!("sql/verify/balances.sql");
    const MEMBER_USAGE: &str = include_str!("sql/verify/member_usage.sql");
    const OVERFLOW_POOLS: &str = include_str!("sql/verify/overflow_pools.sql");
    const OVERFLOW_TAKES: &str = include_str!("sql/verify/overflow_takes.sql");
    const ENTRIES: &str = include_str!("sql/verify/journal_entries.sql");
    let mut check = LedgerCheck::default();
    let balances: Vec<(String, String, i64, i64)> = tx.fetch_all(statement(BALANCES)).await?;
    for (bucket, owner_id, recorded, journal) in balances {
        check.compare(bucket, owner_id, recorded, journal);
    }
    let usage: Vec<(String, i64, i64, i64, i64)> = tx.fetch_all(statement(MEMBER_USAGE)).await?;
    for (owner_id, monthly_used, top_up_used, monthly_drawn, top_up_drawn) in usage {
        check.compare("member_monthly_used", owner_id.as_str(), monthly_used, monthly_drawn);
        check.compare("member_top_up_used", owner_id, top_up_used, top_up_drawn);
    }
    let pools: Vec<(String, String)> = tx.fetch_all(statement(OVERFLOW_POOLS)).await?;
    let takes: Vec<(String, String)> = tx.fetch_all(statement(OVERFLOW_TAKES)).await?;
    compare_overflow_units(&mut check, &pools, &takes)?;
    let (entries,): (i64,) = tx.fetch_one(statement(ENTRIES)).await?;
    check.entries_checked = entries;
    Ok(check)
}

/// Compares each overflow pool's used units (quota and overage) of its current contract period
/// with what the charges of that period still hold.
fn compare_overflow_units(
    check: &mut LedgerCheck,
    pools: &[(String, String)],
    takes: &[(String, String)],
) -> Result<(), StoreError> {
    let mut held: HashMap<(&str, i64), crate::domain::OverflowUnits> = HashMap::new();
    for (workspace, take) in takes {
        let take: crate::domain::OverflowTake = super::records::json("overflow_take", take)?;
        let units = held.entry((workspace.as_str(), take.cycle)).or_default();
        *units = units.plus(take.units);
    }
    for (workspace, pool) in pools {
        let pool: OverflowPool = super::records::json("overflow_pool", pool)?;
        let units = held.get(&(workspace.as_str(), pool.cycle)).copied().unwrap_or_default();
        for (bucket, recorded, journal) in [
            ("overflow_quota_used_units", pool.quota_used_units, units.quota),
            ("overflow_overage_units", pool.overage_units, units.overage),
        ] {
            check.compare(bucket, workspace.as_str(), recorded, journal);
        }
    }
    Ok(())
}
