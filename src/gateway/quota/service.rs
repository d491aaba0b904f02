//! [`Quota`].

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderValue, Request, Response};
use serde_json::{Map, Value, json};
use tower::Service;

use super::super::finish::{Answer, Finish, Finishing};
use super::super::{BoxFuture, RouteCtx, SettledPoints};
use super::QuotaBook;
use crate::body::Body;
use crate::error::GatewayError;
use crate::identity::Principal;
use crate::limits::quota::{
    Limits, QuotaCounter, QuotaRules, Refusal, Remaining, UsageKey, day_start_ms, local_day,
};
use crate::mapping::pack::{Points, Route};
use futures_util::future::Either;

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

/// The quotas that apply to a request, and the usage key they are counted under.
struct Plan {
    key: UsageKey,
    limits: Limits,
    today: String,
    reset_in: Duration,
    tz: i32,
    now: i64,
    window: Option<(String, String)>,
    count_success: bool,
}

/// A request within its quotas: its points reserved, what remains to tell the client.
pub struct Admitted {
    reservation: Reservation,
    remaining: Remaining,
    count_success: bool,
}

/// What `p`'s quotas `q` hold the request to; `None` when no quota applies.
fn plan(book: &QuotaBook, route: &Route, p: &Principal, q: &(QuotaRules, i32)) -> Option<Plan> {
    let (quotas, tz) = (&q.0, q.1);
    let now = now_ms();
    let (today, reset_in) = local_day(now, tz);
    let limits = quotas.limits_for(&route.pack.service, &route.method_group, &today);
    if limits.is_empty() {
        return None;
    }
    // `count = "success"` (default): a server error or upstream failure gives the points
    // back; `count = "all"` keeps them (and reloading usage counts them too).
    let count_success = route
        .rate_limit
        .as_ref()
        .and_then(|n| book.policies.get(n))
        .is_none_or(|p| p.count_success);
    let window = limits
        .window
        .as_ref()
        .map(|(f, t, _)| (f.clone(), t.clone()));
    Some(Plan {
        key: (
            p.user.clone(),
            route.pack.service.clone(),
            route.method_group.clone(),
        ),
        limits,
        today,
        reset_in,
        tz,
        now,
        window,
        count_success,
    })
}

impl Plan {
    /// Whether the counter holds this key's usage for today (and the window) already;
    /// otherwise it is read from the audit trail first ([`seed`]).
    fn counted(&self, book: &QuotaBook) -> bool {
        book.counter
            .knows(&self.key, &self.today, self.window.as_ref())
    }
}

/// Reserves the request's points, or says which quota refuses it.
fn reserve(
    book: &QuotaBook,
    rc: &RouteCtx,
    p: &Principal,
    query: Option<&str>,
    plan: Plan,
) -> Result<Admitted, GatewayError> {
    let cost = route_cost(&rc.route, rc, query, p);
    match book
        .counter
        .reserve(&plan.key, &plan.today, cost, &plan.limits)
    {
        Ok(remaining) => Ok(Admitted {
            reservation: Reservation {
                counter: book.counter.clone(),
                key: plan.key,
                cost,
                refund: false,
            },
            remaining,
            count_success: plan.count_success,
        }),
        Err(refusal) => {
            let retry_after = match &refusal {
                Refusal::PerDay { .. } | Refusal::PerRequest { .. } => plan.reset_in,
                Refusal::Window { to, .. } => day_start_ms(to, plan.tz)
                    .map(|t| t + 86_400_000 - plan.now)
                    .map_or(plan.reset_in, |ms| Duration::from_millis(ms.max(0) as u64)),
                Refusal::Concurrency { .. } => Duration::from_secs(1),
            };
            Err(GatewayError::QuotaExceeded {
                limit: refusal.message(),
                retry_after,
            })
        }
    }
}

