//! [`Paced`]: a request body that fails its reader when it is late.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::RequestLimits;
use crate::body::BoxError;
use crate::error::GatewayError;
use crate::metrics::{self, RequestTimeout};

/// The error a [`Paced`] body fails with: the request body missed its deadline or its
/// minimum rate. Whoever reads the body answers it as [`GatewayError::RequestTimeout`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct BodyTimedOut(String);

impl From<&BodyTimedOut> for GatewayError {
    fn from(e: &BodyTimedOut) -> Self {
        GatewayError::RequestTimeout {
            reason: e.0.clone(),
        }
    }
}

/// Whether the request body has all arrived, as the deadline's future asks when it runs
/// out: `None` when it was complete from the start (no body, the common case: nothing
/// allocated).
pub(super) struct Arrival(pub(super) Option<Arc<AtomicBool>>);

impl Arrival {
    pub(super) fn arrived(&self) -> bool {
        self.0.as_ref().is_none_or(|a| a.load(Ordering::Acquire))
    }
}

/// What a body still arriving is watched with.
struct Watch {
    start: Instant,
    limits: RequestLimits,
    received: u64,
    /// Armed when the body is first waited on, moved as bytes arrive.
    timer: Option<Pin<Box<Sleep>>>,
    arrived: Arc<AtomicBool>,
}

impl Watch {
    /// When the body is late if nothing more comes: the request's deadline, or earlier the
    /// moment the bytes received fall behind the minimum rate.
    fn due(&self) -> Instant {
        let deadline = self.start + self.limits.timeout;
        match self.limits.min_body_rate {
            0 => deadline,
            rate => {
                let bought = Duration::from_millis(self.received.saturating_mul(1000) / rate);
                deadline.min(self.start + self.limits.body_rate_grace + bought)
            }
        }
    }

    fn timed_out(&self, now: Instant) -> BodyTimedOut {
        if now >= self.start + self.limits.timeout {
            metrics::request_timed_out(RequestTimeout::Body);
            BodyTimedOut(format!(
                "the request body was not all received within {:?}",
                self.limits.timeout
            ))
        } else {
            metrics::request_timed_out(RequestTimeout::BodyRate);
            BodyTimedOut(format!(
                "the request body came slower than {} bytes/s",
                self.limits.min_body_rate
            ))
        }
    }
}

/// Where a paced body is.
enum State {
    Watching(Box<Watch>),
    /// All arrived (or none was sent): reads go straight through.
    Arrived,
    /// Late: every further read fails the same way.
    Failed(BodyTimedOut),
}

pin_project_lite::pin_project! {
    /// A request body held to the request's deadline and minimum rate.
    pub struct Paced<B> {
        #[pin]
        inner: B,
        state: State,
    }
}

impl<B: HttpBody> Paced<B> {
    /// `body`, whose request started at `start`.
    pub(super) fn new(body: B, start: Instant, limits: RequestLimits) -> (Self, Arrival) {
        if body.is_end_stream() {
            return (
                Self {
                    inner: body,
                    state: State::Arrived,
                },
                Arrival(None),
            );
        }
        let arrived = Arc::new(AtomicBool::new(false));
        let watch = Watch {
            start,
            limits,
            received: 0,
            timer: None,
            arrived: arrived.clone(),
        };
        (
            Self {
                inner: body,
                state: State::Watching(Box::new(watch)),
            },
            Arrival(Some(arrived)),
        )
    }
}

impl<B> HttpBody for Paced<B>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        let watch = match this.state {
            State::Arrived => return this.inner.as_mut().poll_frame(cx).map_err(Into::into),
            State::Failed(e) => return Poll::Ready(Some(Err(Box::new(e.clone())))),
            State::Watching(w) => w,
        };
        let polled = this.inner.as_mut().poll_frame(cx);
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    watch.received = watch.received.saturating_add(data.len() as u64);
                }
                if this.inner.is_end_stream() {
                    watch.arrived.store(true, Ordering::Release);
                    *this.state = State::Arrived;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => {
                watch.arrived.store(true, Ordering::Release);
                *this.state = State::Arrived;
                Poll::Ready(None)
            }
            Poll::Pending => {
                let due = watch.due();
                let timer = watch
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
                if timer.deadline() != due {
                    timer.as_mut().reset(due);
                }
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                let e = watch.timed_out(crate::clock::now());
                *this.state = State::Failed(e.clone());
                Poll::Ready(Some(Err(Box::new(e))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::sync::mpsc;

    /// A body fed by a channel: the test decides when each chunk arrives.
    struct Fed(mpsc::Receiver<Bytes>);

    impl HttpBody for Fed {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.0.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b))))
        }
    }

    const LIMITS: RequestLimits = RequestLimits {
        timeout: Duration::from_secs(60),
        min_body_rate: 1000,
        body_rate_grace: Duration::from_secs(5),
    };

    fn fed() -> (mpsc::Sender<Bytes>, Paced<Fed>, Arrival) {
        let (tx, rx) = mpsc::channel(16);
        let (body, arrival) = Paced::new(Fed(rx), crate::clock::now(), LIMITS);
        (tx, body, arrival)
    }

    fn reason(e: &BoxError) -> String {
        e.downcast_ref::<BodyTimedOut>()
            .expect("a body timeout")
            .to_string()
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_keeps_up_arrives_whole() {
        let (tx, body, arrival) = fed();
        let feeder = tokio::spawn(async move {
            // 1,000 bytes a second after a quiet grace: exactly the minimum.
            tokio::time::sleep(Duration::from_secs(4)).await;
            for _ in 0..10 {
                tx.send(Bytes::from(vec![b'x'; 1000])).await.unwrap();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(bytes.len(), 10_000);
        assert!(arrival.arrived());
        feeder.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickle_fails_once_it_falls_behind_the_rate() {
        let (tx, body, arrival) = fed();
        let start = crate::clock::now();
        let feeder = tokio::spawn(async move {
            // 100 bytes a second: 100 bytes buy 0.1 s each.
            while tx.send(Bytes::from(vec![b'x'; 100])).await.is_ok() {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        let e = body.collect().await.unwrap_err();
        assert_eq!(reason(&e), "the request body came slower than 1000 bytes/s");
        // 6 chunks (0 s … 5 s) buy 0.6 s past the 5 s grace.
        assert_eq!(crate::clock::now() - start, Duration::from_millis(5600));
        assert!(!arrival.arrived());
        feeder.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn silence_fails_after_the_grace_and_the_deadline_caps_a_fast_body() {
        let (_tx, body, _) = fed();
        let start = crate::clock::now();
        let e = body.collect().await.unwrap_err();
        assert_eq!(crate::clock::now() - start, LIMITS.body_rate_grace);
        assert!(reason(&e).contains("slower than"));
        // With no minimum rate, only the deadline.
        let (_tx, rx) = mpsc::channel(1);
        let limits = RequestLimits {
            min_body_rate: 0,
            ..LIMITS
        };
        let (body, _) = Paced::new(Fed(rx), crate::clock::now(), limits);
        let start = crate::clock::now();
        let e = body.collect().await.unwrap_err();
        assert_eq!(crate::clock::now() - start, LIMITS.timeout);
        assert_eq!(
            reason(&e),
            "the request body was not all received within 60s"
        );
    }

    #[tokio::test]
    async fn an_empty_body_is_arrived_from_the_start() {
        let (body, arrival) = Paced::new(
            http_body_util::Empty::<Bytes>::new(),
            crate::clock::now(),
            LIMITS,
        );
        assert!(arrival.arrived() && arrival.0.is_none());
        assert!(body.is_end_stream());
    }
}
