//! Every layer below the one that sets a piece of request context refuses a request that
//! lacks it: a 500 (the stack is assembled wrong), never a default such as an anonymous
//! caller, a zero price or a made-up trace context, and nothing below is reached. Each
//! layer is run alone through `ServiceBuilder` and `oneshot`, over a stub that records
//! whether it was called.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode};
use tower::{Layer, Service, ServiceExt};

use super::RouteCtx;
use super::audit::AuditLayer;
use super::authn::AuthnLayer;
use super::cache::{CacheLayer, ReadCache};
use super::price::{Price, PriceLayer};
use super::quota::{QuotaBook, QuotaLayer};
use super::ratelimit::RateLimitLayer;
use super::translate::TranslateLayer;
use super::upstream::ExecRequest;
use crate::body::{Body, empty};
use crate::context::RequestMeta;
use crate::error::GatewayError;
use crate::identity::{AuthChain, Principal};
use crate::limits::rate::LocalLimiter;
use crate::mapping::exec::{OutBody, Outcome};
use crate::mapping::pack::shipped_catalog;
use crate::store::{SqliteStore, Store};

/// The layers below: answers 200 and remembers it was reached.
#[derive(Clone, Default)]
struct Stub(Arc<AtomicBool>);

impl<B> Service<Request<B>> for Stub {
    type Response = Response<Body>;
    type Error = GatewayError;
    type Future = std::future::Ready<Result<Response<Body>, GatewayError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<B>) -> Self::Future {
        self.0.store(true, Ordering::SeqCst);
        std::future::ready(Ok(Response::new(empty())))
    }
}

impl Service<ExecRequest> for Stub {
    type Response = Outcome;
    type Error = GatewayError;
    type Future = std::future::Ready<Result<Outcome, GatewayError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: ExecRequest) -> Self::Future {
        self.0.store(true, Ordering::SeqCst);
        std::future::ready(Ok(Outcome {
            status: StatusCode::OK,
            body: OutBody::Empty,
            cache: Default::default(),
            calls: 0,
        }))
    }
}

/// Which context a request carries.
#[derive(Clone, Copy)]
struct Has {
    route: bool,
    principal: bool,
    meta: bool,
    price: bool,
}

const NOTHING: Has = Has {
    route: false,
    principal: false,
    meta: false,
    price: false,
};
const ALL: Has = Has {
    route: true,
    principal: true,
    meta: true,
    price: true,
};

/// A request missing one piece besides its route, and the words its refusal names it by.
const ALL_BUT_ONE: [(Has, &str); 3] = [
    (
        Has {
            principal: false,
            ..ALL
        },
        "a principal",
    ),
    (Has { meta: false, ..ALL }, "trace context"),
    (
        Has {
            price: false,
            ..ALL
        },
        "a price",
    ),
];

fn request(has: Has) -> Request<String> {
    let mut req = Request::get("/v1/companies/1").body(String::new()).unwrap();
    let ext = req.extensions_mut();
    if has.route {
        let catalog = shipped_catalog();
        let route = catalog.routes.iter().find(|r| &*r.id == "companies.get");
        ext.insert(RouteCtx {
            route: route.unwrap().clone(),
            params: Arc::from(vec![("companyId".to_owned(), "1".to_owned())]),
            price: has.price.then_some(Price {
                points: 1,
                on_hit: None,
            }),
        });
    }
    if has.principal {
        ext.insert(Principal::anonymous());
    }
    if has.meta {
        ext.insert(RequestMeta::new(None));
    }
    req
}

/// Runs `req` through `layer` over a [`Stub`]: the error it is refused with, after checking
/// it is a 500 naming `what` and that nothing below was reached.
async fn refused<L, S>(layer: L, req: Request<String>, what: &str)
where
    L: Layer<Stub, Service = S>,
    S: Service<Request<String>, Response = Response<Body>, Error = GatewayError>,
{
    let stub = Stub::default();
    let reached = stub.0.clone();
    let err = match layer.layer(stub).oneshot(req).await {
        Ok(r) => panic!("answered {} without {what}", r.status()),
        Err(e) => e,
    };
    assert_eq!(err.status(), StatusCode::INTERNAL_SERVER_ERROR, "{err}");
    assert!(err.to_string().contains(what), "{err} should name {what}");
    assert!(!reached.load(Ordering::SeqCst), "the layers below ran");
}

fn store() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("s.db")).unwrap());
    (dir, store)
}

#[tokio::test]
async fn authentication_needs_a_route() {
    let layer = AuthnLayer::new(Arc::new(AuthChain::default()));
    refused(layer, request(NOTHING), "a route").await;
}

