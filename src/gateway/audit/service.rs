//! [`Audit`].

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower::Service;

use futures_util::future::Either;

use super::super::finish::Finishing;
use super::super::{RouteCtx, missing};
use super::future::{AuditFuture, Parts, Pending};
use crate::body::Body;
use crate::context::{PeerAddr, RequestMeta};
use crate::error::GatewayError;
use crate::identity::Principal;
use crate::store::AuditSink;

/// When a client refused for a full audit queue may try again: the writer drains a full
/// queue within a second unless the store fails.
const QUEUE_FULL_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// See the module docs.
#[derive(Clone)]
pub struct Audit<S> {
    pub(super) inner: S,
    pub(super) sink: Arc<dyn AuditSink>,
    pub(super) server: Arc<str>,
    pub(super) wall: crate::clock::WallClock,
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
        let ext = req.extensions();
        let fail = |what| Either::Left(std::future::ready(Err(missing("audit", what))));
        let rc = ext.get::<RouteCtx>();
        let (rc, p, meta, price) = match (
            rc,
            ext.get::<Principal>(),
            ext.get::<RequestMeta>(),
            rc.and_then(|rc| rc.price),
        ) {
            (Some(rc), Some(p), Some(meta), Some(price)) => (rc, p, meta, price),
            (None, _, _, _) => return fail("a route"),
            (Some(_), None, _, _) => return fail("a principal"),
            (Some(_), Some(_), None, _) => return fail("the request's trace context"),
            (Some(_), Some(_), Some(_), None) => return fail("a price"),
        };
        // Room for the row is taken before anything below counts or does the request: once
        // let through, it is answered and its row written, whatever happens to the store.
        let Some(slot) = self.sink.reserve_audit() else {
            crate::metrics::audit_refused();
            return Either::Left(std::future::ready(Err(GatewayError::Overloaded {
                what: "the audit queue is full".into(),
                retry_after: QUEUE_FULL_RETRY,
            })));
        };
        // Only what the row needs is kept: every reference count taken here is shared with
        // the other workers' requests (the same key, the same route), so each is a contended
        // cache line.
        let pending = Pending::new(
            slot,
            Parts {
                sink: self.sink.clone(),
                server: self.server.clone(),
                route: rc.route.clone(),
                user: p.user.clone(),
                company: p.company.clone(),
                tracecode: meta.tracecode.clone(),
                started: meta.started,
                wall: self.wall,
                points: price.points,
                fingerprint: fingerprint(&req),
                targets: targets(&rc.route, rc, req.uri().query()),
                // Optional: the server sets it, a stack called in-process has no peer.
                ip: ext.get::<PeerAddr>().map(|a| a.0.ip()),
            },
        );
        Either::Right(Finishing::new(self.inner.call(req), Some(pending)))
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
