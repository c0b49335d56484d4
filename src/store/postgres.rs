//! The production store: Postgres with row locks (`SELECT … FOR UPDATE`).

use std::time::Duration;

use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{FromRow, PgPool, Postgres, Row};

use super::records::{ChargeRecord, MemberRecord, WorkspaceRecord, scope_kind};
use super::sql_tx::{Decoded, RecordRow, Signal, SqlTx, Statement};
use super::{LedgerCheck, Lock, Store, StoreError};
use crate::domain::{
    AccountId, Charge, ChargeKey, DrawBucket, IdempotencyKey, Member, Movement, Tenant, Workspace, WorkspaceId,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("src/store/migrations/postgres");

/// How the service connects to its database.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Most connections open at once.
    pub max_connections: u32,
    /// Longest wait for a free connection (or a new one) before a call answers UNAVAILABLE.
    pub acquire_timeout: Duration,
    /// Longest a single statement may run.
    pub statement_timeout: Duration,
    /// Postgres's `plan_cache_mode` (see `Config::postgres_plan_cache_mode`).
    pub plan_cache_mode: &'static str,
    /// A hot-path batch's writes as one statement (see `Config::postgres_one_statement_writes`).
    pub one_statement_writes: bool,
}

/// Postgres behind a connection pool.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    one_statement_writes: bool,
}

/// How long a pooled connection may sit idle before it is pinged again before use.
const PING_IDLE_AFTER: Duration = Duration::from_secs(1);

impl PgStore {
    /// Opens a pool; connections are made on first use, so a database that is down at start
    /// shows as NOT_SERVING rather than a crash.
    pub fn connect_lazy(url: &str, settings: &PoolSettings) -> Result<PgStore, StoreError> {
        let statement_timeout = settings.statement_timeout.as_millis().to_string();
        let options: PgConnectOptions =
            url.parse::<PgConnectOptions>().map_err(StoreError::Database)?.application_name("creditpool").options([
                ("statement_timeout", statement_timeout.as_str()),
                ("plan_cache_mode", settings.plan_cache_mode),
            ]);
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.acquire_timeout)
            // sqlx pings every connection it hands out, a round trip on the hot path. A
            // connection back from a transaction a moment ago was just pinged on its release;
            // only one idle for a while (the server, a proxy or a failover may have closed it)
            // is tested again before use.
            .test_before_acquire(false)
            .before_acquire(|connection, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_IDLE_AFTER {
                        sqlx::Connection::ping(connection).await?;
                    }
                    Ok(true)
                })
            })
            .connect_lazy_with(options);
        Ok(PgStore { pool, one_statement_writes: settings.one_statement_writes })
    }

    /// The pool, for tools that need raw access (the benchmark's direct-SQL baseline).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

impl PgStore {
    /// Relays `NOTIFY`s on the outbox and published channels until the connection fails.
    async fn listen(&self, wake_ups: &super::WakeUps) {
        let mut listener = match sqlx::postgres::PgListener::connect_with(&self.pool).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, "cannot LISTEN for notifications; relying on the fallback interval");
                return;
            }
        };
        if let Err(error) = listener.listen_all([OUTBOX_CHANNEL, PUBLISHED_CHANNEL]).await {
            tracing::warn!(%error, "cannot LISTEN for notifications; relying on the fallback interval");
            return;
        }
        loop {
            match listener.recv().await {
                Ok(notification) if notification.channel() == OUTBOX_CHANNEL => wake_ups.outbox.notify_one(),
                Ok(_) => wake_ups.published.send_modify(|generation| *generation += 1),
                Err(error) => {
                    tracing::warn!(%error, "LISTEN connection lost");
                    return;
                }
            }
        }
    }
}

impl Store for PgStore {
    type Tx = PgTx;

