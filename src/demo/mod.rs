//! Sample backends for `rosetta demo` and the end-to-end tests: an AppDirect, a new
//! RedAPI, a LongJump and a Fusion DRaaS, real HTTP servers on ephemeral ports with
//! in-memory data seeded as a believable company hierarchy (see [`data`]).
//!
//! They impersonate external services, so they share no code with the gateway's dialects
//! or paging: a bug in Rosetta's paging cannot hide behind the same bug in the fake. Each
//! server records every request ([`RequestLog`]) and takes injected faults ([`Faults`]) so
//! tests can check what reached the upstream and make it fail, stall or talk nonsense.

mod appdirect;
pub mod canned;
pub mod data;
pub mod fusion;
pub mod longjump;
mod redapi;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub use data::{CUSTOMER_ID, DEMO_COMPANY_KEY, DISTRIBUTOR_ID, PARTNER_ID, PARTNER2_ID};

/// OAuth2 client of the sample RedAPI.
pub const REDAPI_CLIENT_ID: &str = "rosetta-demo";
/// Its secret (a demo value, printed nowhere).
pub const REDAPI_CLIENT_SECRET: &str = "demo-secret";

/// A fresh API key for the demo user, from the CSPRNG.
pub fn random_key() -> String {
    use rand::Rng;
    let bytes: [u8; 24] = rand::rng().random();
    format!("rk_{}", hex::encode(bytes))
}

/// One request as the sample backend received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// The request's method.
    pub method: Method,
    /// The path, without the query.
    pub path: String,
    /// The raw query string (empty when there is none).
    pub query: String,
    /// `authorization`, `traceparent`, `content-type`, `x-request-id` when present.
    pub headers: Vec<(String, String)>,
    /// The body, as received.
    pub body: Bytes,
    /// When it arrived.
    pub at: tokio::time::Instant,
}

/// Every request a sample backend received.
#[derive(Debug, Clone, Default)]
pub struct RequestLog(Arc<Mutex<Vec<RecordedRequest>>>);

impl RequestLog {
    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.0.lock().clone()
    }

    /// Requests with `method` whose path starts with `prefix`.
    pub fn count(&self, method: &Method, prefix: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == *method && r.path.starts_with(prefix))
            .count()
    }

    /// Forgets every request recorded so far.
    pub fn clear(&self) {
        {
            let mut v = self.0.lock();
            v.clear();
        }
    }
}

/// What an injected fault does.
#[derive(Debug, Clone)]
pub enum FaultKind {
    /// Answer this status and JSON body instead.
    Status(u16, Value),
    /// Answer normally, after this delay.
    Delay(Duration),
    /// Answer 200 with an HTML page.
    NotJson,
    /// Answer 200 with this text as `application/json`, byte for byte (spacing, number
    /// spelling, escapes: what a value would not keep).
    JsonText(String),
    /// Answer normally, with this header added (e.g. `Cache-Control`).
    Header(String, String),
}

/// A fault for requests matching `method` (any when `None`) and `path_prefix`.
#[derive(Debug, Clone)]
pub struct Fault {
    /// Only requests with this method; `None` for any.
    pub method: Option<Method>,
    /// Only requests whose path starts with this.
    pub path_prefix: String,
    /// What the fault does.
    pub kind: FaultKind,
    /// How many requests it applies to; `None` for all.
    pub times: Option<u32>,
}

/// Injected faults, checked before normal handling.
#[derive(Debug, Clone, Default)]
pub struct Faults(Arc<Mutex<Vec<Fault>>>);

impl Faults {
    /// Adds a fault, checked after those already there.
    pub fn push(&self, fault: Fault) {
        {
            let mut v = self.0.lock();
            v.push(fault);
        }
    }

    /// Removes every fault.
    pub fn clear(&self) {
        {
            let mut v = self.0.lock();
            v.clear();
        }
    }

    fn take(&self, method: &Method, path: &str) -> Option<FaultKind> {
        let mut v = self.0.lock();
        let i = v.iter().position(|f| {
            f.method.as_ref().is_none_or(|m| m == method) && path.starts_with(&f.path_prefix)
        })?;
        let kind = v[i].kind.clone();
        match &mut v[i].times {
            Some(1) => {
                v.remove(i);
            }
            Some(n) => *n -= 1,
            None => {}
        }
        Some(kind)
    }
}

