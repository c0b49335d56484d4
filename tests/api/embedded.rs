//! The embedded default, as a newcomer and an operator meet it: the real binary, no database
//! configured, a SQLite file in its working directory.

use std::path::Path;

use creditpool::proto::*;

use crate::process::{ServerProcess, free_address, scratch_directory, serve_command};

/// `creditpool serve` started in `directory` with nothing configured but the listen address
/// (so tests do not collide on 50051): no `DATABASE_URL`, no `CREDITPOOL_*`, no config file.
async fn start_in(directory: &Path) -> ServerProcess {
    let address = free_address();
    ServerProcess::start(serve_command(directory, &address, &[]), &address).await
}

#[tokio::test]
async fn the_readme_run_command_serves_on_an_embedded_database_with_no_setup() {
    let directory = scratch_directory("fresh");
    let mut server = start_in(&directory).await;

    server
        .admin
        .create_account(CreateAccountRequest { idempotency_key: "k1".into(), account_id: "alice".into() })
        .await
        .expect("account");
    server
        .admin
        .set_account_plan(SetAccountPlanRequest {
            idempotency_key: "k2".into(),
            account_id: "alice".into(),
            monthly_credits: 100,
            billing_anchor: None,
        })
        .await
        .expect("plan");
    let consumed = server
        .credit
        .consume(ConsumeRequest {
            idempotency_key: "gen".into(),
            account_id: "alice".into(),
            workspace_id: String::new(),
            amount_credits: 30,
            ..Default::default()
        })
        .await
        .expect("consume")
        .into_inner();

    assert_eq!(consumed.consumption.expect("consumption").amount_credits, 30);
    assert!(
        directory.join("data/creditpool.db").exists(),
        "the default file is data/creditpool.db under the working directory"
    );
    assert!(server.admin.verify_ledger(VerifyLedgerRequest {}).await.expect("verify").into_inner().clean);
    server.stop().await;
    let _ = std::fs::remove_dir_all(&directory);
}

#[tokio::test]
async fn sqlite_balances_holds_and_journal_survive_a_sigterm_and_restart() {
    let directory = scratch_directory("restart");
    let mut server = start_in(&directory).await;
    let admin = &mut server.admin;
    crate::process::owner_and_team(admin, 1_000, 500).await;
    admin
        .set_member_allowance(SetMemberAllowanceRequest {
            idempotency_key: "k5".into(),
            workspace_id: "team".into(),
            actor_account_id: "owner".into(),
            account_id: "owner".into(),
            monthly_allowance_credits: 300,
            top_up_allowance_credits: 0,
        })
        .await
        .expect("allowance");
    let credit = &mut server.credit;
    credit
        .consume(ConsumeRequest {
            idempotency_key: "gen".into(),
            account_id: "owner".into(),
            workspace_id: "team".into(),
            amount_credits: 50,
            ..Default::default()
        })
        .await
        .expect("consume");
    credit
        .reserve(ReserveRequest {
            reservation_key: "job".into(),
            account_id: "owner".into(),
            workspace_id: "team".into(),
            amount_credits: 20,
            ttl_seconds: 3_600,
            ..Default::default()
        })
        .await
        .expect("hold");
    let before = server.admin.verify_ledger(VerifyLedgerRequest {}).await.expect("verify").into_inner();
    server.stop().await;

    let mut restarted = start_in(&directory).await;
    let workspace = restarted
        .admin
        .get_workspace(GetWorkspaceRequest { workspace_id: "team".into() })
        .await
        .expect("workspace")
        .into_inner()
        .workspace
        .expect("workspace");
    let account = restarted
        .admin
        .get_account(GetAccountRequest { account_id: "owner".into() })
        .await
        .expect("account")
        .into_inner()
        .account
        .expect("account");
    let holds = restarted
        .admin
        .list_reservations(ListReservationsRequest {
            workspace_id: "team".into(),
            account_id: String::new(),
            page_size: 0,
            page_token: String::new(),
        })
        .await
        .expect("holds")
        .into_inner()
        .reservations;
    let after = restarted.admin.verify_ledger(VerifyLedgerRequest {}).await.expect("verify").into_inner();
    let replay = restarted
        .credit
        .consume(ConsumeRequest {
            idempotency_key: "gen".into(),
            account_id: "owner".into(),
            workspace_id: "team".into(),
            amount_credits: 50,
            ..Default::default()
        })
        .await;

    assert_eq!(account.monthly_credits, 500);
    assert_eq!(workspace.monthly_pool_credits, 430, "500 - 50 consumed - 20 held");
    assert_eq!(
        holds.iter().map(|h| (h.reservation_key.as_str(), h.amount_credits)).collect::<Vec<_>>(),
        vec![("job", 20)]
    );
    assert!(after.clean);
    assert_eq!(after.entries_checked, before.entries_checked, "the journal is all there");
    assert!(replay.is_ok(), "the idempotency record survived too: the retry replays");
    assert_eq!(
        restarted
            .admin
            .get_workspace(GetWorkspaceRequest { workspace_id: "team".into() })
            .await
            .expect("ws")
            .into_inner()
            .workspace
            .expect("ws")
            .monthly_pool_credits,
        430
    );
    restarted.stop().await;
    let _ = std::fs::remove_dir_all(&directory);
}
