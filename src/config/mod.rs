//! Typed configuration: `config/rosetta.toml`, then `ROSETTA__SECTION__KEY` overrides.
//!
//! Every struct denies unknown keys, so a typo in the file is a load error rather than a
//! silently ignored setting. Durations are written as humantime strings (`"30s"`, `"2m"`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

mod cluster;
mod identity;
pub mod secrets;
mod store;
mod upstream;

pub use cluster::{ClusterConfig, OnRedisError, redact as redact_url};
pub use identity::{FailureLimitConfig, GateConfig, IdentityConfig, StaticKeyConfig};
pub use store::StoreConfig;
pub use upstream::{BreakerConfig, UpstreamAuthConfig, UpstreamConfig, in_clear_off_host};

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or parsed.
    #[error("cannot read configuration {path}")]
    Load {
        /// The file read (`<inline>` for a configuration given as text).
        path: PathBuf,
        /// What the `config` crate reported.
        #[source]
        source: config::ConfigError,
    },
    /// A value is out of its range or inconsistent; the message names the key.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Proxy listener.
    #[serde(default = "defaults::listen")]
    pub listen: String,
    /// Admin API listener.
    #[serde(default = "defaults::admin_listen")]
    pub admin_listen: String,
    /// Folder holding the packs; relative paths are resolved against the config file's folder.
    #[serde(default = "defaults::mappings_dir")]
    pub mappings_dir: PathBuf,
    /// Packs to enable, by folder name under `mappings_dir`.
    #[serde(default)]
    pub packs: Vec<String>,
    /// Refuse at load every pack filter that would run on jaq rather than the filter plan
    /// (jaq costs several times as much per run; `rosetta check` lists such filters, and
    /// `rosetta check --strict-jq` refuses them for one check).
    #[serde(default)]
    pub strict_jq: bool,
    /// `[server]`: listener behaviour.
    #[serde(default)]
    pub server: ServerConfig,
    /// `[log]`: log output.
    #[serde(default)]
    pub log: LogConfig,
    /// `[upstreams.NAME]`: the backends packs call, by the name packs use.
    #[serde(default)]
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    /// `[identity]`: API keys declared in the file; the bounds on authentication work.
    #[serde(default)]
    pub identity: IdentityConfig,
    /// `[rate_limits.NAME]`: rate-limit policies, by the name packs and upstreams use.
    #[serde(default)]
    pub rate_limits: BTreeMap<String, RateLimitConfig>,
    /// `[store]`: where state is kept.
    #[serde(default)]
    pub store: StoreConfig,
    /// `[admin]`: the first administrator.
    #[serde(default)]
    pub admin: AdminConfig,
    /// `[cache]`: the read cache's bounds.
    #[serde(default)]
    pub cache: CacheConfig,
    /// `[capture]`: which request and response bodies are kept.
    #[serde(default)]
    pub capture: CaptureConfig,
    /// `[tenancy]`: the cache of callers' reaches.
    #[serde(default)]
    pub tenancy: TenancyConfig,
    /// `[metrics]`: who may read `/metrics`.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// `[cluster]`: shared state on Redis; unset, one node.
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// Folder of the config file, for resolving relative paths (not read from the file).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// Listener behaviour.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Largest request body accepted, in bytes (413 above).
    #[serde(default = "defaults::body_limit")]
    pub body_limit: usize,
    /// Time allowed to receive a request's headers.
    #[serde(
        default = "defaults::header_read_timeout",
        deserialize_with = "duration"
    )]
    pub header_read_timeout: Duration,
    /// How long a graceful stop waits for in-flight requests.
    #[serde(default = "defaults::shutdown_grace", deserialize_with = "duration")]
    pub shutdown_grace: Duration,
    /// HTTP/1.1 keep-alive.
    #[serde(default = "defaults::yes")]
    pub keep_alive: bool,
    /// Connections served at once by each listener; past it new connections wait in the
    /// kernel's backlog until one closes.
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
    /// Time a new connection has to send its first byte, and an HTTP/2 client its whole
    /// preface; the connection is closed after it.
    #[serde(
        default = "defaults::first_byte_timeout",
        deserialize_with = "duration"
    )]
    pub first_byte_timeout: Duration,
    /// A connection with no request in flight this long is closed (HTTP/2: `GOAWAY`).
    #[serde(default = "defaults::idle_timeout", deserialize_with = "duration")]
    pub idle_timeout: Duration,
    /// HTTP/2: a `PING` is sent after this long without a frame from the client.
    #[serde(
        default = "defaults::h2_keep_alive_interval",
        deserialize_with = "duration"
    )]
    pub h2_keep_alive_interval: Duration,
    /// HTTP/2: the connection is closed when a `PING` is not answered within this.
    #[serde(
        default = "defaults::h2_keep_alive_timeout",
        deserialize_with = "duration"
    )]
    pub h2_keep_alive_timeout: Duration,
    /// From a request's headers to its answer's head: 408 when the body has not all
    /// arrived by then, 504 when it has and the answer is not begun.
    #[serde(default = "defaults::request_timeout", deserialize_with = "duration")]
    pub request_timeout: Duration,
    /// Slowest a request body may arrive, in bytes per second averaged from the request's
    /// start, once `body_rate_grace` is over (408 below it); 0 sets no minimum.
    #[serde(default = "defaults::min_body_rate")]
    pub min_body_rate: u64,
    /// Time a request body may take before `min_body_rate` applies.
    #[serde(default = "defaults::body_rate_grace", deserialize_with = "duration")]
    pub body_rate_grace: Duration,
    /// Deepest JSON/XML nesting accepted in a request body.
    #[serde(default = "defaults::max_depth")]
    pub max_depth: usize,
    /// The gateway's public base URL (`https://api.example.com`), used where an answer
    /// links back to the gateway (LongJump lookup `uri`s). Unset: `http://` + the address of
    /// the listener that took the request, never the client's `Host` (a cached answer would
    /// carry one caller's Host to every other).
    #[serde(default)]
    pub public_url: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            body_limit: defaults::body_limit(),
            header_read_timeout: defaults::header_read_timeout(),
            shutdown_grace: defaults::shutdown_grace(),
            keep_alive: true,
            max_connections: defaults::max_connections(),
            first_byte_timeout: defaults::first_byte_timeout(),
            idle_timeout: defaults::idle_timeout(),
            h2_keep_alive_interval: defaults::h2_keep_alive_interval(),
            h2_keep_alive_timeout: defaults::h2_keep_alive_timeout(),
            request_timeout: defaults::request_timeout(),
            min_body_rate: defaults::min_body_rate(),
            body_rate_grace: defaults::body_rate_grace(),
            max_depth: defaults::max_depth(),
            public_url: None,
        }
    }
}

