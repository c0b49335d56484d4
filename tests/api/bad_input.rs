//! Bad input gets a precise status and a message naming the field, and changes nothing.

use std::future::Future;

use creditpool::proto::*;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use rstest::rstest;

use crate::helpers::{Backend, TestApp, spawn_app};

/// Runs one refused call and checks its status, its message and that nothing changed.
pub(crate) async fn refused<T: std::fmt::Debug>(
    app: &TestApp,
    case: &str,
    call: impl Future<Output = Result<tonic::Response<T>, Status>>,
    code: Code,
    field: &str,
) {
    let before = app.snapshot().await;
    let status = match call.await {
        Ok(response) => panic!("{case}: expected {code:?}, got {response:?}"),
        Err(status) => status,
    };
    assert_eq!(status.code(), code, "{case}: {status:?}");
    assert!(
        status.message().starts_with(&format!("{field}:")),
        "{case}: message does not name {field}: {}",
        status.message()
    );
    assert!(status.get_details_error_info().is_some(), "{case}: no ErrorInfo");
    assert_eq!(app.snapshot().await, before, "{case}: the refused call changed something");
}

fn purchase(key: &str, account: &str, amount: i64) -> AddAccountCreditsRequest {
    AddAccountCreditsRequest { idempotency_key: key.into(), account_id: account.into(), amount_credits: amount }
}

fn pool(key: &str, workspace: &str, actor: &str, size: i64) -> SetPoolSizeRequest {
    SetPoolSizeRequest {
        idempotency_key: key.into(),
        workspace_id: workspace.into(),
        actor_account_id: actor.into(),
        pool_size_credits: size,
    }
}

fn member(key: &str, actor: &str, account: &str, role: i32) -> AddMemberRequest {
    AddMemberRequest {
        idempotency_key: key.into(),
        workspace_id: "team".into(),
        actor_account_id: actor.into(),
        account_id: account.into(),
        role,
    }
}

fn allowance(key: &str, actor: &str, account: &str, monthly: i64) -> SetMemberAllowanceRequest {
    SetMemberAllowanceRequest {
        idempotency_key: key.into(),
        workspace_id: "team".into(),
        actor_account_id: actor.into(),
        account_id: account.into(),
        monthly_allowance_credits: monthly,
        top_up_allowance_credits: 0,
    }
}

