//! The background loops of a serving replica: the database watch behind readiness, the hold
//! sweeper, the renewal scheduler and the metrics sampler. Each runs until `shutdown`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::ledger::Ledger;
use crate::store::Store;

/// Health names that say the process is alive: SERVING from start until the drain, whatever the
/// database does, so a liveness probe never restarts pods because the database is down. `""`
/// is among them because it is what a probe asks when it names no service.
pub const LIVENESS: [&str; 2] = ["", "liveness"];
/// Health names that say calls can be served: SERVING only while the database answers and the
/// replica is not draining. Readiness probes and load balancers ask these.
pub const READINESS: [&str; 3] = ["readiness", "creditpool.v1.CreditService", "creditpool.v1.AdminService"];

/// Sets every name in `names` to `status`.
pub async fn set_health(reporter: &HealthReporter, names: &[&str], status: ServingStatus) {
    for name in names {
        reporter.set_service_status(*name, status).await;
    }
}

/// Whether the database answered the last health check; calls fail fast while it does not.
/// Starts as reachable: start-up has just connected.
#[derive(Debug, Clone)]
pub struct DatabaseState(Arc<AtomicBool>);

impl Default for DatabaseState {
    fn default() -> Self {
        DatabaseState(Arc::new(AtomicBool::new(true)))
    }
}

