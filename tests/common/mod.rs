//! End-to-end harness: the sample backends and a Rosetta gateway on 127.0.0.1 ephemeral
//! ports, and a small HTTP client. Nothing here sleeps: every server is bound before use.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::net::TcpListener;

use rosetta::config::{Config, StaticKeyConfig};
use rosetta::demo::DemoServer;
use rosetta::gateway::stack::Gateway;
use rosetta::server::{RunningServer, ServerOptions, spawn};

pub const KEY: &str = "test-key-northwind";
/// The bootstrap administrator every test environment starts with.
pub const ROOT: (&str, &str) = ("root", "root-password");
pub const OTHER_KEY: &str = "test-key-other";
/// PARTNER keys of Contoso Partners and of its sibling Fabrikam Solutions (both under
/// Northwind), an AUDITOR and a USER of Northwind, and an ADMIN of a company no upstream knows.
pub const CONTOSO_KEY: &str = "test-key-contoso";
pub const FABRIKAM_KEY: &str = "test-key-fabrikam";
pub const AUDITOR_KEY: &str = "test-key-auditor";
pub const USER_KEY: &str = "test-key-user";
pub const ADMIN_KEY: &str = "test-key-admin";

pub struct Env {
    pub gateway: RunningServer,
    pub admin: RunningServer,
    pub admin_base: String,
    /// The gateway the servers run (its store, for flushes and direct checks).
    pub gw: Gateway,
    pub cfg: Config,
    /// Holds the store's folder for the environment's lifetime.
    pub dir: Arc<tempfile::TempDir>,
    pub appdirect: DemoServer,
    pub redapi: DemoServer,
    pub longjump: DemoServer,
    pub fusion: DemoServer,
    client: Client<HttpConnector, Full<Bytes>>,
    pub base: String,
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    /// Asserts an admin error (seed 003 `tracedata`) with `status`; returns the message.
    pub fn assert_admin_error(&self, status: u16) -> String {
        assert_eq!(
            self.status.as_u16(),
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        let doc = self.json();
        assert_eq!(
            doc["tracedata"]["code"].as_str(),
            self.header("x-trace-code"),
            "{doc}"
        );
        assert_eq!(doc["tracedata"]["service"], "ROSETTA_ADMIN");
        assert!(doc["tracedata"]["time"].is_string());
        doc["message"].as_str().unwrap_or_default().to_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a V1 problem-details error with `status`.
    pub fn assert_problem(&self, status: u16) -> Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json")
        );
        let doc = self.json();
        assert_eq!(doc["status"], status);
        assert!(
            doc["title"].is_string() && doc["type"].is_string() && doc["detail"].is_string(),
            "{doc}"
        );
        assert_eq!(
            doc["traceId"].as_str(),
            self.header("x-trace-code"),
            "problem carries the tracecode"
        );
        doc
    }
}

/// Starts the backends and a gateway over the shipped configuration.
pub async fn start() -> Env {
    start_with(|_| {}).await
}

/// As [`start`], letting the test adjust the configuration first.
pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Env {
    start_in(Arc::new(tempfile::tempdir().unwrap()), adjust).await
}