#[rstest]
#[tokio::test]
async fn bad_input_is_refused_precisely_and_changes_nothing(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.design_example().await;
    app.create_account("reviewer").await;
    app.add_member("team", "owner", "reviewer", Role::Reviewer).await.expect("reviewer");
    app.admin.clone().add_account_credits(purchase("used-key", "owner", 5)).await.expect("purchase");
    let mut admin = app.admin.clone();
    let long_id = "a".repeat(129);
    let invalid = Code::InvalidArgument;

    // Ids: empty, oversized, ill-formed.
    refused(
        &app,
        "empty account id",
        admin.create_account(CreateAccountRequest { idempotency_key: "k".into(), account_id: String::new() }),
        invalid,
        "account_id",
    )
    .await;
    refused(
        &app,
        "oversized account id",
        admin.create_account(CreateAccountRequest { idempotency_key: "k".into(), account_id: long_id.clone() }),
        invalid,
        "account_id",
    )
    .await;
    refused(
        &app,
        "ill-formed account id",
        admin.create_account(CreateAccountRequest { idempotency_key: "k".into(), account_id: "al ice".into() }),
        invalid,
        "account_id",
    )
    .await;
    refused(
        &app,
        "non-ASCII account id",
        admin.create_account(CreateAccountRequest { idempotency_key: "k".into(), account_id: "alicé".into() }),
        invalid,
        "account_id",
    )
    .await;
    refused(
        &app,
        "empty idempotency key",
        admin.create_account(CreateAccountRequest { idempotency_key: String::new(), account_id: "x".into() }),
        invalid,
        "idempotency_key",
    )
    .await;
    refused(
        &app,
        "oversized idempotency key",
        admin.create_account(CreateAccountRequest { idempotency_key: long_id.clone(), account_id: "x".into() }),
        invalid,
        "idempotency_key",
    )
    .await;
    refused(
        &app,
        "ill-formed workspace id",
        admin.get_workspace(GetWorkspaceRequest { workspace_id: "team/1".into() }),
        invalid,
        "workspace_id",
    )
    .await;
    refused(&app, "empty actor", admin.set_pool_size(pool("k", "team", "", 1)), invalid, "actor_account_id").await;

    // Amounts: zero, negative, oversized.
    refused(&app, "zero amount", admin.add_account_credits(purchase("k", "owner", 0)), invalid, "amount_credits").await;
    refused(&app, "negative amount", admin.add_account_credits(purchase("k", "owner", -5)), invalid, "amount_credits")
        .await;
    refused(
        &app,
        "oversized amount",
        admin.add_account_credits(purchase("k", "owner", 1_000_000_000_001)),
        invalid,
        "amount_credits",
    )
    .await;
    refused(
        &app,
        "negative pool size",
        admin.set_pool_size(pool("k", "team", "owner", -1)),
        invalid,
        "pool_size_credits",
    )
    .await;
    refused(
        &app,
        "oversized pool size",
        admin.set_pool_size(pool("k", "team", "owner", 1_000_000_000_001)),
        invalid,
        "pool_size_credits",
    )
    .await;
    refused(
        &app,
        "negative allowance",
        admin.set_member_allowance(allowance("k", "owner", "member-a", -1)),
        invalid,
        "monthly_allowance_credits",
    )
    .await;
    refused(
        &app,
        "negative plan",
        admin.set_account_plan(SetAccountPlanRequest {
            idempotency_key: "k".into(),
            account_id: "owner".into(),
            monthly_credits: -1,
            billing_anchor: None,
        }),
        invalid,
        "monthly_credits",
    )
    .await;
    refused(
        &app,
        "anchor on the 29th",
        admin.set_account_plan(SetAccountPlanRequest {
            idempotency_key: "k".into(),
            account_id: "owner".into(),
            monthly_credits: 1,
            billing_anchor: Some(BillingAnchor { day_of_month: 29, hour_utc: 0, minute_utc: 0 }),
        }),
        invalid,
        "billing_anchor",
    )
    .await;
    refused(
        &app,
        "zero top-up",
        admin.top_up_workspace(TopUpWorkspaceRequest {
            idempotency_key: "k".into(),
            workspace_id: "team".into(),
            actor_account_id: "owner".into(),
            amount_credits: 0,
        }),
        invalid,
        "amount_credits",
    )
    .await;

    // Roles.
    refused(
        &app,
        "unset role",
        admin.add_member(member("k", "owner", "reviewer-2", Role::Unspecified.into())),
        invalid,
        "role",
    )
    .await;
    refused(&app, "unknown role", admin.add_member(member("k", "owner", "reviewer-2", 99)), invalid, "role").await;
    refused(
        &app,
        "second owner",
        admin.add_member(member("k", "owner", "member-a", Role::Owner.into())),
        invalid,
        "role",
    )
    .await;

    // Unknown things.
    refused(
        &app,
        "unknown account",
        admin.get_account(GetAccountRequest { account_id: "nobody".into() }),
        Code::NotFound,
        "account_id",
    )
    .await;
    refused(
        &app,
        "purchase for unknown account",
        admin.add_account_credits(purchase("k", "nobody", 5)),
        Code::NotFound,
        "account_id",
    )
    .await;
    refused(
        &app,
        "workspace of unknown owner",
        admin.create_workspace(CreateWorkspaceRequest {
            idempotency_key: "k".into(),
            workspace_id: "new".into(),
            owner_account_id: "nobody".into(),
        }),
        Code::NotFound,
        "owner_account_id",
    )
    .await;
    refused(
        &app,
        "unknown workspace",
        admin.set_pool_size(pool("k", "nowhere", "owner", 1)),
        Code::NotFound,
        "workspace_id",
    )
    .await;
    refused(
        &app,
        "list of unknown workspace",
        admin.list_members(ListMembersRequest {
            workspace_id: "nowhere".into(),
            page_size: 0,
            page_token: String::new(),
        }),
        Code::NotFound,
        "workspace_id",
    )
    .await;
    refused(
        &app,
        "adding an unknown account",
        admin.add_member(member("k", "owner", "nobody", Role::Editor.into())),
        Code::NotFound,
        "account_id",
    )
    .await;
    refused(
        &app,
        "allowance of a non-member",
        admin.set_member_allowance(allowance("k", "owner", "reviewer-2", 1)),
        Code::NotFound,
        "account_id",
    )
    .await;

    // Wrong actor role.
    refused(
        &app,
        "editor sets allowance",
        admin.set_member_allowance(allowance("k", "member-a", "member-b", 1)),
        Code::PermissionDenied,
        "actor_account_id",
    )
    .await;
    refused(
        &app,
        "reviewer adds member",
        admin.add_member(member("k", "reviewer", "member-a", Role::Editor.into())),
        Code::PermissionDenied,
        "actor_account_id",
    )
    .await;
    refused(
        &app,
        "stranger sets pool",
        admin.set_pool_size(pool("k", "team", "member-zz", 1)),
        Code::PermissionDenied,
        "actor_account_id",
    )
    .await;

    // Duplicates and key reuse.
    refused(
        &app,
        "duplicate account",
        admin.create_account(CreateAccountRequest { idempotency_key: "fresh".into(), account_id: "owner".into() }),
        Code::AlreadyExists,
        "account_id",
    )
    .await;
    refused(
        &app,
        "duplicate workspace",
        admin.create_workspace(CreateWorkspaceRequest {
            idempotency_key: "fresh".into(),
            workspace_id: "team".into(),
            owner_account_id: "owner".into(),
        }),
        Code::AlreadyExists,
        "workspace_id",
    )
    .await;
    refused(
        &app,
        "duplicate member",
        admin.add_member(member("fresh", "owner", "member-a", Role::Editor.into())),
        Code::AlreadyExists,
        "account_id",
    )
    .await;
    refused(
        &app,
        "key reused for another amount",
        admin.add_account_credits(purchase("used-key", "owner", 6)),
        Code::AlreadyExists,
        "idempotency_key",
    )
    .await;

    // State forbids it.
    refused(
        &app,
        "allowance beyond the pool",
        admin.set_member_allowance(allowance("k", "owner", "member-c", 201)),
        Code::FailedPrecondition,
        "monthly_allowance_credits",
    )
    .await;
    refused(
        &app,
        "allowance for a reviewer",
        admin.set_member_allowance(allowance("k", "owner", "reviewer", 1)),
        Code::FailedPrecondition,
        "account_id",
    )
    .await;

    // Lists.
    refused(
        &app,
        "page too large",
        admin.list_members(ListMembersRequest {
            workspace_id: "team".into(),
            page_size: 1_001,
            page_token: String::new(),
        }),
        invalid,
        "page_size",
    )
    .await;
    refused(
        &app,
        "forged page token",
        admin.list_members(ListMembersRequest {
            workspace_id: "team".into(),
            page_size: 0,
            page_token: "not a token".into(),
        }),
        invalid,
        "page_token",
    )
    .await;

    app.assert_ledger_clean().await;
}

