//! Group commit across scopes: many workspaces' calls in one transaction.

use std::sync::Arc;

use creditpool::proto::*;
use tonic::Code;
use tonic_types::StatusExt as _;

use rstest::rstest;

use crate::helpers::{Backend, TestApp, join_all, spawn_app_with};

const WORKSPACES: usize = 8;
/// Copies of every call: two on the first server, one on the second (on Postgres).
const COPIES: usize = 3;

/// The answer of a hot-path call, comparable across copies.
type Answer = Result<String, (Code, String)>;

fn answer<T: std::fmt::Debug>(result: Result<T, tonic::Status>) -> Answer {
    result.map(|reply| format!("{reply:?}")).map_err(|status| (status.code(), status.message().to_owned()))
}

/// Workspaces w0 to w7 of "owner", each with a pool of 1,000 and "member" allowed 500 of it.
async fn set_up_workspaces(app: &TestApp) {
    app.create_account_with_plan("owner", 100_000).await;
    app.create_account("member").await;
    for w in 0..WORKSPACES {
        let workspace = format!("w{w}");
        app.create_workspace(&workspace, "owner").await;
        app.set_pool_size(&workspace, "owner", 1_000).await.expect("pool");
        app.add_member(&workspace, "owner", "member", Role::Editor).await.expect("member");
        app.set_allowance(&workspace, "owner", "member", 500, 0).await.expect("allowance");
    }
}

/// Sends `COPIES` copies of each call at once, spread over `servers`, and checks every copy got
/// the same answer; returns the answers, one per call.
async fn race_copies<F, Fut>(servers: &[Arc<TestApp>], calls: usize, send: F) -> Vec<Answer>
where
    F: Fn(Arc<TestApp>, usize) -> Fut,
    Fut: std::future::Future<Output = Answer> + Send + 'static,
{
    let sent = (0..calls * COPIES).map(|n| tokio::spawn(send(Arc::clone(&servers[n % servers.len()]), n / COPIES)));
    let answers = join_all(sent).await;
    answers
        .chunks(COPIES)
        .enumerate()
        .map(|(call, copies)| {
            assert!(copies.iter().all(|copy| *copy == copies[0]), "call {call}: copies answered apart: {copies:?}");
            copies[0].clone()
        })
        .collect()
}

/// One committer, so concurrent calls of eight workspaces (and one that does not exist) share
/// batches. Every Consume, Reserve, Commit and Refund is sent three times at once, across two
/// servers on Postgres (one writing a batch in one statement, the other a statement per table):
/// each key is charged once, every copy gets the same answer, the missing
/// workspace fails only its own calls, and the batches did span workspaces.
#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_many_workspaces_charges_each_replayed_key_once_and_a_missing_workspace_fails_alone(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let one_committer = |config: &mut creditpool::config::Config| config.max_batch_transactions = 1;
    // The one-statement form even on Citus, whose test settings would write a statement per table.
    let app = spawn_app_with(backend, |config| {
        one_committer(config);
        config.postgres_one_statement_writes = true;
    })
    .await;
    set_up_workspaces(&app).await;
    let mut servers = vec![Arc::new(app)];
    if backend == Backend::Postgres {
        // The replica writes each table in its own statement, new rows as `VALUES` (the Citus
        // form), the first server a batch in one: both forms race on the same keys.
        let per_table = |config: &mut creditpool::config::Config| {
            one_committer(config);
            config.postgres_one_statement_writes = false;
        };
        servers.push(Arc::new(servers[0].spawn_replica_with(per_table).await));
    }
    // Workspace WORKSPACES does not exist.
    let workspace = |call: usize| format!("w{}", call % (WORKSPACES + 1));
    let calls = 4 * (WORKSPACES + 1);

    let consumed = race_copies(&servers, calls, move |app, call| async move {
        answer(app.consume(&format!("consume-{call}"), "member", &workspace(call), 10).await)
    })
    .await;
    let held = race_copies(&servers, calls, move |app, call| async move {
        answer(app.reserve(&format!("hold-{call}"), "member", &workspace(call), 20, 0).await)
    })
    .await;
    let committed = race_copies(&servers, calls, move |app, call| async move {
        answer(app.commit(&format!("hold-{call}"), "member", &workspace(call), 15).await)
    })
    .await;
    let refunded = race_copies(&servers, calls, move |app, call| async move {
        let request = RefundRequest {
            idempotency_key: format!("refund-{call}"),
            account_id: "member".into(),
            workspace_id: workspace(call),
            consumption_key: format!("consume-{call}"),
            amount_credits: Some(4),
        };
        answer(app.credit.clone().refund(request).await.map(tonic::Response::into_inner))
    })
    .await;

    for (call, answers) in [&consumed, &held, &committed, &refunded].iter().flat_map(|a| a.iter().enumerate()) {
        if call % (WORKSPACES + 1) == WORKSPACES {
            assert!(matches!(answers, Err((Code::NotFound, _))), "call {call} names no workspace: {answers:?}");
        } else {
            assert!(answers.is_ok(), "call {call}: {answers:?}");
        }
    }
    let app = &servers[0];
    for w in 0..WORKSPACES {
        // Four consumes of 10 less 4 refunded each, four commits of 15: one charge per key.
        let balance = app.balance("member", &format!("w{w}")).await;
        assert_eq!(balance.monthly.expect("monthly").used_credits, 4 * (10 - 4) + 4 * 15, "w{w}");
        assert_eq!(balance.monthly_pool_credits, 1_000 - 4 * 6 - 4 * 15, "w{w}");
    }
    let charges: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM charges").fetch_one(&app.db).await.expect("count");
    assert_eq!(charges, 2 * 4 * WORKSPACES as i64, "one charge per consume and per hold");
    if backend == Backend::Postgres && crate::postgres::citus_url().is_none() {
        // Rows a transaction wrote share its id: some batch wrote charges of several workspaces.
        // (Not on Citus, whose settings keep a batch to one scope.)
        let spanning: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT xmin::text FROM charges GROUP BY xmin::text \
             HAVING COUNT(DISTINCT scope_id) > 1) AS batches",
        )
        .fetch_one(&app.db)
        .await
        .expect("transactions");
        assert!(spanning > 0, "no batch spanned two workspaces");
    }
    app.assert_ledger_clean().await;
}

