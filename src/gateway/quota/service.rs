//! [`Quota`].

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderValue, Request, Response};
use tower::Service;

use super::super::finish::{Answer, Finish, Finishing};
use super::super::{BoxFuture, RouteCtx, SettledPoints, missing};
use super::QuotaBook;
use crate::body::Body;
use crate::error::{GatewayError, Internal};
use crate::identity::Principal;
use crate::limits::quota::{
    Limits, QuotaCounter, QuotaRules, Refusal, Remaining, UsageKey, day_start_ms, local_day,
};
use crate::mapping::pack::Route;
use futures_util::future::Either;

/// See the module docs.
#[derive(Clone)]
pub struct Quota<S> {
    pub(super) inner: S,
    pub(super) book: QuotaBook,
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
pub(crate) struct Plan {
    pub(crate) key: UsageKey,
    pub(crate) limits: Limits,
    pub(crate) today: String,
    /// Until the user's local midnight.
    pub(crate) reset_in: Duration,
    tz: i32,
    now: i64,
    pub(crate) window: Option<(String, String)>,
    pub(crate) count_success: bool,
}

/// A request within its quotas: its points reserved, what remains to tell the client.
pub struct Admitted {
    reservation: Reservation,
    remaining: Remaining,
    count_success: bool,
}

/// What `p`'s quotas `q` hold the request to; `None` when no quota applies.
pub(crate) fn plan(
    book: &QuotaBook,
    route: &Route,
    p: &Principal,
    q: &(QuotaRules, i32),
) -> Option<Plan> {
    let (quotas, tz) = (&q.0, q.1);
    let now = book.wall.now_ms();
    let (today, reset_in) = local_day(now, tz);
    let limits = quotas.limits_for(&route.pack.service, &route.method_group, &today);
    if limits.is_empty() {
        return None;
    }
    // `count = "success"` (default): a server error or upstream failure gives the points
    // back; `count = "all"` keeps them (and reloading usage counts them too).
    let count_success = route.pricing.count_success;
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
fn reserve(book: &QuotaBook, cost: u64, plan: Plan) -> Result<Admitted, GatewayError> {
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
        Err(refusal) => Err(plan.refused(&refusal)),
    }
}

impl Plan {
    /// The 429 for `refusal`, with `Retry-After` until the exhausted limit resets.
    pub(crate) fn refused(&self, refusal: &Refusal) -> GatewayError {
        let retry_after = match refusal {
            Refusal::PerDay { .. } | Refusal::PerRequest { .. } => self.reset_in,
            Refusal::Window { to, .. } => day_start_ms(to, self.tz)
                .map(|t| t + 86_400_000 - self.now)
                .map_or(self.reset_in, |ms| Duration::from_millis(ms.max(0) as u64)),
            Refusal::Concurrency { .. } => Duration::from_secs(1),
        };
        GatewayError::QuotaExceeded {
            limit: refusal.message(),
            retry_after,
        }
    }

    /// How long the window's counter matters from now: until the window's last day ends.
    pub(crate) fn window_left(&self) -> Duration {
        self.window
            .as_ref()
            .and_then(|(_, to)| day_start_ms(to, self.tz))
            .map_or(self.reset_in, |t| {
                Duration::from_millis((t + 86_400_000 - self.now).max(0) as u64)
            })
    }
}

/// Reads the user's usage so far from the store into the counter. A store that cannot say
/// refuses the request (500): counting from zero would hand out a fresh budget.
async fn seed(book: &QuotaBook, plan: &Plan) -> Result<(), GatewayError> {
    let (day_used, window_used) = usage_so_far(book, plan).await?;
    book.counter.seed(
        &plan.key,
        &plan.today,
        day_used,
        plan.window.clone(),
        window_used,
    );
    Ok(())
}

/// The points the audit trail has for the user today and in the plan's window.
pub(crate) async fn usage_so_far(
    book: &QuotaBook,
    plan: &Plan,
) -> Result<(u64, u64), GatewayError> {
    let (user, service, group) = &plan.key;
    let used = |from: i64, to: i64| {
        book.settings.points_used(
            user.to_string(),
            service.to_string(),
            group.to_string(),
            from,
            to,
        )
    };
    let (tz, now) = (plan.tz, plan.now);
    let day_from = day_start_ms(&plan.today, tz).unwrap_or(now);
    let failed = |source| Internal::Store {
        doing: "reading the user's quota usage",
        source,
    };
    let day_used = used(day_from, now + 1).await.map_err(failed)?;
    let window_used = match &plan.window {
        Some((f, t)) => {
            let from = day_start_ms(f, tz).unwrap_or(now);
            let to = day_start_ms(t, tz).map_or(now + 1, |t| t + 86_400_000);
            used(from, to).await.map_err(failed)?
        }
        None => 0,
    };
    Ok((day_used, window_used))
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
        reservation.refund = count_success && super::super::refundable(&result);
        drop(reservation);
        let mut resp = result?;
        headers(&mut resp, &remaining);
        Ok(resp)
    }
}

