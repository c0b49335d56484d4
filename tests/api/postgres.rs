//! Finds a Postgres server for the tests, or starts a throwaway one.
//!
//! In order: `DATABASE_URL` if set; else a server on 127.0.0.1:5432 (user `postgres`); else a
//! throwaway cluster started from the installed PostgreSQL binaries, stopped when the test
//! process exits. `CREDITPOOL_TEST_POSTGRES=throwaway` skips straight to the throwaway cluster.
//! With none of these, the run fails and says how to get one: never a silent skip.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use sqlx::{Connection, PgConnection};

const LOCAL_SERVER: &str = "127.0.0.1:5432";
const TEST_DATABASE_PREFIX: &str = "creditpool_test_";

/// The URL of a database on the test server, without a database name's meaning: maintenance
/// connections use it as is, test databases replace its path.
fn server_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let forced = std::env::var("CREDITPOOL_TEST_POSTGRES").is_ok_and(|v| v == "throwaway");
        if !forced {
            if let Ok(url) = std::env::var("DATABASE_URL") {
                return url;
            }
            let local: SocketAddr = LOCAL_SERVER.parse().expect("literal address");
            if TcpStream::connect_timeout(&local, Duration::from_secs(2)).is_ok() {
                return format!("postgres://postgres@{LOCAL_SERVER}/postgres");
            }
        }
        start_throwaway_cluster().unwrap_or_else(|why| {
            panic!(
                "no Postgres for the tests: {why}.\n\
                 Set DATABASE_URL=postgres://USER@HOST:PORT/postgres to a server you may create databases on, \
                 run one on 127.0.0.1:5432 with user postgres and trust auth, \
                 or install the PostgreSQL server binaries (Debian: apt-get install postgresql) \
                 so the tests can start a throwaway cluster."
            )
        })
    })
}

use creditpool::store::postgres::with_database;

/// A URL for the maintenance database on the test server.
pub fn maintenance_url() -> String {
    with_database(server_url(), "postgres")
}

/// `pg_locks.classid` of the advisory locks that mark live test runs ("cred").
pub const RUN_LOCK_CLASS: i32 = 0x6372_6564;

/// This test run's id: it names the run's databases and its advisory lock, which a dedicated
/// connection holds for as long as the process lives. Another run, on this machine or in another
/// container sharing the server, sees the lock and leaves the databases alone; once the process
/// is gone (even killed), its connection closes, the lock goes, and a later run drops them.
pub fn run_id() -> i32 {
    static RUN: OnceLock<i32> = OnceLock::new();
    *RUN.get_or_init(|| {
        let url = maintenance_url();
        let (taken, answer) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async move {
                let mut connection = match PgConnection::connect(&url).await {
                    Ok(connection) => connection,
                    Err(error) => {
                        let _ = taken.send(Err(format!("cannot connect to the test Postgres at {url}: {error}")));
                        return;
                    }
                };
                loop {
                    let candidate = rand::random::<i32>().abs();
                    let locked: Result<bool, _> = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
                        .bind(RUN_LOCK_CLASS)
                        .bind(candidate)
                        .fetch_one(&mut connection)
                        .await;
                    match locked {
                        Ok(true) => break taken.send(Ok(candidate)).expect("the harness waits"),
                        Ok(false) => continue,
                        Err(error) => return drop(taken.send(Err(format!("cannot take the run lock: {error}")))),
                    }
                }
                // Held until the process exits.
                std::future::pending::<()>().await;
                drop(connection);
            });
        });
        answer.recv().expect("the run-lock thread answers").unwrap_or_else(|why| panic!("{why}"))
    })
}

/// The Citus coordinator database the Postgres cases run on, when `CITUS_URL` names one.
pub fn citus_url() -> Option<String> {
    std::env::var("CITUS_URL").ok().filter(|url| !url.is_empty())
}

/// The server the Postgres cases' databases are on: the Citus coordinator, or the local one.
pub fn database_server_url() -> String {
    citus_url().unwrap_or_else(maintenance_url)
}

/// A fresh database for one test's server, which migrates it: an empty database on the local
/// server, or with `CITUS_URL` set a schema in that Citus database, migrated and distributed.
pub async fn fresh_database() -> String {
    match citus_url() {
        Some(citus) => fresh_citus_schema(&citus, true).await,
        None => fresh_local_database().await,
    }
}

