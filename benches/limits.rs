//! The rate-limit check per request, with 1, 10,000 and 1,000,000 distinct keys: the cost a
//! limited route adds to every request (ns/op), and how it grows with the key count.

use criterion::{BenchmarkId, Criterion, black_box, criterion_group, criterion_main};
use rosetta::config::RateLimitConfig;
use rosetta::limits::quota::{Limits, LocalQuotas, QuotaCounter, UsageKey};
use rosetta::limits::rate::{KeyInput, LocalLimiter, Policies, Policy, RateLimiter, bucket_key};

fn bench(c: &mut Criterion) {
    let policy = Policy::from_config(
        "p",
        &RateLimitConfig {
            burst: 1_000_000,
            rate: "1000000/s".into(),
            key: "user".into(),
            count: None,
        },
    )
    .unwrap();
    let mut g = c.benchmark_group("ratelimit check");
    for n in [1usize, 10_000, 1_000_000] {
        let limiter = LocalLimiter::new(&Policies::from_iter([(
            "p".to_owned(),
            std::sync::Arc::new(policy.clone()),
        )]));
        let keys: Vec<String> = (0..n).map(|i| format!("u:user{i}")).collect();
        // Every key has a bucket before measuring: the steady state of a busy gateway.
        for k in &keys {
            limiter.check(&policy, k);
        }
        let mut i = 0usize;
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                i = (i + 1) % keys.len();
                black_box(limiter.check(&policy, &keys[i]))
            })
        });
    }
    g.finish();
    let mut g = c.benchmark_group("quota reserve+release");
    for n in [1usize, 10_000, 1_000_000] {
        let counter = LocalQuotas::default();
        let limits = Limits {
            per_request: Some(100),
            per_day: Some(u64::MAX / 2),
            window: None,
            max_concurrent: Some(1_000),
        };
        let keys: Vec<UsageKey> = (0..n)
            .map(|i| (format!("user{i}").into(), "REDAPI_V1".into(), "READ".into()))
            .collect();
        for k in &keys {
            counter.seed(k, "2026-11-26", 0, None, 0);
        }
        let mut i = 0usize;
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                i = (i + 1) % keys.len();
                let k = &keys[i];
                let r = counter.reserve(k, "2026-11-26", 1, &limits);
                counter.release(k, 1, false);
                black_box(r)
            })
        });
    }
    g.finish();
    c.bench_function("bucket key (user)", |b| {
        let input = KeyInput {
            user: "ann",
            company: "acme",
            key_id: Some("k1"),
            ip: None,
            header: None,
        };
        b.iter(|| black_box(bucket_key(&policy, black_box(&input))))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
