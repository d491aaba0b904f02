//! Who is calling: credentials in, a [`Principal`] out.
//!
//! Authentication sits behind the [`Authenticate`] trait so providers can be stacked: the
//! keys declared in the config file today, the store-backed users and keys of the admin API
//! later, without the authn layer knowing which answered.
//!
//! What a caller can make authentication cost is bounded ([`limits`], [`gate`]): failed
//! attempts per username and per client IP, password hashes and store lookups at once.

mod gate;
pub mod limits;
pub mod passwords;
mod static_keys;
mod store_auth;

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub use gate::GateSettings;
pub use limits::{AuthSettings, FailureLimits};
pub use static_keys::StaticKeys;
pub use store_auth::{CACHE_ENTRIES, NEGATIVE_ENTRIES, StoreAuth};

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Username.
    pub user: Arc<str>,
    /// Company key: the upstream company's external id.
    pub company: Arc<str>,
    /// Roles such as `ADMIN`, `PARTNER`, `USER`, `AUDITOR`.
    pub roles: Arc<[String]>,
    /// Identifier of the API key used, when a key was used (never the secret).
    pub key_id: Option<Arc<str>>,
}

/// How RedAPI names a caller in `tracedata.client` and the audit trail: `company_|_user`.
pub fn client_label(company: &str, user: &str) -> String {
    let mut out = String::with_capacity(company.len() + user.len() + 3);
    push_client_label(&mut out, company, user);
    out
}

/// [`client_label`] appended to `out` (the audit writer reuses one buffer for every row).
pub fn push_client_label(out: &mut String, company: &str, user: &str) {
    out.push_str(company);
    out.push_str("_|_");
    out.push_str(user);
}

impl Principal {
    /// The anonymous caller of routes a pack marks `anonymous`.
    pub fn anonymous() -> Self {
        Self {
            user: Arc::from("anonymous"),
            company: Arc::from(""),
            roles: Arc::from(Vec::new()),
            key_id: None,
        }
    }

    /// Whether the caller holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r.eq_ignore_ascii_case(role))
    }
}

/// What the client presented.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// `Authorization: Bearer <key>` or `X-API-Key: <key>`.
    ApiKey(String),
    /// `Authorization: Basic`.
    Basic {
        /// The username.
        user: String,
        /// The password, as sent.
        password: String,
    },
}

impl std::fmt::Debug for Credentials {
    // Secrets never reach a log line, even at debug level.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::ApiKey(_) => f.write_str("ApiKey(<redacted>)"),
            Credentials::Basic { user, .. } => write!(f, "Basic({user}, <redacted>)"),
        }
    }
}

/// Why authentication failed (rendered in the client's dialect: 401 for the credentials, 429
/// for a spent budget of failures, 503 when the check could not be made).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` or `X-API-Key` header.
    #[error("no credentials were presented")]
    Missing,
    /// A header that is not a credential Rosetta reads.
    #[error("the Authorization header is malformed")]
    Malformed,
    /// Two `Authorization` (or two `X-API-Key`) fields: which one counts would depend on who
    /// reads them (a proxy in front may check the last, this gateway read the first).
    #[error("more than one Authorization or X-API-Key header was presented")]
    Ambiguous,
    /// Unknown, revoked or expired key, or a wrong password.
    #[error("the credentials are not valid")]
    Invalid,
    /// The user or their company is blocked.
    #[error("the account is disabled")]
    Disabled,
    /// The store could not be asked (a 503 with `Retry-After`: the key may be fine).
    #[error("the credential store is unavailable")]
    Unavailable,
    /// The caller's budget of failed attempts (per username or per client IP) is spent:
    /// refused before any check (a 429).
    #[error("too many failed authentications ({budget}: {burst} in a burst)")]
    TooManyFailures {
        /// The budget spent (`identity.failed_per_user` or `identity.failed_per_ip`).
        budget: &'static str,
        /// Its burst.
        burst: u32,
        /// When it has room again.
        retry_after: Duration,
    },
    /// No room for the check within its wait (a 503): too many password checks or store
    /// lookups at once.
    #[error("too many {what} at once")]
    Busy {
        /// What had no room.
        what: &'static str,
        /// When to try again.
        retry_after: Duration,
    },
}

