//! Assembles the proxy's tower stack from configuration, in one place.
//!
//! The order is the contract of DESIGN §1: each layer may rely on what the layers above it
//! put in the request extensions.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use tower::{Service, ServiceBuilder};

use super::audit::AuditLayer;
use super::authn::AuthnLayer;
use super::cache::{CacheLayer, ReadCache};
use super::quota::{QuotaBook, QuotaLayer};
use super::ratelimit::RateLimitLayer;
use super::rescue::RescueLayer;
use super::route::RouteLayer;
use super::shared_limits::SharedLimitLayer;
use super::timeout::{RequestLimits, TimeoutLayer};
use super::translate::{CaptureSink, TranslateLayer};
use super::upstream::Executor;
use crate::admin::Admin;
use crate::body::{Body, BoxError};
use crate::cluster::bus::{Caches, Invalidator};
use crate::cluster::limits::SharedLimits;
use crate::cluster::link::Link;
use crate::config::{AdminConfig, CaptureMode};
use crate::config::{Config, ConfigError};
use crate::dialect::Dialect;
use crate::identity::passwords::hash_password;
use crate::identity::{AuthChain, AuthSettings, FailureLimits, StaticKeys, StoreAuth};
use crate::limits::rate::{LocalLimiter, Policy, RateLimiter};
use crate::mapping::exec::CallUpstream;
use crate::mapping::pack::{Catalog, LoadErrors, load_catalog_with};
use crate::store::{AuditOptions, Company, PgStore, SqliteStore, Store, StoreError, User};
use crate::upstream::Upstreams;

/// Why a gateway could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] Box<ConfigError>),
    /// The packs do not load; every problem found is listed.
    #[error("the packs do not load:\n{0}")]
    Packs(#[from] LoadErrors),
    /// `[cluster] redis_url` cannot be used.
    #[error("cluster.redis_url `{url}` cannot be used")]
    Redis {
        /// The URL, its password hidden.
        url: String,
        /// What the Redis client said.
        #[source]
        source: redis::RedisError,
    },
    /// The store cannot be opened.
    #[error("the store at {path} cannot be opened: {source}")]
    Store {
        /// The store's file, or its PostgreSQL URL with the password hidden.
        path: String,
        /// Why it cannot be opened.
        #[source]
        source: StoreError,
    },
}

/// Everything the proxy stack is built from, shared by every connection.
#[derive(Clone)]
pub struct Gateway {
    /// The enabled packs and their routes.
    pub catalog: Arc<Catalog>,
    /// Identity providers: the config's static keys, then the store.
    pub auth: Arc<AuthChain>,
    /// Performs upstream calls.
    pub upstreams: Arc<dyn CallUpstream>,
    /// The configured upstreams' clients, for what `/metrics` reads of them (calls in
    /// flight); `upstreams` above may be something else in tests and benches.
    pub pool: Arc<Upstreams>,
    /// Largest request body accepted, in bytes (`server.body_limit`).
    pub body_limit: usize,
    /// Deepest JSON/XML nesting accepted in a request body (`server.max_depth`).
    pub max_depth: usize,
    /// A request's time limits (`server.request_timeout`, `min_body_rate`,
    /// `body_rate_grace`).
    pub request_limits: RequestLimits,
    /// `server.public_url` without a trailing `/`; `None`: the listener's address.
    pub public_url: Option<Arc<str>>,
    /// Companies, users, keys, quotas and the audit trail.
    pub store: Arc<dyn Store>,
    /// The store's credential check, whose cache admin changes drop.
    pub store_auth: StoreAuth,
    /// This node's name in tracedata (`server`).
    pub server_name: Arc<str>,
    /// Request bodies kept by tracecode; `None` when capture is off.
    pub capture: Option<CaptureSink>,
    /// How long captures are kept (`capture.retention`).
    pub capture_retention: std::time::Duration,
    /// The rate-limit buckets of every policy.
    pub limiter: Arc<dyn RateLimiter>,
    /// Users' quotas and their usage.
    pub quotas: QuotaBook,
    /// The read cache.
    pub cache: ReadCache,
    /// Cluster mode (`[cluster] redis_url`): rate limits, quotas and concurrency on Redis,
    /// in place of `limiter` and `quotas`' counter (kept for `on_redis_error = "allow"`).
    pub shared_limits: Option<SharedLimits>,
    /// `[metrics] public`: `/metrics` asks for no credentials.
    pub metrics_public: bool,
    /// Drops what a change made stale from this node's caches and, in cluster mode, the
    /// other nodes'.
    pub invalidator: Invalidator,
}

