//! Rate-limit policies: `[rate_limits.NAME]` with `burst`, `rate` and `key`, checked with
//! governor's keyed GCRA limiter.
//!
//! GCRA is the leaky bucket expressed as one timestamp per key ("theoretical arrival time"),
//! updated by compare-and-swap: a check and its consumption are one atomic step, so no
//! concurrency lets more through than the bucket holds, and a refused request consumes
//! nothing. Time comes from tokio's clock ([`TokioClock`]), so tests pause and advance it.
//! Keys whose bucket is full again are forgotten periodically: memory follows the number of
//! recently active keys, not every key ever seen.
//!
//! The keyed state is our own [`RefundableStore`] (governor's algorithm, our map) so that a
//! policy with `count = "success"` can give a cell back when the upstream fails: giving back
//! moves the key's arrival time one emission interval earlier, exactly undoing the admission,
//! and GCRA's clamp to "now" means a refund can never make a bucket hold more than its burst.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::ops::Add;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use governor::Quota;
use governor::clock::{Clock, Reference};
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::state::keyed::ShrinkableKeyedStateStore;

use crate::config::RateLimitConfig;

/// Whose bucket a request draws from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKind {
    /// The authenticated user.
    User,
    /// The caller's company.
    Company,
    /// The API key used (a caller without one counts as its user).
    ApiKey,
    /// The client's IP address.
    Ip,
    /// One bucket for everybody.
    Global,
    /// The value of a request header (a missing header shares one bucket).
    Header(String),
}

/// A compiled policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The policy's name in `[rate_limits]`.
    pub name: String,
    /// How many requests the bucket holds.
    pub burst: u32,
    /// Time to leak one request.
    pub period: Duration,
    /// Whose bucket a request draws from.
    pub key: KeyKind,
    /// `count = "success"` (the default): the bucket cell and the quota points of a request
    /// are given back when the upstream fails (5xx) or times out; `"all"` keeps them.
    pub count_success: bool,
}

/// `"5/s"`, `"300/m"`, `"1000/h"`, `"10/d"` → the time one request takes to leak.
pub fn parse_rate(text: &str) -> Result<Duration, String> {
    let (n, unit) = text
        .split_once('/')
        .ok_or_else(|| format!("rate `{text}` must read N/s, N/m, N/h or N/d"))?;
    let n: u32 = n
        .trim()
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("rate `{text}`: the count must be a positive integer"))?;
    let unit = match unit.trim() {
        "s" | "sec" | "second" => 1,
        "m" | "min" | "minute" => 60,
        "h" | "hour" => 3600,
        "d" | "day" => 86_400,
        other => {
            return Err(format!(
                "rate `{text}`: unknown unit `{other}` (s, m, h, d)"
            ));
        }
    };
    Ok(Duration::from_nanos(unit * 1_000_000_000 / u64::from(n)))
}

impl Policy {
    /// Compiles `[rate_limits.NAME]`.
    pub fn from_config(name: &str, cfg: &RateLimitConfig) -> Result<Self, String> {
        if cfg.burst == 0 {
            return Err(format!("rate_limits.{name}.burst must be at least 1"));
        }
        let period = parse_rate(&cfg.rate).map_err(|e| format!("rate_limits.{name}: {e}"))?;
        let key = match cfg.key.as_str() {
            "user" => KeyKind::User,
            "company" => KeyKind::Company,
            "api_key" => KeyKind::ApiKey,
            "ip" => KeyKind::Ip,
            "global" => KeyKind::Global,
            other => match other.strip_prefix("header:") {
                Some(h) if !h.is_empty() && http::HeaderName::from_bytes(h.as_bytes()).is_ok() => {
                    KeyKind::Header(h.to_ascii_lowercase())
                }
                Some(_) | None => {
                    return Err(format!(
                        "rate_limits.{name}.key `{other}` must be user, company, api_key, ip, global or header:NAME"
                    ));
                }
            },
        };
        let count_success = match cfg.count.as_deref() {
            None | Some("success") => true,
            Some("all") => false,
            Some(other) => {
                return Err(format!(
                    "rate_limits.{name}.count `{other}` must be all or success"
                ));
            }
        };
        Ok(Self {
            name: name.to_owned(),
            burst: cfg.burst,
            period,
            key,
            count_success,
        })
    }
}

/// Every compiled policy by name, shared by the rate-limit and quota layers. Looked up on
/// every request by names from the config, so foldhash rather than SipHash.
pub type Policies = HashMap<String, std::sync::Arc<Policy>, foldhash::fast::RandomState>;

/// Compiles every configured policy.
pub fn policies(
    cfg: &std::collections::BTreeMap<String, RateLimitConfig>,
) -> Result<Policies, String> {
    cfg.iter()
        .map(|(name, c)| Policy::from_config(name, c).map(|p| (name.clone(), Arc::new(p))))
        .collect()
}

