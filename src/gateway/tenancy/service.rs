//! [`TenancyService`].

use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::Either;
use http::{Request, Response};
use tower::Service;

use super::super::finish::{Answer, Finish, Finishing};
use super::super::{BoxFuture, RouteCtx};
use crate::body::Body;
use crate::cluster::bus::{Invalidation, Invalidator};
use crate::context::RequestMeta;
use crate::error::GatewayError;
use crate::identity::Principal;
use crate::mapping::exec::CallUpstream;
use crate::tenancy::reach::{check_request, not_found, request_ids};
use crate::tenancy::{PackReach, Reach, Role, RoleSet};

/// See the module docs.
#[derive(Clone)]
pub struct TenancyService<S> {
    pub(super) inner: S,
    pub(super) upstreams: Arc<dyn CallUpstream>,
    /// Drops every pack's cached reaches after a tree change (on every node).
    pub(super) invalidator: Invalidator,
}

/// The company ids a request body named (the translate layer reads the body, so it puts them
/// in a successful answer's extensions): a tree change drops the reaches holding them, and
/// the audit row lists them among the request's targets.
#[derive(Debug, Clone)]
pub struct BodyTargets(pub Arc<[Arc<str>]>);

/// A write that changes the company tree: on success, every pack's cached reaches holding one
/// of its companies are dropped (on this node before the client hears back, and on the
/// others as soon as the invalidation reaches them).
pub struct TreeChange {
    invalidator: Invalidator,
    ids: Vec<Arc<str>>,
}

impl Finish for TreeChange {
    fn finish(self, answer: Answer) -> Answer {
        if let Ok(r) = &answer
            && r.status().is_success()
        {
            let mut ids = self.ids;
            if let Some(b) = r.extensions().get::<BodyTargets>() {
                ids.extend(b.0.iter().cloned());
            }
            if !ids.is_empty() {
                self.invalidator.apply(Invalidation::Reach { ids });
            }
        }
        answer
    }
}

/// What `call` found it can decide at once.
enum Decision {
    /// Admitted: call the layers below (finishing with a tree change, for such a write).
    Go(Option<TreeChange>),
    /// The caller's reach is not cached: resolve it first.
    Resolve(Arc<PackReach>),
}

fn internal(what: &'static str) -> GatewayError {
    super::super::missing("tenancy", what)
}

impl<S, B> Service<Request<B>> for TenancyService<S>
where
    S: super::super::Inner<B>,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = GatewayError;
    /// The layers below's own future when the decision needs no waiting (an ADMIN, a cached
    /// reach, a route without company ids): no box on almost every request.
    type Future = Either<Finishing<S::Future, TreeChange>, BoxFuture<'static, Answer>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        match self.decide(&mut req) {
            Ok(Decision::Go(change)) => Either::Left(Finishing::new(self.inner.call(req), change)),
            Ok(Decision::Resolve(reach)) => Either::Right(self.resolve(req, reach)),
            Err(e) => Either::Right(Box::pin(std::future::ready(Err(e)))),
        }
    }
}

impl<S> TenancyService<S> {
    fn decide<B>(&self, req: &mut Request<B>) -> Result<Decision, GatewayError> {
        let ext = req.extensions();
        let rc = ext.get::<RouteCtx>().ok_or_else(|| internal("a route"))?;
        if rc.route.anonymous {
            // Nobody to confine; the pack loader refuses company ids on such a route.
            return Ok(Decision::Go(None));
        }
        let p = ext
            .get::<Principal>()
            .ok_or_else(|| internal("a principal"))?;
        let t = &rc.route.tenancy;
        let held = RoleSet::held(&p.roles);
        if !t.roles.intersects(held) {
            return Err(GatewayError::Forbidden {
                reason: format!("`{}` needs the role {}", rc.route.id, t.roles),
            });
        }
        let reach = if held.contains(Role::Admin) {
            Reach::All
        } else if !t.needs_reach() {
            return Ok(Decision::Go(None));
        } else {
            let pack = t
                .reach
                .as_ref()
                .ok_or_else(|| internal("its pack's reach"))?;
            match pack.cached(&p.company) {
                Some(set) => Reach::Tree(set),
                None => return Ok(Decision::Resolve(pack.clone())),
            }
        };
        admit(req, reach, &self.invalidator).map(Decision::Go)
    }

    /// Resolves the caller's reach (the upstream walk, coalesced with other callers of the
    /// same root), then decides as [`Self::decide`] would have.
    fn resolve<B>(&mut self, req: Request<B>, pack: Arc<PackReach>) -> BoxFuture<'static, Answer>
    where
        S: super::super::Inner<B>,
        B: Send + 'static,
    {
        let mut inner = super::super::take_ready(&mut self.inner);
        let upstreams = self.upstreams.clone();
        let invalidator = self.invalidator.clone();
        Box::pin(async move {
            let mut req = req;
            let (p, meta) = {
                let ext = req.extensions();
                let p = ext
                    .get::<Principal>()
                    .ok_or_else(|| internal("a principal"))?;
                let meta = ext
                    .get::<RequestMeta>()
                    .ok_or_else(|| internal("request metadata"))?;
                (p.clone(), meta.clone())
            };
            let set = pack.resolve(&p, &*upstreams, &meta).await?;
            let change = admit(&mut req, Reach::Tree(set), &invalidator)?;
            Finishing::new(inner.call(req), change).await
        })
    }
}

