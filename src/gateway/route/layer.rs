//! [`RouteLayer`].

use std::sync::Arc;

use tower::Layer;

use super::RouteService;
use crate::dialect::Dialect;
use crate::mapping::pack::Catalog;

/// Matches requests against the catalog's routes.
#[derive(Debug, Clone)]
pub struct RouteLayer {
    catalog: Arc<Catalog>,
    fallback: Dialect,
}

impl RouteLayer {
    /// `fallback` answers requests no pack is anywhere near (an empty catalog).
    pub fn new(catalog: Arc<Catalog>, fallback: Dialect) -> Self {
        Self { catalog, fallback }
    }
}

impl<S> Layer<S> for RouteLayer {
    type Service = RouteService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RouteService {
            inner,
            catalog: self.catalog.clone(),
            fallback: self.fallback,
        }
    }
}