impl ServerConfig {
    /// A limit of 0 would refuse every connection or close every one at once: a typo, not
    /// a setting.
    fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=1_000_000).contains(&self.max_connections) {
            return Err(ConfigError::Invalid(
                "server.max_connections must be between 1 and 1000000".into(),
            ));
        }
        for (key, d) in [
            ("first_byte_timeout", self.first_byte_timeout),
            ("idle_timeout", self.idle_timeout),
            ("h2_keep_alive_interval", self.h2_keep_alive_interval),
            ("h2_keep_alive_timeout", self.h2_keep_alive_timeout),
            ("request_timeout", self.request_timeout),
        ] {
            if d.is_zero() {
                return Err(ConfigError::Invalid(format!(
                    "server.{key} must be more than 0"
                )));
            }
        }
        Ok(())
    }
}

/// Log output.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (default) or `json`.
    #[serde(default)]
    pub format: LogFormat,
    /// An `EnvFilter` directive, e.g. `info` or `rosetta=debug,info`.
    #[serde(default = "defaults::log_level")]
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: defaults::log_level(),
        }
    }
}

/// `log.format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[rate_limits.NAME]` (enforced by a later issue; the names are validated now).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// How many requests the bucket holds.
    pub burst: u32,
    /// `"5/s"`, `"300/m"`.
    pub rate: String,
    /// One bucket per `user` (default), `company`, `api_key`, `ip`, `global` or `header:NAME`.
    #[serde(default = "defaults::rate_key")]
    pub key: String,
    /// `success` (default: failed upstream calls are given back) or `all`.
    #[serde(default)]
    pub count: Option<String>,
}

