//! `creditpool bench` as the README runs it: it must work and leave a ledger that verifies.
//! Nothing here asserts a speed.

use rstest::rstest;
use tokio::process::Command;

use crate::helpers::Backend;
use crate::postgres::maintenance_url;

#[rstest]
#[tokio::test]
async fn the_benchmark_prints_every_scenario_beside_direct_sql_and_its_ledger_verifies(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
    #[values(false, true)] auth: bool,
) {
    let url = match backend {
        Backend::Postgres => maintenance_url(),
        Backend::Sqlite => "sqlite:bench".to_owned(),
    };

    let mut arguments =
        vec!["bench", "--database-url", &url, "--seconds", "1", "--clients", "1,2", "--spread-workspaces", "2"];
    if auth {
        arguments.extend(["--auth", "--idle-subscribers", "20"]);
    } else {
        arguments.extend(["--preload-journal", "1000"]);
    }
    let bench = Command::new(env!("CARGO_BIN_EXE_creditpool"))
        .args(&arguments)
        .env("CREDITPOOL_LOG_FILTER", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start creditpool bench");
    let auth_file = std::env::temp_dir().join(format!("creditpool-bench-{}.toml", bench.id().expect("running")));
    let output = bench.wait_with_output().await.expect("run creditpool bench");

    let table = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "bench failed: {table}{}", String::from_utf8_lossy(&output.stderr));
    for row in [
        "spread         1 |",
        "spread         2 |",
        "hot            1 |",
        "hot            2 |",
        "replay         2 |",
        "overflow       2 |",
        "mixed          2 |",
    ] {
        assert!(table.contains(row), "row {row:?} missing from {table}");
    }
    assert!(table.contains("direct/s") && table.contains("ratio"), "{table}");
    assert!(table.contains("of the hot first calls above"), "the retry storm is measured: {table}");
    assert!(table.contains("Peak resident memory of this process"), "{table}");
    // The preloaded history is balanced: the ledger still verifies below.
    assert_eq!(table.contains("Preloaded 1000 journal entries and 100 charges"), !auth, "{table}");
    assert!(table.contains("VerifyLedger after the runs: clean"), "{table}");
    assert!(!table.contains("calls failed"), "every call is answered (authenticated when auth is on): {table}");
    assert!(table.contains(if auth { "authentication on" } else { "authentication off" }), "{table}");
    assert!(table.contains(if auth { "20 idle subscribers" } else { "0 idle subscribers" }), "{table}");
    assert!(!auth_file.exists(), "the run's auth file is removed: {}", auth_file.display());
}
