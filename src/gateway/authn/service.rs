//! [`Authn`].

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower::Service;

use super::super::{BoxFuture, RouteCtx};
use crate::body::Body;
use crate::error::GatewayError;
use crate::identity::{AuthChain, Credentials, Principal, credentials_from_headers};
use futures_util::future::Either;

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
    /// The layers below's own future when the caller was known at once (a declared key, a
    /// cached check): no copy of them and no second box on almost every request.
    type Future = Either<S::Future, BoxFuture<'static, Result<Response<Body>, GatewayError>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let anonymous = match req.extensions().get::<RouteCtx>() {
            Some(rc) => rc.route.anonymous,
            None => {
                return Either::Right(Box::pin(std::future::ready(Err(super::super::missing(
                    "authentication",
                    "a route",
                )))));
            }
        };
        let known = if anonymous {
            Ok(Principal::anonymous())
        } else {
            match credentials_from_headers(req.headers()) {
                Err(e) => Err(e),
                Ok(creds) => match self.chain.known(&creds) {
                    Some(answer) => answer,
                    None => return Either::Right(self.look_up(creds, req)),
                },
            }
        };
        match known {
            Ok(principal) => {
                req.extensions_mut().insert(principal);
                Either::Left(self.inner.call(req))
            }
            Err(e) => Either::Right(Box::pin(std::future::ready(Err(e.into())))),
        }
    }
}

impl<S> Authn<S> {
    /// Authentication that has to wait (the store): the ready inner service is taken and a
    /// clone left behind, as tower requires when the call continues in a future.
    fn look_up<B>(
        &mut self,
        creds: Credentials,
        mut req: Request<B>,
    ) -> BoxFuture<'static, Result<Response<Body>, GatewayError>>
    where
        S: super::super::Inner<B>,
        B: Send + 'static,
    {
        let mut inner = super::super::take_ready(&mut self.inner);
        let chain = self.chain.clone();
        Box::pin(async move {
            let principal = chain.authenticate(&creds).await?;
            req.extensions_mut().insert(principal);
            inner.call(req).await
        })
    }
}
