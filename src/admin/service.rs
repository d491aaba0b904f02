//! [`AdminService`], the tower service of the admin listener: it finds the request's row in
//! the route table, checks the row's rule and runs its handler. Its errors are typed, and
//! rendered once, in [`Dialect::Admin`], by the rescue layer the listener shares with the
//! proxy ([`Admin::service`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body as HttpBody;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceBuilder;

use super::access::{Rule, Target, admit};
use super::routes::{self, Found, Miswired, Params, Route};
use super::{csrf, wire};
use crate::body::{Body, BoxError, empty};
use crate::cluster::bus::{Invalidation, Invalidator};
use crate::context::PeerAddr;
use crate::dialect::Dialect;
use crate::error::GatewayError;
use crate::gateway::rescue::{Rescue, RescueLayer};
use crate::gateway::trace::{Trace, TraceLayer};
use crate::gateway::{BoxFuture, Rejection};
use crate::identity::{AuthChain, Principal, credentials_from_headers};
use crate::store::{AuditLog, AuditSink, Captures, Directory, QuotaSettings, Statistics, User};

/// What the admin API is built from.
#[derive(Clone)]
pub struct Admin {
    /// Companies, users and their keys (their handlers, the access checks, `/health`'s
    /// probe).
    pub directory: Arc<dyn Directory>,
    /// Users' quotas (`/v1/users/{username}/quotas`).
    pub quotas: Arc<dyn QuotaSettings>,
    /// The audit trail (`/v1/audit`).
    pub audit_log: Arc<dyn AuditLog>,
    /// Points per user and day (statistics and the XLSX report).
    pub statistics: Arc<dyn Statistics>,
    /// Captured bodies, read back by tracecode.
    pub captures: Arc<dyn Captures>,
    /// The audit writer, whose queue and state `/health` reports.
    pub audit: Arc<dyn AuditSink>,
    /// Identity providers: who may call the admin API.
    pub auth: Arc<AuthChain>,
    /// Told about every change that makes something cached stale (credentials after any
    /// change to users, keys or companies; a user's quotas; `DELETE /v1/cache`), on this
    /// node and, in cluster mode, the others.
    pub invalidator: Invalidator,
    /// The read cache, for its size in `/metrics`.
    pub cache: Option<crate::gateway::cache::ReadCache>,
    /// The upstreams' clients, for their calls in flight in `/metrics`.
    pub upstreams: Option<Arc<crate::upstream::Upstreams>>,
    /// `[metrics] public`: the routes of [`Rule::PublicIfConfigured`] ask for no credentials.
    pub metrics_public: bool,
    /// `server.request_timeout`: how long a request body may take to arrive (408 past it),
    /// so a client trickling a body cannot hold an admin connection for ever.
    pub request_timeout: std::time::Duration,
    /// Cluster mode: the Redis connection, whose state `/health` reports.
    pub redis: Option<crate::cluster::link::Link>,
}

impl Admin {
    pub(super) fn quotas_changed(&self, username: &str) {
        self.invalidator.apply(Invalidation::Quotas {
            user: username.to_owned(),
        });
    }
}

/// The admin listener's whole stack: the proxy's trace and rescue layers over
/// [`AdminService`], so ids, the access log and the error rendering are the proxy's own.
pub type AdminStack = Trace<Rescue<AdminService>>;

impl Admin {
    /// The admin listener's service.
    pub fn service(&self) -> AdminStack {
        ServiceBuilder::new()
            .layer(TraceLayer::admin())
            .layer(RescueLayer::new(Dialect::Admin))
            .service(AdminService {
                admin: Arc::new(self.clone()),
            })
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
    type Error = Rejection;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Rejection>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Rejection>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let admin = self.admin.clone();
        let req = req.map(|b| b.map_err(Into::into).boxed_unsync());
        Box::pin(async move {
            dispatch(admin, req).await.map_err(|error| Rejection {
                error,
                dialect: Dialect::Admin,
            })
        })
    }
}

/// What a handler answers.
pub(super) type Answer = Result<Response<Body>, GatewayError>;

/// A route's handler, as the table holds it.
pub(super) type Handler = fn(Call) -> BoxFuture<'static, Answer>;

/// One admitted request, as its handler receives it.
pub(super) struct Call {
    pub admin: Arc<Admin>,
    /// The query string's pairs, decoded.
    pub query: Vec<(String, String)>,
    route: &'static Route,
    params: Params,
    caller: Option<Principal>,
    user: Option<User>,
    body: Body,
}

impl Call {
    /// The path variable `name` of the route's template.
    pub(super) fn param(&self, name: &'static str) -> Result<&str, Miswired> {
        self.params.require(name)
    }

    /// The authenticated caller (every route but the anonymous ones has one).
    pub(super) fn caller(&self) -> Result<&Principal, Miswired> {
        self.caller.as_ref().ok_or(Miswired::Anonymous {
            template: self.route.path,
        })
    }

    /// The user `{username}` names, as the route's rule admitted it.
    pub(super) fn user(&self) -> Result<&User, Miswired> {
        self.user.as_ref().ok_or(Miswired::UserNotAdmitted {
            template: self.route.path,
        })
    }

