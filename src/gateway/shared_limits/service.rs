//! [`SharedLimit`].

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::Either;
use http::{Request, Response};
use tower::{Layer, Service};

use super::super::finish::Answer;
use super::super::quota::{self, QuotaBook, QuotaLayer};
use super::super::ratelimit::{self, RateLimitLayer};
use super::super::{BoxFuture, RouteCtx, SettledPoints, missing, refundable, take_ready};
use crate::body::Body;
use crate::cluster::limits::{QuotaAsk, RateAsk, SharedLimits, Verdict};
use crate::config::OnRedisError;
use crate::error::{GatewayError, Internal};
use crate::identity::Principal;
use crate::limits::rate::RateLimiter;

/// A counter's margin past its window: settlements of requests that began before midnight
/// still find it.
const MARGIN: Duration = Duration::from_secs(86_400);

/// How long a client refused for want of Redis is told to wait.
const RETRY: Duration = Duration::from_secs(1);

/// See the module docs.
#[derive(Clone)]
pub struct SharedLimit<S> {
    pub(super) inner: S,
    pub(super) limits: SharedLimits,
    pub(super) book: QuotaBook,
    pub(super) fallback: Arc<dyn RateLimiter>,
}

impl<S, B> Service<Request<B>> for SharedLimit<S>
where
    S: super::super::Inner<B>,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = GatewayError;
    /// A request nothing limits is the layers below's own future; the rest wait on Redis.
    type Future = Either<S::Future, BoxFuture<'static, Answer>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let ext = req.extensions();
        let (rc, p) = match (ext.get::<RouteCtx>(), ext.get::<Principal>()) {
            (Some(rc), Some(p)) => (rc, p),
            (None, _) => return refuse(missing("shared limits", "a route")),
            (Some(_), None) => return refuse(missing("shared limits", "a principal")),
        };
        let Some(price) = rc.price else {
            return refuse(missing("shared limits", "a price"));
        };
        let policy = rc.route.pricing.rate_limit.clone();
        let bucket = match &policy {
            Some(policy) => match ratelimit::bucket_for(&req, policy, p) {
                Ok(b) => Some(b),
                Err(e) => return refuse(e),
            },
            None => None,
        };
        let quotas = !rc.route.anonymous && !matches!(self.book.cached(&p.user), Some(None));
        if policy.is_none() && !quotas {
            return Either::Left(self.inner.call(req));
        }
        let inner = take_ready(&mut self.inner);
        let (limits, book, fallback) = (
            self.limits.clone(),
            self.book.clone(),
            self.fallback.clone(),
        );
        Either::Right(Box::pin(async move {
            let (Some(rc), Some(p)) = (
                req.extensions().get::<RouteCtx>().cloned(),
                req.extensions().get::<Principal>().cloned(),
            ) else {
                return Err(missing("shared limits", "its request context"));
            };
            let plan = if rc.route.anonymous {
                None
            } else {
                let q = book.of(&p.user).await.map_err(|source| Internal::Store {
                    doing: "reading the user's quotas",
                    source,
                })?;
                q.and_then(|q| quota::plan(&book, &rc.route, &p, &q))
            };
            let rate = policy
                .as_deref()
                .zip(bucket.as_deref())
                .map(|(policy, bucket)| RateAsk { policy, bucket });
            if rate.is_none() && plan.is_none() {
                let mut inner = inner;
                return inner.call(req).await;
            }
            let mut seed = None;
            let admission = loop {
                let ask = plan.as_ref().map(|pl| QuotaAsk {
                    key: &pl.key,
                    today: &pl.today,
                    window: pl.window.as_ref(),
                    limits: &pl.limits,
                    cost: price.points,
                    day_ttl: pl.reset_in + MARGIN,
                    window_ttl: pl.window_left() + MARGIN,
                    seed,
                });
                match limits.check(rate, ask).await {
                    Ok(Verdict::Admitted(a)) => break a,
                    Ok(Verdict::RateRefused { retry_after }) => {
                        return Err(match rate {
                            Some(r) => GatewayError::RateLimited {
                                policy: r.policy.name.clone(),
                                retry_after,
                                limit: r.policy.burst,
                            },
                            None => missing("shared limits", "the policy Redis refused"),
                        });
                    }
                    Ok(Verdict::QuotaRefused(refusal)) => {
                        return Err(match &plan {
                            Some(pl) => pl.refused(&refusal),
                            None => missing("shared limits", "the quota plan Redis refused"),
                        });
                    }
                    Ok(Verdict::NeedsSeed) => match (&plan, seed) {
                        (Some(pl), None) => seed = Some(quota::usage_so_far(&book, pl).await?),
                        (Some(_), Some(_)) | (None, _) => {
                            return Err(missing("shared limits", "a seeded quota counter"));
                        }
                    },
                    Err(source) => match limits.on_error() {
                        OnRedisError::Deny => {
                            crate::metrics::cluster_unavailable(false);
                            return Err(GatewayError::LimitsUnavailable {
                                retry_after: RETRY,
                                source,
                            });
                        }
                        OnRedisError::Allow => {
                            crate::metrics::cluster_unavailable(true);
                            // As on one node: this node's buckets and counters.
                            let mut local = RateLimitLayer::new(fallback)
                                .layer(QuotaLayer::new(book).layer(inner));
                            return local.call(req).await;
                        }
                    },
                }
            };
            let mut inner = inner;
            let result = inner.call(req).await;
            let mut held = admission.held;
            if let Ok(r) = &result
                && let Some(SettledPoints(actual)) = r.extensions().get::<SettledPoints>()
            {
                held.settle(*actual);
            }
            let failed = refundable(&result);
            held.refund(
                failed && policy.as_ref().is_some_and(|p| p.count_success),
                failed && plan.as_ref().is_some_and(|pl| pl.count_success),
            );
            drop(held);
            let mut resp = result?;
            if let Some(d) = &admission.rate {
                ratelimit::headers(&mut resp, d);
            }
            quota::headers(&mut resp, &admission.remaining);
            Ok(resp)
        }))
    }
}

/// A refusal, ready at once.
fn refuse<F>(e: GatewayError) -> Either<F, BoxFuture<'static, Answer>> {
    Either::Right(Box::pin(std::future::ready(Err(e))))
}
