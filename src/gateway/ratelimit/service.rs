//! [`RateLimit`].

use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::Either;
use http::{Request, Response};
use std::future::Ready;
use tower::Service;

use super::super::{RouteCtx, missing};
use super::future::{Admitted, RateLimitFuture};
use crate::body::Body;
use crate::context::PeerAddr;
use crate::error::GatewayError;
use crate::identity::Principal;
use crate::limits::rate::{KeyInput, KeyKind, RateLimiter, bucket_key};

/// See the module docs.
#[derive(Clone)]
pub struct RateLimit<S> {
    pub(super) inner: S,
    pub(super) limiter: Arc<dyn RateLimiter>,
}

impl<S, B> Service<Request<B>> for RateLimit<S>
where
    S: super::super::Inner<B>,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = GatewayError;
    /// A refusal is ready at once; every other request is the layers below's answer.
    type Future = Either<Ready<Result<Response<Body>, GatewayError>>, RateLimitFuture<S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The inner service is called here, not in the future: nothing below is awaited
        // first, so no copy of the stack below is needed.
        let ext = req.extensions();
        let (route, principal) = match (ext.get::<RouteCtx>(), ext.get::<Principal>()) {
            (Some(rc), Some(p)) => (&rc.route, p),
            (None, _) => {
                return Either::Left(std::future::ready(Err(missing("rate-limit", "a route"))));
            }
            (Some(_), None) => {
                return Either::Left(std::future::ready(Err(missing(
                    "rate-limit",
                    "a principal",
                ))));
            }
        };
        let Some(policy) = route.pricing.rate_limit.clone() else {
            return Either::Right(RateLimitFuture::new(self.inner.call(req), None));
        };
        let key = match bucket_for(&req, &policy, principal) {
            Ok(k) => k,
            Err(e) => return Either::Left(std::future::ready(Err(e))),
        };
        let d = self.limiter.check(&policy, &key);
        if !d.allowed {
            return Either::Left(std::future::ready(Err(GatewayError::RateLimited {
                policy: policy.name.clone(),
                retry_after: d.retry_after,
                limit: d.limit,
            })));
        }
        let admitted = Admitted {
            policy,
            key,
            limiter: self.limiter.clone(),
            decision: d,
        };
        Either::Right(RateLimitFuture::new(self.inner.call(req), Some(admitted)))
    }
}

/// The bucket `req` draws from under `policy`.
pub(crate) fn bucket_for<B>(
    req: &Request<B>,
    policy: &crate::limits::rate::Policy,
    principal: &Principal,
) -> Result<String, GatewayError> {
    let ip = match &policy.key {
        KeyKind::Ip => match req.extensions().get::<PeerAddr>() {
            Some(p) => Some(p.0.ip().to_string()),
            None => return Err(missing("rate-limit", "the peer's address")),
        },
        KeyKind::User
        | KeyKind::Company
        | KeyKind::ApiKey
        | KeyKind::Global
        | KeyKind::Header(_) => None,
    };
    let header = match &policy.key {
        KeyKind::Header(name) => req.headers().get(name).and_then(|v| v.to_str().ok()),
        KeyKind::User | KeyKind::Company | KeyKind::ApiKey | KeyKind::Ip | KeyKind::Global => None,
    };
    Ok(bucket_key(
        policy,
        &KeyInput {
            user: &principal.user,
            company: &principal.company,
            key_id: principal.key_id.as_deref(),
            ip: ip.as_deref(),
            header,
        },
    ))
}
