//! Wires the services, health, reflection and shutdown around one store.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::config::Config;
use crate::grpc::{AdminApi, CreditApi};
use crate::ledger::{Clock, Ledger, SystemClock};
use crate::notify::Events;
use crate::proto::admin_service_server::AdminServiceServer;
use crate::proto::credit_service_server::CreditServiceServer;
use crate::store::postgres::{PgStore, PoolSettings};
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, StoreError};

/// Names reported by `grpc.health.v1.Health`: the server as a whole ("") and each service.
pub const HEALTH_SERVICE_NAMES: [&str; 3] = ["", "creditpool.v1.CreditService", "creditpool.v1.AdminService"];

/// The database the service runs on, chosen by the configured URL.
pub enum StoreChoice {
    /// `postgres://…`: the production store.
    Postgres(PgStore),
    /// `sqlite:…`, or no URL at all: the embedded file.
    Sqlite(SqliteStore),
}

impl StoreChoice {
    /// Applies the store's migrations.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            StoreChoice::Postgres(store) => store.migrate().await,
            StoreChoice::Sqlite(store) => store.migrate().await,
        }
    }
}

/// Opens the configured store (lazily; connections are made on first use): Postgres for a
/// `postgres://` URL, SQLite for a `sqlite:` URL or, with no URL, the embedded file.
pub fn open_store(config: &Config) -> anyhow::Result<StoreChoice> {
    match config.database_url.as_deref() {
        Some(url) if url.starts_with("sqlite:") => {
            Ok(StoreChoice::Sqlite(SqliteStore::connect_lazy(url, config.database_acquire_timeout())?))
        }
        Some(url) => {
            let settings = PoolSettings {
                max_connections: config.database_max_connections,
                acquire_timeout: config.database_acquire_timeout(),
                statement_timeout: config.statement_timeout(),
            };
            Ok(StoreChoice::Postgres(PgStore::connect_lazy(url, &settings)?))
        }
        None => {
            let url = SqliteStore::url_for_path(&config.sqlite_path).map_err(|e| {
                anyhow::anyhow!(e).context(format!("cannot create the directory of {}", config.sqlite_path.display()))
            })?;
            Ok(StoreChoice::Sqlite(SqliteStore::connect_lazy(&url, config.database_acquire_timeout())?))
        }
    }
}

/// Serves on `listener` until `shutdown` is cancelled, then drains: health goes NOT_SERVING, after
/// the drain delay the listener closes, in-flight calls get the grace period to finish.
pub async fn serve(config: Config, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    serve_with_clock(config, listener, shutdown, Arc::new(SystemClock)).await
}

/// [`serve`] with the ledger reading time from `clock` (tests move time by hand).
pub async fn serve_with_clock(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<()> {
    match open_store(&config)? {
        StoreChoice::Postgres(store) => run(store, "postgres", config, listener, shutdown, clock).await,
        StoreChoice::Sqlite(store) => run(store, "sqlite", config, listener, shutdown, clock).await,
    }
}

async fn run<S: Store>(
    store: S,
    store_name: &'static str,
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<()> {
    store
        .migrate()
        .await
        .map_err(|error| anyhow::anyhow!(error).context("cannot apply migrations (is the database reachable?)"))?;
    let ledger = Ledger::new(store.clone(), clock, config.ledger_settings());

    let (reporter, health_service) = tonic_health::server::health_reporter();
    set_health(&reporter, ServingStatus::NotServing).await;
    let watcher =
        tokio::spawn(watch_database(store.clone(), reporter.clone(), config.health_check_interval(), shutdown.clone()));
    let scheduler = config.renewal_scheduler_enabled.then(|| {
        tokio::spawn(renew_due_accounts(
            ledger.clone(),
            Duration::from_millis(config.renewal_tick_ms),
            shutdown.clone(),
        ))
    });
    let events = Events::new(config.stream_settings(), ledger.outbox_written(), shutdown.clone());
    let publisher = tokio::spawn(events.clone().publish(ledger.clone()));
    let relay = {
        let (store, wake_ups, shutdown) = (store.clone(), events.wake_ups(), shutdown.clone());
        tokio::spawn(async move { store.relay_wake_ups(wake_ups, shutdown).await })
    };
    let sweeper = tokio::spawn(sweep(
        ledger.clone(),
        Duration::from_millis(config.hold_sweep_interval_ms),
        Retention {
            idempotency: Duration::from_secs(config.idempotency_retention_seconds),
            notifications: Duration::from_secs(config.notification_retention_seconds),
        },
        shutdown.clone(),
    ));

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let address = listener.local_addr()?;
    tracing::info!(%address, store = store_name, database = %config.database_url.as_deref().map_or_else(|| config.sqlite_path.display().to_string(), redact), "creditpool serving");
    let drain_delay = config.shutdown_drain_delay();
    let drain_reporter = reporter.clone();
    let stopping = shutdown.clone();
    let server = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(AdminServiceServer::new(AdminApi::new(ledger.clone(), events)))
        .add_service(CreditServiceServer::new(CreditApi::new(ledger)))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
            stopping.cancelled().await;
            set_health(&drain_reporter, ServingStatus::NotServing).await;
            tracing::info!(drain_delay_ms = drain_delay.as_millis(), "shutting down: health NOT_SERVING");
            tokio::time::sleep(drain_delay).await;
        });

    let grace = drain_delay + config.shutdown_grace();
    let result = tokio::select! {
        result = server => result.map_err(anyhow::Error::from),
        () = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!(grace_ms = grace.as_millis(), "grace period over; stopping with calls in flight");
            Ok(())
        }
    };
    watcher.abort();
    sweeper.abort();
    publisher.abort();
    relay.abort();
    if let Some(scheduler) = scheduler {
        scheduler.abort();
    }
    store.close().await;
    tracing::info!("creditpool stopped");
    result
}

async fn set_health(reporter: &HealthReporter, status: ServingStatus) {
    for name in HEALTH_SERVICE_NAMES {
        reporter.set_service_status(name, status).await;
    }
}

/// Pings the database every `interval` and reports SERVING only while it answers.
async fn watch_database<S: Store>(store: S, reporter: HealthReporter, interval: Duration, shutdown: CancellationToken) {
    let mut serving = false;
    loop {
        let answered =
            matches!(tokio::time::timeout(interval.max(Duration::from_secs(1)), store.ping()).await, Ok(Ok(())));
        if shutdown.is_cancelled() {
            return;
        }
        if answered != serving {
            serving = answered;
            if serving {
                tracing::info!("database reachable: SERVING");
                set_health(&reporter, ServingStatus::Serving).await;
            } else {
                tracing::warn!("database unreachable: NOT_SERVING");
                set_health(&reporter, ServingStatus::NotServing).await;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// Holds released per sweep batch; idempotency records deleted per statement is ten times that.
const SWEEP_BATCH: u32 = 100;

/// How long records are kept.
struct Retention {
    idempotency: Duration,
    notifications: Duration,
}

/// Every `interval`: releases expired holds (C5), and prunes idempotency records and published
/// notifications past their retention.
async fn sweep<S: Store>(ledger: Ledger<S>, interval: Duration, retention: Retention, shutdown: CancellationToken) {
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
async fn renew_due_accounts<S: Store>(ledger: Ledger<S>, tick: Duration, shutdown: CancellationToken) {
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

/// A database URL without its password, for the log.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            let user = credentials.split(':').next().unwrap_or("");
            format!("{}{user}@{}", &url[..scheme_end + 3], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}
