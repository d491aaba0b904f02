//! One request's limit check through Redis on 127.0.0.1 (a real `redis-server` started
//! here), beside the same check in process: the rate only, and the rate with a daily quota
//! and a concurrency slot. Each Redis check is one round trip (the script); giving back
//! what the request held is the release script, sent when the admission is dropped, off
//! the measured path as it is off the request's.

#![allow(clippy::disallowed_methods)]

#[path = "../tests/redis/mod.rs"]
mod redis;

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use rosetta::cluster::limits::{QuotaAsk, RateAsk, SharedLimits, Verdict};
use rosetta::cluster::link::Link;
use rosetta::config::{ClusterConfig, RateLimitConfig};
use rosetta::limits::quota::{Limits, LocalQuotas, QuotaCounter, UsageKey};
use rosetta::limits::rate::{LocalLimiter, Policies, Policy, RateLimiter};

fn bench(c: &mut Criterion) {
    let server = redis::RedisServer::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let policy = Policy::from_config(
        "p",
        &RateLimitConfig {
            burst: 1_000_000_000,
            rate: "1000000/s".into(),
            key: "user".into(),
            count: None,
        },
    )
    .unwrap();
    let limits = Limits {
        per_request: Some(100),
        per_day: Some(u64::MAX / 4),
        window: None,
        max_concurrent: Some(1_000_000),
    };
    let key: UsageKey = ("ann".into(), "REDAPI_V1".into(), "READ".into());
    let shared = rt.block_on(async {
        let cfg = ClusterConfig {
            redis_url: Some(server.url()),
            ..ClusterConfig::default()
        };
        let link = Link::open(&cfg, &server.url()).unwrap();
        SharedLimits::new(link, &cfg)
    });
    let quota = |seed| QuotaAsk {
        key: &key,
        today: "2026-12-06",
        window: None,
        limits: &limits,
        cost: 1,
        day_ttl: Duration::from_secs(86_400),
        window_ttl: Duration::from_secs(86_400),
        seed,
    };
    let rate = RateAsk {
        policy: &policy,
        bucket: "u:ann",
    };
    // The day's counter exists before measuring (a user's first request seeds it).
    rt.block_on(async {
        let v = shared.check(None, Some(quota(Some((0, 0))))).await.unwrap();
        assert!(matches!(v, Verdict::Admitted(_)), "{v:?}");
    });

    let mut g = c.benchmark_group("limit check");
    let local = LocalLimiter::new(&Policies::from_iter([(
        "p".to_owned(),
        Arc::new(policy.clone()),
    )]));
    g.bench_function("in process: rate", |b| {
        b.iter(|| black_box(local.check(&policy, "u:ann")))
    });
    let counter = LocalQuotas::default();
    counter.seed(&key, "2026-12-06", 0, None, 0);
    g.bench_function("in process: rate + quota + concurrency", |b| {
        b.iter(|| {
            let d = local.check(&policy, "u:ann");
            let r = counter.reserve(&key, "2026-12-06", 1, &limits);
            counter.release(&key, 1, false);
            black_box((d, r))
        })
    });
    g.bench_function("redis: rate", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(shared.check(Some(rate), None).await.unwrap()) })
    });
    g.bench_function("redis: rate + quota + concurrency", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(shared.check(Some(rate), Some(quota(None))).await.unwrap())
        })
    });
    g.finish();
    drop(server);
}

criterion_group!(benches, bench);
criterion_main!(benches);