/// What a request is known by, for choosing its bucket.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyInput<'a> {
    /// The caller's username.
    pub user: &'a str,
    /// The caller's company key.
    pub company: &'a str,
    /// The id of the API key used; `None` for other credentials.
    pub key_id: Option<&'a str>,
    /// The client's IP address, when known.
    pub ip: Option<&'a str>,
    /// The value of the policy's header, when it has one.
    pub header: Option<&'a str>,
}

/// The bucket key of a request under `policy`; the kind is part of the key so that two
/// kinds never share a bucket by accident.
pub fn bucket_key(policy: &Policy, input: &KeyInput<'_>) -> String {
    let (tag, value) = match &policy.key {
        KeyKind::User => ("u:", input.user),
        KeyKind::Company => ("c:", input.company),
        // A caller without a key (Basic) is limited as its user.
        KeyKind::ApiKey => match input.key_id {
            Some(k) => ("k:", k),
            None => ("u:", input.user),
        },
        KeyKind::Ip => ("i:", input.ip.unwrap_or("-")),
        KeyKind::Global => ("g", ""),
        KeyKind::Header(_) => ("h:", input.header.unwrap_or("")),
    };
    let mut key = String::with_capacity(tag.len() + value.len());
    key.push_str(tag);
    key.push_str(value);
    key
}

/// The answer of a check, with what the `RateLimit-*` headers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may go on.
    pub allowed: bool,
    /// The policy's burst, for `RateLimit-Limit`.
    pub limit: u32,
    /// Requests the bucket still takes, for `RateLimit-Remaining`.
    pub remaining: u32,
    /// Until the bucket is empty (allowed) or the next request fits (refused).
    pub reset: Duration,
    /// Refused: how long to wait.
    pub retry_after: Duration,
}

/// Checks and consumes one request of `key` under `policy` atomically.
pub trait RateLimiter: Send + Sync + 'static {
    /// Takes one request of `key`'s bucket if it has room; says what the headers need.
    fn check(&self, policy: &Policy, key: &str) -> Decision;
    /// Gives back the cell of one admitted request (`count = "success"` and the upstream
    /// failed). Never makes a bucket hold more than its burst.
    fn refund(&self, policy: &Policy, key: &str);
    /// Distinct keys currently remembered (for tests and metrics).
    fn keys(&self) -> usize;
}

/// tokio's clock for governor, so limits follow paused and advanced time in tests.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioClock;

/// A tokio instant as governor's reference point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TokioInstant(tokio::time::Instant);

impl Add<Nanos> for TokioInstant {
    type Output = Self;
    fn add(self, rhs: Nanos) -> Self {
        Self(self.0 + Duration::from(rhs))
    }
}

impl Reference for TokioInstant {
    fn duration_since(&self, earlier: Self) -> Nanos {
        self.0.saturating_duration_since(earlier.0).into()
    }

    fn saturating_sub(&self, duration: Nanos) -> Self {
        Self(self.0.checked_sub(duration.into()).unwrap_or(self.0))
    }
}

impl Clock for TokioClock {
    type Instant = TokioInstant;
    fn now(&self) -> TokioInstant {
        TokioInstant(crate::clock::now())
    }
}

/// Governor's keyed state (one theoretical arrival time per key, in nanoseconds since the
/// limiter started) in a map we keep a handle to, so a cell can be given back.
#[derive(Debug, Clone, Default)]
pub struct RefundableStore(Arc<DashMap<String, AtomicU64>>);

impl RefundableStore {
    /// Moves `key`'s arrival time one emission interval earlier. A key already forgotten
    /// (its bucket was full) has nothing to give back.
    pub fn refund(&self, key: &str, interval: Nanos) {
        if let Some(tat) = self.0.get(key) {
            let t = interval.as_u64();
            // The closure never refuses, so the update cannot fail.
            let _ = tat.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                Some(v.saturating_sub(t))
            });
        }
    }
}

impl StateStore for RefundableStore {
    type Key = String;

    fn measure_and_replace<T, F, E>(&self, key: &String, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        fn measure<T, E>(
            cell: &AtomicU64,
            f: impl Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
        ) -> Result<T, E> {
            // As governor's own in-memory state: 0 means "never seen".
            let decide = |v: u64| f((v != 0).then(|| Nanos::from(v)));
            let mut prev = cell.load(Ordering::Acquire);
            loop {
                let (result, next) = decide(prev)?;
                match cell.compare_exchange_weak(
                    prev,
                    next.as_u64(),
                    Ordering::Release,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return Ok(result),
                    Err(now) => prev = now,
                }
            }
        }
        if let Some(cell) = self.0.get(key) {
            return measure(&cell, f);
        }
        let cell = self.0.entry(key.clone()).or_default();
        measure(&cell, f)
    }
}

