//! [`Trace`].

use std::task::{Context, Poll};

use http::{Request, Response};
use tower::Service;

use super::{Listener, TraceFuture};
use crate::body::Body;
use crate::context::RequestMeta;

/// See the module docs.
#[derive(Debug, Clone)]
pub struct Trace<S> {
    pub(super) inner: S,
    pub(super) listener: Listener,
}

impl<S, B> Service<Request<B>> for Trace<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = TraceFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let client_id = req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok());
        let meta = RequestMeta::new(client_id);
        // `user` is recorded below, by whichever layer authenticates the caller.
        let span = tracing::info_span!(
            "request",
            listener = self.listener.name(),
            method = %req.method(),
            path = %req.uri().path(),
            request_id = %meta.request_id,
            tracecode = %meta.tracecode,
            user = tracing::field::Empty,
        );
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        req.extensions_mut().insert(meta.clone());
        let inner = {
            let _enter = span.enter();
            self.inner.call(req)
        };
        TraceFuture::new(inner, span, meta, self.listener, method, path)
    }
}
