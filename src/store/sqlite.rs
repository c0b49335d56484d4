//! The embedded store: one SQLite file, for laptops, demos, CI jobs and single-node deployments.
//!
//! Writes are serialised by a single connection: every transaction waits its turn in the pool,
//! in this process, so SQLite's busy errors cannot reach a caller. The file is in WAL mode with
//! `synchronous = FULL`, so a committed transaction survives a crash. One process owns the file:
//! several replicas need Postgres.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool};

use super::records::{ChargeRecord, MemberRecord, WorkspaceRecord, scope_kind};
use super::sql_tx::{Decoded, RecordRow, Signal, SqlTx, Statement};
use super::{BatchRows, BatchWritten, LedgerCheck, Lock, Store, StoreError};
use crate::domain::{
    AccountId, Charge, ChargeKey, DrawBucket, IdempotencyKey, Member, Movement, Tenant, Workspace, WorkspaceId,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("src/store/migrations/sqlite");

// The parts of a batch's write, each reading its rows from a JSON list `$1` (the time, where
// stored, is `$2`); members, charges and the journal also have writes of their own below.
const UPDATE_WORKSPACES: &str = include_str!("sql/workspaces/update_many.sqlite.sql");
const UPDATE_MEMBERS: &str = include_str!("sql/members/update_many.sqlite.sql");
const UPDATE_CHARGES: &str = include_str!("sql/charges/update_many.sqlite.sql");
const INSERT_CHARGES: &str = include_str!("sql/charges/insert_many.sqlite.sql");
const INSERT_JOURNAL_ENTRIES: &str = include_str!("sql/journal_entries/insert_many.sqlite.sql");
const INSERT_IDEMPOTENCY_RECORDS: &str = include_str!("sql/idempotency_records/insert_many.sqlite.sql");

/// A hot-path batch's writes as one command to sqlx's worker thread, which runs its statements
/// one after another: the per-table writes above with their rows renumbered `$1` to `$6` and the
/// time `$7` (a part without rows reads an empty list). One command instead of six saves five
/// hand-overs to the worker thread and back.
static WRITE_BATCH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let parts = [
        UPDATE_WORKSPACES,
        UPDATE_MEMBERS,
        UPDATE_CHARGES,
        INSERT_CHARGES,
        INSERT_JOURNAL_ENTRIES,
        INSERT_IDEMPOTENCY_RECORDS,
    ];
    let time = parts.len() + 1;
    let statements: Vec<String> = parts
        .iter()
        .enumerate()
        .map(|(i, statement)| super::renumber_parameters(statement, |n| if n == 1 { i + 1 } else { time }))
        .collect();
    statements.join(";\n")
});

/// WAL pages after which a commit copies them back into the file (SQLite's default is 1,000).
/// The checkpoint runs inside the committing batch, and the pages every batch rewrites (the
/// workspace, its members, the tails of the indexes) are copied once per checkpoint however
/// often they were written: fewer, larger checkpoints copy less (bench, hot at 64 clients, runs
/// in pairs: 6,234–7,956/s at 1,000, 7,588–9,792/s at 4,000). The WAL file grows to ~16 MiB.
const WAL_AUTOCHECKPOINT_PAGES: &str = "4000";

/// How long a statement waits for the file's lock (another process holding it) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// A SQLite file behind a single connection.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` (`sqlite:PATH` or `sqlite://PATH`).
    pub fn connect_lazy(url: &str, acquire_timeout: Duration) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(StoreError::Database)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            // The connection is in this process: there is no socket a ping could find closed, and
            // the ping before every transaction cost the hot path ~1 ms a batch.
            .test_before_acquire(false)
            .acquire_timeout(acquire_timeout)
            .connect_lazy_with(options);
        Ok(SqliteStore { pool })
    }

    /// The `sqlite:` URL of a file path, creating its directory.
    pub fn url_for_path(path: &Path) -> Result<String, std::io::Error> {
        if let Some(directory) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(directory)?;
        }
        Ok(format!("sqlite://{}", path.display()))
    }

    /// Locks the database file for this process (released when the returned file is dropped),
    /// or says which file another process already serves. An in-memory database needs none.
    pub fn lock_file(&self) -> anyhow::Result<Option<std::fs::File>> {
        let options = self.pool.connect_options();
        let path = options.get_filename();
        if path.as_os_str().is_empty() || path == Path::new(":memory:") {
            return Ok(None);
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| anyhow::anyhow!(e).context(format!("cannot open the SQLite file {}", path.display())))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(file)),
            Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
                "the SQLite file {} is in use by another creditpool process: one process owns an embedded \
                 database (run several replicas on Postgres)",
                path.display()
            ),
            Err(std::fs::TryLockError::Error(error)) => {
                Err(anyhow::anyhow!(error).context(format!("cannot lock the SQLite file {}", path.display())))
            }
        }
    }

    /// The pool, for the benchmark's direct-SQL baseline.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    // The single connection already makes the transaction the only writer: no locking clause.
}

