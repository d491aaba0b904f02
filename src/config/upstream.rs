//! `[upstreams.NAME]`: where a backend is, how it is reached (TLS, pool, timeouts), how
//! much of it one gateway may hold (in-flight calls, the circuit breaker) and how Rosetta
//! authenticates to it.
//!
//! Checked once at load ([`check`]): an `http://` or `https://` URL, TLS settings only where
//! something speaks TLS, a client certificate with its key, and no upstream credential sent
//! in clear over the network unless the upstream says `allow_insecure_auth = true`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, duration};

/// One upstream backend.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Base URL, e.g. `http://127.0.0.1:7001` or `https://api.example.com/v2`; paths in
    /// packs are appended to it.
    pub url: String,
    /// Time allowed to connect, TLS handshake included (502 when it fails).
    #[serde(default = "defaults::connect_timeout", deserialize_with = "duration")]
    pub connect_timeout: Duration,
    /// Whole-response timeout of one call (504 when exceeded).
    #[serde(default = "defaults::upstream_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    /// Idle pooled connections are closed after this.
    #[serde(default = "defaults::pool_idle_timeout", deserialize_with = "duration")]
    pub pool_idle_timeout: Duration,
    /// Idle connections kept per host.
    #[serde(default = "defaults::pool_max_idle")]
    pub pool_max_idle_per_host: usize,
    /// Largest upstream response body read, in bytes (502 above).
    #[serde(default = "defaults::upstream_body_limit")]
    pub body_limit: usize,
    /// How Rosetta authenticates to this upstream.
    #[serde(default)]
    pub auth: UpstreamAuthConfig,
    /// A `[rate_limits]` policy shaping all traffic to this upstream: calls beyond it wait
    /// for their turn (within the call's timeout) instead of being sent.
    #[serde(default)]
    pub rate_limit: Option<String>,
    /// A PEM file of CA certificates trusted for this upstream besides the usual roots (a
    /// private CA). Relative paths are resolved against the config file's folder.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Trust the system's root certificates rather than the compiled-in Mozilla list.
    #[serde(default)]
    pub native_roots: bool,
    /// A PEM certificate chain presented to the upstream (mutual TLS); needs `client_key`.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// The PEM private key of `client_cert`.
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// Send this upstream's credentials over plain `http://` to a host that is not this
    /// machine (refused at load otherwise).
    #[serde(default)]
    pub allow_insecure_auth: bool,
    /// Calls in flight to this upstream at once; more wait in a queue.
    #[serde(default = "defaults::max_in_flight")]
    pub max_in_flight: usize,
    /// Longest a call waits in that queue before it is answered 503.
    #[serde(default = "defaults::queue_timeout", deserialize_with = "duration")]
    pub queue_timeout: Duration,
    /// The circuit breaker: consecutive failures open it for a cool-down.
    #[serde(default)]
    pub breaker: BreakerConfig,
    /// Values a pack's calls to this upstream need besides the URL (Fusion's
    /// `draas_instance` and `group`): `{vars.NAME.KEY}` in a call's path or query and
    /// `vars.NAME.KEY` in its jq, bound once when the pack loads. Each must be made of
    /// URL-unreserved characters (`A-Z a-z 0-9 - . _ ~`), so it can never change the shape
    /// of an upstream URL.
    #[serde(default)]
    pub vars: std::collections::BTreeMap<String, String>,
}

/// `breaker = { failures = 5, cool_down = "10s" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    /// Consecutive failed calls (connect or TLS failure, broken connection, timeout, 5xx
    /// answer) that open the breaker; 0 turns the breaker off.
    #[serde(default = "defaults::breaker_failures")]
    pub failures: u32,
    /// How long an open breaker refuses calls before letting one probe through.
    #[serde(default = "defaults::breaker_cool_down", deserialize_with = "duration")]
    pub cool_down: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failures: defaults::breaker_failures(),
            cool_down: defaults::breaker_cool_down(),
        }
    }
}

/// Upstream authentication.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum UpstreamAuthConfig {
    /// No credentials sent.
    #[default]
    None,
    /// A fixed header, e.g. an API key.
    Header {
        /// The header's name.
        name: String,
        /// Its value, sent as is; best given in the environment (see `secrets`).
        #[serde(default)]
        value: String,
    },
    /// HTTP Basic.
    Basic {
        /// The username sent.
        username: String,
        /// The password sent; best given in the environment (see `secrets`).
        #[serde(default)]
        password: String,
    },
    /// OAuth2 client credentials (RFC 6749 §4.4).
    Oauth2 {
        /// The token endpoint.
        token_url: String,
        /// The client id sent to the token endpoint.
        client_id: String,
        /// The client secret sent to the token endpoint; best given in the environment
        /// (see `secrets`).
        #[serde(default)]
        client_secret: String,
        /// Scopes asked for; `None` sends no `scope`.
        #[serde(default)]
        scope: Option<String>,
        /// Refresh this long before the token expires.
        #[serde(default = "defaults::token_skew", deserialize_with = "duration")]
        refresh_skew: Duration,
    },
}