/// A fresh database nothing has migrated: as [`fresh_database`], but on Citus not migrated (nor
/// distributed).
pub async fn empty_database() -> String {
    match citus_url() {
        Some(citus) => fresh_citus_schema(&citus, false).await,
        None => fresh_local_database().await,
    }
}

/// A name for a test's database or schema, unique to this run.
async fn fresh_name() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let run = tokio::task::spawn_blocking(run_id).await.expect("run id");
    format!("{TEST_DATABASE_PREFIX}{run}_{}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Creates an empty database on the local test server (even with `CITUS_URL` set: for the tests
/// of the harness, of start-up, and of the database's own statistics) and returns its URL.
pub async fn fresh_local_database() -> String {
    static CLEANED: OnceLock<()> = OnceLock::new();
    let maintenance = maintenance_url();
    let mut connection = PgConnection::connect(&maintenance)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test Postgres at {maintenance}: {e}"));
    if CLEANED.set(()).is_ok() {
        drop_databases_of_finished_runs(&mut connection).await;
    }
    let name = fresh_name().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut connection)
        .await
        .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
    with_database(server_url(), &name)
}

/// A fresh schema in the Citus database `citus`, migrated and distributed by `creditpool
/// distribute`'s statements when `migrated`: the URL of a test's own distributed tables.
/// Connections through the URL resolve the tables in that schema, and a table gets four shards,
/// enough to spread a test's scopes over the workers without Citus's default 32 per table.
async fn fresh_citus_schema(citus: &str, migrated: bool) -> String {
    use creditpool::store::Store as _;
    static CLEANED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    let name = fresh_name().await;
    let mut connection = PgConnection::connect(citus)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the Citus coordinator {citus}: {e}"));
    CLEANED.get_or_init(|| drop_schemas_of_finished_runs(&mut connection)).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
        .execute(&mut connection)
        .await
        .unwrap_or_else(|e| panic!("cannot create test schema {name}: {e}"));
    let separator = if citus.contains('?') { '&' } else { '?' };
    let url = format!("{citus}{separator}options[search_path]={name}&options[citus.shard_count]=4");
    if migrated {
        let settings = creditpool::store::postgres::PoolSettings {
            max_connections: 1,
            acquire_timeout: Duration::from_secs(30),
            statement_timeout: Duration::from_secs(60),
            plan_cache_mode: "auto",
            one_statement_writes: false,
        };
        let store = creditpool::store::postgres::PgStore::connect_lazy(&url, &settings).expect("a Citus URL");
        store.migrate().await.unwrap_or_else(|e| panic!("cannot migrate test schema {name} on Citus: {e}"));
        creditpool::store::postgres::distribute(&url).await.unwrap_or_else(|e| panic!("cannot distribute {name}: {e}"));
    }
    url
}

/// Drops the Citus test schemas whose run no longer holds its lock on the local server (see
/// [`run_id`]), as [`drop_databases_of_finished_runs`] does for databases.
async fn drop_schemas_of_finished_runs(citus: &mut PgConnection) {
    let schemas: Vec<String> = sqlx::query_scalar("SELECT nspname::text FROM pg_namespace WHERE nspname LIKE $1")
        .bind(format!("{TEST_DATABASE_PREFIX}%"))
        .fetch_all(&mut *citus)
        .await
        .unwrap_or_default();
    // Listed before the locks are read: a run takes its lock before it makes its schemas.
    let mut local = PgConnection::connect(&maintenance_url()).await.expect("connect to the local test Postgres");
    for name in of_finished_runs(&mut local, schemas).await {
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {name} CASCADE")))
            .execute(&mut *citus)
            .await;
    }
}

/// Of the test databases or schemas `names` (`{TEST_DATABASE_PREFIX}{run}_{n}`), those whose run
/// no longer holds its lock on the local test server (`local`).
async fn of_finished_runs(local: &mut PgConnection, names: Vec<String>) -> Vec<String> {
    let Ok(live) = sqlx::query_scalar::<_, String>(
        "SELECT objid::text FROM pg_locks WHERE locktype = 'advisory' AND classid = $1 AND objsubid = 2",
    )
    .bind(RUN_LOCK_CLASS)
    .fetch_all(local)
    .await
    else {
        return Vec::new();
    };
    let run =
        |name: &str| name.strip_prefix(TEST_DATABASE_PREFIX).and_then(|rest| rest.split('_').next()).map(str::to_owned);
    names.into_iter().filter(|name| run(name).is_none_or(|run| !live.contains(&run))).collect()
}

