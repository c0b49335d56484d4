//! R1–R6: billing cycles, their replay and ordering, forfeit across a renewal, the scheduler.

use std::sync::Arc;
use std::time::{Duration, Instant};

use creditpool::ledger::ManualClock;
use creditpool::proto::*;
use tonic::Code;

use rstest::rstest;

use crate::helpers::{Backend, TestApp, assert_error, key, next_period, parts, spawn_app, spawn_app_at};

/// Journal rows of one cause, oldest first: (reference, from, to, amount).
async fn journal(app: &TestApp, cause: &str) -> Vec<(String, String, String, i64)> {
    sqlx::query_as(
        "SELECT reference, from_bucket, to_bucket, amount_credits FROM journal_entries WHERE cause = $1 ORDER BY entry_id",
    )
    .bind(cause)
    .fetch_all(&app.db)
    .await
    .expect("journal")
}

/// Outbox rows: (kind, account, payload).
async fn notifications(app: &TestApp) -> Vec<(String, String, serde_json::Value)> {
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT kind, account_id, payload FROM notifications ORDER BY sequence")
            .fetch_all(&app.db)
            .await
            .expect("outbox");
    rows.into_iter()
        .map(|(kind, account, payload)| (kind, account, serde_json::from_str(&payload).expect("json")))
        .collect()
}

/// An owner on `plan` with workspaces `a` and `b` of the given pool sizes.
async fn owner_with_pools(app: &TestApp, plan: i64, bought: i64, a: i64, b: i64) -> String {
    let account = app.create_account_with_plan("owner", plan).await;
    if bought > 0 {
        app.buy("owner", bought).await;
    }
    for (workspace, size) in [("a", a), ("b", b)] {
        app.create_workspace(workspace, "owner").await;
        app.set_pool_size(workspace, "owner", size).await.expect("pool size");
    }
    account.current_period
}

