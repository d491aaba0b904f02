//! [`Cache`].

use std::sync::Arc;

use parking_lot::Mutex;
use std::task::{Context, Poll};

use futures_util::FutureExt;
use futures_util::future::Either;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use std::future::Ready;
use tower::Service;

use super::super::finish::{Answer, Finish, Finishing};
use super::super::{BoxFuture, RouteCtx, missing};
use super::layer::{Entry, ReadCache};
use super::policy::{CacheKey, Scope, etag, if_none_match, normalise_query, scope_value};
use crate::body::{Body, empty, full};
use crate::cluster::bus::{Invalidation, Invalidator};
use crate::error::{GatewayError, Internal};
use crate::identity::Principal;
use crate::mapping::exec::CacheDirective;

/// See the module docs.
#[derive(Clone)]
pub struct Cache<S> {
    pub(super) inner: S,
    pub(super) cache: ReadCache,
    pub(super) invalidator: Invalidator,
}

/// What the cache does to an answer it does not keep.
pub enum Passing {
    /// A read the route does not cache: say so (RFC 9211 `fwd=bypass`).
    Bypass,
    /// A write: a success drops the reads the route declares it affects (on every node).
    Invalidate {
        invalidator: Invalidator,
        routes: Vec<Arc<str>>,
        values: Vec<String>,
    },
}

impl Finish for Passing {
    fn finish(self, answer: Answer) -> Answer {
        match self {
            Passing::Bypass => answer.map(|mut r| {
                r.headers_mut().insert(
                    crate::header_names::CACHE_STATUS,
                    HeaderValue::from_static("rosetta; fwd=bypass"),
                );
                r
            }),
            Passing::Invalidate {
                invalidator,
                routes,
                values,
            } => {
                if answer.as_ref().is_ok_and(|r| r.status().is_success()) {
                    invalidator.apply(Invalidation::Reads { routes, values });
                }
                answer
            }
        }
    }
}

/// Statuses stored by default (RFC 9111's heuristically cacheable ones that apply here).
const CACHEABLE: [u16; 7] = [200, 203, 204, 300, 301, 404, 410];

fn respond(e: &Entry, status_line: String, if_none: Option<&str>) -> Response<Body> {
    let not_modified = if_none.is_some_and(|h| if_none_match(h, &e.etag));
    let mut r = if not_modified {
        let mut r = super::super::answer(empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let mut r = super::super::answer(full(e.body.clone()));
        *r.status_mut() = StatusCode::from_u16(e.status).unwrap_or(StatusCode::OK);
        if let Some(ct) = &e.content_type {
            r.headers_mut().insert(header::CONTENT_TYPE, ct.clone());
        }
        r
    };
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&e.etag) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&status_line) {
        h.insert(crate::header_names::CACHE_STATUS, v);
    }
    r
}

/// What a cached read is keyed by besides its scope: path, normalised query, the client's
/// dialect and what it accepts, joined with separators no URL or header contains (written
/// piece by piece: a `format!` per read was ~1,000 instructions).
fn request_key(path: &str, query: &str, dialect: &str, accept: &str) -> String {
    let mut k = String::with_capacity(path.len() + query.len() + dialect.len() + accept.len() + 3);
    for (piece, sep) in [(path, "?"), (query, "\0"), (dialect, "\0"), (accept, "")] {
        k.push_str(piece);
        k.push_str(sep);
    }
    k
}

fn remaining_ttl(e: &Entry) -> u64 {
    e.ttl.saturating_sub(e.stored.elapsed()).as_secs()
}

