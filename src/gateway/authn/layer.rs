//! [`AuthnLayer`].

use std::sync::Arc;

use tower::Layer;

use super::Authn;
use super::refusal::RefusalAudit;
use crate::identity::AuthChain;
use crate::store::AuditSink;

/// Authenticates every routed request.
#[derive(Clone)]
pub struct AuthnLayer {
    chain: Arc<AuthChain>,
    audit: Option<RefusalAudit>,
}

impl AuthnLayer {
    /// A layer asking `chain`'s providers in order.
    pub fn new(chain: Arc<AuthChain>) -> Self {
        Self { chain, audit: None }
    }

    /// Records each failed authentication in `sink`'s audit trail (as `anonymous`, with
    /// the client's address), naming this node `server`: the audit layer below sees only
    /// the requests that were let in.
    pub fn with_audit(mut self, sink: Arc<dyn AuditSink>, server: Arc<str>) -> Self {
        self.audit = Some(RefusalAudit {
            sink,
            server,
            wall: crate::clock::WallClock::System,
        });
        self
    }
}

impl<S> Layer<S> for AuthnLayer {
    type Service = Authn<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authn {
            inner,
            chain: self.chain.clone(),
            audit: self.audit.clone(),
        }
    }
}
