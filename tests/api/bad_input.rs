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

fn create_profile(key: &str, actor: &str, id: &str, name: &str) -> CreateProfileRequest {
    CreateProfileRequest {
        idempotency_key: key.into(),
        workspace_id: "team".into(),
        actor_account_id: actor.into(),
        profile_id: id.into(),
        name: name.into(),
        pool_access: true,
        ..Default::default()
    }
}

fn assign(actor: &str, profile: &str, accounts: Vec<String>) -> AssignProfileMembersRequest {
    AssignProfileMembersRequest {
        idempotency_key: crate::helpers::key(),
        workspace_id: "team".into(),
        actor_account_id: actor.into(),
        profile_id: profile.into(),
        account_ids: accounts,
    }
}

fn overflow(
    actor: &str,
    quota: i64,
    num: i64,
    den: i64,
    limit: Option<i64>,
    period: &str,
) -> ConfigureOverflowPoolRequest {
    ConfigureOverflowPoolRequest {
        idempotency_key: crate::helpers::key(),
        workspace_id: "team".into(),
        actor_account_id: actor.into(),
        quota_units: quota,
        units_per_credit_num: num,
        units_per_credit_den: den,
        overage_limit_units: limit,
        enabled: true,
        contract_period: period.into(),
    }
}

fn at(seconds: i64, nanos: i32) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos })
}

