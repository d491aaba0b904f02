//! [`Audit`].

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower::Service;

use super::super::RouteCtx;
use super::future::{AuditFuture, Pending};
use crate::body::Body;
use crate::context::RequestMeta;
use crate::error::GatewayError;
use crate::identity::Principal;
use crate::store::Store;

/// See the module docs.
#[derive(Clone)]
pub struct Audit<S> {
    pub(super) inner: S,
    pub(super) store: Arc<dyn Store>,
    pub(super) server: Arc<str>,
}

impl<S, B> Service<Request<B>> for Audit<S>
where
    S: super::super::Inner<B>,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = GatewayError;
    type Future = AuditFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let rc = req.extensions().get::<RouteCtx>();
        let principal = req.extensions().get::<Principal>();
        // Only what the row needs is kept: every reference count taken here is shared with
        // the other workers' requests (the same key, the same route), so each is a contended
        // cache line.
        let pending = match (rc, principal) {
            (Some(rc), Some(p)) => {
                let (tracecode, started) = req
                    .extensions()
                    .get::<RequestMeta>()
                    .map_or((None, None), |m| {
                        (Some(m.tracecode.clone()), Some(m.started))
                    });
                Some(Pending {
                    store: self.store.clone(),
                    server: self.server.clone(),
                    route: rc.route.clone(),
                    user: p.user.clone(),
                    company: p.company.clone(),
                    tracecode,
                    started,
                    // The same cost the quota layer reserves.
                    points: super::super::quota::route_cost(&rc.route, rc, req.uri().query(), p),
                    fingerprint: fingerprint(&req),
                    targets: targets(&rc.route, rc, req.uri().query()),
                })
            }
            (None, _) | (_, None) => None,
        };
        AuditFuture::new(self.inner.call(req), pending)
    }
}

/// The company ids the request names in its path and query, as the route declares them (a
/// doubled query id is refused by the tenancy layer, and then names nothing here).
fn targets(
    route: &crate::mapping::pack::Route,
    rc: &RouteCtx,
    query: Option<&str>,
) -> Arc<[Arc<str>]> {
    let mut one: Option<Arc<str>> = None;
    let mut more: Vec<Arc<str>> = Vec::new();
    let named = crate::tenancy::reach::each_request_id(&route.tenancy, &rc.params, query, |id| {
        match one.take() {
            None if more.is_empty() => one = Some(Arc::from(id)),
            first => {
                more.extend(first);
                more.push(Arc::from(id));
            }
        }
        Ok(())
    });
    // Most rows name one company: one allocation for the list besides its id.
    match (named, one) {
        (Ok(()), Some(id)) => Arc::from([id]),
        (Ok(()), None) => Arc::from(more),
        (Err(_), _) => Arc::from([]),
    }
}

/// Identifies "the same request" for unique points: a fixed-seed non-cryptographic hash is
/// enough (and cheap on every request); nothing here is secret.
fn fingerprint<B>(req: &Request<B>) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::with_seed(0x0072_6f73_6574_7461).hash_one((
        req.method().as_str(),
        req.uri().path_and_query().map_or("", |p| p.as_str()),
    ))
}