impl Store for SqliteStore {
    type Tx = SqliteTx;

    async fn begin(&self) -> Result<SqliteTx, StoreError> {
        let _waiting = crate::metrics::waiting_for_connection();
        Ok(SqliteTx { tx: self.pool.begin().await? })
    }

    async fn pending_migrations(&self) -> Result<Vec<i64>, StoreError> {
        let applied = sqlx::query_scalar(super::APPLIED_MIGRATIONS).fetch_all(&self.pool).await;
        Ok(super::pending_of(&MIGRATOR, &super::applied(applied)?))
    }

    async fn gauges(&self) -> Result<super::StoreGauges, StoreError> {
        let read = sqlx::query_as(super::GAUGES).fetch_one(&self.pool).await?;
        Ok(super::gauges_of(&self.pool, read))
    }

    async fn connect_once(&self) -> Result<(), StoreError> {
        super::connect_once(&self.pool).await
    }

    async fn ping(&self) -> Result<Option<i64>, StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(None)
    }

    async fn verify_ledger(&self) -> Result<LedgerCheck, StoreError> {
        // A read transaction in WAL mode sees one snapshot throughout.
        let mut tx = self.begin().await?;
        let check = super::sql_tx::check_ledger(&mut tx).await?;
        SqlTx::commit(tx).await?;
        Ok(check)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await.map_err(|error| match error {
            sqlx::migrate::MigrateError::Execute(inner) => StoreError::from(inner),
            other => StoreError::Migrate(other),
        })
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    async fn relay_wake_ups(&self, _wake_ups: super::WakeUps, _shutdown: tokio_util::sync::CancellationToken) {}

    /// At most one: the pool has one connection and SQLite one writer. With four committers,
    /// spread at 64 clients made batches of 13 calls each waiting ~20 ms to begin.
    fn batches_in_flight(&self, configured: usize) -> usize {
        configured.min(1)
    }

    /// A thread of its own for the committers, shared by every SQLite store of the process. The
    /// connection runs on sqlx's worker thread, so a batch's statements need no runtime's I/O
    /// driver; on the request runtime each of them waited behind the requests' tasks before its
    /// batch could go on (bench, hot at 64 clients: 4,747/s there, 6,643/s here; spread at 1
    /// client: p50 1.30 ms there, 0.74 ms here, direct SQL 0.81 ms). Postgres keeps its
    /// committers on the request runtime, whose I/O driver serves its connections (there, a
    /// thread of their own made batches slower).
    fn committer_runtime(&self) -> Option<tokio::runtime::Handle> {
        static COMMITTERS: std::sync::OnceLock<Option<tokio::runtime::Handle>> = std::sync::OnceLock::new();
        COMMITTERS
            .get_or_init(|| {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
                let runtime = match runtime {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        tracing::warn!(%error, "no committer thread; committing on the request runtime");
                        return None;
                    }
                };
                let handle = runtime.handle().clone();
                let thread = std::thread::Builder::new()
                    .name("creditpool-committer".into())
                    .spawn(move || runtime.block_on(std::future::pending::<()>()));
                match thread {
                    Ok(_) => Some(handle),
                    Err(error) => {
                        tracing::warn!(%error, "no committer thread; committing on the request runtime");
                        None
                    }
                }
            })
            .clone()
    }
}

/// A SQLite transaction. The single connection means it is the only writer, so reads need no
/// locking clause.
pub struct SqliteTx {
    tx: sqlx::Transaction<'static, Sqlite>,
}

/// A list parameter: SQLite has no arrays, so lists travel as a JSON array read by `json_each`.
fn json_list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    Value::Array(items.into_iter().map(text).collect()).to_string()
}

