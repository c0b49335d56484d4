//! Logs and traces: tracing to stderr as text or JSON, plus OTLP trace export when an endpoint is
//! configured (`otlp_endpoint`, or the standard `OTEL_EXPORTER_OTLP_ENDPOINT` /
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`).

use std::io::IsTerminal as _;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

/// The standard variables that name an OTLP endpoint without any creditpool setting.
const OTLP_ENDPOINT_VARIABLES: [&str; 2] = ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"];

/// What the logs and traces look like and where traces go.
#[derive(Debug, Clone)]
pub struct TelemetrySettings {
    /// `EnvFilter` directives; `RUST_LOG` overrides them.
    pub log_filter: String,
    /// Text or JSON lines.
    pub log_format: LogFormat,
    /// An OTLP/gRPC endpoint; `None` falls back to the standard `OTEL_*` variables.
    pub otlp_endpoint: Option<String>,
    /// Share of root traces sampled (unless `OTEL_TRACES_SAMPLER` says otherwise).
    pub trace_sample_ratio: f64,
}

impl From<&crate::config::Config> for TelemetrySettings {
    fn from(config: &crate::config::Config) -> Self {
        TelemetrySettings {
            log_filter: config.log_filter.clone(),
            log_format: config.log_format,
            otlp_endpoint: config.otlp_endpoint.clone(),
            trace_sample_ratio: config.trace_sample_ratio,
        }
    }
}

/// Flushes exported traces when the service stops.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Flushes and stops the trace exporter.
    pub fn shutdown(self) {
        if let Some(Err(error)) = self.provider.map(|provider| provider.shutdown()) {
            eprintln!("creditpool: flushing traces failed: {error}");
        }
    }
}

/// Installs the global subscriber (and, when exporting, the global W3C trace-context propagator).
pub fn init(settings: &TelemetrySettings) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new(&settings.log_filter))?;
    let provider = tracer_provider(settings)?;
    if provider.is_some() {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    }
    let otel_layer =
        provider.as_ref().map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer("creditpool")));
    let ansi = std::io::stderr().is_terminal();
    let (text, json) = match settings.log_format {
        LogFormat::Text => (Some(tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi)), None),
        LogFormat::Json => (
            None,
            Some(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_writer(std::io::stderr),
            ),
        ),
    };
    tracing_subscriber::registry().with(filter).with(text).with(json).with(otel_layer).try_init()?;
    Ok(Telemetry { provider })
}

/// The OTLP exporter's provider, or `None` when no endpoint is configured anywhere.
fn tracer_provider(settings: &TelemetrySettings) -> anyhow::Result<Option<SdkTracerProvider>> {
    let from_environment =
        OTLP_ENDPOINT_VARIABLES.iter().any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()));
    let exporter = match &settings.otlp_endpoint {
        Some(endpoint) => opentelemetry_otlp::SpanExporter::builder().with_tonic().with_endpoint(endpoint).build()?,
        // The exporter reads the standard variables itself.
        None if from_environment => opentelemetry_otlp::SpanExporter::builder().with_tonic().build()?,
        None => return Ok(None),
    };
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("creditpool");
    }
    let mut builder = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource.build());
    if std::env::var_os("OTEL_TRACES_SAMPLER").is_none() {
        // A caller's decision (its traceparent's sampled flag) is followed; roots are sampled by ratio.
        builder = builder
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(settings.trace_sample_ratio))));
    }
    Ok(Some(builder.build()))
}
