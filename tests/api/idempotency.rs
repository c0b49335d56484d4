//! C7: every mutation is safe to retry.

use creditpool::proto::*;
use tonic::Code;
use tonic_types::StatusExt;

use rstest::rstest;

use crate::helpers::{Backend, assert_error, join_all, spawn_app};

fn purchase(key: &str, amount: i64) -> AddAccountCreditsRequest {
    AddAccountCreditsRequest { idempotency_key: key.into(), account_id: "alice".into(), amount_credits: amount }
}

#[rstest]
#[tokio::test]
async fn c7_the_same_key_and_request_returns_the_original_result_and_changes_nothing(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.create_account("alice").await;

    let first = app.admin.clone().add_account_credits(purchase("payment-1", 100)).await.expect("first").into_inner();
    let after_first = app.snapshot().await;
    let retry = app.admin.clone().add_account_credits(purchase("payment-1", 100)).await.expect("retry").into_inner();

    assert_eq!(retry, first);
    assert_eq!(app.snapshot().await, after_first);
    assert_eq!(app.account("alice").await.top_up_credits, 100);
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn c7_the_same_key_with_a_different_request_is_refused_naming_the_field(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.create_account("alice").await;
    app.admin.clone().add_account_credits(purchase("payment-1", 100)).await.expect("first");
    let before = app.snapshot().await;

    let different = app.admin.clone().add_account_credits(purchase("payment-1", 200)).await;

    let status = assert_error(different, Code::AlreadyExists, "idempotency_key");
    let info = status.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.reason, "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(info.metadata.get("differing_field").map(String::as_str), Some("amount_credits"));
    assert_eq!(app.snapshot().await, before);
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn c7_a_key_used_by_another_operation_in_the_same_scope_is_refused(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.create_account("alice").await;
    app.admin.clone().add_account_credits(purchase("shared-key", 100)).await.expect("purchase");

    let plan = app
        .admin
        .clone()
        .set_account_plan(SetAccountPlanRequest {
            idempotency_key: "shared-key".into(),
            account_id: "alice".into(),
            monthly_credits: 10,
            billing_anchor: None,
        })
        .await;

    let status = assert_error(plan, Code::AlreadyExists, "idempotency_key");
    assert_eq!(status.get_details_error_info().expect("info").metadata["differing_field"], "operation");
    assert!(app.account("alice").await.plan.is_none());
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c7_racing_replays_of_one_key_apply_once_and_all_get_the_same_answer(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.create_account("alice").await;

    let calls = (0..8).map(|_| {
        let mut admin = app.admin.clone();
        tokio::spawn(
            async move { admin.add_account_credits(purchase("payment-race", 100)).await.map(|r| r.into_inner()) },
        )
    });
    let answers: Vec<_> = join_all(calls).await;

    let first = answers[0].clone().expect("applied");
    assert!(answers.iter().all(|answer| answer.as_ref().ok() == Some(&first)), "{answers:?}");
    assert_eq!(app.account("alice").await.top_up_credits, 100);
    let entries: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM journal_entries").fetch_one(&app.db).await.expect("count");
    assert_eq!(entries, 1);
    app.assert_ledger_clean().await;
}

/// Stores an idempotency record as a release before the overflow pool wrote it.
async fn store_record(app: &crate::helpers::TestApp, key: &str, request: &str, response: &str) {
    sqlx::query(
        "INSERT INTO idempotency_records (scope_id, scope_kind, idempotency_key, request, response, created_at_ms) \
         VALUES ('team', 'workspace', $1, $2, $3, $4)",
    )
    .bind(key)
    .bind(request)
    .bind(response)
    .bind(
        i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()).unwrap(),
    )
    .execute(&app.db)
    .await
    .expect("old record");
}

#[rstest]
#[tokio::test]
async fn c7_records_stored_before_the_draw_chain_had_an_overflow_link_still_replay(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.design_example().await;
    // The shapes the release before the overflow pool stored: two-part splits, no units, no
    // allow_overflow in the request.
    store_record(
        &app,
        "Consume/old-job",
        r#"{"operation":"Consume","idempotency_key":"old-job","account_id":"member-a","workspace_id":"team","amount_credits":40}"#,
        r#"{"charge":{"key":"old-job","scope":{"Workspace":"team"},"account_id":"member-a","state":"Captured",
            "split":{"monthly":30,"top_up":10},"refunded":{"monthly":0,"top_up":0},"forfeited":0,"cycle":0,
            "created_at_ms":1000,"expires_at_ms":null},"given_back":{"returned":{"monthly":0,"top_up":0},"forfeited":0}}"#,
    )
    .await;
    store_record(
        &app,
        "old-size",
        r#"{"operation":"SetPoolSize","idempotency_key":"old-size","workspace_id":"team","actor_account_id":"owner","pool_size_credits":600}"#,
        r#"{"workspace":{"workspace":{"id":"team","owner":"owner","pool_size":600,"funded_pool_size":600,
            "monthly_pool_funded":true,"monthly_pool":600,"top_up_pool":0,"monthly_cycle":0,
            "thresholds":{"monthly_pool":0,"top_up_pool":0,"member_remaining_percent":10},"created_at_ms":1000},
            "monthly_reserved":300,"top_up_reserved":0},"change":{"funded":100,"draw":{"monthly":100,"top_up":0}}}"#,
    )
    .await;
    let before = app.snapshot().await;

    let replayed = app.consume("old-job", "member-a", "team", 40).await.expect("replay");
    let size = app
        .admin
        .clone()
        .set_pool_size(SetPoolSizeRequest {
            idempotency_key: "old-size".into(),
            workspace_id: "team".into(),
            actor_account_id: "owner".into(),
            pool_size_credits: 600,
        })
        .await
        .expect("replay")
        .into_inner();

    assert_eq!(
        crate::helpers::parts(&replayed.split),
        vec![(Bucket::WorkspaceMonthly, 30), (Bucket::WorkspaceTopUp, 10)]
    );
    assert_eq!(crate::helpers::parts(&size.funded_from), vec![(Bucket::AccountMonthly, 100)]);
    assert_eq!(app.snapshot().await, before, "a replay changes nothing");
    app.assert_ledger_clean().await;
}

