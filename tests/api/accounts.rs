//! A2, A3: account credits.

use creditpool::proto::*;

use rstest::rstest;

use crate::helpers::{Backend, key, spawn_app};

#[rstest]
#[tokio::test]
async fn a_new_account_has_no_credits_and_no_plan(#[values(Backend::Postgres, Backend::Sqlite)] backend: Backend) {
    let app = spawn_app(backend).await;

    let account = app.create_account("alice").await;

    assert_eq!((account.monthly_credits, account.top_up_credits), (0, 0));
    assert!(account.plan.is_none());
    assert_eq!(app.account("alice").await, account);
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn a2_buying_credits_adds_to_the_account_top_up_balance(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.create_account_with_plan("alice", 100).await;

    let bought = app
        .admin
        .clone()
        .add_account_credits(AddAccountCreditsRequest {
            idempotency_key: "payment-1".into(),
            account_id: "alice".into(),
            amount_credits: 250,
        })
        .await
        .expect("AddAccountCredits")
        .into_inner()
        .account
        .expect("account");

    assert_eq!((bought.monthly_credits, bought.top_up_credits), (100, 250));
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn a3_the_first_plan_starts_a_billing_period_and_grants_its_monthly_credits(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.create_account("alice").await;

    let response = app
        .admin
        .clone()
        .set_account_plan(SetAccountPlanRequest {
            idempotency_key: key(),
            account_id: "alice".into(),
            monthly_credits: 1_000,
            billing_anchor: Some(BillingAnchor { day_of_month: 21, hour_utc: 9, minute_utc: 30 }),
        })
        .await
        .expect("SetAccountPlan")
        .into_inner();

    let account = response.account.expect("account");
    assert_eq!(response.granted_credits, 1_000);
    assert_eq!(account.monthly_credits, 1_000);
    assert_eq!(account.current_period.len(), "YYYY-MM".len());
    assert!(account.period_started_at.is_some());
    let plan = account.plan.expect("plan");
    assert_eq!(plan.monthly_credits, 1_000);
    assert_eq!(plan.billing_anchor, Some(BillingAnchor { day_of_month: 21, hour_utc: 9, minute_utc: 30 }));
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn a3_a_later_plan_change_takes_effect_at_the_next_renewal(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.create_account_with_plan("alice", 1_000).await;

    let response = app
        .admin
        .clone()
        .set_account_plan(SetAccountPlanRequest {
            idempotency_key: key(),
            account_id: "alice".into(),
            monthly_credits: 300,
            billing_anchor: None,
        })
        .await
        .expect("SetAccountPlan")
        .into_inner();

    let account = response.account.expect("account");
    assert_eq!(response.granted_credits, 0);
    assert_eq!(account.monthly_credits, 1_000, "this period keeps its credits");
    let plan = account.plan.expect("plan");
    assert_eq!((plan.monthly_credits, plan.next_monthly_credits), (1_000, Some(300)));
    app.assert_ledger_clean().await;
}
