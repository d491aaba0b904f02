//! [`AdminService`]: routing, the error format, and the handlers of companies, users and
//! keys. Quotas ([`super::quotas`]) and the traffic views ([`super::traffic`]) have files of
//! their own; who may do what is [`super::access`].

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::Body as HttpBody;
use http_body_util::{BodyExt, Limited};
use serde_json::{Value, json};

use super::access::{
    Access, check_user_write, forbidden, is_admin, reads, reads_all, user_in_scope,
};
use super::{csrf, quotas, traffic, validate};
use crate::body::{Body, BoxError, empty, full};
use crate::context::RequestMeta;
use crate::dialect::decode_json;
use crate::error::{BadRequest, GatewayError};
use crate::identity::passwords::{hash_password, new_api_key};
use crate::identity::{AuthChain, Principal, StoreAuth, credentials_from_headers, sha256_hex};
use crate::store::{ApiKeyInfo, Company, Store, StoreError, User, UserQuery};

/// Every route the admin API serves, as `(METHOD, path template)`: the OpenAPI document
/// (`openapi.json`) must list exactly these (a unit test checks both directions, and an
/// end-to-end test calls each one).
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/health"),
    ("GET", "/v1/version"),
    ("GET", "/metrics"),
    ("DELETE", "/v1/cache"),
    ("GET", "/v1/docs/openapi.json"),
    ("POST", "/v1/companies"),
    ("GET", "/v1/companies"),
    ("GET", "/v1/companies/{key}"),
    ("PUT", "/v1/companies/{key}"),
    ("DELETE", "/v1/companies/{key}"),
    ("POST", "/v1/users"),
    ("GET", "/v1/users"),
    ("GET", "/v1/users/{username}"),
    ("PUT", "/v1/users/{username}"),
    ("DELETE", "/v1/users/{username}"),
    ("POST", "/v1/users/{username}/keys"),
    ("GET", "/v1/users/{username}/keys"),
    ("DELETE", "/v1/users/{username}/keys/{id}"),
    ("GET", "/v1/audit"),
    ("GET", "/v1/statistics"),
    ("GET", "/v1/report"),
    ("GET", "/v1/tracecode/{tracecode}"),
    ("PUT", "/v1/users/{username}/quotas"),
    ("GET", "/v1/users/{username}/quotas"),
    ("DELETE", "/v1/users/{username}/quotas"),
];

/// The OpenAPI 3.1 document of the admin API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Largest admin request body.
const BODY_LIMIT: usize = 1024 * 1024;

/// What the admin API is built from.
#[derive(Clone)]
pub struct Admin {
    pub store: Arc<dyn Store>,
    pub auth: Arc<AuthChain>,
    /// Cleared after every change to users, keys or companies.
    pub store_auth: StoreAuth,
    /// `tracedata.server`.
    pub server_name: Arc<str>,
    /// Told about quota and timezone changes, so they apply to the next request.
    pub quotas: Option<crate::gateway::quota::QuotaBook>,
    /// The read cache, for `DELETE /v1/cache` and its size in `/metrics`.
    pub cache: Option<crate::gateway::cache::ReadCache>,
}

impl Admin {
    pub(super) fn quotas_changed(&self, username: &str) {
        if let Some(b) = &self.quotas {
            b.invalidate(username);
        }
    }
}

impl Admin {
    /// The admin listener's service.
    pub fn service(&self) -> AdminService {
        AdminService {
            admin: Arc::new(self.clone()),
        }
    }
}

/// See the module docs.
#[derive(Clone)]
pub struct AdminService {
    admin: Arc<Admin>,
}

impl<B> tower::Service<Request<B>> for AdminService
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let admin = self.admin.clone();
        Box::pin(async move { Ok(handle(admin, req).await) })
    }
}

/// Who is calling, as the error's `tracedata.client` reads.
fn client_of(p: Option<&Principal>) -> Value {
    p.map_or(Value::Null, |p| {
        json!(crate::identity::client_label(&p.company, &p.user))
    })
}

pub(super) fn rfc3339_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

pub(super) fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