#[tokio::test]
async fn authentication_that_audits_its_refusals_needs_the_trace_context() {
    let (_dir, store) = store();
    let layer = AuthnLayer::new(Arc::new(AuthChain::default())).with_audit(store, Arc::from("t"));
    let route_only = Has {
        route: true,
        ..NOTHING
    };
    // No credentials: an attempt whose refusal would be audited without a tracecode.
    refused(layer, request(route_only), "trace context").await;
}

#[tokio::test]
async fn pricing_needs_a_route_and_a_principal() {
    refused(PriceLayer, request(NOTHING), "a route").await;
    let route_only = Has {
        route: true,
        ..NOTHING
    };
    refused(PriceLayer, request(route_only), "a principal").await;
}

#[tokio::test]
async fn audit_needs_route_principal_trace_context_and_price() {
    let (_dir, store) = store();
    let layer = || AuditLayer::new(store.clone(), Arc::from("test"));
    refused(layer(), request(NOTHING), "a route").await;
    for (has, what) in ALL_BUT_ONE {
        refused(layer(), request(has), what).await;
    }
}

#[tokio::test]
async fn rate_limit_needs_a_route_and_a_principal() {
    let layer = || RateLimitLayer::new(Arc::new(LocalLimiter::new(&Default::default())));
    refused(layer(), request(NOTHING), "a route").await;
    refused(
        layer(),
        request(Has {
            principal: false,
            ..ALL
        }),
        "a principal",
    )
    .await;
}

#[tokio::test]
async fn quota_needs_route_principal_and_price() {
    let (_dir, store) = store();
    let book = QuotaBook::new(
        store.clone(),
        store,
        Arc::new(crate::limits::quota::LocalQuotas::default()),
    );
    needs_route_principal_and_price(|| QuotaLayer::new(book.clone())).await;
}

#[tokio::test]
async fn shared_limits_need_route_principal_and_price() {
    // Refused before Redis is asked: nothing listens at this address.
    let (_dir, store) = store();
    let book = QuotaBook::new(
        store.clone(),
        store,
        Arc::new(crate::limits::quota::LocalQuotas::default()),
    );
    let cfg = crate::config::ClusterConfig::default();
    let link = crate::cluster::link::Link::open(&cfg, "redis://127.0.0.1:9/0").unwrap();
    let limits = crate::cluster::limits::SharedLimits::new(link, &cfg);
    needs_route_principal_and_price(|| {
        crate::gateway::shared_limits::SharedLimitLayer::new(
            limits.clone(),
            book.clone(),
            Arc::new(LocalLimiter::new(&Default::default())),
        )
    })
    .await;
}

#[tokio::test]
async fn cache_needs_route_principal_and_price() {
    needs_route_principal_and_price(|| {
        CacheLayer::new(ReadCache::new(1 << 20, std::time::Duration::from_secs(60)))
    })
    .await;
}

/// The quota, the shared limits and the cache read the same three pieces: each missing one is refused.
async fn needs_route_principal_and_price<L, S>(layer: impl Fn() -> L)
where
    L: Layer<Stub, Service = S>,
    S: Service<Request<String>, Response = Response<Body>, Error = GatewayError>,
{
    refused(layer(), request(NOTHING), "a route").await;
    let no_principal = Has {
        principal: false,
        ..ALL
    };
    refused(layer(), request(no_principal), "a principal").await;
    let no_price = Has {
        price: false,
        ..ALL
    };
    refused(layer(), request(no_price), "a price").await;
}

#[tokio::test]
async fn translate_needs_every_piece_of_context() {
    let layer = || TranslateLayer {
        body_limit: 1 << 20,
        max_depth: 64,
        public_url: None,
        capture: None,
    };
    refused(layer(), request(NOTHING), "a route").await;
    for (has, what) in ALL_BUT_ONE {
        refused(layer(), request(has), what).await;
    }
}

#[tokio::test]
async fn with_its_context_each_layer_lets_the_request_through() {
    // The cases above fail for the missing piece, not for anything else.
    let stub = Stub::default();
    let reached = stub.0.clone();
    let resp = PriceLayer.layer(stub).oneshot(request(ALL)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(reached.load(Ordering::SeqCst));
    let stub = Stub::default();
    let reached = stub.0.clone();
    let layer = TranslateLayer {
        body_limit: 1 << 20,
        max_depth: 64,
        public_url: None,
        capture: None,
    };
    let resp = layer.layer(stub).oneshot(request(ALL)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(reached.load(Ordering::SeqCst));
}