fn consume(key: &str, account: &str, workspace: &str, amount: i64) -> ConsumeRequest {
    ConsumeRequest {
        idempotency_key: key.into(),
        account_id: account.into(),
        workspace_id: workspace.into(),
        amount_credits: amount,
        ..Default::default()
    }
}

fn commit(key: &str, account: &str, amount: i64) -> CommitRequest {
    CommitRequest {
        reservation_key: key.into(),
        account_id: account.into(),
        workspace_id: "team".into(),
        amount_credits: amount,
        ..Default::default()
    }
}

fn release(key: &str, account: &str) -> ReleaseRequest {
    ReleaseRequest { reservation_key: key.into(), account_id: account.into(), workspace_id: "team".into() }
}

fn refund(consumption: &str, amount: Option<i64>) -> RefundRequest {
    RefundRequest {
        idempotency_key: "refund-key".into(),
        account_id: "member-a".into(),
        workspace_id: "team".into(),
        consumption_key: consumption.into(),
        amount_credits: amount,
    }
}

#[rstest]
#[tokio::test]
async fn hot_path_bad_input_is_refused_precisely_and_changes_nothing(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.hot_path_example().await;
    app.consume("gen-1", "member-a", "team", 50).await.expect("consumption");
    app.reserve("open-hold", "member-a", "team", 10, 0).await.expect("open hold");
    app.reserve("released-hold", "member-a", "team", 10, 0).await.expect("hold");
    app.release("released-hold", "member-a", "team").await.expect("release");
    app.reserve("committed-hold", "member-a", "team", 10, 0).await.expect("hold");
    app.commit("committed-hold", "member-a", "team", 10).await.expect("commit");
    let mut credit = app.credit.clone();
    let mut admin = app.admin.clone();
    let invalid = Code::InvalidArgument;

    // Amounts.
    refused(&app, "zero consume", credit.consume(consume("k", "member-a", "team", 0)), invalid, "amount_credits").await;
    refused(&app, "negative consume", credit.consume(consume("k", "member-a", "team", -1)), invalid, "amount_credits")
        .await;
    refused(
        &app,
        "oversized consume",
        credit.consume(consume("k", "member-a", "team", 1_000_000_000_001)),
        invalid,
        "amount_credits",
    )
    .await;
    refused(&app, "zero commit", credit.commit(commit("open-hold", "member-a", 0)), invalid, "amount_credits").await;
    refused(&app, "zero refund", credit.refund(refund("gen-1", Some(0))), invalid, "amount_credits").await;
    // Ids and keys.
    refused(&app, "empty consume key", credit.consume(consume("", "member-a", "team", 1)), invalid, "idempotency_key")
        .await;
    refused(
        &app,
        "ill-formed workspace",
        credit.consume(consume("k", "member-a", "te am", 1)),
        invalid,
        "workspace_id",
    )
    .await;
    refused(
        &app,
        "oversized hold key",
        credit.commit(commit(&"h".repeat(129), "member-a", 1)),
        invalid,
        "reservation_key",
    )
    .await;
    // TTL out of range.
    refused(
        &app,
        "ttl beyond the maximum",
        credit.reserve(ReserveRequest {
            reservation_key: "k".into(),
            account_id: "member-a".into(),
            workspace_id: "team".into(),
            amount_credits: 1,
            ttl_seconds: 86_401,
            ..Default::default()
        }),
        invalid,
        "ttl_seconds",
    )
    .await;
    // Unknown and foreign.
    refused(
        &app,
        "unknown workspace",
        credit.consume(consume("k", "member-a", "nowhere", 1)),
        Code::NotFound,
        "workspace_id",
    )
    .await;
    refused(
        &app,
        "unknown personal account",
        credit.consume(consume("k", "nobody", "", 1)),
        Code::NotFound,
        "account_id",
    )
    .await;
    refused(
        &app,
        "unknown hold key",
        credit.commit(commit("no-such-hold", "member-a", 1)),
        Code::NotFound,
        "reservation_key",
    )
    .await;
    refused(
        &app,
        "someone else's hold",
        credit.commit(commit("open-hold", "member-b", 1)),
        Code::NotFound,
        "reservation_key",
    )
    .await;
    refused(
        &app,
        "someone else's release",
        credit.release(release("open-hold", "member-b")),
        Code::NotFound,
        "reservation_key",
    )
    .await;
    refused(&app, "unknown consumption", credit.refund(refund("no-such-gen", None)), Code::NotFound, "consumption_key")
        .await;
    // State forbids it.
    refused(
        &app,
        "commit after release",
        credit.commit(commit("released-hold", "member-a", 1)),
        Code::FailedPrecondition,
        "reservation_key",
    )
    .await;
    refused(
        &app,
        "release after commit",
        credit.release(release("committed-hold", "member-a")),
        Code::FailedPrecondition,
        "reservation_key",
    )
    .await;
    refused(
        &app,
        "refund above the consumption",
        credit.refund(refund("gen-1", Some(51))),
        Code::FailedPrecondition,
        "amount_credits",
    )
    .await;
    refused(
        &app,
        "refund of an open hold",
        credit.refund(refund("open-hold", None)),
        Code::FailedPrecondition,
        "consumption_key",
    )
    .await;
    // Reads.
    refused(
        &app,
        "balance in unknown workspace",
        credit.get_balance(GetBalanceRequest { account_id: "member-a".into(), workspace_id: "nowhere".into() }),
        Code::NotFound,
        "workspace_id",
    )
    .await;
    refused(
        &app,
        "holds of nothing",
        admin.list_reservations(ListReservationsRequest {
            workspace_id: String::new(),
            account_id: String::new(),
            page_size: 0,
            page_token: String::new(),
        }),
        invalid,
        "workspace_id",
    )
    .await;
    refused(
        &app,
        "forged holds token",
        admin.list_reservations(ListReservationsRequest {
            workspace_id: "team".into(),
            account_id: String::new(),
            page_size: 0,
            page_token: "a|b".into(),
        }),
        invalid,
        "page_token",
    )
    .await;

    app.assert_ledger_clean().await;
}