/// `[admin]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Username of the first administrator, created when the store has no user.
    #[serde(default)]
    pub bootstrap_user: Option<String>,
    /// That administrator's password; both must be set for it to be created.
    #[serde(default)]
    pub bootstrap_password: Option<String>,
    /// The company the first administrator is created in (default `system`).
    #[serde(default = "defaults::bootstrap_company")]
    pub bootstrap_company: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            bootstrap_user: None,
            bootstrap_password: None,
            bootstrap_company: defaults::bootstrap_company(),
        }
    }
}

/// Which requests keep their bodies for `/v1/tracecode/{tracecode}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaptureMode {
    /// No bodies are kept.
    Off,
    /// Only requests answered with a 4xx or 5xx.
    #[default]
    Errors,
    /// Every request's bodies are kept.
    All,
}

/// `[capture]`: request and response bodies kept by tracecode.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureConfig {
    /// Which requests keep their bodies (default `errors`).
    #[serde(default)]
    pub mode: CaptureMode,
    /// Bytes kept per body; longer bodies are cut (and marked so).
    #[serde(default = "defaults::capture_max_body")]
    pub max_body_bytes: usize,
    /// How long captures are kept.
    #[serde(default = "defaults::capture_retention", deserialize_with = "duration")]
    pub retention: Duration,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        Self {
            mode: CaptureMode::default(),
            max_body_bytes: defaults::capture_max_body(),
            retention: defaults::capture_retention(),
        }
    }
}

/// `[cache]` (used by the cache issue; accepted now so configs stay valid).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Bytes the read cache may hold (default 64 MiB).
    #[serde(default)]
    pub max_bytes: Option<u64>,
    /// Entries unread this long are dropped before their TTL (default 10 minutes).
    #[serde(default, deserialize_with = "opt_duration")]
    pub idle: Option<Duration>,
}

/// `[tenancy]`: the cache of callers' reaches (DESIGN §8).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenancyConfig {
    /// How long a resolved reach is used before it is resolved again (default 30 s): the
    /// longest a company moved out of a caller's tree by another node stays reachable.
    #[serde(default = "defaults::reach_ttl", deserialize_with = "duration")]
    pub reach_ttl: Duration,
    /// Bytes the cached reaches of every pack may hold together (default 16 MiB).
    #[serde(default = "defaults::reach_max_bytes")]
    pub reach_max_bytes: u64,
}

impl Default for TenancyConfig {
    fn default() -> Self {
        Self {
            reach_ttl: defaults::reach_ttl(),
            reach_max_bytes: defaults::reach_max_bytes(),
        }
    }
}

/// `[metrics]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve `/metrics` to anyone, as a scraper without credentials needs; by default it
    /// asks for an ADMIN or an AUDITOR (the counters describe the traffic of every caller).
    #[serde(default)]
    pub public: bool,
}

fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s = Option::<String>::deserialize(d)?;
    s.map(|s| humantime::parse_duration(&s).map_err(serde::de::Error::custom))
        .transpose()
}

