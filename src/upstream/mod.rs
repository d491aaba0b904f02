//! Upstream calls: pooled clients (plain or TLS), timeouts, retries, upstream
//! authentication, and the bounds one upstream is held to.
//!
//! One pooled client per upstream and scheme (`client`). A call has one deadline covering
//! its wait for a slot, connect, headers and body (`call`). Idempotent calls are retried
//! only when no connection could be made, so nothing is ever sent twice. Upstream
//! credentials are added here, so packs never see them (`auth`). At most `max_in_flight`
//! calls are in flight to one upstream, the rest queue for at most `queue_timeout`; a
//! circuit breaker (`breaker`) stops calling an upstream that keeps failing. A failure says
//! whether the upstream was reached at all ([`UpstreamError::nothing_sent`]).

mod auth;
mod breaker;
mod call;
mod client;
#[cfg(test)]
mod pool_tests;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, Uri};
use tokio::sync::Semaphore;

use crate::config::{ConfigError, UpstreamConfig, in_clear_off_host};
use crate::error::UpstreamError;

pub use auth::UpstreamAuth;
pub use call::retryable;
pub use client::HttpClient;

use breaker::Breaker;
use client::Clients;

/// One call to an upstream, path relative to the upstream's base URL.
#[derive(Debug, Clone)]
pub struct UpstreamRequest {
    /// The HTTP method.
    pub method: Method,
    /// Path and query, already encoded, starting with `/`.
    pub path_and_query: String,
    /// Extra headers (content-type, traceparent, accept). Upstream auth is added by the client.
    pub headers: HeaderMap,
    /// The request body.
    pub body: Bytes,
}

/// What the upstream answered (any status: the caller decides what an error is).
#[derive(Debug, Clone)]
pub struct UpstreamResponse {
    /// The status answered.
    pub status: StatusCode,
    /// The headers answered.
    pub headers: HeaderMap,
    /// The body, read whole (within the upstream's body limit).
    pub body: Bytes,
}

/// One configured upstream.
pub struct Upstream {
    /// The upstream's name in `[upstreams]`.
    pub name: Arc<str>,
    /// The base URL's parts, parsed once: a call's URI is put together from them.
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    /// The base URL's path without its trailing `/` (empty for a bare host).
    base_path: String,
    client: HttpClient,
    timeout: Duration,
    body_limit: usize,
    auth: UpstreamAuth,
    /// One permit per call in flight.
    slots: Semaphore,
    max_in_flight: usize,
    queue_timeout: Duration,
    breaker: Option<Breaker>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .field("scheme", &self.scheme)
            .field("authority", &self.authority)
            .field("base_path", &self.base_path)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// Builds the client of upstream `name`: reads its TLS files, and warns once when its
    /// traffic would cross the network in clear.
    pub fn new(name: &str, cfg: &UpstreamConfig) -> Result<Self, ConfigError> {
        let invalid = |why: String| ConfigError::Invalid(format!("upstreams.{name}.url: {why}"));
        let base: Uri = cfg.url.parse().map_err(|e| invalid(format!("{e}")))?;
        if in_clear_off_host(&base) {
            tracing::warn!(
                upstream = name,
                url = %base,
                "upstream over plain http:// to another host: its requests and answers cross \
                 the network unencrypted"
            );
        }
        let parts = base.into_parts();
        let (Some(scheme), Some(authority)) = (parts.scheme, parts.authority) else {
            return Err(invalid(format!(
                "`{}` is not an absolute URL (http[s]://host[:port][/path])",
                cfg.url
            )));
        };
        let base_path = match parts.path_and_query {
            Some(pq) if pq.query().is_some() => {
                return Err(invalid(format!(
                    "`{}` has a query; give a base path only",
                    cfg.url
                )));
            }
            Some(pq) => pq.path().trim_end_matches('/').to_owned(),
            None => String::new(),
        };
        let mut clients = Clients::new(name, cfg);
        let client = clients.for_scheme(&scheme)?;
        let auth = UpstreamAuth::new(name, &cfg.auth, &mut clients, cfg.timeout)?;
        Ok(Self {
            name: Arc::from(name),
            scheme,
            authority,
            base_path,
            client,
            timeout: cfg.timeout,
            body_limit: cfg.body_limit,
            auth,
            slots: Semaphore::new(cfg.max_in_flight),
            max_in_flight: cfg.max_in_flight,
            queue_timeout: cfg.queue_timeout,
            breaker: Breaker::new(name, &cfg.breaker),
        })
    }

    /// Calls in flight to this upstream now.
    pub fn in_flight(&self) -> usize {
        self.max_in_flight
            .saturating_sub(self.slots.available_permits())
    }
}

/// A policy every call to one upstream passes through, whoever makes it.
#[derive(Clone)]
pub struct Shaper {
    /// The upstream's `rate_limit` policy.
    pub policy: crate::limits::rate::Policy,
    /// The buckets the policy draws from.
    pub limiter: Arc<dyn crate::limits::rate::RateLimiter>,
}

impl Shaper {
    /// Waits until the policy lets one more call through. The wait uses tokio's clock, so
    /// it counts against the call's deadline and follows paused time in tests.
    async fn admit(&self, upstream: &str) {
        let key = format!("upstream:{upstream}");
        loop {
            let d = self.limiter.check(&self.policy, &key);
            if d.allowed {
                return;
            }
            tokio::time::sleep(d.retry_after.max(Duration::from_millis(1))).await;
        }
    }
}

/// All configured upstreams by name.
#[derive(Clone, Default)]
pub struct Upstreams {
    map: BTreeMap<String, Arc<Upstream>>,
    shapers: BTreeMap<String, Shaper>,
}

impl Upstreams {
    /// Builds a client per upstream.
    pub fn from_config(cfg: &BTreeMap<String, UpstreamConfig>) -> Result<Self, ConfigError> {
        let map = cfg
            .iter()
            .map(|(name, c)| Ok((name.clone(), Arc::new(Upstream::new(name, c)?))))
            .collect::<Result<_, ConfigError>>()?;
        Ok(Self {
            map,
            shapers: BTreeMap::new(),
        })
    }

    /// Shapes calls to `upstream` with `shaper`.
    pub fn shape(&mut self, upstream: &str, shaper: Shaper) {
        self.shapers.insert(upstream.to_owned(), shaper);
    }

    /// Every configured upstream, by name.
    pub fn each(&self) -> impl Iterator<Item = (&str, &Upstream)> {
        self.map.iter().map(|(n, u)| (n.as_str(), &**u))
    }

    /// The upstream called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Upstream>> {
        self.map.get(name)
    }

    /// Calls upstream `name`.
    pub async fn call(
        &self,
        name: &str,
        req: UpstreamRequest,
    ) -> Result<UpstreamResponse, UpstreamError> {
        match self.map.get(name) {
            Some(u) => match self.shapers.get(name) {
                None => u.call(req).await,
                Some(s) => {
                    // Waiting for a turn is part of the call: the upstream's timeout bounds it.
                    let timeout = u.timeout;
                    match tokio::time::timeout(timeout, s.admit(name)).await {
                        Ok(()) => u.call(req).await,
                        Err(_) => Err(UpstreamError::Timeout {
                            upstream: name.to_owned(),
                            timeout,
                        }),
                    }
                }
            },
            None => Err(UpstreamError::Unknown {
                upstream: name.to_owned(),
            }),
        }
    }
}
