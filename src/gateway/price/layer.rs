//! [`PriceLayer`].

use tower::Layer;

use super::PriceService;

/// Prices each routed, authenticated request once.
#[derive(Debug, Clone, Copy, Default)]
pub struct PriceLayer;

impl<S> Layer<S> for PriceLayer {
    type Service = PriceService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PriceService { inner }
    }
}
