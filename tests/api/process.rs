//! The real `creditpool` binary as an operator runs it: a child process with its own settings,
//! its stderr kept in a file for the test to read.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use creditpool::proto::admin_service_client::AdminServiceClient;
use creditpool::proto::credit_service_client::CreditServiceClient;
use tokio::process::{Child, Command};
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Longest a process may take to start serving or to exit.
const PROCESS_DEADLINE: Duration = Duration::from_secs(30);

/// A free port on the loopback address, as `127.0.0.1:PORT`.
pub fn free_address() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
    format!("127.0.0.1:{port}")
}

/// A fresh path in the temporary directory, named after this test run (see [`remove_leftovers`]).
pub fn scratch_path(name: &str) -> PathBuf {
    static CLEANED: std::sync::Once = std::sync::Once::new();
    CLEANED.call_once(remove_leftovers);
    std::env::temp_dir().join(format!("{SCRATCH_PREFIX}{}-{name}", crate::postgres::run_id()))
}

/// A scratch directory named after this test run.
pub fn scratch_directory(name: &str) -> PathBuf {
    let directory = scratch_path(name);
    let _ = std::fs::remove_dir_all(&directory);
    std::fs::create_dir_all(&directory).expect("scratch directory");
    directory
}

const SCRATCH_PREFIX: &str = "creditpool-test-";

/// The lock file that marks a live run's scratch files.
fn run_lock_path(run: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{SCRATCH_PREFIX}run-{run}.lock"))
}

/// Takes this run's lock file (held until the process exits), then removes what finished runs
/// left behind.
fn remove_leftovers() {
    static OWN: std::sync::OnceLock<std::fs::File> = std::sync::OnceLock::new();
    let file = std::fs::File::create(run_lock_path(&crate::postgres::run_id().to_string())).expect("run lock file");
    file.lock().expect("lock the run's file");
    let _ = OWN.set(file);
    remove_scratch_of_finished_runs();
}