/// Rows parameter: SQLite has no arrays of rows either, so a batch's rows travel as one JSON array
/// of arrays, one statement for the whole batch instead of one per row (the statement count, not
/// the rows, is what an embedded write costs). The statements read it with `jsonb_each`, whose
/// rows stay binary JSON: `json_each` hands each row over as text, parsed again for every cell.
fn json_rows(rows: impl IntoIterator<Item = Vec<Value>>) -> String {
    Value::Array(rows.into_iter().map(Value::Array).collect()).to_string()
}

/// (scope id, scope kind, key) lookups as JSON rows, the form every lookup of one scope or
/// several reads (Postgres binds the same triples as three arrays).
fn scoped_rows<'a>(keys: impl Iterator<Item = (&'a str, &'a str, &'a str)>) -> String {
    json_rows(keys.map(|(scope_id, kind, key)| vec![text(scope_id), text(kind), text(key)]))
}

/// A string cell of a JSON row.
fn text(value: &str) -> Value {
    Value::String(value.to_owned())
}

/// An optional string cell of a JSON row.
fn maybe_text(value: Option<&str>) -> Value {
    value.map_or(Value::Null, text)
}

/// A workspace as a JSON row, in the order `sql/workspaces/update_many.sqlite.sql` reads.
fn workspace_row(workspace: &Workspace) -> Vec<Value> {
    let r = WorkspaceRecord::from(workspace);
    vec![
        Value::String(r.workspace_id),
        r.pool_size_credits.into(),
        r.funded_pool_size_credits.into(),
        i64::from(r.monthly_pool_funded).into(),
        r.monthly_pool_credits.into(),
        r.top_up_pool_credits.into(),
        r.low_monthly_pool_credits.into(),
        r.low_top_up_pool_credits.into(),
        r.low_member_remaining_percent.into(),
        r.monthly_cycle.into(),
        r.overflow_pool.map_or(Value::Null, Value::String),
        r.overflow_lent_credits.into(),
        r.low_overflow_units.into(),
        r.memberships.into(),
    ]
}

/// A member's balances as a JSON row, in the order `sql/members/update_many.sqlite.sql` reads.
fn member_row(member: &Member) -> Vec<Value> {
    let r = MemberRecord::from(member);
    vec![
        Value::String(r.workspace_id),
        Value::String(r.account_id),
        Value::String(r.role),
        r.monthly_allowance_credits.into(),
        r.monthly_used_credits.into(),
        r.top_up_allowance_credits.into(),
        r.top_up_used_credits.into(),
    ]
}

/// A journal entry as a JSON row, in the order `sql/journal_entries/insert_many.sqlite.sql` reads.
fn journal_row((reference, movement): &(&IdempotencyKey, &Movement)) -> Vec<Value> {
    vec![
        text(movement.ledger_scope_id()),
        text(movement.from.kind()),
        maybe_text(movement.from.owner_id()),
        text(movement.to.kind()),
        maybe_text(movement.to.owner_id()),
        movement.amount.get().into(),
        text(movement.cause.as_str()),
        text(reference.as_str()),
        maybe_text(movement.member.as_ref().map(AccountId::as_str)),
        maybe_text(movement.part.map(DrawBucket::as_str)),
        movement.units.quota.into(),
        movement.units.overage.into(),
    ]
}

/// An answered request as a JSON row, in the order `sql/idempotency_records/insert_many.sqlite.sql`
/// reads.
fn record_row((scope, key, request, response): &(Tenant, IdempotencyKey, Value, Value)) -> Vec<Value> {
    let (scope_id, kind) = super::idempotency_parts(scope);
    vec![
        text(scope_id),
        text(kind),
        text(key.as_str()),
        Value::String(request.to_string()),
        Value::String(response.to_string()),
    ]
}

/// A charge as a JSON row, in the column order of `sql/charges/insert_many.sqlite.sql`.
fn charge_row(charge: &Charge) -> Vec<Value> {
    let r = ChargeRecord::from(charge);
    vec![
        Value::String(r.scope_id),
        Value::String(r.scope_kind),
        Value::String(r.charge_key),
        Value::String(r.account_id),
        Value::String(r.state),
        r.monthly_credits.into(),
        r.top_up_credits.into(),
        r.refunded_monthly_credits.into(),
        r.refunded_top_up_credits.into(),
        r.forfeited_credits.into(),
        r.cycle.into(),
        r.created_at_ms.into(),
        r.expires_at_ms.into(),
        r.overflow_credits.into(),
        r.refunded_overflow_credits.into(),
        r.overflow_take.into(),
        r.membership.into(),
    ]
}