/// Checks the request's path and query company ids against `reach` and hands the reach on to
/// the layers below when they need it ([`crate::tenancy::Tenancy::reach_below`]).
fn admit<B>(
    req: &mut Request<B>,
    reach: Reach,
    invalidator: &Invalidator,
) -> Result<Option<TreeChange>, GatewayError> {
    let (change, below) = {
        let ext = req.extensions();
        let rc = ext.get::<RouteCtx>().ok_or_else(|| internal("a route"))?;
        let t = &rc.route.tenancy;
        check_request(t, &reach, &rc.params, req.uri().query())?;
        if t.reads_root
            && let Reach::Tree(set) = &reach
            && set.root.is_none()
        {
            // The route acts on the caller's own company, which the upstream does not know.
            let company = ext.get::<Principal>().map_or("", |p| &*p.company);
            return Err(not_found(company));
        }
        let change = match t.changes_tree {
            false => None,
            true => Some(TreeChange {
                invalidator: invalidator.clone(),
                ids: request_ids(t, &rc.params, req.uri().query())?
                    .into_iter()
                    .map(Arc::from)
                    .chain(reach.root().cloned())
                    .collect(),
            }),
        };
        (change, t.reach_below())
    };
    if below {
        req.extensions_mut().insert(reach);
    }
    Ok(change)
}

#[cfg(test)]
mod tests {
    //! The layer through `ServiceBuilder` and `oneshot`, over the shipped V1 pack, its reach
    //! answered by a fake upstream: what the inner service sees, and what never reaches it.

    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;
    use http::StatusCode;
    use tower::{ServiceBuilder, ServiceExt, service_fn};

    use super::*;
    use crate::body::empty;
    use crate::mapping::exec::CallFuture;
    use crate::upstream::{UpstreamRequest, UpstreamResponse};

    /// An AppDirect where the root company (any key but `nobody`) is `root`, with one
    /// customer `kid`; counts the calls.
    #[derive(Default)]
    struct Tree(AtomicUsize);

