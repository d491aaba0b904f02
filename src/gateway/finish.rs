//! [`Finishing`]: the layers below's answer, handed to a last step of the layer's own when it
//! comes (the audit row, the rate-limit headers). A named future rather than a boxed `async`
//! block: no allocation per request, and an answer that is ready at once stays ready.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;

use crate::body::Body;
use crate::error::GatewayError;

/// What a layer below answers.
pub type Answer = Result<Response<Body>, GatewayError>;

/// A layer's last step on an answer.
pub trait Finish {
    /// Turns the answer of the layers below into this layer's.
    fn finish(self, answer: Answer) -> Answer;
}

pin_project_lite::pin_project! {
    /// The layers below's answer, finished by `then` when the layer has a step to take.
    pub struct Finishing<F, T> {
        #[pin]
        inner: F,
        then: Option<T>,
    }
}

impl<F, T> Finishing<F, T> {
    pub(crate) fn new(inner: F, then: Option<T>) -> Self {
        Self { inner, then }
    }
}

impl<F, T> Future for Finishing<F, T>
where
    F: Future<Output = Answer>,
    T: Finish,
{
    type Output = Answer;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer> {
        let this = self.project();
        let answer = ready!(this.inner.poll(cx));
        Poll::Ready(match this.then.take() {
            Some(step) => step.finish(answer),
            None => answer,
        })
    }
}
