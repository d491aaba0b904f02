//! Bounds on what failed authentication may cost: [`AuthSettings`], `[identity]` resolved
//! once at load, and [`FailureLimits`], the pre-authentication budgets of failed attempts
//! per username and per client IP.
//!
//! The budgets are GCRA buckets on the rate-limit layer's keyed limiter
//! ([`crate::limits::rate::LocalLimiter`]: governor's algorithm, cells that can be given
//! back, full buckets forgotten periodically so memory follows the recently failing keys).
//! An attempt takes a cell of its IP's and its username's bucket *before* any store lookup
//! or hash; an attempt that succeeds (or that failed for want of room, not for its
//! credentials) gives both back. So only failures spend the budget, and it holds under
//! concurrency: 200 simultaneous guesses for one user get 10 checks, not 200 that all saw a
//! budget not yet spent. A caller whose budget is spent is answered 429 with `Retry-After`,
//! whatever its credentials — a correct password included, until the budget refills.

use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use super::AuthError;
use super::gate::GateSettings;
use crate::config::{FailureLimitConfig, GateConfig, IdentityConfig};
use crate::limits::rate::{KeyKind, LocalLimiter, Policies, Policy, RateLimiter, parse_rate};
use crate::metrics::FailureBudget;

/// The per-user budget's name, in 429 answers and `RateLimit-*` headers.
pub const PER_USER: &str = "identity.failed_per_user";
/// The per-IP budget's name.
pub const PER_IP: &str = "identity.failed_per_ip";

/// Usernames are kept in the per-user buckets up to this many bytes: the admin API takes
/// no longer name, and a longer one (which names nobody) cannot make a bucket key larger.
const USER_KEY_MAX: usize = 256;

/// `[identity]` resolved: every default applied, every value checked.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// Failed attempts per username.
    pub failed_per_user: Policy,
    /// Failed attempts per client IP (IPv6 per /64).
    pub failed_per_ip: Policy,
    /// Password hashes at once.
    pub hashing: GateSettings,
    /// Store lookups at once.
    pub lookups: GateSettings,
    /// How long a failed credential is remembered.
    pub negative_ttl: Duration,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self::from_config(&IdentityConfig::default())
            .unwrap_or_else(|_| unreachable!("the defaults are valid (tested)"))
    }
}

impl AuthSettings {
    /// Resolves `[identity]`; the error names the key at fault.
    pub fn from_config(cfg: &IdentityConfig) -> Result<Self, String> {
        let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        if cfg.negative_ttl.is_zero() {
            return Err("identity.negative_ttl must be more than 0".into());
        }
        Ok(Self {
            failed_per_user: budget(PER_USER, KeyKind::User, &cfg.failed_per_user)?,
            failed_per_ip: budget(PER_IP, KeyKind::Ip, &cfg.failed_per_ip)?,
            hashing: gate(
                "identity.hashing",
                &cfg.hashing,
                cores,
                256,
                Duration::from_secs(2),
            )?,
            lookups: gate(
                "identity.lookups",
                &cfg.lookups,
                16,
                1024,
                Duration::from_secs(1),
            )?,
            negative_ttl: cfg.negative_ttl,
        })
    }
}

fn budget(name: &str, key: KeyKind, cfg: &FailureLimitConfig) -> Result<Policy, String> {
    if cfg.burst == 0 {
        return Err(format!("{name}.burst must be at least 1"));
    }
    Ok(Policy {
        name: name.to_owned(),
        burst: cfg.burst,
        period: parse_rate(&cfg.rate).map_err(|e| format!("{name}: {e}"))?,
        key,
        count_success: false,
    })
}

fn gate(
    name: &str,
    cfg: &GateConfig,
    concurrency: usize,
    queue: usize,
    wait: Duration,
) -> Result<GateSettings, String> {
    let s = GateSettings {
        concurrency: cfg.concurrency.unwrap_or(concurrency),
        queue: cfg.queue.unwrap_or(queue),
        wait: cfg.wait.unwrap_or(wait),
    };
    if s.concurrency == 0 {
        return Err(format!("{name}.concurrency must be at least 1"));
    }
    if s.wait.is_zero() {
        return Err(format!("{name}.wait must be more than 0"));
    }
    Ok(s)
}

/// The budgets of failed attempts; see the module docs.
pub struct FailureLimits {
    limiter: LocalLimiter,
    user: Policy,
    ip: Policy,
}

