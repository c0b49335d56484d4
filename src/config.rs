//! Typed configuration, layered: defaults → optional TOML file → `CREDITPOOL_*` environment →
//! command-line flags; validated once at start-up.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Prefix of every environment variable the service reads (besides `DATABASE_URL`).
pub const ENV_PREFIX: &str = "CREDITPOOL_";

/// The service's settings. Every field can be set as `CREDITPOOL_<FIELD>` or in the TOML file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the gRPC server listens on.
    pub listen_addr: SocketAddr,
    /// Database URL: `postgres://…` or `sqlite:PATH`; falls back to `DATABASE_URL`; unset means
    /// the embedded SQLite file at `sqlite_path`.
    pub database_url: Option<String>,
    /// The embedded SQLite file used when no database URL is configured (its directory is
    /// created if missing).
    pub sqlite_path: std::path::PathBuf,
    /// Most database connections open at once.
    pub database_max_connections: u32,
    /// Longest wait for a database connection before a call answers UNAVAILABLE.
    pub database_acquire_timeout_ms: u64,
    /// Longest a single SQL statement may run.
    pub statement_timeout_ms: u64,
    /// Postgres's `plan_cache_mode` for the service's connections. `auto` (the default) works on
    /// one Postgres and on Citus; `force_generic_plan` saves planning on each call but Citus
    /// refuses to plan several of the service's statements under it, and a generic plan made
    /// before a table has statistics can scan a whole history.
    pub postgres_plan_cache_mode: PlanCacheMode,
    /// Whether a hot-path batch locks its workspaces with their members in one Postgres
    /// statement and writes all its rows in one (data-modifying CTEs over arrays, one round trip
    /// each; `true`, the default, for one Postgres) or locks in two statements and writes one
    /// statement per table with new rows as multi-row `VALUES` (`false`, for Citus: each routes
    /// to the scope's shard and the transaction commits in one phase, where Citus would plan the
    /// combined statement's parts one by one through the coordinator and commit in two).
    pub postgres_one_statement_writes: bool,
    /// How often the health check pings the database (and, with `clock = "database"`, measures
    /// this replica's clock against the database's).
    pub health_check_interval_ms: u64,
    /// Where "now" comes from for hold expiry, idempotency pruning and renewal due-ness:
    /// `database` reads Postgres's clock through an offset measured at every health check, so
    /// replicas agree whatever their own clocks say; `local` trusts this machine's clock. The
    /// embedded store has one process, so its clock is the local one either way.
    pub clock: ClockSource,
    /// An offset from the database's clock beyond this is logged as a warning (the database's
    /// clock is used all the same).
    pub max_clock_offset_ms: u64,
    /// After SIGTERM: how long health reports NOT_SERVING before the listener closes, so load
    /// balancers stop sending new calls.
    pub shutdown_drain_delay_ms: u64,
    /// After SIGTERM: longest wait for in-flight calls to finish.
    pub shutdown_grace_ms: u64,
    /// C5b: most open holds per member (or personal account).
    pub max_open_reservations_per_member: u32,
    /// TTL of a hold whose Reserve gives none.
    pub reservation_default_ttl_seconds: u32,
    /// Longest TTL a Reserve may ask for.
    pub reservation_max_ttl_seconds: u32,
    /// How often expired holds are released.
    pub hold_sweep_interval_ms: u64,
    /// How long idempotency records are kept (a retry after that runs afresh).
    pub idempotency_retention_seconds: u64,
    /// Most hot-path calls applied in one transaction (group commit).
    pub max_batch_calls: u32,
    /// Most scopes (workspaces, personal accounts) whose hot-path calls share one transaction;
    /// 1 on Citus, so that every transaction stays on one shard.
    pub max_batch_scopes: u32,
    /// Most hot-path batch transactions in flight at once: the next batch fills while they
    /// commit. With `max_batch_scopes` of 1 this bounds how many scopes commit in parallel.
    pub max_batch_transactions: u32,
    /// R6: whether this replica renews accounts with a billing anchor when they fall due (turn
    /// off when the billing system drives every renewal through RenewAccount).
    pub renewal_scheduler_enabled: bool,
    /// How often the renewal scheduler looks for due accounts.
    pub renewal_tick_ms: u64,
    /// Longest wait between looks at the notification table when no wake-up comes (the only
    /// polling there is).
    pub notification_fallback_interval_ms: u64,
    /// How long published notifications are kept; older cursors get OUT_OF_RANGE.
    pub notification_retention_seconds: u64,
    /// Notifications buffered per subscriber before its reader waits for the client.
    pub notification_stream_buffer: u32,
    /// Log filter (tracing `EnvFilter` syntax); `RUST_LOG` overrides it.
    pub log_filter: String,
    /// How log lines are written to stderr.
    pub log_format: LogFormat,
    /// Whether every RPC writes one access-log line at info.
    pub access_log: bool,
    /// OTLP/gRPC endpoint to export traces to (e.g. `http://otel-collector:4317`); unset: the
    /// standard `OTEL_EXPORTER_OTLP_ENDPOINT`, and without that no export.
    pub otlp_endpoint: Option<String>,
    /// Share of root traces sampled, 0.0..=1.0; a caller's sampled `traceparent` is always
    /// followed. `OTEL_TRACES_SAMPLER` overrides it.
    pub trace_sample_ratio: f64,
    /// Address of the Prometheus `/metrics` HTTP listener; unset: no metrics endpoint.
    pub metrics_listen_addr: Option<SocketAddr>,
    /// Whether `serve` applies migrations before serving; off, it only checks they were applied
    /// (a deployment that runs `creditpool migrate` as its own step).
    pub migrate_on_start: bool,
    /// The principals file (TOML); unset: no authentication, loopback only.
    pub auth_file: Option<std::path::PathBuf>,
    /// Serve without principals on a non-loopback address anyway (never in production).
    pub insecure_no_auth: bool,
    /// A separate address for AdminService (CreditService stays on `listen_addr`); unset: both
    /// on `listen_addr`.
    pub admin_listen_addr: Option<SocketAddr>,
    /// An extra plaintext address that serves only `grpc.health.v1.Health` (for Kubernetes
    /// probes, which cannot speak TLS); unset: none.
    pub health_listen_addr: Option<SocketAddr>,
    /// Whether server reflection is served (grpcurl and buf curl without proto files).
    pub reflection_enabled: bool,
    /// Server certificate chain (PEM); with `tls_key_file`, the server speaks TLS only.
    pub tls_cert_file: Option<std::path::PathBuf>,
    /// Server private key (PEM).
    pub tls_key_file: Option<std::path::PathBuf>,
    /// CA bundle (PEM) that client certificates must chain to; set, every client needs one (mTLS).
    pub tls_client_ca_file: Option<std::path::PathBuf>,
    /// Longest a unary call (or a stream's start) may run; a caller's shorter `grpc-timeout` wins.
    pub max_call_duration_ms: u64,
    /// Most calls in progress at once; more are shed at once with UNAVAILABLE, never queued.
    pub max_concurrent_calls: u32,
    /// Largest request message accepted, in bytes.
    pub max_request_bytes: u32,
    /// HTTP/2 keepalive ping interval (0: off).
    pub http2_keepalive_interval_ms: u64,
    /// How long a keepalive ping may go unanswered before the connection is closed.
    pub http2_keepalive_timeout_ms: u64,
    /// A connection whose peer sends nothing for this long is closed (0: never). Keepalive pings
    /// make a healthy idle client answer, so only silent peers (one that never even sends the
    /// HTTP/2 preface, say) are cut; it must exceed the keepalive interval plus its timeout.
    pub idle_connection_timeout_ms: u64,
    /// Connections are closed (gracefully) after this age, so clients rebalance across replicas.
    pub max_connection_age_ms: u64,
    /// Most WatchNotifications streams open on this replica.
    pub max_notification_streams: u32,
    /// Most WatchNotifications streams one principal may hold open on this replica.
    pub max_notification_streams_per_principal: u32,
    /// Calls per second each principal may make on average (0: no rate limit).
    pub rate_limit_per_second: u32,
    /// Calls a principal may make at once above its rate.
    pub rate_limit_burst: u32,
}

