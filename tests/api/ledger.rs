//! L1: every balance change is a journal entry, and VerifyLedger notices when one is not.

use creditpool::proto::*;

use rstest::rstest;

use crate::helpers::{Backend, spawn_app};

/// A journal row: from bucket, from owner, to bucket, to owner, amount, cause.
type JournalRow = (String, Option<String>, String, Option<String>, i64, String);

#[rstest]
#[tokio::test]
async fn l1_every_balance_change_is_a_journal_entry(#[values(Backend::Postgres, Backend::Sqlite)] backend: Backend) {
    let app = spawn_app(backend).await;

    app.design_example().await;

    let entries: Vec<JournalRow> = sqlx::query_as(
        "SELECT from_bucket, from_owner_id, to_bucket, to_owner_id, amount_credits, cause FROM journal_entries ORDER BY entry_id",
    )
    .fetch_all(&app.db)
    .await
    .expect("journal");
    assert_eq!(
        entries,
        vec![
            ("external".into(), None, "account_monthly".into(), Some("owner".into()), 1_000, "plan_grant".into()),
            (
                "account_monthly".into(),
                Some("owner".into()),
                "workspace_monthly".into(),
                Some("team".into()),
                500,
                "pool_funding".into()
            ),
        ]
    );
    let check = app.admin.clone().verify_ledger(VerifyLedgerRequest {}).await.expect("verify").into_inner();
    assert!(check.clean);
    assert_eq!(check.entries_checked, 2);
    assert!(check.buckets_checked >= 2 * 4 + 2, "four accounts and one workspace, two buckets each");
}

#[rstest]
#[tokio::test]
async fn l1_verify_ledger_reports_a_balance_that_differs_from_its_journal(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.design_example().await;

    sqlx::query("UPDATE workspaces SET monthly_pool_credits = monthly_pool_credits + 7 WHERE workspace_id = 'team'")
        .execute(&app.db)
        .await
        .expect("tamper");
    let check = app.admin.clone().verify_ledger(VerifyLedgerRequest {}).await.expect("verify").into_inner();

    assert!(!check.clean);
    assert_eq!(
        check.discrepancies,
        vec![LedgerDiscrepancy {
            bucket: "workspace_monthly".into(),
            owner_id: "team".into(),
            recorded_credits: 507,
            journal_credits: 500,
        }]
    );
}

#[rstest]
#[tokio::test]
async fn l1_every_journal_entry_carries_its_scope_key_even_the_forfeit_of_a_refund_after_a_renewal(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.hot_path_example().await;
    app.consume("before-renewal", "member-a", "team", 100).await.expect("consume");
    let period = crate::helpers::next_period(&app.account("owner").await.current_period);
    app.renew("owner", &period).await.expect("renew");

    let refund = app.refund("before-renewal", "member-a", "team", None).await.expect("refund");
    let unkeyed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM journal_entries WHERE ledger_scope_id = ''")
        .fetch_one(&app.db)
        .await
        .expect("journal");
    let forfeit_scopes: Vec<String> = sqlx::query_scalar(
        "SELECT ledger_scope_id FROM journal_entries WHERE from_bucket = 'consumed' AND to_bucket = 'expired'",
    )
    .fetch_all(&app.db)
    .await
    .expect("journal");

    assert_eq!(refund.forfeited_credits, 100, "the monthly part drawn before the renewal is forfeited");
    assert_eq!(unkeyed, 0, "no journal entry lacks its scope key");
    assert_eq!(forfeit_scopes, vec!["team".to_owned()], "the forfeit lives with its workspace");
    app.assert_ledger_clean().await;
}
