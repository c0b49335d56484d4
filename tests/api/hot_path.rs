//! C1–C7 and A1: the calls generation backends make around every generation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use creditpool::ledger::ManualClock;
use creditpool::proto::*;
use tonic::Code;
use tonic_types::StatusExt;

use rstest::rstest;

use crate::helpers::{Backend, assert_error, join_all, key, parts, spawn_app, spawn_app_at, spawn_app_with};

const MONTHLY: Bucket = Bucket::WorkspaceMonthly;
const TOP_UP: Bucket = Bucket::WorkspaceTopUp;

/// Pools and member usage of the example workspace: (monthly pool, top-up pool, A used monthly, A used top-up).
async fn pools_and_usage(app: &crate::helpers::TestApp) -> (i64, i64, i64, i64) {
    let balance = app.balance("member-a", "team").await;
    let (monthly, top_up) = (balance.monthly.expect("monthly"), balance.top_up.expect("top_up"));
    (balance.monthly_pool_credits, balance.top_up_pool_credits, monthly.used_credits, top_up.used_credits)
}

#[rstest]
#[tokio::test]
async fn c1_c3_consume_draws_the_monthly_allowance_before_top_up_and_refund_returns_to_the_exact_pools(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.hot_path_example().await;

    let consumption = app.consume("gen-1", "member-a", "team", 180).await.expect("consume");
    let after_consume = pools_and_usage(&app).await;
    let refund = app.refund("gen-1", "member-a", "team", None).await.expect("refund");
    let after_refund = pools_and_usage(&app).await;

    assert_eq!(parts(&consumption.split), vec![(MONTHLY, 150), (TOP_UP, 30)]);
    assert_eq!(consumption.amount_credits, 180);
    assert_eq!(after_consume, (350, 70, 150, 30));
    assert_eq!(parts(&refund.returned), vec![(TOP_UP, 30), (MONTHLY, 150)]);
    assert_eq!(after_refund, (500, 100, 0, 0));
    assert_eq!(app.account("owner").await.monthly_credits, 400, "workspace work never touches the owner's account");
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn c2_a_charge_beyond_allowance_or_pool_fails_with_what_was_available_and_takes_nothing(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.hot_path_example().await;
    app.set_allowance("team", "owner", "member-a", 150, 50).await.expect("A");
    app.consume("b-takes-most", "member-b", "team", 190).await.expect("B spends 150 + 40 of the top-up pool");
    let before = app.snapshot().await;

    // A: monthly min(150, pool 350) = 150, top-up min(50, pool 60) = 50 → 200 drawable.
    let refused = app.consume("too-much", "member-a", "team", 201).await;

    let status = refused.expect_err("201 > 200");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.message().contains("insufficient credits"), "{}", status.message());
    let info = status.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.reason, "INSUFFICIENT_CREDITS");
    assert_eq!(info.metadata["available_credits"], "200");
    assert_eq!(info.metadata["requested_credits"], "201");
    assert_eq!(app.snapshot().await, before, "no partial charge");
    assert_eq!(app.balance("member-a", "team").await.spendable_credits, 200);
    app.consume("exact", "member-a", "team", 200).await.expect("200 fits");
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn c3_the_split_is_recorded_with_the_consumption_and_usage_rises_accordingly(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.hot_path_example().await;

    app.consume("gen-1", "member-a", "team", 100).await.expect("first");
    app.consume("gen-2", "member-a", "team", 70).await.expect("second");

    let stored: Vec<(String, i64, i64)> =
        sqlx::query_as("SELECT charge_key, monthly_credits, top_up_credits FROM charges ORDER BY charge_key")
            .fetch_all(&app.db)
            .await
            .expect("charges");
    assert_eq!(stored, vec![("gen-1".into(), 100, 0), ("gen-2".into(), 50, 20)]);
    let a = app.members("team").await.into_iter().find(|m| m.account_id == "member-a").expect("A");
    let (monthly, top_up) = (a.monthly.expect("monthly"), a.top_up.expect("top_up"));
    assert_eq!((monthly.used_credits, monthly.remaining_credits), (150, 0));
    assert_eq!((top_up.used_credits, top_up.remaining_credits), (20, 30));
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn m1_reviewers_and_clients_cannot_consume(#[values(Backend::Postgres, Backend::Sqlite)] backend: Backend) {
    let app = spawn_app(backend).await;
    app.hot_path_example().await;
    app.create_account("reviewer").await;
    app.add_member("team", "owner", "reviewer", Role::Reviewer).await.expect("reviewer");

    let refused = app.consume("gen", "reviewer", "team", 1).await;
    let stranger = app.consume("gen", "owner-of-nothing", "team", 1).await;

    assert_error(refused, Code::PermissionDenied, "account_id");
    assert_error(stranger, Code::NotFound, "account_id");
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn c5_commit_for_less_than_held_returns_the_rest_last_drawn_bucket_first(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.hot_path_example().await;

    let hold = app.reserve("job-1", "member-a", "team", 180, 0).await.expect("reserve");
    let while_held = pools_and_usage(&app).await;
    let committed = app.commit("job-1", "member-a", "team", 140).await.expect("commit");

    assert_eq!(parts(&hold.split), vec![(MONTHLY, 150), (TOP_UP, 30)]);
    assert_eq!(hold.state(), ReservationState::Open);
    assert_eq!(while_held, (350, 70, 150, 30), "a hold takes its credits out of the pools");
    assert_eq!(parts(&committed.returned), vec![(TOP_UP, 30), (MONTHLY, 10)]);
    let consumption = committed.consumption.expect("consumption");
    assert_eq!((consumption.consumption_key.as_str(), consumption.amount_credits), ("job-1", 140));
    assert_eq!(parts(&consumption.split), vec![(MONTHLY, 140)]);
    assert_eq!(pools_and_usage(&app).await, (360, 100, 140, 0));
    assert!(app.open_holds("team").await.is_empty());
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn c5_commit_for_more_draws_the_extra_or_fails_and_leaves_the_hold_as_it_was(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.hot_path_example().await;
    app.reserve("job-1", "member-a", "team", 100, 0).await.expect("reserve");
    let before = app.snapshot().await;

    let too_much = app.commit("job-1", "member-a", "team", 201).await;
    let unchanged = app.snapshot().await;
    let more = app.commit("job-1", "member-a", "team", 180).await.expect("commit 180");

    assert_eq!(too_much.expect_err("only 100 more drawable").code(), Code::ResourceExhausted);
    assert_eq!(unchanged, before);
    let consumption = more.consumption.expect("consumption");
    assert_eq!(parts(&consumption.split), vec![(MONTHLY, 150), (TOP_UP, 30)]);
    assert!(more.returned.is_empty());
    assert_eq!(pools_and_usage(&app).await, (350, 70, 150, 30));
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn c5_release_returns_everything_its_retry_replays_and_a_closed_hold_stays_closed(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.hot_path_example().await;
    app.reserve("job-1", "member-a", "team", 180, 0).await.expect("reserve");
    app.reserve("job-2", "member-a", "team", 10, 0).await.expect("reserve");

    let released = app.release("job-1", "member-a", "team").await.expect("release");
    let retried = app.release("job-1", "member-a", "team").await.expect("retried release");
    let commit_after_release = app.commit("job-1", "member-a", "team", 10).await;
    app.commit("job-2", "member-a", "team", 10).await.expect("commit job-2");
    let release_after_commit = app.release("job-2", "member-a", "team").await;

    assert_eq!(parts(&released.returned), vec![(TOP_UP, 30), (MONTHLY, 150)]);
    assert_eq!(released.reservation.as_ref().expect("hold").state(), ReservationState::Released);
    assert_eq!(retried, released);
    let status = assert_error(commit_after_release, Code::FailedPrecondition, "reservation_key");
    assert_eq!(status.get_details_error_info().expect("info").reason, "HOLD_NOT_OPEN");
    assert_error(release_after_commit, Code::FailedPrecondition, "reservation_key");
    // job-2 was held after job-1 had taken A's whole monthly allowance, so it drew top-up.
    assert_eq!(pools_and_usage(&app).await, (500, 90, 0, 10));
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn c5_a_hold_past_its_ttl_is_released_by_the_service(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let clock = Arc::new(ManualClock::starting_at(1_800_000_000_000));
    let app = spawn_app_at(backend, clock.clone(), |_| {}).await;
    app.hot_path_example().await;
    app.reserve("short", "member-a", "team", 180, 5).await.expect("reserve for 5 s");
    app.reserve("long", "member-b", "team", 20, 3_600).await.expect("reserve for an hour");

    clock.advance(Duration::from_secs(6));
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.open_holds("team").await.len() != 1 {
        assert!(Instant::now() < deadline, "the sweeper never released the expired hold");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let left = app.open_holds("team").await;
    assert_eq!(left[0].reservation_key, "long");
    let expired: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT kind, member_account_id FROM notifications WHERE kind = 'reservation_expired'")
            .fetch_all(&app.db)
            .await
            .expect("outbox");
    assert_eq!(expired, vec![("reservation_expired".to_owned(), Some("member-a".to_owned()))], "reported once");
    assert_eq!(pools_and_usage(&app).await, (480, 100, 0, 0), "A's 180 is back; B's 20 still held");
    let status =
        assert_error(app.commit("short", "member-a", "team", 1).await, Code::FailedPrecondition, "reservation_key");
    assert_eq!(status.get_details_error_info().expect("info").metadata["state"], "expired");
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn c5b_open_holds_per_member_are_capped(#[values(Backend::Postgres, Backend::Sqlite)] backend: Backend) {
    let app = spawn_app_with(backend, |config| config.max_open_reservations_per_member = 3).await;
    app.hot_path_example().await;
    for job in ["job-1", "job-2", "job-3"] {
        app.reserve(job, "member-a", "team", 1, 0).await.expect("under the cap");
    }

    let fourth = app.reserve("job-4", "member-a", "team", 1, 0).await;
    let other_member = app.reserve("job-b", "member-b", "team", 1, 0).await;
    app.release("job-1", "member-a", "team").await.expect("release one");
    let after_release = app.reserve("job-4", "member-a", "team", 1, 0).await;

    let status = assert_error(fourth, Code::FailedPrecondition, "account_id");
    assert_eq!(status.get_details_error_info().expect("info").reason, "TOO_MANY_OPEN_HOLDS");
    other_member.expect("the cap is per member");
    after_release.expect("a place came free");
    let open: Vec<(String, u32)> = app
        .members("team")
        .await
        .into_iter()
        .map(|m| (m.account_id, m.open_reservations))
        .filter(|(_, open)| *open > 0)
        .collect();
    assert_eq!(open, vec![("member-a".to_owned(), 3), ("member-b".to_owned(), 1)], "ListMembers counts open holds");
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn c5b_list_reservations_shows_open_holds_by_member_and_age(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let clock = Arc::new(ManualClock::starting_at(1_800_000_000_000));
    let app = spawn_app_at(backend, clock.clone(), |_| {}).await;
    app.hot_path_example().await;
    app.reserve("b-old", "member-b", "team", 5, 0).await.expect("b old");
    clock.advance(Duration::from_secs(30));
    app.reserve("a-old", "member-a", "team", 5, 0).await.expect("a old");
    clock.advance(Duration::from_secs(30));
    app.reserve("a-new", "member-a", "team", 5, 0).await.expect("a new");
    app.reserve("a-done", "member-a", "team", 5, 0).await.expect("a done");
    app.commit("a-done", "member-a", "team", 5).await.expect("closed holds are not listed");
    clock.advance(Duration::from_secs(10));

    let mut listed = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .admin
            .clone()
            .list_reservations(ListReservationsRequest {
                workspace_id: "team".into(),
                account_id: String::new(),
                page_size: 1,
                page_token: token,
            })
            .await
            .expect("ListReservations")
            .into_inner();
        listed.extend(page.reservations);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let only_b = app
        .admin
        .clone()
        .list_reservations(ListReservationsRequest {
            workspace_id: "team".into(),
            account_id: "member-b".into(),
            page_size: 0,
            page_token: String::new(),
        })
        .await
        .expect("filtered")
        .into_inner()
        .reservations;

    let summary: Vec<(&str, &str, i64)> =
        listed.iter().map(|r| (r.account_id.as_str(), r.reservation_key.as_str(), r.age_seconds)).collect();
    assert_eq!(summary, vec![("member-a", "a-old", 40), ("member-a", "a-new", 10), ("member-b", "b-old", 70)]);
    assert_eq!(only_b.len(), 1);
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn c5b_removing_a_member_releases_its_open_holds_and_frees_its_reservation(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.hot_path_example().await;
    app.reserve("job-1", "member-a", "team", 170, 0).await.expect("reserve");
    app.reserve("job-2", "member-a", "team", 10, 0).await.expect("reserve");

    let removed = app.remove_member("team", "owner", "member-a").await.expect("remove");

    assert_eq!(removed.released_reservations, 2);
    assert!(app.open_holds("team").await.is_empty());
    let workspace = app.workspace("team").await;
    assert_eq!((workspace.monthly_pool_credits, workspace.top_up_pool_credits), (500, 100));
    assert_eq!(workspace.monthly_reserved_credits, 150, "only B's reservation is left");
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn c6_partial_refunds_go_back_last_drawn_first_and_never_exceed_the_consumption(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.hot_path_example().await;
    app.consume("gen-1", "member-a", "team", 180).await.expect("consume");

    let first = app.refund("gen-1", "member-a", "team", Some(40)).await.expect("refund 40");
    let too_much = app.refund("gen-1", "member-a", "team", Some(141)).await;
    let rest = app.refund("gen-1", "member-a", "team", None).await.expect("refund the rest");
    let nothing_left = app.refund("gen-1", "member-a", "team", Some(1)).await;

    assert_eq!(parts(&first.returned), vec![(TOP_UP, 30), (MONTHLY, 10)]);
    assert_eq!(first.consumption.expect("consumption").refunded_credits, 40);
    let status = assert_error(too_much, Code::FailedPrecondition, "amount_credits");
    assert_eq!(status.get_details_error_info().expect("info").metadata["refundable_credits"], "140");
    assert_eq!(parts(&rest.returned), vec![(MONTHLY, 140)]);
    assert_eq!(rest.forfeited_credits, 0);
    assert_error(nothing_left, Code::FailedPrecondition, "amount_credits");
    assert_eq!(pools_and_usage(&app).await, (500, 100, 0, 0));
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn c6_a_committed_hold_is_refunded_like_a_consumption(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.hot_path_example().await;
    app.reserve("job-1", "member-a", "team", 100, 0).await.expect("reserve");
    app.commit("job-1", "member-a", "team", 80).await.expect("commit");

    let refund = app.refund("job-1", "member-a", "team", None).await.expect("refund");
    let refund_of_open_hold = {
        app.reserve("job-2", "member-a", "team", 10, 0).await.expect("reserve");
        app.refund("job-2", "member-a", "team", None).await
    };

    assert_eq!(parts(&refund.returned), vec![(MONTHLY, 80)]);
    assert_error(refund_of_open_hold, Code::FailedPrecondition, "consumption_key");
    assert_eq!(pools_and_usage(&app).await, (490, 100, 10, 0));
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn c7_a_retried_consume_replays_and_a_changed_one_is_refused(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.hot_path_example().await;

    let first = app.consume("gen-1", "member-a", "team", 10).await.expect("first");
    let retry = app.consume("gen-1", "member-a", "team", 10).await.expect("retry");
    let changed = app.consume("gen-1", "member-a", "team", 11).await;
    let hold_with_taken_key = app.reserve("gen-1", "member-a", "team", 5, 0).await;

    assert_eq!(retry, first);
    let status = assert_error(changed, Code::AlreadyExists, "idempotency_key");
    assert_eq!(status.get_details_error_info().expect("info").metadata["differing_field"], "amount_credits");
    assert_eq!(hold_with_taken_key.expect_err("the key names a consumption").code(), Code::AlreadyExists);
    assert_eq!(pools_and_usage(&app).await.0, 490);
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c7_eight_racing_copies_of_one_consume_charge_once_and_all_get_the_same_answer(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = Arc::new(spawn_app(backend).await);
    app.hot_path_example().await;

    let calls = (0..8).map(|_| {
        let app = Arc::clone(&app);
        tokio::spawn(async move { app.consume("gen-race", "member-a", "team", 25).await })
    });
    let answers = join_all(calls).await;

    let first = answers[0].clone().expect("charged");
    assert!(answers.iter().all(|answer| answer.as_ref().ok() == Some(&first)), "{answers:?}");
    assert_eq!(pools_and_usage(&app).await, (475, 100, 25, 0));
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn c7_a_consume_key_stays_taken_after_its_idempotency_record_is_pruned(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let clock = Arc::new(ManualClock::starting_at(1_800_000_000_000));
    let app = spawn_app_at(backend, clock.clone(), |_| {}).await;
    app.hot_path_example().await;
    app.consume("gen-1", "member-a", "team", 10).await.expect("consume");
    let records = || async {
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM idempotency_records").fetch_one(&app.db).await.expect("count");
        count
    };
    assert!(records().await > 0);

    clock.advance(Duration::from_secs(25 * 3_600));
    let deadline = Instant::now() + Duration::from_secs(30);
    while records().await > 0 {
        assert!(Instant::now() < deadline, "records past the 24 h retention were never pruned");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let late_retry = app.consume("gen-1", "member-a", "team", 10).await;

    assert_eq!(late_retry.expect_err("the charge still exists").code(), Code::AlreadyExists);
    assert_eq!(pools_and_usage(&app).await.0, 490, "charged once");
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn a1_personal_context_draws_account_credits_monthly_first_and_workspace_work_never_touches_them(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.hot_path_example().await;
    app.admin
        .clone()
        .add_account_credits(AddAccountCreditsRequest {
            idempotency_key: key(),
            account_id: "owner".into(),
            amount_credits: 200,
        })
        .await
        .expect("buy");
    app.add_member("team", "owner", "owner", Role::Admin).await.expect_err("the owner is already a member");
    app.set_allowance("team", "owner", "owner", 100, 0).await.expect("owner allowance");

    let personal = app.consume("mine", "owner", "", 450).await.expect("personal consume");
    let in_team = app.consume("team-work", "owner", "team", 100).await.expect("workspace consume");
    let account = app.account("owner").await;
    let refund = app.refund("mine", "owner", "", Some(60)).await.expect("personal refund");

    assert_eq!(parts(&personal.split), vec![(Bucket::AccountMonthly, 400), (Bucket::AccountTopUp, 50)]);
    assert_eq!(personal.workspace_id, "");
    assert_eq!(parts(&in_team.split), vec![(MONTHLY, 100)]);
    assert_eq!((account.monthly_credits, account.top_up_credits), (0, 150), "the workspace consume took nothing here");
    assert_eq!(parts(&refund.returned), vec![(Bucket::AccountTopUp, 50), (Bucket::AccountMonthly, 10)]);
    let balance = app.balance("owner", "").await;
    assert_eq!((balance.monthly_pool_credits, balance.top_up_pool_credits, balance.spendable_credits), (10, 200, 210));
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn get_balance_gives_what_a_usage_bar_needs(#[values(Backend::Postgres, Backend::Sqlite)] backend: Backend) {
    let app = spawn_app(backend).await;
    app.hot_path_example().await;
    app.consume("gen-1", "member-a", "team", 100).await.expect("consume");
    app.reserve("job-1", "member-a", "team", 20, 0).await.expect("hold");

    let balance = app.balance("member-a", "team").await;

    let monthly = balance.monthly.expect("monthly");
    assert_eq!((monthly.allowance_credits, monthly.used_credits, monthly.remaining_credits), (150, 120, 30));
    assert_eq!(balance.top_up.expect("top_up").remaining_credits, 50);
    assert_eq!((balance.monthly_pool_credits, balance.top_up_pool_credits), (380, 100));
    assert_eq!((balance.spendable_credits, balance.held_credits), (80, 20));
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn c7_a_retried_partial_refund_replays_instead_of_refunding_twice(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.hot_path_example().await;
    app.consume("gen-1", "member-a", "team", 100).await.expect("consume");
    let refund = |amount| {
        let mut credit = app.credit.clone();
        async move {
            credit
                .refund(RefundRequest {
                    idempotency_key: "refund-1".into(),
                    account_id: "member-a".into(),
                    workspace_id: "team".into(),
                    consumption_key: "gen-1".into(),
                    amount_credits: Some(amount),
                })
                .await
                .map(tonic::Response::into_inner)
        }
    };

    let first = refund(10).await.expect("refund 10");
    let retry = refund(10).await.expect("retried refund");
    let changed = refund(11).await;

    assert_eq!(retry, first);
    assert_eq!(first.consumption.expect("consumption").refunded_credits, 10);
    assert_error(changed, Code::AlreadyExists, "idempotency_key");
    assert_eq!(pools_and_usage(&app).await, (410, 100, 90, 0), "refunded once");
    app.assert_ledger_clean().await;
}