/// Writes the points left into the answer's `X-Quota-*-Remaining` headers.
pub(crate) fn headers(resp: &mut Response<Body>, remaining: &Remaining) {
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
        let ext = req.extensions();
        let rc = ext.get::<RouteCtx>();
        let (rc, p, price) = match (rc, ext.get::<Principal>(), rc.and_then(|rc| rc.price)) {
            (Some(rc), Some(p), Some(price)) => (rc, p, price.points),
            (None, _, _) => return refuse(missing("quota", "a route")),
            (Some(_), None, _) => return refuse(missing("quota", "a principal")),
            (Some(_), Some(_), None) => return refuse(missing("quota", "a price")),
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
        match reserve(&self.book, price, plan) {
            Ok(a) => Either::Left(Finishing::new(self.inner.call(req), Some(a))),
            Err(e) => refuse(e),
        }
    }
}

/// A refusal, ready at once.
fn refuse<F>(e: GatewayError) -> Either<F, BoxFuture<'static, Answer>> {
    Either::Right(Box::pin(std::future::ready(Err(e))))
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
            // `call` found all three before it came here.
            let (Some(rc), Some(p)) = (
                req.extensions().get::<RouteCtx>().cloned(),
                req.extensions().get::<Principal>().cloned(),
            ) else {
                return Err(missing("quota", "its request context"));
            };
            let Some(price) = rc.price else {
                return Err(missing("quota", "its request context"));
            };
            let Some(q) = book.of(&p.user).await.map_err(|source| Internal::Store {
                doing: "reading the user's quotas",
                source,
            })?
            else {
                return inner.call(req).await;
            };
            let Some(plan) = plan(&book, &rc.route, &p, &q) else {
                return inner.call(req).await;
            };
            if !plan.counted(&book) {
                seed(&book, &plan).await?;
            }
            let admitted = reserve(&book, price.points, plan)?;
            Finishing::new(inner.call(req), Some(admitted)).await
        })
    }
}

#[cfg(test)]
mod tests {
    //! The quota layer alone through `ServiceBuilder` and `oneshot`, with paused time and an
    //! anchored wall clock: the day's points run out, and come back at midnight.

    use std::sync::Arc;
    use std::time::Duration;

    use http::{Request, Response, StatusCode};
    use serde_json::json;
    use tower::{ServiceBuilder, ServiceExt, service_fn};

    use super::super::{QuotaBook, QuotaLayer};
    use crate::body::empty;
    use crate::clock::WallClock;
    use crate::error::GatewayError;
    use crate::gateway::RouteCtx;
    use crate::gateway::price::Price;
    use crate::identity::Principal;
    use crate::mapping::pack::shipped_catalog;
    use crate::store::{Company, SqliteStore, Store, User};

    #[tokio::test(start_paused = true)]
    async fn a_days_points_come_back_at_midnight() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("q.db")).unwrap());
        let catalog = shipped_catalog();
        let route = catalog
            .routes
            .iter()
            .find(|r| &*r.id == "companies.get")
            .unwrap()
            .clone();
        let quotas = json!([{"service": &*route.pack.service, "methods": [
            {"method_group": &*route.method_group, "points_per_day": 2}]}]);
        store
            .create_company(Company::fixture("acme"))
            .await
            .unwrap();
        let ann = User::fixture("ann", "acme");
        store.create_user(ann, None).await.unwrap();
        store.put_quotas("ann".into(), None, quotas).await.unwrap();
        // 2026-12-05T23:59:00Z (user without a timezone: UTC).
        let wall = WallClock::anchored_at(1_796_515_140_000);
        let book = QuotaBook::new(
            store.clone(),
            store,
            Arc::new(crate::limits::quota::LocalQuotas::default()),
        )
        .with_wall_clock(wall);
        let svc = ServiceBuilder::new()
            .layer(QuotaLayer::new(book))
            .service(service_fn(|_: Request<()>| async {
                Ok::<_, GatewayError>(Response::new(empty()))
            }));
        let request = || {
            let mut req = Request::new(());
            req.extensions_mut().insert(RouteCtx {
                route: route.clone(),
                params: Arc::from(Vec::new()),
                price: Some(Price {
                    points: 1,
                    on_hit: None,
                }),
            });
            let mut ann = Principal::anonymous();
            ann.user = Arc::from("ann");
            req.extensions_mut().insert(ann);
            req
        };
        for _ in 0..2 {
            let resp = svc.clone().oneshot(request()).await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
        }
        let refused = svc.clone().oneshot(request()).await.unwrap_err();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS, "{refused}");
        match &refused {
            GatewayError::QuotaExceeded { retry_after, .. } => {
                assert_eq!(*retry_after, Duration::from_secs(60), "until midnight");
            }
            other => panic!("{other}"),
        }
        tokio::time::advance(Duration::from_secs(61)).await;
        let next_day = svc.clone().oneshot(request()).await.unwrap();
        assert_eq!(next_day.status(), StatusCode::OK);
        assert_eq!(next_day.headers()["x-quota-day-remaining"], "1");
    }
}
