//! [`RescueLayer`].

use tower::Layer;

use super::Rescue;

/// Wraps a service whose errors are [`crate::gateway::Rejection`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct RescueLayer;

impl<S> Layer<S> for RescueLayer {
    type Service = Rescue<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Rescue { inner }
    }
}
