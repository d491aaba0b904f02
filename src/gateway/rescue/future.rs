//! [`RescueFuture`]: the stack's answer, or its rejection rendered in the client's dialect.
//! A named type rather than a boxed `async` block: no allocation per request.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{Response, Uri};

use super::super::Rejection;
use crate::body::Body;
use crate::context::RequestMeta;
use crate::error::GatewayError;

pin_project_lite::pin_project! {
    /// The answer of the layers below, which cannot fail past here.
    #[project = Step]
    // pin-project-lite takes no attributes (docs) on an enum variant's fields.
    #[allow(missing_docs)]
    pub enum RescueFuture<F> {
        /// The layers below are answering.
        Answering {
            #[pin]
            inner: F,
            // For a rejection's document: its tracecode and `instance`. The URI is a shared
            // copy of the request's (a reference count), not a copy of its path.
            meta: RequestMeta,
            uri: Uri,
        },
        /// Answered without calling them.
        Refused {
            #[pin]
            ready: std::future::Ready<Result<Response<Body>, Infallible>>,
        },
    }
}

impl<F> RescueFuture<F> {
    pub(super) fn answering(inner: F, meta: RequestMeta, uri: Uri) -> Self {
        Self::Answering { inner, meta, uri }
    }

    pub(super) fn refused(resp: Response<Body>) -> Self {
        Self::Refused {
            ready: std::future::ready(Ok(resp)),
        }
    }
}

impl<F> Future for RescueFuture<F>
where
    F: Future<Output = Result<Response<Body>, Rejection>>,
{
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            Step::Answering { inner, meta, uri } => Poll::Ready(Ok(match ready!(inner.poll(cx)) {
                Ok(resp) => resp,
                Err(rejection) => {
                    // Our failure: logged with its causes, under the tracecode the client
                    // is given (its body names neither); an upstream's failure likewise,
                    // with what it said; a refusal of the client's request is routine.
                    if let GatewayError::Internal(_) = &rejection.error {
                        tracing::error!(
                            error = %crate::error::chain(&rejection.error),
                            tracecode = %meta.tracecode,
                            "internal error"
                        );
                    } else if let GatewayError::Upstream(e) = &rejection.error
                        && e.status().is_server_error()
                    {
                        tracing::warn!(
                            error = %crate::error::chain(e),
                            tracecode = %meta.tracecode,
                            "upstream failure"
                        );
                    } else {
                        tracing::debug!(error = %rejection.error, "request rejected");
                    }
                    rejection
                        .dialect
                        .render_error(&rejection.error, meta, uri.path())
                }
            })),
            Step::Refused { ready } => ready.poll(cx),
        }
    }
}
