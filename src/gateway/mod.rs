//! The tower stack of DESIGN §1, one folder per layer, assembled in [`stack`].
//!
//! Layers share per-request context through request extensions ([`RouteCtx`],
//! [`crate::identity::Principal`], [`crate::context::RequestMeta`]) and report failures as
//! typed [`crate::error::GatewayError`]s; the route layer tags them with the client's
//! dialect ([`Rejection`]) and the rescue layer renders them.

pub mod audit;
pub mod authn;
pub mod cache;
pub mod finish;
pub mod price;
pub mod quota;
pub mod ratelimit;
pub mod rescue;
pub mod route;
pub mod shared_limits;
pub mod stack;
pub mod tenancy;
pub mod timeout;
pub mod trace;
pub mod translate;
pub mod upstream;

#[cfg(test)]
mod fail_closed;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::dialect::Dialect;
use crate::error::GatewayError;
use crate::mapping::pack::Route;

/// A boxed, sendable future: used by layers whose work is genuinely async (authn, translate).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The service under a request-path layer: answers a request with a response or a typed
/// error, clonable, and sendable with its future (one bound for every layer, not a copy each).
pub trait Inner<B>:
    tower::Service<
        http::Request<B>,
        Response = http::Response<crate::body::Body>,
        Error = GatewayError,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<S, B> Inner<B> for S where
    S: tower::Service<
            http::Request<B>,
            Response = http::Response<crate::body::Body>,
            Error = GatewayError,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

/// The inner service that `poll_ready` saw, leaving a clone in its place for the next call
/// (tower's rule: the service polled ready is the one called).
pub(crate) fn take_ready<S: Clone>(inner: &mut S) -> S {
    let clone = inner.clone();
    std::mem::replace(inner, clone)
}

/// Whether a request under `count = "success"` gives back its rate-limit cell and quota
/// points: only when it failed before any of its upstream calls was sent (no connection
/// could be made, the circuit was open, the upstream's queue was full) — work not done.
/// Any answer, the gateway's own errors, a 502/504 after a call was sent, the route's
/// deadline or call budget: the request cost what it cost.
pub(crate) fn refundable(result: &Result<http::Response<crate::body::Body>, GatewayError>) -> bool {
    match result {
        Err(GatewayError::Upstream(e)) => e.nothing_sent(),
        Ok(_) | Err(_) => false,
    }
}

/// A piece of request context missing below the layer that sets it: the stack is assembled
/// wrong, which is our bug, answered 500 (never worked around with a default).
pub(crate) fn missing(layer: &'static str, what: &'static str) -> GatewayError {
    crate::error::Internal::MissingContext {
        layer,
        missing: what,
    }
    .into()
}

/// The matched route of a request, inserted by the route layer.
#[derive(Debug, Clone)]
pub struct RouteCtx {
    /// The route the request matched.
    pub route: Arc<Route>,
    /// Path variables, decoded and checked; shared, since several layers keep the context.
    pub params: Arc<[(String, String)]>,
    /// What the request costs, set once by the price layer below authentication (`None`
    /// above it; a layer below that finds none fails closed). Carried here rather than as
    /// an extension of its own: the route layer's context is already in the request, and a
    /// cache hit would otherwise pay a boxed insert and a lookup per reader.
    pub price: Option<price::Price>,
}

/// A response the gateway makes itself, its header map sized for what the layers add on the
/// way out (trace ids, rate-limit, quota and cache headers, content type, ETag): it does
/// not grow and rehash twice on the way up as an empty map did (~1,000 instructions of
/// every cache hit under callgrind).
pub(crate) fn answer(body: crate::body::Body) -> http::Response<crate::body::Body> {
    let mut r = http::Response::new(body);
    *r.headers_mut() = http::HeaderMap::with_capacity(12);
    r
}

/// The points a request finally cost, when its route settles them from the answer
/// (response extension, read by the quota and audit layers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettledPoints(pub u64);

/// A failure tagged with the dialect to answer it in.
#[derive(Debug)]
pub struct Rejection {
    /// What went wrong.
    pub error: GatewayError,
    /// The dialect of the client to answer.
    pub dialect: Dialect,
}

#[cfg(test)]
mod refund_tests {
    use std::time::Duration;

    use super::refundable;
    use crate::error::{GatewayError, Internal, RouteLimit, UpstreamError};

    fn err(e: impl Into<GatewayError>) -> Result<http::Response<crate::body::Body>, GatewayError> {
        Err(e.into())
    }

    fn up(upstream: &str) -> String {
        upstream.to_owned()
    }

    #[test]
    fn only_a_request_no_upstream_received_is_given_back() {
        let connect = || UpstreamError::Connect {
            upstream: up("a"),
            source: "refused".into(),
        };
        assert!(refundable(&err(connect())));
        assert!(refundable(&err(UpstreamError::CircuitOpen {
            upstream: up("a"),
            retry_after: Duration::from_secs(1),
        })));
        // A call refused after another of the request's calls had been sent.
        assert!(!refundable(&err(UpstreamError::AfterCalls {
            sent: 1,
            inner: Box::new(connect()),
        })));
        // Sent: a timeout, a broken connection, any answer.
        assert!(!refundable(&err(UpstreamError::Timeout {
            upstream: up("a"),
            timeout: Duration::from_secs(1),
        })));
        assert!(!refundable(&err(UpstreamError::Broken {
            upstream: up("a"),
            source: "reset".into(),
        })));
        assert!(!refundable(&err(UpstreamError::Status {
            upstream: up("a"),
            status: http::StatusCode::INTERNAL_SERVER_ERROR,
            message: None,
            answer: None,
        })));
        let answered = http::Response::builder()
            .status(500)
            .body(crate::body::full(""))
            .unwrap();
        assert!(!refundable(&Ok(answered)));
        // The gateway's own failures and the route's bounds.
        assert!(!refundable(&err(Internal::MissingContext {
            layer: "x",
            missing: "y",
        })));
        assert!(!refundable(&err(RouteLimit::Deadline {
            route: "r".into(),
            deadline: Duration::from_secs(1),
        })));
    }
}