    /// Applies the embedded migrations. sqlx takes a Postgres advisory lock around them, so
    /// replicas starting together apply each migration once.
    async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await.map_err(|error| match error {
            sqlx::migrate::MigrateError::Execute(inner) => StoreError::from(inner),
            other => StoreError::Migrate(other),
        })
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    async fn relay_wake_ups(&self, wake_ups: super::WakeUps, shutdown: tokio_util::sync::CancellationToken) {
        loop {
            tokio::select! {
                () = self.listen(&wake_ups) => {}
                () = shutdown.cancelled() => return,
            }
            // The listener lost its connection: the fallback interval covers the gap; retry soon.
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    async fn begin(&self) -> Result<PgTx, StoreError> {
        let _waiting = crate::metrics::waiting_for_connection();
        Ok(PgTx { tx: self.pool.begin().await?, one_statement_writes: self.one_statement_writes })
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
        let now: i64 = sqlx::query_scalar("SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)")
            .fetch_one(&self.pool)
            .await?;
        Ok(Some(now))
    }

    async fn verify_ledger(&self) -> Result<LedgerCheck, StoreError> {
        // One snapshot for the whole comparison, so concurrent writers cannot show a false
        // difference between the balances and the journal.
        let mut tx = self.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY").execute(&mut *tx.tx).await?;
        let check = super::sql_tx::check_ledger(&mut tx).await?;
        tx.commit().await?;
        Ok(check)
    }
}

/// A Postgres transaction (READ COMMITTED plus explicit row locks).
pub struct PgTx {
    tx: sqlx::Transaction<'static, Postgres>,
    one_statement_writes: bool,
}

/// Postgres channel woken when events are written (the publishers listen).
pub const OUTBOX_CHANNEL: &str = "creditpool_outbox";
/// Postgres channel woken when events are published (every replica's subscribers listen).
pub const PUBLISHED_CHANNEL: &str = "creditpool_published";

// A batch's rows travel as arrays, one statement per kind of row for all the scopes of a batch.
// Every lock and update filters by the scope keys (`= ANY`, the batch's scopes, one with
// `MAX_BATCH_SCOPES` of 1), so on Citus it can be pruned to those scopes' shards. The inserts
// count the rows they return, never the command's row count: Citus reports the rows an
// `INSERT … SELECT` selected, not the ones it inserted, and a replay would pass as new.
const UPDATE_WORKSPACES: &str = include_str!("sql/workspaces/update_many.postgres.sql");
const UPDATE_MEMBERS: &str = include_str!("sql/members/update_many.postgres.sql");
const UPDATE_CHARGES: &str = include_str!("sql/charges/update_many.postgres.sql");
const INSERT_CHARGES: &str = include_str!("sql/charges/insert_many.postgres.sql");
const INSERT_JOURNAL_ENTRIES: &str = include_str!("sql/journal_entries/insert_many.postgres.sql");
const INSERT_IDEMPOTENCY_RECORDS: &str = include_str!("sql/idempotency_records/insert_many.postgres.sql");

impl SqlTx for PgTx {
    const ROW_LOCKS: bool = true;

    async fn execute(&mut self, statement: Statement<'_>) -> Result<u64, StoreError> {
        let arguments = statement.arguments::<Postgres>()?;
        Ok(sqlx::query_with(statement.text, arguments).execute(&mut *self.tx).await?.rows_affected())
    }

    async fn fetch_all<R: Decoded>(&mut self, statement: Statement<'_>) -> Result<Vec<R>, StoreError> {
        let arguments = statement.arguments::<Postgres>()?;
        Ok(sqlx::query_as_with(statement.text, arguments).fetch_all(&mut *self.tx).await?)
    }

    async fn fetch_optional<R: Decoded>(&mut self, statement: Statement<'_>) -> Result<Option<R>, StoreError> {
        let arguments = statement.arguments::<Postgres>()?;
        Ok(sqlx::query_as_with(statement.text, arguments).fetch_optional(&mut *self.tx).await?)
    }

    async fn signal(&mut self, signal: Signal) -> Result<(), StoreError> {
        // Delivered at commit to every replica's listener.
        let channel = match signal {
            Signal::Outbox => OUTBOX_CHANNEL,
            Signal::Published => PUBLISHED_CHANNEL,
        };
        sqlx::query("SELECT pg_notify($1, '')").bind(channel).execute(&mut *self.tx).await?;
        Ok(())
    }

    async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await?;
        Ok(())
    }

    async fn idempotency_rows(&mut self, keys: &[(Tenant, IdempotencyKey)]) -> Result<Vec<RecordRow>, StoreError> {
        const ONE_SCOPE: &str = include_str!("sql/idempotency_records/select_many.postgres.sql");
        const SCOPES: &str = include_str!("sql/idempotency_records/select_many_scopes.postgres.sql");
        let keys = ScopedKeys::of(keys.iter().map(|(scope, key)| {
            let (scope_id, kind) = super::idempotency_parts(scope);
            (scope_id, kind, key.as_str())
        }));
        Ok(keys.bind(sqlx::query_as(ONE_SCOPE), sqlx::query_as(SCOPES)).fetch_all(&mut *self.tx).await?)
    }

    async fn reset_monthly_usage(&mut self, workspaces: &[WorkspaceId]) -> Result<(), StoreError> {
        const RESET: &str = include_str!("sql/members/reset_monthly_usage.postgres.sql");
        let ids: Vec<&str> = workspaces.iter().map(WorkspaceId::as_str).collect();
        sqlx::query(RESET).bind(ids).execute(&mut *self.tx).await?;
        Ok(())
    }

    async fn lock_members(&mut self, members: &[(WorkspaceId, AccountId)]) -> Result<Vec<Member>, StoreError> {
        const LOCK: &str = include_str!("sql/members/lock_many.postgres.sql");
        let (workspaces, accounts) = membership_keys(members);
        let rows: Vec<MemberRecord> =
            sqlx::query_as(LOCK).bind(workspaces).bind(accounts).fetch_all(&mut *self.tx).await?;
        rows.into_iter().map(Member::try_from).collect()
    }

    async fn lock_workspaces(&mut self, ids: &[WorkspaceId]) -> Result<Vec<Workspace>, StoreError> {
        const LOCK: &str = include_str!("sql/workspaces/lock_many.postgres.sql");
        let rows: Vec<WorkspaceRecord> = sqlx::query_as(LOCK)
            .bind(ids.iter().map(WorkspaceId::as_str).collect::<Vec<_>>())
            .fetch_all(&mut *self.tx)
            .await?;
        rows.into_iter().map(Workspace::try_from).collect()
    }

    async fn lock_workspaces_and_members(
        &mut self,
        ids: &[WorkspaceId],
        members: &[(WorkspaceId, AccountId)],
    ) -> Result<(Vec<Workspace>, Vec<Member>), StoreError> {
        if !self.one_statement_writes {
            // Citus routes each of the two statements to the scope's shard; the combined one it
            // would run through the coordinator.
            return super::sql_tx::lock_workspaces_then_members(self, ids, members).await;
        }
        const LOCK: &str = include_str!("sql/workspaces/lock_many_with_members.postgres.sql");
        let (workspaces, accounts) = membership_keys(members);
        let rows = sqlx::query(LOCK)
            .bind(ids.iter().map(WorkspaceId::as_str).collect::<Vec<_>>())
            .bind(workspaces)
            .bind(accounts)
            .fetch_all(&mut *self.tx)
            .await?;
        let (mut workspaces, mut locked) = (Vec::new(), Vec::new());
        for row in rows {
            if row.try_get("is_workspace")? {
                workspaces.push(Workspace::try_from(WorkspaceRecord::from_row(&row)?)?);
            } else {
                locked.push(Member::try_from(MemberRecord::from_row(&row)?)?);
            }
        }
        Ok((workspaces, locked))
    }

    async fn pool_access_grants(
        &mut self,
        workspace: &WorkspaceId,
        accounts: &[AccountId],
    ) -> Result<Vec<(String, bool)>, StoreError> {
        const GRANTS: &str = include_str!("sql/profile_members/pool_access.postgres.sql");
        Ok(sqlx::query_as(GRANTS)
            .bind(workspace.as_str())
            .bind(accounts.iter().map(AccountId::as_str).collect::<Vec<_>>())
            .fetch_all(&mut *self.tx)
            .await?)
    }

    async fn update_members(&mut self, members: &[Member]) -> Result<(), StoreError> {
        let rows: Vec<MemberRecord> = members.iter().map(MemberRecord::from).collect();
        bind_members(sqlx::query(UPDATE_MEMBERS), &rows).execute(&mut *self.tx).await?;
        Ok(())
    }

    async fn charges(&mut self, keys: &[(Tenant, ChargeKey)], lock: Lock) -> Result<Vec<Charge>, StoreError> {
        const SELECT: &str = include_str!("sql/charges/select_many.postgres.sql");
        const LOCK: &str = include_str!("sql/charges/lock_many.postgres.sql");
        const SELECT_SCOPES: &str = include_str!("sql/charges/select_many_scopes.postgres.sql");
        const LOCK_SCOPES: &str = include_str!("sql/charges/lock_many_scopes.postgres.sql");
        let (one_scope, scopes) = if lock == Lock::Update { (LOCK, LOCK_SCOPES) } else { (SELECT, SELECT_SCOPES) };
        // Sorted, so every transaction locks charges in one order.
        let mut keys: Vec<(&str, &str, &str)> =
            keys.iter().map(|(scope, key)| (scope_kind(scope), scope.id(), key.as_str())).collect();
        keys.sort_unstable();
        keys.dedup();
        let keys = ScopedKeys::of(keys.into_iter().map(|(kind, scope_id, key)| (scope_id, kind, key)));
        let rows: Vec<ChargeRecord> =
            keys.bind(sqlx::query_as(one_scope), sqlx::query_as(scopes)).fetch_all(&mut *self.tx).await?;
        rows.into_iter().map(Charge::try_from).collect()
    }

    async fn open_hold_count_rows(&mut self, holders: &[(Tenant, AccountId)]) -> Result<Vec<(i64,)>, StoreError> {
        const ONE_SCOPE: &str = include_str!("sql/charges/open_holds_of_members.postgres.sql");
        const SCOPES: &str = include_str!("sql/charges/open_holds_of_members_scopes.postgres.sql");
        let holders =
            ScopedKeys::of(holders.iter().map(|(scope, account)| (scope.id(), scope_kind(scope), account.as_str())));
        Ok(holders.bind(sqlx::query_as(ONE_SCOPE), sqlx::query_as(SCOPES)).fetch_all(&mut *self.tx).await?)
    }

    async fn update_charges(&mut self, charges: &[Charge]) -> Result<(), StoreError> {
        let rows: Vec<ChargeRecord> = charges.iter().map(ChargeRecord::from).collect();
        bind_charge_updates(sqlx::query(UPDATE_CHARGES), &rows).execute(&mut *self.tx).await?;
        Ok(())
    }

    async fn append_journal(
        &mut self,
        entries: &[(&IdempotencyKey, &Movement)],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        if !self.one_statement_writes {
            const VALUES: &str = include_str!("sql/journal_entries/insert_values.postgres.sql");
            insert_values(&mut self.tx, VALUES, entries, "", |mut row, (reference, m)| {
                row.push_bind(m.ledger_scope_id())
                    .push_bind(m.from.kind())
                    .push_bind(m.from.owner_id())
                    .push_bind(m.to.kind())
                    .push_bind(m.to.owner_id())
                    .push_bind(m.amount.get())
                    .push_bind(m.cause.as_str())
                    .push_bind(reference.as_str())
                    .push_bind(m.member.as_ref().map(AccountId::as_str))
                    .push_bind(now_ms)
                    .push_bind(m.part.map(DrawBucket::as_str))
                    .push_bind(m.units.quota)
                    .push_bind(m.units.overage);
            })
            .await?;
            return Ok(());
        }
        bind_journal(sqlx::query(INSERT_JOURNAL_ENTRIES), entries, now_ms).execute(&mut *self.tx).await?;
        Ok(())
    }

    async fn write_batch(
        &mut self,
        rows: &super::BatchRows<'_>,
        now_ms: i64,
    ) -> Result<super::BatchWritten, StoreError> {
        if !self.one_statement_writes {
            return self.write_per_table(rows, now_ms).await;
        }
        let present = [
            !rows.workspaces.is_empty(),
            !rows.members.is_empty(),
            !rows.updated_charges.is_empty(),
            !rows.new_charges.is_empty(),
            !rows.journal.is_empty(),
            !rows.records.is_empty(),
        ];
        let index = present.iter().enumerate().filter(|(_, p)| **p).fold(0, |index, (i, _)| index | (1 << i));
        if index == 0 {
            return Ok(super::BatchWritten::default());
        }
        let workspaces: Vec<WorkspaceRecord> = rows.workspaces.iter().map(WorkspaceRecord::from).collect();
        let members: Vec<MemberRecord> = rows.members.iter().map(MemberRecord::from).collect();
        let updated: Vec<ChargeRecord> = rows.updated_charges.iter().map(ChargeRecord::from).collect();
        let new: Vec<ChargeRecord> = rows.new_charges.iter().map(ChargeRecord::from).collect();
        // Built once from the constant statements above: no caller's text is in it.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(WRITE_BATCHES[index].as_str()));
        if present[0] {
            query = bind_workspaces(query, &workspaces);
        }
        if present[1] {
            query = bind_members(query, &members);
        }
        if present[2] {
            query = bind_charge_updates(query, &updated);
        }
        if present[3] {
            query = bind_new_charges(query, &new);
        }
        if present[4] {
            query = bind_journal(query, rows.journal, now_ms);
        }
        if present[5] {
            query = bind_records(query, rows.records, now_ms);
        }
        let row = query.fetch_one(&mut *self.tx).await?;
        let count = |column: &str| -> Result<u64, StoreError> {
            let count: i64 = row.try_get(column)?;
            u64::try_from(count).map_err(|_| StoreError::Corrupt(format!("{column} counted {count}")))
        };
        Ok(super::BatchWritten { charges: count("charges")?, records: count("records")? })
    }
}

/// Keys of (scope id, scope kind, key) as the three array parameters of a lookup.
struct ScopedKeys<'a> {
    scope_ids: Vec<&'a str>,
    kinds: Vec<&'a str>,
    keys: Vec<&'a str>,
}

