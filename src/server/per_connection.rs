//! hyper's `Service` for one connection: the tower stack called without a copy per
//! request, each request counted in flight on the connection (its idle timeout) until its
//! answer's head is ready.

use std::convert::Infallible;
use std::sync::Arc;

use futures_util::future::Either;

use super::connection::{Activity, Busy};

/// hyper's `Service` over a tower service, one per connection. hyper-util's
/// `TowerToHyperService` clones the whole stack for every request (hyper calls through
/// `&self`), each clone a dozen reference counts that every connection's requests share.
/// Here the connection keeps its own copy behind a lock held only while `call` runs (never
/// contended under HTTP/1, whose requests on one connection come one at a time), and clones
/// only when the stack is not ready at once.
pub(super) struct PerConnection<S> {
    stack: parking_lot::Mutex<S>,
    activity: Arc<Activity>,
}

impl<S> PerConnection<S> {
    pub(super) fn new(service: S, activity: Arc<Activity>) -> Self {
        Self {
            stack: parking_lot::Mutex::new(service),
            activity,
        }
    }
}

impl<S, R> hyper::service::Service<R> for PerConnection<S>
where
    S: tower::Service<R, Error = Infallible> + Clone,
{
    type Response = S::Response;
    type Error = Infallible;
    type Future = InFlight<Either<S::Future, tower::util::Oneshot<S, R>>>;

    fn call(&self, req: R) -> Self::Future {
        let busy = self.activity.begin();
        // The lock does not poison: a call that panicked left nothing half-done in the
        // stack (its layers keep no state across calls).
        let mut svc = self.stack.lock();
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let answer = match svc.poll_ready(&mut cx) {
            std::task::Poll::Ready(Ok(())) => Either::Left(svc.call(req)),
            std::task::Poll::Ready(Err(never)) => match never {},
            // Waits for readiness the usual way, with a real waker, on a copy.
            std::task::Poll::Pending => Either::Right(tower::ServiceExt::oneshot(svc.clone(), req)),
        };
        InFlight {
            answer,
            _busy: busy,
        }
    }
}

pin_project_lite::pin_project! {
    /// A request's answer, in flight on its connection until it is ready or dropped.
    pub(super) struct InFlight<F> {
        #[pin]
        answer: F,
        _busy: Busy,
    }
}

impl<F: std::future::Future> std::future::Future for InFlight<F> {
    type Output = F::Output;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        self.project().answer.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stack that counts its copies and, when told, is not ready at the first poll.
    struct Counted {
        clones: std::sync::Arc<std::sync::atomic::AtomicUsize>,
        busy: std::sync::Arc<std::sync::atomic::AtomicBool>,
    }

    impl Clone for Counted {
        fn clone(&self) -> Self {
            self.clones
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Self {
                clones: self.clones.clone(),
                busy: self.busy.clone(),
            }
        }
    }

    impl tower::Service<u32> for Counted {
        type Response = u32;
        type Error = Infallible;
        type Future = std::future::Ready<Result<u32, Infallible>>;

        fn poll_ready(
            &mut self,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Infallible>> {
            if self.busy.swap(false, std::sync::atomic::Ordering::SeqCst) {
                cx.waker().wake_by_ref();
                return std::task::Poll::Pending;
            }
            std::task::Poll::Ready(Ok(()))
        }

        fn call(&mut self, n: u32) -> Self::Future {
            std::future::ready(Ok(n + 1))
        }
    }

    #[tokio::test]
    async fn a_connection_calls_its_own_stack_and_copies_it_only_to_wait() {
        use std::sync::atomic::Ordering;
        let stack = Counted {
            clones: Default::default(),
            busy: Default::default(),
        };
        let (clones, busy) = (stack.clones.clone(), stack.busy.clone());
        let conn = PerConnection::new(stack, Activity::new());
        for n in 0..3 {
            assert_eq!(hyper::service::Service::call(&conn, n).await, Ok(n + 1));
        }
        assert_eq!(clones.load(Ordering::SeqCst), 0, "no copy per request");
        busy.store(true, Ordering::SeqCst);
        assert_eq!(hyper::service::Service::call(&conn, 9).await, Ok(10));
        assert_eq!(
            clones.load(Ordering::SeqCst),
            1,
            "a copy waits for readiness"
        );
    }
}
