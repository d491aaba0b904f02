//! [`TenancyLayer`].

use std::sync::Arc;

use tower::Layer;

use super::TenancyService;
use crate::cluster::bus::{Caches, Invalidator};
use crate::mapping::exec::CallUpstream;
use crate::tenancy::PackReach;

/// Confines each routed request to its caller's roles and reach.
#[derive(Clone)]
pub struct TenancyLayer {
    upstreams: Arc<dyn CallUpstream>,
    /// Holds every pack's reaches: a tree change drops them through it.
    invalidator: Invalidator,
}

impl TenancyLayer {
    /// `upstreams` answer the reach resolvers' calls; `reaches` are every pack's resolvers
    /// (a tree change drops the cached reaches of all of them, on this node only).
    pub fn new(upstreams: Arc<dyn CallUpstream>, reaches: Arc<[Arc<PackReach>]>) -> Self {
        let invalidator = Invalidator::local(Caches {
            reaches,
            ..Caches::default()
        });
        Self {
            upstreams,
            invalidator,
        }
    }

    /// Tree changes drop reaches through `invalidator` (which must hold the same reaches),
    /// so the other nodes drop them too.
    pub fn with_invalidator(mut self, invalidator: Invalidator) -> Self {
        self.invalidator = invalidator;
        self
    }
}

impl<S> Layer<S> for TenancyLayer {
    type Service = TenancyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TenancyService {
            inner,
            upstreams: self.upstreams.clone(),
            invalidator: self.invalidator.clone(),
        }
    }
}
