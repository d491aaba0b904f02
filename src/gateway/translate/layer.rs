//! [`TranslateLayer`].

use tower::Layer;

use super::Translate;

/// Limits applied to client requests.
#[derive(Debug, Clone, Copy)]
pub struct TranslateLayer {
    pub body_limit: usize,
    pub max_depth: usize,
}

impl<S> Layer<S> for TranslateLayer {
    type Service = Translate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Translate {
            inner,
            body_limit: self.body_limit,
            max_depth: self.max_depth,
        }
    }
}