#[rstest]
#[tokio::test]
async fn r1_renewal_refreshes_monthly_credits_to_the_plan_and_the_remainder_expires(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    let current = app.create_account_with_plan("alice", 1_000).await.current_period;
    app.consume("mine", "alice", "", 300).await.expect("consume");
    app.admin
        .clone()
        .set_account_plan(SetAccountPlanRequest {
            idempotency_key: key(),
            account_id: "alice".into(),
            monthly_credits: 600,
            billing_anchor: None,
        })
        .await
        .expect("plan change for the next period");

    let renewed = app.renew("alice", &next_period(&current)).await.expect("renew");

    let account = renewed.account.clone().expect("account");
    assert_eq!(account.monthly_credits, 600, "refreshed to the plan, whose pending change now applies");
    assert_eq!(account.current_period, next_period(&current));
    assert_eq!(account.plan.expect("plan").next_monthly_credits, None);
    assert_eq!(renewed.outcome(), RenewalOutcome::Succeeded);
    let expiry = journal(&app, "expiry").await;
    assert_eq!(
        expiry,
        vec![(format!("RenewAccount/{}", next_period(&current)), "account_monthly".into(), "expired".into(), 700)]
    );
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn r2_a_covered_renewal_funds_every_pool_drawing_monthly_first_then_top_up(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    // Plan 1,000 + 500 bought; pools 600 and 500 leave monthly 0 and top-up 400.
    let current = owner_with_pools(&app, 1_000, 500, 600, 500).await;
    let before = app.account("owner").await;

    let renewed = app.renew("owner", &next_period(&current)).await.expect("renew");

    assert_eq!((before.monthly_credits, before.top_up_credits), (0, 400));
    assert_eq!(renewed.outcome(), RenewalOutcome::Succeeded);
    assert_eq!((renewed.required_credits, renewed.available_credits), (1_100, 1_400));
    let account = renewed.account.expect("account");
    assert_eq!((account.monthly_credits, account.top_up_credits), (0, 300), "1,000 monthly, then 100 top-up");
    let pools: Vec<(String, i64, bool)> = renewed
        .workspaces
        .iter()
        .map(|w| (w.workspace_id.clone(), w.monthly_pool_credits, w.monthly_pool_funded))
        .collect();
    assert_eq!(pools, vec![("a".into(), 600, true), ("b".into(), 500, true)]);
    let outbox = notifications(&app).await;
    assert_eq!(outbox.len(), 1);
    assert_eq!((outbox[0].0.as_str(), outbox[0].1.as_str()), ("renewal_succeeded", "owner"));
    app.assert_ledger_clean().await;
}

/// Owner on 1,000 with pools 600 + 400, a member who used 100 in `a`, and a plan cut to 500.
async fn failed_renewal(app: &TestApp) -> (String, RenewAccountResponse) {
    let current = owner_with_pools(app, 1_000, 0, 600, 400).await;
    app.create_account("member").await;
    app.add_member("a", "owner", "member", Role::Editor).await.expect("member");
    app.set_allowance("a", "owner", "member", 200, 0).await.expect("allowance");
    app.consume("gen", "member", "a", 100).await.expect("consume");
    app.admin
        .clone()
        .set_account_plan(SetAccountPlanRequest {
            idempotency_key: key(),
            account_id: "owner".into(),
            monthly_credits: 500,
            billing_anchor: None,
        })
        .await
        .expect("cheaper plan next period");
    let next = next_period(&current);
    let renewed = app.renew("owner", &next).await.expect("renew");
    (next, renewed)
}

#[rstest]
#[tokio::test]
async fn r3_an_uncovered_renewal_funds_no_pool_resets_them_all_and_records_renewal_failed(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;

    let (period, renewed) = failed_renewal(&app).await;

    assert_eq!(renewed.outcome(), RenewalOutcome::Failed);
    assert_eq!((renewed.required_credits, renewed.available_credits), (1_000, 500));
    assert_eq!(renewed.account.expect("account").monthly_credits, 500, "nothing was drawn");
    assert!(renewed.workspaces.iter().all(|w| w.monthly_pool_credits == 0 && !w.monthly_pool_funded));
    let member = app.members("a").await.into_iter().find(|m| m.account_id == "member").expect("member");
    assert_eq!(member.monthly.expect("monthly").used_credits, 0, "usage resets even when funding fails");
    let outbox = notifications(&app).await;
    assert_eq!((outbox[0].0.as_str(), outbox[0].1.as_str()), ("renewal_failed", "owner"));
    let payload = &outbox[0].2["Renewal"];
    assert_eq!(payload["period"], serde_json::json!(period));
    assert_eq!(payload["workspace_ids"], serde_json::json!(["a", "b"]));
    assert_eq!((payload["required_credits"].as_i64(), payload["available_credits"].as_i64()), (Some(1_000), Some(500)));
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn r4_monthly_usage_resets_and_top_up_pools_allowances_and_usage_are_untouched(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.hot_path_example().await;
    let current = app.account("owner").await.current_period;
    app.consume("gen", "member-a", "team", 180).await.expect("150 monthly + 30 top-up");

    app.renew("owner", &next_period(&current)).await.expect("renew");

    let balance = app.balance("member-a", "team").await;
    let (monthly, top_up) = (balance.monthly.expect("monthly"), balance.top_up.expect("top_up"));
    assert_eq!((monthly.allowance_credits, monthly.used_credits), (150, 0));
    assert_eq!((top_up.allowance_credits, top_up.used_credits), (50, 30));
    assert_eq!((balance.monthly_pool_credits, balance.top_up_pool_credits), (500, 70));
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn r5_after_a_failed_renewal_the_owner_reduces_a_pool_buys_credits_and_funds_them_all_once(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    failed_renewal(&app).await;
    let fund = |idempotency_key: &str| {
        let mut admin = app.admin.clone();
        let request = FundWorkspacePoolsRequest { idempotency_key: idempotency_key.into(), account_id: "owner".into() };
        async move { admin.fund_workspace_pools(request).await.map(tonic::Response::into_inner) }
    };

    let too_early = fund("fund-0").await;
    app.set_pool_size("b", "owner", 200).await.expect("reduce b");
    app.buy("owner", 300).await;
    let funded = fund("fund-1").await.expect("fund");
    let after = app.snapshot().await;
    let replay = fund("fund-1").await.expect("replay");
    let nothing_left = fund("fund-2").await.expect("nothing unfunded");

    assert_eq!(too_early.expect_err("500 < 1,000").code(), Code::ResourceExhausted);
    assert_eq!(funded.funded_credits, 800);
    let pools: Vec<(String, i64)> =
        funded.workspaces.iter().map(|w| (w.workspace_id.clone(), w.monthly_pool_credits)).collect();
    assert_eq!(pools, vec![("a".into(), 600), ("b".into(), 200)]);
    let account = funded.account.clone().expect("account");
    assert_eq!((account.monthly_credits, account.top_up_credits), (0, 0), "500 monthly, then the 300 bought");
    assert_eq!(replay, funded);
    assert_eq!((nothing_left.funded_credits, nothing_left.workspaces.len()), (0, 0));
    assert_eq!(
        app.snapshot().await.lines().filter(|l| !l.starts_with("idempotency")).collect::<Vec<_>>(),
        after.lines().filter(|l| !l.starts_with("idempotency")).collect::<Vec<_>>(),
        "the replay changed nothing"
    );
    let member = app.members("a").await.into_iter().find(|m| m.account_id == "member").expect("member");
    assert_eq!(member.monthly.expect("monthly").used_credits, 0, "funding does not reset usage again");
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn r6_periods_only_move_forward_and_the_same_period_replays_its_first_renewal(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    let current = app.create_account_with_plan("alice", 1_000).await.current_period;
    app.create_account("no-plan").await;
    let next = next_period(&current);

    let first = app.renew("alice", &next).await.expect("renew");
    let after = journal(&app, "plan_grant").await;
    let again = app.renew("alice", &next).await.expect("same period, another key");
    let earlier = app.renew("alice", &current).await;
    let malformed = app.renew("alice", "2026-13").await;
    let unknown = app.renew("nobody", &next).await;
    let no_plan = app.renew("no-plan", &next).await;

    assert_eq!(again, first);
    assert_eq!(journal(&app, "plan_grant").await, after, "granted once");
    let status = assert_error(earlier, Code::FailedPrecondition, "period");
    assert!(status.message().contains(&next), "{}", status.message());
    assert_error(malformed, Code::InvalidArgument, "period");
    assert_error(unknown, Code::NotFound, "account_id");
    assert_error(no_plan, Code::FailedPrecondition, "account_id");
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn c5b_c6_holds_and_refunds_across_a_renewal_forfeit_their_monthly_part(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.hot_path_example().await;
    let current = app.account("owner").await.current_period;
    app.reserve("job", "member-a", "team", 180, 3_600).await.expect("hold 150 monthly + 30 top-up");
    app.set_allowance("team", "owner", "member-b", 150, 20).await.expect("B keeps room in the top-up pool");
    app.consume("gen", "member-b", "team", 170).await.expect("150 monthly + 20 top-up");

    app.renew("owner", &next_period(&current)).await.expect("renew");
    let more = app.commit("job", "member-a", "team", 181).await.expect_err("more than an old-period hold holds");
    assert_eq!(more.code(), tonic::Code::FailedPrecondition, "{more:?}");
    assert!(more.message().starts_with("amount_credits: the hold was taken before its pool renewed"), "{more:?}");
    let released = app.release("job", "member-a", "team").await.expect("release after renewal");
    let refunded = app.refund("gen", "member-b", "team", None).await.expect("refund after renewal");

    assert_eq!(parts(&released.returned), vec![(Bucket::WorkspaceTopUp, 30)]);
    assert_eq!(released.forfeited_credits, 150);
    assert_eq!(parts(&refunded.returned), vec![(Bucket::WorkspaceTopUp, 20)]);
    assert_eq!(refunded.forfeited_credits, 150);
    let workspace = app.workspace("team").await;
    assert_eq!(
        (workspace.monthly_pool_credits, workspace.top_up_pool_credits),
        (500, 100),
        "fresh pool; top-up whole again"
    );
    app.assert_ledger_clean().await;
}

/// 2026-01-10T00:00:00Z.
const JANUARY_10: i64 = 1_768_003_200_000;
const DAY: Duration = Duration::from_secs(86_400);

async fn wait_for_period(app: &TestApp, account: &str, period: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.account(account).await.current_period != period {
        assert!(Instant::now() < deadline, "{account} never reached {period}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) async fn plan_with_anchor(app: &TestApp, account: &str) {
    app.create_account(account).await;
    app.admin
        .clone()
        .set_account_plan(SetAccountPlanRequest {
            idempotency_key: key(),
            account_id: account.into(),
            monthly_credits: 100,
            billing_anchor: Some(BillingAnchor { day_of_month: 15, hour_utc: 0, minute_utc: 0 }),
        })
        .await
        .expect("anchored plan");
}

#[rstest]
#[tokio::test]
async fn r6_the_scheduler_renews_a_due_account_once_and_catches_up_missed_periods_in_order(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let clock = Arc::new(ManualClock::starting_at(JANUARY_10));
    let app = spawn_app_at(backend, clock.clone(), |config| config.renewal_tick_ms = 20).await;
    plan_with_anchor(&app, "alice").await;
    assert_eq!(app.account("alice").await.current_period, "2025-12", "the anchored period under way");

    clock.advance(DAY * 5 + Duration::from_secs(60));
    wait_for_period(&app, "alice", "2026-01").await;
    let once = journal(&app, "plan_grant").await.len();
    clock.advance(DAY * 90);
    wait_for_period(&app, "alice", "2026-04").await;

    assert_eq!(once, 2, "the first grant and one renewal");
    let renewals: Vec<String> =
        journal(&app, "plan_grant").await.into_iter().skip(1).map(|(reference, ..)| reference).collect();
    assert_eq!(
        renewals,
        vec!["RenewAccount/2026-01", "RenewAccount/2026-02", "RenewAccount/2026-03", "RenewAccount/2026-04"]
    );
    let next = app.account("alice").await.next_renewal_at.expect("scheduled");
    assert_eq!(next.seconds, 1_778_803_200, "2026-05-15T00:00:00Z");
    app.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r6_two_servers_with_schedulers_renew_every_due_account_exactly_once() {
    let clock = Arc::new(ManualClock::starting_at(JANUARY_10));
    let first = spawn_app_at(Backend::Postgres, clock.clone(), |config| config.renewal_tick_ms = 10).await;
    let second = first.spawn_replica_at(clock.clone(), |config| config.renewal_tick_ms = 10).await;
    let accounts: Vec<String> = (0..20).map(|i| format!("acct-{i:02}")).collect();
    for account in &accounts {
        plan_with_anchor(&first, account).await;
    }

    clock.advance(DAY * 36 + Duration::from_secs(60));
    for account in &accounts {
        wait_for_period(&second, account, "2026-02").await;
    }

    let grants: Vec<(String, i64)> = sqlx::query_as(
        "SELECT to_owner_id, COUNT(*) FROM journal_entries WHERE cause = 'plan_grant' GROUP BY to_owner_id ORDER BY 1",
    )
    .fetch_all(&first.db)
    .await
    .expect("grants per account");
    assert_eq!(grants.len(), 20);
    assert!(grants.iter().all(|(_, count)| *count == 3), "one initial grant and two renewals each: {grants:?}");
    first.assert_ledger_clean().await;
}