/// How Postgres plans the service's prepared statements (its `plan_cache_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanCacheMode {
    /// Postgres chooses: custom plans first, a generic one once it is as good.
    Auto,
    /// A generic plan from the first execution on.
    ForceGenericPlan,
    /// A custom plan for every execution.
    ForceCustomPlan,
}

impl PlanCacheMode {
    /// The setting's value as Postgres spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            PlanCacheMode::Auto => "auto",
            PlanCacheMode::ForceGenericPlan => "force_generic_plan",
            PlanCacheMode::ForceCustomPlan => "force_custom_plan",
        }
    }
}

/// Where the ledger reads the time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClockSource {
    /// The database's clock (Postgres), through an offset measured at every health check.
    Database,
    /// This machine's clock.
    Local,
}

/// The shape of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines; coloured only when stderr is a terminal.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            // Loopback: without principals nothing else is allowed (see `insecure_no_auth`).
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 50051)),
            database_url: None,
            sqlite_path: std::path::PathBuf::from("data/creditpool.db"),
            database_max_connections: 16,
            database_acquire_timeout_ms: 3_000,
            statement_timeout_ms: 5_000,
            postgres_plan_cache_mode: PlanCacheMode::Auto,
            postgres_one_statement_writes: true,
            health_check_interval_ms: 1_000,
            clock: ClockSource::Database,
            max_clock_offset_ms: 1_000,
            // Long enough for a load balancer to see NOT_SERVING and stop routing new calls here.
            shutdown_drain_delay_ms: 5_000,
            shutdown_grace_ms: 15_000,
            max_open_reservations_per_member: 100,
            reservation_default_ttl_seconds: 300,
            reservation_max_ttl_seconds: 86_400,
            hold_sweep_interval_ms: 1_000,
            idempotency_retention_seconds: 86_400,
            max_batch_calls: 256,
            max_batch_scopes: 32,
            max_batch_transactions: 2,
            renewal_scheduler_enabled: true,
            renewal_tick_ms: 60_000,
            notification_fallback_interval_ms: 1_000,
            notification_retention_seconds: 7 * 86_400,
            notification_stream_buffer: 256,
            log_filter: "info".to_owned(),
            log_format: LogFormat::Text,
            access_log: true,
            otlp_endpoint: None,
            trace_sample_ratio: 1.0,
            metrics_listen_addr: None,
            migrate_on_start: true,
            auth_file: None,
            insecure_no_auth: false,
            admin_listen_addr: None,
            health_listen_addr: None,
            reflection_enabled: true,
            tls_cert_file: None,
            tls_key_file: None,
            tls_client_ca_file: None,
            max_call_duration_ms: 30_000,
            max_concurrent_calls: 1_024,
            max_request_bytes: 1 << 20,
            http2_keepalive_interval_ms: 30_000,
            http2_keepalive_timeout_ms: 10_000,
            idle_connection_timeout_ms: 120_000,
            max_connection_age_ms: 1_800_000,
            max_notification_streams: 1_000,
            max_notification_streams_per_principal: 100,
            rate_limit_per_second: 0,
            rate_limit_burst: 100,
        }
    }
}