impl std::fmt::Debug for FailureLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailureLimits")
            .field("user", &self.user)
            .field("ip", &self.ip)
            .finish_non_exhaustive()
    }
}

/// The cells one attempt took, to give back when it did not fail.
#[derive(Debug)]
#[must_use = "an admission is given back on success, or dropped to keep its cells"]
pub struct Admission {
    user: Option<String>,
    ip: Option<String>,
}

impl FailureLimits {
    /// Empty budgets for `settings`.
    pub fn new(settings: &AuthSettings) -> Self {
        let (user, ip) = (
            settings.failed_per_user.clone(),
            settings.failed_per_ip.clone(),
        );
        let policies: Policies = [&user, &ip]
            .into_iter()
            .map(|p| (p.name.clone(), Arc::new(p.clone())))
            .collect();
        Self {
            limiter: LocalLimiter::new(&policies),
            user,
            ip,
        }
    }

    /// Takes a cell of `ip`'s and of `user`'s budget, or refuses the attempt (a 429 naming
    /// the budget) without taking any.
    pub fn admit(&self, user: Option<&str>, ip: Option<IpAddr>) -> Result<Admission, AuthError> {
        let ip = ip.map(ip_key);
        if let Some(key) = &ip {
            let d = self.limiter.check(&self.ip, key);
            if !d.allowed {
                return Err(refused(&self.ip, FailureBudget::Ip, d.retry_after));
            }
        }
        let user = user.map(user_key);
        if let Some(key) = &user {
            let d = self.limiter.check(&self.user, key);
            if !d.allowed {
                // Refused: the attempt spends nothing, not even the IP's cell.
                if let Some(ip) = &ip {
                    self.limiter.refund(&self.ip, ip);
                }
                return Err(refused(&self.user, FailureBudget::User, d.retry_after));
            }
        }
        Ok(Admission { user, ip })
    }

    /// Gives back the cells of an attempt that did not fail.
    pub fn give_back(&self, admission: Admission) {
        if let Some(key) = &admission.user {
            self.limiter.refund(&self.user, key);
        }
        if let Some(key) = &admission.ip {
            self.limiter.refund(&self.ip, key);
        }
    }

    /// Forgets the keys whose budget is whole again.
    pub fn sweep(&self) {
        self.limiter.sweep();
    }

    /// Keys remembered (tests, metrics).
    pub fn keys(&self) -> usize {
        self.limiter.keys()
    }
}

fn refused(policy: &Policy, budget: FailureBudget, retry_after: Duration) -> AuthError {
    crate::metrics::auth_refused(budget);
    AuthError::TooManyFailures {
        budget: match budget {
            FailureBudget::User => PER_USER,
            FailureBudget::Ip => PER_IP,
        },
        burst: policy.burst,
        retry_after,
    }
}

fn user_key(user: &str) -> String {
    let mut end = user.len().min(USER_KEY_MAX);
    while !user.is_char_boundary(end) {
        end -= 1;
    }
    let mut key = String::with_capacity(end + 2);
    key.push_str("u:");
    key.push_str(&user[..end]);
    key
}

