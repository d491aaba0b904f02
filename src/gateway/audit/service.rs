//! [`Audit`].

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower::Service;

use super::super::{BoxFuture, RouteCtx};
use crate::body::Body;
use crate::context::RequestMeta;
use crate::error::GatewayError;
use crate::identity::Principal;
use crate::store::{AuditRow, Store};

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
    type Future = BoxFuture<'static, Result<Response<Body>, GatewayError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let (store, server) = (self.store.clone(), self.server.clone());
        let rc = req.extensions().get::<RouteCtx>();
        let principal = req.extensions().get::<Principal>();
        // The same cost the quota layer reserves.
        let points = match (rc, principal) {
            (Some(rc), Some(p)) => {
                super::super::quota::route_cost(&rc.route, rc, req.uri().query(), p)
            }
            (None, _) | (_, None) => 0,
        };
        // Only what the row needs is kept: every reference count taken here is shared with
        // the other workers' requests (the same key, the same route), so each is a contended
        // cache line.
        let who = rc
            .map(|r| r.route.clone())
            .zip(principal.map(|p| (p.user.clone(), p.company.clone())));
        let (tracecode, started) = req
            .extensions()
            .get::<RequestMeta>()
            .map_or((None, None), |m| {
                (Some(m.tracecode.clone()), Some(m.started))
            });
        // Identifies "the same request" for unique points: a fixed-seed non-cryptographic
        // hash is enough (and cheap on every request); nothing here is secret.
        let fingerprint = {
            use std::hash::BuildHasher;
            foldhash::fast::FixedState::with_seed(0x0072_6f73_6574_7461).hash_one((
                req.method().as_str(),
                req.uri().path_and_query().map_or("", |p| p.as_str()),
            ))
        };
        // Called now rather than in the future: no copy of the stack below per request.
        let answer = self.inner.call(req);
        Box::pin(async move {
            let result = answer.await;
            if let Some((route, (user, company))) = who {
                let status = match &result {
                    Ok(r) => r.status().as_u16(),
                    Err(e) => e.status().as_u16(),
                };
                let points = match &result {
                    Ok(r) => r
                        .extensions()
                        .get::<super::super::SettledPoints>()
                        .map_or(points, |s| s.0),
                    Err(_) => points,
                };
                let tracecode = tracecode.unwrap_or_else(|| Arc::from(""));
                let duration_ms = started.map_or(0, |t| t.elapsed().as_millis() as u64);
                let points = u32::try_from(points).unwrap_or(u32::MAX);
                store.record_audit(AuditRow {
                    time_ms: (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
                        as i64,
                    username: user,
                    company_key: company,
                    tracecode,
                    server,
                    service: route.pack.service.clone(),
                    operation: route.id.clone(),
                    method_group: route.method_group.clone(),
                    points,
                    duration_ms,
                    status,
                    fingerprint,
                });
            }
            result
        })
    }
}