/// Settings given as command-line flags; they override every other layer.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    /// `--listen-addr`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen_addr: Option<SocketAddr>,
    /// `--database-url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    /// `--no-migrate` (as `Some(false)`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub migrate_on_start: Option<bool>,
    /// `--auth-file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_file: Option<std::path::PathBuf>,
    /// `--insecure-no-auth` (as `Some(true)`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insecure_no_auth: Option<bool>,
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A layer could not be read or parsed.
    #[error("cannot load configuration")]
    Load(#[from] Box<figment::Error>),
    /// A value is out of range.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Loads the layers and validates the result.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        // `CREDITPOOL_CONFIG` names the file; `CREDITPOOL_TEST_*` belong to the test harness.
        figment = figment.merge(
            Env::prefixed(ENV_PREFIX)
                .ignore(&["config"])
                .filter(|key| !key.as_str().to_ascii_lowercase().starts_with("test_")),
        );
        let mut config: Config = figment.extract().map_err(Box::new)?;
        if config.database_url.is_none() {
            config.database_url = std::env::var("DATABASE_URL").ok().filter(|url| !url.is_empty());
        }
        let config: Config = Figment::from(Serialized::defaults(config))
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every value is in range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let check = |ok: bool, message: &str| if ok { Ok(()) } else { Err(ConfigError::Invalid(message.to_owned())) };
        check((1..=1_000).contains(&self.database_max_connections), "database_max_connections must be 1..=1000")?;
        check(
            (1..=600_000).contains(&self.database_acquire_timeout_ms),
            "database_acquire_timeout_ms must be 1..=600000",
        )?;
        check((1..=3_600_000).contains(&self.statement_timeout_ms), "statement_timeout_ms must be 1..=3600000")?;
        check((10..=600_000).contains(&self.health_check_interval_ms), "health_check_interval_ms must be 10..=600000")?;
        check(self.shutdown_drain_delay_ms <= 600_000, "shutdown_drain_delay_ms must be at most 600000")?;
        check((1..=3_600_000).contains(&self.shutdown_grace_ms), "shutdown_grace_ms must be 1..=3600000")?;
        check(
            (1..=10_000).contains(&self.max_open_reservations_per_member),
            "max_open_reservations_per_member must be 1..=10000",
        )?;
        check(
            (1..=604_800).contains(&self.reservation_max_ttl_seconds),
            "reservation_max_ttl_seconds must be 1..=604800",
        )?;
        check(
            (1..=self.reservation_max_ttl_seconds).contains(&self.reservation_default_ttl_seconds),
            "reservation_default_ttl_seconds must be 1..=reservation_max_ttl_seconds",
        )?;
        check((10..=600_000).contains(&self.hold_sweep_interval_ms), "hold_sweep_interval_ms must be 10..=600000")?;
        check(
            self.idempotency_retention_seconds >= 3_600,
            "idempotency_retention_seconds must be at least 3600 (retries must stay safe)",
        )?;
        // A Reserve, Commit or Release may be retried as long as its hold can be open: its record
        // must outlive the longest hold.
        check(
            self.idempotency_retention_seconds >= u64::from(self.reservation_max_ttl_seconds),
            "idempotency_retention_seconds must be at least reservation_max_ttl_seconds (a retry of a hold's calls must replay while the hold can be open)",
        )?;
        check(self.max_clock_offset_ms >= 1, "max_clock_offset_ms must be at least 1")?;
        check(
            self.idle_connection_timeout_ms == 0
                || (self.http2_keepalive_interval_ms > 0
                    && self.idle_connection_timeout_ms
                        > self.http2_keepalive_interval_ms.saturating_add(self.http2_keepalive_timeout_ms)),
            "idle_connection_timeout_ms must be 0 or exceed http2_keepalive_interval_ms + http2_keepalive_timeout_ms (with keepalive on)",
        )?;
        check((1..=10_000).contains(&self.max_batch_calls), "max_batch_calls must be 1..=10000")?;
        check((1..=10_000).contains(&self.max_batch_scopes), "max_batch_scopes must be 1..=10000")?;
        check((1..=1_000).contains(&self.max_batch_transactions), "max_batch_transactions must be 1..=1000")?;
        check((10..=3_600_000).contains(&self.renewal_tick_ms), "renewal_tick_ms must be 10..=3600000")?;
        check(
            (10..=600_000).contains(&self.notification_fallback_interval_ms),
            "notification_fallback_interval_ms must be 10..=600000",
        )?;
        check(self.notification_retention_seconds >= 60, "notification_retention_seconds must be at least 60")?;
        check(
            (1..=100_000).contains(&self.notification_stream_buffer),
            "notification_stream_buffer must be 1..=100000",
        )?;
        check((0.0..=1.0).contains(&self.trace_sample_ratio), "trace_sample_ratio must be 0.0..=1.0")?;
        check((1..=3_600_000).contains(&self.max_call_duration_ms), "max_call_duration_ms must be 1..=3600000")?;
        check((1..=1_000_000).contains(&self.max_concurrent_calls), "max_concurrent_calls must be 1..=1000000")?;
        check((1_024..=64 << 20).contains(&self.max_request_bytes), "max_request_bytes must be 1024..=67108864")?;
        check(self.http2_keepalive_interval_ms <= 3_600_000, "http2_keepalive_interval_ms must be at most 3600000")?;
        check(
            (1..=600_000).contains(&self.http2_keepalive_timeout_ms),
            "http2_keepalive_timeout_ms must be 1..=600000",
        )?;
        check(
            (1_000..=86_400_000).contains(&self.max_connection_age_ms),
            "max_connection_age_ms must be 1000..=86400000",
        )?;
        check((1..=100_000).contains(&self.max_notification_streams), "max_notification_streams must be 1..=100000")?;
        check(
            (1..=self.max_notification_streams).contains(&self.max_notification_streams_per_principal),
            "max_notification_streams_per_principal must be 1..=max_notification_streams",
        )?;
        check(self.rate_limit_per_second <= 1_000_000, "rate_limit_per_second must be at most 1000000")?;
        check((1..=1_000_000).contains(&self.rate_limit_burst), "rate_limit_burst must be 1..=1000000")?;
        check(
            self.tls_cert_file.is_some() == self.tls_key_file.is_some(),
            "tls_cert_file and tls_key_file must be set together",
        )?;
        check(
            self.tls_client_ca_file.is_none() || self.tls_cert_file.is_some(),
            "tls_client_ca_file needs tls_cert_file and tls_key_file (mTLS is TLS first)",
        )?;
        if let Some(url) = &self.database_url {
            check(
                url.starts_with("postgres://") || url.starts_with("postgresql://") || url.starts_with("sqlite:"),
                "database_url must start with postgres://, postgresql:// or sqlite:",
            )?;
        }
        Ok(())
    }

    /// The settings with secrets (the database password) replaced, for printing.
    pub fn redacted(&self) -> Config {
        Config { database_url: self.database_url.as_deref().map(redact_url), ..self.clone() }
    }

    /// The settings as a TOML file would give them.
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        toml::to_string(self).map_err(|error| ConfigError::Invalid(format!("cannot render the settings: {error}")))
    }

    /// The database URL, or an error saying how to give one.
    pub fn require_database_url(&self) -> Result<&str, ConfigError> {
        self.database_url.as_deref().ok_or_else(|| {
            ConfigError::Invalid(
                "no database given: pass --database-url (or set CREDITPOOL_DATABASE_URL or DATABASE_URL), \
                 e.g. postgres://postgres@127.0.0.1:5432/postgres or sqlite:bench.db"
                    .to_owned(),
            )
        })
    }

    /// `database_acquire_timeout_ms` as a duration.
    pub fn database_acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.database_acquire_timeout_ms)
    }

    /// `statement_timeout_ms` as a duration.
    pub fn statement_timeout(&self) -> Duration {
        Duration::from_millis(self.statement_timeout_ms)
    }

    /// `health_check_interval_ms` as a duration.
    pub fn health_check_interval(&self) -> Duration {
        Duration::from_millis(self.health_check_interval_ms)
    }

    /// `idle_connection_timeout_ms` as a duration; `None` when off.
    pub fn idle_connection_timeout(&self) -> Option<Duration> {
        (self.idle_connection_timeout_ms > 0).then(|| Duration::from_millis(self.idle_connection_timeout_ms))
    }

    /// `shutdown_drain_delay_ms` as a duration.
    pub fn shutdown_drain_delay(&self) -> Duration {
        Duration::from_millis(self.shutdown_drain_delay_ms)
    }

    /// The ledger's limits.
    pub fn ledger_settings(&self) -> crate::ledger::LedgerSettings {
        crate::ledger::LedgerSettings {
            max_open_holds_per_member: self.max_open_reservations_per_member,
            default_hold_ttl_seconds: self.reservation_default_ttl_seconds,
            max_hold_ttl_seconds: self.reservation_max_ttl_seconds,
            max_batch_calls: usize::try_from(self.max_batch_calls).unwrap_or(1),
            max_batch_scopes: usize::try_from(self.max_batch_scopes).unwrap_or(1),
            max_batch_transactions: usize::try_from(self.max_batch_transactions).unwrap_or(1),
        }
    }

    /// The notification stream's settings.
    pub fn stream_settings(&self) -> crate::notify::StreamSettings {
        crate::notify::StreamSettings {
            fallback_interval: Duration::from_millis(self.notification_fallback_interval_ms),
            buffer: usize::try_from(self.notification_stream_buffer).unwrap_or(256),
            retention: Duration::from_secs(self.notification_retention_seconds),
        }
    }

    /// `shutdown_grace_ms` as a duration.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}