impl<'a> ScopedKeys<'a> {
    fn of(keys: impl Iterator<Item = (&'a str, &'a str, &'a str)>) -> ScopedKeys<'a> {
        let mut columns = ScopedKeys { scope_ids: Vec::new(), kinds: Vec::new(), keys: Vec::new() };
        for (scope_id, kind, key) in keys {
            columns.scope_ids.push(scope_id);
            columns.kinds.push(kind);
            columns.keys.push(key);
        }
        columns
    }

    /// The keys bound to `one_scope` (scope id, kind, keys) when they share a scope: its constant
    /// scope filter is what Citus routes to one shard, where `MAX_BATCH_SCOPES=1` keeps every
    /// batch. Keys of several scopes (a batch of many workspaces on one Postgres) go to `scopes`,
    /// which takes the three columns as arrays.
    fn bind<O>(
        self,
        one_scope: sqlx::query::QueryAs<'a, Postgres, O, sqlx::postgres::PgArguments>,
        scopes: sqlx::query::QueryAs<'a, Postgres, O, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::QueryAs<'a, Postgres, O, sqlx::postgres::PgArguments> {
        let one = |column: &[&str]| column.iter().all(|value| Some(value) == column.first());
        match (self.scope_ids.first(), self.kinds.first()) {
            (Some(&scope_id), Some(&kind)) if one(&self.scope_ids) && one(&self.kinds) => {
                one_scope.bind(scope_id).bind(kind).bind(self.keys)
            }
            _ => scopes.bind(self.scope_ids).bind(self.kinds).bind(self.keys),
        }
    }
}

/// The per-table form of a batch's write (`POSTGRES_ONE_STATEMENT_WRITES=false`, the form for
/// Citus): one statement per table that has rows, new rows as multi-row `VALUES`, which Citus
/// routes to the scope's shard.
impl PgTx {
    async fn write_per_table(
        &mut self,
        rows: &super::BatchRows<'_>,
        now_ms: i64,
    ) -> Result<super::BatchWritten, StoreError> {
        if !rows.workspaces.is_empty() {
            self.update_workspaces(rows.workspaces).await?;
        }
        super::StoreTx::update_members(self, rows.members).await?;
        super::StoreTx::update_charges(self, rows.updated_charges).await?;
        // Without rows the inserts send no statement (`insert_values`).
        let charges = self.insert_charges(rows.new_charges).await?;
        super::StoreTx::append_journal(self, rows.journal, now_ms).await?;
        let records = self.insert_idempotency_records(rows.records, now_ms).await?;
        Ok(super::BatchWritten { charges, records })
    }

    /// Saves several workspaces' pools and settings in one statement.
    async fn update_workspaces(&mut self, workspaces: &[Workspace]) -> Result<(), StoreError> {
        let rows: Vec<WorkspaceRecord> = workspaces.iter().map(WorkspaceRecord::from).collect();
        bind_workspaces(sqlx::query(UPDATE_WORKSPACES), &rows).execute(&mut *self.tx).await?;
        Ok(())
    }

    /// Inserts charges as multi-row `VALUES`; returns how many were new (a taken key is skipped).
    async fn insert_charges(&mut self, charges: &[Charge]) -> Result<u64, StoreError> {
        const VALUES: &str = include_str!("sql/charges/insert_values.postgres.sql");
        let rows: Vec<ChargeRecord> = charges.iter().map(ChargeRecord::from).collect();
        let tail = " ON CONFLICT (scope_id, scope_kind, charge_key) DO NOTHING RETURNING charge_key";
        insert_values(&mut self.tx, VALUES, &rows, tail, |mut row, r| {
            row.push_bind(r.scope_id.as_str())
                .push_bind(r.scope_kind.as_str())
                .push_bind(r.charge_key.as_str())
                .push_bind(r.account_id.as_str())
                .push_bind(r.state.as_str())
                .push_bind(r.monthly_credits)
                .push_bind(r.top_up_credits)
                .push_bind(r.refunded_monthly_credits)
                .push_bind(r.refunded_top_up_credits)
                .push_bind(r.forfeited_credits)
                .push_bind(r.cycle)
                .push_bind(r.created_at_ms)
                .push_bind(r.expires_at_ms)
                .push_bind(r.overflow_credits)
                .push_bind(r.refunded_overflow_credits)
                .push_bind(r.overflow_take.as_deref())
                .push_bind(r.membership);
        })
        .await
    }

    /// Records finished requests as multi-row `VALUES`; returns how many were new (a key taken
    /// meanwhile is skipped).
    async fn insert_idempotency_records(
        &mut self,
        records: &[(Tenant, IdempotencyKey, Value, Value)],
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        const VALUES: &str = include_str!("sql/idempotency_records/insert_values.postgres.sql");
        let tail = " ON CONFLICT DO NOTHING RETURNING idempotency_key";
        insert_values(&mut self.tx, VALUES, records, tail, |mut row, record| {
            let (scope, key, request, response) = record;
            let (scope_id, scope_kind) = super::idempotency_parts(scope);
            row.push_bind(scope_id)
                .push_bind(scope_kind)
                .push_bind(key.as_str())
                .push_bind(request.to_string())
                .push_bind(response.to_string())
                .push_bind(now_ms);
        })
        .await
    }
}

/// Memberships as the locking statements take them: a workspace array and an account array,
/// sorted by (workspace, account) without repeats, the order their rows are locked in.
fn membership_keys(members: &[(WorkspaceId, AccountId)]) -> (Vec<&str>, Vec<&str>) {
    let mut members: Vec<&(WorkspaceId, AccountId)> = members.iter().collect();
    members.sort();
    members.dedup();
    members.into_iter().map(|(workspace, account)| (workspace.as_str(), account.as_str())).unzip()
}

/// A Postgres statement being bound.
type PgQuery<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

/// The parts of a batch's combined write, in binding order: CTE name, statement, parameters.
const WRITE_PARTS: [(&str, &str, usize); 6] = [
    ("workspaces_written", UPDATE_WORKSPACES, 14),
    ("members_written", UPDATE_MEMBERS, 8),
    ("charges_updated", UPDATE_CHARGES, 18),
    ("charges_made", INSERT_CHARGES, 17),
    ("journal_written", INSERT_JOURNAL_ENTRIES, 13),
    ("records_made", INSERT_IDEMPOTENCY_RECORDS, 6),
];

/// A hot-path batch's writes as one statement, one per set of parts that have rows (bit i of
/// the index is `WRITE_PARTS[i]`): each part a data-modifying CTE, so a batch costs one round
/// trip for all its rows. A part without rows is left out rather than run on empty arrays, so
/// no plan can scan a scope's history for nothing. The parts are the single statements with
/// their parameters renumbered, bound in the same order by the same binders.
static WRITE_BATCHES: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
    (0..1_usize << WRITE_PARTS.len())
        .map(|present| {
            let mut offset = 0;
            let mut parts = Vec::new();
            for (i, (name, statement, parameters)) in WRITE_PARTS.iter().enumerate() {
                if present & (1 << i) != 0 {
                    parts.push(format!("{name} AS ({})", super::renumber_parameters(statement, |n| n + offset)));
                    offset += parameters;
                }
            }
            let count = |i: usize, name: &str| {
                if present & (1 << i) != 0 { format!("(SELECT COUNT(*) FROM {name})") } else { "0::bigint".to_owned() }
            };
            format!(
                "WITH {} SELECT {} AS charges, {} AS records",
                parts.join(", "),
                count(3, "charges_made"),
                count(5, "records_made")
            )
        })
        .collect()
});

/// Binds `UPDATE_WORKSPACES`'s 14 parameters.
fn bind_workspaces<'q>(query: PgQuery<'q>, rows: &'q [WorkspaceRecord]) -> PgQuery<'q> {
    query
        .bind(rows.iter().map(|r| r.workspace_id.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.pool_size_credits).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.funded_pool_size_credits).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.monthly_pool_funded).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.monthly_pool_credits).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.top_up_pool_credits).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.low_monthly_pool_credits).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.low_top_up_pool_credits).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.low_member_remaining_percent).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.monthly_cycle).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.overflow_pool.as_deref()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.overflow_lent_credits).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.low_overflow_units).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.memberships).collect::<Vec<_>>())
}

