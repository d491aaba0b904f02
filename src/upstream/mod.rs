//! Upstream calls: pooled clients, timeouts, retries and upstream authentication.
//!
//! One hyper-util pooled client per upstream. A call has one deadline covering connect,
//! headers and body. Idempotent calls are retried only when no connection could be made, so
//! nothing is ever sent twice. Upstream credentials are added here, so packs never see them.

mod auth;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::{ConfigError, UpstreamConfig};
use crate::error::UpstreamError;

pub use auth::UpstreamAuth;

/// The pooled HTTP client type shared by upstream calls and token requests.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Extra attempts for idempotent calls whose connection could not be established.
const CONNECT_RETRIES: usize = 2;

/// One call to an upstream, path relative to the upstream's base URL.
#[derive(Debug, Clone)]
pub struct UpstreamRequest {
    pub method: Method,
    /// Path and query, already encoded, starting with `/`.
    pub path_and_query: String,
    /// Extra headers (content-type, traceparent, accept). Upstream auth is added by the client.
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// What the upstream answered (any status: the caller decides what an error is).
#[derive(Debug, Clone)]
pub struct UpstreamResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// One configured upstream.
pub struct Upstream {
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

/// A pooled client with the upstream's pool and connect settings.
pub fn http_client(cfg: &UpstreamConfig) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(cfg.connect_timeout));
    connector.set_nodelay(true);
    connector.set_keepalive(Some(Duration::from_secs(60)));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(cfg.pool_idle_timeout)
        .pool_max_idle_per_host(cfg.pool_max_idle_per_host)
        .pool_timer(TokioTimer::new())
        .build(connector)
}