    impl CallUpstream for Tree {
        fn call<'a>(&'a self, _upstream: &'a str, req: UpstreamRequest) -> CallFuture<'a> {
            self.0.fetch_add(1, Ordering::SeqCst);
            let p = req.path_and_query;
            let (status, body) = if p.ends_with("externalId:nobody") {
                (404, r#"{"message":"no"}"#)
            } else if p.starts_with("/api/account/v2/companies/") {
                (200, r#"{"id":"root"}"#)
            } else if p.contains("resellerCompanyId=root&") {
                (200, r#"{"content":[{"customerCompany":{"id":"kid"}}]}"#)
            } else {
                (200, r#"{"content":[]}"#)
            };
            Box::pin(std::future::ready(Ok(UpstreamResponse {
                status: StatusCode::from_u16(status).unwrap(),
                headers: http::HeaderMap::new(),
                body: Bytes::from_static(body.as_bytes()),
            })))
        }
    }

    struct Case {
        route: &'static str,
        company_id: &'static str,
        company: &'static str,
        role: &'static str,
    }

    /// Runs one request through the layer; the answer and whether the inner service ran (with
    /// which reach).
    async fn run(
        catalog: &crate::mapping::pack::Catalog,
        tree: &Arc<Tree>,
        case: Option<Case>,
        with_principal: bool,
    ) -> (Result<StatusCode, GatewayError>, Option<String>) {
        let seen = Arc::new(parking_lot::Mutex::new(None));
        let inner_seen = seen.clone();
        let svc = ServiceBuilder::new()
            .layer(super::super::TenancyLayer::new(
                tree.clone(),
                catalog.reaches.iter().cloned().collect(),
            ))
            .service(service_fn(move |req: Request<()>| {
                let reach = match req.extensions().get::<Reach>() {
                    Some(Reach::All) => "all".to_owned(),
                    Some(Reach::Tree(set)) => format!("tree of {}", set.len()),
                    None => "none".to_owned(),
                };
                *inner_seen.lock() = Some(reach);
                async { Ok::<_, GatewayError>(Response::new(empty())) }
            }));
        let mut req = Request::get("/x").body(()).unwrap();
        req.extensions_mut().insert(RequestMeta::new(None));
        if let Some(c) = case {
            let route = catalog
                .routes
                .iter()
                .find(|r| &*r.id == c.route && r.pack.name == "redapi-v1-appdirect")
                .unwrap()
                .clone();
            req.extensions_mut().insert(RouteCtx {
                route,
                params: Arc::from(vec![("companyId".to_owned(), c.company_id.to_owned())]),
                price: None,
            });
            if with_principal {
                req.extensions_mut().insert(Principal {
                    user: Arc::from("u"),
                    company: Arc::from(c.company),
                    roles: Arc::from(vec![c.role.to_owned()]),
                    key_id: None,
                });
            }
        }
        let answer = svc.oneshot(req).await.map(|r| r.status());
        let seen = seen.lock().take();
        (answer, seen)
    }

    fn case(route: &'static str, id: &'static str, role: &'static str) -> Option<Case> {
        Some(Case {
            route,
            company_id: id,
            company: "acme",
            role,
        })
    }

    #[tokio::test]
    async fn ids_in_reach_pass_with_the_reach_and_others_never_reach_the_inner_service() {
        let catalog = crate::mapping::pack::shipped_catalog();
        let tree = Arc::new(Tree::default());
        let (ok, seen) = run(&catalog, &tree, case("companies.get", "kid", "USER"), true).await;
        assert_eq!(ok.unwrap(), StatusCode::OK);
        // Its only id is checked here: the layers below are not handed the reach.
        assert_eq!(seen.as_deref(), Some("none"));
        let resolved = tree.0.load(Ordering::SeqCst);
        assert_eq!(resolved, 3, "root, its children, the kid's children");
        // Warm: the same caller's next check makes no call.
        let (out, seen) = run(
            &catalog,
            &tree,
            case("companies.get", "other", "USER"),
            true,
        )
        .await;
        assert_eq!(out.unwrap_err().status(), StatusCode::NOT_FOUND);
        assert_eq!(seen, None, "nothing below ran");
        assert_eq!(tree.0.load(Ordering::SeqCst), resolved);
        // The root itself is in reach.
        let (ok, _) = run(&catalog, &tree, case("companies.get", "root", "USER"), true).await;
        assert_eq!(ok.unwrap(), StatusCode::OK);
        // A list kept to the reach below gets it.
        let (ok, seen) = run(&catalog, &tree, case("companies.search", "", "USER"), true).await;
        assert_eq!(ok.unwrap(), StatusCode::OK);
        assert_eq!(seen.as_deref(), Some("tree of 2"));
    }

    #[tokio::test]
    async fn roles_are_checked_first_and_an_admin_reaches_everything() {
        let catalog = crate::mapping::pack::shipped_catalog();
        let tree = Arc::new(Tree::default());
        for role in ["AUDITOR", "USER", "NOBODY"] {
            let (out, seen) = run(
                &catalog,
                &tree,
                case("companies.disable", "kid", role),
                true,
            )
            .await;
            let e = out.unwrap_err();
            assert_eq!(e.status(), StatusCode::FORBIDDEN, "{role}");
            assert!(e.to_string().contains("ADMIN or PARTNER"), "{e}");
            assert_eq!(seen, None);
        }
        assert_eq!(
            tree.0.load(Ordering::SeqCst),
            0,
            "refused before any reach walk"
        );
        let (ok, seen) = run(
            &catalog,
            &tree,
            case("companies.disable", "anything", "ADMIN"),
            true,
        )
        .await;
        assert_eq!(ok.unwrap(), StatusCode::OK);
        assert_eq!(seen.as_deref(), Some("none"), "nothing below needs it");
        let (ok, seen) = run(&catalog, &tree, case("companies.search", "", "ADMIN"), true).await;
        assert_eq!(ok.unwrap(), StatusCode::OK);
        assert_eq!(seen.as_deref(), Some("all"));
        assert_eq!(
            tree.0.load(Ordering::SeqCst),
            0,
            "an ADMIN's reach needs no walk"
        );
        // A route without company ids needs no reach at all.
        let (ok, seen) = run(&catalog, &tree, case("products.list", "x", "USER"), true).await;
        assert_eq!(ok.unwrap(), StatusCode::OK);
        assert_eq!(seen.as_deref(), Some("none"));
    }

    #[tokio::test]
    async fn a_caller_the_upstream_does_not_know_reaches_nothing() {
        let catalog = crate::mapping::pack::shipped_catalog();
        let tree = Arc::new(Tree::default());
        let nobody = Some(Case {
            route: "companies.get",
            company_id: "root",
            company: "nobody",
            role: "PARTNER",
        });
        let (out, seen) = run(&catalog, &tree, nobody, true).await;
        assert_eq!(out.unwrap_err().status(), StatusCode::NOT_FOUND);
        assert_eq!(seen, None);
    }

    #[tokio::test]
    async fn missing_context_is_an_internal_error_never_a_default() {
        let catalog = crate::mapping::pack::shipped_catalog();
        let tree = Arc::new(Tree::default());
        let (out, seen) = run(&catalog, &tree, None, true).await;
        assert_eq!(out.unwrap_err().status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(seen, None);
        let (out, seen) = run(&catalog, &tree, case("companies.get", "kid", "USER"), false).await;
        assert_eq!(out.unwrap_err().status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(seen, None);
    }
}