impl Gateway {
    /// Loads the packs, builds the upstream clients and the identity providers.
    pub fn from_config(cfg: &Config) -> Result<Self, BuildError> {
        // An upstream credential nobody gave: refused here, at start, rather than sent empty.
        let missing = crate::config::secrets::missing(cfg);
        if !missing.is_empty() {
            let each: Vec<String> = missing
                .iter()
                .map(|k| format!("{k} ({})", crate::config::secrets::env_var(k)))
                .collect();
            return Err(Box::new(ConfigError::Invalid(format!(
                "upstream secrets are not set; give them in the environment: {}",
                each.join(", ")
            )))
            .into());
        }
        let policies = crate::limits::rate::policies(&cfg.rate_limits)
            .map_err(|e| Box::new(ConfigError::Invalid(e)))?;
        let catalog = load_catalog_with(cfg, &policies)?;
        let limiter: Arc<dyn RateLimiter> = Arc::new(LocalLimiter::new(&policies));
        let mut upstreams = Upstreams::from_config(&cfg.upstreams).map_err(Box::new)?;
        for (name, up) in &cfg.upstreams {
            if let Some(p) = &up.rate_limit {
                let policy = policies.get(p).map(|p| Policy::clone(p)).ok_or_else(|| {
                    Box::new(ConfigError::Invalid(format!(
                        "upstreams.{name}.rate_limit names `{p}`, which is not in [rate_limits]"
                    )))
                })?;
                upstreams.shape(
                    name,
                    crate::upstream::Shaper {
                        policy,
                        limiter: limiter.clone(),
                    },
                );
            }
        }
        let path = cfg.store_path();
        let audit = AuditOptions {
            queue: cfg.store.audit_queue,
            days: cfg.store.audit_days,
            wall: crate::clock::WallClock::System,
        };
        // `store.url` set: the PostgreSQL database the replicas share (the audit spill file
        // stays local, beside `store.path`); otherwise the SQLite file. Opening migrates,
        // so a node that cannot reach or migrate its store does not start.
        let store: Arc<dyn Store> = match &cfg.store.url {
            Some(url) => Arc::new(
                PgStore::open_with(url, cfg.store.pool, &path, audit).map_err(|source| {
                    BuildError::Store {
                        path: crate::config::redact_url(url),
                        source,
                    }
                })?,
            ),
            None => Arc::new(SqliteStore::open_with(&path, audit).map_err(|source| {
                BuildError::Store {
                    path: path.display().to_string(),
                    source,
                }
            })?),
        };
        let shared_limits = match &cfg.cluster.redis_url {
            Some(url) => {
                let link = Link::open(&cfg.cluster, url).map_err(|source| BuildError::Redis {
                    url: crate::config::redact_url(url),
                    source,
                })?;
                Some(SharedLimits::new(link, &cfg.cluster))
            }
            None => None,
        };
        let settings = AuthSettings::from_config(&cfg.identity)
            .map_err(|e| Box::new(ConfigError::Invalid(e)))?;
        let store_auth = StoreAuth::with_settings(store.clone(), &settings);
        // Keys declared in the config file first: no store read for them.
        let auth = AuthChain::new(vec![
            Arc::new(StaticKeys::new(&cfg.identity.static_keys)),
            Arc::new(store_auth.clone()),
        ])
        .with_limits(Arc::new(FailureLimits::new(&settings)));
        let pool = Arc::new(upstreams);
        let cache = ReadCache::new(
            cfg.cache.max_bytes.unwrap_or(64 * 1024 * 1024),
            cfg.cache
                .idle
                .unwrap_or(std::time::Duration::from_secs(600)),
        );
        let quotas = QuotaBook::new(
            store.clone(),
            store.clone(),
            Arc::new(crate::limits::quota::LocalQuotas::default()),
        );
        let invalidator = Invalidator::start(
            Caches {
                reads: Some(cache.clone()),
                reaches: catalog.reaches.iter().cloned().collect(),
                credentials: Some(store_auth.clone()),
                quotas: Some(quotas.clone()),
            },
            &cfg.cluster,
        )
        .map_err(|e| Box::new(ConfigError::Invalid(crate::error::chain(&e))))?;
        Ok(Self {
            catalog: Arc::new(catalog),
            auth: Arc::new(auth),
            pool: pool.clone(),
            upstreams: pool,
            body_limit: cfg.server.body_limit,
            max_depth: cfg.server.max_depth,
            request_limits: RequestLimits::from(&cfg.server),
            public_url: cfg
                .server
                .public_url
                .as_deref()
                .map(|u| Arc::from(u.trim_end_matches('/'))),
            capture: match cfg.capture.mode {
                CaptureMode::Off => None,
                CaptureMode::Errors | CaptureMode::All => Some(CaptureSink {
                    captures: store.clone(),
                    mode: cfg.capture.mode,
                    max_body_bytes: cfg.capture.max_body_bytes,
                }),
            },
            capture_retention: cfg.capture.retention,
            limiter,
            cache,
            quotas,
            invalidator,
            shared_limits,
            store,
            store_auth,
            metrics_public: cfg.metrics.public,
            server_name: Arc::from(
                std::env::var("HOSTNAME")
                    .ok()
                    .filter(|h| !h.is_empty())
                    .unwrap_or_else(|| "rosetta".to_owned()),
            ),
        })
    }