async fn handle<B>(admin: Arc<Admin>, req: Request<B>) -> Response<Body>
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let meta = RequestMeta::new(
        req.headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
    );
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let operation = format!("{method} {path}");
    let mut principal = None;
    crate::metrics::admin_request();
    let result = route(&admin, req, &mut principal).await;
    let mut resp = match result {
        Ok(r) => r,
        Err(err) => {
            let status = err.status();
            let body = json!({
                "tracedata": {
                    "code": &*meta.tracecode,
                    "client": client_of(principal.as_ref()),
                    "server": &*admin.server_name,
                    "service": "ROSETTA_ADMIN",
                    "operation": operation,
                    "time": rfc3339_ms(now_ms()),
                },
                "message": err.to_string(),
            });
            let mut r = json_response(status, &body);
            if let GatewayError::Unauthenticated { .. } = err {
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"rosetta-admin\", Bearer"),
                );
            }
            r
        }
    };
    if let Ok(v) = HeaderValue::from_str(&meta.request_id) {
        resp.headers_mut()
            .insert(crate::header_names::X_REQUEST_ID, v);
    }
    if let Ok(v) = HeaderValue::from_str(&meta.tracecode) {
        resp.headers_mut()
            .insert(crate::header_names::X_TRACE_CODE, v);
    }
    tracing::info!(target: "rosetta::admin", %method, %path, status = resp.status().as_u16(),
        user = principal.as_ref().map(|p| &*p.user), tracecode = %meta.tracecode, "admin request");
    resp
}

