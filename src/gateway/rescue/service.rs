//! [`Rescue`]: renders rejections.

use std::convert::Infallible;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower::Service;

use super::super::Rejection;
use super::future::RescueFuture;
use crate::body::Body;
use crate::context::RequestMeta;

/// See the module docs.
#[derive(Debug, Clone)]
pub struct Rescue<S> {
    pub(super) inner: S,
}

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
        let meta = req
            .extensions()
            .get::<RequestMeta>()
            .cloned()
            .unwrap_or_else(|| RequestMeta::new(None));
        let uri = req.uri().clone();
        RescueFuture::new(self.inner.call(req), meta, uri)
    }
}
