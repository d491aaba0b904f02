//! Rosetta's own work per request, without the network: the whole gateway stack (trace,
//! rescue, route, authn, audit, rate limit, quota, cache, translate, execute) driven with
//! `oneshot`, its upstreams answering canned documents from memory (`demo::canned`, the
//! same documents `benches/load.sh` serves over loopback). The load table's gap to
//! `examples/bare_proxy` is this figure plus what the extra upstream calls cost.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, StatusCode};
use http_body_util::Full;
use tower::ServiceExt;

// As the binary: the allocator is part of the per-request cost.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn stack(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let gateway =
        rt.block_on(async { rosetta::demo::canned::bench_gateway(&dir.path().join("bench.db")) });
    let svc = rt.block_on(async { gateway.service::<Full<Bytes>>() });
    let n = AtomicU64::new(0);
    let rows = rosetta::demo::canned::BENCH_ROWS;
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
