//! The pooled HTTP clients of one upstream: plain for `http://`, rustls for `https://`.
//!
//! Two client types behind one enum rather than one TLS-capable connector for both: a plain
//! upstream's connections stay bare TCP streams, with no per-read branch on a maybe-TLS
//! stream, and an `https://` client only ever speaks TLS (`https_only`), so no setting can
//! make it fall back to clear text. The TLS settings (roots, private CA, client
//! certificate) are read once when the upstream is built; a file that cannot be read or
//! holds no usable certificate is a load error naming the upstream and the key.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http::uri::Scheme;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Client, ResponseFuture};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use crate::config::{ConfigError, UpstreamConfig};

/// A pooled client of one upstream (or of its token endpoint), cheap to clone.
#[derive(Clone)]
pub struct HttpClient(Kind);

#[derive(Clone)]
enum Kind {
    Plain(Client<HttpConnector, Full<Bytes>>),
    Tls(Client<HttpsConnector<HttpConnector>, Full<Bytes>>),
}

impl HttpClient {
    /// Sends `req` on a pooled connection (a new one when none is idle).
    pub fn request(&self, req: Request<Full<Bytes>>) -> ResponseFuture {
        match &self.0 {
            Kind::Plain(c) => c.request(req),
            Kind::Tls(c) => c.request(req),
        }
    }
}

/// The clients of one upstream, made on first need per scheme and shared after: the
/// upstream's calls and its token requests use one pool when both are on the same scheme.
pub(super) struct Clients<'a> {
    name: &'a str,
    cfg: &'a UpstreamConfig,
    plain: Option<HttpClient>,
    tls: Option<HttpClient>,
}

impl<'a> Clients<'a> {
    pub(super) fn new(name: &'a str, cfg: &'a UpstreamConfig) -> Self {
        Self {
            name,
            cfg,
            plain: None,
            tls: None,
        }
    }

    /// The client for URLs of `scheme` (`http` or `https`; config validation refused others).
    pub(super) fn for_scheme(&mut self, scheme: &Scheme) -> Result<HttpClient, ConfigError> {
        if *scheme == Scheme::HTTPS {
            match &self.tls {
                Some(c) => Ok(c.clone()),
                None => {
                    let c = build(self.cfg, Some(tls_config(self.name, self.cfg)?));
                    self.tls = Some(c.clone());
                    Ok(c)
                }
            }
        } else if *scheme == Scheme::HTTP {
            Ok(self
                .plain
                .get_or_insert_with(|| build(self.cfg, None))
                .clone())
        } else {
            Err(ConfigError::Invalid(format!(
                "upstreams.{}: the scheme {scheme} is neither http nor https",
                self.name
            )))
        }
    }
}

/// A pooled client with the upstream's pool and connect settings, over TLS when `tls` is
/// given.
fn build(cfg: &UpstreamConfig, tls: Option<ClientConfig>) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(cfg.connect_timeout));
    connector.set_nodelay(true);
    connector.set_keepalive(Some(Duration::from_secs(60)));
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .pool_idle_timeout(cfg.pool_idle_timeout)
        .pool_max_idle_per_host(cfg.pool_max_idle_per_host)
        .pool_timer(TokioTimer::new());
    HttpClient(match tls {
        None => Kind::Plain(builder.build(connector)),
        Some(tls) => {
            // The TLS connector takes `https://` URIs to the TCP connector under it.
            connector.enforce_http(false);
            let https = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls)
                .https_only()
                .enable_http1()
                .wrap_connector(connector);
            Kind::Tls(builder.build(https))
        }
    })
}

/// The rustls settings of an upstream: its roots, its private CA, its client certificate.
fn tls_config(name: &str, cfg: &UpstreamConfig) -> Result<ClientConfig, ConfigError> {
    let invalid =
        |key: &str, why: String| ConfigError::Invalid(format!("upstreams.{name}.{key}: {why}"));
    let mut roots = RootCertStore::empty();
    if cfg.native_roots {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::warn!(upstream = name, error = %e, "a system root certificate could not be read");
        }
        let (added, _ignored) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            return Err(invalid(
                "native_roots",
                "the system has no usable root certificate".into(),
            ));
        }
    } else {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    if let Some(path) = &cfg.ca_file {
        let certs = read_certs(path).map_err(|why| invalid("ca_file", why))?;
        for c in certs {
            roots
                .add(c)
                .map_err(|e| invalid("ca_file", format!("{}: {e}", path.display())))?;
        }
    }
    // ring's provider lacks the post-quantum hybrid key exchange (X25519MLKEM768) that
    // aws-lc-rs has, hence rustls' deprecation note; ring builds with the C compiler alone
    // (aws-lc wants cmake, absent here). The suites and groups are rustls' safe defaults.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("url", format!("TLS cannot be set up: {e}")))?
        .with_root_certificates(roots);
    match (&cfg.client_cert, &cfg.client_key) {
        (Some(cert), Some(key)) => {
            let chain = read_certs(cert).map_err(|why| invalid("client_cert", why))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| invalid("client_key", format!("{}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| invalid("client_key", format!("does not fit client_cert: {e}")))
        }
        // Validation refused one without the other.
        (Some(_), None) | (None, Some(_)) | (None, None) => Ok(builder.with_no_client_auth()),
    }
}

/// Every certificate of a PEM file; none at all is an error (a wrong file, not an empty CA).
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> UpstreamConfig {
        toml::from_str(&format!("url = \"https://h\"\n{extra}")).expect("an upstream config")
    }

    fn error_of(c: &UpstreamConfig) -> String {
        match Clients::new("up", c).for_scheme(&Scheme::HTTPS) {
            Err(ConfigError::Invalid(m)) => m,
            Err(other) => panic!("{other:?}"),
            Ok(_) => panic!("built a client"),
        }
    }

    #[test]
    fn unreadable_or_empty_tls_files_are_load_errors_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificate here\n").unwrap();
        let m = error_of(&cfg(&format!("ca_file = {:?}", missing)));
        assert!(m.starts_with("upstreams.up.ca_file: "), "{m}");
        let m = error_of(&cfg(&format!("ca_file = {:?}", empty)));
        assert!(m.contains("holds no PEM certificate"), "{m}");
        let m = error_of(&cfg(&format!(
            "client_cert = {:?}\nclient_key = {:?}",
            empty, empty
        )));
        assert!(m.starts_with("upstreams.up.client_cert: "), "{m}");
    }

    #[test]
    fn one_client_per_scheme_is_made() {
        let c = cfg("");
        let mut clients = Clients::new("up", &c);
        let a = clients.for_scheme(&Scheme::HTTPS).unwrap();
        let b = clients.for_scheme(&Scheme::HTTP).unwrap();
        assert!(matches!(a.0, Kind::Tls(_)));
        assert!(matches!(b.0, Kind::Plain(_)));
    }
}
