//! [`TraceLayer`].

use tower::Layer;

use super::Trace;

/// The listener a trace layer serves: each has its own request counter in `/metrics`, and
/// the access log names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Listener {
    /// The proxy (`listen`).
    #[default]
    Proxy,
    /// The admin API (`admin_listen`).
    Admin,
}

impl Listener {
    /// `proxy` or `admin`, as the access log writes it.
    pub fn name(self) -> &'static str {
        match self {
            Listener::Proxy => "proxy",
            Listener::Admin => "admin",
        }
    }
}

/// Adds request ids, spans and the access log.
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceLayer {
    listener: Listener,
}

impl TraceLayer {
    /// The proxy listener's.
    pub fn new() -> Self {
        Self {
            listener: Listener::Proxy,
        }
    }

    /// The admin listener's.
    pub fn admin() -> Self {
        Self {
            listener: Listener::Admin,
        }
    }
}

impl<S> Layer<S> for TraceLayer {
    type Service = Trace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Trace {
            inner,
            listener: self.listener,
        }
    }
}
