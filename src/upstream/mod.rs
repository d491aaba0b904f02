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
        let deadline = crate::clock::now() + self.timeout;
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

/// Whether a failed attempt is tried again: idempotent, never connected, retries left.
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

/// Connection reuse, the pool's bounds and the never-twice rule, seen from a raw HTTP/1
/// server on 127.0.0.1 that counts the connections and requests it gets and answers as each
/// test tells it (hyper's own server would hide the connection handling these tests are about).
#[cfg(test)]
mod pool_tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    use super::*;

    /// What the server does with each request it has read.
    #[derive(Clone, Copy)]
    enum Answer {
        /// `200 ok`, connection kept.
        KeepAlive,
        /// `200 ok`, then the socket is closed (an upstream closing an idle connection).
        ThenClose,
        /// `200 ok` with `Connection: close`, then the socket is closed.
        ConnectionClose,
        /// Nothing: the socket is closed once the request is read.
        Hangup,
        /// A body of 64 bytes.
        Big,
    }

    struct Server {
        url: String,
        connections: Arc<AtomicUsize>,
        requests: Arc<AtomicUsize>,
        /// One message per socket the server closed.
        closed: mpsc::UnboundedReceiver<()>,
    }

    async fn server(answer: Answer) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let (tx, closed) = mpsc::unbounded_channel();
        let (c, r) = (connections.clone(), requests.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                c.fetch_add(1, Ordering::SeqCst);
                let (r, tx) = (r.clone(), tx.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        // One request head (the tests send no bodies).
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            match sock.read(&mut chunk).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                            continue;
                        };
                        buf.drain(..end + 4);
                        r.fetch_add(1, Ordering::SeqCst);
                        let (reply, close): (&[u8], bool) = match answer {
                            Answer::KeepAlive => {
                                (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", false)
                            }
                            Answer::ThenClose => {
                                (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", true)
                            }
                            Answer::ConnectionClose => (
                                b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok",
                                true,
                            ),
                            Answer::Hangup => (b"", true),
                            Answer::Big => (
                                b"HTTP/1.1 200 OK\r\ncontent-length: 64\r\n\r\n\
                                  0123456789012345678901234567890123456789012345678901234567890123",
                                false,
                            ),
                        };
                        if sock.write_all(reply).await.is_err() || close {
                            break;
                        }
                    }
                    drop(sock);
                    let _ = tx.send(());
                });
            }
        });
        Server {
            url,
            connections,
            requests,
            closed,
        }
    }

    fn upstream_with(url: &str, extra: &str) -> Upstream {
        let cfg: UpstreamConfig =
            toml::from_str(&format!("url = {url:?}\n{extra}")).expect("an upstream config");
        Upstream::new("up", &cfg).unwrap()
    }

    fn request(method: Method) -> UpstreamRequest {
        UpstreamRequest {
            method,
            path_and_query: "/x".into(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    #[tokio::test]
    async fn calls_one_after_another_share_one_connection() {
        let s = server(Answer::KeepAlive).await;
        let up = upstream_with(&s.url, "");
        for _ in 0..5 {
            let r = up.call(request(Method::GET)).await.unwrap();
            assert_eq!((r.status, &r.body[..]), (StatusCode::OK, &b"ok"[..]));
        }
        assert_eq!(s.requests.load(Ordering::SeqCst), 5);
        assert_eq!(s.connections.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn idle_connections_are_kept_up_to_the_pool_size() {
        let s = server(Answer::KeepAlive).await;
        let up = upstream_with(&s.url, "pool_max_idle_per_host = 2");
        for _ in 0..2 {
            // Four at once need four connections; only two are kept for the next four.
            let calls = (0..4).map(|_| up.call(request(Method::GET)));
            for r in futures_util::future::join_all(calls).await {
                assert_eq!(r.unwrap().status, StatusCode::OK);
            }
        }
        assert_eq!(s.connections.load(Ordering::SeqCst), 4 + 2);
    }

    #[tokio::test]
    async fn a_connection_the_upstream_closed_while_idle_is_replaced_without_an_error() {
        let mut s = server(Answer::ThenClose).await;
        let up = upstream_with(&s.url, "");
        for i in 1..=3 {
            let r = up.call(request(Method::POST)).await;
            assert_eq!(r.unwrap().status, StatusCode::OK, "call {i}");
            // The upstream has closed it (the client has not yet noticed: it is idle).
            s.closed.recv().await.unwrap();
        }
        assert_eq!(s.requests.load(Ordering::SeqCst), 3, "each sent once");
        assert_eq!(s.connections.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn connection_close_answers_are_not_kept() {
        let s = server(Answer::ConnectionClose).await;
        let up = upstream_with(&s.url, "");
        for _ in 0..3 {
            assert_eq!(
                up.call(request(Method::GET)).await.unwrap().status,
                StatusCode::OK
            );
        }
        assert_eq!(s.connections.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_request_the_upstream_took_without_answering_is_not_sent_again() {
        for method in [Method::GET, Method::POST] {
            let s = server(Answer::Hangup).await;
            let up = upstream_with(&s.url, "");
            match up.call(request(method.clone())).await {
                Err(UpstreamError::Connect { upstream, .. }) => assert_eq!(upstream, "up"),
                other => panic!("{method}: {other:?}"),
            }
            assert_eq!(s.requests.load(Ordering::SeqCst), 1, "{method}");
        }
    }

    #[tokio::test]
    async fn an_answer_over_the_body_limit_is_refused() {
        let s = server(Answer::Big).await;
        let up = upstream_with(&s.url, "body_limit = 63");
        match up.call(request(Method::GET)).await {
            Err(UpstreamError::InvalidResponse { detail, .. }) => {
                assert!(detail.contains("reading the body failed"), "{detail}")
            }
            other => panic!("{other:?}"),
        }
        let up = upstream_with(&s.url, "body_limit = 64");
        assert_eq!(up.call(request(Method::GET)).await.unwrap().body.len(), 64);
    }

    #[tokio::test]
    async fn a_connection_idle_past_the_timeout_is_not_used() {
        let s = server(Answer::KeepAlive).await;
        let up = upstream_with(&s.url, "pool_idle_timeout = \"30s\"");
        up.call(request(Method::GET)).await.unwrap();
        up.call(request(Method::GET)).await.unwrap();
        assert_eq!(s.connections.load(Ordering::SeqCst), 1);
        tokio::time::pause();
        tokio::time::advance(Duration::from_secs(30)).await;
        tokio::time::resume();
        up.call(request(Method::GET)).await.unwrap();
        assert_eq!(s.connections.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        // A port that was just free: nothing listens there.
        let port = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let up = upstream_with(&format!("http://127.0.0.1:{port}"), "");
        assert!(matches!(
            up.call(request(Method::GET)).await,
            Err(UpstreamError::Connect { .. })
        ));
    }
}