impl ShrinkableKeyedStateStore<String> for RefundableStore {
    fn retain_recent(&self, drop_below: Nanos) {
        let below = drop_below.as_u64();
        self.0.retain(|_, v| v.load(Ordering::Relaxed) > below);
    }

    fn shrink_to_fit(&self) {
        self.0.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

type Keyed = governor::RateLimiter<String, RefundableStore, TokioClock, StateInformationMiddleware>;

/// Checks between two sweeps of full buckets.
const SWEEP_EVERY: u64 = 8192;

/// The in-process limiter: one keyed GCRA state per policy.
pub struct LocalLimiter {
    by_policy: HashMap<String, (Keyed, RefundableStore), foldhash::fast::RandomState>,
    checks: AtomicU64,
}

impl std::fmt::Debug for LocalLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalLimiter")
            .field("policies", &self.by_policy.len())
            .finish()
    }
}

impl LocalLimiter {
    /// A limiter for `policies`, every bucket empty.
    pub fn new(policies: &Policies) -> Self {
        let by_policy = policies
            .values()
            .map(|p| {
                let quota = Quota::with_period(p.period)
                    .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
                    .allow_burst(NonZeroU32::new(p.burst).unwrap_or(NonZeroU32::MIN));
                let store = RefundableStore::default();
                let limiter: Keyed = governor::RateLimiter::new(quota, store.clone(), TokioClock);
                (p.name.clone(), (limiter, store))
            })
            .collect();
        Self {
            by_policy,
            checks: AtomicU64::new(0),
        }
    }