/// An IPv4 address as is; an IPv6 address by its /64, the block one host is usually given
/// (counting each of its 2^64 addresses apart would give one client endless budgets).
fn ip_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("i:{v4}"),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("i:{v4}"),
            None => {
                let s = v6.segments();
                format!("i:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(user: (u32, &str), ip: (u32, &str)) -> FailureLimits {
        let cfg = IdentityConfig {
            failed_per_user: FailureLimitConfig {
                burst: user.0,
                rate: user.1.into(),
            },
            failed_per_ip: FailureLimitConfig {
                burst: ip.0,
                rate: ip.1.into(),
            },
            ..IdentityConfig::default()
        };
        FailureLimits::new(&AuthSettings::from_config(&cfg).unwrap())
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn the_defaults_resolve() {
        let s = AuthSettings::default();
        assert_eq!((s.failed_per_user.burst, s.failed_per_ip.burst), (10, 100));
        assert_eq!(s.failed_per_user.period, Duration::from_secs(1));
        assert_eq!(s.failed_per_ip.period, Duration::from_millis(50));
        assert!(s.hashing.concurrency >= 1);
        assert_eq!(s.hashing.wait, Duration::from_secs(2));
    }

    #[test]
    fn bad_settings_name_their_key() {
        let mut cfg = IdentityConfig::default();
        cfg.failed_per_user.burst = 0;
        let e = AuthSettings::from_config(&cfg).unwrap_err();
        assert!(e.contains("identity.failed_per_user.burst"), "{e}");
        let mut cfg = IdentityConfig::default();
        cfg.failed_per_ip.rate = "20/fortnight".into();
        let e = AuthSettings::from_config(&cfg).unwrap_err();
        assert!(e.starts_with("identity.failed_per_ip"), "{e}");
        let mut cfg = IdentityConfig::default();
        cfg.hashing.concurrency = Some(0);
        let e = AuthSettings::from_config(&cfg).unwrap_err();
        assert!(e.contains("identity.hashing.concurrency"), "{e}");
    }

    #[tokio::test(start_paused = true)]
    async fn only_failures_spend_and_a_spent_user_is_refused_until_it_refills() {
        let l = limits((10, "1/s"), (1000, "100/s"));
        // Successes give their cells back: any number of them.
        for _ in 0..50 {
            let a = l.admit(Some("ann"), ip("10.0.0.1")).unwrap();
            l.give_back(a);
        }
        // Ten failures are the burst; the eleventh attempt is refused before any check.
        for _ in 0..10 {
            drop(l.admit(Some("ann"), ip("10.0.0.1")).unwrap());
        }
        let e = l.admit(Some("ann"), ip("10.0.0.1")).unwrap_err();
        match e {
            AuthError::TooManyFailures {
                budget,
                burst,
                retry_after,
            } => {
                assert_eq!((budget, burst), (PER_USER, 10));
                assert_eq!(retry_after, Duration::from_secs(1));
            }
            other => panic!("{other:?}"),
        }
        // Another user is not affected.
        assert!(l.admit(Some("bob"), ip("10.0.0.1")).is_ok());
        // One second refills one attempt, and only one.
        tokio::time::advance(Duration::from_secs(1)).await;
        drop(l.admit(Some("ann"), ip("10.0.0.1")).unwrap());
        assert!(l.admit(Some("ann"), ip("10.0.0.1")).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_spent_ip_is_refused_for_every_user_and_user_refusals_spend_no_ip_cell() {
        let l = limits((2, "1/m"), (5, "1/s"));
        // Refusals for a spent user do not eat into the IP's budget.
        for _ in 0..2 {
            drop(l.admit(Some("ann"), ip("10.0.0.9")).unwrap());
        }
        for _ in 0..20 {
            assert!(l.admit(Some("ann"), ip("10.0.0.9")).is_err());
        }
        for i in 0..3 {
            drop(l.admit(Some(&format!("u{i}")), ip("10.0.0.9")).unwrap());
        }
        match l.admit(Some("zed"), ip("10.0.0.9")) {
            Err(AuthError::TooManyFailures { budget, .. }) => assert_eq!(budget, PER_IP),
            other => panic!("{other:?}"),
        }
        // Another IP, and an attempt with no username (a bad key), have their own budgets.
        assert!(l.admit(Some("zed"), ip("10.0.0.10")).is_ok());
        assert!(l.admit(None, ip("10.0.0.11")).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn ipv6_counts_per_64_and_memory_follows_recent_failures() {
        let l = limits((1000, "1/s"), (2, "1/s"));
        drop(l.admit(None, ip("2001:db8:1:2::1")).unwrap());
        drop(l.admit(None, ip("2001:db8:1:2::ffff")).unwrap());
        assert!(l.admit(None, ip("2001:db8:1:2:abcd::1")).is_err());
        assert!(l.admit(None, ip("2001:db8:1:3::1")).is_ok());
        for i in 0..500 {
            drop(l.admit(Some(&format!("user{i}")), None).unwrap());
        }
        assert!(l.keys() >= 500);
        // Once every bucket is whole again, the keys are forgotten.
        tokio::time::advance(Duration::from_secs(5)).await;
        l.sweep();
        assert_eq!(l.keys(), 0);
    }

    #[test]
    fn long_names_make_bounded_keys() {
        let long = "é".repeat(1000);
        let k = user_key(&long);
        assert!(k.len() <= USER_KEY_MAX + 2);
        assert_eq!(ip_key("::ffff:10.1.2.3".parse().unwrap()), "i:10.1.2.3");
    }
}
