//! Citus: the tables are distributable, and (opt-in, against a real cluster) the scenarios run
//! on distributed tables.

use std::collections::{BTreeMap, BTreeSet};

use creditpool::store::postgres::DISTRIBUTE;
use sqlx::{Connection, PgConnection};

use crate::helpers::{Backend, spawn_app, spawn_app_with, spawn_local_app_with};
use crate::postgres::citus_url;

/// `DISTRIBUTE`'s tables: each distributed one with its column, reference tables with `None`.
fn distribution() -> BTreeMap<String, Option<String>> {
    let quoted = |text: &str| -> Vec<String> { text.split('\'').skip(1).step_by(2).map(str::to_owned).collect() };
    DISTRIBUTE
        .lines()
        .filter(|line| line.starts_with("SELECT "))
        .map(|line| {
            let names = quoted(line);
            if line.contains("create_reference_table") {
                (names[0].clone(), None)
            } else {
                assert!(line.contains("create_distributed_table"), "{line}");
                (names[0].clone(), Some(names[1].clone()))
            }
        })
        .collect()
}

/// Citus can distribute a table only if every unique constraint and every foreign key between
/// distributed tables includes the distribution column. Checked against the migrated schema, so a
/// later migration that breaks it fails here, on plain Postgres.
#[tokio::test]
async fn every_table_is_distributed_by_a_key_each_unique_constraint_and_foreign_key_includes() {
    // On the local server even with `CITUS_URL`: the check reads the `public` schema of a plain
    // migrated database, where on Citus each case's tables are in a schema of their own, already
    // distributed.
    let app = spawn_local_app_with(Backend::Postgres, |_| {}).await;
    let url = app.database_url.clone();
    let mut db = PgConnection::connect(&url).await.expect("connect");
    let plan = distribution();

    let tables: BTreeSet<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' AND tablename <> '_sqlx_migrations'",
    )
    .fetch_all(&mut db)
    .await
    .expect("tables")
    .into_iter()
    .collect();
    assert_eq!(tables, plan.keys().cloned().collect(), "every table, and only those, is distributed");

    let unique: Vec<(String, String, Vec<String>)> = sqlx::query_as(
        "SELECT t.relname::text, i.relname::text, \
                ARRAY(SELECT a.attname::text FROM unnest(ix.indkey) AS k(n) \
                      JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.n) \
         FROM pg_index ix JOIN pg_class t ON t.oid = ix.indrelid JOIN pg_class i ON i.oid = ix.indexrelid \
         JOIN pg_namespace n ON n.oid = t.relnamespace \
         WHERE n.nspname = 'public' AND ix.indisunique AND t.relname <> '_sqlx_migrations'",
    )
    .fetch_all(&mut db)
    .await
    .expect("unique indexes");
    assert!(unique.len() >= tables.len(), "{unique:?}");
    for (table, index, columns) in &unique {
        if let Some(Some(key)) = plan.get(table) {
            assert!(columns.contains(key), "{table}.{index} ({columns:?}) lacks the distribution column {key}");
        }
    }

    let foreign: Vec<(String, String, Vec<String>, Vec<String>)> = sqlx::query_as(
        "SELECT c.conrelid::regclass::text, c.confrelid::regclass::text, \
                ARRAY(SELECT a.attname::text FROM unnest(c.conkey) AS k(n) \
                      JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n), \
                ARRAY(SELECT a.attname::text FROM unnest(c.confkey) AS k(n) \
                      JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n) \
         FROM pg_constraint c WHERE c.contype = 'f'",
    )
    .fetch_all(&mut db)
    .await
    .expect("foreign keys");
    for (from, to, from_columns, to_columns) in &foreign {
        let (Some(Some(from_key)), Some(Some(to_key))) = (plan.get(from), plan.get(to)) else { continue };
        let position = from_columns.iter().position(|c| c == from_key);
        assert!(
            position.is_some() && to_columns.get(position.unwrap_or(0)) == Some(to_key),
            "{from}{from_columns:?} -> {to}{to_columns:?} does not pair the distribution columns"
        );
    }
    app.assert_ledger_clean().await;
}

/// Against a real Citus cluster: a workspace's hot path with replays on distributed tables, and
/// the ledger verifies clean. Needs `CITUS_URL`, a database on a Citus coordinator with workers
/// (see the README's scaling section); with it set, every Postgres case of the suite runs there,
/// each in a fresh schema migrated and distributed by `creditpool distribute`'s statements.
#[tokio::test]
#[ignore = "needs a Citus cluster: CITUS_URL=postgres://USER@COORDINATOR/DB cargo test --test api -- --include-ignored"]
async fn on_citus_the_distributed_tables_run_the_hot_path_and_the_ledger_verifies_clean() {
    assert!(citus_url().is_some(), "CITUS_URL names a database on a Citus coordinator");
    let app = spawn_app(Backend::Postgres).await;
    let distributed: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM pg_dist_partition WHERE logicalrelid::regclass::text NOT LIKE '%.%'")
            .fetch_one(&app.db)
            .await
            .expect("Citus's metadata");
    assert_eq!(distributed as usize, distribution().len(), "every table of the test's schema is distributed");
    app.design_example().await;
    let first = app.consume("citus-1", "member-a", "team", 25).await.expect("consume");
    assert_eq!(app.consume("citus-1", "member-a", "team", 25).await.expect("replay"), first);
    app.reserve("citus-hold", "member-a", "team", 30, 0).await.expect("hold");
    app.commit("citus-hold", "member-a", "team", 20).await.expect("commit");
    app.refund("citus-1", "member-a", "team", Some(5)).await.expect("refund");
    let charges: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM charges").fetch_one(&app.db).await.expect("count");
    assert_eq!(charges, 2);
    app.assert_ledger_clean().await;
}

