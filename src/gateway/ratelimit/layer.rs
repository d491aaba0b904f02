//! [`RateLimitLayer`].

use std::sync::Arc;

use tower::Layer;

use super::RateLimit;
use crate::limits::rate::{Policies, RateLimiter};

/// Checks each routed request against its route's policy.
#[derive(Clone)]
pub struct RateLimitLayer {
    limiter: Arc<dyn RateLimiter>,
    policies: Arc<Policies>,
}

impl RateLimitLayer {
    pub fn new(limiter: Arc<dyn RateLimiter>, policies: Arc<Policies>) -> Self {
        Self { limiter, policies }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            limiter: self.limiter.clone(),
            policies: self.policies.clone(),
        }
    }
}
