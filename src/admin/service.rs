//! [`AdminService`]: routing, authorization and the handlers of the admin API.

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

use super::validate;
use crate::body::{Body, BoxError, empty, full};
use crate::capture::Flow;
use crate::context::RequestMeta;
use crate::dialect::decode_json;
use crate::dialect::xml::{XmlRules, xml_to_value};
use crate::error::{BadRequest, GatewayError};
use crate::identity::passwords::{hash_password, new_api_key};
use crate::identity::{AuthChain, Principal, StoreAuth, credentials_from_headers, sha256_hex};
use crate::store::{
    ApiKeyInfo, AuditQuery, AuditRow, Company, StatRow, StatsQuery, Store, StoreError, User,
    UserQuery,
};

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
    fn quotas_changed(&self, username: &str) {
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

fn rfc3339_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

fn now_ms() -> i64 {
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

fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    let mut r = Response::new(full(Bytes::from(serde_json::to_vec(v).unwrap_or_default())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn no_content() -> Response<Body> {
    let mut r = Response::new(empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

fn store_err(e: StoreError) -> GatewayError {
    match e {
        StoreError::Conflict(what) => GatewayError::Conflict(what),
        StoreError::NotFound(what) => GatewayError::NotFound(what),
        StoreError::Invalid(msg) => GatewayError::BadRequest(BadRequest::new(msg)),
        StoreError::Backend(msg) => GatewayError::Internal(msg),
    }
}

fn forbidden(reason: &str) -> GatewayError {
    GatewayError::Forbidden {
        reason: reason.to_owned(),
    }
}

fn is_admin(p: &Principal) -> bool {
    p.has_role("ADMIN")
}

fn reads_all(p: &Principal) -> bool {
    p.has_role("ADMIN") || p.has_role("AUDITOR")
}

/// May `p` manage users and keys of `company`?
fn manages(p: &Principal, company: &str) -> bool {
    is_admin(p) || (p.has_role("PARTNER") && &*p.company == company)
}

/// May `p` read users and keys of `company`?
fn reads(p: &Principal, company: &str) -> bool {
    reads_all(p) || manages(p, company)
}

async fn read_json<B>(body: B) -> Result<Value, GatewayError>
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

/// `P…DT…H…M…S` for a duration in milliseconds (ISO 8601).
pub fn iso_duration(ms: u64) -> String {
    let secs = ms / 1000;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::from("PT");
    if h > 0 {
        out.push_str(&format!("{h}H"));
    }
    if m > 0 {
        out.push_str(&format!("{m}M"));
    }
    out.push_str(&format!("{s}.{:03}S", ms % 1000));
    out
}

fn audit_json(r: &AuditRow) -> Value {
    json!({
        "username": &*r.username,
        "company_key": &*r.company_key,
        "tracedata": {"code": &*r.tracecode, "client": r.client(), "server": &*r.server,
                      "service": &*r.service, "operation": &*r.operation, "time": rfc3339_ms(r.time_ms)},
        "method_group": &*r.method_group,
        "statistics": {"points_count": r.points, "duration": iso_duration(r.duration_ms)},
        "status": r.status,
    })
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
            let u = user_in_scope(admin, &p, name, false).await?;
            Ok(json_response(StatusCode::OK, &user_json(&u)))
        }
        (&Method::PUT, ["v1", "users", name]) => {
            user_in_scope(admin, &p, name, true).await?;
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
            user_in_scope(admin, &p, name, true).await?;
            store
                .delete_user((*name).to_owned())
                .await
                .map_err(store_err)?;
            admin.store_auth.invalidate();
            Ok(no_content())
        }
        // ---- API keys
        (&Method::POST, ["v1", "users", name, "keys"]) => {
            let owner = user_in_scope(admin, &p, name, true).await?;
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
            user_in_scope(admin, &p, name, false).await?;
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
            user_in_scope(admin, &p, name, true).await?;
            store
                .revoke_key((*name).to_owned(), (*id).to_owned())
                .await
                .map_err(store_err)?;
            admin.store_auth.invalidate();
            Ok(no_content())
        }
        // ---- quotas (enforced by the quota layer)
        (&Method::PUT, ["v1", "users", name, "quotas"]) => {
            let owner = user_in_scope(admin, &p, name, true).await?;
            let window = quota_window(&pairs)?;
            let services = validate::quotas(&read_json(body).await?)?;
            store
                .put_quotas(owner.username.clone(), window.clone(), services.clone())
                .await
                .map_err(store_err)?;
            admin.quotas_changed(&owner.username);
            let mut v = json!({"services": services});
            if let Some((from, to)) = window {
                v["from"] = json!(from);
                v["to"] = json!(to);
            }
            Ok(json_response(StatusCode::OK, &v))
        }
        (&Method::GET, ["v1", "users", name, "quotas"]) => {
            let owner = user_in_scope(admin, &p, name, false).await?;
            let q = store.get_quotas(owner.username).await.map_err(store_err)?;
            Ok(json_response(
                StatusCode::OK,
                &json!({
                    "base": {"services": q.base.unwrap_or_else(|| json!([]))},
                    "windows": q.windows.into_iter()
                        .map(|(from, to, services)| json!({"from": from, "to": to, "services": services}))
                        .collect::<Vec<_>>(),
                }),
            ))
        }
        (&Method::DELETE, ["v1", "users", name, "quotas"]) => {
            let owner = user_in_scope(admin, &p, name, true).await?;
            let window = quota_window(&pairs)?;
            let n = store
                .delete_quotas(owner.username.clone(), window)
                .await
                .map_err(store_err)?;
            admin.quotas_changed(&owner.username);
            if n == 0 {
                return Err(GatewayError::NotFound(format!(
                    "quotas of `{}`",
                    owner.username
                )));
            }
            Ok(no_content())
        }
        // ---- audit
        (&Method::GET, ["v1", "audit"]) => {
            if !reads_all(&p) {
                return Err(forbidden("the audit is for ADMIN and AUDITOR"));
            }
            let list = validate::list(
                &pairs,
                &[
                    "time",
                    "username",
                    "company_key",
                    "service_name",
                    "operation_id",
                    "method_group",
                    "points",
                    "duration",
                ],
            )?;
            let now = now_ms();
            let from_ms =
                validate::time_param(&pairs, "from")?.unwrap_or(now - now.rem_euclid(86_400_000));
            let to_ms = validate::time_param(&pairs, "to")?.unwrap_or(now + 1);
            let text = |name: &str, min: usize, max: usize| -> Result<Option<String>, BadRequest> {
                match pairs.iter().find(|(k, _)| k == name) {
                    None => Ok(None),
                    Some((_, v)) if (min..=max).contains(&v.chars().count()) => Ok(Some(v.clone())),
                    Some(_) => Err(BadRequest::param(
                        name,
                        format!("{name} must be {min} to {max} characters"),
                    )),
                }
            };
            let q = AuditQuery {
                offset: list.offset,
                limit: list.limit,
                from_ms,
                to_ms,
                company_key: validate::word_param(&pairs, "company_key", 3, 256)?,
                username: validate::word_param(&pairs, "username", 2, 256)?,
                service: text("service_name", 1, 64)?,
                operation: text("operation_id", 3, 256)?,
                method_group: text("method_group", 1, 64)?,
                sort_field: list.sort_field,
                descending: list.descending,
            };
            let page = store.list_audit(q).await.map_err(store_err)?;
            Ok(json_response(
                StatusCode::OK,
                &json!({"actions": page.items.iter().map(audit_json).collect::<Vec<_>>(),
                        "statistics": {"overall": {"total": page.overall}, "filter": {"total": page.filtered}}}),
            ))
        }
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
        // ---- captured bodies
        (&Method::GET, ["v1", "tracecode", tracecode]) => {
            if !reads_all(&p) {
                return Err(forbidden("captured bodies are for ADMIN and AUDITOR"));
            }
            captured(admin, tracecode, &pairs).await
        }
        // ---- statistics and report
        (&Method::GET, ["v1", "statistics"]) => {
            let rows = stats_rows(admin, &p, &pairs).await?;
            Ok(json_response(StatusCode::OK, &stats_json(&rows)))
        }
        (&Method::GET, ["v1", "report"]) => {
            let rows = stats_rows(admin, &p, &pairs).await?;
            let bytes = report_xlsx(&rows).map_err(GatewayError::Internal)?;
            let mut r = Response::new(full(Bytes::from(bytes)));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                ),
            );
            r.headers_mut().insert(
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"rosetta-report.xlsx\""),
            );
            Ok(r)
        }
        _ => Err(GatewayError::NoRoute {
            method: m.clone(),
            path: parts.uri.path().to_owned(),
        }),
    }
}

/// `/v1/tracecode/{tracecode}`: one captured body, as kept or (`data_flow_convert=JSON`)
/// an XML body converted to JSON.
async fn captured(
    admin: &Admin,
    tracecode: &str,
    pairs: &[(String, String)],
) -> Result<Response<Body>, GatewayError> {
    let valid = (1..=64).contains(&tracecode.len())
        && tracecode
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !valid {
        return Err(BadRequest::param(
            "tracecode",
            "tracecode must be 1 to 64 letters, digits or `-`",
        )
        .into());
    }
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let flow = match get("data_flow_type") {
        None => Flow::Input,
        Some(v) if v.eq_ignore_ascii_case("INPUT") => Flow::Input,
        Some(v) if v.eq_ignore_ascii_case("OUTPUT") => Flow::Output,
        Some(_) => {
            return Err(BadRequest::param(
                "data_flow_type",
                "data_flow_type must be INPUT or OUTPUT",
            )
            .into());
        }
    };
    let stage = match get("data_flow_stage") {
        None => 0,
        Some(v) => match v.parse::<u8>() {
            Ok(s) if s <= 3 => s,
            Ok(_) | Err(_) => {
                return Err(BadRequest::param(
                    "data_flow_stage",
                    "data_flow_stage must be an integer from 0 to 3",
                )
                .into());
            }
        },
    };
    let to_json = match get("data_flow_convert") {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("ORIGIN") => false,
        Some(v) if v.eq_ignore_ascii_case("JSON") => true,
        Some(_) => {
            return Err(BadRequest::param("data_flow_convert", "data_flow_convert must be ORIGIN or JSON (XLSX is not offered for captured bodies)").into());
        }
    };
    let body = admin
        .store
        .get_capture(tracecode.to_owned(), flow, stage)
        .await
        .map_err(store_err)?
        .ok_or_else(|| {
            GatewayError::NotFound(format!(
                "capture {} stage {stage} of tracecode `{tracecode}`",
                flow.as_str()
            ))
        })?;
    let xml = body.content_type.contains("xml");
    let (content_type, bytes) = if to_json && xml {
        // LongJump records repeat; every other repeated element is refused, never guessed.
        let rules = XmlRules::default().array("tenant").array("record");
        let v = xml_to_value(&body.body, &rules).map_err(|e| {
            BadRequest::param(
                "data_flow_convert",
                format!("the captured XML does not convert: {e}"),
            )
        })?;
        (
            "application/json".to_owned(),
            Bytes::from(serde_json::to_vec(&v).unwrap_or_default()),
        )
    } else {
        (body.content_type.clone(), body.body.clone())
    };
    let mut r = Response::new(full(bytes));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    if body.truncated {
        r.headers_mut()
            .insert("x-capture-truncated", HeaderValue::from_static("true"));
    }
    Ok(r)
}

/// `from`/`to` (both or neither, `YYYY-MM-DD`, `from <= to`): a dated quota window.
fn quota_window(pairs: &[(String, String)]) -> Result<Option<(String, String)>, GatewayError> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let parse = |k: &str, v: &str| {
        time::Date::parse(v, fmt)
            .map_err(|_| BadRequest::param(k, format!("{k} must be a YYYY-MM-DD date")))
    };
    match (get("from"), get("to")) {
        (None, None) => Ok(None),
        (Some(f), Some(t)) => {
            let (from, to) = (parse("from", f)?, parse("to", t)?);
            if from > to {
                return Err(BadRequest::param("from", "from must not be after to").into());
            }
            Ok(Some((f.to_owned(), t.to_owned())))
        }
        (Some(_), None) => {
            Err(BadRequest::param("to", "a dated window needs both from and to").into())
        }
        (None, Some(_)) => {
            Err(BadRequest::param("from", "a dated window needs both from and to").into())
        }
    }
}

