//! Rosetta's own work per request, without the network: the whole gateway stack (trace,
//! rescue, route, authn, audit, rate limit, quota, cache, translate, execute) driven with
//! `oneshot`, its upstreams answering canned documents from memory (`demo::canned`, the
//! same documents `benches/load.sh` serves over loopback). The load table's gap to
//! `examples/bare_proxy` is this figure plus what the extra upstream calls cost.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Request, StatusCode};
use http_body_util::Full;
use rosetta::config::Config;
use rosetta::gateway::stack::Gateway;
use rosetta::mapping::exec::{CallFuture, CallUpstream};
use rosetta::upstream::{UpstreamRequest, UpstreamResponse};
use tower::ServiceExt;

// As the binary: the allocator is part of the per-request cost.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Canned;

impl CallUpstream for Canned {
    fn call<'a>(&'a self, _upstream: &'a str, req: UpstreamRequest) -> CallFuture<'a> {
        let path = req.path_and_query.split('?').next().unwrap_or("/");
        let (ct, body) = rosetta::demo::canned::answer(path);
        let mut headers = HeaderMap::new();
        headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(ct));
        Box::pin(std::future::ready(Ok(UpstreamResponse {
            status: StatusCode::OK,
            headers,
            body: Bytes::from_static(body.as_bytes()),
        })))
    }
}

fn stack(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut cfg = Config::load_with_env(Path::new("config/bench.toml"), Vec::new()).unwrap();
    cfg.store.path = dir.path().join("bench.db");
    let mut gateway = rt.block_on(async { Gateway::from_config(&cfg).unwrap() });
    gateway.upstreams = Arc::new(Canned);
    let svc = rt.block_on(async { gateway.service::<Full<Bytes>>() });
    let n = AtomicU64::new(0);
    // Each row's path for the n-th request (misses ask for a new company every time).
    type PathOf = fn(u64) -> String;
    let rows: [(&str, PathOf); 4] = [
        ("passthrough", |_| "/pass/static".into()),
        ("V1→AppDirect companies.get (cache miss)", |n| {
            format!("/companies/6e0f3b4a-0000-4000-8000-{n:012}")
        }),
        ("V1→LongJump companies.get (cache miss)", |n| {
            format!("/lj/companies/{n}")
        }),
        ("cache hit", |_| {
            "/companies/6e0f3b4a-0000-4000-8000-000000000002".into()
        }),
    ];
    let mut group = c.benchmark_group("gateway stack per request");
    for (name, path) in rows {
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| {
                let uri = path(n.fetch_add(1, Ordering::Relaxed));
                let req = Request::get(uri)
                    .header("authorization", "Bearer bench-key")
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                let svc = svc.clone();
                async move {
                    let resp = svc.oneshot(req).await.unwrap();
                    assert_eq!(resp.status(), StatusCode::OK);
                    resp
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, stack);
criterion_main!(benches);