impl AuthError {
    /// Whether the attempt failed on its credentials, and so spends the caller's budgets
    /// of failures (a refusal for want of room or of budget does not).
    pub fn is_failure(&self) -> bool {
        match self {
            AuthError::Missing
            | AuthError::Malformed
            | AuthError::Ambiguous
            | AuthError::Invalid
            | AuthError::Disabled => true,
            AuthError::Unavailable | AuthError::TooManyFailures { .. } | AuthError::Busy { .. } => {
                false
            }
        }
    }
}

/// A boxed future, so providers can be trait objects.
pub type AuthFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Option<Principal>, AuthError>> + Send + 'a>>;

/// A source of principals.
///
/// `Ok(None)` means "not mine": the next provider is asked. `Err` stops the chain (for
/// instance a known key that is revoked).
pub trait Authenticate: Send + Sync + 'static {
    /// The caller `credentials` name, `Ok(None)` when they are not this provider's.
    fn authenticate<'a>(&'a self, credentials: &'a Credentials) -> AuthFuture<'a>;

    /// The answer [`Authenticate::authenticate`] would give, when it is known without
    /// waiting (a declared key, a check still cached); `None` when finding it out needs the
    /// store. Lets the authentication layer call the layers below at once, without keeping
    /// a copy of them in a future, on almost every request.
    fn known(&self, credentials: &Credentials) -> Option<Result<Option<Principal>, AuthError>> {
        let _ = credentials;
        None
    }
}

/// Providers asked in order; the first that recognises the credentials answers.
#[derive(Clone, Default)]
pub struct AuthChain {
    providers: Vec<Arc<dyn Authenticate>>,
    /// The budgets of failed attempts [`AuthChain::attempt`] spends; none: unlimited.
    limits: Option<Arc<FailureLimits>>,
}

impl AuthChain {
    /// A chain asking `providers` in this order.
    pub fn new(providers: Vec<Arc<dyn Authenticate>>) -> Self {
        Self {
            providers,
            limits: None,
        }
    }

    /// Spends `limits` on the failures of [`AuthChain::attempt`].
    pub fn with_limits(mut self, limits: Arc<FailureLimits>) -> Self {
        self.limits = Some(limits);
        self
    }

    /// A client's attempt from `ip`: refused (429) when its username's or its IP's budget of
    /// failures is spent, before any lookup or hash; otherwise checked, a failure keeping
    /// the cells it took. `credentials` are as read from the request (a malformed or missing
    /// header is a failed attempt too).
    pub async fn attempt(
        &self,
        credentials: Result<Credentials, AuthError>,
        ip: Option<IpAddr>,
    ) -> Result<Principal, AuthError> {
        let admission = match &self.limits {
            Some(limits) => {
                let user = match &credentials {
                    Ok(Credentials::Basic { user, .. }) => Some(user.as_str()),
                    Ok(Credentials::ApiKey(_)) | Err(_) => None,
                };
                Some(limits.admit(user, ip)?)
            }
            None => None,
        };
        let result = match credentials {
            Ok(c) => self.authenticate(&c).await,
            Err(e) => Err(e),
        };
        let failed = result.as_ref().is_err_and(AuthError::is_failure);
        if failed {
            crate::metrics::auth_failed();
        }
        if let (Some(limits), Some(admission)) = (&self.limits, admission) {
            if failed {
                drop(admission);
            } else {
                limits.give_back(admission);
            }
        }
        result
    }

    /// Adds `provider`, asked after those already there.
    pub fn push(&mut self, provider: Arc<dyn Authenticate>) {
        self.providers.push(provider);
    }

    /// Authenticates `credentials` against each provider in turn.
    pub async fn authenticate(&self, credentials: &Credentials) -> Result<Principal, AuthError> {
        for p in &self.providers {
            if let Some(principal) = p.authenticate(credentials).await? {
                return Ok(principal);
            }
        }
        Err(AuthError::Invalid)
    }

    /// [`AuthChain::authenticate`]'s answer when every provider it would ask knows its own
    /// without waiting; `None` as soon as one would have to look.
    pub fn known(&self, credentials: &Credentials) -> Option<Result<Principal, AuthError>> {
        for p in &self.providers {
            match p.known(credentials)? {
                Ok(Some(principal)) => return Some(Ok(principal)),
                Ok(None) => {}
                Err(e) => return Some(Err(e)),
            }
        }
        Some(Err(AuthError::Invalid))
    }
}