/// Binds `UPDATE_MEMBERS`'s 8 parameters.
fn bind_members<'q>(query: PgQuery<'q>, rows: &'q [MemberRecord]) -> PgQuery<'q> {
    let scopes = scope_keys(rows.iter().map(|r| r.workspace_id.as_str()));
    query
        .bind(rows.iter().map(|r| r.workspace_id.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.account_id.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.role.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.monthly_allowance_credits).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.monthly_used_credits).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.top_up_allowance_credits).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.top_up_used_credits).collect::<Vec<_>>())
        .bind(scopes)
}

/// Binds `UPDATE_CHARGES`'s 18 parameters: the charges' columns, then their scope keys.
fn bind_charge_updates<'q>(query: PgQuery<'q>, rows: &'q [ChargeRecord]) -> PgQuery<'q> {
    bind_new_charges(query, rows).bind(scope_keys(rows.iter().map(|r| r.scope_id.as_str())))
}

/// Binds `INSERT_CHARGES`'s 17 parameters.
fn bind_new_charges<'q>(query: PgQuery<'q>, rows: &'q [ChargeRecord]) -> PgQuery<'q> {
    query
        .bind(rows.iter().map(|r| r.scope_id.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.scope_kind.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.charge_key.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.account_id.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.state.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.monthly_credits).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.top_up_credits).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.refunded_monthly_credits).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.refunded_top_up_credits).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.forfeited_credits).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.cycle).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.created_at_ms).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.expires_at_ms).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.overflow_credits).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.refunded_overflow_credits).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.overflow_take.as_deref()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.membership).collect::<Vec<_>>())
}