impl SqlTx for SqliteTx {
    const ROW_LOCKS: bool = false;

    async fn execute(&mut self, statement: Statement<'_>) -> Result<u64, StoreError> {
        let arguments = statement.arguments::<Sqlite>()?;
        Ok(sqlx::query_with(statement.text, arguments).execute(&mut *self.tx).await?.rows_affected())
    }

    async fn fetch_all<R: Decoded>(&mut self, statement: Statement<'_>) -> Result<Vec<R>, StoreError> {
        let arguments = statement.arguments::<Sqlite>()?;
        Ok(sqlx::query_as_with(statement.text, arguments).fetch_all(&mut *self.tx).await?)
    }

    async fn fetch_optional<R: Decoded>(&mut self, statement: Statement<'_>) -> Result<Option<R>, StoreError> {
        let arguments = statement.arguments::<Sqlite>()?;
        Ok(sqlx::query_as_with(statement.text, arguments).fetch_optional(&mut *self.tx).await?)
    }

    /// One process owns the file: the ledger wakes its publisher and subscribers in-process.
    async fn signal(&mut self, _signal: Signal) -> Result<(), StoreError> {
        Ok(())
    }

    async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await?;
        Ok(())
    }

    async fn idempotency_rows(&mut self, keys: &[(Tenant, IdempotencyKey)]) -> Result<Vec<RecordRow>, StoreError> {
        const SELECT: &str = include_str!("sql/idempotency_records/select_many.sqlite.sql");
        let rows = scoped_rows(keys.iter().map(|(scope, key)| {
            let (scope_id, kind) = super::idempotency_parts(scope);
            (scope_id, kind, key.as_str())
        }));
        Ok(sqlx::query_as(SELECT).bind(rows).fetch_all(&mut *self.tx).await?)
    }

    async fn reset_monthly_usage(&mut self, workspaces: &[WorkspaceId]) -> Result<(), StoreError> {
        const RESET: &str = include_str!("sql/members/reset_monthly_usage.sqlite.sql");
        let ids = json_list(workspaces.iter().map(WorkspaceId::as_str));
        sqlx::query(RESET).bind(ids).execute(&mut *self.tx).await?;
        Ok(())
    }

    async fn lock_members(&mut self, members: &[(WorkspaceId, AccountId)]) -> Result<Vec<Member>, StoreError> {
        // The whole database is locked by the transaction: reading is locking.
        const LOCK: &str = include_str!("sql/members/lock_many.sqlite.sql");
        let pairs = json_rows(
            members.iter().map(|(workspace, account)| vec![text(workspace.as_str()), text(account.as_str())]),
        );
        let rows: Vec<MemberRecord> = sqlx::query_as(LOCK).bind(pairs).fetch_all(&mut *self.tx).await?;
        rows.into_iter().map(Member::try_from).collect()
    }

    async fn lock_workspaces(&mut self, ids: &[WorkspaceId]) -> Result<Vec<Workspace>, StoreError> {
        const LOCK: &str = include_str!("sql/workspaces/lock_many.sqlite.sql");
        let ids = json_list(ids.iter().map(WorkspaceId::as_str));
        let rows: Vec<WorkspaceRecord> = sqlx::query_as(LOCK).bind(ids).fetch_all(&mut *self.tx).await?;
        rows.into_iter().map(Workspace::try_from).collect()
    }

    async fn pool_access_grants(
        &mut self,
        workspace: &WorkspaceId,
        accounts: &[AccountId],
    ) -> Result<Vec<(String, bool)>, StoreError> {
        const GRANTS: &str = include_str!("sql/profile_members/pool_access.sqlite.sql");
        Ok(sqlx::query_as(GRANTS)
            .bind(workspace.as_str())
            .bind(json_list(accounts.iter().map(AccountId::as_str)))
            .fetch_all(&mut *self.tx)
            .await?)
    }

    async fn update_members(&mut self, members: &[Member]) -> Result<(), StoreError> {
        let rows = json_rows(members.iter().map(member_row));
        sqlx::query(UPDATE_MEMBERS).bind(rows).execute(&mut *self.tx).await?;
        Ok(())
    }

    /// Rows are read in key order; the transaction holds the whole file, so `_lock` needs nothing.
    async fn charges(&mut self, keys: &[(Tenant, ChargeKey)], _lock: Lock) -> Result<Vec<Charge>, StoreError> {
        const SELECT: &str = include_str!("sql/charges/select_many.sqlite.sql");
        let rows = scoped_rows(keys.iter().map(|(scope, key)| (scope.id(), scope_kind(scope), key.as_str())));
        let rows: Vec<ChargeRecord> = sqlx::query_as(SELECT).bind(rows).fetch_all(&mut *self.tx).await?;
        rows.into_iter().map(Charge::try_from).collect()
    }

    async fn open_hold_count_rows(&mut self, holders: &[(Tenant, AccountId)]) -> Result<Vec<(i64,)>, StoreError> {
        const COUNTS: &str = include_str!("sql/charges/open_holds_of_members.sqlite.sql");
        let rows =
            scoped_rows(holders.iter().map(|(scope, account)| (scope.id(), scope_kind(scope), account.as_str())));
        Ok(sqlx::query_as(COUNTS).bind(rows).fetch_all(&mut *self.tx).await?)
    }

    async fn update_charges(&mut self, charges: &[Charge]) -> Result<(), StoreError> {
        let rows = json_rows(charges.iter().map(charge_row));
        sqlx::query(UPDATE_CHARGES).bind(rows).execute(&mut *self.tx).await?;
        Ok(())
    }

    async fn append_journal(
        &mut self,
        entries: &[(&IdempotencyKey, &Movement)],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let rows = json_rows(entries.iter().map(journal_row));
        sqlx::query(INSERT_JOURNAL_ENTRIES).bind(rows).bind(now_ms).execute(&mut *self.tx).await?;
        Ok(())
    }

    /// The whole batch in one command ([`WRITE_BATCH`]). New charges and records are plain
    /// inserts: a key stored meanwhile (the first run of a replay the batch did not look up)
    /// fails the write as [`StoreError::Raced`], and the batch reruns to answer the replay.
    /// Counting the new rows from `RETURNING` instead would send each row across sqlx's worker
    /// channel on its own, a thread wake-up per row.
    async fn write_batch(&mut self, rows: &BatchRows<'_>, now_ms: i64) -> Result<BatchWritten, StoreError> {
        let write = sqlx::query(sqlx::AssertSqlSafe(WRITE_BATCH.as_str()))
            .bind(json_rows(rows.workspaces.iter().map(workspace_row)))
            .bind(json_rows(rows.members.iter().map(member_row)))
            .bind(json_rows(rows.updated_charges.iter().map(charge_row)))
            .bind(json_rows(rows.new_charges.iter().map(charge_row)))
            .bind(json_rows(rows.journal.iter().map(journal_row)))
            .bind(json_rows(rows.records.iter().map(record_row)))
            .bind(now_ms);
        match write.execute(&mut *self.tx).await {
            Err(sqlx::Error::Database(error)) if error.kind() == sqlx::error::ErrorKind::UniqueViolation => {
                return Err(StoreError::Raced("a charge or idempotency key of the batch was taken meanwhile"));
            }
            written => written?,
        };
        Ok(BatchWritten { charges: rows.new_charges.len() as u64, records: rows.records.len() as u64 })
    }
}

#[cfg(test)]
mod tests {
    use super::WRITE_BATCH;

    #[test]
    fn the_batch_write_gives_each_part_its_rows_and_all_the_time() {
        let statements: Vec<&str> = WRITE_BATCH.split(";\n").collect();
        assert_eq!(statements.len(), 6);
        for (i, statement) in statements.iter().enumerate() {
            let rows = format!("jsonb_each(${})", i + 1);
            assert!(statement.contains(&rows), "part {i} reads {rows}: {statement}");
        }
        // Only the journal and the records store the time.
        assert_eq!(WRITE_BATCH.matches("$7").count(), 2);
        assert!(!WRITE_BATCH.contains("$8"));
    }
}