    /// The admin API over the same store and credentials.
    pub fn admin(&self) -> Admin {
        // Each group of handlers holds its part of the one store.
        Admin {
            directory: self.store.clone(),
            quotas: self.store.clone(),
            audit_log: self.store.clone(),
            statistics: self.store.clone(),
            captures: self.store.clone(),
            audit: self.store.clone(),
            auth: self.auth.clone(),
            invalidator: self.invalidator.clone(),
            cache: Some(self.cache.clone()),
            upstreams: Some(self.pool.clone()),
            metrics_public: self.metrics_public,
            request_timeout: self.request_limits.timeout,
            redis: self.shared_limits.as_ref().map(|s| s.link().clone()),
        }
    }

    /// DESIGN §7: when the store has no user and `admin.bootstrap_user`/`_password` are set,
    /// creates that `ADMIN` in `admin.bootstrap_company`. Returns whether it did.
    pub async fn bootstrap(&self, cfg: &AdminConfig) -> Result<bool, String> {
        let (Some(user), Some(password)) = (&cfg.bootstrap_user, &cfg.bootstrap_password) else {
            return Ok(false);
        };
        if self.store.user_count().await.map_err(|e| e.to_string())? > 0 {
            return Ok(false);
        }
        crate::admin::validate::word("admin.bootstrap_user", user, 2, 256).map_err(|e| e.detail)?;
        crate::admin::validate::word("admin.bootstrap_company", &cfg.bootstrap_company, 3, 256)
            .map_err(|e| e.detail)?;
        match self
            .store
            .create_company(Company {
                key: cfg.bootstrap_company.clone(),
                detail: Some("created for the bootstrap administrator".into()),
                enabled: true,
            })
            .await
        {
            Ok(()) | Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e.to_string()),
        }
        let hash = hash_password(password)?;
        self.store
            .create_user(
                User {
                    username: user.clone(),
                    name: None,
                    email: None,
                    phone: None,
                    company_key: cfg.bootstrap_company.clone(),
                    enabled: true,
                    roles: vec!["ADMIN".into()],
                    timezone: 0,
                },
                Some(hash),
            )
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(user = %user, company = %cfg.bootstrap_company, "bootstrap administrator created");
        Ok(true)
    }

    /// The proxy service: one per listener, cloned per connection.
    pub fn service<B>(
        &self,
    ) -> impl Service<
        Request<B>,
        Response = Response<Body>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        ServiceBuilder::new()
            // Request id, tracecode, span and access log; X-Request-Id / X-Trace-Code out.
            .layer(super::trace::TraceLayer::new())
            // Typed errors become responses in the client's dialect; nothing fails past here.
            .layer(RescueLayer::new(Dialect::RedapiV1))
            // Pack route → RouteCtx; 404/405/400-path in the nearest pack's dialect.
            .layer(RouteLayer::new(self.catalog.clone(), Dialect::RedapiV1))
            // API key / Basic / bearer → Principal (skipped for anonymous routes); failed
            // attempts are limited per user and per IP, and audited here (the audit layer
            // below sees only the callers let in).
            .layer(
                AuthnLayer::new(self.auth.clone())
                    .with_audit(self.store.clone(), self.server_name.clone()),
            )
            // The request's points, worked out once for every layer below.
            .layer(super::price::PriceLayer)
            // One audit row per authenticated request, queued to the store's batch writer.
            .layer(AuditLayer::new(
                self.store.clone(),
                self.server_name.clone(),
            ))
            // The request's deadline and its body's minimum rate: 408 (504 for an answer
            // not begun). Under audit, which records it; over everything that waits on the
            // client or an upstream, which it drops (a quota slot with it) when it runs out.
            .layer(TimeoutLayer::new(self.request_limits))
            // Leaky bucket per (policy, key), then points, daily, dated-window and
            // concurrency quotas: on this node's counters, or (cluster mode) both on Redis
            // in one round trip.
            .option_layer(
                self.shared_limits
                    .is_none()
                    .then(|| RateLimitLayer::new(self.limiter.clone())),
            )
            .option_layer(
                self.shared_limits
                    .is_none()
                    .then(|| QuotaLayer::new(self.quotas.clone())),
            )
            .option_layer(
                self.shared_limits
                    .clone()
                    .map(|s| SharedLimitLayer::new(s, self.quotas.clone(), self.limiter.clone())),
            )
            // The route's roles (403) and the caller's reach: company ids out of it are 404,
            // before anything is cached or sent upstream.
            .layer(
                super::tenancy::TenancyLayer::new(
                    self.upstreams.clone(),
                    self.catalog.reaches.iter().cloned().collect(),
                )
                .with_invalidator(self.invalidator.clone()),
            )
            // Cached translated GET responses, per caller scope.
            .layer(CacheLayer::new(self.cache.clone()).with_invalidator(self.invalidator.clone()))
            // Client dialect ⇄ execution context: body limit, parsing, params, paging.
            .layer(TranslateLayer {
                body_limit: self.body_limit,
                max_depth: self.max_depth,
                public_url: self.public_url.clone(),
                capture: self.capture.clone(),
            })
            // The route's steps against pooled upstream clients.
            .service(Executor::new(self.upstreams.clone()))
    }
}