/// Binds `INSERT_JOURNAL_ENTRIES`'s 13 parameters.
fn bind_journal<'q>(query: PgQuery<'q>, entries: &'q [(&'q IdempotencyKey, &'q Movement)], now_ms: i64) -> PgQuery<'q> {
    query
        .bind(entries.iter().map(|(_, m)| m.ledger_scope_id()).collect::<Vec<_>>())
        .bind(entries.iter().map(|(_, m)| m.from.kind()).collect::<Vec<_>>())
        .bind(entries.iter().map(|(_, m)| m.from.owner_id()).collect::<Vec<_>>())
        .bind(entries.iter().map(|(_, m)| m.to.kind()).collect::<Vec<_>>())
        .bind(entries.iter().map(|(_, m)| m.to.owner_id()).collect::<Vec<_>>())
        .bind(entries.iter().map(|(_, m)| m.amount.get()).collect::<Vec<_>>())
        .bind(entries.iter().map(|(_, m)| m.cause.as_str()).collect::<Vec<_>>())
        .bind(entries.iter().map(|(reference, _)| reference.as_str()).collect::<Vec<_>>())
        .bind(entries.iter().map(|(_, m)| m.member.as_ref().map(AccountId::as_str)).collect::<Vec<_>>())
        .bind(now_ms)
        .bind(entries.iter().map(|(_, m)| m.part.map(DrawBucket::as_str)).collect::<Vec<_>>())
        .bind(entries.iter().map(|(_, m)| m.units.quota).collect::<Vec<_>>())
        .bind(entries.iter().map(|(_, m)| m.units.overage).collect::<Vec<_>>())
}