/// As [`start_with`], with the store in `dir` (a restart test passes the same folder twice).
pub async fn start_in(dir: Arc<tempfile::TempDir>, adjust: impl FnOnce(&mut Config)) -> Env {
    let appdirect = rosetta::demo::start_appdirect().await.expect("appdirect");
    let redapi = rosetta::demo::start_redapi(
        rosetta::demo::REDAPI_CLIENT_ID,
        rosetta::demo::REDAPI_CLIENT_SECRET,
    )
    .await
    .expect("redapi");
    let longjump = rosetta::demo::start_longjump().await.expect("longjump");
    let fusion = rosetta::demo::start_fusion().await.expect("fusion");
    let mut cfg =
        Config::load_with_env(Path::new("config/rosetta.toml"), Vec::new()).expect("config");
    rosetta::cli::point_at_demo(
        &mut cfg,
        &rosetta::cli::DemoUrls {
            appdirect: appdirect.url(),
            redapi: redapi.url(),
            longjump: longjump.url(),
            fusion: fusion.url(),
        },
    );
    for (key, user, company, role) in [
        (
            KEY,
            "user-northwind",
            rosetta::demo::DEMO_COMPANY_KEY,
            "PARTNER",
        ),
        (OTHER_KEY, "user-nobody", "nobody", "PARTNER"),
        (CONTOSO_KEY, "user-contoso", "contoso", "PARTNER"),
        (FABRIKAM_KEY, "user-fabrikam", "fabrikam", "PARTNER"),
        (AUDITOR_KEY, "auditor-northwind", "northwind", "AUDITOR"),
        (USER_KEY, "reader-northwind", "northwind", "USER"),
        (ADMIN_KEY, "admin-system", "system", "ADMIN"),
    ] {
        cfg.identity.static_keys.push(StaticKeyConfig {
            sha256: rosetta::identity::sha256_hex(key),
            user: user.into(),
            company: company.into(),
            roles: vec![role.into()],
        });
    }
    cfg.store.path = dir.path().join("rosetta.db");
    cfg.admin.bootstrap_user = Some(ROOT.0.into());
    cfg.admin.bootstrap_password = Some(ROOT.1.into());
    // Tests fire requests faster than AppDirect's 5/s; the rate-limit tests set their own.
    if let Some(d) = cfg.rate_limits.get_mut("default") {
        d.burst = 1_000_000;
    }
    // Nor do they wait on AppDirect's limit for Rosetta's own calls (tests/ratelimit.rs
    // shapes an upstream on purpose).
    if let Some(d) = cfg.rate_limits.get_mut("appdirect-upstream") {
        d.burst = 1_000_000;
    }
    adjust(&mut cfg);
    let gateway = Gateway::from_config(&cfg).expect("gateway builds");
    gateway.bootstrap(&cfg.admin).await.expect("bootstrap");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = spawn(
        listener,
        gateway.service(),
        ServerOptions::from(&cfg.server),
    )
    .await;
    let base = format!("http://{}", server.addr());
    let admin_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = spawn(
        admin_listener,
        gateway.admin().service(),
        ServerOptions::from(&cfg.server),
    )
    .await;
    let admin_base = format!("http://{}", admin.addr());
    warm_reaches(&gateway).await;
    for up in [&appdirect, &redapi, &longjump, &fusion] {
        up.log().clear();
    }
    let client = Client::builder(TokioExecutor::new()).build_http();
    Env {
        gateway: server,
        admin,
        admin_base,
        gw: gateway,
        cfg,
        dir,
        appdirect,
        redapi,
        longjump,
        fusion,
        client,
        base,
    }
}

/// Resolves the test key's reach in every pack before the test starts (its upstream calls are
/// then not in the backends' logs): tests that count what a request sends upstream count
/// the route's own calls. `tests/tenancy.rs` sees reaches resolved cold.
async fn warm_reaches(gateway: &Gateway) {
    let principal = rosetta::identity::Principal {
        user: "user-northwind".into(),
        company: rosetta::demo::DEMO_COMPANY_KEY.into(),
        roles: std::sync::Arc::from(vec!["PARTNER".to_owned()]),
        key_id: None,
    };
    let meta = rosetta::context::RequestMeta::new(None);
    for reach in &gateway.catalog.reaches {
        // A test pointing an upstream nowhere resolves nothing: its requests will say so.
        let _ = reach.resolve(&principal, &*gateway.upstreams, &meta).await;
    }
}