/// A parsed request handed to a sample backend.
pub struct Inbound {
    /// The request's method.
    pub method: Method,
    /// The path's segments, percent-decoded.
    pub segments: Vec<String>,
    /// The query parameters, in order.
    pub query: Vec<(String, String)>,
    /// The request's headers.
    pub headers: http::HeaderMap,
    /// The body, as received.
    pub body: Bytes,
}

impl Inbound {
    /// First value of query parameter `k`.
    pub fn q(&self, k: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(a, _)| a == k)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (null when empty or not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// A handler's answer: status and JSON body (`Value::Null` for no body).
pub type Answer = (u16, Value);

type Handler = Arc<dyn Fn(&Inbound) -> Answer + Send + Sync>;

/// A running sample backend.
pub struct DemoServer {
    addr: SocketAddr,
    log: RequestLog,
    faults: Faults,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    /// Backend-specific controls (RedAPI token revocation).
    pub(crate) tokens: Option<redapi::Tokens>,
    /// Requests being handled now, and the most ever at once.
    gauge: Arc<(AtomicUsize, AtomicUsize)>,
}

impl DemoServer {
    /// The address the backend listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The requests it received.
    pub fn log(&self) -> &RequestLog {
        &self.log
    }

    /// Its injected faults.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// The most requests this backend has handled at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.gauge.1.load(Ordering::SeqCst)
    }

    /// RedAPI only: how many token requests it answered.
    pub fn token_requests(&self) -> usize {
        self.tokens
            .as_ref()
            .map(redapi::Tokens::issued)
            .unwrap_or(0)
    }

    /// RedAPI only: makes every issued token invalid (the gateway must refresh).
    pub fn revoke_tokens(&self) {
        if let Some(t) = &self.tokens {
            t.revoke_all();
        }
    }

    /// Stops the backend and waits for it to finish.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// How a sample backend writes its bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    /// A LongJump `<platform>` document (the handler's value in the dialect's JSON shape).
    LongJumpXml,
}

/// Starts the sample AppDirect.
pub async fn start_appdirect() -> std::io::Result<DemoServer> {
    let state = Arc::new(Mutex::new(data::seed()));
    let handler: Handler = Arc::new(move |req| appdirect::handle(&state, req));
    start(handler, None, Format::Json).await
}

/// Starts the sample LongJump (XML) backend.
pub async fn start_longjump() -> std::io::Result<DemoServer> {
    let state = Arc::new(Mutex::new(longjump::seed()));
    let handler: Handler = Arc::new(move |req| longjump::handle(&state, req));
    start(handler, None, Format::LongJumpXml).await
}

/// Starts the sample Fusion DRaaS backend (seed 004); only [`fusion::FUSION_TOKEN`] is let in.
pub async fn start_fusion() -> std::io::Result<DemoServer> {
    let state = Arc::new(Mutex::new(fusion::seed()));
    let handler: Handler = Arc::new(move |req| fusion::handle(&state, req));
    start(handler, None, Format::Json).await
}

/// Starts the sample RedAPI; only `client_id`/`client_secret` get tokens.
pub async fn start_redapi(client_id: &str, client_secret: &str) -> std::io::Result<DemoServer> {
    let tokens = redapi::Tokens::new(client_id, client_secret);
    let state = Arc::new(Mutex::new(redapi::State::seed()));
    let t = tokens.clone();
    let handler: Handler = Arc::new(move |req| redapi::handle(&state, &t, req));
    start(handler, Some(tokens), Format::Json).await
}

async fn start(
    handler: Handler,
    tokens: Option<redapi::Tokens>,
    format: Format,
) -> std::io::Result<DemoServer> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (log, faults) = (RequestLog::default(), Faults::default());
    let (stop, mut stopped) = oneshot::channel::<()>();
    let (l2, f2) = (log.clone(), faults.clone());
    let gauge: Arc<(AtomicUsize, AtomicUsize)> = Arc::default();
    let g2 = gauge.clone();
    let task = tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = &mut stopped => break,
            };
            let Ok((stream, _)) = accepted else { continue };
            let (h, l, f, g) = (handler.clone(), l2.clone(), f2.clone(), g2.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let g = g.clone();
                    let now = g.0.fetch_add(1, Ordering::SeqCst) + 1;
                    g.1.fetch_max(now, Ordering::SeqCst);
                    let fut = serve_one(h.clone(), l.clone(), f.clone(), format, req);
                    async move {
                        let r = fut.await;
                        g.0.fetch_sub(1, Ordering::SeqCst);
                        r
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(DemoServer {
        addr,
        log,
        faults,
        stop: Some(stop),
        task,
        tokens,
        gauge,
    })
}

async fn serve_one(
    handler: Handler,
    log: RequestLog,
    faults: Faults,
    format: Format,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let path = parts.uri.path().to_owned();
    let query_raw = parts.uri.query().unwrap_or("").to_owned();
    let headers = [
        "authorization",
        "traceparent",
        "content-type",
        "x-request-id",
    ]
    .iter()
    .filter_map(|h| {
        parts
            .headers
            .get(*h)
            .and_then(|v| v.to_str().ok())
            .map(|v| ((*h).to_owned(), v.to_owned()))
    })
    .collect();
    {
        let mut v = log.0.lock();
        v.push(RecordedRequest {
            method: parts.method.clone(),
            path: path.clone(),
            query: query_raw.clone(),
            headers,
            body: body.clone(),
            at: crate::clock::now(),
        });
    }
    let fault = faults.take(&parts.method, &path);
    match &fault {
        Some(FaultKind::Status(s, v)) => return Ok(respond(format, *s, v)),
        Some(FaultKind::NotJson) => {
            let mut r = Response::new(Full::new(Bytes::from_static(
                b"<html><body>502 Bad Gateway</body></html>",
            )));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/html"),
            );
            return Ok(r);
        }
        Some(FaultKind::JsonText(text)) => {
            let mut r = Response::new(Full::new(Bytes::from(text.clone())));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            return Ok(r);
        }
        Some(FaultKind::Delay(d)) => tokio::time::sleep(*d).await,
        Some(FaultKind::Header(..)) => {}
        None => {}
    }
    let inbound = Inbound {
        method: parts.method,
        segments: path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .collect(),
        query: form_urlencoded::parse(query_raw.as_bytes())
            .into_owned()
            .collect(),
        headers: parts.headers,
        body,
    };
    let (status, value) = handler(&inbound);
    let mut resp = respond(format, status, &value);
    if let Some(FaultKind::Header(name, value)) = &fault
        && let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(value),
        )
    {
        resp.headers_mut().append(n, v);
    }
    Ok(resp)
}

fn respond(format: Format, status: u16, v: &Value) -> Response<Full<Bytes>> {
    match format {
        Format::Json => json_response(status, v),
        Format::LongJumpXml => {
            let mut r = Response::new(Full::new(crate::dialect::longjump_document(v)));
            *r.status_mut() =
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/xml; charset=utf-8"),
            );
            r
        }
    }
}

fn json_response(status: u16, v: &Value) -> Response<Full<Bytes>> {
    let body = if v.is_null() {
        Bytes::new()
    } else {
        Bytes::from(serde_json::to_vec(v).unwrap_or_default())
    };
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if !v.is_null() {
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
    }
    r
}

/// An error body in the style of the sample backends.
pub(crate) fn error(status: u16, code: &str, message: impl Into<String>) -> Answer {
    (
        status,
        serde_json::json!({"code": code, "message": message.into()}),
    )
}

/// A query integer, or the default.
pub(crate) fn q_usize(req: &Inbound, k: &str, default: usize) -> Result<usize, Answer> {
    match req.q(k) {
        None | Some("") => Ok(default),
        Some(v) => v.parse().map_err(|_| {
            error(
                400,
                "BAD_REQUEST",
                format!("{k} must be a non-negative integer"),
            )
        }),
    }
}