/// Binds `INSERT_IDEMPOTENCY_RECORDS`'s 6 parameters.
fn bind_records<'q>(
    query: PgQuery<'q>,
    records: &'q [(Tenant, IdempotencyKey, Value, Value)],
    now_ms: i64,
) -> PgQuery<'q> {
    let scopes: Vec<(&str, &str)> = records.iter().map(|(scope, ..)| super::idempotency_parts(scope)).collect();
    let keys: Vec<&str> = records.iter().map(|(_, key, _, _)| key.as_str()).collect();
    let requests: Vec<String> = records.iter().map(|(_, _, request, _)| request.to_string()).collect();
    let responses: Vec<String> = records.iter().map(|(_, _, _, response)| response.to_string()).collect();
    query
        .bind(scopes.iter().map(|(id, _)| *id).collect::<Vec<_>>())
        .bind(scopes.iter().map(|(_, kind)| *kind).collect::<Vec<_>>())
        .bind(keys)
        .bind(requests)
        .bind(responses)
        .bind(now_ms)
}

/// Most rows of one multi-row `VALUES` insert: 1,000 rows of at most 17 parameters stay well
/// inside Postgres's 65,535 parameters a statement.
const VALUES_ROWS: usize = 1_000;

/// Inserts `rows` as multi-row `VALUES` lists of at most [`VALUES_ROWS`] rows: `head` is the
/// `INSERT INTO table (columns)`, `push_row` binds one row's values in that order, and `tail`
/// follows each list. Returns how many rows the statements returned (by their `RETURNING`).
async fn insert_values<T>(
    connection: &mut sqlx::PgConnection,
    head: &str,
    rows: &[T],
    tail: &str,
    mut push_row: impl FnMut(sqlx::query_builder::Separated<'_, Postgres, &'static str>, &T),
) -> Result<u64, StoreError> {
    let mut returned = 0;
    for chunk in rows.chunks(VALUES_ROWS) {
        let mut insert = sqlx::QueryBuilder::new(head);
        insert.push_values(chunk, &mut push_row);
        insert.push(tail);
        returned += insert.build().fetch_all(&mut *connection).await?.len() as u64;
    }
    Ok(returned)
}

