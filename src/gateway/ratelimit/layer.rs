//! [`RateLimitLayer`].

use std::collections::HashMap;
use std::sync::Arc;

use tower::Layer;

use super::RateLimit;
use crate::limits::rate::{Policy, RateLimiter};

/// Checks each routed request against its route's policy.
#[derive(Clone)]
pub struct RateLimitLayer {
    limiter: Arc<dyn RateLimiter>,
    policies: Arc<HashMap<String, Arc<Policy>>>,
}

impl RateLimitLayer {
    pub fn new(limiter: Arc<dyn RateLimiter>, policies: &HashMap<String, Policy>) -> Self {
        let policies = policies
            .iter()
            .map(|(name, p)| (name.clone(), Arc::new(p.clone())))
            .collect();
        Self {
            limiter,
            policies: Arc::new(policies),
        }
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