#[cfg(test)]
mod tests {
    //! The outer layers through `ServiceBuilder` and `oneshot`, with a stub inner service:
    //! rejections come out in the nearest pack's dialect, successes carry the route and
    //! the principal.

    use std::convert::Infallible;
    use std::path::Path;
    use std::sync::Arc;

    use http::{Request, Response, StatusCode};
    use http_body_util::BodyExt;
    use tower::{ServiceBuilder, ServiceExt, service_fn};

    use super::*;
    use crate::body::full;
    use crate::config::StaticKeyConfig;
    use crate::error::GatewayError;
    use crate::gateway::RouteCtx;
    use crate::identity::{Principal, sha256_hex};

    /// The shipped packs' routes and one declared key, `k` (user `u` of company `c`).
    fn routes_and_key() -> (RouteLayer, AuthnLayer) {
        let cfg = Config::load_with_env(Path::new("config/rosetta.toml"), Vec::new()).unwrap();
        let catalog = Arc::new(crate::mapping::pack::load_catalog(&cfg).unwrap());
        let mut auth = AuthChain::default();
        auth.push(Arc::new(StaticKeys::new(&[StaticKeyConfig {
            sha256: sha256_hex("k"),
            user: "u".into(),
            company: "c".into(),
            roles: vec![],
        }])));
        (
            RouteLayer::new(catalog, Dialect::RedapiV1),
            AuthnLayer::new(Arc::new(auth)),
        )
    }

    fn stack() -> impl Service<Request<String>, Response = Response<Body>, Error = Infallible> {
        let (routes, key) = routes_and_key();
        ServiceBuilder::new()
            .layer(super::super::trace::TraceLayer::new())
            .layer(RescueLayer::new(Dialect::RedapiV1))
            .layer(routes)
            .layer(key)
            .service(service_fn(|req: Request<String>| async move {
                let route = req.extensions().get::<RouteCtx>().unwrap().route.id.clone();
                let user = req.extensions().get::<Principal>().unwrap().user.clone();
                Ok::<_, GatewayError>(Response::new(full(format!("{route} {user}"))))
            }))
    }

