//! M1–M3: members, roles and allowances.

use creditpool::proto::*;
use tonic::Code;

use rstest::rstest;

use crate::helpers::{Backend, assert_error, key, parts, spawn_app};

#[rstest]
#[tokio::test]
async fn m1_only_owners_and_admins_set_allowances_for_every_role(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.design_example().await;
    let roles = [Role::Admin, Role::Editor, Role::Reviewer, Role::Client];
    for role in roles {
        let actor = format!("actor-{}", role.as_str_name().to_lowercase());
        app.create_account(&actor).await;
        app.add_member("team", "owner", &actor, role).await.expect("add actor");
    }
    app.create_account("stranger").await;

    let mut outcomes = Vec::new();
    for (actor, allowance) in [
        ("owner", 10),
        ("actor-role_admin", 20),
        ("actor-role_editor", 30),
        ("actor-role_reviewer", 40),
        ("actor-role_client", 50),
        ("stranger", 60),
    ] {
        let result = app.set_allowance("team", actor, "member-c", allowance, 0).await;
        outcomes.push((actor, result.map(|_| ()).map_err(|status| status.code())));
    }

    assert_eq!(
        outcomes,
        vec![
            ("owner", Ok(())),
            ("actor-role_admin", Ok(())),
            ("actor-role_editor", Err(Code::PermissionDenied)),
            ("actor-role_reviewer", Err(Code::PermissionDenied)),
            ("actor-role_client", Err(Code::PermissionDenied)),
            ("stranger", Err(Code::PermissionDenied)),
        ]
    );
    let c = app.members("team").await.into_iter().find(|m| m.account_id == "member-c").expect("C");
    assert_eq!(c.monthly.expect("monthly").allowance_credits, 20, "the admin's change is the last that applied");
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn m1_reviewers_and_clients_hold_no_allowance_and_demotion_clears_it(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.design_example().await;
    for (account, role) in [("reviewer", Role::Reviewer), ("client", Role::Client)] {
        app.create_account(account).await;
        app.add_member("team", "owner", account, role).await.expect("add");
    }

    let reviewer = app.set_allowance("team", "owner", "reviewer", 10, 0).await;
    let client = app.set_allowance("team", "owner", "client", 0, 10).await;
    let demoted = app
        .admin
        .clone()
        .set_member_role(SetMemberRoleRequest {
            idempotency_key: key(),
            workspace_id: "team".into(),
            actor_account_id: "owner".into(),
            account_id: "member-a".into(),
            role: Role::Reviewer.into(),
        })
        .await
        .expect("demote")
        .into_inner()
        .member
        .expect("member");

    assert_error(reviewer, Code::FailedPrecondition, "account_id");
    assert_error(client, Code::FailedPrecondition, "account_id");
    assert_eq!(demoted.role(), Role::Reviewer);
    assert_eq!(demoted.monthly.expect("monthly").allowance_credits, 0);
    assert_eq!(app.workspace("team").await.monthly_unallocated_credits, 350, "A's 150 freed");
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn m2_an_allowance_can_reserve_only_the_unallocated_credits(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    // Monthly pool 500, A 150, B 150 → 200 unallocated.
    app.design_example().await;
    assert_eq!(app.workspace("team").await.monthly_unallocated_credits, 200);

    let before = app.snapshot().await;
    let too_much = app.set_allowance("team", "owner", "member-c", 201, 0).await;
    let unchanged = app.snapshot().await;
    let exact = app.set_allowance("team", "owner", "member-c", 200, 0).await.expect("200 fits");

    let status = assert_error(too_much, Code::FailedPrecondition, "monthly_allowance_credits");
    assert!(status.message().contains("only 200 are unallocated"), "{}", status.message());
    assert_eq!(before, unchanged);
    let workspace = exact.workspace.expect("workspace");
    assert_eq!((workspace.monthly_reserved_credits, workspace.monthly_unallocated_credits), (500, 0));
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn m2_top_up_allowances_reserve_out_of_the_top_up_pool(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.design_example().await;
    app.admin
        .clone()
        .top_up_workspace(TopUpWorkspaceRequest {
            idempotency_key: key(),
            workspace_id: "team".into(),
            actor_account_id: "owner".into(),
            amount_credits: 100,
        })
        .await
        .expect("top up");

    let refused = app.set_allowance("team", "owner", "member-a", 150, 101).await;
    let accepted = app.set_allowance("team", "owner", "member-a", 150, 100).await.expect("100 fits");

    assert_error(refused, Code::FailedPrecondition, "top_up_allowance_credits");
    let workspace = accepted.workspace.expect("workspace");
    assert_eq!((workspace.top_up_reserved_credits, workspace.top_up_unallocated_credits), (100, 0));
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn m3_lowering_an_allowance_frees_credits_for_others(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.design_example().await;
    app.set_allowance("team", "owner", "member-c", 200, 0).await.expect("C takes the rest");
    assert_error(
        app.set_allowance("team", "owner", "member-b", 151, 0).await,
        Code::FailedPrecondition,
        "monthly_allowance_credits",
    );

    app.set_allowance("team", "owner", "member-a", 50, 0).await.expect("lower A");
    let b = app.set_allowance("team", "owner", "member-b", 250, 0).await.expect("B takes A's 100");

    assert_eq!(b.member.expect("B").monthly.expect("monthly").remaining_credits, 250);
    assert_eq!(b.workspace.expect("workspace").monthly_unallocated_credits, 0);
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn removing_a_member_frees_its_reservation_but_the_owner_stays(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.design_example().await;

    let removed = app.remove_member("team", "owner", "member-a").await.expect("remove A");
    let owner = app.remove_member("team", "owner", "owner").await;

    assert_eq!(removed.member.expect("member").account_id, "member-a");
    assert_error(owner, Code::FailedPrecondition, "account_id");
    assert_eq!(app.workspace("team").await.monthly_unallocated_credits, 350);
    assert!(app.members("team").await.iter().all(|m| m.account_id != "member-a"));
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn list_members_pages_through_every_member_with_usage(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.design_example().await;

    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .admin
            .clone()
            .list_members(ListMembersRequest { workspace_id: "team".into(), page_size: 2, page_token: token })
            .await
            .expect("ListMembers")
            .into_inner();
        assert!(page.members.len() <= 2);
        seen.extend(page.members);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }

    let ids: Vec<&str> = seen.iter().map(|m| m.account_id.as_str()).collect();
    assert_eq!(ids, vec!["member-a", "member-b", "member-c", "owner"]);
    let a = seen[0].monthly.expect("monthly");
    assert_eq!((a.allowance_credits, a.used_credits, a.remaining_credits), (150, 0, 150));
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn m3_a_refund_of_an_earlier_membership_returns_credits_to_the_pool_without_lowering_the_new_membership_usage(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.design_example().await;
    app.set_allowance("team", "owner", "member-c", 100, 0).await.expect("allowance");
    app.consume("old-job", "member-c", "team", 100).await.expect("first membership spends its 100");
    app.remove_member("team", "owner", "member-c").await.expect("remove");
    app.add_member("team", "owner", "member-c", Role::Editor).await.expect("add again");
    app.set_allowance("team", "owner", "member-c", 100, 0).await.expect("allowance again");
    app.consume("new-job", "member-c", "team", 100).await.expect("second membership spends its 100");
    let pool_before = app.workspace("team").await.monthly_pool_credits;

    let refund = app.refund("old-job", "member-c", "team", None).await.expect("refund of the old consumption");

    assert_eq!(parts(&refund.returned), vec![(Bucket::WorkspaceMonthly, 100)]);
    assert_eq!(app.workspace("team").await.monthly_pool_credits, pool_before + 100, "the credits went back");
    let member = app.members("team").await.into_iter().find(|m| m.account_id == "member-c").expect("member-c");
    let monthly = member.monthly.expect("monthly");
    assert_eq!((monthly.used_credits, monthly.remaining_credits), (100, 0), "the new membership spent its 100");
    let again = app.consume("third-job", "member-c", "team", 1).await.expect_err("nothing is left of 100");
    assert_eq!(again.code(), Code::ResourceExhausted, "{again:?}");
    app.assert_ledger_clean().await;
}

/// Assigns (or unassigns) `accounts` to profile `id` of workspace `team`, as its owner.
async fn assign(app: &crate::helpers::TestApp, id: &str, accounts: &[&str], assigned: bool) {
    let account_ids: Vec<String> = accounts.iter().map(|account| (*account).to_owned()).collect();
    let mut admin = app.admin.clone();
    let (workspace_id, actor_account_id) = ("team".to_owned(), "owner".to_owned());
    if assigned {
        admin
            .assign_profile_members(AssignProfileMembersRequest {
                idempotency_key: key(),
                workspace_id,
                actor_account_id,
                profile_id: id.into(),
                account_ids,
            })
            .await
            .expect("AssignProfileMembers");
    } else {
        admin
            .unassign_profile_members(UnassignProfileMembersRequest {
                idempotency_key: key(),
                workspace_id,
                actor_account_id,
                profile_id: id.into(),
                account_ids,
            })
            .await
            .expect("UnassignProfileMembers");
    }
}

#[rstest]
#[tokio::test]
async fn a_member_shows_the_profiles_it_is_in_when_listed_changed_and_removed(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    // Arrange: profiles `designers` (A and B) and `approvers` (A); C in none.
    let app = spawn_app(backend).await;
    app.design_example().await;
    for id in ["designers", "approvers"] {
        app.admin
            .clone()
            .create_profile(CreateProfileRequest {
                idempotency_key: key(),
                workspace_id: "team".into(),
                actor_account_id: "owner".into(),
                profile_id: id.into(),
                name: id.into(),
                pool_access: false,
                notify_on_assign: false,
                requires_consent: false,
            })
            .await
            .expect("CreateProfile");
    }
    assign(&app, "designers", &["member-a", "member-b"], true).await;
    assign(&app, "approvers", &["member-a"], true).await;
    let listed = |members: Vec<Member>| -> Vec<(String, Vec<String>)> {
        members.into_iter().map(|member| (member.account_id, member.profile_ids)).collect()
    };

    // Act and assert: listed, answered by a change, after an unassignment, and when removed.
    assert_eq!(
        listed(app.members("team").await),
        vec![
            ("member-a".to_owned(), vec!["approvers".to_owned(), "designers".to_owned()]),
            ("member-b".to_owned(), vec!["designers".to_owned()]),
            ("member-c".to_owned(), vec![]),
            ("owner".to_owned(), vec![]),
        ]
    );
    let changed = app.set_allowance("team", "owner", "member-a", 100, 0).await.expect("allowance");
    assert_eq!(changed.member.expect("member").profile_ids, ["approvers", "designers"]);
    assign(&app, "designers", &["member-a"], false).await;
    assert_eq!(listed(app.members("team").await)[0].1, ["approvers"]);
    let removed = app.remove_member("team", "owner", "member-b").await.expect("remove");
    assert_eq!(removed.member.expect("member").profile_ids, ["designers"], "as it was when removed");
    app.add_member("team", "owner", "member-b", Role::Editor).await.expect("add again");
    assert_eq!(listed(app.members("team").await)[1], ("member-b".to_owned(), vec![]), "a new membership");
    app.assert_ledger_clean().await;
}
