//! Wires the services, health, reflection, the tower layers and shutdown around one store.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;

use crate::config::Config;
use crate::grpc::{AdminApi, CreditApi};
use crate::jobs;
use crate::ledger::{Clock, Ledger, SystemClock};
use crate::notify::Events;
use crate::observe::ObserveLayer;
use crate::proto::admin_service_server::AdminServiceServer;
use crate::proto::credit_service_server::CreditServiceServer;
use crate::store::postgres::{PgStore, PoolSettings};
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, StoreError};

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
        StoreChoice::Sqlite(store) => {
            // Held until the server stops: a second server on the file refuses to start.
            let _owner = store.lock_file()?;
            run(store, "sqlite", config, listener, shutdown, clock).await
        }
    }
}

/// Applies the migrations, or with `migrate_on_start` off checks that someone did.
async fn prepare<S: Store>(store: &S, config: &Config) -> anyhow::Result<()> {
    let database = config
        .database_url
        .as_deref()
        .map_or_else(|| config.sqlite_path.display().to_string(), crate::config::redact_url);
    let unreachable = |error: StoreError| {
        let context = match error {
            StoreError::Unavailable(_) => format!("cannot reach the database at {database}"),
            _ => format!("cannot prepare the database at {database}"),
        };
        anyhow::anyhow!(error).context(context)
    };
    store.connect_once().await.map_err(unreachable)?;
    if config.migrate_on_start {
        return store.migrate().await.map_err(unreachable);
    }
    let pending = store.pending_migrations().await.map_err(unreachable)?;
    anyhow::ensure!(
        pending.is_empty(),
        "the database at {database} lacks migrations {pending:?} and migrate_on_start is off: run `creditpool migrate` first"
    );
    Ok(())
}

async fn run<S: Store>(
    store: S,
    store_name: &'static str,
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<()> {
    prepare(&store, &config).await?;
    if let Some(address) = config.metrics_listen_addr {
        crate::metrics::serve(address)?;
    }
    let ledger = Ledger::new(store.clone(), clock, config.ledger_settings());

    let (reporter, health_service) = tonic_health::server::health_reporter();
    jobs::set_health(&reporter, &jobs::LIVENESS, ServingStatus::Serving).await;
    jobs::set_health(&reporter, &jobs::READINESS, ServingStatus::NotServing).await;
    let mut tasks = vec![tokio::spawn(jobs::watch_database(
        store.clone(),
        reporter.clone(),
        config.health_check_interval(),
        shutdown.clone(),
    ))];
    if config.renewal_scheduler_enabled {
        tasks.push(tokio::spawn(jobs::renew_due_accounts(
            ledger.clone(),
            Duration::from_millis(config.renewal_tick_ms),
            shutdown.clone(),
        )));
    }
    if config.metrics_listen_addr.is_some() {
        tasks.push(tokio::spawn(jobs::sample_gauges(ledger.clone(), config.health_check_interval(), shutdown.clone())));
    }
    let events = Events::new(config.stream_settings(), ledger.outbox_written(), shutdown.clone());
    tasks.push(tokio::spawn(events.clone().publish(ledger.clone())));
    {
        let (store, wake_ups, shutdown) = (store.clone(), events.wake_ups(), shutdown.clone());
        tasks.push(tokio::spawn(async move { store.relay_wake_ups(wake_ups, shutdown).await }));
    }
    tasks.push(tokio::spawn(jobs::sweep(
        ledger.clone(),
        Duration::from_millis(config.hold_sweep_interval_ms),
        jobs::Retention {
            idempotency: Duration::from_secs(config.idempotency_retention_seconds),
            notifications: Duration::from_secs(config.notification_retention_seconds),
        },
        shutdown.clone(),
    )));

    let address = listener.local_addr()?;
    tracing::info!(%address, store = store_name, database = %config.database_url.as_deref().map_or_else(|| config.sqlite_path.display().to_string(), crate::config::redact_url), "creditpool serving");
    let drain_delay = config.shutdown_drain_delay();
    let drain_reporter = reporter.clone();
    let stopping = shutdown.clone();
    // Cross-cutting concerns, outermost first.
    let layers = tower::ServiceBuilder::new().layer(ObserveLayer { access_log: config.access_log });
    let server = tonic::transport::Server::builder()
        .layer(layers)
        .add_service(health_service)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?)
        .add_service(AdminServiceServer::new(AdminApi::new(ledger.clone(), events)))
        .add_service(CreditServiceServer::new(CreditApi::new(ledger)))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
            stopping.cancelled().await;
            jobs::set_health(&drain_reporter, &jobs::READINESS, ServingStatus::NotServing).await;
            jobs::set_health(&drain_reporter, &jobs::LIVENESS, ServingStatus::NotServing).await;
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
    for task in tasks {
        task.abort();
    }
    store.close().await;
    tracing::info!("creditpool stopped");
    result
}

/// The descriptor sets reflection serves: the contract, health, and the `google.rpc` error
/// details, so grpcurl and buf curl decode `ErrorInfo` and `BadRequest`.
const REFLECTED: [&[u8]; 3] =
    [crate::proto::FILE_DESCRIPTOR_SET, tonic_health::pb::FILE_DESCRIPTOR_SET, tonic_types::pb::FILE_DESCRIPTOR_SET];

fn reflection() -> tonic_reflection::server::Builder<'static> {
    REFLECTED.iter().fold(tonic_reflection::server::Builder::configure(), |builder, set| {
        builder.register_encoded_file_descriptor_set(set)
    })
}
