//! Time decisions (hold expiry, idempotency pruning, renewal due-ness) come from the database's
//! clock, so a replica whose own clock is wrong decides nothing early.

use std::sync::Arc;
use std::time::Duration;

use creditpool::config::ClockSource;
use creditpool::ledger::{Clock, ManualClock, SystemClock};
use creditpool::proto::*;

use crate::helpers::{Backend, key, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_forty_days_fast_neither_expires_holds_nor_prunes_records_nor_renews_early() {
    let app = spawn_app(Backend::Postgres).await;
    app.design_example().await;
    crate::renewals::plan_with_anchor(&app, "alice").await;
    let period = app.account("alice").await.current_period;
    app.reserve("hold", "member-a", "team", 30, 60).await.expect("a one-minute hold");
    let purchase = AddAccountCreditsRequest { idempotency_key: key(), account_id: "alice".into(), amount_credits: 100 };
    let first = app.admin.clone().add_account_credits(purchase.clone()).await.expect("purchase").into_inner();

    let forty_days_fast = Arc::new(ManualClock::starting_at(SystemClock.now_ms() + 40 * 86_400_000));
    let fast = app
        .spawn_replica_at(forty_days_fast, |config| {
            config.clock = ClockSource::Database;
            config.hold_sweep_interval_ms = 20;
            config.renewal_tick_ms = 10;
        })
        .await;
    // Many sweeps and scheduler ticks of the fast replica.
    tokio::time::sleep(Duration::from_millis(1_000)).await;

    assert_eq!(app.open_holds("team").await.len(), 1, "the hold has 60 s to run on the database's clock");
    let retry = fast.admin.clone().add_account_credits(purchase).await.expect("retry").into_inner();
    assert_eq!(retry, first, "the record is kept: the retry replays");
    let alice = app.account("alice").await;
    assert_eq!(alice.current_period, period, "no renewal falls due on the database's clock");
    assert_eq!(alice.top_up_credits, 100, "the purchase applied once");
    // The fast replica stamps what it writes with the database's time too.
    let consumed = fast.consume("job", "member-b", "team", 5).await.expect("consume");
    let now = SystemClock.now_ms();
    let stamped = consumed.created_at.expect("created_at");
    let stamped_ms = stamped.seconds * 1_000 + i64::from(stamped.nanos) / 1_000_000;
    assert!((stamped_ms - now).abs() < 60_000, "stamped {stamped_ms}, now {now}");
    app.assert_ledger_clean().await;
}
