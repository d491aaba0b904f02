//! [`Authn`].

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower::Service;

use super::super::{BoxFuture, RouteCtx};
use super::refusal::RefusalAudit;
use crate::body::Body;
use crate::context::{PeerAddr, RequestMeta};
use crate::error::GatewayError;
use crate::identity::{AuthChain, AuthError, Credentials, Principal, credentials_from_headers};
use futures_util::future::Either;

/// See the module docs.
#[derive(Clone)]
pub struct Authn<S> {
    pub(super) inner: S,
    pub(super) chain: Arc<AuthChain>,
    pub(super) audit: Option<RefusalAudit>,
}

impl<S, B> Service<Request<B>> for Authn<S>
where
    S: super::super::Inner<B>,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = GatewayError;
    /// The layers below's own future when the caller was known at once (a declared key, a
    /// cached check): no copy of them and no second box on almost every request.
    type Future = Either<S::Future, BoxFuture<'static, Result<Response<Body>, GatewayError>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let anonymous = match req.extensions().get::<RouteCtx>() {
            Some(rc) => rc.route.anonymous,
            None => return refuse(super::super::missing("authentication", "a route")),
        };
        let principal = if anonymous {
            Principal::anonymous()
        } else {
            // Only a success is taken at once; every other answer is an attempt, which the
            // budgets of failures count.
            let creds = credentials_from_headers(req.headers());
            match creds.as_ref().ok().and_then(|c| self.chain.known(c)) {
                Some(Ok(principal)) => principal,
                Some(Err(_)) | None => return self.attempt(creds, req),
            }
        };
        req.extensions_mut().insert(principal);
        Either::Left(self.inner.call(req))
    }
}

fn refuse<F>(
    e: GatewayError,
) -> Either<F, BoxFuture<'static, Result<Response<Body>, GatewayError>>> {
    Either::Right(Box::pin(std::future::ready(Err(e))))
}

impl<S> Authn<S> {
    /// Authentication that has to be counted or has to wait (the store, a hash): the ready
    /// inner service is taken and a clone left behind, as tower requires when the call
    /// continues in a future.
    fn attempt<B>(
        &mut self,
        creds: Result<Credentials, AuthError>,
        mut req: Request<B>,
    ) -> Either<S::Future, BoxFuture<'static, Result<Response<Body>, GatewayError>>>
    where
        S: super::super::Inner<B>,
        B: Send + 'static,
    {
        let ip = req.extensions().get::<PeerAddr>().map(|a| a.0.ip());
        let attempt = match &self.audit {
            None => None,
            Some(audit) => {
                let ext = req.extensions();
                match (ext.get::<RouteCtx>(), ext.get::<RequestMeta>()) {
                    (Some(rc), Some(meta)) => Some(audit.attempt(&rc.route, meta, ip)),
                    (None, _) => {
                        return refuse(super::super::missing("authentication", "a route"));
                    }
                    (Some(_), None) => {
                        return refuse(super::super::missing(
                            "authentication",
                            "the request's trace context",
                        ));
                    }
                }
            }
        };
        let mut inner = super::super::take_ready(&mut self.inner);
        let chain = self.chain.clone();
        Either::Right(Box::pin(async move {
            match chain.attempt(creds, ip).await {
                Ok(principal) => {
                    req.extensions_mut().insert(principal);
                    inner.call(req).await
                }
                Err(e) => {
                    let failed = e.is_failure();
                    let e = GatewayError::from(e);
                    if let (true, Some(attempt)) = (failed, attempt) {
                        attempt.refused(e.status().as_u16());
                    }
                    Err(e)
                }
            }
        }))
    }
}