/// The distinct scope keys of a batch's rows, for a statement's `= ANY` scope filter.
fn scope_keys<'a>(keys: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut keys: Vec<&str> = keys.collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// The statements that distribute the tables on Citus, one per table.
pub const DISTRIBUTE: &str = include_str!("migrations/distribute.sql");

/// Distributes the migrated tables on the Citus coordinator `url` points at, a statement at a
/// time (Citus copes best with a table distributed per transaction).
pub async fn distribute(url: &str) -> Result<(), StoreError> {
    use sqlx::Connection;
    let mut connection = sqlx::PgConnection::connect(url).await?;
    for statement in DISTRIBUTE.lines().filter(|line| line.starts_with("SELECT ")) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement)).execute(&mut connection).await?;
    }
    Ok(())
}

/// `url` with its database name replaced by `database` (query parameters kept).
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_end..].find('/').map_or(base.len(), |i| authority_end + i);
    let mut result = format!("{}/{database}", &base[..path_start]);
    if let Some(query) = query {
        result.push('?');
        result.push_str(query);
    }
    result
}

/// Creates database `name` on the server `server_url` points at (for the benchmark's scratch
/// database); `name` must be a plain identifier.
pub async fn create_database(server_url: &str, name: &str) -> Result<(), StoreError> {
    use sqlx::Connection;
    debug_assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    let mut connection = sqlx::PgConnection::connect(server_url).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut connection).await?;
    Ok(())
}

