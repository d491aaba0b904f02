//! Upstream credentials: a static header, Basic, or an OAuth2 client-credentials token.
//!
//! The token is cached until `refresh_skew` before it expires. Refreshes go through one
//! async mutex with a re-check inside, so any number of concurrent callers needing a token
//! cause one token request. A 401 invalidates the token only if it is still the one the
//! rejected call used: fifty concurrent 401s with the same stale token refresh once.

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full, Limited};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::HttpClient;
use super::client::Clients;
use crate::config::{ConfigError, UpstreamAuthConfig};
use crate::error::UpstreamError;

/// How calls to one upstream are authenticated.
pub struct UpstreamAuth {
    upstream: String,
    kind: Kind,
}

enum Kind {
    None,
    /// A header other than `Authorization` is added per request by [`UpstreamAuth::extra_header`].
    Header(HeaderName, HeaderValue),
    Authorization(HeaderValue),
    OAuth2(Box<OAuth2>),
}

struct OAuth2 {
    token_url: http::Uri,
    form: String,
    skew: Duration,
    timeout: Duration,
    client: HttpClient,
    cached: Mutex<Option<Token>>,
}

#[derive(Clone)]
struct Token {
    header: HeaderValue,
    refresh_at: Instant,
}

impl UpstreamAuth {
    pub(super) fn new(
        upstream: &str,
        cfg: &UpstreamAuthConfig,
        clients: &mut Clients<'_>,
        timeout: Duration,
    ) -> Result<Self, ConfigError> {
        let invalid =
            |what: &str| ConfigError::Invalid(format!("upstreams.{upstream}.auth: {what}"));
        let kind = match cfg {
            UpstreamAuthConfig::None => Kind::None,
            UpstreamAuthConfig::Header { name, value } => {
                let name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| invalid("bad header name"))?;
                let mut value =
                    HeaderValue::from_str(value).map_err(|_| invalid("bad header value"))?;
                value.set_sensitive(true);
                if name == http::header::AUTHORIZATION {
                    Kind::Authorization(value)
                } else {
                    Kind::Header(name, value)
                }
            }
            UpstreamAuthConfig::Basic { username, password } => {
                let raw = base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{password}"));
                let mut value = HeaderValue::from_str(&format!("Basic {raw}"))
                    .map_err(|_| invalid("bad credentials"))?;
                value.set_sensitive(true);
                Kind::Authorization(value)
            }
            UpstreamAuthConfig::Oauth2 {
                token_url,
                client_id,
                client_secret,
                scope,
                refresh_skew,
            } => {
                let token_url = token_url
                    .parse::<http::Uri>()
                    .map_err(|_| invalid("token_url is not a URL"))?;
                // The upstream's own TLS settings (its CA, its client certificate) hold for
                // its token endpoint; one pool when both are on the same scheme.
                let client = clients.for_scheme(
                    token_url
                        .scheme()
                        .ok_or_else(|| invalid("token_url is not an absolute URL"))?,
                )?;
                let mut form = form_urlencoded::Serializer::new(String::new());
                form.append_pair("grant_type", "client_credentials")
                    .append_pair("client_id", client_id)
                    .append_pair("client_secret", client_secret);
                if let Some(s) = scope {
                    form.append_pair("scope", s);
                }
                Kind::OAuth2(Box::new(OAuth2 {
                    token_url,
                    form: form.finish(),
                    skew: *refresh_skew,
                    timeout,
                    client,
                    cached: Mutex::new(None),
                }))
            }
        };
        Ok(Self {
            upstream: upstream.to_owned(),
            kind,
        })
    }

    /// Whether a 401 should trigger a refresh and one retry.
    pub fn refreshes(&self) -> bool {
        matches!(self.kind, Kind::OAuth2(_))
    }

    /// The `Authorization` value for the next call, fetching a token when needed.
    pub async fn credential(&self) -> Result<Option<HeaderValue>, UpstreamError> {
        match &self.kind {
            Kind::None => Ok(None),
            Kind::Header(..) => Ok(None),
            Kind::Authorization(v) => Ok(Some(v.clone())),
            Kind::OAuth2(o) => {
                let mut cached = o.cached.lock().await;
                if let Some(t) = cached
                    .as_ref()
                    .filter(|t| crate::clock::now() < t.refresh_at)
                {
                    return Ok(Some(t.header.clone()));
                }
                let t = o.fetch(&self.upstream).await?;
                let header = t.header.clone();
                *cached = Some(t);
                Ok(Some(header))
            }
        }
    }

    /// A non-`Authorization` header to add to each call.
    pub fn extra_header(&self) -> Option<(&HeaderName, &HeaderValue)> {
        match &self.kind {
            Kind::Header(n, v) => Some((n, v)),
            Kind::None | Kind::Authorization(_) | Kind::OAuth2(_) => None,
        }
    }

    /// After the upstream refused `used`: drop it if still cached, and return a fresh one.
    pub async fn refresh_after_rejection(
        &self,
        used: Option<&HeaderValue>,
    ) -> Result<Option<HeaderValue>, UpstreamError> {
        if let Kind::OAuth2(o) = &self.kind {
            let mut cached = o.cached.lock().await;
            if cached.as_ref().is_some_and(|t| Some(&t.header) == used) {
                *cached = None;
            }
        }
        self.credential().await
    }
}

impl OAuth2 {
    async fn fetch(&self, upstream: &str) -> Result<Token, UpstreamError> {
        let fail = |detail: String| UpstreamError::Auth {
            upstream: upstream.to_owned(),
            detail,
        };
        let req = Request::builder()
            .method(Method::POST)
            .uri(self.token_url.clone())
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(http::header::ACCEPT, "application/json")
            .body(Full::new(Bytes::from(self.form.clone())))
            .map_err(|e| fail(format!("cannot build the token request: {e}")))?;
        let fetched = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| fail(format!("token endpoint unreachable: {e}")))?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), 64 * 1024)
                .collect()
                .await
                .map_err(|e| fail(format!("reading the token answer failed: {e}")))?
                .to_bytes();
            Ok::<_, UpstreamError>((status, body))
        };
        let (status, body) = tokio::time::timeout(self.timeout, fetched)
            .await
            .map_err(|_| fail("token endpoint timed out".into()))??;
        if !status.is_success() {
            return Err(fail(format!("token endpoint answered {status}")));
        }
        #[derive(serde::Deserialize)]
        struct Answer {
            access_token: String,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let a: Answer = serde_json::from_slice(&body)
            .map_err(|e| fail(format!("token answer is not valid: {e}")))?;
        let mut header = HeaderValue::from_str(&format!("Bearer {}", a.access_token))
            .map_err(|_| fail("token is not a valid header".into()))?;
        header.set_sensitive(true);
        let lifetime = Duration::from_secs(a.expires_in.unwrap_or(300));
        tracing::debug!(
            upstream,
            lifetime_s = lifetime.as_secs(),
            "fetched an OAuth2 token"
        );
        Ok(Token {
            header,
            refresh_at: crate::clock::now() + lifetime.saturating_sub(self.skew),
        })
    }
}
