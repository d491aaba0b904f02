//! The request's own faults and bounds: a bad request ([`BadRequest`]) and a route's
//! bound on the work one request may cause ([`RouteLimit`]).

use std::time::Duration;

use http::StatusCode;

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