/// A database URL with its password replaced by `***`, for logs and printed settings.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _password)) => format!("{}{user}:***@{}", &url[..scheme_end + 3], &url[at + 1..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error by design
mod tests {
    use figment::Jail;

    use super::*;

    #[test]
    fn the_plan_cache_mode_defaults_to_auto_and_takes_postgres_spelling() {
        Jail::expect_with(|jail| {
            assert_eq!(
                Config::load(None, &Overrides::default()).unwrap().postgres_plan_cache_mode,
                PlanCacheMode::Auto
            );
            jail.set_env("CREDITPOOL_POSTGRES_PLAN_CACHE_MODE", "force_generic_plan");
            let config = Config::load(None, &Overrides::default()).unwrap();
            assert_eq!(config.postgres_plan_cache_mode.as_str(), "force_generic_plan");
            jail.set_env("CREDITPOOL_POSTGRES_PLAN_CACHE_MODE", "generic");
            assert!(Config::load(None, &Overrides::default()).is_err(), "an unknown mode is refused");
            Ok(())
        });
    }

    #[test]
    fn layers_apply_in_order_defaults_file_environment_flags() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "creditpool.toml",
                "listen_addr = \"127.0.0.1:1\"\nstatement_timeout_ms = 100\nhealth_check_interval_ms = 50\n",
            )?;
            jail.set_env("CREDITPOOL_STATEMENT_TIMEOUT_MS", "200");
            jail.set_env("CREDITPOOL_DATABASE_URL", "postgres://env/db");
            jail.set_env("DATABASE_URL", "postgres://fallback/db");
            let overrides = Overrides { listen_addr: Some("127.0.0.1:2".parse().unwrap()), ..Overrides::default() };
            let config = Config::load(Some(Path::new("creditpool.toml")), &overrides).unwrap();
            assert_eq!(config.listen_addr, "127.0.0.1:2".parse().unwrap());
            assert_eq!(config.statement_timeout_ms, 200);
            assert_eq!(config.health_check_interval_ms, 50);
            assert_eq!(config.database_url.as_deref(), Some("postgres://env/db"));
            assert_eq!(config.database_max_connections, Config::default().database_max_connections);
            Ok(())
        });
    }

    #[test]
    fn database_url_falls_back_to_the_conventional_variable() {
        Jail::expect_with(|jail| {
            jail.set_env("DATABASE_URL", "postgres://fallback/db");
            let config = Config::load(None, &Overrides::default()).unwrap();
            assert_eq!(config.database_url.as_deref(), Some("postgres://fallback/db"));
            assert_eq!(config.listen_addr, "127.0.0.1:50051".parse().unwrap());
            Ok(())
        });
    }

    #[test]
    fn out_of_range_values_are_refused_with_their_name() {
        Jail::expect_with(|jail| {
            jail.set_env("CREDITPOOL_DATABASE_MAX_CONNECTIONS", "0");
            let error = Config::load(None, &Overrides::default()).unwrap_err();
            assert!(error.to_string().contains("database_max_connections"), "{error}");
            jail.set_env("CREDITPOOL_DATABASE_MAX_CONNECTIONS", "4");
            jail.set_env("CREDITPOOL_DATABASE_URL", "mysql://nope");
            let error = Config::load(None, &Overrides::default()).unwrap_err();
            assert!(error.to_string().contains("database_url"), "{error}");
            Ok(())
        });
    }
}
