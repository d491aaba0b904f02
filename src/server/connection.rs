//! One connection's life after it is accepted: served until it ends, told to finish on
//! shutdown or when it has been idle for `server.idle_timeout`, its slot of
//! `server.max_connections` given back when it is gone.
//!
//! Idle means no request in flight: [`Activity`] counts the requests between their head
//! arriving and their answer's head being ready, and notes when the last one ended. hyper's
//! HTTP/1 has no idle timeout of its own (its `header_read_timeout` also runs between
//! requests, so whichever is shorter closes a quiet keep-alive connection), and its HTTP/2
//! keep-alive pings only prove the peer alive. Closing is hyper's graceful shutdown either
//! way: HTTP/1 closes at once when nothing is in flight and after the response otherwise,
//! HTTP/2 sends `GOAWAY` and lets open streams finish, so an idle close never cuts an
//! answer. The idle timer is checked lazily: it wakes once per `idle_timeout`, not once per
//! request.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::time::Instant;

use super::first_byte::is_first_byte_timeout;
use crate::body::BoxError;
use crate::metrics::{self, ConnectionTimeout};

/// Requests in flight on one connection, and since when none has been.
pub(super) struct Activity(parking_lot::Mutex<State>);

struct State {
    in_flight: usize,
    quiet_since: Instant,
}

impl Activity {
    /// A connection accepted now, with nothing in flight.
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Self(parking_lot::Mutex::new(State {
            in_flight: 0,
            quiet_since: crate::clock::now(),
        })))
    }

    /// A request starts; it is in flight until the returned guard drops.
    pub(super) fn begin(self: &Arc<Self>) -> Busy {
        self.0.lock().in_flight += 1;
        Busy(self.clone())
    }

    /// When the connection will have been idle for `idle`, unless a request starts first;
    /// `None` when it already has. While a request is in flight, `idle` from now (the check
    /// comes round again).
    fn idle_at(&self, idle: Duration) -> Option<Instant> {
        let state = self.0.lock();
        let now = crate::clock::now();
        if state.in_flight > 0 {
            return Some(now + idle);
        }
        let at = state.quiet_since + idle;
        (at > now).then_some(at)
    }
}

/// A request in flight on its connection (see [`Activity::begin`]).
pub(super) struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let mut state = self.0.0.lock();
        state.in_flight -= 1;
        if state.in_flight == 0 {
            state.quiet_since = crate::clock::now();
        }
    }
}

/// An accepted connection as hyper serves it, and how to ask it to finish.
pub(super) struct Accepted<C> {
    /// The connection's future (hyper-util's `auto` connection).
    pub(super) conn: C,
    /// Its graceful shutdown.
    pub(super) finish: fn(Pin<&mut C>),
    /// What its requests report.
    pub(super) activity: Arc<Activity>,
    /// The client, for the log.
    pub(super) peer: SocketAddr,
}

/// Serves `accepted` until it ends; `stop` turning true (or its sender gone) asks it to
/// finish. `slot` is its place under `server.max_connections`, held until it is gone.
pub(super) async fn drive<C>(
    accepted: Accepted<C>,
    idle: Duration,
    mut stop: watch::Receiver<bool>,
    slot: OwnedSemaphorePermit,
) where
    C: Future<Output = Result<(), BoxError>>,
{
    metrics::connection_opened();
    let Accepted {
        conn,
        finish,
        activity,
        peer,
    } = accepted;
    let (result, idled) = run(conn, finish, &activity, idle, &mut stop).await;
    match result {
        Ok(()) if idled => metrics::connection_timed_out(ConnectionTimeout::Idle),
        Ok(()) => {}
        Err(e) if is_first_byte_timeout(&*e) => {
            metrics::connection_timed_out(ConnectionTimeout::FirstByte);
            tracing::debug!(%peer, "connection closed: {e}");
        }
        Err(e)
            if e.downcast_ref::<hyper::Error>()
                .is_some_and(hyper::Error::is_timeout) =>
        {
            metrics::connection_timed_out(ConnectionTimeout::Header);
            tracing::debug!(%peer, "connection closed: {e}");
        }
        Err(e) => tracing::debug!(%peer, error = %e, "connection ended with an error"),
    }
    metrics::connection_closed();
    drop(slot);
}

/// Polls `conn` to its end, asking it to finish on `stop` or once idle; also says whether
/// it was asked for being idle.
async fn run<C, E>(
    conn: C,
    finish: fn(Pin<&mut C>),
    activity: &Activity,
    idle: Duration,
    stop: &mut watch::Receiver<bool>,
) -> (Result<(), E>, bool)
where
    C: Future<Output = Result<(), E>>,
{
    tokio::pin!(conn);
    let check = tokio::time::sleep(idle);
    tokio::pin!(check);
    let (mut finishing, mut idled) = (false, false);
    loop {
        tokio::select! {
            biased;
            result = &mut conn => return (result, idled),
            // Asked to stop, or the server is gone: finish either way.
            _ = stop.wait_for(|stop| *stop), if !finishing => {
                finishing = true;
                finish(conn.as_mut());
            }
            () = &mut check, if !finishing => match activity.idle_at(idle) {
                Some(at) => check.as_mut().reset(at),
                None => {
                    (finishing, idled) = (true, true);
                    finish(conn.as_mut());
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(60);

    #[tokio::test(start_paused = true)]
    async fn idle_counts_from_the_last_request_and_never_during_one() {
        let activity = Activity::new();
        let start = crate::clock::now();
        assert_eq!(activity.idle_at(IDLE), Some(start + IDLE));
        tokio::time::advance(Duration::from_secs(50)).await;
        let busy = activity.begin();
        tokio::time::advance(Duration::from_secs(100)).await;
        assert_eq!(
            activity.idle_at(IDLE),
            Some(crate::clock::now() + IDLE),
            "in flight: not idle, however long"
        );
        drop(busy);
        let ended = crate::clock::now();
        tokio::time::advance(IDLE - Duration::from_secs(1)).await;
        assert_eq!(activity.idle_at(IDLE), Some(ended + IDLE));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(activity.idle_at(IDLE), None);
    }

    /// A connection stand-in that ends when asked to finish.
    struct Finishes(bool);

    impl Future for Finishes {
        type Output = Result<(), ()>;

        fn poll(
            self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Self::Output> {
            if self.0 {
                std::task::Poll::Ready(Ok(()))
            } else {
                std::task::Poll::Pending
            }
        }
    }

    fn finish(c: Pin<&mut Finishes>) {
        c.get_mut().0 = true;
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_asked_to_finish_after_the_idle_timeout() {
        let activity = Activity::new();
        let (_tx, mut rx) = watch::channel(false);
        let start = crate::clock::now();
        let (result, idled) = run(Finishes(false), finish, &activity, IDLE, &mut rx).await;
        assert_eq!(result, Ok(()));
        assert!(idled);
        assert_eq!(crate::clock::now() - start, IDLE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_connection_is_not_idle_and_a_stop_finishes_it() {
        let activity = Activity::new();
        let busy = activity.begin();
        let (tx, mut rx) = watch::channel(false);
        let start = crate::clock::now();
        let stopper = tokio::spawn(async move {
            tokio::time::sleep(IDLE * 3).await;
            tx.send(true).unwrap();
        });
        let (result, idled) = run(Finishes(false), finish, &activity, IDLE, &mut rx).await;
        assert_eq!(result, Ok(()));
        assert!(!idled, "finished by the stop, not for being idle");
        assert_eq!(crate::clock::now() - start, IDLE * 3);
        drop(busy);
        stopper.await.unwrap();
    }
}
