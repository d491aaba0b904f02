//! [`Authn`].

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower::Service;

use super::super::{BoxFuture, RouteCtx};
use crate::body::Body;
use crate::error::GatewayError;
use crate::identity::{AuthChain, Principal, credentials_from_headers};

/// See the module docs.
#[derive(Clone)]
pub struct Authn<S> {
    pub(super) inner: S,
    pub(super) chain: Arc<AuthChain>,
}

impl<S, B> Service<Request<B>> for Authn<S>
where
    S: super::super::Inner<B>,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = GatewayError;
    type Future = BoxFuture<'static, Result<Response<Body>, GatewayError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // The ready inner service is taken and a clone left behind, as tower requires when
        // the call continues in a future.
        let mut inner = super::super::take_ready(&mut self.inner);
        let chain = self.chain.clone();
        Box::pin(async move {
            let anonymous = req
                .extensions()
                .get::<RouteCtx>()
                .is_some_and(|r| r.route.anonymous);
            let principal = if anonymous {
                Principal::anonymous()
            } else {
                let creds = credentials_from_headers(req.headers()).map_err(|e| {
                    GatewayError::Unauthenticated {
                        reason: e.to_string(),
                    }
                })?;
                chain
                    .authenticate(&creds)
                    .await
                    .map_err(|e| GatewayError::Unauthenticated {
                        reason: e.to_string(),
                    })?
            };
            req.extensions_mut().insert(principal);
            inner.call(req).await
        })
    }
}