    /// Forgets keys whose bucket is full again (they behave exactly like new keys).
    pub fn sweep(&self) {
        for (l, _) in self.by_policy.values() {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

impl RateLimiter for LocalLimiter {
    fn check(&self, policy: &Policy, key: &str) -> Decision {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep();
        }
        let Some((l, _)) = self.by_policy.get(&policy.name) else {
            // A policy the limiter was not built with: never block on our own mistake.
            return Decision {
                allowed: true,
                limit: policy.burst,
                remaining: policy.burst,
                reset: Duration::ZERO,
                retry_after: Duration::ZERO,
            };
        };
        // governor wants `&String`: one buffer per thread, so a check allocates nothing
        // (the map copies the key only when it first sees it).
        thread_local! {
            static KEY: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
        }
        let outcome = KEY.with_borrow_mut(|buf| {
            buf.clear();
            buf.push_str(key);
            l.check_key(buf)
        });
        match outcome {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                Decision {
                    allowed: true,
                    limit: policy.burst,
                    remaining,
                    reset: policy.period * (policy.burst - remaining.min(policy.burst)),
                    retry_after: Duration::ZERO,
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(TokioClock.now());
                Decision {
                    allowed: false,
                    limit: policy.burst,
                    remaining: 0,
                    reset: wait,
                    retry_after: wait,
                }
            }
        }
    }

    fn refund(&self, policy: &Policy, key: &str) {
        if let Some((_, store)) = self.by_policy.get(&policy.name) {
            store.refund(key, policy.period.into());
        }
    }

    fn keys(&self) -> usize {
        self.by_policy.values().map(|(l, _)| l.len()).sum()
    }
}

/// Whole seconds, rounded up (`Retry-After`, `RateLimit-Reset`).
pub fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(burst: u32, rate: &str, key: &str) -> Policy {
        Policy::from_config(
            "p",
            &RateLimitConfig {
                burst,
                rate: rate.into(),
                key: key.into(),
                count: None,
            },
        )
        .unwrap()
    }

    fn limiter(p: &Policy) -> LocalLimiter {
        LocalLimiter::new(&Policies::from_iter([(
            "p".to_owned(),
            Arc::new(p.clone()),
        )]))
    }

    #[test]
    fn rates_parse() {
        assert_eq!(parse_rate("5/s").unwrap(), Duration::from_millis(200));
        assert_eq!(parse_rate("300/m").unwrap(), Duration::from_millis(200));
        assert_eq!(parse_rate("1/h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_rate("2/d").unwrap(), Duration::from_secs(43_200));
        for bad in ["5", "0/s", "-1/s", "5/y", "x/s"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_policies_are_refused() {
        let cfg = |burst, key: &str, count: Option<&str>| RateLimitConfig {
            burst,
            rate: "5/s".into(),
            key: key.into(),
            count: count.map(String::from),
        };
        assert!(Policy::from_config("p", &cfg(0, "user", None)).is_err());
        assert!(Policy::from_config("p", &cfg(1, "planet", None)).is_err());
        assert!(Policy::from_config("p", &cfg(1, "header:", None)).is_err());
        assert!(Policy::from_config("p", &cfg(1, "user", Some("some"))).is_err());
        assert_eq!(
            Policy::from_config("p", &cfg(1, "header:X-Tenant", None))
                .unwrap()
                .key,
            KeyKind::Header("x-tenant".into())
        );
    }

    #[test]
    fn keys_never_collide_across_kinds() {
        let input = KeyInput {
            user: "x",
            company: "x",
            key_id: None,
            ip: Some("10.0.0.1"),
            header: Some("x"),
        };
        let keys: Vec<String> = ["user", "company", "ip", "global", "header:h"]
            .iter()
            .map(|k| bucket_key(&policy(1, "1/s", k), &input))
            .collect();
        let mut dedup = keys.clone();
        dedup.dedup();
        assert_eq!(keys.len(), dedup.len());
        assert_eq!(bucket_key(&policy(1, "1/s", "api_key"), &input), "u:x");
    }

    #[tokio::test(start_paused = true)]
    async fn burst_then_the_leak_rate_and_refusals_consume_nothing() {
        let p = policy(20, "5/s", "user");
        let l = limiter(&p);
        let allowed = (0..100).filter(|_| l.check(&p, "u:a").allowed).count();
        assert_eq!(allowed, 20);
        let d = l.check(&p, "u:a");
        assert!(!d.allowed);
        assert_eq!(d.retry_after, Duration::from_millis(200));
        // Refusals did not push the next slot further away.
        tokio::time::advance(Duration::from_millis(200)).await;
        assert!(l.check(&p, "u:a").allowed);
        assert!(!l.check(&p, "u:a").allowed);
        // Another key has its own bucket.
        assert!(l.check(&p, "u:b").allowed);
        // Full buckets are forgotten.
        tokio::time::advance(Duration::from_secs(10)).await;
        l.sweep();
        assert_eq!(l.keys(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refund_undoes_one_admission_and_never_overfills() {
        let p = policy(3, "1/s", "user");
        let l = limiter(&p);
        // Refunds on a bucket that is already full change nothing: still exactly the burst.
        for _ in 0..5 {
            l.refund(&p, "u:a");
        }
        assert_eq!((0..10).filter(|_| l.check(&p, "u:a").allowed).count(), 3);
        // Each refund lets exactly one more through, with no time passing.
        l.refund(&p, "u:a");
        l.refund(&p, "u:a");
        assert_eq!((0..10).filter(|_| l.check(&p, "u:a").allowed).count(), 2);
        // After the bucket leaks empty, refunds of old admissions give nothing extra.
        tokio::time::advance(Duration::from_secs(60)).await;
        for _ in 0..3 {
            l.refund(&p, "u:a");
        }
        assert_eq!((0..10).filter(|_| l.check(&p, "u:a").allowed).count(), 3);
        // A refund for a key never seen is harmless.
        l.refund(&p, "u:never");
        assert_eq!(
            (0..10).filter(|_| l.check(&p, "u:never").allowed).count(),
            3
        );
    }

    #[tokio::test(start_paused = true)]
    async fn refunds_under_concurrency_admit_exactly_budget_plus_refunds() {
        // 64 clients on one key; every admitted request whose id is odd "fails" and refunds.
        let p = policy(20, "5/s", "user");
        let l = std::sync::Arc::new(limiter(&p));
        let kept = std::sync::Arc::new(AtomicU64::new(0));
        let start = crate::clock::now();
        let tasks: Vec<_> = (0..64u64)
            .map(|i| {
                let (l, p, kept) = (l.clone(), p.clone(), kept.clone());
                tokio::spawn(async move {
                    while start.elapsed() < Duration::from_secs(10) {
                        if l.check(&p, "u:one").allowed {
                            if i % 2 == 1 {
                                l.refund(&p, "u:one");
                            } else {
                                kept.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(7)).await;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        // Refunded cells never count: the kept admissions are the bucket's exact budget.
        let n = kept.load(Ordering::Relaxed);
        assert!(
            (69..=71).contains(&n),
            "20 + 5 × 10 = 70 (±1) kept, got {n}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn exact_under_64_concurrent_clients_for_10_seconds() {
        let p = policy(20, "5/s", "user");
        let l = std::sync::Arc::new(limiter(&p));
        let allowed = std::sync::Arc::new(AtomicU64::new(0));
        let start = crate::clock::now();
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let (l, p, allowed) = (l.clone(), p.clone(), allowed.clone());
                tokio::spawn(async move {
                    while start.elapsed() < Duration::from_secs(10) {
                        if l.check(&p, "u:one").allowed {
                            allowed.fetch_add(1, Ordering::Relaxed);
                        }
                        tokio::time::sleep(Duration::from_millis(7)).await;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let n = allowed.load(Ordering::Relaxed);
        assert!((69..=71).contains(&n), "20 + 5 × 10 = 70 (±1), got {n}");
    }
}
