//! Rate-limit policies: `[rate_limits.NAME]` with `burst`, `rate` and `key`, checked with
//! governor's keyed GCRA limiter.
//!
//! GCRA is the leaky bucket expressed as one timestamp per key ("theoretical arrival time"),
//! updated by compare-and-swap: a check and its consumption are one atomic step, so no
//! concurrency lets more through than the bucket holds, and a refused request consumes
//! nothing. Time comes from tokio's clock ([`TokioClock`]), so tests pause and advance it.
//! Keys whose bucket is full again are forgotten periodically: memory follows the number of
//! recently active keys, not every key ever seen.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::ops::Add;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::Quota;
use governor::clock::{Clock, Reference};
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DashMapStateStore;

use crate::config::RateLimitConfig;

/// Whose bucket a request draws from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKind {
    User,
    Company,
    ApiKey,
    Ip,
    Global,
    /// The value of a request header (a missing header shares one bucket).
    Header(String),
}

/// A compiled policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub name: String,
    pub burst: u32,
    /// Time to leak one request.
    pub period: Duration,
    pub key: KeyKind,
    /// `count = "success"` (the default): quota points of routes under this policy are given
    /// back when the upstream fails (5xx) or times out; `"all"` keeps them.
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

/// Compiles every configured policy.
pub fn policies(
    cfg: &std::collections::BTreeMap<String, RateLimitConfig>,
) -> Result<HashMap<String, Policy>, String> {
    cfg.iter()
        .map(|(name, c)| Policy::from_config(name, c).map(|p| (name.clone(), p)))
        .collect()
}

/// What a request is known by, for choosing its bucket.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyInput<'a> {
    pub user: &'a str,
    pub company: &'a str,
    pub key_id: Option<&'a str>,
    pub ip: Option<&'a str>,
    /// The value of the policy's header, when it has one.
    pub header: Option<&'a str>,
}

/// The bucket key of a request under `policy`; the kind is part of the key so that two
/// kinds never share a bucket by accident.
pub fn bucket_key(policy: &Policy, input: &KeyInput<'_>) -> String {
    match &policy.key {
        KeyKind::User => format!("u:{}", input.user),
        KeyKind::Company => format!("c:{}", input.company),
        // A caller without a key (Basic) is limited as its user.
        KeyKind::ApiKey => match input.key_id {
            Some(k) => format!("k:{k}"),
            None => format!("u:{}", input.user),
        },
        KeyKind::Ip => format!("i:{}", input.ip.unwrap_or("-")),
        KeyKind::Global => "g".to_owned(),
        KeyKind::Header(_) => format!("h:{}", input.header.unwrap_or("")),
    }
}

/// The answer of a check, with what the `RateLimit-*` headers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Until the bucket is empty (allowed) or the next request fits (refused).
    pub reset: Duration,
    /// Refused: how long to wait.
    pub retry_after: Duration,
}

/// Checks and consumes one request of `key` under `policy` atomically.
pub trait RateLimiter: Send + Sync + 'static {
    fn check(&self, policy: &Policy, key: &str) -> Decision;
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
        TokioInstant(tokio::time::Instant::now())
    }
}

type Keyed = governor::RateLimiter<
    String,
    DashMapStateStore<String>,
    TokioClock,
    StateInformationMiddleware,
>;

/// Checks between two sweeps of full buckets.
const SWEEP_EVERY: u64 = 8192;

/// The in-process limiter: one keyed GCRA state per policy.
pub struct LocalLimiter {
    by_policy: HashMap<String, Keyed>,
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
    pub fn new(policies: &HashMap<String, Policy>) -> Self {
        let by_policy = policies
            .values()
            .map(|p| {
                let quota = Quota::with_period(p.period)
                    .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
                    .allow_burst(NonZeroU32::new(p.burst).unwrap_or(NonZeroU32::MIN));
                let limiter = governor::RateLimiter::dashmap_with_clock(quota, TokioClock)
                    .with_middleware::<StateInformationMiddleware>();
                (p.name.clone(), limiter)
            })
            .collect();
        Self {
            by_policy,
            checks: AtomicU64::new(0),
        }
    }

    /// Forgets keys whose bucket is full again (they behave exactly like new keys).
    pub fn sweep(&self) {
        for l in self.by_policy.values() {
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
        let Some(l) = self.by_policy.get(&policy.name) else {
            // A policy the limiter was not built with: never block on our own mistake.
            return Decision {
                allowed: true,
                limit: policy.burst,
                remaining: policy.burst,
                reset: Duration::ZERO,
                retry_after: Duration::ZERO,
            };
        };
        match l.check_key(&key.to_owned()) {
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

    fn keys(&self) -> usize {
        self.by_policy.values().map(|l| l.len()).sum()
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
        let l = LocalLimiter::new(&HashMap::from([("p".to_owned(), p.clone())]));
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
    async fn exact_under_64_concurrent_clients_for_10_seconds() {
        let p = policy(20, "5/s", "user");
        let l = std::sync::Arc::new(LocalLimiter::new(&HashMap::from([(
            "p".to_owned(),
            p.clone(),
        )])));
        let allowed = std::sync::Arc::new(AtomicU64::new(0));
        let start = tokio::time::Instant::now();
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
