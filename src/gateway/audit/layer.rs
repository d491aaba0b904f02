//! [`AuditLayer`].

use std::sync::Arc;

use tower::Layer;

use super::Audit;
use crate::clock::WallClock;
use crate::store::AuditSink;

/// Records an audit row for every request that reaches it.
#[derive(Clone)]
pub struct AuditLayer {
    sink: Arc<dyn AuditSink>,
    server: Arc<str>,
    wall: WallClock,
}

impl AuditLayer {
    /// Rows go to `sink`, naming this node `server`, dated by the system's clock.
    pub fn new(sink: Arc<dyn AuditSink>, server: Arc<str>) -> Self {
        Self {
            sink,
            server,
            wall: WallClock::System,
        }
    }

    /// Dates rows by `wall` (the quota layer's clock: a user's usage is read back from the
    /// rows by date).
    pub fn with_wall_clock(mut self, wall: WallClock) -> Self {
        self.wall = wall;
        self
    }
}

impl<S> Layer<S> for AuditLayer {
    type Service = Audit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Audit {
            inner,
            sink: self.sink.clone(),
            server: self.server.clone(),
            wall: self.wall,
        }
    }
}