impl Config {
    /// Reads `path` (TOML), then `ROSETTA__…` environment variables over it.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    /// As [`Config::load`], with the environment given explicitly (tests).
    pub fn load_with_env(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let env: std::collections::HashMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("ROSETTA__"))
            .collect();
        let built = config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix("ROSETTA")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    .source(Some(env)),
            )
            .build()
            .map_err(|source| ConfigError::Load {
                path: path.to_owned(),
                source,
            })?;
        let mut cfg: Config = built
            .try_deserialize()
            .map_err(|source| ConfigError::Load {
                path: path.to_owned(),
                source,
            })?;
        cfg.base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        cfg.resolve_paths();
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses a configuration from TOML text (tests and `demo`), no environment applied.
    pub fn from_toml(text: &str, base_dir: &Path) -> Result<Self, ConfigError> {
        let built = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .build()
            .map_err(|source| ConfigError::Load {
                path: PathBuf::from("<inline>"),
                source,
            })?;
        let mut cfg: Config = built
            .try_deserialize()
            .map_err(|source| ConfigError::Load {
                path: PathBuf::from("<inline>"),
                source,
            })?;
        cfg.base_dir = base_dir.to_owned();
        cfg.resolve_paths();
        cfg.validate()?;
        Ok(cfg)
    }

    /// The store file; relative paths are resolved against the config file's folder.
    pub fn store_path(&self) -> PathBuf {
        if self.store.path.is_absolute() {
            self.store.path.clone()
        } else {
            self.base_dir.join(&self.store.path)
        }
    }

    /// The mappings folder, resolved against the config file's folder.
    pub fn mappings_path(&self) -> PathBuf {
        if self.mappings_dir.is_absolute() {
            self.mappings_dir.clone()
        } else {
            self.base_dir.join(&self.mappings_dir)
        }
    }

    /// Makes the upstreams' certificate and key paths absolute, against the config file's
    /// folder, once at load.
    fn resolve_paths(&mut self) {
        for up in self.upstreams.values_mut() {
            up.resolve_paths(&self.base_dir);
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        if self.tenancy.reach_ttl.is_zero() {
            return Err(ConfigError::Invalid(
                "tenancy.reach_ttl must be more than 0 (each request would walk the company tree)"
                    .into(),
            ));
        }
        if self.tenancy.reach_max_bytes < 65_536 {
            return Err(ConfigError::Invalid(
                "tenancy.reach_max_bytes must be at least 65536".into(),
            ));
        }
        for (name, up) in &self.upstreams {
            upstream::check(name, up)?;
        }
        self.identity.validate().map_err(ConfigError::Invalid)?;
        self.cluster.validate().map_err(ConfigError::Invalid)?;
        self.store.validate().map_err(ConfigError::Invalid)?;
        Ok(())
    }
}

/// Deserializes a humantime duration string such as `"250ms"` or `"30s"`.
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map_err(serde::de::Error::custom)
}

mod defaults {
    use std::path::PathBuf;

    pub(super) fn reach_ttl() -> std::time::Duration {
        std::time::Duration::from_secs(30)
    }
    pub(super) fn reach_max_bytes() -> u64 {
        16 * 1024 * 1024
    }
    use std::time::Duration;

    pub(super) fn listen() -> String {
        "127.0.0.1:8080".into()
    }
    pub(super) fn admin_listen() -> String {
        "127.0.0.1:9090".into()
    }
    pub(super) fn mappings_dir() -> PathBuf {
        PathBuf::from("../mappings")
    }
    pub(super) fn body_limit() -> usize {
        10 * 1024 * 1024
    }
    pub(super) fn header_read_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub(super) fn max_connections() -> usize {
        10_000
    }
    pub(super) fn first_byte_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub(super) fn idle_timeout() -> Duration {
        Duration::from_secs(60)
    }
    pub(super) fn h2_keep_alive_interval() -> Duration {
        Duration::from_secs(20)
    }
    pub(super) fn h2_keep_alive_timeout() -> Duration {
        Duration::from_secs(20)
    }
    pub(super) fn request_timeout() -> Duration {
        Duration::from_secs(60)
    }
    pub(super) fn min_body_rate() -> u64 {
        1024
    }
    pub(super) fn body_rate_grace() -> Duration {
        Duration::from_secs(5)
    }
    pub(super) fn shutdown_grace() -> Duration {
        Duration::from_secs(30)
    }
    pub(super) fn yes() -> bool {
        true
    }
    pub(super) fn max_depth() -> usize {
        64
    }
    pub(super) fn log_level() -> String {
        "info".into()
    }
    pub(super) fn rate_key() -> String {
        "user".into()
    }
    pub(super) fn capture_max_body() -> usize {
        64 * 1024
    }
    pub(super) fn capture_retention() -> Duration {
        Duration::from_secs(7 * 24 * 3600)
    }
    pub(super) fn bootstrap_company() -> String {
        "system".into()
    }
}
