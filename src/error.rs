//! The typed errors a request can end in.
//!
//! Layers never write error bytes themselves: they return a [`GatewayError`] and the rescue
//! layer asks the client's dialect to render it, so a LongJump client gets a `<platform>`
//! document and a V1 client gets problem details for the very same failure.

use std::time::Duration;

use http::{Method, StatusCode};

use crate::body::BoxError;

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

/// A route's bound on the work one request may cause, declared in its pack (`deadline`,
/// `max_calls`) so that no client and no upstream's data can make one request hold the
/// gateway or an upstream for longer or for more calls than the route says.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RouteLimit {
    /// The route's calls did not finish within its deadline.
    #[error("route {route} did not finish within its deadline of {deadline:?}")]
    Deadline {
        /// The route's id.
        route: std::sync::Arc<str>,
        /// The deadline over all of its calls.
        deadline: Duration,
    },
    /// Answering would take more upstream calls than the route's budget.
    #[error("route {route} would need more than its {max_calls} upstream calls (max_calls)")]
    Calls {
        /// The route's id.
        route: std::sync::Arc<str>,
        /// The route's call budget.
        max_calls: u32,
    },
}

impl RouteLimit {
    /// 504 for a deadline (the upstreams were too slow), 502 for the call budget (the
    /// upstreams' data asks for more calls than the route may make: retrying will not help).
    pub fn status(&self) -> StatusCode {
        match self {
            RouteLimit::Deadline { .. } => StatusCode::GATEWAY_TIMEOUT,
            RouteLimit::Calls { .. } => StatusCode::BAD_GATEWAY,
        }
    }
}

/// What failed inside Rosetta, with the failure that caused it kept as its source.
#[derive(Debug, thiserror::Error)]
pub enum Internal {
    /// A piece of request context missing below the layer that sets it: the stack is
    /// assembled wrong.
    #[error("the {layer} layer was reached without {missing}")]
    MissingContext {
        /// The layer that needed it.
        layer: &'static str,
        /// What it needed.
        missing: &'static str,
    },
    /// A route's jq filter failed on the values it was given.
    #[error("route {route}: {part} failed")]
    Filter {
        /// The route's id.
        route: std::sync::Arc<str>,
        /// Which filter of the route (`response`, a step's name…).
        part: String,
        /// The jq failure.
        #[source]
        source: crate::mapping::jq::JqError,
    },
    /// A route's filter made a value the route cannot use.
    #[error("route {route}: {detail}")]
    Answer {
        /// The route's id.
        route: std::sync::Arc<str>,
        /// What is wrong with the value.
        detail: String,
    },
    /// A pack's `[reach]` answered something that is not a reach.
    #[error("pack {pack}: [reach] did not yield {{root, companies}}")]
    ReachShape {
        /// The pack's name.
        pack: String,
    },
    /// Resolving the caller's reach failed.
    #[error("resolving the caller's reach")]
    Reach {
        /// Why it failed (shared: callers waiting on the same resolution get it too).
        #[source]
        source: std::sync::Arc<GatewayError>,
    },
    /// The store failed.
    #[error("the store failed while {doing}")]
    Store {
        /// What Rosetta was doing, for the message.
        doing: &'static str,
        /// The store's failure.
        #[source]
        source: crate::store::StoreError,
    },
    /// An answer's body could not be read.
    #[error("reading {what}")]
    Body {
        /// Which body it was, for the message.
        what: &'static str,
        /// The read's failure.
        #[source]
        source: BoxError,
    },
    /// Something Rosetta does for itself failed (a secret drawn, a password hashed, a
    /// report written, a body encoded).
    #[error("{doing}")]
    Failed {
        /// What Rosetta was doing, for the message.
        doing: &'static str,
        /// What failed.
        #[source]
        source: BoxError,
    },
    /// A request waiting on the cache's leader was not kept for its own call.
    #[error("the request was lost while waiting for the cache")]
    LostInCache,
    /// A link needs the gateway's own address.
    #[error("a link needs server.public_url or the listener's address, and neither is known")]
    NoBaseUrl,
    /// Rosetta's own wiring is wrong (the admin route table, the stack's order).
    #[error("{what}")]
    Miswired {
        /// What is wired wrong.
        what: &'static str,
        /// What failed because of it.
        #[source]
        source: BoxError,
    },
}

