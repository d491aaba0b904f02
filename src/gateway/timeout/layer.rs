//! [`TimeoutLayer`].

use std::time::Duration;

use tower::Layer;

use super::Timeout;

/// A request's time limits, from `[server]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// From the request's head to its answer's head (`server.request_timeout`).
    pub timeout: Duration,
    /// Slowest body accepted, in bytes per second from the request's start; 0: none
    /// (`server.min_body_rate`).
    pub min_body_rate: u64,
    /// Time before `min_body_rate` applies (`server.body_rate_grace`).
    pub body_rate_grace: Duration,
}

impl From<&crate::config::ServerConfig> for RequestLimits {
    fn from(c: &crate::config::ServerConfig) -> Self {
        Self {
            timeout: c.request_timeout,
            min_body_rate: c.min_body_rate,
            body_rate_grace: c.body_rate_grace,
        }
    }
}

/// Bounds each request in time.
#[derive(Debug, Clone, Copy)]
pub struct TimeoutLayer {
    limits: RequestLimits,
}

impl TimeoutLayer {
    /// Requests are bounded by `limits`.
    pub fn new(limits: RequestLimits) -> Self {
        Self { limits }
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Timeout {
            inner,
            limits: self.limits,
        }
    }
}