/// Drops `name` if it exists and creates it empty.
pub async fn recreate_database(connection: &mut PgConnection, name: &str) {
    for statement in [format!("DROP DATABASE IF EXISTS {name}"), format!("CREATE DATABASE {name}")] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement.clone()))
            .execute(&mut *connection)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
}

/// Drops the test databases whose run no longer holds its lock (see [`run_id`]).
pub async fn drop_databases_of_finished_runs(connection: &mut PgConnection) {
    let names: Vec<String> = sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE $1")
        .bind(format!("{TEST_DATABASE_PREFIX}%"))
        .fetch_all(&mut *connection)
        .await
        .unwrap_or_default();
    // Listed before the locks are read: a run takes its lock before it makes its databases.
    for name in of_finished_runs(connection, names).await {
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
            .execute(&mut *connection)
            .await;
    }
}

fn postgres_bin_dir() -> Option<PathBuf> {
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if dir.join("initdb").exists() {
            return Some(dir);
        }
    }
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    candidates.sort();
    candidates.pop()
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Runs a PostgreSQL binary, as the `postgres` user when we are root (initdb refuses root).
fn run_as_postgres(bin: &Path, args: &[&str]) -> Result<(), String> {
    let mut command = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    };
    let output = command.args(args).output().map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("{} failed: {}", bin.display(), String::from_utf8_lossy(&output.stderr)))
    }
}

fn start_throwaway_cluster() -> Result<String, String> {
    start_cluster("pg", |_| Ok(String::new()))
}

/// A throwaway cluster that speaks only TLS, its certificate issued by a test CA for
/// 127.0.0.1, for the tests of Postgres over TLS: (`postgres://postgres@127.0.0.1:PORT`, CA).
pub fn tls_cluster() -> &'static (String, crate::pki::Pki) {
    static CLUSTER: OnceLock<(String, crate::pki::Pki)> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let pki = crate::pki::Pki::new("postgres");
        let (cert, key) = pki.issue("127.0.0.1");
        let url = start_cluster("pg-tls", |data| {
            std::fs::write(data.join("server.crt"), &cert).map_err(|e| e.to_string())?;
            std::fs::write(data.join("server.key"), &key).map_err(|e| e.to_string())?;
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n",
            )
            .map_err(|e| e.to_string())?;
            for file in ["server.crt", "server.key", "pg_hba.conf"] {
                hand_to_postgres(&data.join(file))?;
            }
            let status = Command::new("chmod").arg("600").arg(data.join("server.key")).status().map_err(|e| e.to_string())?;
            if !status.success() {
                return Err("cannot restrict the server key's mode".into());
            }
            Ok("-c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key".to_owned())
        })
        .unwrap_or_else(|why| panic!("cannot start a TLS Postgres for the test: {why} (needs the PostgreSQL server binaries: apt-get install postgresql)"));
        (url.trim_end_matches("/postgres").to_owned(), pki)
    })
}

/// Gives `path` to the `postgres` user when we are root (the server refuses files it does not own).
fn hand_to_postgres(path: &Path) -> Result<(), String> {
    if !is_root() {
        return Ok(());
    }
    let status = Command::new("chown").args(["postgres:postgres"]).arg(path).status().map_err(|e| e.to_string())?;
    if status.success() { Ok(()) } else { Err(format!("cannot hand {} to the postgres user", path.display())) }
}

