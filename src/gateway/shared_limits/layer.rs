//! [`SharedLimitLayer`].

use std::sync::Arc;

use tower::Layer;

use super::SharedLimit;
use crate::cluster::limits::SharedLimits;
use crate::gateway::quota::QuotaBook;
use crate::limits::rate::RateLimiter;

/// Holds each routed request to its limits on Redis.
#[derive(Clone)]
pub struct SharedLimitLayer {
    limits: SharedLimits,
    book: QuotaBook,
    fallback: Arc<dyn RateLimiter>,
}

impl SharedLimitLayer {
    /// Limits on Redis, users' quotas from `book`; `fallback` (and `book`'s own counter)
    /// count requests on this node while Redis is away under `on_redis_error = "allow"`.
    pub fn new(limits: SharedLimits, book: QuotaBook, fallback: Arc<dyn RateLimiter>) -> Self {
        Self {
            limits,
            book,
            fallback,
        }
    }
}

impl<S> Layer<S> for SharedLimitLayer {
    type Service = SharedLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SharedLimit {
            inner,
            limits: self.limits.clone(),
            book: self.book.clone(),
            fallback: self.fallback.clone(),
        }
    }
}
