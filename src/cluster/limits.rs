//! A request's limit work on Redis: its rate-limit cell, its quota points and its
//! concurrency lease, checked and taken by one Lua script in one round trip, on Redis's
//! clock (`TIME`), so replicas share one bucket, one day's points and one set of slots, and
//! their own clocks do not matter.
//!
//! The algorithms are the in-process ones: GCRA for the bucket (one arrival time per key,
//! in µs), counters for the day and the dated window (started from the audit trail when
//! Redis does not hold them, so a lost Redis does not hand out a fresh budget), and for
//! concurrency a sorted set of leases scored by expiry, renewed by the node while the request
//! runs: a node that dies holding slots frees them when their lease runs out, never later.
//!
//! What an admitted request holds ([`Held`]) is given back when it is dropped, by a second
//! script sent off the request's path: the answer is not delayed by it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use redis::Script;

use super::link::{Link, LinkError};
use crate::config::{ClusterConfig, OnRedisError};
use crate::limits::quota::{Limits, Refusal, Remaining, UsageKey};
use crate::limits::rate::{Decision, Policy};

/// The scripts, hashed once (redis-rs sends `EVALSHA`, and the source on `NOSCRIPT`).
struct Scripts {
    limit: Script,
    release: Script,
    renew: Script,
}

/// Leases this node holds, renewed by its renewal task: id → (lease set, member).
type Leases = Mutex<HashMap<u64, (Arc<str>, Arc<str>), foldhash::fast::RandomState>>;

struct Shared {
    link: Link,
    prefix: Box<str>,
    lease: Duration,
    on_error: OnRedisError,
    /// Random per process: lease members of two nodes never collide.
    node: Box<str>,
    seq: AtomicU64,
    leases: Leases,
    scripts: Scripts,
}

/// The cluster's limits; cheap to clone.
#[derive(Clone)]
pub struct SharedLimits(Arc<Shared>);

impl std::fmt::Debug for SharedLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLimits")
            .field("link", &self.0.link)
            .field("node", &self.0.node)
            .finish()
    }
}

/// The rate-limit part of a request's work.
#[derive(Debug, Clone, Copy)]
pub struct RateAsk<'a> {
    /// The route's policy.
    pub policy: &'a Policy,
    /// The request's bucket under it (`limits::rate::bucket_key`).
    pub bucket: &'a str,
}

/// The quota part of a request's work.
#[derive(Debug, Clone, Copy)]
pub struct QuotaAsk<'a> {
    /// User, service, method group.
    pub key: &'a UsageKey,
    /// The user's local day, `YYYY-MM-DD`.
    pub today: &'a str,
    /// The dated window containing today, when one limits points.
    pub window: Option<&'a (String, String)>,
    /// The limits that apply.
    pub limits: &'a Limits,
    /// The request's price in points.
    pub cost: u64,
    /// How long the day's counter must outlive now (until the day is over, and a margin
    /// for settlements of requests that started before midnight).
    pub day_ttl: Duration,
    /// The same for the window's counter.
    pub window_ttl: Duration,
    /// The usage so far `(day, window)` read from the store, when Redis asked for it.
    pub seed: Option<(u64, u64)>,
}

/// The answer of one check.
#[derive(Debug)]
pub enum Verdict {
    /// Everything asked for was taken (boxed: what it holds is most of the verdict's size).
    Admitted(Box<Admission>),
    /// The bucket is full; nothing was taken.
    RateRefused {
        /// Until the next request fits.
        retry_after: Duration,
    },
    /// A quota refuses (the rate cell, when asked, is taken, as on one node).
    QuotaRefused(Refusal),
    /// Redis holds no counter for the day or the window: read the usage so far from the
    /// store and ask again with [`QuotaAsk::seed`]. Nothing was taken.
    NeedsSeed,
}

/// An admitted request: what its headers say, and what it holds.
#[derive(Debug)]
pub struct Admission {
    /// The bucket's state after this request, when a policy applies.
    pub rate: Option<Decision>,
    /// Points left, when quotas apply.
    pub remaining: Remaining,
    /// Given back when dropped.
    pub held: Held,
}

/// Milliseconds are too coarse for fast policies and nanoseconds since the epoch too
/// large for Lua's doubles: the scripts count in µs (a µs interval is at least 1).
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// A limit that does not apply is -1 to the script.
fn limit(v: Option<u64>) -> i64 {
    v.map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX))
}

fn secs(d: Duration) -> u64 {
    d.as_secs().max(1)
}

