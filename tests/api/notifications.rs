//! DESIGN §4: the outbox and WatchNotifications.

use std::sync::Arc;
use std::time::Duration;

use creditpool::ledger::ManualClock;
use creditpool::proto::admin_service_client::AdminServiceClient;
use creditpool::proto::*;
use rstest::rstest;
use tonic::Code;
use tonic::codec::Streaming;

use crate::helpers::{Backend, TestApp, assert_error, key, next_period, spawn_app, spawn_app_at, spawn_app_with};

/// Generous bound on delivery; the tests assert order and count, not speed.
const DELIVERY: Duration = Duration::from_secs(30);

async fn subscribe(
    app: &TestApp,
    workspace: &str,
    kinds: &[NotificationKind],
    after: i64,
) -> Streaming<WatchNotificationsResponse> {
    app.admin
        .clone()
        .watch_notifications(WatchNotificationsRequest {
            account_id: String::new(),
            workspace_id: workspace.into(),
            kinds: kinds.iter().map(|k| *k as i32).collect(),
            after_sequence: after,
        })
        .await
        .expect("WatchNotifications")
        .into_inner()
}

async fn next(stream: &mut Streaming<WatchNotificationsResponse>) -> Notification {
    tokio::time::timeout(DELIVERY, stream.message())
        .await
        .expect("an event within the bound")
        .expect("the stream stays up")
        .expect("the stream does not end")
        .notification
        .expect("notification")
}

/// The next event about a pool itself, skipping members' own allowance events.
async fn next_pool_event(stream: &mut Streaming<WatchNotificationsResponse>) -> Notification {
    loop {
        let event = next(stream).await;
        if event.member_account_id.is_empty() {
            return event;
        }
    }
}

async fn set_thresholds(app: &TestApp, monthly: i64, top_up: i64, member_percent: u32) {
    app.admin
        .clone()
        .set_low_balance_thresholds(SetLowBalanceThresholdsRequest {
            idempotency_key: key(),
            workspace_id: "team".into(),
            actor_account_id: "owner".into(),
            thresholds: Some(LowBalanceThresholds {
                monthly_pool_credits: monthly,
                top_up_pool_credits: top_up,
                member_remaining_percent: member_percent,
                overflow_units: 0,
            }),
        })
        .await
        .expect("thresholds");
}

async fn stored_low_balance_pool_events(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM notifications WHERE kind = 'low_balance' AND member_account_id IS NULL")
        .fetch_one(&app.db)
        .await
        .expect("count")
}

/// One consume that crosses a 499 threshold on the 500 monthly pool, then its refund (re-arms).
async fn cross_and_re_arm(app: &TestApp, round: usize) {
    let key = format!("cross-{round}");
    app.consume(&key, "member-a", "team", 1).await.expect("consume");
    app.refund(&key, "member-a", "team", None).await.expect("refund");
}