impl UpstreamConfig {
    /// Makes the TLS file paths absolute, against the config file's folder.
    pub(super) fn resolve_paths(&mut self, base_dir: &Path) {
        for p in [
            &mut self.ca_file,
            &mut self.client_cert,
            &mut self.client_key,
        ]
        .into_iter()
        .flatten()
        {
            if p.is_relative() {
                *p = base_dir.join(&*p);
            }
        }
    }

    /// Whether a call to this upstream or its token endpoint speaks TLS.
    fn uses_tls(&self) -> bool {
        let https = |u: &str| {
            u.get(..8)
                .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
        };
        https(&self.url)
            || match &self.auth {
                UpstreamAuthConfig::Oauth2 { token_url, .. } => https(token_url),
                UpstreamAuthConfig::None
                | UpstreamAuthConfig::Header { .. }
                | UpstreamAuthConfig::Basic { .. } => false,
            }
    }
}

/// Whether `uri` is plain `http://` to a host other than this machine: what crosses it can
/// be read on the way.
pub fn in_clear_off_host(uri: &http::Uri) -> bool {
    uri.scheme_str() == Some("http") && !uri.host().is_some_and(is_loopback)
}

/// `localhost`, 127.0.0.0/8 or `[::1]`.
fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Checks upstream `name`: see the module's doc.
pub(super) fn check(name: &str, up: &UpstreamConfig) -> Result<(), ConfigError> {
    let invalid = |what: String| Err(ConfigError::Invalid(format!("upstreams.{name}.{what}")));
    let url = parse_url(name, "url", &up.url)?;
    if up.max_in_flight == 0 {
        return invalid("max_in_flight must be at least 1".into());
    }
    if up.breaker.failures > 0 && up.breaker.cool_down.is_zero() {
        return invalid("breaker.cool_down must be more than 0 (or set failures = 0)".into());
    }
    if up.client_cert.is_some() != up.client_key.is_some() {
        return invalid("client_cert and client_key go together".into());
    }
    for (k, v) in &up.vars {
        let unreserved = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~');
        if v.is_empty() || !v.chars().all(unreserved) || !k.chars().all(unreserved) {
            return invalid(format!(
                "vars.{k} must be non-empty and made of A-Z a-z 0-9 - . _ ~"
            ));
        }
    }
    let tls_keys = up.ca_file.is_some() || up.client_cert.is_some() || up.native_roots;
    if tls_keys && !up.uses_tls() {
        return invalid(format!(
            "ca_file, client_cert and native_roots apply to https:// URLs; url is {:?}",
            up.url
        ));
    }
    if up.allow_insecure_auth {
        return Ok(());
    }
    let clear = |what: &str, uri: &http::Uri| {
        invalid(format!(
            "{what}: credentials would cross the network in clear to {uri}; use https:// or \
             set allow_insecure_auth = true on this upstream"
        ))
    };
    match &up.auth {
        UpstreamAuthConfig::None => Ok(()),
        UpstreamAuthConfig::Header { .. } | UpstreamAuthConfig::Basic { .. } => {
            if in_clear_off_host(&url) {
                return clear("auth", &url);
            }
            Ok(())
        }
        UpstreamAuthConfig::Oauth2 { token_url, .. } => {
            let token = parse_url(name, "auth.token_url", token_url)?;
            if in_clear_off_host(&token) {
                return clear("auth.token_url", &token);
            }
            // The token it gets is sent to the upstream as a bearer.
            if in_clear_off_host(&url) {
                return clear("auth", &url);
            }
            Ok(())
        }
    }
}

fn parse_url(name: &str, key: &str, text: &str) -> Result<http::Uri, ConfigError> {
    let uri: http::Uri = text
        .parse()
        .map_err(|e| ConfigError::Invalid(format!("upstreams.{name}.{key}: {e}")))?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.authority().is_some() => Ok(uri),
        Some(_) | None => Err(ConfigError::Invalid(format!(
            "upstreams.{name}.{key} must be an absolute http:// or https:// URL, got {text:?}"
        ))),
    }
}

mod defaults {
    use std::time::Duration;