/// One committer, so the calls of eight workspaces share batches, and every workspace uses the
/// same keys: each Consume and Refund, sent three times at once and then again, is answered from
/// its own workspace's record (its own amount, its own workspace), though a batch looks up the
/// records of all its workspaces at once.
#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_used_in_many_workspaces_of_one_batch_replays_each_workspaces_own_answer(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app_with(backend, |config| config.max_batch_transactions = 1).await;
    set_up_workspaces(&app).await;
    let servers = [Arc::new(app)];
    fn amount(w: usize) -> i64 {
        10 + i64::try_from(w).expect("small")
    }
    async fn consume(app: Arc<TestApp>, w: usize) -> Result<Consumption, tonic::Status> {
        app.consume("same", "member", &format!("w{w}"), amount(w)).await
    }
    let first: Vec<Consumption> =
        join_all((0..WORKSPACES * COPIES).map(|n| tokio::spawn(consume(Arc::clone(&servers[0]), n % WORKSPACES))))
            .await
            .into_iter()
            .map(|answer| answer.expect("consumed"))
            .collect();
    for (n, consumption) in first.iter().enumerate() {
        let w = n % WORKSPACES;
        assert_eq!(
            (consumption.workspace_id.as_str(), consumption.amount_credits),
            (format!("w{w}").as_str(), amount(w)),
            "copy {n}"
        );
        assert_eq!(consumption, &first[w], "copy {n} answered apart from the first copy of w{w}");
    }
    // Every call again: now all of them replays, looked up together.
    let again = race_copies(&servers, WORKSPACES, move |app, w| async move { answer(consume(app, w).await) }).await;
    for (w, replayed) in again.iter().enumerate() {
        assert_eq!(replayed, &Ok(format!("{:?}", first[w])), "w{w}");
    }
    let refunded = race_copies(&servers, WORKSPACES, move |app, w| async move {
        let request = RefundRequest {
            idempotency_key: "same-refund".into(),
            account_id: "member".into(),
            workspace_id: format!("w{w}"),
            consumption_key: "same".into(),
            amount_credits: Some(amount(w) - 9),
        };
        answer(app.credit.clone().refund(request).await.map(tonic::Response::into_inner))
    })
    .await;
    let app = &servers[0];
    for (w, refund) in refunded.iter().enumerate() {
        assert!(refund.as_ref().is_ok_and(|r| r.contains(&format!("w{w}"))), "w{w}: {refund:?}");
        let balance = app.balance("member", &format!("w{w}")).await;
        assert_eq!(
            balance.monthly.expect("monthly").used_credits,
            9,
            "w{w}: one charge of {}, refunded down to 9",
            amount(w)
        );
    }
    let charges: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM charges").fetch_one(&app.db).await.expect("count");
    assert_eq!(charges, WORKSPACES as i64, "one charge per workspace");
    app.assert_ledger_clean().await;
}

/// One committer, so a Reserve in each of eight workspaces shares a batch, where the member
/// already holds w % 3 holds in workspace w, with a cap of two: the open holds of every workspace
/// are counted in one lookup, and each Reserve is refused or taken by its own workspace's count.
#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c5b_reserves_in_many_workspaces_of_one_batch_each_meet_their_own_workspaces_cap(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app_with(backend, |config| {
        config.max_batch_transactions = 1;
        config.max_open_reservations_per_member = 2;
    })
    .await;
    set_up_workspaces(&app).await;
    for w in 0..WORKSPACES {
        for hold in 0..w % 3 {
            app.reserve(&format!("early-{hold}"), "member", &format!("w{w}"), 1, 0).await.expect("under the cap");
        }
    }
    let app = Arc::new(app);
    let sent = (0..WORKSPACES).map(|w| {
        let app = Arc::clone(&app);
        tokio::spawn(async move { app.reserve("late", "member", &format!("w{w}"), 1, 0).await })
    });
    for (w, reserved) in join_all(sent).await.into_iter().enumerate() {
        if w % 3 == 2 {
            let status = reserved.expect_err(&format!("w{w} is at the cap"));
            let reason = status.get_details_error_info().map(|info| info.reason);
            assert_eq!(
                (status.code(), reason.as_deref()),
                (Code::FailedPrecondition, Some("TOO_MANY_OPEN_HOLDS")),
                "w{w}"
            );
        } else {
            reserved.unwrap_or_else(|status| panic!("w{w} is under the cap: {status:?}"));
        }
    }
    app.assert_ledger_clean().await;
}
