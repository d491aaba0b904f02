//! [`AuditLayer`].

use std::sync::Arc;

use tower::Layer;

use super::Audit;
use crate::store::Store;

/// Records an audit row for every request that reaches it.
#[derive(Clone)]
pub struct AuditLayer {
    store: Arc<dyn Store>,
    server: Arc<str>,
}

impl AuditLayer {
    pub fn new(store: Arc<dyn Store>, server: Arc<str>) -> Self {
        Self { store, server }
    }
}

impl<S> Layer<S> for AuditLayer {
    type Service = Audit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Audit {
            inner,
            store: self.store.clone(),
            server: self.server.clone(),
        }
    }
}
