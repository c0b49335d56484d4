//! Authentication, scopes, tenancy and `acts_as` over real gRPC: who may call what.

use std::time::{Duration, Instant};

use creditpool::proto::*;
use rstest::rstest;
use tokio_stream::StreamExt as _;
use tonic::Code;

use crate::helpers::{Backend, TestApp, TestPrincipal, auth_file, key, spawn_app_with_token};

const ADMIN: &str = "token-of-the-admin-console";
const CREDIT_ONLY: &str = "token-of-the-image-backend";
const NO_CREDIT: &str = "token-of-an-auditor";
const OTHER_TENANT: &str = "token-of-team-b";
const CONSOLE: &str = "token-of-the-owners-console";

/// The principals of these tests: one unrestricted admin, one backend with only `credit`, one
/// with everything but `credit`, one confined to another tenant, one console acting as `owner`.
fn principals() -> std::path::PathBuf {
    auth_file(&[
        TestPrincipal {
            name: "admin-console",
            token: ADMIN,
            rest: r#"scopes = ["credit", "admin", "watch", "verify"]"#,
        },
        TestPrincipal { name: "image-backend", token: CREDIT_ONLY, rest: r#"scopes = ["credit"]"# },
        TestPrincipal { name: "auditor", token: NO_CREDIT, rest: r#"scopes = ["admin", "watch", "verify"]"# },
        TestPrincipal {
            name: "team-b",
            token: OTHER_TENANT,
            rest: "scopes = [\"credit\", \"admin\", \"watch\", \"verify\"]\nworkspaces = [\"team-b\"]\naccounts = [\"acct-b\"]",
        },
        TestPrincipal { name: "owners-console", token: CONSOLE, rest: "scopes = [\"admin\"]\nacts_as = \"owner\"" },
    ])
}

async fn secured_app(backend: Backend) -> TestApp {
    let file = principals();
    spawn_app_with_token(backend, ADMIN, |config| config.auth_file = Some(file)).await
}

/// Every RPC of both services, in an order in which each succeeds with the right token.
const RPCS: [&str; 35] = [
    "Consume",
    "Reserve",
    "Commit",
    "Release",
    "Refund",
    "GetBalance",
    "CreateAccount",
    "GetAccount",
    "SetAccountPlan",
    "AddAccountCredits",
    "CreateWorkspace",
    "GetWorkspace",
    "SetPoolSize",
    "TopUpWorkspace",
    "SetLowBalanceThresholds",
    "AddMember",
    "SetMemberRole",
    "SetMemberAllowance",
    "ListMembers",
    "ListReservations",
    "RemoveMember",
    "CreateProfile",
    "UpdateProfile",
    "AssignProfileMembers",
    "UnassignProfileMembers",
    "ListProfiles",
    "DeleteProfile",
    "ConfigureOverflowPool",
    "GetUsageReport",
    "ListJournalEntries",
    "ExportJournal",
    "FundWorkspacePools",
    "RenewAccount",
    "WatchNotifications",
    "VerifyLedger",
];

fn is_credit_service(rpc: &str) -> bool {
    matches!(rpc, "Consume" | "Reserve" | "Commit" | "Release" | "Refund" | "GetBalance")
}

/// Calls `rpc` of the hot-path example's tenant (`team`, `owner`, `member-a`) with `token`.
async fn call(app: &TestApp, rpc: &str, token: Option<&str>) -> Result<(), tonic::Status> {
    let (mut admin, mut credit) = (app.admin_as(token), app.credit_as(token));
    let (team, owner, member) = ("team".to_owned(), "owner".to_owned(), "member-a".to_owned());
    match rpc {
        "Consume" => credit
            .consume(ConsumeRequest {
                idempotency_key: key(),
                account_id: member,
                workspace_id: team,
                amount_credits: 1,
                ..Default::default()
            })
            .await
            .map(drop),
        "Reserve" => credit
            .reserve(ReserveRequest {
                reservation_key: key(),
                account_id: member,
                workspace_id: team,
                amount_credits: 1,
                ttl_seconds: 600,
                ..Default::default()
            })
            .await
            .map(drop),
        "Commit" => credit
            .commit(CommitRequest {
                reservation_key: "held-1".into(),
                account_id: member,
                workspace_id: team,
                amount_credits: 2,
                ..Default::default()
            })
            .await
            .map(drop),
        "Release" => credit
            .release(ReleaseRequest { reservation_key: "held-2".into(), account_id: member, workspace_id: team })
            .await
            .map(drop),
        "Refund" => credit
            .refund(RefundRequest {
                idempotency_key: key(),
                account_id: member,
                workspace_id: team,
                consumption_key: "consumed-1".into(),
                amount_credits: Some(1),
            })
            .await
            .map(drop),
        "GetBalance" => {
            credit.get_balance(GetBalanceRequest { account_id: member, workspace_id: team }).await.map(drop)
        }
        "CreateAccount" => admin
            .create_account(CreateAccountRequest { idempotency_key: key(), account_id: "matrix-new".into() })
            .await
            .map(drop),
        "GetAccount" => admin.get_account(GetAccountRequest { account_id: owner }).await.map(drop),
        "SetAccountPlan" => admin
            .set_account_plan(SetAccountPlanRequest {
                idempotency_key: key(),
                account_id: owner,
                monthly_credits: 1_000,
                billing_anchor: None,
            })
            .await
            .map(drop),
        "AddAccountCredits" => admin
            .add_account_credits(AddAccountCreditsRequest {
                idempotency_key: key(),
                account_id: owner,
                amount_credits: 10,
            })
            .await
            .map(drop),
        "CreateWorkspace" => admin
            .create_workspace(CreateWorkspaceRequest {
                idempotency_key: key(),
                workspace_id: "matrix-ws".into(),
                owner_account_id: owner,
            })
            .await
            .map(drop),
        "GetWorkspace" => admin.get_workspace(GetWorkspaceRequest { workspace_id: team }).await.map(drop),
        "SetPoolSize" => admin
            .set_pool_size(SetPoolSizeRequest {
                idempotency_key: key(),
                workspace_id: team,
                actor_account_id: owner,
                pool_size_credits: 500,
            })
            .await
            .map(drop),
        "TopUpWorkspace" => admin
            .top_up_workspace(TopUpWorkspaceRequest {
                idempotency_key: key(),
                workspace_id: team,
                actor_account_id: owner,
                amount_credits: 1,
            })
            .await
            .map(drop),
        "SetLowBalanceThresholds" => admin
            .set_low_balance_thresholds(SetLowBalanceThresholdsRequest {
                idempotency_key: key(),
                workspace_id: team,
                actor_account_id: owner,
                thresholds: Some(LowBalanceThresholds {
                    monthly_pool_credits: 10,
                    top_up_pool_credits: 0,
                    member_remaining_percent: 10,
                    overflow_units: 0,
                }),
            })
            .await
            .map(drop),
        "AddMember" => admin
            .add_member(AddMemberRequest {
                idempotency_key: key(),
                workspace_id: team,
                actor_account_id: owner,
                account_id: "matrix-member".into(),
                role: Role::Editor.into(),
            })
            .await
            .map(drop),
        "SetMemberRole" => admin
            .set_member_role(SetMemberRoleRequest {
                idempotency_key: key(),
                workspace_id: team,
                actor_account_id: owner,
                account_id: "matrix-member".into(),
                role: Role::Reviewer.into(),
            })
            .await
            .map(drop),
        "SetMemberAllowance" => admin
            .set_member_allowance(SetMemberAllowanceRequest {
                idempotency_key: key(),
                workspace_id: team,
                actor_account_id: owner,
                account_id: member,
                monthly_allowance_credits: 150,
                top_up_allowance_credits: 50,
            })
            .await
            .map(drop),
        "ListMembers" => admin
            .list_members(ListMembersRequest { workspace_id: team, page_size: 0, page_token: String::new() })
            .await
            .map(drop),
        "ListReservations" => admin
            .list_reservations(ListReservationsRequest {
                workspace_id: team,
                account_id: String::new(),
                page_size: 0,
                page_token: String::new(),
            })
            .await
            .map(drop),
        "RemoveMember" => admin
            .remove_member(RemoveMemberRequest {
                idempotency_key: key(),
                workspace_id: team,
                actor_account_id: owner,
                account_id: "matrix-member".into(),
            })
            .await
            .map(drop),
        "CreateProfile" => admin
            .create_profile(CreateProfileRequest {
                idempotency_key: key(),
                workspace_id: team,
                actor_account_id: owner,
                profile_id: "matrix-profile".into(),
                name: "Matrix".into(),
                ..Default::default()
            })
            .await
            .map(drop),
        "UpdateProfile" => admin
            .update_profile(UpdateProfileRequest {
                idempotency_key: key(),
                workspace_id: team,
                actor_account_id: owner,
                profile_id: "matrix-profile".into(),
                pool_access: Some(true),
                ..Default::default()
            })
            .await
            .map(drop),
        "DeleteProfile" => admin
            .delete_profile(DeleteProfileRequest {
                idempotency_key: key(),
                workspace_id: team,
                actor_account_id: owner,
                profile_id: "matrix-profile".into(),
            })
            .await
            .map(drop),
        "AssignProfileMembers" => admin
            .assign_profile_members(AssignProfileMembersRequest {
                idempotency_key: key(),
                workspace_id: team,
                actor_account_id: owner,
                profile_id: "matrix-profile".into(),
                account_ids: vec![member],
            })
            .await
            .map(drop),
        "UnassignProfileMembers" => admin
            .unassign_profile_members(UnassignProfileMembersRequest {
                idempotency_key: key(),
                workspace_id: team,
                actor_account_id: owner,
                profile_id: "matrix-profile".into(),
                account_ids: vec![member],
            })
            .await
            .map(drop),
        "ListProfiles" => {
            admin.list_profiles(ListProfilesRequest { workspace_id: team, ..Default::default() }).await.map(drop)
        }
        "ConfigureOverflowPool" => admin
            .configure_overflow_pool(ConfigureOverflowPoolRequest {
                idempotency_key: key(),
                workspace_id: team,
                actor_account_id: owner,
                quota_units: 100,
                units_per_credit_num: 1,
                units_per_credit_den: 1,
                enabled: true,
                contract_period: "2026".into(),
                ..Default::default()
            })
            .await
            .map(drop),
        "GetUsageReport" => {
            admin.get_usage_report(GetUsageReportRequest { workspace_id: team, ..Default::default() }).await.map(drop)
        }
        "ListJournalEntries" => admin
            .list_journal_entries(ListJournalEntriesRequest { workspace_id: team, ..Default::default() })
            .await
            .map(drop),
        "ExportJournal" => {
            admin.export_journal(ExportJournalRequest { workspace_id: team, ..Default::default() }).await.map(drop)
        }
        "FundWorkspacePools" => admin
            .fund_workspace_pools(FundWorkspacePoolsRequest { idempotency_key: key(), account_id: owner })
            .await
            .map(drop),
        "RenewAccount" => {
            let period = crate::helpers::next_period(&app.account("owner").await.current_period);
            admin
                .renew_account(RenewAccountRequest { idempotency_key: key(), account_id: owner, period })
                .await
                .map(drop)
        }
        "WatchNotifications" => admin
            .watch_notifications(WatchNotificationsRequest { workspace_id: team, ..Default::default() })
            .await
            .map(drop),
        "VerifyLedger" => admin.verify_ledger(VerifyLedgerRequest {}).await.map(drop),
        other => panic!("no such RPC {other}"),
    }
}

fn code(result: Result<(), tonic::Status>) -> Code {
    result.err().map_or(Code::Ok, |status| status.code())
}

#[rstest]
#[tokio::test]
async fn every_rpc_answers_the_exact_code_for_no_a_wrong_an_unscoped_another_tenants_and_the_right_token(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = secured_app(backend).await;
    app.hot_path_example().await;
    app.reserve("held-1", "member-a", "team", 3, 600).await.expect("hold 1");
    app.reserve("held-2", "member-a", "team", 3, 600).await.expect("hold 2");
    app.consume("consumed-1", "member-a", "team", 3).await.expect("consumed");
    app.create_account("matrix-member").await;
    let before = app.snapshot().await;

    let mut refused = Vec::new();
    for rpc in RPCS {
        let unscoped = if is_credit_service(rpc) { NO_CREDIT } else { CREDIT_ONLY };
        refused.push((rpc, "no token", code(call(&app, rpc, None).await), Code::Unauthenticated));
        refused.push((rpc, "wrong token", code(call(&app, rpc, Some("not-a-token")).await), Code::Unauthenticated));
        refused.push((
            rpc,
            "token without the scope",
            code(call(&app, rpc, Some(unscoped)).await),
            Code::PermissionDenied,
        ));
        refused.push((
            rpc,
            "another tenant's token",
            code(call(&app, rpc, Some(OTHER_TENANT)).await),
            Code::PermissionDenied,
        ));
    }
    let after_refusals = app.snapshot().await;
    let mut right = Vec::new();
    for rpc in RPCS {
        right.push((rpc, "right token", code(call(&app, rpc, Some(ADMIN)).await), Code::Ok));
    }

    let wrong: Vec<_> = refused.iter().chain(&right).filter(|(_, _, got, wanted)| got != wanted).collect();
    assert!(wrong.is_empty(), "unexpected codes (rpc, caller, got, wanted): {wrong:?}");
    assert_eq!(after_refusals, before, "refused calls changed nothing");
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn refusals_say_why_in_their_reason_and_never_echo_the_token(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = secured_app(backend).await;
    app.hot_path_example().await;
    let reason = |status: tonic::Status| {
        use tonic_types::StatusExt as _;
        assert!(!status.message().contains("not-a-token") && !status.message().contains(CREDIT_ONLY), "{status:?}");
        (status.code(), status.get_details_error_info().map(|info| info.reason).unwrap_or_default())
    };

    let missing = app.admin_as(None).get_account(GetAccountRequest { account_id: "owner".into() }).await;
    let unknown = app.admin_as(Some("not-a-token")).get_account(GetAccountRequest { account_id: "owner".into() }).await;
    let unscoped = app.admin_as(Some(CREDIT_ONLY)).get_account(GetAccountRequest { account_id: "owner".into() }).await;
    let tenant =
        app.admin_as(Some(OTHER_TENANT)).get_workspace(GetWorkspaceRequest { workspace_id: "team".into() }).await;

    assert_eq!(reason(missing.expect_err("no token")), (Code::Unauthenticated, "CREDENTIALS_MISSING".to_owned()));
    assert_eq!(reason(unknown.expect_err("wrong token")), (Code::Unauthenticated, "CREDENTIALS_UNKNOWN".to_owned()));
    assert_eq!(reason(unscoped.expect_err("no admin scope")), (Code::PermissionDenied, "SCOPE_MISSING".to_owned()));
    assert_eq!(reason(tenant.expect_err("other tenant")), (Code::PermissionDenied, "TENANT_DENIED".to_owned()));
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn a_console_identity_acts_as_its_own_account_and_no_other(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = secured_app(backend).await;
    app.hot_path_example().await;
    let mut console = app.admin_as(Some(CONSOLE));
    let allowance = |actor: &str| SetMemberAllowanceRequest {
        idempotency_key: key(),
        workspace_id: "team".into(),
        actor_account_id: actor.into(),
        account_id: "member-a".into(),
        monthly_allowance_credits: 100,
        top_up_allowance_credits: 0,
    };
    app.create_account("admin-b").await;
    app.add_member("team", "owner", "admin-b", Role::Admin).await.expect("a second admin");
    let before = app.snapshot().await;

    let as_other = console.set_member_allowance(allowance("admin-b")).await;
    let unchanged = app.snapshot().await;
    let as_itself = console.set_member_allowance(allowance("owner")).await;

    let refused = as_other.expect_err("the console is not admin-b");
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(refused.message().starts_with("actor_account_id:"), "{refused:?}");
    assert_eq!(unchanged, before);
    assert!(as_itself.is_ok(), "{as_itself:?}");
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn a_tenant_bound_watcher_sees_only_its_tenants_events_while_another_tenants_are_written(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = secured_app(backend).await;
    for (owner, workspace) in [("owner-a", "team-a"), ("acct-b", "team-b")] {
        app.create_account_with_plan(owner, 1_000).await;
        app.create_workspace(workspace, owner).await;
        app.set_pool_size(workspace, owner, 100).await.expect("pool");
        app.set_allowance(workspace, owner, owner, 100, 0).await.expect("allowance");
    }
    let mut stream = app
        .admin_as(Some(OTHER_TENANT))
        .watch_notifications(WatchNotificationsRequest::default())
        .await
        .expect("a confined watcher may watch its own tenants")
        .into_inner();

    // Both tenants drain their pools in steps: each step to 0 is a LOW_BALANCE crossing.
    for round in 0..5 {
        for (owner, workspace) in [("owner-a", "team-a"), ("acct-b", "team-b")] {
            app.consume(&format!("{workspace}-{round}"), owner, workspace, 20).await.expect("consume");
        }
    }
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    // Read until the stream has been quiet for half a second after its first event.
    loop {
        match tokio::time::timeout(Duration::from_millis(500), stream.next()).await {
            Ok(Some(event)) => seen.push(event.expect("event").notification.expect("notification")),
            Ok(None) => break,
            Err(_) if !seen.is_empty() => break,
            Err(_) => assert!(Instant::now() < deadline, "no event of team-b arrived"),
        }
    }

    assert!(seen.iter().any(|n| n.workspace_id == "team-b"), "{seen:?}");
    assert!(seen.iter().all(|n| n.workspace_id == "team-b" || n.account_id == "acct-b"), "{seen:?}");
    let everything = app
        .admin
        .clone()
        .watch_notifications(WatchNotificationsRequest::default())
        .await
        .expect("the admin watches all")
        .into_inner()
        .take(2)
        .collect::<Vec<_>>()
        .await;
    assert!(
        everything.iter().flatten().any(|e| e.notification.as_ref().is_some_and(|n| n.workspace_id == "team-a")),
        "team-a had events the confined watcher did not see: {everything:?}"
    );
    app.assert_ledger_clean().await;
}
