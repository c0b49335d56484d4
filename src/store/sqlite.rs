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

use sqlx::Row;

use super::records::{AccountRecord, ChargeRecord, MemberRecord, WorkspaceRecord, scope_kind};
use super::sql::{self, select_account, select_member, select_stream_position, select_workspace};
use super::{Claim, HoldCursor, LedgerCheck, Lock, OpenHolds, Store, StoreError, StoreTx};
use crate::domain::{
    Account, AccountId, Charge, ChargeKey, Credits, DrawBucket, IdempotencyKey, Member, Movement, Notification, Tenant,
    Workspace, WorkspaceId,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("src/store/migrations/sqlite");

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
            .busy_timeout(BUSY_TIMEOUT);
        let pool =
            SqlitePoolOptions::new().max_connections(1).acquire_timeout(acquire_timeout).connect_lazy_with(options);
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
        let applied = sqlx::query_scalar(super::sql::APPLIED_MIGRATIONS).fetch_all(&self.pool).await;
        Ok(super::pending_of(&MIGRATOR, &super::applied(applied)?))
    }

    async fn gauges(&self) -> Result<super::StoreGauges, StoreError> {
        let read = sqlx::query_as(super::sql::GAUGES).fetch_one(&self.pool).await?;
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
        let mut tx = self.pool.begin().await?;
        let check = super::common::check_ledger!(tx);
        tx.commit().await?;
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
}

/// A SQLite transaction. The single connection means it is the only writer, so reads need no
/// locking clause.
pub struct SqliteTx {
    tx: sqlx::Transaction<'static, Sqlite>,
}

impl SqliteTx {
    /// One process owns the file: its publisher is woken in-process by the ledger.
    async fn wake_publishers(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// A list parameter: SQLite has no arrays, so lists travel as a JSON array read by `json_each`.
fn json_list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    Value::Array(items.into_iter().map(text).collect()).to_string()
}

/// Rows parameter: SQLite has no arrays of rows either, so a batch's rows travel as one JSON array
/// of arrays, one statement for the whole batch instead of one per row (the statement count, not
/// the rows, is what an embedded write costs).
fn json_rows(rows: impl IntoIterator<Item = Vec<Value>>) -> String {
    Value::Array(rows.into_iter().map(Value::Array).collect()).to_string()
}

/// A string cell of a JSON row.
fn text(value: &str) -> Value {
    Value::String(value.to_owned())
}

/// An optional string cell of a JSON row.
fn maybe_text(value: Option<&str>) -> Value {
    value.map_or(Value::Null, text)
}

/// A charge as a JSON row, in the column order of `INSERT_CHARGES`.
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

const INSERT_IDEMPOTENCY_RECORDS: &str = "INSERT INTO idempotency_records \
     (scope_id, scope_kind, idempotency_key, request, response, created_at_ms) \
     SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, $2 FROM json_each($1) WHERE true ORDER BY key \
     ON CONFLICT DO NOTHING RETURNING idempotency_key";
const UPDATE_MEMBERS: &str = "UPDATE members SET role = u.value ->> 2, monthly_allowance_credits = u.value ->> 3, \
     monthly_used_credits = u.value ->> 4, top_up_allowance_credits = u.value ->> 5, top_up_used_credits = u.value ->> 6 \
     FROM json_each($1) AS u WHERE workspace_id = u.value ->> 0 AND account_id = u.value ->> 1";
const INSERT_CHARGES: &str = "INSERT INTO charges (scope_id, scope_kind, charge_key, account_id, state, \
     monthly_credits, top_up_credits, refunded_monthly_credits, refunded_top_up_credits, forfeited_credits, cycle, \
     created_at_ms, expires_at_ms, overflow_credits, refunded_overflow_credits, overflow_take, membership) \
     SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6, value ->> 7, \
     value ->> 8, value ->> 9, value ->> 10, value ->> 11, value ->> 12, value ->> 13, value ->> 14, value ->> 15, \
     value ->> 16 FROM json_each($1) WHERE true ORDER BY key \
     ON CONFLICT (scope_id, scope_kind, charge_key) DO NOTHING RETURNING charge_key";
/// Reads the rows of [`charge_row`], like `INSERT_CHARGES`.
const UPDATE_CHARGES: &str = "UPDATE charges SET state = u.value ->> 4, monthly_credits = u.value ->> 5, \
     top_up_credits = u.value ->> 6, refunded_monthly_credits = u.value ->> 7, refunded_top_up_credits = u.value ->> 8, \
     forfeited_credits = u.value ->> 9, expires_at_ms = u.value ->> 12, overflow_credits = u.value ->> 13, \
     refunded_overflow_credits = u.value ->> 14, overflow_take = u.value ->> 15 \
     FROM json_each($1) AS u \
     WHERE scope_id = u.value ->> 0 AND scope_kind = u.value ->> 1 AND charge_key = u.value ->> 2";
const INSERT_JOURNAL_ENTRIES: &str = "INSERT INTO journal_entries (ledger_scope_id, from_bucket, from_owner_id, \
     to_bucket, to_owner_id, amount_credits, cause, reference, member_account_id, created_at_ms, part, \
     overflow_units, overage_units) \
     SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6, value ->> 7, \
     value ->> 8, $2, value ->> 9, value ->> 10, value ->> 11 FROM json_each($1) ORDER BY key";

impl StoreTx for SqliteTx {
    super::common::shared_tx_methods!(
        lock_account: select_account!(),
        lock_workspace: select_workspace!(),
        lock_member: select_member!(),
    );

