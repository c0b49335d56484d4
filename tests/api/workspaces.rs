//! W1–W3: workspace pool set-up and funding.

use creditpool::proto::*;
use tonic::Code;

use rstest::rstest;

use crate::helpers::{Backend, assert_error, key, spawn_app};

fn split(response_parts: &[SplitPart]) -> Vec<(Bucket, i64)> {
    response_parts.iter().map(|part| (part.bucket(), part.amount_credits)).collect()
}

#[rstest]
#[tokio::test]
async fn creating_a_workspace_makes_its_owner_the_owner_member(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.create_account("owner").await;

    let workspace = app.create_workspace("team", "owner").await;

    assert_eq!(workspace.owner_account_id, "owner");
    assert_eq!((workspace.pool_size_credits, workspace.monthly_pool_credits, workspace.top_up_pool_credits), (0, 0, 0));
    let members = app.members("team").await;
    assert_eq!(members.len(), 1);
    assert_eq!((members[0].account_id.as_str(), members[0].role()), ("owner", Role::Owner));
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn w1_setting_up_the_pool_moves_credits_from_the_owner_now_monthly_first_then_top_up(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.create_account_with_plan("owner", 300).await;
    app.admin
        .clone()
        .add_account_credits(AddAccountCreditsRequest {
            idempotency_key: key(),
            account_id: "owner".into(),
            amount_credits: 400,
        })
        .await
        .expect("buy");
    app.create_workspace("team", "owner").await;

    let response = app.set_pool_size("team", "owner", 500).await.expect("pool size");

    assert_eq!(response.funded_credits, 500);
    assert_eq!(split(&response.funded_from), vec![(Bucket::AccountMonthly, 300), (Bucket::AccountTopUp, 200)]);
    let workspace = response.workspace.expect("workspace");
    assert_eq!((workspace.pool_size_credits, workspace.monthly_pool_credits), (500, 500));
    let owner = app.account("owner").await;
    assert_eq!((owner.monthly_credits, owner.top_up_credits), (0, 200));
    assert_eq!(owner.owned_pool_size_credits, 500);
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn w1_raising_the_pool_moves_only_the_difference_and_lowering_waits_for_renewal(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.create_account_with_plan("owner", 1_000).await;
    app.create_workspace("team", "owner").await;
    app.set_pool_size("team", "owner", 400).await.expect("400");

    let raised = app.set_pool_size("team", "owner", 600).await.expect("600");
    let lowered = app.set_pool_size("team", "owner", 100).await.expect("100");

    assert_eq!(raised.funded_credits, 200);
    assert_eq!(lowered.funded_credits, 0);
    let workspace = lowered.workspace.expect("workspace");
    assert_eq!((workspace.pool_size_credits, workspace.monthly_pool_credits), (100, 600), "current pool untouched");
    assert_eq!(app.account("owner").await.monthly_credits, 400);
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn w2_two_pools_of_500_fit_a_1000_plan_and_a_third_of_1_is_refused(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.create_account_with_plan("owner", 1_000).await;
    for workspace in ["one", "two", "three"] {
        app.create_workspace(workspace, "owner").await;
    }

    app.set_pool_size("one", "owner", 500).await.expect("first 500");
    app.set_pool_size("two", "owner", 500).await.expect("second 500");
    let before = app.snapshot().await;
    let third = app.set_pool_size("three", "owner", 1).await;

    let status = assert_error(third, Code::FailedPrecondition, "pool_size_credits");
    assert!(status.message().contains("1001"), "{}", status.message());
    assert_eq!(app.snapshot().await, before, "a refused change changes nothing");
    assert_eq!(app.workspace("three").await.pool_size_credits, 0);
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn w2_top_up_credits_spent_on_funding_now_do_not_count_for_the_renewal(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.create_account_with_plan("owner", 1_000).await;
    app.buy("owner", 200).await;
    app.create_workspace("team", "owner").await;
    let before = app.snapshot().await;

    // Funding 1,200 now takes monthly 1,000 and top-up 200: at renewal only the plan's 1,000 is
    // there, so the next renewal could never fund this pool.
    let refused = app.set_pool_size("team", "owner", 1_200).await;

    assert_error(refused, Code::FailedPrecondition, "pool_size_credits");
    assert_eq!(app.snapshot().await, before, "a refused change changes nothing");
    app.set_pool_size("team", "owner", 1_000).await.expect("what the renewal can fund");
    assert_eq!(app.account("owner").await.top_up_credits, 200);
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn w2_pool_sizes_may_not_exceed_what_the_account_holds_at_renewal_even_when_it_could_fund_now(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.create_account_with_plan("owner", 1_000).await;
    app.admin
        .clone()
        .add_account_credits(AddAccountCreditsRequest {
            idempotency_key: key(),
            account_id: "owner".into(),
            amount_credits: 1_000,
        })
        .await
        .expect("buy");
    app.create_workspace("big", "owner").await;
    app.create_workspace("small", "owner").await;
    // Funded from monthly 1,000 and top-up 500: renewal capacity is now 1,000 + 500.
    app.set_pool_size("big", "owner", 1_500).await.expect("1500");

    let refused = app.set_pool_size("small", "owner", 100).await;

    assert_error(refused, Code::FailedPrecondition, "pool_size_credits");
    assert_eq!(app.account("owner").await.top_up_credits, 500, "it could have funded 100 now");
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn w1_a_pool_the_owner_cannot_fund_now_is_refused_as_insufficient_credits(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.create_account_with_plan("owner", 1_000).await;
    app.create_workspace("one", "owner").await;
    app.create_workspace("two", "owner").await;
    app.set_pool_size("one", "owner", 800).await.expect("800");
    app.set_pool_size("one", "owner", 100).await.expect("lowered for next renewal");

    let refused = app.set_pool_size("two", "owner", 500).await;

    let status = refused.expect_err("only 200 left");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.message().contains("insufficient credits"), "{}", status.message());
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn w3_a_manual_top_up_moves_owner_credits_into_the_top_up_pool(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.create_account_with_plan("owner", 100).await;
    app.admin
        .clone()
        .add_account_credits(AddAccountCreditsRequest {
            idempotency_key: key(),
            account_id: "owner".into(),
            amount_credits: 100,
        })
        .await
        .expect("buy");
    app.create_workspace("team", "owner").await;

    let response = app
        .admin
        .clone()
        .top_up_workspace(TopUpWorkspaceRequest {
            idempotency_key: key(),
            workspace_id: "team".into(),
            actor_account_id: "owner".into(),
            amount_credits: 150,
        })
        .await
        .expect("TopUpWorkspace")
        .into_inner();

    assert_eq!(split(&response.funded_from), vec![(Bucket::AccountMonthly, 100), (Bucket::AccountTopUp, 50)]);
    let workspace = response.workspace.expect("workspace");
    assert_eq!((workspace.top_up_pool_credits, workspace.monthly_pool_credits), (150, 0));
    let owner = app.account("owner").await;
    assert_eq!((owner.monthly_credits, owner.top_up_credits), (0, 50));
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn only_the_owner_sets_the_pool_size_and_tops_up(#[values(Backend::Postgres, Backend::Sqlite)] backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_account_with_plan("owner", 1_000).await;
    app.create_workspace("team", "owner").await;
    app.create_account("admin").await;
    app.add_member("team", "owner", "admin", Role::Admin).await.expect("admin");

    let pool = app.set_pool_size("team", "admin", 100).await;
    let top_up = app
        .admin
        .clone()
        .top_up_workspace(TopUpWorkspaceRequest {
            idempotency_key: key(),
            workspace_id: "team".into(),
            actor_account_id: "admin".into(),
            amount_credits: 10,
        })
        .await;

    assert_error(pool, Code::PermissionDenied, "actor_account_id");
    assert_error(top_up, Code::PermissionDenied, "actor_account_id");
    assert_eq!(app.account("owner").await.monthly_credits, 1_000);
    app.assert_ledger_clean().await;
}
