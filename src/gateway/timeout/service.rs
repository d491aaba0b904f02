//! [`Timeout`].

use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body as HttpBody;
use tower::Service;

use super::{Paced, RequestLimits, TimeoutFuture};
use crate::body::{Body, BoxError};
use crate::error::GatewayError;

/// See the module docs.
#[derive(Debug, Clone)]
pub struct Timeout<S> {
    pub(super) inner: S,
    pub(super) limits: RequestLimits,
}

impl<S, B> Service<Request<B>> for Timeout<S>
where
    S: super::super::Inner<Paced<B>>,
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = GatewayError;
    type Future = TimeoutFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let start = crate::clock::now();
        let (parts, body) = req.into_parts();
        let (body, arrival) = Paced::new(body, start, self.limits);
        let answer = self.inner.call(Request::from_parts(parts, body));
        TimeoutFuture::new(
            answer,
            start + self.limits.timeout,
            self.limits.timeout,
            arrival,
        )
    }
}