/// Seed 003's statistics period: `from`/`to` dates (default: this month up to yesterday,
/// today excluded), at most 366 days; scoped to the caller's company for a PARTNER.
async fn stats_rows(
    admin: &Admin,
    p: &Principal,
    pairs: &[(String, String)],
) -> Result<Vec<StatRow>, GatewayError> {
    let company_key = if reads_all(p) {
        None
    } else if p.has_role("PARTNER") {
        Some(p.company.to_string())
    } else {
        return Err(forbidden("statistics need ADMIN, AUDITOR or PARTNER"));
    };
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let date = |name: &str| -> Result<Option<time::Date>, BadRequest> {
        match pairs.iter().find(|(k, _)| k == name) {
            None => Ok(None),
            Some((_, v)) => time::Date::parse(v, fmt)
                .map(Some)
                .map_err(|_| BadRequest::param(name, format!("{name} must be a YYYY-MM-DD date"))),
        }
    };
    let today = time::OffsetDateTime::now_utc().date();
    let from = date("from")?.unwrap_or_else(|| today.replace_day(1).unwrap_or(today));
    let to = date("to")?.unwrap_or_else(|| today.previous_day().unwrap_or(today));
    if from > to && pairs.iter().any(|(k, _)| k == "from" || k == "to") {
        return Err(BadRequest::param("from", "from must not be after to").into());
    }
    if (to - from).whole_days() > 366 {
        return Err(BadRequest::param("to", "a period spans at most 366 days").into());
    }
    let username = validate::word_param(pairs, "username", 2, 256)?;
    let show = |d: time::Date| d.format(fmt).unwrap_or_default();
    admin
        .store
        .statistics(StatsQuery {
            from_day: show(from),
            to_day: show(to),
            username,
            company_key,
        })
        .await
        .map_err(store_err)
}