/// Reads credentials from request headers: `Authorization: Bearer|Basic`, then `X-API-Key`.
pub fn credentials_from_headers(headers: &http::HeaderMap) -> Result<Credentials, AuthError> {
    use base64::Engine;
    if let Some(value) = single(headers, http::header::AUTHORIZATION)? {
        let value = value.to_str().map_err(|_| AuthError::Malformed)?.trim();
        let (scheme, rest) = value.split_once(' ').ok_or(AuthError::Malformed)?;
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            if rest.is_empty() {
                return Err(AuthError::Malformed);
            }
            return Ok(Credentials::ApiKey(rest.to_owned()));
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .map_err(|_| AuthError::Malformed)?;
            let decoded = String::from_utf8(decoded).map_err(|_| AuthError::Malformed)?;
            let (user, password) = decoded.split_once(':').ok_or(AuthError::Malformed)?;
            return Ok(Credentials::Basic {
                user: user.to_owned(),
                password: password.to_owned(),
            });
        }
        return Err(AuthError::Malformed);
    }
    if let Some(value) = single(headers, "x-api-key")? {
        let key = value.to_str().map_err(|_| AuthError::Malformed)?.trim();
        if key.is_empty() {
            return Err(AuthError::Malformed);
        }
        return Ok(Credentials::ApiKey(key.to_owned()));
    }
    Err(AuthError::Missing)
}

/// The one field named `name`, if any; two or more are [`AuthError::Ambiguous`].
fn single(
    headers: &http::HeaderMap,
    name: impl http::header::AsHeaderName,
) -> Result<Option<&http::HeaderValue>, AuthError> {
    let mut all = headers.get_all(name).iter();
    match (all.next(), all.next()) {
        (first, None) => Ok(first),
        (_, Some(_)) => Err(AuthError::Ambiguous),
    }
}

/// Hex SHA-256 of an API key, as stored in `identity.static_keys`.
pub fn sha256_hex(key: &str) -> String {
    hex::encode(sha256(key))
}

/// The SHA-256 digest of `key`: how keys are looked up (raw, on the request path).
pub fn sha256(key: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(key.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn reads_each_credential_form() {
        assert_eq!(
            credentials_from_headers(&headers(&[("authorization", "Bearer abc")])),
            Ok(Credentials::ApiKey("abc".into()))
        );
        assert_eq!(
            credentials_from_headers(&headers(&[("x-api-key", "k1")])),
            Ok(Credentials::ApiKey("k1".into()))
        );
        // "alice:se:cret" — the password may contain colons.
        assert_eq!(
            credentials_from_headers(&headers(&[("authorization", "Basic YWxpY2U6c2U6Y3JldA==")])),
            Ok(Credentials::Basic {
                user: "alice".into(),
                password: "se:cret".into()
            })
        );
    }

    #[test]
    fn rejects_malformed_and_missing() {
        assert_eq!(
            credentials_from_headers(&HeaderMap::new()),
            Err(AuthError::Missing)
        );
        assert_eq!(
            credentials_from_headers(&headers(&[("authorization", "Bearer")])),
            Err(AuthError::Malformed)
        );
        assert_eq!(
            credentials_from_headers(&headers(&[("authorization", "Basic !!!")])),
            Err(AuthError::Malformed)
        );
        assert_eq!(
            credentials_from_headers(&headers(&[("authorization", "Digest x")])),
            Err(AuthError::Malformed)
        );
    }

    #[test]
    fn two_fields_of_one_credential_header_are_ambiguous() {
        for name in [http::header::AUTHORIZATION.as_str(), "x-api-key"] {
            let mut h = HeaderMap::new();
            let value = if name == "x-api-key" {
                "k1"
            } else {
                "Bearer k1"
            };
            h.append(name, value.parse().unwrap());
            assert!(credentials_from_headers(&h).is_ok(), "{name}");
            h.append(name, value.parse().unwrap());
            assert_eq!(
                credentials_from_headers(&h),
                Err(AuthError::Ambiguous),
                "{name}"
            );
        }
        // One of each is not: `Authorization` comes first, as documented.
        assert_eq!(
            credentials_from_headers(&headers(&[
                ("authorization", "Bearer a"),
                ("x-api-key", "b")
            ])),
            Ok(Credentials::ApiKey("a".into()))
        );
    }

    #[test]
    fn credentials_debug_never_shows_secrets() {
        let s = format!(
            "{:?}",
            Credentials::Basic {
                user: "u".into(),
                password: "hunter2".into()
            }
        );
        assert!(!s.contains("hunter2"));
        let s = format!("{:?}", Credentials::ApiKey("sekrit".into()));
        assert!(!s.contains("sekrit"));
    }
}