/// The keys of a request's work: bucket, day, window, leases. A part not asked for still
/// gets a key (the script takes four), which it never touches.
pub fn keys(prefix: &str, rate: Option<&RateAsk<'_>>, quota: Option<&QuotaAsk<'_>>) -> [String; 4] {
    let bucket = rate.map_or_else(
        || format!("{prefix}rl:-"),
        |r| format!("{prefix}rl:{}:{}", r.policy.name, r.bucket),
    );
    // The user last: services and groups come from the packs, the user name from anyone,
    // so nothing a user is called can make its key another user's.
    let (day, window, leases) = match quota {
        Some(q) => {
            let (user, service, group) = q.key;
            let window = match q.window {
                Some((from, to)) => format!("{prefix}q:{service}:{group}:w:{from}:{to}:{user}"),
                None => format!("{prefix}q:-"),
            };
            (
                format!("{prefix}q:{service}:{group}:d:{}:{user}", q.today),
                window,
                format!("{prefix}c:{service}:{group}:{user}"),
            )
        }
        None => (
            format!("{prefix}q:-"),
            format!("{prefix}q:-"),
            format!("{prefix}c:-"),
        ),
    };
    [bucket, day, window, leases]
}

/// Reads the limit script's answer (see `lua/limit.lua`).
fn verdict(
    answer: &[i64],
    rate: Option<&RateAsk<'_>>,
    quota: Option<&QuotaAsk<'_>>,
) -> Result<Verdict, Refused> {
    let at = |i: usize| answer.get(i).copied().ok_or(Refused(answer.len()));
    let us = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
    let n = |v: i64| u64::try_from(v).unwrap_or(0);
    match at(0)? {
        0 => {
            // A short answer is another script's: refused, never read as zeros.
            let (remaining, reset, day, window) = (at(1)?, at(2)?, at(3)?, at(4)?);
            let decision = rate.map(|r| Decision {
                allowed: true,
                limit: r.policy.burst,
                remaining: u32::try_from(n(remaining)).unwrap_or(u32::MAX),
                reset: us(reset),
                retry_after: Duration::ZERO,
            });
            let left = |v: i64| (v >= 0).then(|| n(v));
            Ok(Verdict::Admitted(Box::new(Admission {
                rate: decision,
                remaining: Remaining {
                    day: quota.and_then(|_| left(day)),
                    window: quota.and_then(|_| left(window)),
                },
                // Filled in by the caller, which knows the keys.
                held: Held::none(),
            })))
        }
        1 => Ok(Verdict::RateRefused {
            retry_after: us(at(1)?),
        }),
        2 => {
            let (a, b) = (n(at(2)?), n(at(3)?));
            Ok(Verdict::QuotaRefused(match at(1)? {
                1 => Refusal::PerRequest { cost: a, limit: b },
                2 => Refusal::PerDay { limit: a, used: b },
                3 => Refusal::Window {
                    limit: a,
                    used: b,
                    to: quota
                        .and_then(|q| q.window)
                        .map(|(_, to)| to.clone())
                        .unwrap_or_default(),
                },
                4 => Refusal::Concurrency { limit: a },
                other => return Err(Refused(usize::try_from(other).unwrap_or(0))),
            }))
        }
        3 => Ok(Verdict::NeedsSeed),
        other => Err(Refused(usize::try_from(other).unwrap_or(0))),
    }
}

/// The script answered something it never answers: a script of another version.
#[derive(Debug)]
struct Refused(usize);

impl SharedLimits {
    /// The limits on `link`, with `cfg`'s prefix and lease; starts the task renewing this
    /// node's leases (it ends when the last handle is dropped). Inside the runtime.
    pub fn new(link: Link, cfg: &ClusterConfig) -> Self {
        let node = format!("{:016x}", rand::random::<u64>());
        let shared = Arc::new(Shared {
            link,
            prefix: cfg.key_prefix.clone().into_boxed_str(),
            lease: cfg.lease,
            on_error: cfg.on_redis_error,
            node: node.into_boxed_str(),
            seq: AtomicU64::new(0),
            leases: Mutex::default(),
            scripts: Scripts {
                limit: Script::new(include_str!("lua/limit.lua")),
                release: Script::new(include_str!("lua/release.lua")),
                renew: Script::new(include_str!("lua/renew.lua")),
            },
        });
        tokio::spawn(renew(Arc::downgrade(&shared)));
        Self(shared)
    }

    /// What to do when Redis does not answer.
    pub fn on_error(&self) -> OnRedisError {
        self.0.on_error
    }

    /// The connection, for `/health`.
    pub fn link(&self) -> &Link {
        &self.0.link
    }

    /// Leases this node holds now.
    pub fn leases_held(&self) -> usize {
        self.0.leases.lock().len()
    }