/// `e` and every error it was caused by, `: `-separated, for the log line of a 500.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        next = cause.source();
    }
    out
}

/// A client error: what was wrong, and where when we know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct BadRequest {
    /// Human readable explanation, naming the parameter or position.
    pub detail: String,
    /// The offending parameter or field, when there is one.
    pub parameter: Option<String>,
}

impl BadRequest {
    /// A bad request about `parameter`.
    pub fn param(parameter: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            detail: detail.into(),
            parameter: Some(parameter.into()),
        }
    }

    /// A bad request not tied to one parameter.
    pub fn new(detail: impl Into<String>) -> Self {
        Self {
            detail: detail.into(),
            parameter: None,
        }
    }
}

/// Failures talking to an upstream.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The pack names an upstream the config does not define (caught at load; kept for safety).
    #[error("upstream {upstream} is not configured")]
    Unknown {
        /// The upstream's name.
        upstream: String,
    },
    /// No connection could be made (TCP or TLS): nothing was sent.
    #[error("upstream {upstream} is unreachable")]
    Connect {
        /// The upstream's name.
        upstream: String,
        /// The connection's failure.
        #[source]
        source: BoxError,
    },
    /// The connection broke after the request was (perhaps partly) sent, before an answer.
    #[error("the connection to upstream {upstream} broke before an answer")]
    Broken {
        /// The upstream's name.
        upstream: String,
        /// The connection's failure.
        #[source]
        source: BoxError,
    },
    /// The upstream's circuit breaker is open: the call was refused without being sent.
    #[error("upstream {upstream} is failing; calls to it are paused for {retry_after:?}")]
    CircuitOpen {
        /// The upstream's name.
        upstream: String,
        /// Until a call may be tried again, for `Retry-After`.
        retry_after: Duration,
    },
    /// `max_in_flight` calls were already in flight and no slot freed within the
    /// upstream's `queue_timeout`: the call was not sent.
    #[error(
        "upstream {upstream} is busy: {max_in_flight} calls in flight, none ended within {waited:?}"
    )]
    Busy {
        /// The upstream's name.
        upstream: String,
        /// The upstream's `max_in_flight`.
        max_in_flight: usize,
        /// How long the call waited for a slot.
        waited: Duration,
    },
    /// No response within the configured timeout.
    #[error("upstream {upstream} did not answer within {timeout:?}")]
    Timeout {
        /// The upstream's name.
        upstream: String,
        /// The timeout that ran out.
        timeout: Duration,
    },
    /// The upstream answered something we cannot read (not JSON, truncated, too large).
    #[error("upstream {upstream} sent an unreadable response: {detail}")]
    InvalidResponse {
        /// The upstream's name.
        upstream: String,
        /// What is wrong with the response, then after `: ` the parser's or the
        /// connection's own words, which only the log gets.
        detail: String,
    },
    /// The upstream answered with an error status.
    #[error("upstream {upstream} answered {status}{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Status {
        /// The upstream's name.
        upstream: String,
        /// The status it answered.
        status: StatusCode,
        /// The message its error body carried (`message`, `detail`…), if any.
        message: Option<String>,
        /// The status the client is answered instead of the usual one, as the step's
        /// `refusals` say (Fusion's 400 for a reseller with tenants is a 409).
        answer: Option<StatusCode>,
    },
    /// Obtaining upstream credentials (OAuth2 token) failed.
    #[error("could not authenticate to upstream {upstream}: {detail}")]
    Auth {
        /// The upstream's name.
        upstream: String,
        /// Why the credentials could not be obtained, then after `: ` the token endpoint's
        /// or the connection's own words, which only the log gets.
        detail: String,
    },
    /// A call failed after others of the same request had been sent: answered as `inner`,
    /// but the request did upstream work (its cost is not given back).
    #[error("{inner}")]
    AfterCalls {
        /// The calls of the request that had been sent.
        sent: u32,
        /// The failure itself.
        inner: Box<UpstreamError>,
    },
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
            AuthError::Missing
            | AuthError::Malformed
            | AuthError::Ambiguous
            | AuthError::Invalid
            | AuthError::Disabled
            | AuthError::Unavailable => GatewayError::Unauthenticated {
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
            GatewayError::Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
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
            | GatewayError::Overloaded { retry_after, .. } => {
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
            | GatewayError::RouteLimit(_)
            | GatewayError::NotFound(_)
            | GatewayError::NotSupported(_)
            | GatewayError::Conflict(_) => self.to_string(),
        }
    }
}

