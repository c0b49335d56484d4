//! The tower layer every RPC passes through: one server span (child of the caller's W3C
//! `traceparent`), the RPC metrics, and one access-log line.

use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use opentelemetry::propagation::Extractor;
use tonic::Code;
use tower::{Layer, Service};
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Adds [`Observe`] around a service.
#[derive(Debug, Clone, Copy)]
pub struct ObserveLayer {
    /// Whether each RPC writes an access-log line.
    pub access_log: bool,
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe { inner, access_log: self.access_log }
    }
}

/// Wraps each call in its span, records its metrics and logs it.
#[derive(Debug, Clone)]
pub struct Observe<S> {
    inner: S,
    access_log: bool,
}

impl<S, RequestBody, ResponseBody> Service<http::Request<RequestBody>> for Observe<S>
where
    S: Service<http::Request<RequestBody>, Response = http::Response<ResponseBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    RequestBody: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = crate::layer::Answer<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<RequestBody>) -> Self::Future {
        let method = request.uri().path().trim_start_matches('/').to_owned();
        let span = rpc_span(&method, request.headers());
        let principal = Principal::default();
        request.extensions_mut().insert(principal.clone());
        let ready = crate::layer::take_ready(&mut self.inner);
        let access_log = self.access_log;
        Box::pin(async move {
            let started = Instant::now();
            let mut inner = ready;
            let result = inner.call(request).instrument(span.clone()).await;
            let code = match &result {
                Ok(response) => code_of(response.headers()),
                Err(_) => Code::Unknown,
            };
            let latency = started.elapsed();
            let code_name = code_name(code);
            span.record("rpc.grpc.status_code", code as i32);
            crate::metrics::rpc_finished(&method, code_name, latency);
            if access_log {
                tracing::info!(
                    parent: &span,
                    rpc = %method,
                    code = code_name,
                    latency_ms = latency.as_secs_f64() * 1_000.0,
                    principal = principal.0.get().map_or("", String::as_str),
                    "rpc"
                );
            }
            result
        })
    }
}

/// Who made the call, once the auth layer (inside this one) knows: for the access log and the span.
#[derive(Debug, Clone, Default)]
pub struct Principal(Arc<OnceLock<String>>);

impl Principal {
    /// Records the authenticated principal's name.
    pub fn set(&self, name: &str) {
        let _ = self.0.set(name.to_owned());
        tracing::Span::current().record("principal", name);
    }
}

/// The server span of one RPC, parented to the caller's trace context when it sent one.
fn rpc_span(method: &str, headers: &http::HeaderMap) -> tracing::Span {
    let (service, rpc) = method.split_once('/').unwrap_or(("", method));
    let span = tracing::info_span!(
        "rpc",
        otel.name = %method,
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = %service,
        rpc.method = %rpc,
        rpc.grpc.status_code = tracing::field::Empty,
        workspace_id = tracing::field::Empty,
        account_id = tracing::field::Empty,
        principal = tracing::field::Empty,
    );
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| propagator.extract(&Headers(headers)));
    // Without an exporter there is no OpenTelemetry layer to take the parent; that is fine.
    let _ = span.set_parent(parent);
    span
}

/// Records the scope an RPC works on into its span (never secrets: ids only).
pub fn record_scope(field: &'static str, id: &str) {
    tracing::Span::current().record(field, id);
}

/// Reads W3C trace-context headers from an HTTP request.
struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// The status of a response: in its headers when the call failed before any message
/// ("trailers-only"), else OK so far (a stream's final status comes later, in its trailers).
pub fn code_of(headers: &http::HeaderMap) -> Code {
    headers
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<i32>().ok())
        .map_or(Code::Ok, Code::from_i32)
}

/// The canonical name of a status code, as gRPC documents it.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}