    async fn lock_stream_position(&mut self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(select_stream_position!()).fetch_one(&mut *self.tx).await?)
    }

    async fn advance_stream(&mut self, published: u64) -> Result<(), StoreError> {
        let published = i64::try_from(published).map_err(|_| StoreError::Corrupt("published count".into()))?;
        sqlx::query(sql::ADVANCE_STREAM).bind(published).execute(&mut *self.tx).await?;
        Ok(())
    }

    async fn idempotency_records(
        &mut self,
        scope: &Tenant,
        keys: &[IdempotencyKey],
    ) -> Result<Vec<(String, Value, Value)>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let (scope_id, kind) = super::idempotency_parts(scope);
        let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(
            "SELECT idempotency_key, request, response FROM idempotency_records \
             WHERE scope_id = $1 AND scope_kind = $2 AND idempotency_key IN (SELECT value FROM json_each($3))",
        )
        .bind(scope_id)
        .bind(kind)
        .bind(json_list(keys.iter().map(IdempotencyKey::as_str)))
        .fetch_all(&mut *self.tx)
        .await?;
        rows.into_iter()
            .map(|(key, request, response)| {
                let (request, response) = super::common::parse_record(&key, &request, response.as_deref())?;
                Ok((key, request, response))
            })
            .collect()
    }

    async fn insert_idempotency_records(
        &mut self,
        records: &[(Tenant, IdempotencyKey, Value, Value)],
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        if records.is_empty() {
            return Ok(0);
        }
        let rows = records.iter().map(|(scope, key, request, response)| {
            let (scope_id, kind) = super::idempotency_parts(scope);
            vec![
                text(scope_id),
                text(kind),
                text(key.as_str()),
                Value::String(request.to_string()),
                Value::String(response.to_string()),
            ]
        });
        let inserted: Vec<String> = sqlx::query_scalar(INSERT_IDEMPOTENCY_RECORDS)
            .bind(json_rows(rows))
            .bind(now_ms)
            .fetch_all(&mut *self.tx)
            .await?;
        Ok(inserted.len() as u64)
    }

    async fn reset_monthly_usage(&mut self, workspaces: &[WorkspaceId]) -> Result<(), StoreError> {
        if workspaces.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "UPDATE members SET monthly_used_credits = 0 \
             WHERE workspace_id IN (SELECT value FROM json_each($1)) AND monthly_used_credits <> 0",
        )
        .bind(json_list(workspaces.iter().map(WorkspaceId::as_str)))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn lock_members(&mut self, members: &[(WorkspaceId, AccountId)]) -> Result<Vec<Member>, StoreError> {
        // The whole database is locked by the transaction: reading is locking.
        let mut members: Vec<&(WorkspaceId, AccountId)> = members.iter().collect();
        members.sort();
        let mut locked = Vec::new();
        for chunk in members.chunk_by(|a, b| a.0 == b.0) {
            let rows: Vec<MemberRecord> = sqlx::query_as(
                "SELECT workspace_id, account_id, role, monthly_allowance_credits, monthly_used_credits, \
                 top_up_allowance_credits, top_up_used_credits, created_at_ms, membership \
                 FROM members WHERE workspace_id = $1 AND account_id IN (SELECT value FROM json_each($2)) \
                 ORDER BY account_id",
            )
            .bind(chunk[0].0.as_str())
            .bind(json_list(chunk.iter().map(|(_, account)| account.as_str())))
            .fetch_all(&mut *self.tx)
            .await?;
            for row in rows {
                locked.push(Member::try_from(row)?);
            }
        }
        Ok(locked)
    }

    async fn lock_workspaces(&mut self, ids: &[WorkspaceId]) -> Result<Vec<Workspace>, StoreError> {
        let mut ids: Vec<&WorkspaceId> = ids.iter().collect();
        ids.sort();
        let mut locked = Vec::new();
        for id in ids {
            locked.extend(self.workspace(id, Lock::Update).await?);
        }
        Ok(locked)
    }

    async fn update_workspaces(&mut self, workspaces: &[Workspace]) -> Result<(), StoreError> {
        for workspace in workspaces {
            self.update_workspace(workspace).await?;
        }
        Ok(())
    }

    async fn pool_access(
        &mut self,
        workspace: &WorkspaceId,
        accounts: &[AccountId],
    ) -> Result<std::collections::HashMap<AccountId, crate::domain::PoolAccess>, StoreError> {
        if accounts.is_empty() {
            return Ok(Default::default());
        }
        let rows: Vec<(String, bool)> = sqlx::query_as(sql::pool_access_of!("IN (SELECT value FROM json_each($2))"))
            .bind(workspace.as_str())
            .bind(json_list(accounts.iter().map(AccountId::as_str)))
            .fetch_all(&mut *self.tx)
            .await?;
        super::records::pool_access(rows)
    }

    async fn update_members(&mut self, members: &[Member]) -> Result<(), StoreError> {
        if members.is_empty() {
            return Ok(());
        }
        let rows = members.iter().map(|member| {
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
        });
        sqlx::query(UPDATE_MEMBERS).bind(json_rows(rows)).execute(&mut *self.tx).await?;
        Ok(())
    }

    async fn charges(&mut self, scope: &Tenant, keys: &[ChargeKey], _lock: Lock) -> Result<Vec<Charge>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<ChargeRecord> = sqlx::query_as(
            "SELECT scope_id, scope_kind, charge_key, account_id, state, monthly_credits, top_up_credits, \
             refunded_monthly_credits, refunded_top_up_credits, forfeited_credits, cycle, created_at_ms, expires_at_ms, \
             overflow_credits, refunded_overflow_credits, overflow_take, membership \
             FROM charges WHERE scope_id = $1 AND scope_kind = $2 AND charge_key IN (SELECT value FROM json_each($3)) \
             ORDER BY charge_key",
        )
        .bind(scope.id())
        .bind(scope_kind(scope))
        .bind(json_list(keys.iter().map(ChargeKey::as_str)))
        .fetch_all(&mut *self.tx)
        .await?;
        rows.into_iter().map(Charge::try_from).collect()
    }

    async fn insert_charges(&mut self, charges: &[Charge]) -> Result<u64, StoreError> {
        if charges.is_empty() {
            return Ok(0);
        }
        let rows = charges.iter().map(charge_row);
        let inserted: Vec<String> =
            sqlx::query_scalar(INSERT_CHARGES).bind(json_rows(rows)).fetch_all(&mut *self.tx).await?;
        Ok(inserted.len() as u64)
    }

    async fn update_charges(&mut self, charges: &[Charge]) -> Result<(), StoreError> {
        if charges.is_empty() {
            return Ok(());
        }
        let rows = charges.iter().map(charge_row);
        sqlx::query(UPDATE_CHARGES).bind(json_rows(rows)).execute(&mut *self.tx).await?;
        Ok(())
    }

    async fn append_journal(
        &mut self,
        entries: &[(&IdempotencyKey, &Movement)],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let rows = entries.iter().map(|(reference, movement)| {
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
        });
        sqlx::query(INSERT_JOURNAL_ENTRIES).bind(json_rows(rows)).bind(now_ms).execute(&mut *self.tx).await?;
        Ok(())
    }
}
