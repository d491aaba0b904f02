//! [`PriceService`] and the pure [`price`] it applies.

use std::future::{Ready, ready};
use std::task::{Context, Poll};

use futures_util::future::Either;
use http::{Request, Response};
use serde_json::{Map, Value, json};
use tower::Service;

use super::super::{RouteCtx, missing};
use super::Price;
use crate::body::Body;
use crate::error::GatewayError;
use crate::identity::Principal;
use crate::mapping::pack::{Points, Route};

/// See the module docs.
#[derive(Debug, Clone)]
pub struct PriceService<S> {
    pub(super) inner: S,
}

/// The price of a request to `route` with path variables `params` and `query` by `p`: the
/// route's constant, or its jq expression (at least 0; one that fails counts 1, logged).
pub fn price(
    route: &Route,
    params: &[(String, String)],
    query: Option<&str>,
    p: &Principal,
) -> Price {
    let points = match &route.pricing.points {
        Points::Const(n) => u64::from(*n),
        Points::Jq(f) => {
            let path: Map<String, Value> = params
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            let mut q = Map::new();
            for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
                q.entry(k.into_owned())
                    .or_insert_with(|| Value::String(v.into_owned()));
            }
            let ctx = json!({"path": path, "query": q,
                             "principal": {"user": &*p.user, "company": &*p.company, "roles": &*p.roles}});
            match f.run(&ctx) {
                Ok(v) => v.as_f64().map_or(1, |n| n.max(0.0).ceil() as u64),
                Err(e) => {
                    tracing::warn!(route = %route.id, error = %e, "points expression failed; counting 1");
                    1
                }
            }
        }
    };
    Price {
        points,
        on_hit: route.pricing.on_hit.map(u64::from),
    }
}

impl<S, B> Service<Request<B>> for PriceService<S>
where
    S: super::super::Inner<B>,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = GatewayError;
    /// The layers below's own future: pricing never waits.
    type Future = Either<Ready<Result<Response<Body>, GatewayError>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let ext = req.extensions();
        let price = match (ext.get::<RouteCtx>(), ext.get::<Principal>()) {
            (Some(rc), Some(p)) => price(&rc.route, &rc.params, req.uri().query(), p),
            (None, _) => return Either::Left(ready(Err(missing("price", "a route")))),
            (Some(_), None) => return Either::Left(ready(Err(missing("price", "a principal")))),
        };
        if let Some(rc) = req.extensions_mut().get_mut::<RouteCtx>() {
            rc.price = Some(price);
        }
        Either::Right(self.inner.call(req))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use http::{Request, Response, StatusCode};
    use tower::{ServiceBuilder, ServiceExt, service_fn};

    use super::super::PriceLayer;
    use crate::body::{Body, full};
    use crate::error::GatewayError;
    use crate::gateway::RouteCtx;
    use crate::identity::Principal;
    use crate::mapping::pack::shipped_catalog;

    async fn run(req: Request<()>) -> Result<Response<Body>, GatewayError> {
        ServiceBuilder::new()
            .layer(PriceLayer)
            .service(service_fn(|req: Request<()>| async move {
                let price = req.extensions().get::<RouteCtx>().and_then(|rc| rc.price);
                Ok::<_, GatewayError>(Response::new(full(format!("{price:?}"))))
            }))
            .oneshot(req)
            .await
    }

    fn routed(id: &str) -> Request<()> {
        let catalog = shipped_catalog();
        let route = catalog
            .routes
            .iter()
            .find(|r| &*r.id == id)
            .unwrap()
            .clone();
        let mut req = Request::new(());
        req.extensions_mut().insert(RouteCtx {
            route,
            params: Arc::from(Vec::new()),
            price: None,
        });
        req
    }

    #[tokio::test]
    async fn a_request_is_priced_once_for_the_layers_below() {
        let mut req = routed("companies.get");
        req.extensions_mut().insert(Principal::anonymous());
        let resp = run(req).await.unwrap();
        let bytes = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        let body = String::from_utf8_lossy(&bytes);
        assert!(body.starts_with("Some(Price { points: "), "{body}");
    }

    #[tokio::test]
    async fn missing_context_is_an_internal_error_never_a_default() {
        let err = run(Request::new(())).await.unwrap_err();
        assert_eq!(err.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let err = run(routed("companies.get")).await.unwrap_err();
        assert_eq!(err.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(err.to_string().contains("a principal"), "{err}");
    }
}