impl Upstream {
    /// Builds the client of upstream `name`.
    pub fn new(name: &str, cfg: &UpstreamConfig) -> Result<Self, ConfigError> {
        let invalid = |why: String| ConfigError::Invalid(format!("upstreams.{name}.url: {why}"));
        let base: Uri = cfg.url.parse().map_err(|e| invalid(format!("{e}")))?;
        let parts = base.into_parts();
        let (Some(scheme), Some(authority)) = (parts.scheme, parts.authority) else {
            return Err(invalid(format!(
                "`{}` is not an absolute URL (http://host[:port][/path])",
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
        let client = http_client(cfg);
        let auth = UpstreamAuth::new(name, &cfg.auth, client.clone(), cfg.timeout)?;
        Ok(Self {
            name: Arc::from(name),
            scheme,
            authority,
            base_path,
            client,
            timeout: cfg.timeout,
            body_limit: cfg.body_limit,
            auth,
        })
    }

    /// Performs one call; with OAuth2, a 401 refreshes the token and retries once.
    pub async fn call(&self, req: UpstreamRequest) -> Result<UpstreamResponse, UpstreamError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let work = async {
            let credential = self.auth.credential().await?;
            let resp = self.attempt(&req, credential.as_ref()).await?;
            if resp.status == StatusCode::UNAUTHORIZED && self.auth.refreshes() {
                let fresh = self
                    .auth
                    .refresh_after_rejection(credential.as_ref())
                    .await?;
                return self.attempt(&req, fresh.as_ref()).await;
            }
            Ok(resp)
        };
        match tokio::time::timeout_at(deadline, work).await {
            Ok(r) => r,
            Err(_) => Err(UpstreamError::Timeout {
                upstream: self.name.to_string(),
                timeout: self.timeout,
            }),
        }
    }

    async fn attempt(
        &self,
        req: &UpstreamRequest,
        credential: Option<&http::HeaderValue>,
    ) -> Result<UpstreamResponse, UpstreamError> {
        let uri = self.uri(&req.path_and_query)?;
        let mut tries = 0;
        let resp = loop {
            let mut builder = Request::builder()
                .method(req.method.clone())
                .uri(uri.clone());
            if let Some(h) = builder.headers_mut() {
                // The builder's map is empty: the request's headers replace it whole (extending
                // it inserted each one again into a second map).
                *h = req.headers.clone();
                if let Some(c) = credential {
                    h.insert(http::header::AUTHORIZATION, c.clone());
                }
                if let Some((n, v)) = self.auth.extra_header() {
                    h.insert(n.clone(), v.clone());
                }
            }
            let request = builder.body(Full::new(req.body.clone())).map_err(|e| {
                UpstreamError::InvalidResponse {
                    upstream: self.name.to_string(),
                    detail: format!("cannot build the upstream request: {e}"),
                }
            })?;
            match self.client.request(request).await {
                Ok(resp) => break resp,
                // Only a connection that never opened is safe to retry: nothing was sent.
                Err(e) if retryable(&req.method, e.is_connect(), tries) => {
                    tries += 1;
                    tracing::debug!(upstream = %self.name, attempt = tries, "connect failed; retrying");
                }
                Err(e) => {
                    return Err(UpstreamError::Connect {
                        upstream: self.name.to_string(),
                        source: Box::new(e),
                    });
                }
            }
        };
        let (parts, body) = resp.into_parts();
        let body = Limited::new(body, self.body_limit)
            .collect()
            .await
            .map_err(|e| UpstreamError::InvalidResponse {
                upstream: self.name.to_string(),
                detail: format!("reading the body failed: {e}"),
            })?;
        Ok(UpstreamResponse {
            status: parts.status,
            headers: parts.headers,
            body: body.to_bytes(),
        })
    }
}

/// Whether a failed attempt may be made again: only idempotent methods, only when the
/// connection never opened (so nothing was sent), and at most [`CONNECT_RETRIES`] times.
impl Upstream {
    /// The upstream URI of a call: the base's scheme and authority, parsed once when the
    /// upstream was configured, and the base's path followed by the call's.
    fn uri(&self, path_and_query: &str) -> Result<Uri, UpstreamError> {
        let invalid = |e: &dyn std::fmt::Display| UpstreamError::InvalidResponse {
            upstream: self.name.to_string(),
            detail: format!("cannot build the upstream URI: {e}"),
        };
        let pq = if self.base_path.is_empty() {
            http::uri::PathAndQuery::try_from(path_and_query)
        } else {
            http::uri::PathAndQuery::try_from(format!("{}{path_and_query}", self.base_path))
        }
        .map_err(|e| invalid(&e))?;
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(pq);
        Uri::from_parts(parts).map_err(|e| invalid(&e))
    }
}

pub fn retryable(method: &Method, connect_failed: bool, tries: usize) -> bool {
    let idempotent = matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
    );
    idempotent && connect_failed && tries < CONNECT_RETRIES
}

/// A policy every call to one upstream passes through, whoever makes it.
#[derive(Clone)]
pub struct Shaper {
    pub policy: crate::limits::rate::Policy,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_idempotent_calls_that_never_connected_are_retried() {
        assert!(retryable(&Method::GET, true, 0));
        assert!(retryable(&Method::DELETE, true, 1));
        assert!(!retryable(&Method::GET, true, CONNECT_RETRIES), "bounded");
        assert!(
            !retryable(&Method::GET, false, 0),
            "a failure after connecting may have been processed"
        );
        assert!(!retryable(&Method::POST, true, 0));
        assert!(!retryable(&Method::PATCH, true, 0));
    }

    fn upstream(url: &str) -> Result<Upstream, ConfigError> {
        let cfg: UpstreamConfig =
            toml::from_str(&format!("url = {url:?}")).expect("a config with only a URL");
        Upstream::new("up", &cfg)
    }

    #[tokio::test]
    async fn a_call_goes_to_the_base_url_followed_by_its_path() {
        let cases = [
            (
                "http://127.0.0.1:7001",
                "/a/b?c=d",
                "http://127.0.0.1:7001/a/b?c=d",
            ),
            ("http://127.0.0.1:7001/", "/a", "http://127.0.0.1:7001/a"),
            (
                "https://api.example.com/v2",
                "/a?x",
                "https://api.example.com/v2/a?x",
            ),
            ("http://h:1/base/path/", "/a", "http://h:1/base/path/a"),
        ];
        for (base, pq, want) in cases {
            let u = upstream(base).unwrap();
            assert_eq!(u.uri(pq).unwrap().to_string(), want, "{base} + {pq}");
        }
        // A path that is not one is refused, not sent.
        assert!(upstream("http://h:1").unwrap().uri("/a b").is_err());
    }

    #[tokio::test]
    async fn a_base_url_must_be_absolute_and_without_a_query() {
        for bad in [
            "127.0.0.1:7001",
            "/just/a/path",
            "http://h:1/p?q=1",
            "not a url",
        ] {
            match upstream(bad) {
                Err(ConfigError::Invalid(msg)) => {
                    assert!(msg.contains("upstreams.up.url"), "{msg}")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}