/// The commands the coordinator sent to workers (`citus.log_remote_commands`, which Postgres
/// reports to the client as notices) from inside a hot-path batch's transaction.
#[derive(Clone, Default)]
struct RemoteCommands(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl<S> tracing_subscriber::Layer<S> for RemoteCommands
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_event(&self, event: &tracing::Event<'_>, context: tracing_subscriber::layer::Context<'_, S>) {
        struct Message(Option<String>);
        impl tracing::field::Visit for Message {
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                if field.name() == "message" {
                    self.0 = Some(value.to_owned());
                }
            }
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = Some(format!("{value:?}"));
                }
            }
        }
        let in_batch =
            context.event_scope(event).is_some_and(|mut spans| spans.any(|span| span.name() == "batch.commit"));
        if event.metadata().target() != "sqlx::postgres::notice" || !in_batch {
            return;
        }
        let mut message = Message(None);
        event.record(&mut message);
        if let Some(command) = message.0.and_then(|m| m.strip_prefix("issuing ").map(str::to_owned)) {
            self.0.lock().expect("commands").push(command);
        }
    }
}

/// On a real cluster, with the README's Citus settings: a workspace Consume is one transaction
/// on the one worker that holds the workspace's shards, committed in one phase. Every command the
/// coordinator issues for the batch names shards of one node, and none is `PREPARE TRANSACTION`.
#[tokio::test]
#[ignore = "needs a Citus cluster: CITUS_URL=postgres://USER@COORDINATOR/DB cargo test --test api -- --include-ignored"]
async fn on_citus_a_workspace_consume_runs_on_one_worker_and_commits_in_one_phase() {
    use tracing_subscriber::layer::SubscriberExt as _;
    assert!(citus_url().is_some(), "CITUS_URL names a database on a Citus coordinator");
    let app = spawn_app_with(Backend::Postgres, |config| {
        let url = config.database_url.take().expect("url");
        config.database_url = Some(format!("{url}&options[citus.log_remote_commands]=on"));
    })
    .await;
    app.design_example().await;
    let commands = RemoteCommands::default();
    // This test's runtime is one thread, so the server's tasks log to this subscriber too.
    let consumed = {
        let _capture = tracing::subscriber::set_default(tracing_subscriber::registry().with(commands.clone()));
        app.consume("one-shard", "member-a", "team", 25).await
    };
    consumed.expect("consume");
    let commands = commands.0.lock().expect("commands").clone();

    assert!(commands.iter().any(|c| c.starts_with("BEGIN")), "{commands:#?}");
    assert!(commands.iter().any(|c| c.trim_end_matches(';') == "COMMIT"), "a one-phase commit: {commands:#?}");
    assert!(!commands.iter().any(|c| c.contains("PREPARE TRANSACTION")), "two-phase commit: {commands:#?}");
    let shards: BTreeSet<String> = commands
        .iter()
        .flat_map(|c| c.split(|ch: char| !(ch.is_alphanumeric() || ch == '_' || ch == '.')))
        .filter_map(|word| word.rsplit_once('.').map(|(_, table)| table.to_owned()))
        .filter(|table| {
            table.rsplit_once('_').is_some_and(|(_, id)| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    let tables: BTreeSet<&str> =
        shards.iter().filter_map(|shard| shard.rsplit_once('_').map(|(table, _)| table)).collect();
    assert_eq!(tables.len(), shards.len(), "one shard a table: {shards:?}");
    for table in ["workspaces", "members", "charges", "journal_entries", "idempotency_records"] {
        assert!(tables.contains(table), "{table} written: {shards:?}");
    }
    let mut db = PgConnection::connect(&app.database_url).await.expect("connect");
    let nodes: Vec<(String, i32)> =
        sqlx::query_as("SELECT DISTINCT nodename::text, nodeport FROM citus_shards WHERE shardid = ANY($1)")
            .bind(shards.iter().filter_map(|shard| shard.rsplit_once('_')?.1.parse::<i64>().ok()).collect::<Vec<_>>())
            .fetch_all(&mut db)
            .await
            .expect("citus_shards");
    assert_eq!(nodes.len(), 1, "the shards {shards:?} are on {nodes:?}");
    app.assert_ledger_clean().await;
}
