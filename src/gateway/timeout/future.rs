//! [`TimeoutFuture`]: a request's answer raced against its deadline.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Response;
use tokio::time::{Instant, Sleep};

use super::body::Arrival;
use crate::body::Body;
use crate::error::GatewayError;
use crate::metrics::{self, RequestTimeout};

pin_project_lite::pin_project! {
    /// The deadline layer's future: the answer of the layers below, or a timeout error when
    /// the deadline comes first (the layers below are then dropped with it).
    pub struct TimeoutFuture<F> {
        #[pin]
        answer: F,
        // Set only when the answer is not ready at once: a cache hit never touches the
        // timer wheel.
        #[pin]
        timer: Option<Sleep>,
        deadline: Instant,
        timeout: Duration,
        arrival: Arrival,
    }
}

impl<F> TimeoutFuture<F> {
    pub(super) fn new(answer: F, deadline: Instant, timeout: Duration, arrival: Arrival) -> Self {
        Self {
            answer,
            timer: None,
            deadline,
            timeout,
            arrival,
        }
    }
}

impl<F> Future for TimeoutFuture<F>
where
    F: Future<Output = Result<Response<Body>, GatewayError>>,
{
    type Output = Result<Response<Body>, GatewayError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Poll::Ready(answer) = this.answer.poll(cx) {
            return Poll::Ready(answer);
        }
        if this.timer.is_none() {
            this.timer
                .set(Some(tokio::time::sleep_until(*this.deadline)));
        }
        let Some(timer) = this.timer.as_pin_mut() else {
            return Poll::Pending;
        };
        if timer.poll(cx).is_pending() {
            return Poll::Pending;
        }
        let timeout = *this.timeout;
        Poll::Ready(Err(if this.arrival.arrived() {
            metrics::request_timed_out(RequestTimeout::Answer);
            GatewayError::AnswerTimeout { timeout }
        } else {
            metrics::request_timed_out(RequestTimeout::Body);
            GatewayError::RequestTimeout {
                reason: format!("the request body was not all received within {timeout:?}"),
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(60);

    fn never() -> std::future::Pending<Result<Response<Body>, GatewayError>> {
        std::future::pending()
    }

    #[tokio::test(start_paused = true)]
    async fn a_stuck_answer_is_408_while_the_body_is_missing_and_504_after() {
        let start = crate::clock::now();
        let missing = Arrival::pending_for_tests(false);
        let e = TimeoutFuture::new(never(), start + TIMEOUT, TIMEOUT, missing)
            .await
            .unwrap_err();
        assert_eq!(e.status(), http::StatusCode::REQUEST_TIMEOUT);
        assert_eq!(crate::clock::now() - start, TIMEOUT);
        let start = crate::clock::now();
        let arrived = Arrival::pending_for_tests(true);
        let e = TimeoutFuture::new(never(), start + TIMEOUT, TIMEOUT, arrived)
            .await
            .unwrap_err();
        assert_eq!(e.status(), http::StatusCode::GATEWAY_TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_in_time_passes_and_a_ready_one_arms_no_timer() {
        let start = crate::clock::now();
        let quick = async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok(Response::new(crate::body::empty()))
        };
        let f = TimeoutFuture::new(
            quick,
            start + TIMEOUT,
            TIMEOUT,
            Arrival::pending_for_tests(true),
        );
        assert!(f.await.is_ok());
        let ready = std::future::ready(Ok(Response::new(crate::body::empty())));
        let mut f = Box::pin(TimeoutFuture::new(
            ready,
            start + TIMEOUT,
            TIMEOUT,
            Arrival::pending_for_tests(true),
        ));
        assert!(futures_util::FutureExt::now_or_never(f.as_mut()).is_some());
        assert!(f.timer.is_none());
    }

    impl Arrival {
        fn pending_for_tests(arrived: bool) -> Self {
            Self(Some(Arc::new(AtomicBool::new(arrived))))
        }
    }
}
