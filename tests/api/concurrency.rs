//! Rules that must hold under races.

use tonic::Code;

use rstest::rstest;

use crate::helpers::{Backend, join_all, spawn_app};

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m2_holds_when_32_allowance_changes_race_on_one_workspace(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
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

/// What one client saw succeed.
#[derive(Default)]
struct Tally {
    captured: i64,
    refunded: i64,
}

/// 64 clients run random consumes, holds, commits, releases and refunds on one workspace,
/// spread over `replicas` servers sharing its database.
async fn random_hot_path_traffic_on_one_workspace(backend: Backend, replicas: usize) {
    use rand::{Rng, SeedableRng};
    use tonic::Code;

    let app = spawn_app(backend).await;
    app.create_account_with_plan("owner", 10_000).await;
    app.create_workspace("team", "owner").await;
    app.set_pool_size("team", "owner", 5_000).await.expect("pool");
    app.admin
        .clone()
        .top_up_workspace(creditpool::proto::TopUpWorkspaceRequest {
            idempotency_key: crate::helpers::key(),
            workspace_id: "team".into(),
            actor_account_id: "owner".into(),
            amount_credits: 1_000,
        })
        .await
        .expect("top up");
    for i in 0..8 {
        let member = format!("m{i}");
        app.create_account(&member).await;
        app.add_member("team", "owner", &member, creditpool::proto::Role::Editor).await.expect("add");
        app.set_allowance("team", "owner", &member, 600, 100).await.expect("allowance");
    }
    let mut servers = vec![std::sync::Arc::new(app)];
    for _ in 1..replicas {
        servers.push(std::sync::Arc::new(servers[0].spawn_replica().await));
    }
    let app = std::sync::Arc::clone(&servers[0]);

    let clients = (0..64u64).map(|client| {
        let app = std::sync::Arc::clone(&servers[usize::try_from(client).unwrap_or(0) % replicas]);
        tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(client);
            let member = format!("m{}", client % 8);
            let mut tally = Tally::default();
            let mut holds = Vec::new();
            let mut consumed = Vec::new();
            for step in 0..30 {
                let key = format!("c{client}-s{step}");
                let amount = rng.random_range(1..=40);
                let result = match rng.random_range(0..5) {
                    0 | 1 => app.consume(&key, &member, "team", amount).await.map(|c| {
                        tally.captured += c.amount_credits;
                        consumed.push(key.clone());
                    }),
                    2 => app.reserve(&key, &member, "team", amount, 0).await.map(|_| holds.push(key.clone())),
                    3 if !holds.is_empty() => {
                        let hold = holds.swap_remove(rng.random_range(0..holds.len()));
                        if rng.random_bool(0.7) {
                            app.commit(&hold, &member, "team", rng.random_range(1..=50)).await.map(|r| {
                                let consumption = r.consumption.expect("consumption");
                                tally.captured += consumption.amount_credits;
                                consumed.push(hold.clone());
                            })
                        } else {
                            app.release(&hold, &member, "team").await.map(|_| ())
                        }
                    }
                    _ if !consumed.is_empty() => {
                        let target = consumed[rng.random_range(0..consumed.len())].clone();
                        let amount = rng.random_bool(0.5).then(|| rng.random_range(1..=30));
                        app.refund(&target, &member, "team", amount).await.map(|r| {
                            let returned: i64 = r.returned.iter().map(|p| p.amount_credits).sum();
                            tally.refunded += returned + r.forfeited_credits;
                        })
                    }
                    _ => Ok(()),
                };
                if let Err(status) = result {
                    assert!(
                        matches!(status.code(), Code::ResourceExhausted | Code::FailedPrecondition),
                        "only rule refusals may reach a client, got {status:?}"
                    );
                }
            }
            tally
        })
    });
    let tallies = join_all(clients).await;

    let captured: i64 = tallies.iter().map(|t| t.captured).sum();
    let refunded: i64 = tallies.iter().map(|t| t.refunded).sum();
    let workspace = app.workspace("team").await;
    let held: i64 = app.open_holds("team").await.iter().map(|h| h.amount_credits).sum();
    assert!(workspace.monthly_pool_credits >= 0 && workspace.top_up_pool_credits >= 0);
    let left_the_pools = 6_000 - workspace.monthly_pool_credits - workspace.top_up_pool_credits - held;
    assert_eq!(left_the_pools, captured - refunded, "every credit that left the pools is a charge not refunded");
    assert!(captured > 0 && refunded > 0, "the traffic exercised charges and refunds");
    for member in app.members("team").await.iter().filter(|m| m.account_id != "owner") {
        let (monthly, top_up) = (member.monthly.expect("monthly"), member.top_up.expect("top_up"));
        assert!(monthly.used_credits <= monthly.allowance_credits, "{member:?}");
        assert!(top_up.used_credits <= top_up.allowance_credits, "{member:?}");
    }
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_racing_clients_never_overdraw_lose_or_double_count_a_credit(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    random_hot_path_traffic_on_one_workspace(backend, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_racing_on_one_workspace_keep_every_credit_where_it_belongs() {
    random_hot_path_traffic_on_one_workspace(Backend::Postgres, 2).await;
}
