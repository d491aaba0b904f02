//! The listener: hyper 1 through hyper-util, HTTP/1.1 and h2c on one port, graceful drain.
//!
//! `auto::Builder` sniffs the HTTP/2 preface, so prior-knowledge h2c clients and HTTP/1.1
//! clients share the port. On shutdown the accept loop stops, every connection is told to
//! finish (HTTP/1 closes after its in-flight response, HTTP/2 sends GOAWAY), and the drain
//! waits up to the grace period before the rest are cut.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::future::Either;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::body::Body;

/// The runtime the binary serves on: tokio's multi-threaded scheduler, one worker per core.
///
/// Built with `--cfg tokio_unstable` (set in `.cargo/config.toml`), the workers' LIFO slot is
/// off. With it on, a task woken by the running one (a request's upstream connection task,
/// a response waking the request) runs next on the same worker and cannot be stolen while it
/// waits there, and a proxy wakes such a task on every request. Measured (`benches/load.sh` rows, CPU per request of the
/// process, alternating runs): passthrough 38.1–38.8 → 34.1–34.9 µs and 28k → 32k rps; cache
/// hits, which wake no other task, unchanged. Measured again on a faster machine (README
/// §Performance): still ahead on every miss row (V1→AppDirect 17.4–17.9k → 19.6–20.0k rps),
/// though the other worker, parked in `epoll_wait`, is now woken through the eventfd about
/// once every six proxied requests.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    #[cfg(tokio_unstable)]
    builder.disable_lifo_slot();
    builder.build()
}

/// hyper's `Service` over a tower service, one per connection. hyper-util's
/// `TowerToHyperService` clones the whole stack for every request (hyper calls through
/// `&self`), each clone a dozen reference counts that every connection's requests share.
/// Here the connection keeps its own copy behind a lock held only while `call` runs (never
/// contended under HTTP/1, whose requests on one connection come one at a time), and clones
/// only when the stack is not ready at once.
struct PerConnection<S>(parking_lot::Mutex<S>);

impl<S> PerConnection<S> {
    fn new(service: S) -> Self {
        Self(parking_lot::Mutex::new(service))
    }
}

impl<S, R> hyper::service::Service<R> for PerConnection<S>
where
    S: tower::Service<R, Error = Infallible> + Clone,
{
    type Response = S::Response;
    type Error = Infallible;
    type Future = Either<S::Future, tower::util::Oneshot<S, R>>;

    fn call(&self, req: R) -> Self::Future {
        // The lock does not poison: a call that panicked left nothing half-done in the
        // stack (its layers keep no state across calls).
        let mut svc = self.0.lock();
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match svc.poll_ready(&mut cx) {
            std::task::Poll::Ready(Ok(())) => Either::Left(svc.call(req)),
            std::task::Poll::Ready(Err(never)) => match never {},
            // Waits for readiness the usual way, with a real waker, on a copy.
            std::task::Poll::Pending => Either::Right(tower::ServiceExt::oneshot(svc.clone(), req)),
        }
    }
}

/// Listener behaviour, from `[server]`.
#[derive(Debug, Clone, Copy)]
pub struct ServerOptions {
    /// Time allowed to receive a request's headers.
    pub header_read_timeout: Duration,
    /// HTTP/1.1 keep-alive.
    pub keep_alive: bool,
    /// How long a graceful stop waits for in-flight requests.
    pub shutdown_grace: Duration,
}

impl From<&crate::config::ServerConfig> for ServerOptions {
    fn from(c: &crate::config::ServerConfig) -> Self {
        Self {
            header_read_timeout: c.header_read_timeout,
            keep_alive: c.keep_alive,
            shutdown_grace: c.shutdown_grace,
        }
    }
}

/// Serves `service` on `listener` until `shutdown` resolves, then drains.
pub async fn serve<S>(
    listener: TcpListener,
    service: S,
    opts: ServerOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()>
where
    S: tower::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout)
        .keep_alive(opts.keep_alive);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning or dying.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                // Every request of the connection carries the client's address (rate limits by ip).
                let local = stream.local_addr().ok();
                let svc = tower::ServiceExt::map_request(service.clone(), move |mut req: Request<Incoming>| {
                    req.extensions_mut().insert(crate::context::PeerAddr(peer));
                    if let Some(local) = local {
                        req.extensions_mut().insert(crate::context::LocalAddr(local));
                    }
                    req
                });
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), PerConnection::new(svc));
                let conn = graceful.watch(conn.into_owned());
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down: draining in-flight requests");
    match tokio::time::timeout(opts.shutdown_grace, graceful.shutdown()).await {
        Ok(()) => tracing::info!("drained"),
        Err(_) => {
            tracing::warn!(grace = ?opts.shutdown_grace, "grace period over; remaining connections were cut")
        }
    }
    Ok(())
}

/// A server running on a task (tests, the demo).
pub struct RunningServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Triggers the graceful stop and waits for the drain to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// Spawns [`serve`] on a task; the listener is already bound, so the server is reachable
/// as soon as this returns.
pub async fn spawn<S>(listener: TcpListener, service: S, opts: ServerOptions) -> RunningServer
where
    S: tower::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, service, opts, async move {
        let _ = stopped.await;
    }));
    RunningServer {
        addr,
        stop: Some(stop),
        task,
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
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
        let conn = PerConnection::new(stack);
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