/// Reads the user's usage so far from the store into the counter.
async fn seed(book: &QuotaBook, plan: &Plan) {
    let (user, service, group) = &plan.key;
    let used = |from: i64, to: i64| {
        book.store.points_used(
            user.to_string(),
            service.to_string(),
            group.to_string(),
            from,
            to,
            !plan.count_success,
        )
    };
    let (tz, now) = (plan.tz, plan.now);
    let day_from = day_start_ms(&plan.today, tz).unwrap_or(now);
    let day_used = used(day_from, now + 1).await.unwrap_or(0);
    let window_used = match &plan.window {
        Some((f, t)) => {
            let from = day_start_ms(f, tz).unwrap_or(now);
            let to = day_start_ms(t, tz).map_or(now + 1, |t| t + 86_400_000);
            used(from, to).await.unwrap_or(0)
        }
        None => 0,
    };
    book.counter.seed(
        &plan.key,
        &plan.today,
        day_used,
        plan.window.clone(),
        window_used,
    );
}

/// Settles the reservation from the answer and tells the client what remains.
impl Finish for Admitted {
    fn finish(self, result: Answer) -> Answer {
        let Admitted {
            mut reservation,
            remaining,
            count_success,
        } = self;
        if let Ok(r) = &result
            && let Some(SettledPoints(actual)) = r.extensions().get::<SettledPoints>()
        {
            reservation
                .counter
                .settle(&reservation.key, reservation.cost, *actual);
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
    }
}

impl<S, B> Service<Request<B>> for Quota<S>
where
    S: super::super::Inner<B>,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = GatewayError;
    /// The layers below's own future, finished here when a quota applies: no copy of them
    /// and no box unless the user's quotas or usage must be read from the store first.
    type Future = Either<Finishing<S::Future, Admitted>, BoxFuture<'static, Answer>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let (Some(rc), Some(p)) = (
            req.extensions().get::<RouteCtx>(),
            req.extensions().get::<Principal>(),
        ) else {
            return Either::Left(Finishing::new(self.inner.call(req), None));
        };
        if rc.route.anonymous {
            return Either::Left(Finishing::new(self.inner.call(req), None));
        }
        // Decided here when the user's quotas and usage are in memory (every request but a
        // user's first in a while); otherwise in a future that reads them from the store.
        let plan = match self.book.cached(&p.user) {
            Some(None) => None,
            Some(Some(q)) => plan(&self.book, &rc.route, p, &q),
            None => return Either::Right(self.look_up(req)),
        };
        let Some(plan) = plan else {
            return Either::Left(Finishing::new(self.inner.call(req), None));
        };
        if !plan.counted(&self.book) {
            return Either::Right(self.look_up(req));
        }
        match reserve(&self.book, rc, p, req.uri().query(), plan) {
            Ok(a) => Either::Left(Finishing::new(self.inner.call(req), Some(a))),
            Err(e) => Either::Right(Box::pin(std::future::ready(Err(e)))),
        }
    }
}

impl<S> Quota<S> {
    /// The way with waiting: the user's quotas, and usage so far, read from the store. The
    /// ready inner service is taken and a clone left behind, as tower requires when the call
    /// continues in a future.
    fn look_up<B>(&mut self, req: Request<B>) -> BoxFuture<'static, Answer>
    where
        S: super::super::Inner<B>,
        B: Send + 'static,
    {
        let mut inner = super::super::take_ready(&mut self.inner);
        let book = self.book.clone();
        Box::pin(async move {
            let (Some(rc), Some(p)) = (
                req.extensions().get::<RouteCtx>().cloned(),
                req.extensions().get::<Principal>().cloned(),
            ) else {
                return inner.call(req).await;
            };
            let Some(q) = book
                .of(&p.user)
                .await
                .map_err(|e| GatewayError::Internal(format!("quotas unavailable: {e}")))?
            else {
                return inner.call(req).await;
            };
            let Some(plan) = plan(&book, &rc.route, &p, &q) else {
                return inner.call(req).await;
            };
            if !plan.counted(&book) {
                seed(&book, &plan).await;
            }
            let admitted = reserve(&book, &rc, &p, req.uri().query(), plan)?;
            Finishing::new(inner.call(req), Some(admitted)).await
        })
    }
}
