//! The tenancy check per request, warm (the caller's reach cached): the lookup of the reach by
//! company key and the check of a path id against it, for reaches of 10 and 10,000 companies,
//! and the whole tenancy layer around a stub inner service (route and principal in the
//! request's extensions, as the layers above leave them). The target is under 1 µs.

use std::sync::Arc;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use rosetta::body::{Body, empty};
use rosetta::context::RequestMeta;
use rosetta::error::GatewayError;
use rosetta::gateway::RouteCtx;
use rosetta::gateway::tenancy::TenancyLayer;
use rosetta::identity::Principal;
use rosetta::mapping::exec::{CallFuture, CallUpstream};
use rosetta::tenancy::Reach;
use rosetta::tenancy::reach::check_request;
use rosetta::upstream::{UpstreamRequest, UpstreamResponse};
use tower::{ServiceBuilder, ServiceExt};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// An AppDirect whose root company (any key) has `customers` customers and nothing below them.
struct Tree {
    customers: usize,
}

fn customer(i: usize) -> String {
    format!("6e0f3b4a-0000-4000-8000-{:012}", 1000 + i)
}

impl CallUpstream for Tree {
    fn call<'a>(&'a self, _upstream: &'a str, req: UpstreamRequest) -> CallFuture<'a> {
        let body = if req.path_and_query.starts_with("/api/account/v2/companies/") {
            r#"{"id":"root"}"#.to_owned()
        } else if req.path_and_query.contains("resellerCompanyId=root&") {
            let items: Vec<String> = (0..self.customers)
                .map(|i| format!(r#"{{"customerCompany":{{"id":"{}"}}}}"#, customer(i)))
                .collect();
            format!(r#"{{"content":[{}]}}"#, items.join(","))
        } else {
            r#"{"content":[]}"#.to_owned()
        };
        Box::pin(std::future::ready(Ok(UpstreamResponse {
            status: StatusCode::OK,
            headers: http::HeaderMap::new(),
            body: Bytes::from(body),
        })))
    }
}

fn principal() -> Principal {
    Principal {
        user: Arc::from("bench"),
        company: Arc::from("northwind"),
        roles: Arc::from(vec!["PARTNER".to_owned()]),
        key_id: None,
    }
}

fn warm_check(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cfg = rosetta::config::Config::load_with_env(
        std::path::Path::new("config/bench.toml"),
        Vec::new(),
    )
    .expect("config/bench.toml loads");
    let catalog = rosetta::mapping::pack::load_catalog(&cfg).expect("the shipped packs load");
    let route = catalog
        .routes
        .iter()
        .find(|r| &*r.id == "companies.get" && r.pack.name == "redapi-v1-appdirect")
        .unwrap()
        .clone();
    let pack = route
        .tenancy
        .reach
        .clone()
        .expect("the V1 pack declares a reach");
    let mut group = c.benchmark_group("tenancy warm check");
    // Reaches of 10 and 10,000 companies (the walk's bound): the root and its customers.
    for customers in [9usize, 9_999] {
        pack.forget_all();
        let tree = Tree { customers };
        let set = rt
            .block_on(pack.resolve(&principal(), &tree, &RequestMeta::new(None)))
            .unwrap();
        assert_eq!(set.len(), customers + 1);
        let params: Arc<[(String, String)]> =
            Arc::from(vec![("companyId".to_owned(), customer(customers / 2))]);
        let companies = customers + 1;
        group.bench_function(format!("reach lookup, {companies} companies"), |b| {
            b.iter(|| pack.cached("northwind").expect("warm"))
        });
        group.bench_function(format!("lookup + check, {companies} companies"), |b| {
            b.iter(|| {
                let set = pack.cached("northwind").expect("warm");
                check_request(&route.tenancy, &Reach::Tree(set), &params, None).unwrap();
            })
        });
        // The layer itself: decided in `call`, the stub answering at once.
        let layer = TenancyLayer::new(
            Arc::new(Tree { customers }),
            Arc::from(catalog.reaches.clone()),
        );
        let svc = ServiceBuilder::new()
            .layer(layer)
            .service(tower::service_fn(|_req: Request<Full<Bytes>>| async {
                Ok::<Response<Body>, GatewayError>(Response::new(empty()))
            }));
        let rc = RouteCtx {
            route: route.clone(),
            params: params.clone(),
            price: None,
        };
        group.bench_function(format!("tenancy layer call, {companies} companies"), |b| {
            b.to_async(&rt).iter(|| {
                let mut req = Request::get("/companies/x")
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                req.extensions_mut().insert(rc.clone());
                req.extensions_mut().insert(principal());
                let svc = svc.clone();
                async move {
                    let resp = svc.oneshot(req).await.unwrap();
                    assert_eq!(resp.status(), StatusCode::OK);
                }
            })
        });
    }
    // What the layer call costs around the check: the same request to the stub, no layer.
    let stub = tower::service_fn(|_req: Request<Full<Bytes>>| async {
        Ok::<Response<Body>, GatewayError>(Response::new(empty()))
    });
    let rc = RouteCtx {
        route: route.clone(),
        params: Arc::from(vec![("companyId".to_owned(), customer(1))]),
        price: None,
    };
    group.bench_function("the stub alone (the request and its extensions)", |b| {
        b.to_async(&rt).iter(|| {
            let mut req = Request::get("/companies/x")
                .body(Full::new(Bytes::new()))
                .unwrap();
            req.extensions_mut().insert(rc.clone());
            req.extensions_mut().insert(principal());
            async move {
                let resp = stub.oneshot(req).await.unwrap();
                assert_eq!(resp.status(), StatusCode::OK);
            }
        })
    });
    group.finish();
}

criterion_group!(benches, warm_check);
criterion_main!(benches);