impl UpstreamError {
    /// The status the client sees. Client errors the upstream reports are passed on with the
    /// same meaning; anything that means "the upstream is broken" is a 502, a timeout a 504.
    pub fn status(&self) -> StatusCode {
        match self {
            UpstreamError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            UpstreamError::CircuitOpen { .. } | UpstreamError::Busy { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            UpstreamError::Unknown { .. }
            | UpstreamError::Connect { .. }
            | UpstreamError::Broken { .. }
            | UpstreamError::InvalidResponse { .. }
            | UpstreamError::Auth { .. } => StatusCode::BAD_GATEWAY,
            UpstreamError::AfterCalls { inner, .. } => inner.status(),
            UpstreamError::Status {
                answer: Some(a), ..
            } => *a,
            UpstreamError::Status { status, .. } => match status.as_u16() {
                400 | 404 | 409 | 410 | 412 | 422 => *status,
                // The upstream refusing *our* credentials is our failure, not the client's.
                401 | 403 => StatusCode::BAD_GATEWAY,
                429 => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::BAD_GATEWAY,
            },
        }
    }

    /// Whether the call certainly never reached the upstream: no connection was made (TCP
    /// or TLS refused), the circuit breaker refused it, it found no slot within the
    /// `queue_timeout`, or the upstream is not configured. Such a failure cost the upstream
    /// nothing, so what the client paid for it may be given back. `false` whenever a byte
    /// of the request may have been sent: a broken connection, a timeout (it may have run
    /// out after the request went), any answer, and a token endpoint failure (it may come
    /// after a first attempt was answered 401).
    pub fn nothing_sent(&self) -> bool {
        match self {
            UpstreamError::Unknown { .. }
            | UpstreamError::Connect { .. }
            | UpstreamError::CircuitOpen { .. }
            | UpstreamError::Busy { .. } => true,
            UpstreamError::Broken { .. }
            | UpstreamError::Timeout { .. }
            | UpstreamError::InvalidResponse { .. }
            | UpstreamError::Status { .. }
            | UpstreamError::Auth { .. }
            | UpstreamError::AfterCalls { .. } => false,
        }
    }

    /// What the client is told of this failure (see [`GatewayError::client_detail`]): an
    /// upstream's error message only when it is passed on as the client's own 4xx; of an
    /// unreadable answer or a failed token fetch, only what Rosetta says before the first
    /// `: ` (the parser's or the connection's own words after it are for the log).
    pub fn client_detail(&self) -> String {
        let before_cause = |d: &str| d.split(": ").next().unwrap_or_default().to_owned();
        match self {
            UpstreamError::Status {
                upstream, status, ..
            } if self.status().is_server_error() => {
                format!("upstream {upstream} answered {}", status.as_u16())
            }
            UpstreamError::InvalidResponse { upstream, detail } => format!(
                "upstream {upstream} sent an unreadable response: {}",
                before_cause(detail)
            ),
            UpstreamError::Auth { upstream, detail } => format!(
                "could not authenticate to upstream {upstream}: {}",
                before_cause(detail)
            ),
            UpstreamError::AfterCalls { inner, .. } => inner.client_detail(),
            UpstreamError::Unknown { .. }
            | UpstreamError::Connect { .. }
            | UpstreamError::Broken { .. }
            | UpstreamError::CircuitOpen { .. }
            | UpstreamError::Busy { .. }
            | UpstreamError::Timeout { .. }
            | UpstreamError::Status { .. } => self.to_string(),
        }
    }

    /// Until a call may be tried again, when the failure knows (an open circuit).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            UpstreamError::CircuitOpen { retry_after, .. } => Some(*retry_after),
            UpstreamError::AfterCalls { inner, .. } => inner.retry_after(),
            UpstreamError::Unknown { .. }
            | UpstreamError::Connect { .. }
            | UpstreamError::Broken { .. }
            | UpstreamError::Busy { .. }
            | UpstreamError::Timeout { .. }
            | UpstreamError::InvalidResponse { .. }
            | UpstreamError::Status { .. }
            | UpstreamError::Auth { .. } => None,
        }
    }
}
