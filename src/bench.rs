//! `creditpool bench`: Consume throughput and latency over gRPC, beside the same transaction as
//! direct SQL on the same database in the same run.
//!
//! The server runs in this process on a scratch database (created on the server the URL points
//! at, dropped afterwards). Three scenarios: *spread* (each client on its own workspace), *hot*
//! (every client on one workspace, each as its own member) and *overflow* (every client on one
//! workspace whose members have no allowance left, so each call draws the enterprise overflow
//! pool at 7/3 units per credit). After each hot run a *replay* run resends keys that run
//! answered (a retry storm after an outage), measured against the hot first calls. For each
//! client count the service is driven for the given
//! seconds, then the direct-SQL baseline (`direct_consume` below: same locks, same writes)
//! from the same number of clients; the overflow scenario's baseline is the hot one's statement,
//! a plain monthly consume, which is what an overflow draw should cost no more than.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::config::Config;
use crate::ledger::{Clock, SystemClock};
use crate::proto::admin_service_client::AdminServiceClient;
use crate::proto::credit_service_client::CreditServiceClient;
use crate::proto::*;
use crate::store::postgres::{self, PgStore, PoolSettings};
use crate::store::sqlite::SqliteStore;
use crate::store::{Store as _, StoreError};

/// Expands the direct-SQL baseline for one backend: a function `$name` on its pool type; `$lock`
/// is the backend's locking clause for the two reads.
macro_rules! direct_consume {
    ($name:ident, $pool:ty, $lock:literal) => {
    /// The baseline: a workspace Consume of monthly credits written as plain SQL, taking the
    /// same locks and making the same writes as the service's transaction script (idempotency
    /// claim and response, workspace and member rows, charge, journal entry).
    async fn $name(
        pool: &$pool,
        workspace: &str,
        member: &str,
        key: &str,
        amount: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = pool.begin().await?;
        let record_key = format!("Consume/{key}");
        sqlx::query(
            "INSERT INTO idempotency_records (scope_id, scope_kind, idempotency_key, request, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(workspace)
        .bind("workspace")
        .bind(&record_key)
        .bind("{}")
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        let (pool,): (i64,) =
            sqlx::query_as(concat!("SELECT monthly_pool_credits FROM workspaces WHERE workspace_id = $1", $lock))
            .bind(workspace)
            .fetch_one(&mut *tx)
            .await?;
        let (allowance, used, membership): (i64, i64, i64) = sqlx::query_as(
            concat!(
                "SELECT monthly_allowance_credits, monthly_used_credits, membership FROM members \
                 WHERE workspace_id = $1 AND account_id = $2",
                $lock
            ),
        )
        .bind(workspace)
        .bind(member)
        .fetch_one(&mut *tx)
        .await?;
        if (allowance - used).min(pool) < amount {
            return Ok(false);
        }
        sqlx::query("UPDATE workspaces SET monthly_pool_credits = $2 WHERE workspace_id = $1")
            .bind(workspace)
            .bind(pool - amount)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE members SET monthly_used_credits = $3 WHERE workspace_id = $1 AND account_id = $2")
            .bind(workspace)
            .bind(member)
            .bind(used + amount)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO charges (scope_id, scope_kind, charge_key, account_id, state, monthly_credits, top_up_credits, \
             refunded_monthly_credits, refunded_top_up_credits, forfeited_credits, cycle, created_at_ms, expires_at_ms, \
             membership) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(workspace)
        .bind("workspace")
        .bind(key)
        .bind(member)
        .bind("captured")
        .bind(amount)
        .bind(0_i64)
        .bind(0_i64)
        .bind(0_i64)
        .bind(0_i64)
        .bind(0_i64)
        .bind(now_ms)
        .bind(None::<i64>)
        .bind(membership)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO journal_entries (ledger_scope_id, from_bucket, from_owner_id, to_bucket, to_owner_id, \
             amount_credits, cause, reference, member_account_id, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(workspace)
        .bind("workspace_monthly")
        .bind(workspace)
        .bind("consumed")
        .bind(None::<&str>)
        .bind(amount)
        .bind("consume")
        .bind(&record_key)
        .bind(member)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE idempotency_records SET response = $4 \
             WHERE scope_id = $1 AND scope_kind = $2 AND idempotency_key = $3",
        )
        .bind(workspace)
        .bind("workspace")
        .bind(&record_key)
        .bind("{}")
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }
    };
}

direct_consume!(direct_consume_postgres, sqlx::PgPool, " FOR UPDATE");
direct_consume!(direct_consume_sqlite, sqlx::SqlitePool, "");

/// The direct-SQL baseline on the benchmarked store.
#[derive(Clone)]
enum Baseline {
    Postgres(PgStore),
    Sqlite(SqliteStore),
}

impl Baseline {
    async fn consume(&self, workspace: &str, member: &str, key: &str, now_ms: i64) -> Result<bool, StoreError> {
        match self {
            Baseline::Postgres(store) => direct_consume_postgres(store.pool(), workspace, member, key, 1, now_ms).await,
            Baseline::Sqlite(store) => direct_consume_sqlite(store.pool(), workspace, member, key, 1, now_ms).await,
        }
    }

    /// Writes `entries` journal entries (pairs that cancel out, so balances still verify), and a
    /// tenth as many released charges and answered idempotency records, spread over the bench's
    /// workspaces: the history a long-running service has. Statistics are not gathered, as on a
    /// database whose autovacuum has not run yet.
    async fn preload(&self, entries: u64, spread_workspaces: usize, now_ms: i64) -> Result<(), StoreError> {
        let series = match self {
            Baseline::Postgres(_) => "WITH s(i) AS (SELECT generate_series($4, $1))",
            Baseline::Sqlite(_) => "WITH RECURSIVE s(i) AS (SELECT $4 UNION ALL SELECT i + 1 FROM s WHERE i < $1)",
        };
        let scope = "CASE WHEN ((i + 1) / 2) % ($2 + 1) = $2 THEN 'bench-hot' \
                     ELSE 'bench-spread-' || CAST(((i + 1) / 2) % ($2 + 1) AS TEXT) END";
        let journal = format!(
            "{series} INSERT INTO journal_entries (ledger_scope_id, from_bucket, from_owner_id, to_bucket, to_owner_id, \
             amount_credits, cause, reference, created_at_ms) \
             SELECT {scope}, CASE WHEN i % 2 = 0 THEN 'workspace_monthly' ELSE 'consumed' END, \
                 CASE WHEN i % 2 = 0 THEN {scope} END, CASE WHEN i % 2 = 0 THEN 'consumed' ELSE 'workspace_monthly' END, \
                 CASE WHEN i % 2 = 0 THEN NULL ELSE {scope} END, 1, 'preload', 'preload-' || CAST((i + 1) / 2 AS TEXT), $3 \
             FROM s"
        );
        let charges = format!(
            "{series} INSERT INTO charges (scope_id, scope_kind, charge_key, account_id, state, monthly_credits, \
             top_up_credits, refunded_monthly_credits, refunded_top_up_credits, forfeited_credits, cycle, created_at_ms) \
             SELECT {scope}, 'workspace', 'preload-' || CAST(i AS TEXT), 'bench-member-0', 'released', 1, 0, 0, 0, 0, 0, $3 \
             FROM s"
        );
        let records = format!(
            "{series} INSERT INTO idempotency_records (scope_id, scope_kind, idempotency_key, request, response, \
             created_at_ms) \
             SELECT {scope}, 'workspace', 'Consume/preload-' || CAST(i AS TEXT), '{{}}', '{{}}', $3 FROM s"
        );
        let entries = i64::try_from(entries.div_ceil(2) * 2).unwrap_or(i64::MAX);
        let workspaces = i64::try_from(spread_workspaces).unwrap_or(i64::MAX);
        // In chunks, each well within the statement timeout.
        const CHUNK: i64 = 500_000;
        for (statement, rows) in [(journal, entries), (charges, entries / 10), (records, entries / 10)] {
            for first in (1..=rows).step_by(CHUNK as usize) {
                let last = (first + CHUNK - 1).min(rows);
                let sql = || sqlx::AssertSqlSafe(statement.clone());
                match self {
                    Baseline::Postgres(store) => {
                        let query = sqlx::query(sql()).bind(last).bind(workspaces).bind(now_ms).bind(first);
                        query.execute(store.pool()).await?;
                    }
                    Baseline::Sqlite(store) => {
                        let query = sqlx::query(sql()).bind(last).bind(workspaces).bind(now_ms).bind(first);
                        query.execute(store.pool()).await?;
                    }
                }
            }
        }
        // The preload's pages are written out now, not by a checkpoint that would share the
        // disk with the runs and show as their latency; what the runs see is the history alone.
        let checkpoint = match self {
            Baseline::Postgres(store) => sqlx::query("CHECKPOINT").execute(store.pool()).await.map(drop),
            Baseline::Sqlite(store) => {
                sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(store.pool()).await.map(drop)
            }
        };
        if let Err(error) = checkpoint {
            // Postgres lets only superusers and pg_checkpoint members checkpoint.
            tracing::warn!(%error, "no checkpoint after the preload: the runs may share the disk with it");
        }
        Ok(())
    }

    async fn close(&self) {
        match self {
            Baseline::Postgres(store) => store.close().await,
            Baseline::Sqlite(store) => store.close().await,
        }
    }
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// A Postgres URL (the scratch database is created on the same server) or a `sqlite:` URL
    /// (the scratch file goes to the temporary directory).
    pub database_url: String,
    /// Seconds each measurement runs.
    pub seconds: u64,
    /// Client counts to measure.
    pub clients: Vec<usize>,
    /// Workspaces in the spread scenario.
    pub spread_workspaces: usize,
    /// Most calls per transaction inside the service.
    pub max_batch_calls: u32,
    /// The service's `max_batch_scopes`.
    pub max_batch_scopes: u32,
    /// The service's `max_batch_transactions`.
    pub max_batch_transactions: u32,
    /// Whether the server authenticates every call (a bearer token checked by the auth layer).
    pub auth: bool,
    /// WatchNotifications streams held open (and idle) during the runs.
    pub idle_subscribers: usize,
    /// Journal entries written before the runs (with a tenth as many charges and records).
    pub preload_journal: u64,
    /// The scenarios to run, in the table's order whatever order they are given in.
    pub scenarios: Vec<Scenario>,
}

/// A benchmark scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Each client on its own workspace.
    Spread,
    /// Every client on one workspace, then a retry storm of the keys it answered.
    Hot,
    /// Every client on one workspace, drawing the enterprise overflow pool.
    Overflow,
    /// Consume, Reserve/Commit, Refund and 10% replays on the spread seats.
    Mixed,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Spread => "spread",
            Scenario::Hot => "hot",
            Scenario::Overflow => "overflow",
            Scenario::Mixed => "mixed",
        }
    }
}