/// Seed 003's `users → dates → services → methods` nesting of ordered rows.
fn stats_json(rows: &[StatRow]) -> Value {
    let mut users: Vec<Value> = Vec::new();
    for r in rows {
        if users
            .last()
            .is_none_or(|u| u["username"] != r.username.as_str())
        {
            users.push(json!({"username": r.username, "dates": []}));
        }
        let Some(dates) = users.last_mut().and_then(|u| u["dates"].as_array_mut()) else {
            continue;
        };
        if dates.last().is_none_or(|d| d["date"] != r.day.as_str()) {
            dates.push(json!({"date": r.day, "services": []}));
        }
        let Some(services) = dates.last_mut().and_then(|d| d["services"].as_array_mut()) else {
            continue;
        };
        if services
            .last()
            .is_none_or(|s| s["service"] != r.service.as_str())
        {
            services.push(json!({"service": r.service, "methods": []}));
        }
        if let Some(methods) = services
            .last_mut()
            .and_then(|s| s["methods"].as_array_mut())
        {
            methods.push(json!({"method_group": r.method_group,
                                "unique_points_per_day": r.unique_points,
                                "points_per_day": r.points}));
        }
    }
    json!({"users": users})
}

/// The statistics as an XLSX workbook: one row per user, day, service and method group.
fn report_xlsx(rows: &[StatRow]) -> Result<Vec<u8>, String> {
    use rust_xlsxwriter::{Format, Workbook};
    let mut wb = Workbook::new();
    let bold = Format::new().set_bold();
    let ws = wb.add_worksheet();
    ws.set_name("statistics").map_err(|e| e.to_string())?;
    let head = [
        "username",
        "date",
        "service",
        "method_group",
        "points_per_day",
        "unique_points_per_day",
    ];
    for (c, h) in head.iter().enumerate() {
        ws.write_string_with_format(0, c as u16, *h, &bold)
            .map_err(|e| e.to_string())?;
    }
    for (i, r) in rows.iter().enumerate() {
        let row = (i + 1) as u32;
        let cells = [&r.username, &r.day, &r.service, &r.method_group];
        for (c, v) in cells.iter().enumerate() {
            ws.write_string(row, c as u16, v.as_str())
                .map_err(|e| e.to_string())?;
        }
        ws.write_number(row, 4, r.points as f64)
            .map_err(|e| e.to_string())?;
        ws.write_number(row, 5, r.unique_points as f64)
            .map_err(|e| e.to_string())?;
    }
    ws.autofit();
    wb.save_to_buffer().map_err(|e| e.to_string())
}

