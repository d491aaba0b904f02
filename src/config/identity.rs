//! `[identity]`: API keys declared in the file, and the bounds on the work a caller can make
//! authentication do (failed attempts per user and per client IP, password hashes and store
//! lookups at once, how long a failure is remembered).
//!
//! Defaults are chosen here and resolved once by [`crate::identity::AuthSettings`]: a
//! value out of range is a load error naming its key.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// `[identity]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// API keys declared in the file.
    #[serde(default)]
    pub static_keys: Vec<StaticKeyConfig>,
    /// Failed authentications a username may make (default a burst of 10, one more per
    /// second); past it the username is answered 429 before any check.
    #[serde(default = "defaults::failed_per_user")]
    pub failed_per_user: FailureLimitConfig,
    /// Failed authentications a client IP may make (default a burst of 100, 20 more per
    /// second; IPv6 counted per /64).
    #[serde(default = "defaults::failed_per_ip")]
    pub failed_per_ip: FailureLimitConfig,
    /// Password hashes (argon2id, 19 MiB each) verified at once: `concurrency` (default the
    /// number of cores), `queue` waiting at most (default 256), each at most `wait` (default
    /// 2 s); past either, 503.
    #[serde(default)]
    pub hashing: GateConfig,
    /// Credential lookups queued on the store at once: `concurrency` (default 16), `queue`
    /// (default 1024), `wait` (default 1 s); past either, 503.
    #[serde(default)]
    pub lookups: GateConfig,
    /// How long a failed credential (wrong password, unknown key) is answered from memory
    /// without a hash or a lookup (default 5 s).
    #[serde(
        default = "defaults::negative_ttl",
        deserialize_with = "super::duration"
    )]
    pub negative_ttl: Duration,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            static_keys: Vec::new(),
            failed_per_user: defaults::failed_per_user(),
            failed_per_ip: defaults::failed_per_ip(),
            hashing: GateConfig::default(),
            lookups: GateConfig::default(),
            negative_ttl: defaults::negative_ttl(),
        }
    }
}

/// One `[[identity.static_keys]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticKeyConfig {
    /// Hex SHA-256 of the key: the file never holds the key itself.
    pub sha256: String,
    /// The caller's username.
    pub user: String,
    /// The caller's company key (the upstream company's external id).
    pub company: String,
    /// The caller's roles (`ADMIN`, `PARTNER`, `USER`, `AUDITOR`).
    #[serde(default)]
    pub roles: Vec<String>,
}

/// A budget of failed attempts: `{ burst = 10, rate = "1/s" }`, written as `[rate_limits]`
/// policies are (GCRA: `burst` failures at once, then one more per `1/rate`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailureLimitConfig {
    /// Failures allowed at once.
    pub burst: u32,
    /// `"1/s"`, `"20/s"`, `"60/m"`: how fast the budget refills.
    pub rate: String,
}

/// A bound on concurrent work with a bounded, timed wait; unset keys take the gate's own
/// default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateConfig {
    /// Pieces of work at once.
    #[serde(default)]
    pub concurrency: Option<usize>,
    /// Callers waiting for a turn at most; beyond, refused at once.
    #[serde(default)]
    pub queue: Option<usize>,
    /// How long a caller waits for its turn at most.
    #[serde(default, deserialize_with = "opt_duration")]
    pub wait: Option<Duration>,
}

fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s = Option::<String>::deserialize(d)?;
    s.map(|s| humantime::parse_duration(&s).map_err(serde::de::Error::custom))
        .transpose()
}

impl IdentityConfig {
    /// Every key checked: static key digests, then the limits as they will be resolved.
    pub(super) fn validate(&self) -> Result<(), String> {
        for (i, key) in self.static_keys.iter().enumerate() {
            if key.sha256.len() != 64 || hex::decode(&key.sha256).is_err() {
                return Err(format!(
                    "identity.static_keys[{i}].sha256 must be 64 hex digits"
                ));
            }
        }
        crate::identity::AuthSettings::from_config(self).map(drop)
    }
}

mod defaults {
    use std::time::Duration;

    use super::FailureLimitConfig;

    pub(super) fn failed_per_user() -> FailureLimitConfig {
        FailureLimitConfig {
            burst: 10,
            rate: "1/s".into(),
        }
    }
    pub(super) fn failed_per_ip() -> FailureLimitConfig {
        FailureLimitConfig {
            burst: 100,
            rate: "20/s".into(),
        }
    }
    pub(super) fn negative_ttl() -> Duration {
        Duration::from_secs(5)
    }
}
