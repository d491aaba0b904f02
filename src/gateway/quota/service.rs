//! [`Quota`].

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderValue, Request, Response};
use serde_json::{Map, Value, json};
use tower::Service;

use super::super::{BoxFuture, RouteCtx, SettledPoints};
use super::QuotaBook;
use crate::body::Body;
use crate::error::GatewayError;
use crate::identity::Principal;
use crate::limits::quota::{QuotaCounter, Refusal, UsageKey, day_start_ms, local_day};
use crate::mapping::pack::{Points, Route};

/// See the module docs.
#[derive(Clone)]
pub struct Quota<S> {
    pub(super) inner: S,
    pub(super) book: QuotaBook,
}

/// A route's cost in points: its constant, or its jq expression over `{path, query,
/// principal}` (the body is not read before the quota decision). At least 0.
pub fn route_cost(route: &Route, rc: &RouteCtx, query: Option<&str>, p: &Principal) -> u64 {
    match &route.points {
        Points::Const(n) => u64::from(*n),
        Points::Jq(f) => {
            let path: Map<String, Value> = rc
                .params
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            let mut q = Map::new();
            for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
                q.entry(k.into_owned())
                    .or_insert_with(|| Value::String(v.into_owned()));
            }
            let ctx = json!({"path": path, "query": q,
                             "principal": {"user": &*p.user, "company": &*p.company, "roles": &*p.roles}});
            match f.run(&ctx) {
                Ok(v) => v.as_f64().map_or(1, |n| n.max(0.0).ceil() as u64),
                Err(e) => {
                    tracing::warn!(route = %route.id, error = %e, "points expression failed; counting 1");
                    1
                }
            }
        }
    }
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// A reserved request: released when dropped (a client that goes away still used its slot
/// until now), refunded when settled as failed.
struct Reservation {
    counter: Arc<dyn QuotaCounter>,
    key: UsageKey,
    cost: u64,
    refund: bool,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.counter.release(&self.key, self.cost, self.refund);
    }
}

impl<S, B> Service<Request<B>> for Quota<S>
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

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let mut inner = super::super::take_ready(&mut self.inner);
        let book = self.book.clone();
        let rc = req.extensions().get::<RouteCtx>().cloned();
        let principal = req.extensions().get::<Principal>().cloned();
        let (Some(rc), Some(p)) = (rc, principal) else {
            return Box::pin(inner.call(req));
        };
        if rc.route.anonymous {
            return Box::pin(inner.call(req));
        }
        Box::pin(async move {
            let Some(q) = book
                .of(&p.user)
                .await
                .map_err(|e| GatewayError::Internal(format!("quotas unavailable: {e}")))?
            else {
                return inner.call(req).await;
            };
            let (quotas, tz) = (&q.0, q.1);
            let route = rc.route.clone();
            let service = route.pack.service.clone();
            let group = route.method_group.clone();
            let now = now_ms();
            let (today, reset_in) = local_day(now, tz);
            let limits = quotas.limits_for(&service, &group, &today);
            if limits.is_empty() {
                return inner.call(req).await;
            }
            // `count = "success"` (default): a server error or upstream failure gives the
            // points back; `count = "all"` keeps them (and reloading usage counts them too).
            let count_success = route
                .rate_limit
                .as_ref()
                .and_then(|n| book.policies.get(n))
                .is_none_or(|p| p.count_success);
            let cost = route_cost(&route, &rc, req.uri().query(), &p);
            let key: UsageKey = (p.user.clone(), service.clone(), group.clone());
            let window = limits
                .window
                .as_ref()
                .map(|(f, t, _)| (f.clone(), t.clone()));
            if !book.counter.knows(&key, &today, window.as_ref()) {
                let used = |from: i64, to: i64| {
                    book.store.points_used(
                        p.user.to_string(),
                        service.to_string(),
                        group.to_string(),
                        from,
                        to,
                        !count_success,
                    )
                };
                let day_from = day_start_ms(&today, tz).unwrap_or(now);
                let day_used = used(day_from, now + 1).await.unwrap_or(0);
                let window_used = match &window {
                    Some((f, t)) => {
                        let from = day_start_ms(f, tz).unwrap_or(now);
                        let to = day_start_ms(t, tz).map_or(now + 1, |t| t + 86_400_000);
                        used(from, to).await.unwrap_or(0)
                    }
                    None => 0,
                };
                book.counter
                    .seed(&key, &today, day_used, window.clone(), window_used);
            }
            let remaining = match book.counter.reserve(&key, &today, cost, &limits) {
                Ok(r) => r,
                Err(refusal) => {
                    let retry_after = match &refusal {
                        Refusal::PerDay { .. } | Refusal::PerRequest { .. } => reset_in,
                        Refusal::Window { to, .. } => day_start_ms(to, tz)
                            .map(|t| t + 86_400_000 - now)
                            .map_or(reset_in, |ms| Duration::from_millis(ms.max(0) as u64)),
                        Refusal::Concurrency { .. } => Duration::from_secs(1),
                    };
                    return Err(GatewayError::QuotaExceeded {
                        limit: refusal.message(),
                        retry_after,
                    });
                }
            };
            let mut reservation = Reservation {
                counter: book.counter.clone(),
                key,
                cost,
                refund: false,
            };
            let result = inner.call(req).await;
            if let Ok(r) = &result
                && let Some(SettledPoints(actual)) = r.extensions().get::<SettledPoints>()
            {
                book.counter.settle(&reservation.key, cost, *actual);
                reservation.cost = *actual;
            }
            reservation.refund = count_success && super::super::upstream_failed(&result);
            drop(reservation);
            let mut resp = result?;
            if let Some(d) = remaining.day {
                resp.headers_mut().insert(
                    crate::header_names::X_QUOTA_DAY_REMAINING,
                    HeaderValue::from(d),
                );
            }
            if let Some(w) = remaining.window {
                resp.headers_mut().insert(
                    crate::header_names::X_QUOTA_WINDOW_REMAINING,
                    HeaderValue::from(w),
                );
            }
            Ok(resp)
        })
    }
}