impl DatabaseState {
    /// Whether the database answered the last check.
    pub fn is_reachable(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Reads the database's clock into `clock` once: whether the database answered.
pub async fn calibrate<S: Store>(store: &S, clock: Option<&ClockWatch>, timeout: Duration) -> bool {
    let before = clock.map(|watch| watch.clock.local_ms());
    let Ok(Ok(database_ms)) = tokio::time::timeout(timeout, store.ping()).await else { return false };
    if let (Some(watch), Some(before), Some(database_ms)) = (clock, before, database_ms) {
        let offset = watch.clock.calibrate(before, database_ms, watch.clock.local_ms());
        crate::metrics::clock_offset(offset);
        let off = offset.unsigned_abs() > watch.max_offset_ms;
        if off != watch.off.swap(off, Ordering::Relaxed) {
            if off {
                tracing::warn!(offset_ms = offset, "this replica's clock is off the database's; using the database's");
            } else {
                tracing::info!(offset_ms = offset, "this replica's clock agrees with the database's again");
            }
        }
    }
    true
}

/// The database clock a replica reads its time from, and when its offset is worth a warning.
pub struct ClockWatch {
    /// The clock.
    pub clock: Arc<crate::ledger::DatabaseClock>,
    /// An offset beyond this is logged.
    pub max_offset_ms: u64,
    off: AtomicBool,
}

impl ClockWatch {
    /// Watches `clock`, warning past `max_offset_ms`.
    pub fn new(clock: Arc<crate::ledger::DatabaseClock>, max_offset_ms: u64) -> ClockWatch {
        ClockWatch { clock, max_offset_ms, off: AtomicBool::new(false) }
    }
}

/// Pings the database every `interval` (calibrating `clock` with its answer); readiness is
/// SERVING only while it answers, and `state` says whether it did.
pub async fn watch_database<S: Store>(
    store: S,
    clock: Option<Arc<ClockWatch>>,
    reporter: HealthReporter,
    state: DatabaseState,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut serving = false;
    loop {
        let answered = calibrate(&store, clock.as_deref(), interval.max(Duration::from_secs(1))).await;
        if shutdown.is_cancelled() {
            return;
        }
        state.0.store(answered, Ordering::Relaxed);
        if answered != serving {
            serving = answered;
            if serving {
                tracing::info!("database reachable: readiness SERVING");
                set_health(&reporter, &READINESS, ServingStatus::Serving).await;
            } else {
                tracing::warn!("database unreachable: readiness NOT_SERVING");
                set_health(&reporter, &READINESS, ServingStatus::NotServing).await;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// At shutdown, turns every health name NOT_SERVING (the listeners stay open for the drain
/// delay, so load balancers see it and stop routing here).
pub async fn drain_health(reporter: HealthReporter, drain_delay: Duration, shutdown: CancellationToken) {
    shutdown.cancelled().await;
    set_health(&reporter, &READINESS, ServingStatus::NotServing).await;
    set_health(&reporter, &LIVENESS, ServingStatus::NotServing).await;
    tracing::info!(drain_delay_ms = drain_delay.as_millis(), "shutting down: health NOT_SERVING");
}

/// Holds released per sweep batch; idempotency records deleted per statement is ten times that.
const SWEEP_BATCH: u32 = 100;

/// How long records are kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Idempotency records.
    pub idempotency: Duration,
    /// Published notifications.
    pub notifications: Duration,
}

/// Every `interval`: releases expired holds (C5), and prunes idempotency records and published
/// notifications past their retention.
pub async fn sweep<S: Store>(ledger: Ledger<S>, interval: Duration, retention: Retention, shutdown: CancellationToken) {
    let as_ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let (idempotency_ms, notifications_ms) = (as_ms(retention.idempotency), as_ms(retention.notifications));
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = shutdown.cancelled() => return,
        }
        // A full batch means more may be due: keep going until a batch comes back short.
        loop {
            match ledger.expire_holds(SWEEP_BATCH).await {
                Ok(expired) => {
                    if expired > 0 {
                        crate::metrics::holds_expired(expired);
                        tracing::info!(expired, "released expired holds");
                    }
                    if expired < SWEEP_BATCH || shutdown.is_cancelled() {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "releasing expired holds failed; retrying next sweep");
                    break;
                }
            }
        }
        if let Err(error) = ledger.prune_idempotency(idempotency_ms, SWEEP_BATCH * 10).await {
            tracing::warn!(%error, "pruning idempotency records failed; retrying next sweep");
        }
        if let Err(error) = ledger.prune_notifications(notifications_ms).await {
            tracing::warn!(%error, "pruning notifications failed; retrying next sweep");
        }
    }
}

/// R6: every `tick`, renews the accounts whose next anchored period has started.
pub async fn renew_due_accounts<S: Store>(ledger: Ledger<S>, tick: Duration, shutdown: CancellationToken) {
    loop {
        match ledger.renew_due_accounts(SWEEP_BATCH).await {
            Ok(0) => {}
            Ok(renewed) => tracing::info!(renewed, "renewed due accounts"),
            Err(error) => tracing::warn!(%error, "renewing due accounts failed; retrying next tick"),
        }
        tokio::select! {
            () = tokio::time::sleep(tick) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// Every `interval`, reads the database gauges (pool, open holds, outbox lag) into the metrics.
pub async fn sample_gauges<S: Store>(ledger: Ledger<S>, interval: Duration, shutdown: CancellationToken) {
    loop {
        match ledger.store_gauges().await {
            Ok(gauges) => {
                crate::metrics::database_pool(gauges.pool_in_use, gauges.pool_idle);
                let lag_ms = gauges.oldest_unpublished_ms.map_or(0, |oldest| ledger.now_ms().saturating_sub(oldest));
                let lag = Duration::from_millis(u64::try_from(lag_ms).unwrap_or(0));
                crate::metrics::database_state(gauges.open_holds, lag);
            }
            Err(error) => tracing::debug!(%error, "reading the metrics gauges failed; retrying next interval"),
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// On SIGHUP, re-reads the auth file and the TLS files; a bad file keeps what is in force.
pub async fn reload_on_hangup(
    authenticator: crate::auth::Authenticator,
    tls: Option<crate::tls::Tls>,
    shutdown: CancellationToken,
) {
    #[cfg(unix)]
    {
        let mut hangups = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(hangups) => hangups,
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGHUP: credentials reload only on restart");
                return;
            }
        };
        loop {
            tokio::select! {
                received = hangups.recv() => if received.is_none() { return },
                () = shutdown.cancelled() => return,
            }
            tracing::info!("SIGHUP received: reloading credentials");
            authenticator.reload();
            if let Some(tls) = &tls {
                tls.reload();
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (authenticator, tls);
        shutdown.cancelled().await;
    }
}