    /// The request body as JSON; read once (a second read sees an empty body).
    pub(super) async fn json(&mut self) -> Result<Value, GatewayError> {
        let limit = self.admin.request_timeout;
        let body = std::mem::replace(&mut self.body, empty());
        tokio::time::timeout(limit, wire::read_json(body))
            .await
            .map_err(|_| GatewayError::RequestTimeout {
                reason: format!("the request body did not arrive within {limit:?}"),
            })?
    }
}

async fn dispatch(admin: Arc<Admin>, req: Request<Body>) -> Answer {
    let (parts, body) = req.into_parts();
    // Before anything else: a forged cross-site write must not authenticate (the browser
    // sent the credentials, not the user) nor reach the store.
    csrf::check(&parts)?;
    let segments: Vec<String> = parts
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
    let (route, params) = match routes::find(&parts.method, &segments) {
        Found::Route(route, params) => (route, params),
        Found::NotAllowed(allow) => {
            return Err(GatewayError::MethodNotAllowed {
                method: parts.method,
                allow,
            });
        }
        Found::Nowhere => {
            return Err(GatewayError::NoRoute {
                method: parts.method,
                path: parts.uri.path().to_owned(),
            });
        }
    };
    let rule = match route.rule {
        Rule::PublicIfConfigured { .. } if admin.metrics_public => Rule::Anyone,
        Rule::PublicIfConfigured { roles } => Rule::Caller {
            roles,
            target: Target::Nothing,
        },
        rule @ (Rule::Anyone | Rule::Caller { .. }) => rule,
    };
    let (caller, user) = match rule {
        Rule::Anyone | Rule::PublicIfConfigured { .. } => (None, None),
        Rule::Caller { roles, target } => {
            let ip = parts.extensions.get::<PeerAddr>().map(|a| a.0.ip());
            let p = admin
                .auth
                .attempt(credentials_from_headers(&parts.headers), ip)
                .await?;
            // The access log (the trace layer's span, current while this runs) names the
            // caller.
            tracing::Span::current().record("user", &*p.user);
            let user = admit(&admin, &p, roles, target, &params).await?;
            (Some(p), user)
        }
    };
    let query = parts
        .uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    (route.handler)(Call {
        admin,
        query,
        route,
        params,
        caller,
        user,
        body,
    })
    .await
}

#[cfg(test)]
mod tests {
    //! The listener's stack through `oneshot`: the table's refusals, rendered once by the
    //! shared rescue layer in the admin dialect, under the trace layer's ids.

    use http::HeaderMap;
    use http::StatusCode;
    use http_body_util::Empty;
    use tower::ServiceExt;

    use super::*;
    use crate::cluster::bus::Caches;
    use crate::identity::StoreAuth;
    use crate::store::{SqliteStore, Store};

    fn admin(dir: &tempfile::TempDir) -> Admin {
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("admin.db")).unwrap());
        Admin {
            directory: store.clone(),
            quotas: store.clone(),
            audit_log: store.clone(),
            statistics: store.clone(),
            captures: store.clone(),
            audit: store.clone(),
            auth: Arc::new(AuthChain::default()),
            invalidator: Invalidator::local(Caches {
                credentials: Some(StoreAuth::new(store)),
                ..Caches::default()
            }),
            cache: None,
            upstreams: None,
            request_timeout: std::time::Duration::from_secs(60),
            metrics_public: false,
            redis: None,
        }
    }

    async fn call(admin: &Admin, method: &str, path: &str) -> (StatusCode, HeaderMap, Value) {
        // Typed as JSON, as every admin write must be (else the CSRF guard answers 415).
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = admin.service().oneshot(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        let doc = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (parts.status, parts.headers, doc)
    }

    /// An admin error whose tracecode is the response's.
    fn assert_admin_error(headers: &HeaderMap, doc: &Value) {
        assert_eq!(
            doc["tracedata"]["code"],
            headers["x-trace-code"].to_str().unwrap()
        );
        assert_eq!(doc["tracedata"]["service"], "ROSETTA_ADMIN");
        assert_eq!(headers["content-type"], "application/json");
    }

    #[tokio::test]
    async fn refusals_are_the_tables_in_the_admin_dialect() {
        let dir = tempfile::tempdir().unwrap();
        let admin = admin(&dir);
        let (status, headers, doc) = call(&admin, "DELETE", "/v1/users/ann/quotas/x").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_admin_error(&headers, &doc);

        let (status, headers, doc) = call(&admin, "PATCH", "/v1/users/ann").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(headers["allow"], "GET, PUT, DELETE");
        assert_admin_error(&headers, &doc);

        let (status, headers, doc) = call(&admin, "GET", "/v1/users").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            headers["www-authenticate"],
            "Basic realm=\"rosetta-admin\", Bearer"
        );
        assert_admin_error(&headers, &doc);

        let (status, headers, doc) = call(&admin, "GET", "/health").await;
        assert_eq!(status, StatusCode::OK, "{doc}");
        assert_eq!(doc["status"], "ok");
        assert_eq!(headers["x-trace-code"].len(), 16, "the trace layer's ids");
    }
}