    pub(super) fn connect_timeout() -> Duration {
        Duration::from_secs(2)
    }
    pub(super) fn upstream_timeout() -> Duration {
        Duration::from_secs(15)
    }
    pub(super) fn pool_idle_timeout() -> Duration {
        Duration::from_secs(90)
    }
    pub(super) fn pool_max_idle() -> usize {
        256
    }
    pub(super) fn upstream_body_limit() -> usize {
        64 * 1024 * 1024
    }
    pub(super) fn token_skew() -> Duration {
        Duration::from_secs(30)
    }
    pub(super) fn max_in_flight() -> usize {
        256
    }
    pub(super) fn queue_timeout() -> Duration {
        Duration::from_secs(1)
    }
    pub(super) fn breaker_failures() -> u32 {
        5
    }
    pub(super) fn breaker_cool_down() -> Duration {
        Duration::from_secs(10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(toml_text: &str) -> Result<(), ConfigError> {
        let up: UpstreamConfig = toml::from_str(toml_text).expect("parses");
        check("up", &up)
    }

    fn refused(toml_text: &str, naming: &str) {
        match upstream(toml_text) {
            Err(ConfigError::Invalid(m)) => {
                assert!(m.contains("upstreams.up."), "{m}");
                assert!(m.contains(naming), "{m} should name {naming}");
            }
            other => panic!("{toml_text}: {other:?}"),
        }
    }

    #[test]
    fn the_defaults_bound_every_upstream() {
        let up: UpstreamConfig = toml::from_str("url = \"http://127.0.0.1:1\"").unwrap();
        assert_eq!(up.max_in_flight, 256);
        assert_eq!(up.queue_timeout, Duration::from_secs(1));
        assert_eq!(up.breaker.failures, 5);
        assert_eq!(up.breaker.cool_down, Duration::from_secs(10));
        assert!(!up.native_roots && !up.allow_insecure_auth);
        let up: UpstreamConfig = toml::from_str(
            "url = \"https://h\"\nbreaker = { failures = 2, cool_down = \"200ms\" }",
        )
        .unwrap();
        assert_eq!(up.breaker.failures, 2);
        assert_eq!(up.breaker.cool_down, Duration::from_millis(200));
    }

    #[test]
    fn http_and_https_urls_are_taken_and_nothing_else() {
        upstream("url = \"http://127.0.0.1:7001\"").unwrap();
        upstream("url = \"https://api.example.com/v2\"").unwrap();
        refused("url = \"ftp://h/\"", "http:// or https://");
        refused("url = \"/just/a/path\"", "url");
    }

    #[test]
    fn credentials_in_clear_off_this_machine_are_refused() {
        let bearer =
            "[auth]\ntype = \"header\"\nname = \"authorization\"\nvalue = \"Bearer s3cret\"";
        let basic = "[auth]\ntype = \"basic\"\nusername = \"u\"\npassword = \"p\"";
        for auth in [bearer, basic] {
            refused(
                &format!("url = \"http://api.example.com\"\n{auth}"),
                "in clear",
            );
            refused(
                &format!("url = \"http://10.0.0.5:80\"\n{auth}"),
                "allow_insecure_auth",
            );
            // Over TLS, or to this machine, or when the upstream says so: taken.
            upstream(&format!("url = \"https://api.example.com\"\n{auth}")).unwrap();
            for local in ["127.0.0.1:7001", "127.9.9.9", "localhost:80", "[::1]:8080"] {
                upstream(&format!("url = \"http://{local}\"\n{auth}")).unwrap();
            }
            upstream(&format!(
                "url = \"http://api.example.com\"\nallow_insecure_auth = true\n{auth}"
            ))
            .unwrap();
        }
        // Without credentials, plain http anywhere is allowed (a warning at start).
        upstream("url = \"http://api.example.com\"").unwrap();
    }

    #[test]
    fn an_oauth2_secret_or_its_token_in_clear_is_refused() {
        let oauth = |url: &str, token_url: &str| {
            format!(
                "url = {url:?}\n[auth]\ntype = \"oauth2\"\ntoken_url = {token_url:?}\n\
                 client_id = \"c\"\nclient_secret = \"s\""
            )
        };
        refused(
            &oauth("https://api.example.com", "http://idp.example.com/token"),
            "auth.token_url",
        );
        refused(
            &oauth("http://api.example.com", "https://idp.example.com/token"),
            "auth: credentials",
        );
        upstream(&oauth(
            "https://api.example.com",
            "https://idp.example.com/token",
        ))
        .unwrap();
        upstream(&oauth("http://127.0.0.1:7002", "http://127.0.0.1:7002/t")).unwrap();
        refused(&oauth("https://api.example.com", "token"), "auth.token_url");
    }

    #[test]
    fn tls_settings_must_be_usable() {
        refused(
            "url = \"https://h\"\nclient_cert = \"c.pem\"",
            "client_cert and client_key",
        );
        refused("url = \"https://h\"\nclient_key = \"k.pem\"", "client_key");
        refused("url = \"http://h\"\nca_file = \"ca.pem\"", "https://");
        upstream("url = \"https://h\"\nca_file = \"ca.pem\"\nnative_roots = true").unwrap();
        refused("url = \"http://h\"\nmax_in_flight = 0", "max_in_flight");
        refused(
            "url = \"http://h\"\nbreaker = { failures = 3, cool_down = \"0s\" }",
            "breaker.cool_down",
        );
        upstream("url = \"http://h\"\nbreaker = { failures = 0, cool_down = \"0s\" }").unwrap();
    }

    #[test]
    fn relative_tls_files_are_found_beside_the_config() {
        let mut up: UpstreamConfig = toml::from_str(
            "url = \"https://h\"\nca_file = \"certs/ca.pem\"\nclient_cert = \"/abs/c.pem\"\n\
             client_key = \"k.pem\"",
        )
        .unwrap();
        up.resolve_paths(Path::new("/etc/rosetta"));
        assert_eq!(up.ca_file.unwrap(), Path::new("/etc/rosetta/certs/ca.pem"));
        assert_eq!(up.client_cert.unwrap(), Path::new("/abs/c.pem"));
        assert_eq!(up.client_key.unwrap(), Path::new("/etc/rosetta/k.pem"));
    }
}