    /// Checks and takes the request's work in one round trip.
    pub async fn check(
        &self,
        rate: Option<RateAsk<'_>>,
        quota: Option<QuotaAsk<'_>>,
    ) -> Result<Verdict, LinkError> {
        let s = &*self.0;
        let keys = keys(&s.prefix, rate.as_ref(), quota.as_ref());
        let interval = rate.map_or(1, |r| micros(r.policy.period));
        let lease_ms = u64::try_from(s.lease.as_millis()).unwrap_or(u64::MAX);
        let conc = quota.and_then(|q| q.limits.max_concurrent);
        let member = match conc {
            Some(_) => format!("{}:{}", s.node, s.seq.fetch_add(1, Ordering::Relaxed)),
            None => String::new(),
        };
        let (seeded, day_seed, window_seed) = match quota.and_then(|q| q.seed) {
            Some((d, w)) => (1, d, w),
            None => (0, 0, 0),
        };
        let q = quota.as_ref();
        let window_limit = q.and_then(|q| q.window.and(q.limits.window.as_ref().map(|w| w.2)));
        let mut inv = s.scripts.limit.prepare_invoke();
        for k in &keys {
            inv.key(k.as_str());
        }
        inv.arg(u8::from(rate.is_some()))
            .arg(rate.map_or(0, |r| r.policy.burst))
            .arg(interval)
            .arg(q.map_or(0, |q| q.cost))
            .arg(limit(q.and_then(|q| q.limits.per_request)))
            .arg(limit(q.and_then(|q| q.limits.per_day)))
            .arg(q.map_or(1, |q| secs(q.day_ttl)))
            .arg(limit(window_limit))
            .arg(q.map_or(1, |q| secs(q.window_ttl)))
            .arg(limit(conc))
            .arg(lease_ms)
            .arg(member.as_str())
            .arg(seeded)
            .arg(day_seed)
            .arg(window_seed);
        let answer: Vec<i64> = s.link.run(&inv).await?;
        drop(inv);
        let mut v = verdict(&answer, rate.as_ref(), q).map_err(|Refused(what)| {
            LinkError::Script(format!("the limit script answered {answer:?} ({what})"))
        })?;
        if let Verdict::Admitted(a) = &mut v {
            let lease = conc.map(|_| {
                let id = s.seq.fetch_add(1, Ordering::Relaxed);
                let member: Arc<str> = member.into();
                s.leases
                    .lock()
                    .insert(id, (keys[3].as_str().into(), member.clone()));
                (id, member)
            });
            a.held = Held {
                limits: Some(self.clone()),
                keys,
                interval_us: interval,
                cost: q.map_or(0, |q| q.cost),
                counted: (
                    q.is_some_and(|q| q.limits.per_day.is_some()),
                    window_limit.is_some(),
                ),
                rate: rate.is_some(),
                lease,
                actual: None,
                refund_rate: false,
                refund_points: false,
            };
        }
        Ok(v)
    }
}

/// What an admitted request holds on Redis: given back, settled and released when dropped
/// (a client that went away still held its slot until then).
#[derive(Debug)]
pub struct Held {
    limits: Option<SharedLimits>,
    keys: [String; 4],
    interval_us: u64,
    cost: u64,
    /// Whether the day and the window count points.
    counted: (bool, bool),
    rate: bool,
    lease: Option<(u64, Arc<str>)>,
    actual: Option<u64>,
    refund_rate: bool,
    refund_points: bool,
}

impl Held {
    fn none() -> Self {
        Self {
            limits: None,
            keys: Default::default(),
            interval_us: 1,
            cost: 0,
            counted: (false, false),
            rate: false,
            lease: None,
            actual: None,
            refund_rate: false,
            refund_points: false,
        }
    }

    /// The request cost `actual` points, not the price reserved.
    pub fn settle(&mut self, actual: u64) {
        self.actual = Some(actual);
    }

    /// Gives back the rate cell and/or the points (`count = "success"`, upstream failed).
    pub fn refund(&mut self, rate: bool, points: bool) {
        self.refund_rate = rate;
        self.refund_points = points;
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let Some(limits) = self.limits.take() else {
            return;
        };
        let member = match self.lease.take() {
            Some((id, member)) => {
                limits.0.leases.lock().remove(&id);
                member.to_string()
            }
            None => String::new(),
        };
        let spent = self.actual.unwrap_or(self.cost);
        let delta = if self.refund_points {
            -i64::try_from(self.cost).unwrap_or(i64::MAX)
        } else {
            i64::try_from(spent).unwrap_or(i64::MAX) - i64::try_from(self.cost).unwrap_or(0)
        };
        let (day, window) = (
            if self.counted.0 { delta } else { 0 },
            if self.counted.1 { delta } else { 0 },
        );
        let refund_rate = self.rate && self.refund_rate;
        if !refund_rate && day == 0 && window == 0 && member.is_empty() {
            return;
        }
        let keys = std::mem::take(&mut self.keys);
        let interval = self.interval_us;
        // Off the request's path; without a runtime (the process is ending) the lease runs
        // out by itself and a refund is lost, as a killed node's would be.
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            let s = &*limits.0;
            let mut inv = s.scripts.release.prepare_invoke();
            for k in &keys {
                inv.key(k.as_str());
            }
            inv.arg(u8::from(refund_rate))
                .arg(interval)
                .arg(day)
                .arg(window)
                .arg(member.as_str());
            if let Err(e) = s.link.run::<i64>(&inv).await {
                // The lease expires by itself; points not given back stay spent.
                tracing::warn!(error = %e, "releasing a request's shared limits failed");
                crate::metrics::cluster_release_failed();
            }
        });
    }
}

