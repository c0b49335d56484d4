//! The tower layer that bounds what calls can take: a concurrency limit that sheds the excess at
//! once (UNAVAILABLE: retry elsewhere or later; nothing queues), and a deadline cap (the shorter of
//! `max_call_duration_ms` and the caller's `grpc-timeout`). Health and reflection are exempt, so
//! probes still answer under overload. While the database is known to be down (its health check
//! fails) calls fail at once with UNAVAILABLE instead of each waiting out the acquire timeout. It
//! also refuses what is not a well-formed gRPC call: a content type other than
//! `application/grpc…` (HTTP 415), an ill-formed `grpc-timeout`, and a body that is not exactly one
//! message ([`OneMessage`]).

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::Semaphore;
use tonic::Code;
use tower::{Layer, Service};

use crate::auth::Scope;
use crate::framing::OneMessage;
use crate::grpc::error_status;
use crate::jobs::DatabaseState;

/// Adds [`Limits`] around a service.
#[derive(Debug, Clone)]
pub struct LimitsLayer {
    in_flight: Arc<Semaphore>,
    max_call_duration: Duration,
    database: DatabaseState,
}

impl LimitsLayer {
    /// At most `max_concurrent_calls` at once, none longer than `max_call_duration`, none while
    /// `database` is known to be unreachable.
    pub fn new(max_concurrent_calls: usize, max_call_duration: Duration, database: DatabaseState) -> LimitsLayer {
        LimitsLayer { in_flight: Arc::new(Semaphore::new(max_concurrent_calls)), max_call_duration, database }
    }
}

impl<S> Layer<S> for LimitsLayer {
    type Service = Limits<S>;

    fn layer(&self, inner: S) -> Limits<S> {
        Limits {
            inner,
            in_flight: Arc::clone(&self.in_flight),
            max_call_duration: self.max_call_duration,
            database: self.database.clone(),
        }
    }
}

/// Sheds calls over the concurrency limit and cuts calls at their deadline.
#[derive(Debug, Clone)]
pub struct Limits<S> {
    inner: S,
    in_flight: Arc<Semaphore>,
    max_call_duration: Duration,
    database: DatabaseState,
}

impl<S, RequestBody, ResponseBody> Service<http::Request<RequestBody>> for Limits<S>
where
    S: Service<http::Request<OneMessage<RequestBody>>, Response = http::Response<ResponseBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    RequestBody: Send + 'static,
    ResponseBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = crate::layer::Answer<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<RequestBody>) -> Self::Future {
        let mut inner = crate::layer::take_ready(&mut self.inner);
        let is_grpc = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("application/grpc"));
        if !is_grpc {
            // The gRPC over HTTP/2 protocol's answer to any other content type.
            let mut response = http::Response::new(ResponseBody::default());
            *response.status_mut() = http::StatusCode::UNSUPPORTED_MEDIA_TYPE;
            return Box::pin(async move { Ok(response) });
        }
        let asked = match request.headers().get("grpc-timeout").map(|value| value.to_str().ok().and_then(grpc_timeout))
        {
            None => None,
            Some(Some(asked)) => Some(asked),
            Some(None) => {
                let status = crate::grpc::error_status(
                    Code::InvalidArgument,
                    "INVALID_ARGUMENT",
                    "grpc-timeout: must be 1 to 8 digits and a unit (H, M, S, m, u, n)".to_owned(),
                    &[("field", "grpc-timeout".to_owned())],
                );
                return Box::pin(async move { Ok(status.into_http()) });
            }
        };
        // Reflection is the one bidirectional stream; every other call takes one message.
        let one_message = !request.uri().path().starts_with("/grpc.reflection.");
        let encoded = request.headers().get("grpc-encoding").is_some_and(|value| value != "identity");
        let request = request.map(|body| OneMessage::new(body, one_message, encoded));
        if Scope::of_method(request.uri().path()).is_none() {
            return Box::pin(inner.call(request));
        }
        if !self.database.is_reachable() {
            // Known down: answer now rather than after the connection-acquire timeout.
            let status = error_status(
                Code::Unavailable,
                "DATABASE_UNAVAILABLE",
                "database unavailable (its health check fails); safe to retry".to_owned(),
                &[],
            );
            return Box::pin(async move { Ok(status.into_http()) });
        }
        let Ok(permit) = Arc::clone(&self.in_flight).try_acquire_owned() else {
            let status = error_status(
                Code::Unavailable,
                "OVERLOADED",
                "the server is at its concurrency limit; retry with backoff".to_owned(),
                &[],
            );
            return Box::pin(async move { Ok(status.into_http()) });
        };
        let deadline = asked.map_or(self.max_call_duration, |asked| asked.min(self.max_call_duration));
        Box::pin(async move {
            let result = tokio::time::timeout(deadline, inner.call(request)).await;
            drop(permit);
            result.unwrap_or_else(|_| {
                Ok(error_status(
                    Code::DeadlineExceeded,
                    "DEADLINE_EXCEEDED",
                    format!("the call ran past its deadline of {} ms", deadline.as_millis()),
                    &[],
                )
                .into_http())
            })
        })
    }
}

/// A `grpc-timeout` value: up to 8 digits and a unit (H, M, S, m, u, n).
fn grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.checked_mul(3_600)?),
        "M" => Duration::from_secs(amount.checked_mul(60)?),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_in_every_unit_and_nonsense_does_not() {
        assert_eq!(grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(grpc_timeout("2H"), Some(Duration::from_secs(7_200)));
        assert_eq!(grpc_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(grpc_timeout("S"), None);
        assert_eq!(grpc_timeout("5x"), None);
        assert_eq!(grpc_timeout("123456789S"), None);
    }
}
