//! [`RouteService`].

use std::future::{Ready, ready};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::{Either, MapErr, TryFutureExt};
use http::{Request, Response};
use tower::Service;

use super::super::{Rejection, RouteCtx};
use crate::body::Body;
use crate::dialect::Dialect;
use crate::error::{BadRequest, GatewayError};
use crate::mapping::pack::Catalog;
use crate::mapping::router::MatchError;

/// See the module docs.
#[derive(Debug, Clone)]
pub struct RouteService<S> {
    pub(super) inner: S,
    pub(super) catalog: Arc<Catalog>,
    pub(super) fallback: Dialect,
}

type Tag = fn(GatewayError) -> Rejection;

impl<S, B> Service<Request<B>> for RouteService<S>
where
    S: Service<Request<B>, Response = Response<Body>, Error = GatewayError>,
{
    type Response = Response<Body>;
    type Error = Rejection;
    type Future = Either<Ready<Result<Response<Body>, Rejection>>, TaggedFuture<S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Rejection>> {
        self.inner.poll_ready(cx).map_err(|error| Rejection {
            error,
            dialect: self.fallback,
        })
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let found = self.catalog.router.at(req.method(), req.uri().path());
        let m = match found {
            Ok(m) => m,
            Err(e) => {
                let (error, nearest) = match e {
                    MatchError::NotFound { nearest } => (
                        GatewayError::NoRoute {
                            method: req.method().clone(),
                            path: req.uri().path().to_owned(),
                        },
                        nearest,
                    ),
                    MatchError::MethodNotAllowed { allow, nearest } => (
                        GatewayError::MethodNotAllowed {
                            method: req.method().clone(),
                            allow,
                        },
                        Some(nearest),
                    ),
                    MatchError::BadParam {
                        name,
                        detail,
                        nearest,
                    } => (
                        GatewayError::BadRequest(BadRequest::param(
                            name.clone(),
                            format!("path parameter `{name}` {detail}"),
                        )),
                        Some(nearest),
                    ),
                };
                let dialect = nearest
                    .map(|r| r.pack.client_dialect)
                    .unwrap_or(self.fallback);
                return Either::Left(ready(Err(Rejection { error, dialect })));
            }
        };
        let dialect = m.value.pack.client_dialect;
        req.extensions_mut().insert(RouteCtx {
            route: m.value.clone(),
            params: m.params.into(),
            price: None,
        });
        Either::Right(TaggedFuture {
            inner: self.inner.call(req).map_err(tagger(dialect)),
        })
    }
}

// A closure capturing the dialect would make the future type unnameable; one function per
// dialect keeps `TaggedFuture` a plain, unboxed type.
fn tagger(d: Dialect) -> Tag {
    match d {
        Dialect::RedapiV1 => |error| Rejection {
            error,
            dialect: Dialect::RedapiV1,
        },
        Dialect::AppDirect => |error| Rejection {
            error,
            dialect: Dialect::AppDirect,
        },
        Dialect::Fusion => |error| Rejection {
            error,
            dialect: Dialect::Fusion,
        },
        Dialect::LongJump => |error| Rejection {
            error,
            dialect: Dialect::LongJump,
        },
        Dialect::Admin => |error| Rejection {
            error,
            dialect: Dialect::Admin,
        },
    }
}

pin_project_lite::pin_project! {
    /// The inner future with its errors tagged by the route's dialect.
    pub struct TaggedFuture<F> {
        #[pin]
        inner: MapErr<F, Tag>,
    }
}

impl<F> std::future::Future for TaggedFuture<F>
where
    F: std::future::Future<Output = Result<Response<Body>, GatewayError>>,
{
    type Output = Result<Response<Body>, Rejection>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx)
    }
}