#[rstest]
#[tokio::test]
async fn low_balance_fires_once_per_crossing_and_again_after_a_top_up_re_arms_it(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.hot_path_example().await;
    set_thresholds(&app, 0, 40, 0).await;
    // Top-up only: A and B draw the 100 top-up pool through 50 each.
    app.set_allowance("team", "owner", "member-a", 0, 50).await.expect("A");
    app.set_allowance("team", "owner", "member-b", 0, 50).await.expect("B");
    let mut stream = subscribe(&app, "team", &[NotificationKind::LowBalance], 0).await;

    for i in 0..5 {
        app.consume(&format!("a-{i}"), "member-a", "team", 10).await.expect("A drains");
    }
    for i in 0..3 {
        app.consume(&format!("b-{i}"), "member-b", "team", 5).await.expect("B drains");
    }
    let first = next_pool_event(&mut stream).await;
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
    app.set_allowance("team", "owner", "member-b", 0, 150).await.expect("B may drain again");
    for i in 0..10 {
        app.consume(&format!("b-again-{i}"), "member-b", "team", 10).await.expect("B drains again");
    }
    // Members' own thresholds (0 %) fire too, when their allowances run out.
    let second = next_pool_event(&mut stream).await;

    let Some(notification::Payload::LowBalance(payload)) = first.payload.clone() else { panic!("{first:?}") };
    assert_eq!(
        (first.kind(), first.workspace_id.as_str(), first.account_id.as_str()),
        (NotificationKind::LowBalance, "team", "owner")
    );
    assert_eq!((payload.bucket(), payload.balance, payload.threshold), (Bucket::WorkspaceTopUp, 40, 40));
    assert!(second.sequence > first.sequence);
    assert_eq!(stored_low_balance_pool_events(&app).await, 2, "one per crossing, not one per consume");
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn a_change_that_rolls_back_emits_nothing(#[values(Backend::Postgres, Backend::Sqlite)] backend: Backend) {
    let app = spawn_app(backend).await;
    app.hot_path_example().await;
    set_thresholds(&app, 499, 0, 0).await;

    let refused = app.consume("too-much", "member-a", "team", 1_000).await;

    assert_eq!(refused.expect_err("insufficient").code(), Code::ResourceExhausted);
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM notifications").fetch_one(&app.db).await.expect("count");
    assert_eq!(stored, 0);
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn a_subscriber_reconnecting_with_its_cursor_receives_exactly_the_events_it_missed(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.hot_path_example().await;
    set_thresholds(&app, 499, 0, 0).await;
    let mut stream = subscribe(&app, "team", &[], 0).await;
    cross_and_re_arm(&app, 0).await;
    let cursor = next(&mut stream).await.sequence;
    drop(stream);

    for round in 1..=100 {
        cross_and_re_arm(&app, round).await;
    }
    let mut resumed = subscribe(&app, "team", &[], cursor).await;
    let mut sequences = Vec::new();
    for _ in 0..100 {
        sequences.push(next(&mut resumed).await.sequence);
    }

    assert_eq!(sequences, (cursor + 1..=cursor + 100).collect::<Vec<_>>(), "exactly those 100, in order, none twice");
    app.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_caused_through_one_server_reaches_a_subscriber_of_another() {
    let first = spawn_app(Backend::Postgres).await;
    let second = first.spawn_replica().await;
    first.hot_path_example().await;
    set_thresholds(&first, 499, 0, 0).await;
    let mut stream = subscribe(&second, "team", &[NotificationKind::LowBalance], 0).await;

    cross_and_re_arm(&first, 0).await;
    let event = next(&mut stream).await;

    assert_eq!((event.kind(), event.workspace_id.as_str()), (NotificationKind::LowBalance, "team"));
    first.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_gets_all_of_a_burst_in_order_and_never_holds_writers_back(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app_with(backend, |config| config.notification_stream_buffer = 8).await;
    app.hot_path_example().await;
    set_thresholds(&app, 499, 0, 0).await;
    // The subscriber is another client, on its own connection, as a slow consumer would be.
    let mut stream = AdminServiceClient::connect(format!("http://{}", app.address))
        .await
        .expect("connect")
        .watch_notifications(WatchNotificationsRequest {
            account_id: String::new(),
            workspace_id: "team".into(),
            kinds: Vec::new(),
            after_sequence: 0,
        })
        .await
        .expect("watch")
        .into_inner();

    // The subscriber reads nothing while 1,000 events are made: its buffer of 8 fills at once.
    for round in 0..1_000 {
        cross_and_re_arm(&app, round).await;
    }
    let mut sequences = Vec::with_capacity(1_000);
    for _ in 0..1_000 {
        sequences.push(next(&mut stream).await.sequence);
    }

    assert!(sequences.windows(2).all(|pair| pair[1] == pair[0] + 1), "all of them, in order");
    assert_eq!(sequences.len(), 1_000);
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn a_failed_renewal_arrives_as_renewal_failed_with_owner_workspaces_required_and_available(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    let current = app.create_account_with_plan("owner", 1_000).await.current_period;
    for workspace in ["a", "b"] {
        app.create_workspace(workspace, "owner").await;
        app.set_pool_size(workspace, "owner", 500).await.expect("pool");
    }
    app.admin
        .clone()
        .set_account_plan(SetAccountPlanRequest {
            idempotency_key: key(),
            account_id: "owner".into(),
            monthly_credits: 600,
            billing_anchor: None,
        })
        .await
        .expect("cheaper plan next period");
    let mut stream = app
        .admin
        .clone()
        .watch_notifications(WatchNotificationsRequest {
            account_id: "owner".into(),
            workspace_id: String::new(),
            kinds: vec![NotificationKind::RenewalFailed as i32],
            after_sequence: 0,
        })
        .await
        .expect("watch")
        .into_inner();

    app.renew("owner", &next_period(&current)).await.expect("renew");
    let event = next(&mut stream).await;

    assert_eq!((event.kind(), event.account_id.as_str()), (NotificationKind::RenewalFailed, "owner"));
    let Some(notification::Payload::Renewal(payload)) = event.payload else { panic!("renewal payload") };
    assert_eq!(payload.workspace_ids, vec!["a", "b"]);
    assert_eq!((payload.required_credits, payload.available_credits), (1_000, 600));
    assert_eq!(payload.period, next_period(&current));
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn bad_subscriptions_and_thresholds_are_refused_precisely(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let clock = Arc::new(ManualClock::starting_at(1_800_000_000_000));
    let app = spawn_app_at(backend, clock.clone(), |config| config.notification_retention_seconds = 60).await;
    app.hot_path_example().await;
    set_thresholds(&app, 499, 0, 0).await;
    cross_and_re_arm(&app, 0).await;
    cross_and_re_arm(&app, 1).await;
    let mut stream = subscribe(&app, "team", &[], 0).await;
    let first = next(&mut stream).await.sequence;
    next(&mut stream).await;
    drop(stream);
    let watch = |kinds: Vec<i32>, after: i64| {
        let mut admin = app.admin.clone();
        async move {
            admin
                .watch_notifications(WatchNotificationsRequest {
                    account_id: String::new(),
                    workspace_id: String::new(),
                    kinds,
                    after_sequence: after,
                })
                .await
                .map(|_| ())
        }
    };

    let unknown_kind = watch(vec![99], 0).await;
    let unset_kind = watch(vec![0], 0).await;
    let negative = watch(vec![], -1).await;
    let beyond = watch(vec![], first + 1_000).await;
    let bad_percent = app
        .admin
        .clone()
        .set_low_balance_thresholds(SetLowBalanceThresholdsRequest {
            idempotency_key: key(),
            workspace_id: "team".into(),
            actor_account_id: "owner".into(),
            thresholds: Some(LowBalanceThresholds {
                monthly_pool_credits: 0,
                top_up_pool_credits: 0,
                member_remaining_percent: 101,
                overflow_units: 0,
            }),
        })
        .await;
    clock.advance(Duration::from_secs(120));
    cross_and_re_arm(&app, 2).await; // wakes the publisher, which prunes what is past retention
    let deadline = std::time::Instant::now() + DELIVERY;
    let pruned = loop {
        let result = watch(vec![], first).await;
        if result.is_err() || std::time::Instant::now() > deadline {
            break result;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    assert_error(unknown_kind, Code::InvalidArgument, "kinds");
    assert_error(unset_kind, Code::InvalidArgument, "kinds");
    assert_error(negative, Code::InvalidArgument, "after_sequence");
    assert_error(beyond, Code::InvalidArgument, "after_sequence");
    assert_error(bad_percent, Code::InvalidArgument, "thresholds");
    assert_error(pruned, Code::OutOfRange, "after_sequence");
    watch(vec![], 0).await.expect("0 asks for whatever is kept");
    app.assert_ledger_clean().await;
}

/// Transactions ended (committed or rolled back: reads roll back) in the test's database so far
/// (Postgres statistics).
async fn transactions(app: &crate::helpers::TestApp) -> i64 {
    sqlx::query_scalar(
        "SELECT CAST(xact_commit + xact_rollback AS BIGINT) FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(&app.db)
    .await
    .expect("pg_stat_database")
}

#[tokio::test]
async fn idle_subscribers_share_one_reader_and_cost_the_database_nothing_each() {
    // Local even with `CITUS_URL` set: the count is the database's, which on Citus every test shares.
    let app = crate::helpers::spawn_local_app_with(Backend::Postgres, |config| {
        config.notification_fallback_interval_ms = 100;
        config.hold_sweep_interval_ms = 1_000;
        config.max_notification_streams_per_principal = 1_000;
    })
    .await;
    app.hot_path_example().await;
    let mut streams = Vec::new();
    for _ in 0..200 {
        streams.push(
            app.admin
                .clone()
                .watch_notifications(WatchNotificationsRequest::default())
                .await
                .expect("subscribe")
                .into_inner(),
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await; // every subscriber caught up and idle

    let before = transactions(&app).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let per_second = (transactions(&app).await - before) / 3;
    app.consume("after-idling", "member-a", "team", 150).await.expect("drain the allowance");
    let mut delivered = 0_usize;
    for stream in &mut streams {
        let event = tokio::time::timeout(Duration::from_secs(30), stream.message()).await.expect("an event in time");
        delivered += usize::from(event.is_ok_and(|event| event.is_some()));
    }

    // One reader polling every 100 ms plus health and sweeps is tens of transactions a second;
    // 200 subscribers polling on their own were about 2,000.
    assert!(per_second < 200, "idle subscribers made {per_second} transactions/s");
    assert_eq!(delivered, 200, "every subscriber still gets the new event");
    app.assert_ledger_clean().await;
}
