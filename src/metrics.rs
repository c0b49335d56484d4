//! Prometheus metrics: the recorder and its `/metrics` listener, and one function per thing the
//! service measures, so metric names and labels are written in this file only.
//!
//! Without a listener no recorder is installed and every function here is a no-op.

use std::net::SocketAddr;
use std::time::Duration;

use metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

/// Latency buckets in seconds: the hot path answers in milliseconds, admin calls and scans later.
const LATENCY_BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Calls-per-batch buckets, up to the largest `max_batch_calls`.
const BATCH_BUCKETS: [f64; 12] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 10_000.0];

const RPC_REQUESTS: &str = "creditpool_rpc_requests_total";
const RPC_DURATION: &str = "creditpool_rpc_duration_seconds";
const BATCH_CALLS: &str = "creditpool_batch_calls";
const BATCH_COMMIT_DURATION: &str = "creditpool_batch_commit_duration_seconds";
const POOL_CONNECTIONS: &str = "creditpool_db_pool_connections";
const POOL_WAITING: &str = "creditpool_db_pool_waiting";
const OPEN_HOLDS: &str = "creditpool_open_holds";
const SUBSCRIBERS: &str = "creditpool_notification_subscribers";
const OUTBOX_LAG: &str = "creditpool_outbox_lag_seconds";
const RENEWALS: &str = "creditpool_renewals_total";
const SWEEPER_RELEASES: &str = "creditpool_sweeper_released_holds_total";
const IDEMPOTENCY_REPLAYS: &str = "creditpool_idempotency_replays_total";
const CLOCK_OFFSET: &str = "creditpool_clock_offset_seconds";

/// Installs the global recorder and serves its text format over HTTP on `address` (any path,
/// conventionally `/metrics`). Call once, inside the runtime.
pub fn serve(address: SocketAddr) -> anyhow::Result<()> {
    PrometheusBuilder::new()
        .with_http_listener(address)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &LATENCY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(BATCH_CALLS.to_owned()), &BATCH_BUCKETS)?
        .install()
        .map_err(|error| anyhow::anyhow!(error).context(format!("cannot serve metrics on {address}")))?;
    describe();
    Ok(())
}

fn describe() {
    describe_counter!(RPC_REQUESTS, "RPCs answered, by method and status code");
    describe_histogram!(RPC_DURATION, Unit::Seconds, "time to answer an RPC (to the first response for streams)");
    describe_histogram!(BATCH_CALLS, Unit::Count, "hot-path calls applied in one group-commit transaction");
    describe_histogram!(BATCH_COMMIT_DURATION, Unit::Seconds, "time to load, apply, write and commit one batch");
    describe_gauge!(POOL_CONNECTIONS, Unit::Count, "database connections, by state (in_use, idle)");
    describe_gauge!(POOL_WAITING, Unit::Count, "transactions waiting for a database connection");
    describe_gauge!(OPEN_HOLDS, Unit::Count, "open reservations (holds) in the database");
    describe_gauge!(SUBSCRIBERS, Unit::Count, "WatchNotifications streams open on this replica");
    describe_gauge!(CLOCK_OFFSET, Unit::Seconds, "the database's clock minus this replica's (clock = \"database\")");
    describe_gauge!(OUTBOX_LAG, Unit::Seconds, "age of the oldest committed notification not yet published (0: none)");
    describe_counter!(RENEWALS, "account renewals, by outcome (succeeded, failed)");
    describe_counter!(SWEEPER_RELEASES, "expired holds released by the sweeper");
    describe_counter!(IDEMPOTENCY_REPLAYS, "mutations answered from a stored result (C7 retries)");
}

/// An RPC answered with `code` after `latency`.
pub fn rpc_finished(method: &str, code: &'static str, latency: Duration) {
    counter!(RPC_REQUESTS, "method" => method.to_owned(), "code" => code).increment(1);
    histogram!(RPC_DURATION, "method" => method.to_owned(), "code" => code).record(latency.as_secs_f64());
}

/// A group-commit batch of `calls` ended after `elapsed` (committed or not).
pub fn batch_finished(calls: usize, elapsed: Duration) {
    histogram!(BATCH_CALLS).record(calls as f64);
    histogram!(BATCH_COMMIT_DURATION).record(elapsed.as_secs_f64());
}

/// The database pool right now.
pub fn database_pool(in_use: u32, idle: u32) {
    gauge!(POOL_CONNECTIONS, "state" => "in_use").set(f64::from(in_use));
    gauge!(POOL_CONNECTIONS, "state" => "idle").set(f64::from(idle));
}

/// Counts one in a gauge for as long as it lives.
pub struct Counted(&'static str);

impl Counted {
    fn start(gauge: &'static str) -> Counted {
        gauge!(gauge).increment(1.0);
        Counted(gauge)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        gauge!(self.0).decrement(1.0);
    }
}

/// Keeps a transaction counted in [`POOL_WAITING`] while it waits for its connection.
pub fn waiting_for_connection() -> Counted {
    Counted::start(POOL_WAITING)
}

/// What the database holds right now: open holds, and the age of the oldest unpublished event.
pub fn database_state(open_holds: i64, outbox_lag: Duration) {
    gauge!(OPEN_HOLDS).set(open_holds as f64);
    gauge!(OUTBOX_LAG).set(outbox_lag.as_secs_f64());
}

/// Keeps a notification stream counted in [`SUBSCRIBERS`] while it is open.
pub fn subscriber() -> Counted {
    Counted::start(SUBSCRIBERS)
}

/// A renewal committed: funded (`true`) or failed for lack of credits.
pub fn renewal(funded: bool) {
    counter!(RENEWALS, "outcome" => if funded { "succeeded" } else { "failed" }).increment(1);
}

/// The sweeper released `count` expired holds.
pub fn holds_expired(count: u32) {
    counter!(SWEEPER_RELEASES).increment(u64::from(count));
}

/// A mutation was answered from its stored result.
pub fn replayed() {
    counter!(IDEMPOTENCY_REPLAYS).increment(1);
}

/// The database's clock minus this replica's, as last measured.
pub fn clock_offset(offset_ms: i64) {
    gauge!(CLOCK_OFFSET).set(offset_ms as f64 / 1_000.0);
}
