//! `[cluster]`: the Redis that several replicas share their rate limits, quotas,
//! concurrency leases and cache invalidations on (DESIGN §7). Unset `redis_url`: one node
//! on its in-process state.
//!
//! The URL may carry a password (`redis://:secret@host/0`), so `Debug` shows it redacted:
//! a config dumped into a log never carries the credential.

use std::time::Duration;

use serde::Deserialize;

/// What a node does when Redis cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnRedisError {
    /// Refuse limited requests with 503 and `Retry-After` (nothing is sent upstream).
    Deny,
    /// Let them through, counted by this node alone, and raise a warning metric.
    Allow,
}

/// `[cluster]`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// `redis://[:password@]host:port/db` (or `rediss://`); unset: no cluster.
    #[serde(default)]
    pub redis_url: Option<String>,
    /// What limited requests get while Redis is unreachable (default `deny`).
    #[serde(default = "defaults::on_redis_error")]
    pub on_redis_error: OnRedisError,
    /// Prefix of every key and channel this gateway uses (default `rosetta:`), so several
    /// gateways can share one Redis.
    #[serde(default = "defaults::key_prefix")]
    pub key_prefix: String,
    /// How long a concurrency slot outlives a node that stopped renewing it (default 30 s).
    #[serde(default = "defaults::lease", deserialize_with = "super::duration")]
    pub lease: Duration,
    /// The longest a request waits on Redis before the call counts as failed (default
    /// 250 ms).
    #[serde(default = "defaults::timeout", deserialize_with = "super::duration")]
    pub timeout: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            redis_url: None,
            on_redis_error: defaults::on_redis_error(),
            key_prefix: defaults::key_prefix(),
            lease: defaults::lease(),
            timeout: defaults::timeout(),
        }
    }
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("redis_url", &self.redis_url.as_deref().map(redact))
            .field("on_redis_error", &self.on_redis_error)
            .field("key_prefix", &self.key_prefix)
            .field("lease", &self.lease)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// `redis://user:secret@host` → `redis://user:***@host`; a URL without a password as is.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_owned(),
    }
}

impl ClusterConfig {
    /// Checks the section; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(url) = &self.redis_url {
            let scheme = url.split_once("://").map(|(s, _)| s);
            if !matches!(scheme, Some("redis" | "rediss" | "redis+unix" | "unix")) {
                return Err(format!(
                    "cluster.redis_url `{}` must be a redis:// or rediss:// URL",
                    redact(url)
                ));
            }
            if let Err(e) = redis::Client::open(url.as_str()) {
                return Err(format!(
                    "cluster.redis_url `{}` is not a Redis URL: {e}",
                    redact(url)
                ));
            }
        }
        if self.key_prefix.is_empty()
            || self.key_prefix.len() > 64
            || !self
                .key_prefix
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'{' && b != b'}')
        {
            return Err(
                "cluster.key_prefix must be 1 to 64 visible ASCII characters, without braces"
                    .into(),
            );
        }
        if self.lease < Duration::from_secs(1) || self.lease > Duration::from_secs(3600) {
            return Err("cluster.lease must be between 1s and 1h".into());
        }
        if self.timeout < Duration::from_millis(10) || self.timeout > Duration::from_secs(10) {
            return Err("cluster.timeout must be between 10ms and 10s".into());
        }
        Ok(())
    }
}

mod defaults {
    use std::time::Duration;

    pub(super) fn on_redis_error() -> super::OnRedisError {
        super::OnRedisError::Deny
    }
    pub(super) fn key_prefix() -> String {
        "rosetta:".into()
    }
    pub(super) fn lease() -> Duration {
        Duration::from_secs(30)
    }
    pub(super) fn timeout() -> Duration {
        Duration::from_millis(250)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml: &str) -> Result<ClusterConfig, String> {
        let c: ClusterConfig = toml::from_str(toml).map_err(|e| e.to_string())?;
        c.validate().map(|()| c)
    }

    #[test]
    fn defaults_are_one_node_deny_and_a_30s_lease() {
        let c = parse("").unwrap();
        assert!(c.redis_url.is_none());
        assert_eq!(c.on_redis_error, OnRedisError::Deny);
        assert_eq!(c.key_prefix, "rosetta:");
        assert_eq!(c.lease, Duration::from_secs(30));
    }

    #[test]
    fn each_bad_value_is_named() {
        for (toml, names) in [
            ("redis_url = 'http://x'", "cluster.redis_url"),
            ("redis_url = false", "redis_url"),
            ("on_redis_error = 'maybe'", "maybe"),
            ("on_redis_error = false", "on_redis_error"),
            ("key_prefix = ''", "cluster.key_prefix"),
            ("key_prefix = 'a b'", "cluster.key_prefix"),
            ("key_prefix = '{x}'", "cluster.key_prefix"),
            ("lease = '0s'", "cluster.lease"),
            ("lease = 'soon'", "lease"),
            ("timeout = '1ms'", "cluster.timeout"),
            ("nodes = 3", "nodes"),
        ] {
            let e = parse(toml).unwrap_err();
            assert!(e.contains(names), "{toml}: {e}");
        }
    }

    #[test]
    fn the_password_never_reaches_debug() {
        let c = parse("redis_url = 'redis://:hunter2@127.0.0.1:6379/0'").unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("127.0.0.1:6379"), "{shown}");
        assert_eq!(
            redact("redis://u:p@h:1/0"),
            "redis://u:***@h:1/0".to_string()
        );
    }
}
