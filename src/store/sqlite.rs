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
    Value::Array(items.into_iter().map(|item| Value::String(item.to_owned())).collect()).to_string()
}

const INSERT_IDEMPOTENCY_RECORD: &str = "INSERT INTO idempotency_records \
     (scope_id, scope_kind, idempotency_key, request, response, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6) \
     ON CONFLICT DO NOTHING";
const UPDATE_MEMBER: &str = "UPDATE members SET role = $3, monthly_allowance_credits = $4, monthly_used_credits = $5, \
     top_up_allowance_credits = $6, top_up_used_credits = $7 WHERE workspace_id = $1 AND account_id = $2";
const INSERT_CHARGE: &str = "INSERT INTO charges (scope_id, scope_kind, charge_key, account_id, state, \
     monthly_credits, top_up_credits, refunded_monthly_credits, refunded_top_up_credits, forfeited_credits, cycle, \
     created_at_ms, expires_at_ms, overflow_credits, refunded_overflow_credits, overflow_take, membership) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
     ON CONFLICT (scope_id, scope_kind, charge_key) DO NOTHING";
const UPDATE_CHARGE: &str = "UPDATE charges SET state = $4, monthly_credits = $5, top_up_credits = $6, \
     refunded_monthly_credits = $7, refunded_top_up_credits = $8, forfeited_credits = $9, expires_at_ms = $10, \
     overflow_credits = $11, refunded_overflow_credits = $12, overflow_take = $13 \
     WHERE scope_id = $1 AND scope_kind = $2 AND charge_key = $3";
const INSERT_JOURNAL_ENTRY: &str = "INSERT INTO journal_entries (ledger_scope_id, from_bucket, from_owner_id, to_bucket, \
     to_owner_id, amount_credits, cause, reference, member_account_id, created_at_ms, part, overflow_units, \
     overage_units) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";

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
        let mut inserted = 0;
        for (scope, key, request, response) in records {
            let (scope_id, kind) = super::idempotency_parts(scope);
            inserted += sqlx::query(INSERT_IDEMPOTENCY_RECORD)
                .bind(scope_id)
                .bind(kind)
                .bind(key.as_str())
                .bind(request.to_string())
                .bind(response.to_string())
                .bind(now_ms)
                .execute(&mut *self.tx)
                .await?
                .rows_affected();
        }
        Ok(inserted)
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
        for member in members {
            let r = MemberRecord::from(member);
            sqlx::query(UPDATE_MEMBER)
                .bind(r.workspace_id)
                .bind(r.account_id)
                .bind(r.role)
                .bind(r.monthly_allowance_credits)
                .bind(r.monthly_used_credits)
                .bind(r.top_up_allowance_credits)
                .bind(r.top_up_used_credits)
                .execute(&mut *self.tx)
                .await?;
        }
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
        let mut inserted = 0;
        for charge in charges {
            let r = ChargeRecord::from(charge);
            inserted += sqlx::query(INSERT_CHARGE)
                .bind(r.scope_id)
                .bind(r.scope_kind)
                .bind(r.charge_key)
                .bind(r.account_id)
                .bind(r.state)
                .bind(r.monthly_credits)
                .bind(r.top_up_credits)
                .bind(r.refunded_monthly_credits)
                .bind(r.refunded_top_up_credits)
                .bind(r.forfeited_credits)
                .bind(r.cycle)
                .bind(r.created_at_ms)
                .bind(r.expires_at_ms)
                .bind(r.overflow_credits)
                .bind(r.refunded_overflow_credits)
                .bind(r.overflow_take)
                .bind(r.membership)
                .execute(&mut *self.tx)
                .await?
                .rows_affected();
        }
        Ok(inserted)
    }

    async fn update_charges(&mut self, charges: &[Charge]) -> Result<(), StoreError> {
        for charge in charges {
            let r = ChargeRecord::from(charge);
            sqlx::query(UPDATE_CHARGE)
                .bind(r.scope_id)
                .bind(r.scope_kind)
                .bind(r.charge_key)
                .bind(r.state)
                .bind(r.monthly_credits)
                .bind(r.top_up_credits)
                .bind(r.refunded_monthly_credits)
                .bind(r.refunded_top_up_credits)
                .bind(r.forfeited_credits)
                .bind(r.expires_at_ms)
                .bind(r.overflow_credits)
                .bind(r.refunded_overflow_credits)
                .bind(r.overflow_take)
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(())
    }

    async fn append_journal(
        &mut self,
        entries: &[(&IdempotencyKey, &Movement)],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        for (reference, movement) in entries {
            sqlx::query(INSERT_JOURNAL_ENTRY)
                .bind(movement.ledger_scope_id())
                .bind(movement.from.kind())
                .bind(movement.from.owner_id())
                .bind(movement.to.kind())
                .bind(movement.to.owner_id())
                .bind(movement.amount.get())
                .bind(movement.cause.as_str())
                .bind(reference.as_str())
                .bind(movement.member.as_ref().map(AccountId::as_str))
                .bind(now_ms)
                .bind(movement.part.map(DrawBucket::as_str))
                .bind(movement.units.quota)
                .bind(movement.units.overage)
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(())
    }
}