/// Waits until `count` backends of the test's database wait for a lock.
async fn lock_waiters(app: &crate::helpers::TestApp, count: i64) {
    for _ in 0..500 {
        // On Citus the waiting is on the workers, in statements on this test's schema's shards.
        let statement = if crate::postgres::citus_url().is_some() {
            "SELECT COUNT(*) FROM citus_stat_activity WHERE wait_event_type = 'Lock' \
             AND query LIKE '%' || current_schema() || '.%'"
        } else {
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        };
        let waiting: i64 = sqlx::query_scalar(statement).fetch_one(&app.db).await.expect("pg_stat_activity");
        if waiting >= count {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{count} backends never waited for a lock");
}

/// A raw transaction that locks rows or holds an uncommitted insert, to stop a batch mid-way.
async fn blocker(app: &crate::helpers::TestApp, statement: &str) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let pool = sqlx::PgPool::connect(&app.database_url).await.expect("connect");
    let mut tx = pool.begin().await.expect("begin");
    sqlx::query(sqlx::AssertSqlSafe(statement.to_owned())).execute(&mut *tx).await.expect("blocking statement");
    tx
}

/// Defect 1 of the reliability review, staged step by step with row locks: replica B's batch
/// holding a replayed Consume and a Commit collides on the replay, and reruns carefully while the
/// original Commit, on replica A, is written but not yet committed. The rerun must answer the
/// Commit with the original's result, not "the hold is committed, not open".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c7_a_careful_rerun_replays_an_original_that_committed_on_another_replica_while_it_waited() {
    let a = spawn_app(Backend::Postgres).await;
    a.design_example().await;
    let b = a.spawn_replica().await;
    a.reserve("hold", "member-a", "team", 30, 0).await.expect("hold");
    let answered = a.consume("answered", "member-b", "team", 5).await.expect("first consume");

    let on_b =
        blocker(&b, "SELECT 1 FROM members WHERE workspace_id = 'team' AND account_id = 'member-c' FOR UPDATE").await;
    let on_a =
        blocker(&b, "SELECT 1 FROM members WHERE workspace_id = 'team' AND account_id = 'member-a' FOR UPDATE").await;
    // B's first batch holds the workspace and waits for member-c, so the next two calls queue
    // into one batch.
    let first_b = tokio::spawn({
        let credit = b.credit.clone();
        async move {
            let _ = credit
                .clone()
                .consume(ConsumeRequest {
                    idempotency_key: "filler".into(),
                    account_id: "member-c".into(),
                    workspace_id: "team".into(),
                    amount_credits: 1,
                    ..Default::default()
                })
                .await;
        }
    });
    lock_waiters(&a, 1).await;
    let b = std::sync::Arc::new(b);
    let replay_b = tokio::spawn({
        let b = std::sync::Arc::clone(&b);
        async move { b.consume("answered", "member-b", "team", 5).await }
    });
    let commit_b = tokio::spawn({
        let b = std::sync::Arc::clone(&b);
        async move { b.commit("hold", "member-a", "team", 20).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    on_b.rollback().await.expect("release member-c");
    first_b.await.expect("filler");
    // B's second batch now holds the workspace and waits for member-a; A's Commit queues behind.
    lock_waiters(&a, 1).await;
    let commit_a = tokio::spawn({
        let credit = a.credit.clone();
        async move {
            credit
                .clone()
                .commit(CommitRequest {
                    reservation_key: "hold".into(),
                    account_id: "member-a".into(),
                    workspace_id: "team".into(),
                    amount_credits: 20,
                    ..Default::default()
                })
                .await
                .map(tonic::Response::into_inner)
        }
    });
    lock_waiters(&a, 2).await;
    // A's Commit will stop at its idempotency record until this uncommitted twin is gone.
    let record = blocker(
        &a,
        "INSERT INTO idempotency_records (scope_id, scope_kind, idempotency_key, request, response, created_at_ms) \
         VALUES ('team', 'workspace', 'Commit/hold', '{}', NULL, 0)",
    )
    .await;
    on_a.rollback().await.expect("release member-a");
    // B's batch collides on the replayed consume and reruns; A takes the workspace and waits
    // at its record; B's rerun waits for the workspace.
    lock_waiters(&a, 2).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    record.rollback().await.expect("let A commit");

    let original = commit_a.await.expect("A").expect("the original commit");
    let retried = commit_b.await.expect("B").expect("the retry gets the original's answer");
    assert_eq!(retried, original);
    assert_eq!(replay_b.await.expect("B").expect("replay"), answered);
    let charges: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM charges WHERE charge_key = 'hold'")
        .fetch_one(&a.db)
        .await
        .expect("count");
    assert_eq!(charges, 1);
    a.assert_ledger_clean().await;
}
