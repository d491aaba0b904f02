//! [`Translate`]: the client's request made into the route's execution context
//! ([`super::request`]), run by the layer below, and its outcome made into the client's
//! answer ([`super::answer`]); the bodies kept when capture wants them.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body as HttpBody;
use tower::Service;

use super::super::BoxFuture;
use super::super::upstream::ExecRequest;
use super::CaptureSink;
use super::answer::respond;
use super::request::{Given, prepare, read_body};
use crate::body::{Body, BoxError};
use crate::capture::CallLog;
use crate::error::GatewayError;
use crate::mapping::exec::Outcome;

/// See the module docs.
#[derive(Debug, Clone)]
pub struct Translate<S> {
    pub(super) inner: S,
    pub(super) body_limit: usize,
    pub(super) max_depth: usize,
    pub(super) public_url: Option<Arc<str>>,
    pub(super) capture: Option<CaptureSink>,
}

impl<S, B> Service<Request<B>> for Translate<S>
where
    S: Service<ExecRequest, Response = Outcome, Error = GatewayError> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = GatewayError;
    type Future = BoxFuture<'static, Result<Response<Body>, GatewayError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let mut inner = super::super::take_ready(&mut self.inner);
        let (limit, max_depth) = (self.body_limit, self.max_depth);
        let public_url = self.public_url.clone();
        let capture = self.capture.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let given = Given::take(&parts.extensions)?;
            let read = read_body(&parts.headers, body, limit).await;
            let input = read.as_ref().map(Bytes::clone).unwrap_or_default();
            let calls = capture.as_ref().map(|_| CallLog::default());
            let result = async {
                let bytes = read?;
                let mut prepared =
                    prepare(&given, &parts, &bytes, max_depth, public_url.as_deref())?;
                let outcome = inner
                    .call(ExecRequest {
                        route: given.rc.route.clone(),
                        ctx: std::mem::take(&mut prepared.ctx),
                        query_pairs: prepared.query_pairs.clone(),
                        meta: given.meta.clone(),
                        calls: calls.clone(),
                    })
                    .await?;
                Ok(respond(&given, prepared, outcome))
            }
            .await;
            if let Some(sink) = &capture {
                sink.keep(
                    &given.meta,
                    &given.rc.route,
                    &parts,
                    &input,
                    calls.as_ref(),
                    &result,
                );
            }
            result.map(|(resp, _)| resp)
        })
    }
}