impl<S, B> Service<Request<B>> for Cache<S>
where
    S: super::super::Inner<B>,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = GatewayError;
    /// A hit the cache answers at once is ready here, without a box or a copy of the stack
    /// below; a request the cache only passes on is the layers below's own future; a miss
    /// on a cached read runs in the boxed future.
    type Future =
        Either<Ready<Answer>, Either<Finishing<S::Future, Passing>, BoxFuture<'static, Answer>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // Borrowed, not cloned: the reference counts are shared with every other request on
        // the route (a contended cache line each); only what the key keeps is cloned.
        let fail = |what| Either::Left(std::future::ready(Err(missing("cache", what))));
        let Some(rc) = req.extensions().get::<RouteCtx>() else {
            return fail("a route");
        };
        let route = rc.route.clone();
        // Writes: a success invalidates the reads the route declares.
        let ttl = match (req.method() == Method::GET, route.cache.ttl) {
            (true, Some(ttl)) => ttl,
            (true, None) => {
                let answer = self.inner.call(req);
                return Either::Right(Either::Left(Finishing::new(answer, Some(Passing::Bypass))));
            }
            (false, _) => {
                let step = (!route.cache.invalidates.is_empty()).then(|| Passing::Invalidate {
                    invalidator: self.invalidator.clone(),
                    routes: route.cache.invalidates.clone(),
                    values: rc.params.iter().map(|(_, v)| v.clone()).collect(),
                });
                return Either::Right(Either::Left(Finishing::new(self.inner.call(req), step)));
            }
        };
        let (principal, hit_points) = match (req.extensions().get::<Principal>(), rc.price) {
            (Some(p), Some(price)) => (p, price.on_hit),
            (None, _) => return fail("a principal"),
            (Some(_), None) => return fail("a price"),
        };
        let scope_kind = route.cache.scope;
        let scope = scope_value(
            route.cache.scope,
            &principal.user,
            &principal.company,
            principal.has_role("ADMIN"),
        );
        let accept = req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let key = CacheKey::new(
            route.cache.name.clone(),
            request_key(
                req.uri().path(),
                &normalise_query(req.uri().query()),
                route.pack.client_dialect.name(),
                accept,
            ),
            scope,
            rc.params.clone(),
        );
        let if_none = req
            .headers()
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let revalidate = req
            .headers()
            .get(header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',')
                    .map(str::trim)
                    .any(|d| d.eq_ignore_ascii_case("no-cache") || d == "max-age=0")
            });
        // The lookup answers at once unless moka's maintenance is busy elsewhere (its future
        // is cancel-safe; a lookup that would wait is made again, waiting, below).
        let at_once = if revalidate {
            Some(None)
        } else {
            self.cache.cache.get(&key).now_or_never()
        };
        if let Some(Some(e)) = at_once {
            return Either::Left(std::future::ready(Ok(hit(
                &e,
                hit_points,
                if_none.as_deref(),
            ))));
        }
        let known_miss = at_once.is_some();
        let cache = self.cache.clone();
        let mut inner = super::super::take_ready(&mut self.inner);
        Either::Right(Either::Right(Box::pin(async move {
            if !known_miss && let Some(e) = cache.cache.get(&key).await {
                return Ok(hit(&e, hit_points, if_none.as_deref()));
            }
            crate::metrics::cache_miss();
            if revalidate {
                cache.cache.invalidate(&key).await;
            }
            // Concurrent misses on one key: one caller (the leader) runs the request; the
            // others wait for its entry. The leader's own answer is kept aside here, so an
            // answer that is not stored still reaches it (and only it).
            let slot: Arc<Mutex<Option<Answer>>> = Arc::default();
            let leader_slot = slot.clone();
            // The request stays here unless this caller leads: a waiter whose leader's answer
            // is not shared sends its own.
            let held = Arc::new(Mutex::new(Some(req)));
            let taken = held.clone();
            let mut fallback = inner.clone();
            let init = async move {
                let req = taken.lock().take();
                let Some(req) = req else {
                    return Err(());
                };
                let answer = inner.call(req).await;
                let resp = match answer {
                    Ok(r) => r,
                    Err(e) => {
                        {
                            let mut s = leader_slot.lock();
                            *s = Some(Err(e));
                        }
                        return Err(());
                    }
                };
                let status = resp.status().as_u16();
                // The upstreams' Cache-Control: no-store (or a cookie) is never stored,
                // private only per user, and max-age bounds the route's TTL.
                let directive = resp
                    .extensions()
                    .get::<CacheDirective>()
                    .copied()
                    .unwrap_or_default();
                let ttl = directive
                    .max_age
                    .map_or(ttl, |s| ttl.min(std::time::Duration::from_secs(s)));
                let storable = !directive.no_store
                    && (!directive.private || scope_kind == Scope::User)
                    && !ttl.is_zero();
                if !CACHEABLE.contains(&status) || !storable {
                    {
                        let mut s = leader_slot.lock();
                        *s = Some(Ok(resp));
                    }
                    return Err(());
                }
                let (parts, body) = resp.into_parts();
                let bytes = match body.collect().await {
                    Ok(c) => c.to_bytes(),
                    Err(e) => {
                        {
                            let mut s = leader_slot.lock();
                            *s = Some(Err(Internal::Body {
                                what: "the answer to cache it",
                                source: e,
                            }
                            .into()));
                        }
                        return Err(());
                    }
                };
                Ok(Arc::new(Entry {
                    status,
                    content_type: parts.headers.get(header::CONTENT_TYPE).cloned(),
                    etag: etag(&bytes),
                    body: bytes,
                    ttl,
                    stored: crate::clock::real_now(),
                }))
            };
            let result = cache
                .cache
                .entry_by_ref(&key)
                .or_try_insert_with(init)
                .await;
            let kept = slot.lock().take();
            match (result, kept) {
                (Ok(entry), _) => {
                    let e = entry.into_value();
                    let line = if revalidate {
                        "rosetta; fwd=request; stored".to_owned()
                    } else {
                        "rosetta; fwd=miss; stored".to_owned()
                    };
                    Ok(respond(&e, line, if_none.as_deref()))
                }
                // The leader, with an answer that is not stored.
                (Err(_), Some(answer)) => answer.map(|mut r| {
                    r.headers_mut().insert(
                        crate::header_names::CACHE_STATUS,
                        HeaderValue::from_static("rosetta; fwd=miss; detail=not-stored"),
                    );
                    r
                }),
                // A waiter whose leader's answer was not stored: no sharing, ask for itself.
                (Err(_), None) => {
                    // Taken out first: the guard is not held across the call.
                    let req = held.lock().take();
                    match req {
                        Some(req) => fallback.call(req).await,
                        None => Err(Internal::LostInCache.into()),
                    }
                }
            }
        })))
    }
}

/// The answer to a hit. A route may price its hits differently; the quota and audit layers
/// settle.
fn hit(e: &Entry, hit_points: Option<u64>, if_none: Option<&str>) -> Response<Body> {
    crate::metrics::cache_hit();
    let mut line = String::with_capacity(40);
    line.push_str("rosetta; hit; ttl=");
    line.push_str(itoa::Buffer::new().format(remaining_ttl(e)));
    let mut resp = respond(e, line, if_none);
    if let Some(n) = hit_points {
        resp.extensions_mut().insert(super::super::SettledPoints(n));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_key_keeps_its_parts_apart() {
        assert_eq!(
            request_key("/companies/1", "a=1&b=2", "redapi-v1", "application/json"),
            "/companies/1?a=1&b=2\0redapi-v1\0application/json"
        );
        // The separators keep a part from running into the next.
        assert_ne!(
            request_key("/a", "", "x", "y"),
            request_key("/a", "", "", "xy")
        );
        assert_eq!(request_key("/a", "", "d", ""), "/a?\0d\0");
    }
}