    async fn body(resp: Response<Body>) -> String {
        String::from_utf8(
            resp.into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
        .unwrap()
    }

    fn req(method: &str, path: &str, key: Option<&str>) -> Request<String> {
        let mut b = Request::builder().method(method).uri(path);
        if let Some(k) = key {
            b = b.header("authorization", format!("Bearer {k}"));
        }
        b.body(String::new()).unwrap()
    }

    #[tokio::test]
    async fn a_routed_authenticated_request_reaches_the_inner_service() {
        let resp = stack()
            .oneshot(req("GET", "/companies/abc", Some("k")))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(body(resp).await, "companies.get u");
    }

    /// Counts its copies: a stub inner service capturing one is copied with it.
    struct Copies(Arc<std::sync::atomic::AtomicUsize>);

    impl Clone for Copies {
        fn clone(&self) -> Self {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Self(self.0.clone())
        }
    }

    #[tokio::test]
    async fn a_cache_hit_is_answered_in_call_without_the_layers_below() {
        use futures_util::FutureExt;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let (routes, key) = routes_and_key();
        let (calls, copies) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (counted, seen) = (Copies(copies.clone()), calls.clone());
        let mut svc = ServiceBuilder::new()
            .layer(routes)
            .layer(key)
            .layer(crate::gateway::price::PriceLayer)
            .layer(CacheLayer::new(ReadCache::new(
                1 << 20,
                std::time::Duration::from_secs(60),
            )))
            .service(service_fn(move |_req: Request<String>| {
                let _ = &counted;
                seen.fetch_add(1, Ordering::SeqCst);
                async { Ok::<_, GatewayError>(Response::new(full("{\"id\":1}"))) }
            }));
        let miss = ServiceExt::ready(&mut svc)
            .await
            .unwrap()
            .call(req("GET", "/companies/abc", Some("k")))
            .await
            .unwrap();
        assert_eq!(miss.headers()["cache-status"], "rosetta; fwd=miss; stored");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let copies_after_miss = copies.load(Ordering::SeqCst);
        for _ in 0..3 {
            let answer = ServiceExt::ready(&mut svc).await.unwrap().call(req(
                "GET",
                "/companies/abc",
                Some("k"),
            ));
            // Ready when returned: nothing left to wait for.
            let hit = answer
                .now_or_never()
                .expect("a hit is ready at once")
                .unwrap();
            assert!(
                hit.headers()["cache-status"]
                    .to_str()
                    .unwrap()
                    .starts_with("rosetta; hit; ttl="),
                "{:?}",
                hit.headers()
            );
            assert_eq!(body(hit).await, "{\"id\":1}");
        }
        // Neither called nor copied for the hits.
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(copies.load(Ordering::SeqCst), copies_after_miss);
        // A revalidation goes below again, and is not answered from the cache.
        let mut r = req("GET", "/companies/abc", Some("k"));
        r.headers_mut()
            .insert("cache-control", http::HeaderValue::from_static("no-cache"));
        let fresh = ServiceExt::ready(&mut svc)
            .await
            .unwrap()
            .call(r)
            .await
            .unwrap();
        assert_eq!(
            fresh.headers()["cache-status"],
            "rosetta; fwd=request; stored"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn rejections_are_problem_details() {
        let cases = [
            (req("GET", "/nowhere", Some("k")), 404),
            (req("POST", "/companies/abc", Some("k")), 405),
            (req("GET", "/companies/..", Some("k")), 400),
            (req("GET", "/companies/abc", None), 401),
            (req("GET", "/companies/abc", Some("bad")), 401),
        ];
        for (r, status) in cases {
            let resp = stack().oneshot(r).await.unwrap();
            assert_eq!(resp.status().as_u16(), status);
            assert_eq!(resp.headers()["content-type"], "application/problem+json");
            let doc: serde_json::Value = serde_json::from_str(&body(resp).await).unwrap();
            assert_eq!(doc["status"], status);
        }
    }
}
