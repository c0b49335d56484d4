//! Rules that must hold under races.

use tonic::Code;

use crate::helpers::{join_all, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m2_holds_when_32_allowance_changes_race_on_one_workspace() {
    let app = spawn_app().await;
    app.create_account_with_plan("owner", 1_000).await;
    app.create_workspace("team", "owner").await;
    app.set_pool_size("team", "owner", 500).await.expect("pool 500");
    for i in 0..32 {
        let member = format!("member-{i}");
        app.create_account(&member).await;
        app.add_member("team", "owner", &member, creditpool::proto::Role::Editor).await.expect("add");
    }
    let app = std::sync::Arc::new(app);

    let calls = (0..32).map(|i| {
        let app = std::sync::Arc::clone(&app);
        tokio::spawn(async move { app.set_allowance("team", "owner", &format!("member-{i}"), 50, 0).await.map(|_| ()) })
    });
    let outcomes = join_all(calls).await;

    let granted = outcomes.iter().filter(|outcome| outcome.is_ok()).count();
    let refusals: Vec<Code> = outcomes.iter().filter_map(|o| o.as_ref().err()).map(tonic::Status::code).collect();
    assert_eq!(granted, 10, "500 credits hold exactly ten allowances of 50");
    assert!(
        refusals.iter().all(|code| *code == Code::FailedPrecondition),
        "only M2 refusals, no deadlocks: {refusals:?}"
    );
    let workspace = app.workspace("team").await;
    assert_eq!((workspace.monthly_reserved_credits, workspace.monthly_unallocated_credits), (500, 0));
    let reserved: i64 = app.members("team").await.iter().map(|m| m.monthly.expect("monthly").remaining_credits).sum();
    assert_eq!(reserved, 500);
    app.assert_ledger_clean().await;
}