pub(super) fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    let mut r = Response::new(full(Bytes::from(serde_json::to_vec(v).unwrap_or_default())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

pub(super) fn no_content() -> Response<Body> {
    let mut r = Response::new(empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

pub(super) fn store_err(e: StoreError) -> GatewayError {
    match e {
        StoreError::Conflict(what) => GatewayError::Conflict(what),
        StoreError::NotFound(what) => GatewayError::NotFound(what),
        StoreError::Invalid(msg) => GatewayError::BadRequest(BadRequest::new(msg)),
        StoreError::Backend(msg) => GatewayError::Internal(msg),
    }
}

pub(super) async fn read_json<B>(body: B) -> Result<Value, GatewayError>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let bytes = Limited::new(body, BODY_LIMIT)
        .collect()
        .await
        .map_err(|_| GatewayError::PayloadTooLarge { limit: BODY_LIMIT })?
        .to_bytes();
    Ok(decode_json(&bytes, 64)?)
}

fn user_json(u: &User) -> Value {
    json!({"username": u.username, "name": u.name, "email": u.email, "phone": u.phone,
           "company_key": u.company_key, "enabled": u.enabled, "roles": u.roles, "timezone": u.timezone})
}

fn company_json(c: &Company) -> Value {
    json!({"key": c.key, "detail": c.detail, "enabled": c.enabled})
}

fn key_json(k: &ApiKeyInfo) -> Value {
    json!({"id": k.id, "prefix": k.prefix, "created": rfc3339_ms(k.created_ms),
           "expires": k.expires_ms.map(rfc3339_ms), "revoked": k.revoked})
}

async fn authenticate(admin: &Admin, headers: &http::HeaderMap) -> Result<Principal, GatewayError> {
    let creds = credentials_from_headers(headers)?;
    Ok(admin.auth.authenticate(&creds).await?)
}

async fn route<B>(
    admin: &Admin,
    req: Request<B>,
    principal: &mut Option<Principal>,
) -> Result<Response<Body>, GatewayError>
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (parts, body) = req.into_parts();
    // Before anything else: a forged cross-site write must not authenticate (the browser
    // sent the credentials, not the user) nor reach the store.
    csrf::check(&parts)?;
    let segs: Vec<String> = parts
        .uri
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let pairs: Vec<(String, String)> = parts
        .uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let m = &parts.method;
    // Anonymous: liveness and the version.
    match (m, segs.as_slice()) {
        (&Method::GET, ["health"]) => {
            admin.store.user_count().await.map_err(store_err)?;
            return Ok(json_response(StatusCode::OK, &json!({"status": "ok"})));
        }
        (&Method::GET, ["metrics"]) => {
            if let Some(c) = &admin.cache {
                crate::metrics::cache_bytes(c.bytes().await);
            }
            let mut r = Response::new(full(Bytes::from(crate::metrics::render())));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            return Ok(r);
        }
        (&Method::GET, ["v1", "docs", "openapi.json"]) => {
            let mut r = Response::new(full(Bytes::from_static(OPENAPI.as_bytes())));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            return Ok(r);
        }
        (&Method::GET, ["v1", "version"]) => {
            return Ok(json_response(
                StatusCode::OK,
                &json!({"major": 1, "minor": env!("CARGO_PKG_VERSION_MINOR").parse::<u32>().unwrap_or(0),
                        "build": env!("CARGO_PKG_VERSION")}),
            ));
        }
        _ => {}
    }
    let p = authenticate(admin, &parts.headers).await?;
    *principal = Some(p.clone());
    let store = &admin.store;
    match (m, segs.as_slice()) {
        // ---- companies
        (&Method::POST, ["v1", "companies"]) => {
            if !is_admin(&p) {
                return Err(forbidden("only an ADMIN creates companies"));
            }
            let c = validate::company(&read_json(body).await?)?;
            store.create_company(c.clone()).await.map_err(store_err)?;
            admin.store_auth.invalidate();
            Ok(json_response(StatusCode::CREATED, &company_json(&c)))
        }
        (&Method::GET, ["v1", "companies"]) => {
            if !reads_all(&p) {
                return Err(forbidden("only an ADMIN or an AUDITOR lists companies"));
            }
            let q = validate::list(&pairs, &["key", "detail"])?;
            let page = store.list_companies(q).await.map_err(store_err)?;
            Ok(json_response(
                StatusCode::OK,
                &json!({"companies": page.items.iter().map(company_json).collect::<Vec<_>>(),
                        "statistics": {"overall": {"total": page.overall}, "filter": {"total": page.filtered}}}),
            ))
        }
        (&Method::GET, ["v1", "companies", key]) => {
            if !reads(&p, key) {
                return Err(forbidden("not your company"));
            }
            let c = store
                .get_company((*key).to_owned())
                .await
                .map_err(store_err)?;
            Ok(json_response(StatusCode::OK, &company_json(&c)))
        }
        (&Method::PUT, ["v1", "companies", key]) => {
            if !is_admin(&p) {
                return Err(forbidden("only an ADMIN changes companies"));
            }
            let c = validate::company(&read_json(body).await?)?;
            store
                .update_company((*key).to_owned(), c.clone())
                .await
                .map_err(store_err)?;
            admin.store_auth.invalidate();
            Ok(json_response(StatusCode::OK, &company_json(&c)))
        }
        (&Method::DELETE, ["v1", "companies", key]) => {
            if !is_admin(&p) {
                return Err(forbidden("only an ADMIN deletes companies"));
            }
            store
                .delete_company((*key).to_owned())
                .await
                .map_err(store_err)?;
            admin.store_auth.invalidate();
            Ok(no_content())
        }
        // ---- users
        (&Method::POST, ["v1", "users"]) => {
            let (u, password) = validate::user(&read_json(body).await?)?;
            check_user_write(&p, &u)?;
            let hash = password
                .as_deref()
                .map(hash_password)
                .transpose()
                .map_err(GatewayError::Internal)?;
            store
                .create_user(u.clone(), hash)
                .await
                .map_err(store_err)?;
            Ok(json_response(StatusCode::CREATED, &user_json(&u)))
        }
        (&Method::GET, ["v1", "users"]) => {
            let list = validate::list(
                &pairs,
                &[
                    "username",
                    "name",
                    "email",
                    "company_key",
                    "enabled",
                    "timezone",
                ],
            )?;
            let group = validate::user_group(&pairs)?;
            let mut company_key = validate::word_param(&pairs, "company_key", 3, 256)?;
            if !reads_all(&p) {
                if !p.has_role("PARTNER") {
                    return Err(forbidden("listing users needs ADMIN, AUDITOR or PARTNER"));
                }
                match &company_key {
                    Some(c) if c.as_str() != &*p.company => {
                        return Err(forbidden("a PARTNER lists only its own company's users"));
                    }
                    Some(_) | None => company_key = Some(p.company.to_string()),
                }
            }
            let page = store
                .list_users(UserQuery {
                    list,
                    company_key,
                    group,
                })
                .await
                .map_err(store_err)?;
            let stats = |s: crate::store::UserStats| json!({"total": s.total, "active": s.active, "blocked": s.blocked, "admins": s.admins});
            Ok(json_response(
                StatusCode::OK,
                &json!({"users": page.items.iter().map(user_json).collect::<Vec<_>>(),
                        "statistics": {"overall": stats(page.overall), "filter": stats(page.filtered)}}),
            ))
        }
        (&Method::GET, ["v1", "users", name]) => {
            let u = user_in_scope(admin, &p, name, Access::Read).await?;
            Ok(json_response(StatusCode::OK, &user_json(&u)))
        }
        (&Method::PUT, ["v1", "users", name]) => {
            user_in_scope(admin, &p, name, Access::Write).await?;
            let (u, password) = validate::user(&read_json(body).await?)?;
            if u.username != *name {
                return Err(BadRequest::param("username", "username cannot be changed").into());
            }
            check_user_write(&p, &u)?;
            let hash = password
                .as_deref()
                .map(hash_password)
                .transpose()
                .map_err(GatewayError::Internal)?;
            store
                .update_user(u.clone(), hash)
                .await
                .map_err(store_err)?;
            admin.store_auth.invalidate();
            admin.quotas_changed(&u.username);
            Ok(json_response(StatusCode::OK, &user_json(&u)))
        }
        (&Method::DELETE, ["v1", "users", name]) => {
            user_in_scope(admin, &p, name, Access::Write).await?;
            store
                .delete_user((*name).to_owned())
                .await
                .map_err(store_err)?;
            admin.store_auth.invalidate();
            Ok(no_content())
        }
        // ---- API keys
        (&Method::POST, ["v1", "users", name, "keys"]) => {
            let owner = user_in_scope(admin, &p, name, Access::Write).await?;
            let body = read_json(body).await?;
            let expires_ms = match &body {
                Value::Null => None,
                Value::Object(m) => {
                    if let Some(k) = m.keys().find(|k| k.as_str() != "expires") {
                        return Err(BadRequest::param(
                            k,
                            format!("unknown field `{k}`; the one field is expires"),
                        )
                        .into());
                    }
                    match m.get("expires") {
                        None | Some(Value::Null) => None,
                        Some(Value::String(s)) => {
                            let t = validate::time_param(
                                &[("expires".to_owned(), s.clone())],
                                "expires",
                            )?;
                            match t {
                                Some(ms) if ms > now_ms() => Some(ms),
                                Some(_) | None => {
                                    return Err(BadRequest::param(
                                        "expires",
                                        "expires must be in the future",
                                    )
                                    .into());
                                }
                            }
                        }
                        Some(_) => {
                            return Err(BadRequest::param(
                                "expires",
                                "expires must be a date-time string",
                            )
                            .into());
                        }
                    }
                }
                Value::Bool(_) | Value::Number(_) | Value::String(_) | Value::Array(_) => {
                    return Err(BadRequest::new("the body must be an object or empty").into());
                }
            };
            let secret = new_api_key().map_err(GatewayError::Internal)?;
            let info = ApiKeyInfo {
                id: uuid::Uuid::new_v4().simple().to_string()[..16].to_owned(),
                username: owner.username.clone(),
                prefix: secret[..10].to_owned(),
                created_ms: now_ms(),
                expires_ms,
                revoked: false,
            };
            store
                .create_key(info.clone(), sha256_hex(&secret))
                .await
                .map_err(store_err)?;
            let mut v = key_json(&info);
            v["key"] = json!(secret);
            Ok(json_response(StatusCode::CREATED, &v))
        }
        (&Method::GET, ["v1", "users", name, "keys"]) => {
            user_in_scope(admin, &p, name, Access::Read).await?;
            let keys = store
                .list_keys((*name).to_owned())
                .await
                .map_err(store_err)?;
            Ok(json_response(
                StatusCode::OK,
                &json!({"keys": keys.iter().map(key_json).collect::<Vec<_>>()}),
            ))
        }
        (&Method::DELETE, ["v1", "users", name, "keys", id]) => {
            user_in_scope(admin, &p, name, Access::Write).await?;
            store
                .revoke_key((*name).to_owned(), (*id).to_owned())
                .await
                .map_err(store_err)?;
            admin.store_auth.invalidate();
            Ok(no_content())
        }
        // ---- quotas (enforced by the quota layer)
        (&Method::PUT, ["v1", "users", name, "quotas"]) => {
            quotas::put(admin, &p, name, &pairs, body).await
        }
        (&Method::GET, ["v1", "users", name, "quotas"]) => quotas::get(admin, &p, name).await,
        (&Method::DELETE, ["v1", "users", name, "quotas"]) => {
            quotas::delete(admin, &p, name, &pairs).await
        }
        // ---- audit, captured bodies, statistics and report
        (&Method::GET, ["v1", "audit"]) => traffic::audit(admin, &p, &pairs).await,
        (&Method::GET, ["v1", "tracecode", tracecode]) => {
            traffic::captured(admin, &p, tracecode, &pairs).await
        }
        (&Method::GET, ["v1", "statistics"]) => traffic::statistics(admin, &p, &pairs).await,
        (&Method::GET, ["v1", "report"]) => traffic::report(admin, &p, &pairs).await,
        // ---- the read cache
        (&Method::DELETE, ["v1", "cache"]) => {
            if !is_admin(&p) {
                return Err(forbidden("only an ADMIN purges the cache"));
            }
            let route = pairs
                .iter()
                .find(|(k, _)| k == "route")
                .map(|(_, v)| v.as_str());
            if let Some(c) = &admin.cache {
                c.purge(route);
            }
            Ok(no_content())
        }
        _ => Err(GatewayError::NoRoute {
            method: m.clone(),
            path: parts.uri.path().to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_lists_exactly_the_routes() {
        let doc: Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        let mut documented = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, _) in item.as_object().unwrap() {
                if method != "parameters" {
                    documented.push((method.to_uppercase(), path.clone()));
                }
            }
        }
        for (m, p) in ROUTES {
            assert!(
                documented.contains(&((*m).to_owned(), (*p).to_owned())),
                "{m} {p} is not in openapi.json"
            );
        }
        for (m, p) in &documented {
            assert!(
                ROUTES.contains(&(m.as_str(), p.as_str())),
                "openapi.json documents {m} {p}, which is not served"
            );
        }
    }
}