impl Env {
    /// Makes AppDirect answer 500 to the next `times` calls (every call when `None`).
    pub fn appdirect_fails(&self, times: Option<u32>) {
        self.appdirect.faults().push(rosetta::demo::Fault {
            method: None,
            path_prefix: "/api".into(),
            kind: rosetta::demo::FaultKind::Status(500, serde_json::json!({"message": "boom"})),
            times,
        });
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Resp {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self
            .client
            .request(req.body(Full::new(body.into())).unwrap())
            .await
            .expect("gateway answers");
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        Resp {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(
            Method::GET,
            path,
            &[("authorization", &format!("Bearer {KEY}"))],
            Bytes::new(),
        )
        .await
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let auth = format!("Bearer {KEY}");
        match body {
            Some(b) => {
                self.send(
                    method,
                    path,
                    &[
                        ("authorization", &auth),
                        ("content-type", "application/json"),
                    ],
                    serde_json::to_vec(&b).unwrap(),
                )
                .await
            }
            None => {
                self.send(method, path, &[("authorization", &auth)], Bytes::new())
                    .await
            }
        }
    }

    /// An admin API call as `auth` (`("Basic", "user:pass")` or `("Bearer", key)`), as a
    /// client that is not a browser makes it: a POST, PUT or PATCH says it sends JSON even
    /// without a body (the admin API refuses any other write with 415).
    pub async fn admin_call(
        &self,
        method: Method,
        path: &str,
        auth: Option<(&str, &str)>,
        body: Option<Value>,
    ) -> Resp {
        let json_write = [Method::POST, Method::PUT, Method::PATCH].contains(&method);
        let headers: &[(&str, &str)] = if json_write || body.is_some() {
            &[("content-type", "application/json")]
        } else {
            &[]
        };
        let bytes = body.map_or_else(Bytes::new, |b| Bytes::from(serde_json::to_vec(&b).unwrap()));
        self.admin_send(method, path, auth, headers, bytes).await
    }

    /// An admin API request with exactly `headers` (besides the credentials) and `body`.
    pub async fn admin_send(
        &self,
        method: Method,
        path: &str,
        auth: Option<(&str, &str)>,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Resp {
        use base64::Engine;
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.admin_base));
        match auth {
            Some(("Basic", up)) => {
                let enc = base64::engine::general_purpose::STANDARD.encode(up);
                req = req.header("authorization", format!("Basic {enc}"));
            }
            Some((scheme, cred)) => {
                req = req.header("authorization", format!("{scheme} {cred}"));
            }
            None => {}
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let bytes = body.into();
        let resp = self
            .client
            .request(req.body(Full::new(bytes)).unwrap())
            .await
            .expect("admin answers");
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        Resp {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// As the bootstrap administrator.
    pub async fn root(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let up = format!("{}:{}", ROOT.0, ROOT.1);
        self.admin_call(method, path, Some(("Basic", &up)), body)
            .await
    }

    /// Stops both servers gracefully and waits for the store to flush.
    pub async fn stop(self) {
        self.gateway.shutdown().await;
        self.admin.shutdown().await;
        self.gw.store.flush().await.expect("flush");
    }

    /// A request with `key` as its bearer, and a body of `content_type` when one is given.
    pub async fn as_key(
        &self,
        key: &str,
        method: Method,
        path: &str,
        body: Option<(&str, &str)>,
    ) -> Resp {
        let auth = format!("Bearer {key}");
        match body {
            Some((ct, text)) => {
                self.send(
                    method,
                    path,
                    &[("authorization", &auth), ("content-type", ct)],
                    Bytes::from(text.to_owned()),
                )
                .await
            }
            None => {
                self.send(method, path, &[("authorization", &auth)], Bytes::new())
                    .await
            }
        }
    }

    /// Every request the sample backends received so far, and then forgets them.
    pub fn take_upstream_requests(&self) -> Vec<rosetta::demo::RecordedRequest> {
        let mut all = Vec::new();
        for up in [&self.appdirect, &self.redapi, &self.longjump, &self.fusion] {
            all.extend(up.log().requests());
            up.log().clear();
        }
        all
    }

    /// How many requests the AppDirect sample has received so far.
    pub fn appdirect_calls(&self) -> usize {
        self.appdirect.log().requests().len()
    }

    pub fn redapi_calls(&self) -> usize {
        self.redapi.log().requests().len()
    }
}

/// Asserts that `value` has every field of `example` with the same JSON type, recursively
/// (arrays: every element against the example's first). `nullable` fields may be null.
pub fn assert_shape(value: &Value, example: &Value, nullable: &[&str]) {
    check_shape(value, example, nullable, "$");
}

fn check_shape(value: &Value, example: &Value, nullable: &[&str], at: &str) {
    match example {
        Value::Object(fields) => {
            let obj = value
                .as_object()
                .unwrap_or_else(|| panic!("{at}: expected an object, got {value}"));
            for (k, ex) in fields {
                let path = format!("{at}.{k}");
                let v = obj
                    .get(k)
                    .unwrap_or_else(|| panic!("{path}: missing in {value}"));
                if v.is_null() && nullable.contains(&k.as_str()) {
                    continue;
                }
                check_shape(v, ex, nullable, &path);
            }
        }
        Value::Array(items) => {
            let arr = value
                .as_array()
                .unwrap_or_else(|| panic!("{at}: expected an array, got {value}"));
            if let Some(ex) = items.first() {
                for (i, v) in arr.iter().enumerate() {
                    check_shape(v, ex, nullable, &format!("{at}[{i}]"));
                }
            }
        }
        Value::String(_) => assert!(value.is_string(), "{at}: expected a string, got {value}"),
        Value::Number(_) => assert!(value.is_number(), "{at}: expected a number, got {value}"),
        Value::Bool(_) => assert!(value.is_boolean(), "{at}: expected a boolean, got {value}"),
        Value::Null => {}
    }
}

pub fn shared<T>(t: T) -> Arc<T> {
    Arc::new(t)
}

impl Resp {
    /// Asserts a LongJump `<platform>` answer with `status` and result `code`; returns the
    /// document (envelope removed, every `<tenant>` in a list).
    pub fn assert_lj(&self, status: u16, code: i32) -> Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        assert!(
            self.header("content-type")
                .is_some_and(|c| c.starts_with("application/xml")),
            "content-type {:?}",
            self.header("content-type")
        );
        let doc = lj_doc(&self.body);
        assert_eq!(doc["message"]["code"], code.to_string(), "{doc}");
        if code != 0 {
            assert_eq!(
                doc["message"]["traceCode"].as_str(),
                self.header("x-trace-code"),
                "the error carries the tracecode"
            );
        }
        doc
    }
}

/// Reads a LongJump document the way a strict client would: nothing guessed.
pub fn lj_doc(body: &[u8]) -> Value {
    let rules = rosetta::dialect::xml::XmlRules::default()
        .unwrap("/platform")
        .array("/platform/tenant");
    rosetta::dialect::xml::xml_to_value(body, &rules).unwrap_or_else(|e| {
        panic!(
            "not a LongJump document ({e}): {}",
            String::from_utf8_lossy(body)
        )
    })
}

/// `path?k=v&…`, form-encoded.
pub fn with_query(path: &str, pairs: &[(&str, &str)]) -> String {
    let q = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    format!("{path}?{q}")
}

impl Env {
    /// A LongJump XML request with the test key.
    pub async fn xml(&self, method: Method, path: &str, body: &str) -> Resp {
        let auth = format!("Bearer {KEY}");
        self.send(
            method,
            path,
            &[
                ("authorization", &auth),
                ("content-type", "application/xml"),
            ],
            Bytes::from(body.to_owned()),
        )
        .await
    }
}

/// A copy of the shipped pack `pack` under `dir/mappings`, each file's text passed through
/// `edit(file name, text)`; the copy's `mappings` folder, for `cfg.mappings_dir`.
pub fn pack_copy(
    dir: &Path,
    pack: &str,
    edit: impl Fn(&str, String) -> String,
) -> std::path::PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("mappings")
        .join(pack);
    let dst = dir.join("mappings").join(pack);
    std::fs::create_dir_all(&dst).unwrap();
    for f in std::fs::read_dir(&src).unwrap() {
        let f = f.unwrap().path();
        let name = f.file_name().unwrap().to_str().unwrap().to_owned();
        let text = edit(&name, std::fs::read_to_string(&f).unwrap());
        std::fs::write(dst.join(&name), text).unwrap();
    }
    dir.join("mappings")
}

impl Env {
    /// Creates PARTNER `ann` of company `northwind` (through the admin API, as root) with
    /// `password` and, when given, `quotas`; returns a fresh key of hers.
    pub async fn ann(&self, password: &str, quotas: Option<Value>) -> String {
        self.root(
            Method::POST,
            "/v1/companies",
            Some(serde_json::json!({"key": "northwind"})),
        )
        .await;
        let r = self
            .root(
                Method::POST,
                "/v1/users",
                Some(serde_json::json!({"username": "ann", "password": password,
                    "company_key": "northwind", "roles": ["PARTNER"]})),
            )
            .await;
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        if let Some(q) = quotas {
            let r = self
                .root(Method::PUT, "/v1/users/ann/quotas", Some(q))
                .await;
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        }
        self.root(Method::POST, "/v1/users/ann/keys", None)
            .await
            .json()["key"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}
