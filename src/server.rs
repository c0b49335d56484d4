//! Wires the services, health, reflection, the tower layers and shutdown around one store.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tower::layer::util::{Identity, Stack};

use crate::auth::{AuthLayer, Authenticator};
use crate::config::Config;
use crate::grpc::{AdminApi, CreditApi};
use crate::jobs;
use crate::ledger::{Clock, DatabaseClock, Ledger, SystemClock};
use crate::limits::LimitsLayer;
use crate::notify::{Events, StreamLimits};
use crate::observe::ObserveLayer;
use crate::proto::admin_service_server::AdminServiceServer;
use crate::proto::credit_service_server::CreditServiceServer;
use crate::store::postgres::{PgStore, PoolSettings};
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, StoreError};
use crate::tls::{self, Tls, TlsFiles};

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
                plan_cache_mode: config.postgres_plan_cache_mode.as_str(),
                one_statement_writes: config.postgres_one_statement_writes,
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

/// With `clock = "database"` on a store that keeps its own clock, the database clock the
/// ledger reads, calibrated once before anything is served.
async fn database_clock<S: Store>(
    store: &S,
    config: &Config,
    local: Arc<dyn Clock>,
) -> anyhow::Result<Option<Arc<jobs::ClockWatch>>> {
    if config.clock != crate::config::ClockSource::Database || store.ping().await?.is_none() {
        return Ok(None);
    }
    let watch = Arc::new(jobs::ClockWatch::new(Arc::new(DatabaseClock::new(local)), config.max_clock_offset_ms));
    anyhow::ensure!(
        jobs::calibrate(store, Some(&watch), config.database_acquire_timeout()).await,
        "cannot read the database's clock"
    );
    Ok(Some(watch))
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
    let authenticator = Authenticator::load(config.auth_file.as_deref())?;
    let admin_listener = bind(config.admin_listen_addr, "admin_listen_addr").await?;
    let addresses = [
        Some(("listen_addr", listener.local_addr()?)),
        admin_listener.as_ref().map(|l| l.local_addr().map(|a| ("admin_listen_addr", a))).transpose()?,
    ];
    check_exposure(&config, &authenticator, addresses.iter().flatten().copied())?;
    let tls = tls_of(&config)?;
    let health_listener = bind(config.health_listen_addr, "health_listen_addr").await?;
    prepare(&store, &config).await?;
    if let Some(address) = config.metrics_listen_addr {
        crate::metrics::serve(address)?;
    }
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let clock_watch = database_clock(&store, &config, clock.clone()).await?;
    let clock = clock_watch.as_ref().map_or(clock, |watch| Arc::clone(&watch.clock) as Arc<dyn Clock>);
    let ledger = Ledger::new(store.clone(), clock, config.ledger_settings());
    let replica = Replica {
        clock_watch,
        events: Events::new(config.stream_settings(), ledger.outbox_written(), shutdown.clone()),
        store: store.clone(),
        ledger,
        reporter,
        database: jobs::DatabaseState::default(),
        authenticator,
        tls,
        shutdown: shutdown.clone(),
    };
    let tasks = replica.spawn_jobs(&config).await;
    tracing::info!(
        address = %listener.local_addr()?,
        admin_address = ?admin_listener.as_ref().and_then(|l| l.local_addr().ok()),
        tls = replica.tls.is_some(),
        authentication = replica.authenticator.is_enabled(),
        store = store_name,
        database = %config.database_url.as_deref().map_or_else(|| config.sqlite_path.display().to_string(), crate::config::redact_url),
        "creditpool serving"
    );

    let drain_delay = config.shutdown_drain_delay();
    let drained = || {
        let shutdown = shutdown.clone();
        async move {
            shutdown.cancelled().await;
            tokio::time::sleep(drain_delay).await;
        }
    };
    let max_request_bytes = usize::try_from(config.max_request_bytes).unwrap_or(usize::MAX);
    let admin = AdminServiceServer::new(AdminApi::new(
        replica.ledger.clone(),
        replica.events.clone(),
        StreamLimits::new(
            usize::try_from(config.max_notification_streams).unwrap_or(usize::MAX),
            usize::try_from(config.max_notification_streams_per_principal).unwrap_or(usize::MAX),
        ),
    ))
    .max_decoding_message_size(max_request_bytes);
    let credit =
        CreditServiceServer::new(CreditApi::new(replica.ledger.clone())).max_decoding_message_size(max_request_bytes);
    let layers = replica.layers(&config);
    let keepalive = Duration::from_millis(config.http2_keepalive_interval_ms);
    let builder = || {
        tonic::transport::Server::builder()
            .http2_keepalive_interval((!keepalive.is_zero()).then_some(keepalive))
            .http2_keepalive_timeout(Some(Duration::from_millis(config.http2_keepalive_timeout_ms)))
            .max_connection_age(Duration::from_millis(config.max_connection_age_ms))
            .layer(layers.clone())
    };
    let reflection_v1 = config.reflection_enabled.then(|| reflection().build_v1()).transpose()?;
    let reflection_v1alpha = config.reflection_enabled.then(|| reflection().build_v1alpha()).transpose()?;
    let main = builder()
        .add_service(health_service.clone())
        .add_optional_service(reflection_v1.clone())
        .add_optional_service(reflection_v1alpha.clone())
        .add_service(credit)
        .add_optional_service(admin_listener.is_none().then(|| admin.clone()))
        .serve_with_incoming_shutdown(
            tls::incoming(listener, replica.tls.clone(), config.idle_connection_timeout()),
            drained(),
        );
    let admin_only = admin_listener.map(|admin_listener| {
        builder()
            .add_service(health_service.clone())
            .add_optional_service(reflection_v1)
            .add_optional_service(reflection_v1alpha)
            .add_service(admin)
            .serve_with_incoming_shutdown(
                tls::incoming(admin_listener, replica.tls.clone(), config.idle_connection_timeout()),
                drained(),
            )
    });
    // Plaintext, health alone: what a Kubernetes gRPC probe can reach when the ports use TLS.
    let health_only = health_listener.map(|listener| {
        tonic::transport::Server::builder()
            .add_service(health_service.clone())
            .serve_with_incoming_shutdown(tls::incoming(listener, None, config.idle_connection_timeout()), drained())
    });
    let servers = async { tokio::try_join!(main, optional(admin_only), optional(health_only)).map(|_| ()) };

    let grace = drain_delay + config.shutdown_grace();
    let result = tokio::select! {
        result = servers => result.map_err(anyhow::Error::from),
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

/// The tower layers every call passes, outermost first: observe, limits, auth.
type Layers = tower::ServiceBuilder<Stack<AuthLayer, Stack<LimitsLayer, Stack<ObserveLayer, Identity>>>>;

/// What a serving replica shares between its jobs, its layers and its services.
struct Replica<S> {
    store: S,
    /// The database clock the ledger reads, when `clock = "database"` and the store has one.
    clock_watch: Option<Arc<jobs::ClockWatch>>,
    ledger: Ledger<S>,
    events: Events,
    reporter: tonic_health::server::HealthReporter,
    database: jobs::DatabaseState,
    authenticator: Authenticator,
    tls: Option<Tls>,
    shutdown: CancellationToken,
}

impl<S: Store> Replica<S> {
    /// Sets health as at start (alive, not yet ready) and spawns the background loops.
    async fn spawn_jobs(&self, config: &Config) -> Vec<tokio::task::JoinHandle<()>> {
        let (ledger, shutdown) = (&self.ledger, &self.shutdown);
        jobs::set_health(&self.reporter, &jobs::LIVENESS, ServingStatus::Serving).await;
        jobs::set_health(&self.reporter, &jobs::READINESS, ServingStatus::NotServing).await;
        let mut tasks = vec![
            tokio::spawn(jobs::watch_database(
                self.store.clone(),
                self.clock_watch.clone(),
                self.reporter.clone(),
                self.database.clone(),
                config.health_check_interval(),
                shutdown.clone(),
            )),
            tokio::spawn(self.events.clone().publish(ledger.clone())),
            tokio::spawn(self.events.clone().tail(ledger.clone())),
            tokio::spawn({
                let (store, wake_ups, shutdown) = (self.store.clone(), self.events.wake_ups(), shutdown.clone());
                async move { store.relay_wake_ups(wake_ups, shutdown).await }
            }),
            tokio::spawn(jobs::sweep(
                ledger.clone(),
                Duration::from_millis(config.hold_sweep_interval_ms),
                jobs::Retention {
                    idempotency: Duration::from_secs(config.idempotency_retention_seconds),
                    notifications: Duration::from_secs(config.notification_retention_seconds),
                },
                shutdown.clone(),
            )),
            tokio::spawn(jobs::reload_on_hangup(self.authenticator.clone(), self.tls.clone(), shutdown.clone())),
            tokio::spawn(jobs::drain_health(self.reporter.clone(), config.shutdown_drain_delay(), shutdown.clone())),
        ];
        if config.renewal_scheduler_enabled {
            tasks.push(tokio::spawn(jobs::renew_due_accounts(
                ledger.clone(),
                Duration::from_millis(config.renewal_tick_ms),
                shutdown.clone(),
            )));
        }
        if config.metrics_listen_addr.is_some() {
            tasks.push(tokio::spawn(jobs::sample_gauges(
                ledger.clone(),
                config.health_check_interval(),
                shutdown.clone(),
            )));
        }
        tasks
    }

    /// The cross-cutting concerns, outermost first: every call is observed (refused ones too),
    /// shed or cut by the limits, then authenticated.
    fn layers(&self, config: &Config) -> Layers {
        let rate = NonZeroU32::new(config.rate_limit_per_second)
            .map(|per_second| (per_second, NonZeroU32::new(config.rate_limit_burst).unwrap_or(NonZeroU32::MIN)));
        tower::ServiceBuilder::new()
            .layer(ObserveLayer { access_log: config.access_log })
            .layer(LimitsLayer::new(
                usize::try_from(config.max_concurrent_calls).unwrap_or(usize::MAX),
                Duration::from_millis(config.max_call_duration_ms),
                self.database.clone(),
            ))
            .layer(AuthLayer::new(self.authenticator.clone(), rate))
    }
}

/// Listens on `address` when it is configured; `setting` names it in the error.
async fn bind(address: Option<SocketAddr>, setting: &str) -> anyhow::Result<Option<TcpListener>> {
    match address {
        Some(address) => Ok(Some(
            TcpListener::bind(address)
                .await
                .map_err(|e| anyhow::anyhow!(e).context(format!("cannot listen on {setting} {address}")))?,
        )),
        None => Ok(None),
    }
}

/// Runs `server` if there is one.
async fn optional<E>(server: Option<impl Future<Output = Result<(), E>>>) -> Result<(), E> {
    match server {
        Some(server) => server.await,
        None => Ok(()),
    }
}

/// Secure by default: without principals, only loopback addresses are served, unless the
/// operator says `insecure_no_auth`.
fn check_exposure(
    config: &Config,
    authenticator: &Authenticator,
    addresses: impl IntoIterator<Item = (&'static str, SocketAddr)>,
) -> anyhow::Result<()> {
    if authenticator.is_enabled() {
        return Ok(());
    }
    if config.insecure_no_auth {
        tracing::warn!(
            "no principals configured and insecure_no_auth is on: anyone who reaches the port may call anything"
        );
        return Ok(());
    }
    for (setting, address) in addresses {
        anyhow::ensure!(
            address.ip().is_loopback(),
            "{setting} {address} is not a loopback address and no principals are configured: set auth_file \
             (CREDITPOOL_AUTH_FILE or --auth-file), listen on 127.0.0.1, or pass --insecure-no-auth to serve \
             unauthenticated anyway"
        );
    }
    tracing::warn!("no principals configured: serving unauthenticated, on loopback only");
    Ok(())
}

/// The TLS configuration, when certificate files are configured.
fn tls_of(config: &Config) -> anyhow::Result<Option<Tls>> {
    match (&config.tls_cert_file, &config.tls_key_file) {
        (Some(cert), Some(key)) => Ok(Some(Tls::load(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: config.tls_client_ca_file.clone(),
        })?)),
        _ => Ok(None),
    }
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
