//! Heap allocations per request through the whole gateway stack, in-process: the same stack
//! and canned upstreams as `benches/stack.rs`, each request run on this thread (a
//! current-thread runtime) and counted with `allocation_counter` (allocations made on this
//! thread only, so the audit writer's are not in the figure). 1,000 requests per row after
//! 100 unmeasured ones. Allocations are much of what separates the stack's time per request
//! from a bare proxy's, and unlike time they do not drift with the machine: a change that
//! adds one shows here first.
//!
//! `cargo bench --features count-allocations --bench allocs`

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use tower::ServiceExt;

const WARM: u64 = 100;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let gateway =
        rt.block_on(async { rosetta::demo::canned::bench_gateway(&dir.path().join("allocs.db")) });
    let svc = rt.block_on(async { gateway.service::<Full<Bytes>>() });
    let rows = rosetta::demo::canned::BENCH_ROWS;
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
