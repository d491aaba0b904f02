//! [`RateLimitLayer`].

use std::sync::Arc;

use tower::Layer;

use super::RateLimit;
use crate::limits::rate::RateLimiter;

/// Checks each routed request against its route's policy.
#[derive(Clone)]
pub struct RateLimitLayer {
    limiter: Arc<dyn RateLimiter>,
}

impl RateLimitLayer {
    /// Each route's policy is its own, resolved when its pack loaded; `limiter` holds the
    /// buckets.
    pub fn new(limiter: Arc<dyn RateLimiter>) -> Self {
        Self { limiter }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            limiter: self.limiter.clone(),
        }
    }
}
