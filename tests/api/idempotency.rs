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