/// The user `name`, if `p` may manage (`write`) or read users of their company.
async fn user_in_scope(
    admin: &Admin,
    p: &Principal,
    name: &str,
    write: bool,
) -> Result<User, GatewayError> {
    let u = admin
        .store
        .get_user(name.to_owned())
        .await
        .map_err(store_err)?;
    let allowed = if write {
        manages(p, &u.company_key)
    } else {
        reads(p, &u.company_key)
    };
    if allowed {
        Ok(u)
    } else {
        Err(forbidden("not a user of your company"))
    }
}

/// A PARTNER writes only users of its own company, and never grants ADMIN or AUDITOR.
fn check_user_write(p: &Principal, u: &User) -> Result<(), GatewayError> {
    if is_admin(p) {
        return Ok(());
    }
    if !manages(p, &u.company_key) {
        return Err(forbidden("a PARTNER manages only its own company's users"));
    }
    if u.roles.iter().any(|r| r == "ADMIN" || r == "AUDITOR") {
        return Err(forbidden("only an ADMIN grants ADMIN or AUDITOR"));
    }
    Ok(())
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

    #[test]
    fn iso_durations() {
        assert_eq!(iso_duration(3), "PT0.003S");
        assert_eq!(iso_duration(61_250), "PT1M1.250S");
        assert_eq!(iso_duration(7_322_000), "PT2H2M2.000S");
    }
}
