//! Heap allocations per request through the whole gateway stack, in-process: the same stack
//! and canned upstreams as `benches/stack.rs`, each request run on this thread (a
//! current-thread runtime) and counted with `allocation_counter` (allocations made on this
//! thread only, so the audit writer's are not in the figure). 1,000 requests per row after
//! 100 unmeasured ones. Allocations are much of what separates the stack's time per request
//! from a bare proxy's, and unlike time they do not drift with the machine: a change that
//! adds one shows here first.
//!
//! `cargo bench --features count-allocations --bench allocs`

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, StatusCode};
use http_body_util::Full;
use rosetta::config::Config;
use rosetta::gateway::stack::Gateway;
use rosetta::mapping::exec::{CallFuture, CallUpstream};
use rosetta::upstream::{UpstreamRequest, UpstreamResponse};
use tower::ServiceExt;

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

const WARM: u64 = 100;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut cfg = Config::load_with_env(Path::new("config/bench.toml"), Vec::new()).unwrap();
    cfg.store.path = dir.path().join("allocs.db");
    let mut gateway = rt.block_on(async { Gateway::from_config(&cfg).unwrap() });
    gateway.upstreams = Arc::new(Canned);
    let svc = rt.block_on(async { gateway.service::<Full<Bytes>>() });
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
    // ROW= picks the rows whose name holds it and REQUESTS= how many are counted: for a
    // profiler attached to the allocator, say.
    let only = std::env::var("ROW").unwrap_or_default();
    let measured: u64 = std::env::var("REQUESTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    println!("allocations per request (in-process stack, {measured} requests per row)");
    let mut n = 0;
    for (name, path) in rows.into_iter().filter(|(name, _)| name.contains(&only)) {
        let mut total = 0;
        for i in 0..WARM + measured {
            n += 1;
            // The request (URI, header map) is the client's, built before counting starts.
            let req = Request::get(path(n))
                .header("authorization", "Bearer bench-key")
                .body(Full::new(Bytes::new()))
                .unwrap();
            let svc = svc.clone();
            let info = allocation_counter::measure(|| {
                let resp = rt.block_on(svc.oneshot(req)).unwrap();
                assert_eq!(resp.status(), StatusCode::OK, "{name}");
            });
            if i >= WARM {
                total += info.count_total;
            }
        }
        println!("{name:42} {:6.1}", total as f64 / measured as f64);
    }
}
