//! [`RateLimitFuture`]: the answer of an admitted request, given its rate-limit headers (and
//! its cell back when the upstream failed it).

use std::sync::Arc;

use http::HeaderValue;

use super::super::finish::{Answer, Finish, Finishing};
use crate::limits::rate::{Decision, Policy, RateLimiter, ceil_secs};

/// The rate-limit layer's future once a request is admitted (or no policy applies).
pub type RateLimitFuture<F> = Finishing<F, Admitted>;

/// What an admitted request's answer needs from the check.
pub struct Admitted {
    pub(super) policy: Arc<Policy>,
    pub(super) key: String,
    pub(super) limiter: Arc<dyn RateLimiter>,
    pub(super) decision: Decision,
}

impl Finish for Admitted {
    fn finish(self, result: Answer) -> Answer {
        // `count = "success"`: a request refused before any upstream work gives its cell
        // back, as the quota layer gives back its points.
        if self.policy.count_success && super::super::refundable(&result) {
            self.limiter.refund(&self.policy, &self.key);
        }
        let mut resp = result?;
        headers(&mut resp, &self.decision);
        Ok(resp)
    }
}

/// Writes what `d` says of the bucket into the answer's `RateLimit-*` headers.
pub(crate) fn headers(resp: &mut http::Response<crate::body::Body>, d: &Decision) {
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
}