/// Removes the scratch files of runs whose lock file nobody holds: those runs are over, however
/// they ended (no process ids, which another container or macOS cannot check).
pub fn remove_scratch_of_finished_runs() {
    let own = crate::postgres::run_id().to_string();
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(SCRATCH_PREFIX) else { continue };
        let run = rest.strip_prefix("run-").and_then(|r| r.strip_suffix(".lock")).unwrap_or(rest);
        let run = run.split('-').next().unwrap_or_default();
        if run == own || run.is_empty() {
            continue;
        }
        let finished = match std::fs::File::open(run_lock_path(run)) {
            Ok(lock) => lock.try_lock().is_ok(),
            Err(_) => true,
        };
        if finished {
            let _ = std::fs::remove_dir_all(entry.path());
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Holds the scratch lock of run `run` while the returned file lives (as another run would).
pub fn hold_run_lock(run: i32) -> std::fs::File {
    let file = std::fs::File::create(run_lock_path(&run.to_string())).expect("run lock file");
    file.lock().expect("lock");
    file
}

/// `creditpool ARGS` with none of the caller's settings: no `DATABASE_URL`, `CREDITPOOL_*` or
/// `OTEL_*` variables leak in from the test's environment.
pub fn creditpool(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_creditpool"));
    command.args(args).kill_on_drop(true).stdin(Stdio::null());
    for (name, _) in std::env::vars() {
        if name == "DATABASE_URL" || name == "RUST_LOG" || name.starts_with("CREDITPOOL_") || name.starts_with("OTEL_")
        {
            command.env_remove(name);
        }
    }
    command
}

/// Runs `command` to its end and returns (success, stdout, stderr).
pub async fn run_to_end(mut command: Command) -> (bool, String, String) {
    let output = tokio::time::timeout(PROCESS_DEADLINE, command.output()).await.expect("exits in time").expect("runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A running `creditpool serve`.
pub struct ServerProcess {
    child: Child,
    stderr: PathBuf,
    /// AdminService client.
    pub admin: AdminServiceClient<Channel>,
    /// CreditService client.
    pub credit: CreditServiceClient<Channel>,
    /// Health client.
    pub health: HealthClient<Channel>,
    /// The connection, for clients with other credentials.
    pub channel: Channel,
}

impl ServerProcess {
    /// Starts `command` (a `serve` listening on `address`) and waits until it is ready.
    pub async fn start(command: Command, address: &str) -> ServerProcess {
        ServerProcess::start_with(command, address, None).await
    }

    /// [`ServerProcess::start`] for a server that speaks TLS, reached with `tls`.
    pub async fn start_with(
        mut command: Command,
        address: &str,
        tls: Option<tonic::transport::ClientTlsConfig>,
    ) -> ServerProcess {
        let stderr = scratch_path(&format!("{}.stderr", address.replace([':', '.'], "_")));
        command.stderr(std::fs::File::create(&stderr).expect("stderr file"));
        let child = command.spawn().expect("start creditpool serve");
        let deadline = Instant::now() + PROCESS_DEADLINE;
        let channel = loop {
            // The process binds its own port; retry until it accepts.
            match endpoint(address, tls.clone()).connect().await {
                Ok(channel) => break channel,
                Err(error) => assert!(
                    Instant::now() < deadline,
                    "the server never accepted: {error}; its log: {}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                ),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let mut health = HealthClient::new(channel.clone());
        loop {
            let status =
                health.check(HealthCheckRequest { service: "readiness".into() }).await.map(|r| r.into_inner().status());
            if status.as_ref().is_ok_and(|s| *s == ServingStatus::Serving) {
                break;
            }
            assert!(Instant::now() < deadline, "never ready: {status:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ServerProcess {
            child,
            stderr,
            admin: AdminServiceClient::new(channel.clone()),
            credit: CreditServiceClient::new(channel.clone()),
            health,
            channel,
        }
    }

    /// The process id.
    pub fn pid(&self) -> String {
        self.child.id().expect("pid").to_string()
    }

    /// Sends SIGTERM.
    pub async fn terminate(&self) {
        let kill = Command::new("kill").args(["-TERM", &self.pid()]).status().await.expect("kill");
        assert!(kill.success());
    }

    /// Waits for the exit, which must be a success. Returns what the process wrote to stderr.
    pub async fn wait(mut self) -> String {
        let exit =
            tokio::time::timeout(PROCESS_DEADLINE, self.child.wait()).await.expect("exits in time").expect("status");
        let log = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let _ = std::fs::remove_file(&self.stderr);
        assert!(exit.success(), "creditpool exited with {exit}: {log}");
        log
    }

    /// SIGKILL, and waits until the process is gone.
    pub async fn kill(mut self) {
        let kill = Command::new("kill").args(["-KILL", &self.pid()]).status().await.expect("kill");
        assert!(kill.success());
        tokio::time::timeout(PROCESS_DEADLINE, self.child.wait()).await.expect("dies in time").expect("status");
        let _ = std::fs::remove_file(&self.stderr);
    }

    /// SIGTERM, then [`ServerProcess::wait`].
    pub async fn stop(self) -> String {
        self.terminate().await;
        self.wait().await
    }
}

/// The endpoint of `address`: plaintext, or TLS with `tls`.
pub fn endpoint(address: &str, tls: Option<tonic::transport::ClientTlsConfig>) -> tonic::transport::Endpoint {
    match tls {
        Some(tls) => Channel::from_shared(format!("https://{address}")).expect("uri").tls_config(tls).expect("tls"),
        None => Channel::from_shared(format!("http://{address}")).expect("uri"),
    }
}

/// `serve` in `directory` on `address`, with the given extra environment.
pub fn serve_command(directory: &Path, address: &str, environment: &[(&str, &str)]) -> Command {
    let mut command = creditpool(&["serve", "--listen-addr", address]);
    command.current_dir(directory).envs(environment.iter().copied());
    command
}

/// The environment that points `serve` at a fresh database of `backend` (none for SQLite: the
/// embedded default in the working directory), plus quick shutdown for tests.
pub async fn database_environment(backend: crate::helpers::Backend) -> Vec<(&'static str, String)> {
    let mut environment = vec![("CREDITPOOL_SHUTDOWN_DRAIN_DELAY_MS", "0".to_owned())];
    if backend == crate::helpers::Backend::Postgres {
        environment.push(("CREDITPOOL_DATABASE_URL", crate::postgres::fresh_database().await));
    }
    environment
}

/// Through `admin`: account `owner` on a plan of `plan` credits, and its workspace `team` with a
/// pool of `pool`.
pub async fn owner_and_team(admin: &mut AdminServiceClient<Channel>, plan: i64, pool: i64) {
    use creditpool::proto::*;
    let key = crate::helpers::key;
    admin
        .create_account(CreateAccountRequest { idempotency_key: key(), account_id: "owner".into() })
        .await
        .expect("owner");
    admin
        .set_account_plan(SetAccountPlanRequest {
            idempotency_key: key(),
            account_id: "owner".into(),
            monthly_credits: plan,
            billing_anchor: None,
        })
        .await
        .expect("plan");
    admin
        .create_workspace(CreateWorkspaceRequest {
            idempotency_key: key(),
            workspace_id: "team".into(),
            owner_account_id: "owner".into(),
        })
        .await
        .expect("workspace");
    admin
        .set_pool_size(SetPoolSizeRequest {
            idempotency_key: key(),
            workspace_id: "team".into(),
            actor_account_id: "owner".into(),
            pool_size_credits: pool,
        })
        .await
        .expect("pool");
}
