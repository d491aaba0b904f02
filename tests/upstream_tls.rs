//! TLS to upstreams, end to end: a TLS upstream on 127.0.0.1 with a certificate from a
//! private CA made here (rcgen), reached through a Rosetta route; an untrusted certificate,
//! a missing client certificate, and credentials over plain http refused.

mod common;

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use common::{Env, Resp, start_with};
use rosetta::config::{Config, ConfigError, UpstreamAuthConfig, UpstreamConfig};

/// A CA, its certificate written as PEM, and certificates it signs.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
    pem: PathBuf,
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        let cert = params.self_signed(&key).unwrap();
        let pem = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&pem, cert.pem()).unwrap();
        Self { cert, key, pem }
    }

    /// A leaf certificate for `names` (an IP gives an IP SAN) and its key.
    fn issue(
        &self,
        names: &[&str],
        usage: ExtendedKeyUsagePurpose,
    ) -> (rcgen::Certificate, KeyPair) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert, key)
    }

    /// A client certificate and key for Rosetta, written as PEM: (cert, key) paths.
    fn client_files(&self, dir: &Path) -> (PathBuf, PathBuf) {
        let (cert, key) = self.issue(&["rosetta"], ExtendedKeyUsagePurpose::ClientAuth);
        let (c, k) = (dir.join("client.pem"), dir.join("client-key.pem"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }
}

#[allow(deprecated)] // ring's provider: the one Rosetta builds with
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS upstream on 127.0.0.1: `POST /token` issues a token, anything else answers
/// `{"ok": true}`. It counts the HTTP requests it read and reports each handshake.
struct TlsUpstream {
    url: String,
    requests: Arc<AtomicUsize>,
    token_requests: Arc<AtomicUsize>,
    /// The `Authorization` of the last non-token request.
    authorization: Arc<Mutex<Option<String>>>,
    /// One message per handshake: `Ok` or the server's view of the failure.
    handshakes: mpsc::UnboundedReceiver<Result<(), String>>,
}

async fn tls_upstream(ca: &Ca, client_ca: Option<&Ca>) -> TlsUpstream {
    let (cert, key) = ca.issue(&["127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth);
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(client_ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(client_ca.cert.der().clone()).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let token_requests = Arc::new(AtomicUsize::new(0));
    let authorization = Arc::new(Mutex::new(None));
    let (tx, handshakes) = mpsc::unbounded_channel();
    let (r, t, a) = (
        requests.clone(),
        token_requests.clone(),
        authorization.clone(),
    );
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            let (r, t, a) = (r.clone(), t.clone(), a.clone());
            tokio::spawn(async move {
                let tls = match acceptor.accept(tcp).await {
                    Ok(tls) => {
                        let _ = tx.send(Ok(()));
                        tls
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let body = if req.uri().path() == "/token" {
                        t.fetch_add(1, Ordering::SeqCst);
                        json!({"access_token": "tls-token", "token_type": "Bearer", "expires_in": 3600})
                    } else {
                        r.fetch_add(1, Ordering::SeqCst);
                        *a.lock() = req
                            .headers()
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned);
                        json!({"ok": true})
                    };
                    let resp = Response::builder()
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from(body.to_string())))
                        .unwrap();
                    async move { Ok::<_, Infallible>(resp) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    TlsUpstream {
        url,
        requests,
        token_requests,
        authorization,
        handshakes,
    }
}

impl TlsUpstream {
    /// The next handshake's outcome, as the server saw it.
    async fn next_handshake(&mut self) -> Result<(), String> {
        tokio::time::timeout(Duration::from_secs(10), self.handshakes.recv())
            .await
            .expect("a handshake was attempted")
            .expect("the server runs")
    }
}

/// A gateway with only the passthrough route (`GET /pass/static` → AppDirect `GET /static`,
/// answered in the AppDirect dialect), AppDirect pointed at `url` and adjusted by `tls`.
async fn gateway(url: &str, tls: impl FnOnce(&mut UpstreamConfig)) -> Env {
    start_with(|c| {
        c.packs = vec!["bench-passthrough".into()];
        let up = c.upstreams.get_mut("appdirect").expect("appdirect");
        up.url = url.to_owned();
        tls(up);
    })
    .await
}

/// Asserts the AppDirect dialect's 502.
fn assert_bad_gateway(r: &Resp) {
    assert_eq!(r.status, 502, "{}", String::from_utf8_lossy(&r.body));
    let doc = r.json();
    assert_eq!(doc["code"], "BAD_GATEWAY", "{doc}");
    assert_eq!(doc["traceCode"].as_str(), r.header("x-trace-code"), "{doc}");
    assert!(
        doc["message"].as_str().unwrap().contains("appdirect"),
        "{doc}"
    );
}

#[tokio::test]
async fn a_private_ca_in_ca_file_lets_calls_and_token_requests_through_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "private");
    let mut up = tls_upstream(&ca, None).await;
    let env = gateway(&up.url, |u| {
        u.ca_file = Some(ca.pem.clone());
        // The token endpoint is on the same TLS server: the same CA must hold for it.
        u.auth = UpstreamAuthConfig::Oauth2 {
            token_url: format!("{}/token", up.url),
            client_id: "rosetta".into(),
            client_secret: "s3cret".into(),
            scope: None,
            refresh_skew: Duration::from_secs(30),
        };
    })
    .await;
    for _ in 0..2 {
        let r = env.get("/pass/static").await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json(), json!({"ok": true}));
    }
    assert_eq!(up.next_handshake().await, Ok(()));
    assert_eq!(up.requests.load(Ordering::SeqCst), 2);
    assert_eq!(up.token_requests.load(Ordering::SeqCst), 1);
    assert_eq!(
        up.authorization.lock().as_deref(),
        Some("Bearer tls-token"),
        "the token fetched over TLS is the one sent"
    );
}

#[tokio::test]
async fn a_certificate_from_a_ca_not_trusted_is_502_and_no_request_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "private");
    let other = Ca::new(dir.path(), "other");
    // The public roots only, then another private CA: neither signed the server's certificate.
    for ca_file in [None, Some(other.pem.clone())] {
        let mut up = tls_upstream(&ca, None).await;
        let env = gateway(&up.url, |u| u.ca_file = ca_file.clone()).await;
        assert_bad_gateway(&env.get("/pass/static").await);
        let seen = up.next_handshake().await;
        assert!(seen.is_err(), "{ca_file:?}: the handshake failed: {seen:?}");
        assert_eq!(
            up.requests.load(Ordering::SeqCst),
            0,
            "{ca_file:?}: no HTTP request reached the server"
        );
        env.stop().await;
    }
}

#[tokio::test]
async fn mutual_tls_presents_the_client_certificate_and_is_refused_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "private");
    let clients = Ca::new(dir.path(), "clients");
    let (cert, key) = clients.client_files(dir.path());
    let mut up = tls_upstream(&ca, Some(&clients)).await;

    let with_cert = gateway(&up.url, |u| {
        u.ca_file = Some(ca.pem.clone());
        u.client_cert = Some(cert.clone());
        u.client_key = Some(key.clone());
    })
    .await;
    let r = with_cert.get("/pass/static").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(up.next_handshake().await, Ok(()));
    assert_eq!(up.requests.load(Ordering::SeqCst), 1);
    with_cert.stop().await;

    let without = gateway(&up.url, |u| u.ca_file = Some(ca.pem.clone())).await;
    assert_bad_gateway(&without.get("/pass/static").await);
    let seen = up.next_handshake().await;
    assert!(seen.is_err(), "the server refused the handshake: {seen:?}");
    assert_eq!(
        up.requests.load(Ordering::SeqCst),
        1,
        "nothing more was read"
    );
}