/// The server's `max_connections`.
pub async fn max_connections(server_url: &str) -> Result<u32, StoreError> {
    use sqlx::Connection;
    let mut connection = sqlx::PgConnection::connect(server_url).await?;
    let setting: String = sqlx::query_scalar("SELECT setting FROM pg_settings WHERE name = 'max_connections'")
        .fetch_one(&mut connection)
        .await?;
    setting.parse().map_err(|_| StoreError::Corrupt(format!("max_connections is {setting}")))
}

/// Drops database `name` on the server `server_url` points at.
pub async fn drop_database(server_url: &str, name: &str) -> Result<(), StoreError> {
    use sqlx::Connection;
    let mut connection = sqlx::PgConnection::connect(server_url).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
        .execute(&mut connection)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{WRITE_BATCHES, WRITE_PARTS, with_database};
    use crate::store::renumber_parameters;

    #[test]
    fn database_names_are_replaced_in_urls() {
        assert_eq!(with_database("postgres://u@h:1/db?sslmode=disable", "x"), "postgres://u@h:1/x?sslmode=disable");
        assert_eq!(with_database("postgres://u@h:1", "x"), "postgres://u@h:1/x");
    }

    #[test]
    fn shifted_parameters_keep_their_order_and_the_batch_write_numbers_each_once() {
        assert_eq!(
            renumber_parameters("a = $1 AND b = ANY($12) AND c = $2::text", |n| n + 10),
            "a = $11 AND b = ANY($22) AND c = $12::text"
        );
        // Every variant of the combined write numbers its parameters 1..=n, each once.
        for (present, statement) in WRITE_BATCHES.iter().enumerate() {
            let expected: usize = WRITE_PARTS
                .iter()
                .enumerate()
                .filter(|(i, _)| present & (1 << i) != 0)
                .map(|(_, (_, _, parameters))| parameters)
                .sum();
            let numbers: std::collections::BTreeSet<usize> = statement
                .split('$')
                .skip(1)
                .map(|rest| rest[..rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len())].parse().unwrap())
                .collect();
            assert_eq!(numbers, (1..=expected).collect(), "variant {present}");
        }
    }
}
