//! The tower layer that authenticates every call, checks its scope and rate, puts the [`Caller`]
//! into the request's extensions, and writes the audit line of admin mutations.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tonic::Code;
use tower::{Layer, Service};

use super::{Authenticator, Caller, Scope, Unauthenticated, certificate_identities};
use crate::grpc::error_status;
use crate::tls::Peer;

/// What an admin mutation touched, filled in by the handler once the request is decoded.
#[derive(Debug, Clone, Default)]
pub struct Audit(Arc<Mutex<Option<AuditEntry>>>);

/// The ids an audit line names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditEntry {
    /// `actor_account_id`, if the request has one.
    pub actor: String,
    /// The workspace, if any.
    pub workspace_id: String,
    /// The account, if any.
    pub account_id: String,
}

impl Audit {
    /// Records what the mutation touches.
    pub fn record(&self, entry: AuditEntry) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(entry);
    }

    fn take(&self) -> Option<AuditEntry> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// Adds [`Auth`] around a service.
#[derive(Clone)]
pub struct AuthLayer {
    authenticator: Authenticator,
    rate_limiter: Option<Arc<DefaultKeyedRateLimiter<String>>>,
}

impl AuthLayer {
    /// Authenticates with `authenticator`; with a rate, each principal may make `per_second` calls
    /// a second on average and `burst` at once.
    pub fn new(authenticator: Authenticator, rate: Option<(NonZeroU32, NonZeroU32)>) -> AuthLayer {
        let rate_limiter = rate
            .map(|(per_second, burst)| Arc::new(RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst))));
        AuthLayer { authenticator, rate_limiter }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Auth<S> {
        Auth { inner, authenticator: self.authenticator.clone(), rate_limiter: self.rate_limiter.clone() }
    }
}

/// Authenticates, authorizes by scope, limits the rate, and audits.
#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    authenticator: Authenticator,
    rate_limiter: Option<Arc<DefaultKeyedRateLimiter<String>>>,
}

impl<S> Auth<S> {
    /// The caller of `request`, or the status that refuses it.
    fn admit<B>(&self, request: &http::Request<B>, scope: Scope) -> Result<Caller, tonic::Status> {
        let token = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .map(|value| value.to_str().ok().and_then(bearer).ok_or(Unauthenticated::Unknown))
            .transpose();
        let identities = request
            .extensions()
            .get::<Peer>()
            .and_then(|peer| peer.certificates.as_ref())
            .and_then(|certs| certs.first().map(|der| certificate_identities(der)))
            .unwrap_or_default();
        let caller = token.and_then(|token| self.authenticator.authenticate(token, &identities)).map_err(|why| {
            let (reason, message) = match why {
                Unauthenticated::Missing => (
                    "CREDENTIALS_MISSING",
                    "no credentials: send `authorization: Bearer <token>` or a client certificate",
                ),
                Unauthenticated::Unknown => ("CREDENTIALS_UNKNOWN", "the credentials match no principal"),
            };
            error_status(Code::Unauthenticated, reason, message.to_owned(), &[])
        })?;
        if !caller.has(scope) {
            return Err(error_status(
                Code::PermissionDenied,
                "SCOPE_MISSING",
                format!("principal {} lacks the {} scope this call needs", caller.name, scope.name()),
                &[("scope", scope.name().to_owned()), ("principal", caller.name.clone())],
            ));
        }
        if let Some(limiter) = &self.rate_limiter
            && limiter.check_key(&caller.name).is_err()
        {
            return Err(error_status(
                Code::ResourceExhausted,
                "RATE_LIMITED",
                format!("principal {} is over its rate limit; retry later", caller.name),
                &[("principal", caller.name.clone())],
            ));
        }
        Ok(caller)
    }
}

/// The token of an `authorization: Bearer <token>` value.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then(|| token.trim())
}

impl<S, RequestBody, ResponseBody> Service<http::Request<RequestBody>> for Auth<S>
where
    S: Service<http::Request<RequestBody>, Response = http::Response<ResponseBody>> + Clone + Send + 'static,
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

    fn call(&mut self, mut request: http::Request<RequestBody>) -> Self::Future {
        let mut inner = crate::layer::take_ready(&mut self.inner);
        let Some(scope) = Scope::of_method(request.uri().path()) else {
            return Box::pin(inner.call(request));
        };
        let caller = match self.admit(&request, scope) {
            Ok(caller) => caller,
            Err(status) => return Box::pin(async move { Ok(status.into_http()) }),
        };
        if let Some(principal) = request.extensions().get::<crate::observe::Principal>() {
            principal.set(&caller.name);
        }
        let audit = Audit::default();
        let method = request.uri().path().trim_start_matches('/').to_owned();
        request.extensions_mut().insert(caller.clone());
        request.extensions_mut().insert(audit.clone());
        Box::pin(async move {
            let result = inner.call(request).await;
            if let Some(entry) = audit.take() {
                let code = match &result {
                    Ok(response) => crate::observe::code_of(response.headers()),
                    Err(_) => Code::Unknown,
                };
                tracing::info!(
                    target: "creditpool::audit",
                    principal = %caller.name,
                    rpc = %method,
                    actor = %entry.actor,
                    workspace_id = %entry.workspace_id,
                    account_id = %entry.account_id,
                    code = crate::observe::code_name(code),
                    "admin mutation"
                );
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::bearer;

    #[test]
    fn only_a_bearer_scheme_with_a_token_yields_a_token() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearer"), None);
    }
}