#[test]
fn credentials_over_plain_http_to_another_host_are_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let text = |extra: &str| {
        format!(
            "[upstreams.partner]\nurl = \"http://api.partner.example\"\n{extra}\n\
             [upstreams.partner.auth]\ntype = \"header\"\nname = \"Authorization\"\n\
             value = \"Bearer s3cret\"\n"
        )
    };
    match Config::from_toml(&text(""), dir.path()) {
        Err(ConfigError::Invalid(m)) => {
            assert!(m.contains("upstreams.partner"), "{m}");
            assert!(m.contains("allow_insecure_auth"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    Config::from_toml(&text("allow_insecure_auth = true"), dir.path())
        .expect("allowed when the upstream says so");

    // The shipped config, its OAuth2 upstream moved to another host over http.
    let env = [(
        "ROSETTA__UPSTREAMS__REDAPI__URL".to_owned(),
        "http://redapi.internal:7002".to_owned(),
    )];
    match Config::load_with_env(Path::new("config/rosetta.toml"), env) {
        Err(ConfigError::Invalid(m)) => assert!(m.contains("upstreams.redapi.auth"), "{m}"),
        other => panic!("{other:?}"),
    }
    Config::load_with_env(Path::new("config/rosetta.toml"), Vec::new())
        .expect("the shipped config loads");
}