#[rstest]
#[tokio::test]
async fn enterprise_bad_input_is_refused_precisely_and_changes_nothing(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.design_example().await;
    app.create_account("reviewer").await;
    app.add_member("team", "owner", "reviewer", Role::Reviewer).await.expect("reviewer");
    app.create_account("stranger").await;
    let mut admin = app.admin.clone();
    admin.create_profile(create_profile("p-key", "owner", "p", "Designers")).await.expect("profile p");
    admin.configure_overflow_pool(overflow("owner", 100, 1, 1, None, "2026")).await.expect("pool");
    let (invalid, missing, denied, taken) =
        (Code::InvalidArgument, Code::NotFound, Code::PermissionDenied, Code::AlreadyExists);
    let many: Vec<String> = (0..1_001).map(|i| format!("m{i}")).collect();

    // Profiles.
    for (case, request, code, field) in [
        ("no key", create_profile("", "owner", "q", "Q"), invalid, "idempotency_key"),
        ("bad id", create_profile("k1", "owner", "a b", "Q"), invalid, "profile_id"),
        ("empty name", create_profile("k2", "owner", "q", ""), invalid, "name"),
        ("long name", create_profile("k3", "owner", "q", &"n".repeat(257)), invalid, "name"),
        ("control in name", create_profile("k4", "owner", "q", "a\nb"), invalid, "name"),
        ("editor acts", create_profile("k5", "member-a", "q", "Q"), denied, "actor_account_id"),
        ("reviewer acts", create_profile("k6", "reviewer", "q", "Q"), denied, "actor_account_id"),
        ("taken id", create_profile("k7", "owner", "p", "Again"), taken, "profile_id"),
    ] {
        refused(&app, case, admin.create_profile(request), code, field).await;
    }
    let unknown_workspace =
        CreateProfileRequest { workspace_id: "nowhere".into(), ..create_profile("k8", "owner", "q", "Q") };
    refused(&app, "unknown workspace", admin.create_profile(unknown_workspace), missing, "workspace_id").await;
    let update = |profile: &str, actor: &str| UpdateProfileRequest {
        idempotency_key: crate::helpers::key(),
        workspace_id: "team".into(),
        actor_account_id: actor.into(),
        profile_id: profile.into(),
        pool_access: Some(false),
        ..Default::default()
    };
    refused(&app, "update unknown", admin.update_profile(update("nope", "owner")), missing, "profile_id").await;
    refused(&app, "update by editor", admin.update_profile(update("p", "member-a")), denied, "actor_account_id").await;
    let empty_name = UpdateProfileRequest { name: Some(String::new()), ..update("p", "owner") };
    refused(&app, "update to empty name", admin.update_profile(empty_name), invalid, "name").await;
    let delete = DeleteProfileRequest {
        idempotency_key: crate::helpers::key(),
        workspace_id: "team".into(),
        actor_account_id: "owner".into(),
        profile_id: "nope".into(),
    };
    refused(&app, "delete unknown", admin.delete_profile(delete), missing, "profile_id").await;
    for (case, request, code, field) in [
        ("assign none", assign("owner", "p", Vec::new()), invalid, "account_ids"),
        ("assign too many", assign("owner", "p", many.clone()), invalid, "account_ids"),
        ("assign a bad id", assign("owner", "p", vec!["a b".into()]), invalid, "account_ids[0]"),
        ("assign a non-member", assign("owner", "p", vec!["stranger".into()]), missing, "account_ids"),
        ("assign to unknown", assign("owner", "nope", vec!["member-a".into()]), missing, "profile_id"),
        ("assign by reviewer", assign("reviewer", "p", vec!["member-a".into()]), denied, "actor_account_id"),
    ] {
        refused(&app, case, admin.assign_profile_members(request), code, field).await;
    }
    let unassign = UnassignProfileMembersRequest {
        idempotency_key: crate::helpers::key(),
        workspace_id: "team".into(),
        actor_account_id: "owner".into(),
        profile_id: "p".into(),
        account_ids: many,
    };
    refused(&app, "unassign too many", admin.unassign_profile_members(unassign), invalid, "account_ids").await;
    let list = |page_size: u32, page_token: &str| ListProfilesRequest {
        workspace_id: "team".into(),
        page_size,
        page_token: page_token.into(),
    };
    refused(&app, "list page too big", admin.list_profiles(list(1_001, "")), invalid, "page_size").await;
    refused(&app, "list forged token", admin.list_profiles(list(0, "a b")), invalid, "page_token").await;

    // The overflow pool.
    for (case, request, code, field) in [
        ("ratio 0", overflow("owner", 1, 0, 1, None, "2026"), invalid, "units_per_credit_num"),
        ("ratio over 10^6", overflow("owner", 1, 1, 1_000_001, None, "2026"), invalid, "units_per_credit_den"),
        ("negative quota", overflow("owner", -1, 1, 1, None, "2026"), invalid, "quota_units"),
        ("quota over 10^12", overflow("owner", 1_000_000_000_001, 1, 1, None, "2026"), invalid, "quota_units"),
        ("negative limit", overflow("owner", 1, 1, 1, Some(-1), "2026"), invalid, "overage_limit_units"),
        ("no period", overflow("owner", 1, 1, 1, None, ""), invalid, "contract_period"),
        ("ill-formed period", overflow("owner", 1, 1, 1, None, "2026/27"), invalid, "contract_period"),
        ("admin is not owner", overflow("member-a", 1, 1, 1, None, "2026"), denied, "actor_account_id"),
    ] {
        refused(&app, case, admin.configure_overflow_pool(request), code, field).await;
    }

    // Reports.
    let report = |from_time, to_time, contract_period: &str| GetUsageReportRequest {
        workspace_id: "team".into(),
        from_time,
        to_time,
        contract_period: contract_period.into(),
    };
    for (case, request, code, field) in [
        ("period and time", report(at(1, 0), None, "2026"), invalid, "contract_period"),
        ("empty range", report(at(10, 0), at(10, 0), ""), invalid, "to_time"),
        ("bad nanos", report(at(1, 1_000_000_000), None, ""), invalid, "from_time"),
        ("before 1970", report(None, at(-1, 0), ""), invalid, "to_time"),
        ("unknown period", report(None, None, "1999"), missing, "contract_period"),
    ] {
        refused(&app, case, admin.get_usage_report(request), code, field).await;
    }
    let journal =
        |workspace: &str, account: &str, token: &str, filter: Option<JournalFilter>| ListJournalEntriesRequest {
            workspace_id: workspace.into(),
            account_id: account.into(),
            page_size: 0,
            page_token: token.into(),
            filter,
        };
    let cause = |cause: &str| Some(JournalFilter { cause: cause.into(), ..Default::default() });
    for (case, request, code, field) in [
        ("no scope", journal("", "", "", None), invalid, "workspace_id"),
        ("two scopes", journal("team", "owner", "", None), invalid, "account_id"),
        ("unknown cause", journal("team", "", "", cause("gift")), invalid, "filter.cause"),
        ("forged token", journal("team", "", "x", None), invalid, "page_token"),
        ("negative token", journal("team", "", "-5", None), invalid, "page_token"),
        ("unknown workspace", journal("nowhere", "", "", None), missing, "workspace_id"),
        ("unknown account", journal("", "nobody", "", None), missing, "account_id"),
    ] {
        refused(&app, case, admin.list_journal_entries(request), code, field).await;
    }
    let export = ExportJournalRequest { workspace_id: String::new(), account_id: String::new(), filter: None };
    refused(&app, "export without scope", admin.export_journal(export), invalid, "workspace_id").await;
    app.assert_ledger_clean().await;
}
