//! [`Rescue`]: renders rejections.

use std::convert::Infallible;
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response, Uri};
use tower::Service;

use super::super::Rejection;
use super::future::RescueFuture;
use crate::body::Body;
use crate::context::RequestMeta;
use crate::dialect::Dialect;

/// See the module docs.
#[derive(Debug, Clone)]
pub struct Rescue<S> {
    pub(super) inner: S,
    pub(super) dialect: Dialect,
}

/// A request reached the rescue layer without the [`RequestMeta`] the trace layer gives
/// every request: the stack is assembled in the wrong order.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the request has no trace context (the trace layer must run above the rescue layer)")]
pub struct NoRequestMeta;

impl<S, B> Service<Request<B>> for Rescue<S>
where
    S: Service<Request<B>, Response = Response<Body>, Error = Rejection> + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = RescueFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // A rejection at readiness has no request to answer in a dialect; the inner stack
        // is always ready (it holds no back-pressure of its own), so wait it out.
        match self.inner.poll_ready(cx) {
            Poll::Ready(_) => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let uri = req.uri().clone();
        match req.extensions().get::<RequestMeta>().cloned() {
            Some(meta) => RescueFuture::answering(self.inner.call(req), meta, uri),
            None => RescueFuture::refused(miswired(self.dialect, &uri)),
        }
    }
}

/// The 500 of a request without its [`RequestMeta`]. The tracecode it carries is the
/// incident's, minted here and logged with it, never handed to the layers below as the
/// request's: with no trace layer above, nothing else names this response, so the body
/// and the headers set here agree.
fn miswired(dialect: Dialect, uri: &Uri) -> Response<Body> {
    let incident = RequestMeta::new(None);
    tracing::error!(error = %NoRequestMeta, tracecode = %incident.tracecode, path = uri.path(),
        "request refused: the stack is miswired");
    let err = super::super::missing("rescue", "its trace context");
    let mut resp = dialect.render_error(&err, &incident, uri.path());
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&incident.request_id) {
        headers.insert(crate::header_names::X_REQUEST_ID, v);
    }
    if let Ok(v) = HeaderValue::from_str(&incident.tracecode) {
        headers.insert(crate::header_names::X_TRACE_CODE, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    //! The layer through `ServiceBuilder` and `oneshot`: rejections are rendered with the
    //! request's own tracecode, and a request without one never reaches the layers below.

    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use http::{Request, Response, StatusCode};
    use http_body_util::BodyExt;
    use serde_json::Value;
    use tower::{ServiceBuilder, ServiceExt, service_fn};

    use super::super::RescueLayer;
    use crate::body::{Body, empty};
    use crate::dialect::Dialect;
    use crate::error::GatewayError;
    use crate::gateway::Rejection;
    use crate::gateway::trace::TraceLayer;

    async fn json(resp: Response<Body>) -> Value {
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    /// A stub below the rescue layer that notes it was called and refuses with a 404.
    fn refusing(
        called: Arc<AtomicBool>,
        dialect: Dialect,
    ) -> impl tower::Service<
        Request<()>,
        Response = Response<Body>,
        Error = Rejection,
        Future: Send + 'static,
    > + Send
    + 'static {
        service_fn(move |_req: Request<()>| {
            called.store(true, Ordering::SeqCst);
            async move {
                Err::<Response<Body>, _>(Rejection {
                    error: GatewayError::NotFound("the thing".into()),
                    dialect,
                })
            }
        })
    }

    #[tokio::test]
    async fn a_rejection_carries_the_tracecode_of_the_headers() {
        for (dialect, code_at) in [
            (Dialect::Admin, "/tracedata/code"),
            (Dialect::RedapiV1, "/traceId"),
        ] {
            let called = Arc::new(AtomicBool::new(false));
            let svc = ServiceBuilder::new()
                .layer(TraceLayer::admin())
                .layer(RescueLayer::new(Dialect::Admin))
                .service(refusing(called.clone(), dialect));
            let resp = svc.oneshot(Request::new(())).await.unwrap();
            assert!(called.load(Ordering::SeqCst));
            assert_eq!(resp.status(), StatusCode::NOT_FOUND);
            let header = resp.headers()["x-trace-code"].to_str().unwrap().to_owned();
            let doc = json(resp).await;
            assert_eq!(doc.pointer(code_at).unwrap(), header.as_str(), "{doc}");
        }
    }

    #[tokio::test]
    async fn a_request_without_its_meta_is_a_500_in_the_listeners_dialect() {
        let called = Arc::new(AtomicBool::new(false));
        // No trace layer above: nothing gave the request its RequestMeta.
        let svc = ServiceBuilder::new()
            .layer(RescueLayer::new(Dialect::Admin))
            .service(refusing(called.clone(), Dialect::Admin));
        let resp = svc.oneshot(Request::new(())).await.unwrap();
        assert!(!called.load(Ordering::SeqCst), "the layers below never run");
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(resp.headers()["content-type"], "application/json");
        let header = resp.headers()["x-trace-code"].to_str().unwrap().to_owned();
        let doc = json(resp).await;
        assert_eq!(doc["tracedata"]["code"], header.as_str(), "{doc}");
        assert_eq!(doc["tracedata"]["service"], "ROSETTA_ADMIN");
        // The client gets the tracecode; what is miswired is for the log only.
        let message = doc["message"].as_str().unwrap();
        assert!(
            message.contains(header.as_str()) && !message.contains("trace context"),
            "{doc}"
        );

        let svc = ServiceBuilder::new()
            .layer(RescueLayer::new(Dialect::RedapiV1))
            .service(service_fn(|_req: Request<()>| async {
                Ok::<_, Rejection>(Response::new(empty()))
            }));
        let resp = svc.oneshot(Request::new(())).await.unwrap();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
        let header = resp.headers()["x-trace-code"].to_str().unwrap().to_owned();
        assert_eq!(json(resp).await["traceId"], header.as_str());
    }
}