/// Starts a cluster in a temporary directory named after `name`; `prepare` may write files into
/// its data directory before the start and returns extra server options.
fn start_cluster(name: &str, prepare: impl FnOnce(&Path) -> Result<String, String>) -> Result<String, String> {
    let bin = postgres_bin_dir().ok_or("no PostgreSQL server binaries found (initdb)")?;
    let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
    let dir = std::env::temp_dir().join(format!("creditpool-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    hand_to_postgres(&dir)?;
    let data = dir.join("data");
    let data_str = data.to_str().ok_or("temp path is not UTF-8")?;
    let dir_str = dir.to_str().ok_or("temp path is not UTF-8")?;
    run_as_postgres(&bin.join("initdb"), &["-D", data_str, "-U", "postgres", "--auth=trust", "--no-sync"])?;
    let extra = prepare(&data)?;
    let options =
        format!("-p {port} -k {dir_str} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=500 {extra}");
    let log = dir.join("postgres.log");
    run_as_postgres(
        &bin.join("pg_ctl"),
        &["-D", data_str, "-o", &options, "-l", log.to_str().unwrap_or("/dev/null"), "-w", "start"],
    )?;
    // Stops the cluster once this test process is gone.
    let pg_ctl = bin.join("pg_ctl");
    let stop = if is_root() {
        format!("runuser -u postgres -- {} -D {data_str} -m immediate stop", pg_ctl.display())
    } else {
        format!("{} -D {data_str} -m immediate stop", pg_ctl.display())
    };
    let watchdog =
        format!("while kill -0 {} 2>/dev/null; do sleep 1; done; {stop}; rm -rf {dir_str}", std::process::id());
    Command::new("sh")
        .args(["-c", &watchdog])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the cluster's watchdog: {e}"))?;
    eprintln!("started a throwaway Postgres on 127.0.0.1:{port} in {dir_str}");
    Ok(format!("postgres://postgres@127.0.0.1:{port}/postgres"))
}

/// A throwaway cluster of one test's own, to restart and kill (the database-fault tests).
pub struct FaultyCluster {
    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub url: String,
    bin: PathBuf,
    data: PathBuf,
    options: String,
}

impl FaultyCluster {
    /// Starts one; fails saying what is missing when the server binaries are not installed.
    pub fn start(name: &str) -> FaultyCluster {
        let options = std::cell::RefCell::new(None);
        let url = start_cluster(name, |data| {
            *options.borrow_mut() = Some(data.to_path_buf());
            Ok(String::new())
        })
        .unwrap_or_else(|why| {
            panic!("cannot start a Postgres cluster for the fault tests: {why} (apt-get install postgresql)")
        });
        let data = options.into_inner().expect("data directory");
        let dir = data.parent().expect("cluster directory").to_path_buf();
        let port = url.rsplit(':').next().and_then(|rest| rest.split('/').next()).expect("port").to_owned();
        FaultyCluster {
            url,
            bin: postgres_bin_dir().expect("the binaries it started with"),
            options: format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=500",
                dir.display()
            ),
            data,
        }
    }

    fn pg_ctl(&self, args: &[&str]) {
        let data = self.data.to_str().expect("UTF-8 path");
        let log = self.data.with_file_name("postgres.log");
        let mut all = vec!["-D", data, "-o", &self.options, "-l", log.to_str().expect("UTF-8 path")];
        all.extend_from_slice(args);
        run_as_postgres(&self.bin.join("pg_ctl"), &all).unwrap_or_else(|why| panic!("pg_ctl {args:?}: {why}"));
    }

    /// `pg_ctl restart -m fast`: every session is ended, the server comes back.
    pub fn restart_fast(&self) {
        self.pg_ctl(&["-w", "-m", "fast", "restart"]);
    }

    /// `pg_ctl stop -m immediate`: down at once, as after a crash.
    pub fn stop_immediately(&self) {
        self.pg_ctl(&["-w", "-m", "immediate", "stop"]);
    }

    /// SIGKILL to the postmaster; waits until its port refuses connections.
    pub fn kill_postmaster(&self) {
        let pid = std::fs::read_to_string(self.data.join("postmaster.pid")).expect("postmaster.pid");
        let pid = pid.lines().next().expect("pid line").trim().to_owned();
        assert!(Command::new("kill").args(["-KILL", &pid]).status().expect("kill").success());
        // The orphaned backends notice their postmaster is gone and exit.
        let address =
            self.url.trim_start_matches("postgres://postgres@").split('/').next().expect("address").to_owned();
        for _ in 0..100 {
            if TcpStream::connect_timeout(&address.parse().expect("address"), Duration::from_millis(100)).is_err()
                && !Command::new("pgrep")
                    .args(["-f", self.data.to_str().expect("UTF-8")])
                    .stdout(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts it again after a stop or a kill (after a kill, once the orphaned backends have
    /// let go of the shared memory).
    pub fn start_again(&self) {
        let data = self.data.to_str().expect("UTF-8 path");
        let log = self.data.with_file_name("postgres.log");
        let args = ["-D", data, "-o", &self.options, "-l", log.to_str().expect("UTF-8 path"), "-w", "start"];
        let mut last = String::new();
        for _ in 0..50 {
            match run_as_postgres(&self.bin.join("pg_ctl"), &args) {
                Ok(()) => return,
                Err(why) => last = why,
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("the cluster did not start again: {last}");
    }
}
