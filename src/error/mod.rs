//! The typed errors a request can end in.
//!
//! Layers never write error bytes themselves: they return a [`GatewayError`] and the rescue
//! layer asks the client's dialect to render it, so a LongJump client gets a `<platform>`
//! document and a V1 client gets problem details for the very same failure.
//!
//! The error types live by job: [`GatewayError`] and how each answers here, the upstream's
//! failures in `upstream.rs`, Rosetta's own in `internal.rs`, the request's (a bad request,
//! a route's bound reached) in `request.rs`.

mod internal;
mod request;
mod upstream;

use std::time::Duration;

use http::{Method, StatusCode};

pub use internal::{Internal, chain};
pub use request::{BadRequest, RouteLimit};
pub use upstream::UpstreamError;

/// Everything that can stop a proxied request.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No pack route matches the path.
    #[error("no route matches {method} {path}")]
    NoRoute {
        /// The request's method.
        method: Method,
        /// The request's path.
        path: String,
    },
    /// The path matches routes, but none for this method.
    #[error("method {method} is not allowed here")]
    MethodNotAllowed {
        /// The request's method.
        method: Method,
        /// The methods the path's routes take, for `Allow`.
        allow: Vec<Method>,
    },
    /// Missing, unknown or unusable credentials.
    #[error("authentication failed: {reason}")]
    Unauthenticated {
        /// Why the credentials were refused, as the client is told.
        reason: String,
    },
    /// Authenticated, but not allowed.
    #[error("forbidden: {reason}")]
    Forbidden {
        /// What the caller lacks, as the client is told.
        reason: String,
    },
    /// The request body is larger than the configured limit.
    #[error("request body exceeds the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The request body is in a media type the endpoint does not take.
    #[error("unsupported media type: {detail}")]
    UnsupportedMediaType {
        /// What was sent and what is taken.
        detail: String,
    },
    /// The client did not send its request in time: the body was not all received within
    /// `server.request_timeout`, or came slower than `server.min_body_rate`.
    #[error("request timeout: {reason}")]
    RequestTimeout {
        /// Which limit the client missed, as the client is told.
        reason: String,
    },
    /// The request was all received, but its answer was not begun within
    /// `server.request_timeout`.
    #[error("the gateway did not answer within {timeout:?}")]
    AnswerTimeout {
        /// The timeout that ran out.
        timeout: Duration,
    },
    /// The client sent something we cannot accept.
    #[error(transparent)]
    BadRequest(#[from] BadRequest),
    /// A rate-limit policy refused the request.
    #[error(
        "rate limit {policy} exceeded: {limit} requests in a burst; retry after {retry_after:?}"
    )]
    RateLimited {
        /// The policy's name.
        policy: String,
        /// When the bucket has room again, for `Retry-After`.
        retry_after: Duration,
        /// The policy's burst, for `RateLimit-Limit`.
        limit: u32,
    },
    /// A quota refused the request.
    #[error("quota exhausted: {limit}")]
    QuotaExceeded {
        /// A message naming the limit reached.
        limit: String,
        /// Until the limit resets, for `Retry-After`.
        retry_after: Duration,
    },
    /// Rosetta has no room for the request's work now (too many password checks or store
    /// lookups at once): a 503 with `Retry-After`, before any of the work was done.
    #[error("the gateway is busy: {what}; retry after {retry_after:?}")]
    Overloaded {
        /// What had no room, as the client is told.
        what: String,
        /// When to try again, for `Retry-After`.
        retry_after: Duration,
    },
    /// The limits shared by the cluster's nodes could not be checked (Redis unreachable)
    /// and `cluster.on_redis_error = "deny"`: 503 with `Retry-After`, nothing sent upstream.
    #[error("the shared rate limits and quotas cannot be checked now; retry after {retry_after:?}")]
    LimitsUnavailable {
        /// When to try again, for `Retry-After`.
        retry_after: Duration,
        /// Why Redis did not answer.
        #[source]
        source: crate::cluster::link::LinkError,
    },
    /// An upstream call failed or answered with an error.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The request reached one of its route's bounds on work (deadline, call budget).
    #[error(transparent)]
    RouteLimit(#[from] RouteLimit),
    /// A resource of Rosetta's own (admin API) does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// Creating or renaming would duplicate a unique key.
    #[error("{0} already exists")]
    Conflict(String),
    /// The route cannot be served on its upstream (a pack's `unsupported`): 501, nothing sent.
    #[error("not supported: {0}")]
    NotSupported(String),
    /// A bug or an impossible state; rendered as 500 with the tracecode and nothing else
    /// (the log has what failed and its causes), never a panic.
    #[error("internal error: {0}")]
    Internal(#[from] Internal),
}

/// A failed authentication is a 401 naming why, wherever the credentials were checked; a
/// spent budget of failures is a 429 naming it, no room for the check a 503.
impl From<crate::identity::AuthError> for GatewayError {
    fn from(e: crate::identity::AuthError) -> Self {
        use crate::identity::AuthError;
        match e {
            AuthError::TooManyFailures {
                budget,
                burst,
                retry_after,
            } => GatewayError::RateLimited {
                policy: budget.to_owned(),
                retry_after,
                limit: burst,
            },
            AuthError::Busy { retry_after, .. } => GatewayError::Overloaded {
                what: e.to_string(),
                retry_after,
            },
            // The store is down, not the credentials wrong: a 401 would tell the caller to
            // drop a key that is fine. Retried once the store answers (its calls give up
            // within 10 s).
            AuthError::Unavailable => GatewayError::Overloaded {
                what: e.to_string(),
                retry_after: Duration::from_secs(1),
            },
            AuthError::Missing
            | AuthError::Malformed
            | AuthError::Ambiguous
            | AuthError::Invalid
            | AuthError::Disabled => GatewayError::Unauthenticated {
                reason: e.to_string(),
            },
        }
    }
}

impl GatewayError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::NoRoute { .. } => StatusCode::NOT_FOUND,
            GatewayError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            GatewayError::Forbidden { .. } => StatusCode::FORBIDDEN,
            GatewayError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            GatewayError::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            GatewayError::AnswerTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::BadRequest(_) => StatusCode::BAD_REQUEST,
            GatewayError::RateLimited { .. } | GatewayError::QuotaExceeded { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            GatewayError::Overloaded { .. } | GatewayError::LimitsUnavailable { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            GatewayError::Upstream(e) => e.status(),
            GatewayError::RouteLimit(e) => e.status(),
            GatewayError::NotFound(_) => StatusCode::NOT_FOUND,
            GatewayError::Conflict(_) => StatusCode::CONFLICT,
            GatewayError::NotSupported(_) => StatusCode::NOT_IMPLEMENTED,
            GatewayError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Seconds to put in `Retry-After`, rounded up, when the error has one.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            GatewayError::RateLimited { retry_after, .. }
            | GatewayError::QuotaExceeded { retry_after, .. }
            | GatewayError::Overloaded { retry_after, .. }
            | GatewayError::LimitsUnavailable { retry_after, .. } => {
                let d = *retry_after;
                Some(d.as_secs() + u64::from(d.subsec_nanos() > 0))
            }
            GatewayError::Upstream(e) => e.retry_after().map(|d| {
                // A wait under a second is still worth one: `Retry-After: 0` invites a retry
                // storm.
                (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
            }),
            GatewayError::NoRoute { .. }
            | GatewayError::MethodNotAllowed { .. }
            | GatewayError::Unauthenticated { .. }
            | GatewayError::Forbidden { .. }
            | GatewayError::PayloadTooLarge { .. }
            | GatewayError::UnsupportedMediaType { .. }
            | GatewayError::RequestTimeout { .. }
            | GatewayError::AnswerTimeout { .. }
            | GatewayError::BadRequest(_)
            | GatewayError::RouteLimit(_)
            | GatewayError::NotFound(_)
            | GatewayError::Conflict(_)
            | GatewayError::NotSupported(_)
            | GatewayError::Internal(_) => None,
        }
    }

    /// Shorthand for a bad request about one parameter.
    pub fn bad_param(parameter: impl Into<String>, detail: impl Into<String>) -> Self {
        GatewayError::BadRequest(BadRequest::param(parameter, detail))
    }

    /// What the client is told, in every dialect. Our own failures are one sentence and the
    /// tracecode (their causes, jq's or SQLite's words, go to the log under that code); an
    /// upstream's failure says which upstream failed and how, never what its body or the
    /// connection said. Everything else is the error as displayed: the client's own mistake.
    pub fn client_detail(&self, tracecode: &str) -> String {
        match self {
            GatewayError::Internal(_) => format!(
                "internal error: the gateway could not answer this request; its log names the cause under trace code {tracecode}"
            ),
            GatewayError::Upstream(e) => e.client_detail(),
            GatewayError::NoRoute { .. }
            | GatewayError::MethodNotAllowed { .. }
            | GatewayError::Unauthenticated { .. }
            | GatewayError::Forbidden { .. }
            | GatewayError::PayloadTooLarge { .. }
            | GatewayError::UnsupportedMediaType { .. }
            | GatewayError::RequestTimeout { .. }
            | GatewayError::AnswerTimeout { .. }
            | GatewayError::BadRequest(_)
            | GatewayError::RateLimited { .. }
            | GatewayError::QuotaExceeded { .. }
            | GatewayError::Overloaded { .. }
            | GatewayError::LimitsUnavailable { .. }
            | GatewayError::RouteLimit(_)
            | GatewayError::NotFound(_)
            | GatewayError::NotSupported(_)
            | GatewayError::Conflict(_) => self.to_string(),
        }
    }
}