/// The bearer token the benchmark's clients send when `auth` is on.
const BENCH_TOKEN: &str = "creditpool-bench-token";

/// Sends the benchmark's bearer token, when there is one.
#[derive(Debug, Clone, Default)]
struct Token(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Token {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

type Intercepted = tonic::service::interceptor::InterceptedService<Channel, Token>;

/// An auth file with one principal for the benchmark's token, in the temporary directory.
fn bench_auth_file() -> anyhow::Result<ScratchFile> {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(BENCH_TOKEN.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let path = std::env::temp_dir().join(format!("creditpool-bench-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        format!(
            "[[principal]]\nname = \"bench\"\ntoken_sha256 = \"{hex}\"\nscopes = [\"credit\", \"admin\", \"watch\", \"verify\"]\n"
        ),
    )?;
    Ok(ScratchFile(path))
}

/// A file of this run, removed when the run ends however it ends.
struct ScratchFile(std::path::PathBuf);

impl Drop for ScratchFile {
    fn drop(&mut self) {
        // Already gone is as good as removed.
        let _ = std::fs::remove_file(&self.0);
    }
}

/// One measurement.
#[derive(Debug)]
struct Run {
    ok: u64,
    failed: u64,
    elapsed: Duration,
    latency_us: Histogram<u64>,
}

impl Run {
    fn per_second(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    fn ms(&self, quantile: f64) -> f64 {
        self.latency_us.value_at_quantile(quantile) as f64 / 1_000.0
    }
}

type Call = Arc<dyn Fn(usize, u64) -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

/// Runs `clients` loops of `call` for `duration`; each loop is one client.
async fn drive(clients: usize, duration: Duration, call: Call) -> anyhow::Result<Run> {
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let call = Arc::clone(&call);
            tokio::spawn(async move {
                let mut latency_us = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
                let (mut ok, mut failed) = (0, 0);
                let mut n = 0;
                while Instant::now() < deadline {
                    let began = Instant::now();
                    if call(client, n).await {
                        ok += 1;
                        latency_us.saturating_record(u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX));
                    } else {
                        failed += 1;
                    }
                    n += 1;
                }
                anyhow::Ok((ok, failed, latency_us))
            })
        })
        .collect();
    let mut run =
        Run { ok: 0, failed: 0, elapsed: Duration::ZERO, latency_us: Histogram::new_with_bounds(1, 60_000_000, 3)? };
    for task in tasks {
        let (ok, failed, latency_us) = task.await??;
        run.ok += ok;
        run.failed += failed;
        run.latency_us.add(latency_us)?;
    }
    run.elapsed = start.elapsed();
    Ok(run)
}

/// A retry storm: every call resends one of the first keys the hot run `run_id` answered for
/// that client (the same request, so each is a replay of a stored answer).
async fn replay_storm(
    clients: &Arc<Vec<CreditServiceClient<Intercepted>>>,
    count: usize,
    duration: Duration,
    run_id: &str,
) -> anyhow::Result<Run> {
    let clients = Arc::clone(clients);
    let run_id = run_id.to_owned();
    let replay: Call = Arc::new(move |client, n| {
        let mut credit = clients[client].clone();
        let (workspace, member) = seat("hot", client, 1);
        // Every client answers far more than this many first calls in a run of a second.
        let key = format!("svc-{run_id}-{client}-{}", n % REPLAYED_KEYS);
        Box::pin(async move {
            let request = ConsumeRequest {
                idempotency_key: key,
                account_id: member,
                workspace_id: workspace,
                amount_credits: 1,
                allow_overflow: false,
            };
            credit.consume(request).await.is_ok()
        })
    });
    drive(count, duration, replay).await
}

/// The mixed scenario on the spread seats: each client repeats ten calls, four Consumes, a
/// Reserve and its Commit, a Refund of the first Consume, two Consumes, and a replay of the
/// second Consume (10% replays).
async fn mixed_run(
    clients: &Arc<Vec<CreditServiceClient<Intercepted>>>,
    count: usize,
    duration: Duration,
    spread: usize,
) -> anyhow::Result<Run> {
    let clients = Arc::clone(clients);
    let mixed: Call = Arc::new(move |client, n| {
        let mut credit = clients[client].clone();
        let (workspace_id, account_id) = seat("spread", client, spread);
        let base = format!("mix-{count}-{client}-{}", n / 10);
        let hold = format!("{base}-hold");
        match n % 10 {
            4 => {
                let request = ReserveRequest {
                    reservation_key: hold,
                    account_id,
                    workspace_id,
                    amount_credits: 2,
                    ..Default::default()
                };
                Box::pin(async move { credit.reserve(request).await.is_ok() })
            }
            5 => {
                let request = CommitRequest {
                    reservation_key: hold,
                    account_id,
                    workspace_id,
                    amount_credits: 1,
                    ..Default::default()
                };
                Box::pin(async move { credit.commit(request).await.is_ok() })
            }
            6 => {
                let request = RefundRequest {
                    idempotency_key: format!("{base}-refund"),
                    account_id,
                    workspace_id,
                    consumption_key: format!("{base}-0"),
                    amount_credits: Some(1),
                };
                Box::pin(async move { credit.refund(request).await.is_ok() })
            }
            k => {
                // The tenth call replays the second.
                let request = ConsumeRequest {
                    idempotency_key: format!("{base}-{}", if k == 9 { 1 } else { k }),
                    account_id,
                    workspace_id,
                    amount_credits: 1,
                    allow_overflow: false,
                };
                Box::pin(async move { credit.consume(request).await.is_ok() })
            }
        }
    });
    drive(count, duration, mixed).await
}

/// The process's peak resident set (`VmHWM`, KiB), where `/proc` has it.
fn peak_resident_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// How many of its first keys each client replays in the retry storm.
const REPLAYED_KEYS: u64 = 16;

/// Where client `client` consumes in a scenario: (workspace, member).
fn seat(scenario: &str, client: usize, spread_workspaces: usize) -> (String, String) {
    match scenario {
        "spread" => (format!("bench-spread-{}", client % spread_workspaces), format!("bench-member-{client}")),
        "overflow" => (OVERFLOW_WORKSPACE.to_owned(), format!("bench-member-{client}")),
        _ => ("bench-hot".to_owned(), format!("bench-member-{client}")),
    }
}

/// The overflow scenario's workspace: members without allowances in a pool-access profile.
const OVERFLOW_WORKSPACE: &str = "bench-overflow";

/// Gives the overflow workspace its pool (an unlimited quota at 7/3 units per credit) and a
/// pool-access profile holding every client's member.
async fn set_up_overflow(admin: &mut AdminServiceClient<Intercepted>, max_clients: usize) -> anyhow::Result<()> {
    let key = |what: &str| format!("bench-setup-overflow-{what}");
    call_ok(
        admin
            .configure_overflow_pool(ConfigureOverflowPoolRequest {
                idempotency_key: key("pool"),
                workspace_id: OVERFLOW_WORKSPACE.into(),
                actor_account_id: "bench-owner".into(),
                quota_units: 1_000_000_000_000,
                units_per_credit_num: 7,
                units_per_credit_den: 3,
                overage_limit_units: None,
                enabled: true,
                contract_period: "bench".into(),
            })
            .await,
    )
    .await?;
    call_ok(
        admin
            .create_profile(CreateProfileRequest {
                idempotency_key: key("profile"),
                workspace_id: OVERFLOW_WORKSPACE.into(),
                actor_account_id: "bench-owner".into(),
                profile_id: "bench-pool".into(),
                name: "Bench pool users".into(),
                pool_access: true,
                ..Default::default()
            })
            .await,
    )
    .await?;
    let members: Vec<String> = (0..max_clients).map(|client| format!("bench-member-{client}")).collect();
    for (i, chunk) in members.chunks(1_000).enumerate() {
        call_ok(
            admin
                .assign_profile_members(AssignProfileMembersRequest {
                    idempotency_key: key(&format!("assign-{i}")),
                    workspace_id: OVERFLOW_WORKSPACE.into(),
                    actor_account_id: "bench-owner".into(),
                    profile_id: "bench-pool".into(),
                    account_ids: chunk.to_vec(),
                })
                .await,
        )
        .await?;
    }
    Ok(())
}

async fn call_ok<T>(result: Result<T, tonic::Status>) -> anyhow::Result<T> {
    result.map_err(|status| anyhow::anyhow!("set-up call failed: {status}"))
}

/// Creates the owner, the workspaces and a member per client seat.
async fn set_up(
    admin: &mut AdminServiceClient<Intercepted>,
    max_clients: usize,
    spread_workspaces: usize,
) -> anyhow::Result<()> {
    let key = |what: &str| format!("bench-setup-{what}");
    call_ok(
        admin
            .create_account(CreateAccountRequest { idempotency_key: key("owner"), account_id: "bench-owner".into() })
            .await,
    )
    .await?;
    call_ok(
        admin
            .set_account_plan(SetAccountPlanRequest {
                idempotency_key: key("plan"),
                account_id: "bench-owner".into(),
                monthly_credits: 1_000_000_000_000,
                billing_anchor: None,
            })
            .await,
    )
    .await?;
    let mut workspaces: Vec<String> = (0..spread_workspaces).map(|i| format!("bench-spread-{i}")).collect();
    workspaces.push("bench-hot".into());
    workspaces.push(OVERFLOW_WORKSPACE.into());
    for workspace in &workspaces {
        call_ok(
            admin
                .create_workspace(CreateWorkspaceRequest {
                    idempotency_key: key(workspace),
                    workspace_id: workspace.clone(),
                    owner_account_id: "bench-owner".into(),
                })
                .await,
        )
        .await?;
        call_ok(
            admin
                .set_pool_size(SetPoolSizeRequest {
                    idempotency_key: key(&format!("pool-{workspace}")),
                    workspace_id: workspace.clone(),
                    actor_account_id: "bench-owner".into(),
                    pool_size_credits: 10_000_000_000,
                })
                .await,
        )
        .await?;
    }
    for client in 0..max_clients {
        let member = format!("bench-member-{client}");
        call_ok(
            admin
                .create_account(CreateAccountRequest { idempotency_key: key(&member), account_id: member.clone() })
                .await,
        )
        .await?;
        for scenario in ["spread", "hot", "overflow"] {
            let (workspace, _) = seat(scenario, client, spread_workspaces);
            call_ok(
                admin
                    .add_member(AddMemberRequest {
                        idempotency_key: key(&format!("add-{scenario}-{member}")),
                        workspace_id: workspace.clone(),
                        actor_account_id: "bench-owner".into(),
                        account_id: member.clone(),
                        role: Role::Editor.into(),
                    })
                    .await,
            )
            .await?;
            call_ok(
                admin
                    .set_member_allowance(SetMemberAllowanceRequest {
                        idempotency_key: key(&format!("allow-{scenario}-{member}")),
                        workspace_id: workspace,
                        actor_account_id: "bench-owner".into(),
                        account_id: member.clone(),
                        // Overflow members have spent their allowance before they start.
                        monthly_allowance_credits: if scenario == "overflow" { 0 } else { 10_000_000 },
                        top_up_allowance_credits: 0,
                    })
                    .await,
            )
            .await?;
        }
    }
    Ok(())
}

/// Runs the benchmark and prints its table.
pub async fn run(options: BenchOptions) -> anyhow::Result<()> {
    let max_clients = options.clients.iter().copied().max().unwrap_or(1);
    anyhow::ensure!(options.spread_workspaces >= 1, "--spread-workspaces must be at least 1");
    let scratch = format!("creditpool_bench_{}", std::process::id());
    if options.database_url.starts_with("sqlite:") {
        let path = std::env::temp_dir().join(format!("{scratch}.db"));
        let url = SqliteStore::url_for_path(&path)?;
        let baseline = Baseline::Sqlite(SqliteStore::connect_lazy(&url, Duration::from_secs(60))?);
        let result = measure(&options, &url, max_clients, 1, baseline).await;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        return result;
    }
    postgres::create_database(&options.database_url, &scratch).await?;
    let scratch_url = postgres::with_database(&options.database_url, &scratch);
    // The service's pool and the baseline's pool are open at once; both must fit the server.
    let server_limit = postgres::max_connections(&options.database_url).await?;
    let connections = u32::try_from(max_clients).unwrap_or(u32::MAX).min(server_limit.saturating_sub(10) / 2).max(2);
    let settings = PoolSettings {
        max_connections: connections,
        acquire_timeout: Duration::from_secs(30),
        statement_timeout: Duration::from_secs(30),
        plan_cache_mode: crate::config::Config::default().postgres_plan_cache_mode.as_str(),
        one_statement_writes: crate::config::Config::default().postgres_one_statement_writes,
    };
    let baseline = Baseline::Postgres(PgStore::connect_lazy(&scratch_url, &settings)?);
    let result = measure(&options, &scratch_url, max_clients, connections, baseline).await;
    postgres::drop_database(&options.database_url, &scratch).await?;
    result
}

async fn measure(
    options: &BenchOptions,
    scratch_url: &str,
    max_clients: usize,
    connections: u32,
    direct: Baseline,
) -> anyhow::Result<()> {
    let auth_file = options.auth.then(bench_auth_file).transpose()?;
    let config = Config {
        listen_addr: "127.0.0.1:0".parse()?,
        database_url: Some(scratch_url.to_owned()),
        database_max_connections: connections,
        max_batch_calls: options.max_batch_calls,
        max_batch_scopes: options.max_batch_scopes,
        max_batch_transactions: options.max_batch_transactions,
        log_filter: "warn".into(),
        access_log: false,
        auth_file: auth_file.as_ref().map(|file| file.0.clone()),
        max_notification_streams: u32::try_from(options.idle_subscribers + 10).unwrap_or(u32::MAX),
        max_notification_streams_per_principal: u32::try_from(options.idle_subscribers + 10).unwrap_or(u32::MAX),
        ..Config::default()
    };
    let listener = tokio::net::TcpListener::bind(config.listen_addr).await?;
    let address = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(crate::server::serve(config.clone(), listener, shutdown.clone()));
    let channel = Channel::from_shared(format!("http://{address}"))?.connect().await?;
    let token = Token(options.auth.then(|| format!("Bearer {BENCH_TOKEN}").parse()).transpose()?);
    let mut admin = AdminServiceClient::with_interceptor(channel.clone(), token.clone());
    set_up(&mut admin, max_clients, options.spread_workspaces).await?;
    set_up_overflow(&mut admin, max_clients).await?;
    if options.preload_journal > 0 {
        let started = Instant::now();
        direct.preload(options.preload_journal, options.spread_workspaces, SystemClock.now_ms()).await?;
        println!(
            "Preloaded {} journal entries and {} charges and idempotency records in {:.1} s (checkpointed, no statistics gathered)",
            options.preload_journal,
            options.preload_journal / 10,
            started.elapsed().as_secs_f64()
        );
    }
    // One HTTP/2 connection per client, as separate backends would have.
    let mut clients = Vec::new();
    for _ in 0..max_clients {
        let channel = Channel::from_shared(format!("http://{address}"))?.connect().await?;
        clients.push(CreditServiceClient::with_interceptor(channel, token.clone()));
    }
    let clients = Arc::new(clients);
    // Idle subscribers watch a workspace nobody writes to, so they receive nothing.
    let mut idle = Vec::with_capacity(options.idle_subscribers);
    for _ in 0..options.idle_subscribers {
        let request = WatchNotificationsRequest { workspace_id: "bench-nobody".into(), ..Default::default() };
        idle.push(admin.watch_notifications(request).await?.into_inner());
    }

    // The store may run fewer batches at once than configured (SQLite: one writer).
    let configured = usize::try_from(options.max_batch_transactions).unwrap_or(usize::MAX);
    let in_flight = match &direct {
        Baseline::Postgres(store) => store.batches_in_flight(configured),
        Baseline::Sqlite(store) => store.batches_in_flight(configured),
    };
    println!(
        "creditpool bench on {}, authentication {}, {} idle subscribers: {} s per run, {} spread workspaces, batches of up to {} calls of up to {} scopes, {} in flight, pools of {} connections",
        if scratch_url.starts_with("sqlite:") { "sqlite" } else { "postgres" },
        if options.auth { "on (bearer token)" } else { "off" },
        options.idle_subscribers,
        options.seconds,
        options.spread_workspaces,
        options.max_batch_calls,
        options.max_batch_scopes,
        in_flight,
        connections
    );
    println!(
        "{:<8} {:>7} | {:>10} {:>8} {:>8} {:>8} | {:>10} {:>8} {:>8} {:>8} | {:>7}",
        "scenario",
        "clients",
        "service/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "direct/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "ratio"
    );
    let duration = Duration::from_secs(options.seconds);
    let chosen =
        [Scenario::Spread, Scenario::Hot, Scenario::Overflow].into_iter().filter(|s| options.scenarios.contains(s));
    for scenario in chosen.map(Scenario::name) {
        for &count in &options.clients {
            let run_id = format!("{scenario}-{count}");
            let replayed_run = run_id.clone();
            let spread = options.spread_workspaces;
            let service_calls = Arc::clone(&clients);
            let service_run_id = run_id.clone();
            let service: Call = Arc::new(move |client, n| {
                let mut credit = service_calls[client].clone();
                let (workspace, member) = seat(scenario, client, spread);
                let key = format!("svc-{service_run_id}-{client}-{n}");
                Box::pin(async move {
                    credit
                        .consume(ConsumeRequest {
                            idempotency_key: key,
                            account_id: member,
                            workspace_id: workspace,
                            amount_credits: 1,
                            allow_overflow: false,
                        })
                        .await
                        .is_ok()
                })
            });
            let service_run = drive(count, duration, service).await?;
            let store = direct.clone();
            let baseline = if scenario == "overflow" { "hot" } else { scenario };
            let direct_call: Call = Arc::new(move |client, n| {
                let store = store.clone();
                let (workspace, member) = seat(baseline, client, spread);
                let key = format!("sql-{run_id}-{client}-{n}");
                Box::pin(async move {
                    matches!(store.consume(&workspace, &member, &key, SystemClock.now_ms()).await, Ok(true))
                })
            });
            let direct_run = drive(count, duration, direct_call).await?;
            println!(
                "{:<8} {:>7} | {:>10.0} {:>8.2} {:>8.2} {:>8.2} | {:>10.0} {:>8.2} {:>8.2} {:>8.2} | {:>6.2}x{}",
                scenario,
                count,
                service_run.per_second(),
                service_run.ms(0.50),
                service_run.ms(0.95),
                service_run.ms(0.99),
                direct_run.per_second(),
                direct_run.ms(0.50),
                direct_run.ms(0.95),
                direct_run.ms(0.99),
                service_run.per_second() / direct_run.per_second().max(f64::MIN_POSITIVE),
                if service_run.failed + direct_run.failed > 0 {
                    format!("  ({} service / {} direct calls failed)", service_run.failed, direct_run.failed)
                } else {
                    String::new()
                }
            );
            if scenario == "hot" {
                let replays = replay_storm(&clients, count, duration, &replayed_run).await?;
                println!(
                    "{:<8} {:>7} | {:>10.0} {:>8.2} {:>8.2} {:>8.2} | {:>45} | {:>6.2}x{}",
                    "replay",
                    count,
                    replays.per_second(),
                    replays.ms(0.50),
                    replays.ms(0.95),
                    replays.ms(0.99),
                    "of the hot first calls above:",
                    replays.per_second() / service_run.per_second().max(f64::MIN_POSITIVE),
                    if replays.failed > 0 { format!("  ({} calls failed)", replays.failed) } else { String::new() }
                );
            }
        }
    }
    let mixed_counts = if options.scenarios.contains(&Scenario::Mixed) { options.clients.as_slice() } else { &[] };
    for &count in mixed_counts {
        let mixed = mixed_run(&clients, count, duration, options.spread_workspaces).await?;
        println!(
            "{:<8} {:>7} | {:>10.0} {:>8.2} {:>8.2} {:>8.2} | {:>45} | {:>7}{}",
            "mixed",
            count,
            mixed.per_second(),
            mixed.ms(0.50),
            mixed.ms(0.95),
            mixed.ms(0.99),
            "calls/s of all kinds, on the spread seats",
            "",
            if mixed.failed > 0 { format!("  ({} calls failed)", mixed.failed) } else { String::new() }
        );
    }
    // The server shares this process with the clients and the baseline, so this bounds its
    // memory from above.
    if let Some(peak) = peak_resident_kib() {
        println!(
            "Peak resident memory of this process (server, clients and baseline): {:.1} MiB",
            peak as f64 / 1024.0
        );
    }
    let check = admin.verify_ledger(VerifyLedgerRequest {}).await?.into_inner();
    println!(
        "VerifyLedger after the runs: {} ({} journal entries, {} buckets)",
        if check.clean { "clean" } else { "DISCREPANCIES" },
        check.entries_checked,
        check.buckets_checked
    );
    drop(idle);
    shutdown.cancel();
    server.await??;
    direct.close().await;
    anyhow::ensure!(check.clean, "the ledger does not verify: {:?}", check.discrepancies);
    Ok(())
}
