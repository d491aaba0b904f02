//! [`RateLimitFuture`]: the answer of an admitted request, given its rate-limit headers (and
//! its cell back when the upstream failed it). A named type rather than a boxed `async`
//! block: no allocation per request, and a request the cache answers at once stays ready.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{HeaderValue, Response};

use crate::body::Body;
use crate::error::GatewayError;
use crate::limits::rate::{Decision, Policy, RateLimiter, ceil_secs};

/// What an admitted request's answer needs from the check.
pub(super) struct Admitted {
    pub(super) policy: Arc<Policy>,
    pub(super) key: String,
    pub(super) limiter: Arc<dyn RateLimiter>,
    pub(super) decision: Decision,
}

pin_project_lite::pin_project! {
    /// The layers below's answer; headed when a policy admitted the request.
    pub struct RateLimitFuture<F> {
        #[pin]
        inner: F,
        admitted: Option<Admitted>,
    }
}

impl<F> RateLimitFuture<F> {
    pub(super) fn new(inner: F, admitted: Option<Admitted>) -> Self {
        Self { inner, admitted }
    }
}

impl<F> Future for RateLimitFuture<F>
where
    F: Future<Output = Result<Response<Body>, GatewayError>>,
{
    type Output = Result<Response<Body>, GatewayError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        Poll::Ready(match this.admitted.take() {
            Some(a) => a.finish(result),
            None => result,
        })
    }
}

impl Admitted {
    fn finish(
        self,
        result: Result<Response<Body>, GatewayError>,
    ) -> Result<Response<Body>, GatewayError> {
        // `count = "success"`: a request the upstream failed (5xx, timeout) gives its cell
        // back, as the quota layer gives back its points.
        if self.policy.count_success && super::super::upstream_failed(&result) {
            self.limiter.refund(&self.policy, &self.key);
        }
        let mut resp = result?;
        let d = self.decision;
        let h = resp.headers_mut();
        h.insert(
            crate::header_names::RATELIMIT_LIMIT,
            HeaderValue::from(d.limit),
        );
        h.insert(
            crate::header_names::RATELIMIT_REMAINING,
            HeaderValue::from(d.remaining),
        );
        h.insert(
            crate::header_names::RATELIMIT_RESET,
            HeaderValue::from(ceil_secs(d.reset)),
        );
        Ok(resp)
    }
}
