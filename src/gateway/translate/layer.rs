//! [`TranslateLayer`].

use std::sync::Arc;

use tower::Layer;

use super::Translate;

/// Limits applied to client requests.
#[derive(Debug, Clone)]
pub struct TranslateLayer {
    /// Largest request body accepted, in bytes (413 above).
    pub body_limit: usize,
    /// Deepest JSON/XML nesting accepted in a request body.
    pub max_depth: usize,
    /// See `server.public_url`.
    pub public_url: Option<Arc<str>>,
    /// `None` when `[capture] mode = "off"`.
    pub capture: Option<super::CaptureSink>,
}

impl<S> Layer<S> for TranslateLayer {
    type Service = Translate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Translate {
            inner,
            body_limit: self.body_limit,
            max_depth: self.max_depth,
            public_url: self.public_url.clone(),
            capture: self.capture.clone(),
        }
    }
}
