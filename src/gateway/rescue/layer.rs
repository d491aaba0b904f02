//! [`RescueLayer`].

use tower::Layer;

use super::Rescue;
use crate::dialect::Dialect;

/// Wraps a service whose errors are [`crate::gateway::Rejection`]s.
#[derive(Debug, Clone, Copy)]
pub struct RescueLayer {
    /// The listener's dialect: the one its miswiring 500 is written in, since no layer
    /// below has tagged that failure with a client's.
    dialect: Dialect,
}

impl RescueLayer {
    /// A layer answering rejections in their dialect, else in the listener's `dialect`.
    pub fn new(dialect: Dialect) -> Self {
        Self { dialect }
    }
}

impl<S> Layer<S> for RescueLayer {
    type Service = Rescue<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Rescue {
            inner,
            dialect: self.dialect,
        }
    }
}
