//! [`TraceFuture`]: finishes the request's trace when the inner future completes.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderValue, Method, Response};
use tracing::Span;

use super::Listener;
use crate::body::Body;
use crate::context::RequestMeta;

pin_project_lite::pin_project! {
    /// The inner response future, inside the request span.
    pub struct TraceFuture<F> {
        #[pin]
        inner: F,
        span: Span,
        meta: RequestMeta,
        listener: Listener,
        method: Method,
        path: String,
    }
}

impl<F> TraceFuture<F> {
    pub(super) fn new(
        inner: F,
        span: Span,
        meta: RequestMeta,
        listener: Listener,
        method: Method,
        path: String,
    ) -> Self {
        Self {
            inner,
            span,
            meta,
            listener,
            method,
            path,
        }
    }
}

impl<F, E> Future for TraceFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _enter = this.span.enter();
        let mut resp = match this.inner.poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Ready(Ok(resp)) => resp,
        };
        let headers = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&this.meta.request_id) {
            headers.insert(crate::header_names::X_REQUEST_ID, v);
        }
        if let Ok(v) = HeaderValue::from_str(&this.meta.tracecode) {
            headers.insert(crate::header_names::X_TRACE_CODE, v);
        }
        let status = resp.status().as_u16();
        // Read once: the counter always wants it, the log line only when it is written.
        let elapsed = this.meta.started.elapsed();
        // The path only: query strings may carry secrets (tokens, keys). Each listener keeps
        // its own counter, and its own log target and message, which operators filter on.
        match this.listener {
            Listener::Proxy => {
                crate::metrics::request(status, elapsed.as_micros() as u64);
                tracing::info!(status, duration_ms = elapsed.as_secs_f64() * 1000.0,
                    method = %this.method, path = %this.path, "access");
            }
            Listener::Admin => {
                crate::metrics::admin_request();
                tracing::info!(target: "rosetta::admin", status,
                    duration_ms = elapsed.as_secs_f64() * 1000.0,
                    method = %this.method, path = %this.path, "admin request");
            }
        }
        Poll::Ready(Ok(resp))
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http::{Request, StatusCode};
    use tower::{ServiceBuilder, ServiceExt, service_fn};

    use super::super::TraceLayer;
    use crate::body::{Body, empty};
    use crate::context::RequestMeta;

    async fn echo_meta(req: Request<()>) -> Result<http::Response<Body>, Infallible> {
        let meta = req
            .extensions()
            .get::<RequestMeta>()
            .expect("meta inserted before the inner service")
            .clone();
        let mut resp = http::Response::new(empty());
        *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        resp.headers_mut()
            .insert("seen-tracecode", meta.tracecode.parse().unwrap());
        Ok(resp)
    }

    #[tokio::test]
    async fn every_response_carries_the_ids() {
        let svc = ServiceBuilder::new()
            .layer(TraceLayer::new())
            .service(service_fn(echo_meta));
        let resp = svc.oneshot(Request::new(())).await.unwrap();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let tc = resp.headers()["x-trace-code"].to_str().unwrap();
        assert_eq!(tc, resp.headers()["seen-tracecode"].to_str().unwrap());
        assert_eq!(resp.headers()["x-request-id"].len(), 36);
    }

    #[tokio::test]
    async fn a_sane_client_request_id_is_echoed() {
        let svc = ServiceBuilder::new()
            .layer(TraceLayer::new())
            .service(service_fn(echo_meta));
        let req = Request::builder()
            .header("x-request-id", "abc-123")
            .body(())
            .unwrap();
        let resp = svc.oneshot(req).await.unwrap();
        assert_eq!(resp.headers()["x-request-id"], "abc-123");
    }
}