/// Renews this node's leases every third of the lease, until the limits are dropped.
async fn renew(shared: Weak<Shared>) {
    let every = match shared.upgrade() {
        Some(s) => s.lease / 3,
        None => return,
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(s) = shared.upgrade() else { return };
        let held: Vec<(Arc<str>, Arc<str>)> = s.leases.lock().values().cloned().collect();
        let lease_ms = u64::try_from(s.lease.as_millis()).unwrap_or(u64::MAX);
        // Bounded scripts: a node with many requests in flight renews them in slices.
        for chunk in held.chunks(512) {
            let mut inv = s.scripts.renew.prepare_invoke();
            inv.arg(lease_ms);
            for (key, member) in chunk {
                inv.key(&**key).arg(&**member);
            }
            if let Err(e) = s.link.run::<i64>(&inv).await {
                tracing::warn!(error = %e, leases = chunk.len(), "renewing concurrency leases failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            name: "default".into(),
            burst: 20,
            period: Duration::from_millis(200),
            key: crate::limits::rate::KeyKind::User,
            count_success: true,
        }
    }

    #[test]
    fn keys_put_the_user_last_and_keep_kinds_apart() {
        let p = policy();
        let key: UsageKey = ("ann:x".into(), "REDAPI_V1".into(), "READ".into());
        let limits = Limits::default();
        let window = ("2026-01-01".to_string(), "2026-12-31".to_string());
        let q = QuotaAsk {
            key: &key,
            today: "2026-12-06",
            window: Some(&window),
            limits: &limits,
            cost: 1,
            day_ttl: Duration::from_secs(10),
            window_ttl: Duration::from_secs(10),
            seed: None,
        };
        let r = RateAsk {
            policy: &p,
            bucket: "u:ann",
        };
        let k = keys("rosetta:", Some(&r), Some(&q));
        assert_eq!(k[0], "rosetta:rl:default:u:ann");
        assert_eq!(k[1], "rosetta:q:REDAPI_V1:READ:d:2026-12-06:ann:x");
        assert_eq!(
            k[2],
            "rosetta:q:REDAPI_V1:READ:w:2026-01-01:2026-12-31:ann:x"
        );
        assert_eq!(k[3], "rosetta:c:REDAPI_V1:READ:ann:x");
        let none = keys("p:", None, None);
        assert_eq!(
            none,
            ["p:rl:-", "p:q:-", "p:q:-", "p:c:-"].map(String::from)
        );
    }

    #[test]
    fn every_answer_of_the_script_is_read_and_nothing_else_is() {
        let p = policy();
        let r = RateAsk {
            policy: &p,
            bucket: "u:ann",
        };
        match verdict(&[0, 19, 200_000, -1, -1], Some(&r), None) {
            Ok(Verdict::Admitted(a)) => {
                let d = a.rate.unwrap();
                assert_eq!((d.limit, d.remaining), (20, 19));
                assert_eq!(d.reset, Duration::from_millis(200));
                assert_eq!(a.remaining, Remaining::default());
            }
            other => panic!("{other:?}"),
        }
        match verdict(&[1, 150_000], Some(&r), None) {
            Ok(Verdict::RateRefused { retry_after }) => {
                assert_eq!(retry_after, Duration::from_millis(150));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            verdict(&[2, 2, 100, 100], None, None),
            Ok(Verdict::QuotaRefused(Refusal::PerDay {
                limit: 100,
                used: 100
            }))
        ));
        assert!(matches!(
            verdict(&[2, 4, 5, 0], None, None),
            Ok(Verdict::QuotaRefused(Refusal::Concurrency { limit: 5 }))
        ));
        assert!(matches!(verdict(&[3], None, None), Ok(Verdict::NeedsSeed)));
        for bad in [&[][..], &[7], &[1], &[2, 9, 1, 1], &[2, 1], &[0, 19]] {
            assert!(verdict(bad, None, None).is_err(), "{bad:?}");
        }
    }
}
