//! The harness itself: concurrent test runs sharing one Postgres server or one temporary
//! directory (CI containers, a laptop running two suites) never remove each other's databases
//! or files, and a finished run's leftovers are removed by the next run.

use sqlx::{Connection as _, PgConnection};

use crate::postgres::{
    RUN_LOCK_CLASS, drop_databases_of_finished_runs, fresh_local_database, maintenance_url, recreate_database, run_id,
};
use crate::process::{hold_run_lock, remove_scratch_of_finished_runs, scratch_path};

/// Two run ids that are not this run's.
fn other_runs() -> (i32, i32) {
    let own = run_id();
    let live = if own == i32::MAX { 1 } else { own + 1 };
    let finished = if live == i32::MAX { 2 } else { live + 1 };
    (live, finished)
}

async fn database_exists(connection: &mut PgConnection, name: &str) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(name)
        .fetch_one(connection)
        .await
        .expect("pg_database")
}

#[tokio::test]
async fn cleanup_drops_the_databases_of_finished_runs_and_keeps_those_of_live_runs_wherever_they_run() {
    let own = fresh_local_database().await;
    let own = own.rsplit('/').next().expect("database name").to_owned();
    let (live, finished) = other_runs();
    // Another run, as in another container: its process id means nothing here, its lock does.
    let mut other_run = PgConnection::connect(&maintenance_url()).await.expect("connect");
    sqlx::query("SELECT pg_advisory_lock($1, $2)")
        .bind(RUN_LOCK_CLASS)
        .bind(live)
        .execute(&mut other_run)
        .await
        .expect("the other run's lock");
    let mut maintenance = PgConnection::connect(&maintenance_url()).await.expect("connect");
    let (live_db, finished_db) = (format!("creditpool_test_{live}_0"), format!("creditpool_test_{finished}_0"));
    for name in [&live_db, &finished_db] {
        recreate_database(&mut maintenance, name).await;
    }

    drop_databases_of_finished_runs(&mut maintenance).await;
    let after_first = (
        database_exists(&mut maintenance, &own).await,
        database_exists(&mut maintenance, &live_db).await,
        database_exists(&mut maintenance, &finished_db).await,
    );
    other_run.close().await.expect("the other run ends");
    let mut gone = false;
    for _ in 0..50 {
        // The server releases a closed session's locks as the backend exits.
        drop_databases_of_finished_runs(&mut maintenance).await;
        gone = !database_exists(&mut maintenance, &live_db).await;
        if gone {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    assert_eq!(after_first, (true, true, false), "(own, live run's, finished run's) databases after cleanup");
    assert!(gone, "once the other run ended its database went too");
}

#[test]
fn cleanup_removes_the_scratch_files_of_finished_runs_and_keeps_those_of_live_runs() {
    let (live, finished) = other_runs();
    let own_file = scratch_path("harness-own.db");
    let temp = std::env::temp_dir();
    let live_file = temp.join(format!("creditpool-test-{live}-harness.db"));
    let finished_file = temp.join(format!("creditpool-test-{finished}-harness.db"));
    let live_lock = hold_run_lock(live);
    for file in [&own_file, &live_file, &finished_file] {
        std::fs::write(file, b"x").expect("scratch file");
    }

    remove_scratch_of_finished_runs();
    let after_first = (own_file.exists(), live_file.exists(), finished_file.exists());
    drop(live_lock);
    remove_scratch_of_finished_runs();
    let after_second = live_file.exists();
    let _ = std::fs::remove_file(&own_file);

    assert_eq!(after_first, (true, true, false), "(own, live run's, finished run's) files after cleanup");
    assert!(!after_second, "once the other run ended its files went too");
}
