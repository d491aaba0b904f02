//! [`AuthnLayer`].

use std::sync::Arc;

use tower::Layer;

use super::Authn;
use crate::identity::AuthChain;

/// Authenticates every routed request.
#[derive(Clone)]
pub struct AuthnLayer {
    chain: Arc<AuthChain>,
}

impl AuthnLayer {
    /// A layer asking `chain`'s providers in order.
    pub fn new(chain: Arc<AuthChain>) -> Self {
        Self { chain }
    }
}

impl<S> Layer<S> for AuthnLayer {
    type Service = Authn<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authn {
            inner,
            chain: self.chain.clone(),
        }
    }
}
