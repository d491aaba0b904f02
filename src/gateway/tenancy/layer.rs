//! [`TenancyLayer`].

use std::sync::Arc;

use tower::Layer;

use super::TenancyService;
use crate::mapping::exec::CallUpstream;
use crate::tenancy::PackReach;

/// Confines each routed request to its caller's roles and reach.
#[derive(Clone)]
pub struct TenancyLayer {
    upstreams: Arc<dyn CallUpstream>,
    reaches: Arc<[Arc<PackReach>]>,
}

impl TenancyLayer {
    /// `upstreams` answer the reach resolvers' calls; `reaches` are every pack's resolvers
    /// (a tree change drops the cached reaches of all of them).
    pub fn new(upstreams: Arc<dyn CallUpstream>, reaches: Arc<[Arc<PackReach>]>) -> Self {
        Self { upstreams, reaches }
    }
}

impl<S> Layer<S> for TenancyLayer {
    type Service = TenancyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TenancyService {
            inner,
            upstreams: self.upstreams.clone(),
            reaches: self.reaches.clone(),
        }
    }
}
