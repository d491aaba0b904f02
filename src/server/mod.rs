//! The listener: hyper 1 through hyper-util, HTTP/1.1 and h2c on one port, graceful drain,
//! every connection bounded.
//!
//! `auto::Builder` sniffs the HTTP/2 preface, so prior-knowledge h2c clients and HTTP/1.1
//! clients share the port. What a client can make the listener hold is bounded: at most
//! `server.max_connections` connections (past it the loop stops accepting, and new ones
//! wait in the kernel's backlog), each closed when it sends no first byte or only half a
//! preface in time ([`first_byte`]), when its HTTP/1 headers are slow (hyper's
//! `header_read_timeout`), when it is idle ([`connection`]) or, under HTTP/2, when it stops
//! answering pings. Requests themselves are bounded in the stack (`gateway::deadline`).
//! On shutdown the accept loop stops, every connection is told to finish (HTTP/1 closes
//! after its in-flight response, HTTP/2 sends GOAWAY), and the drain waits up to the grace
//! period before the rest are cut.

mod connection;
mod first_byte;
mod per_connection;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::{Builder, UpgradeableConnection};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

use self::connection::{Accepted, Activity};
use self::first_byte::FirstByte;
use self::per_connection::PerConnection;
use crate::body::Body;

/// How long the accept loop waits after a failed accept (out of file descriptors, out of
/// memory) before it tries again, rather than spinning on the error.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

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

/// Listener behaviour, from `[server]`.
#[derive(Debug, Clone, Copy)]
pub struct ServerOptions {
    /// Time allowed to receive a request's headers.
    pub header_read_timeout: Duration,
    /// HTTP/1.1 keep-alive.
    pub keep_alive: bool,
    /// How long a graceful stop waits for in-flight requests.
    pub shutdown_grace: Duration,
    /// Connections served at once; past it new ones wait in the backlog.
    pub max_connections: usize,
    /// Time a new connection has to send its first byte (HTTP/2: its whole preface).
    pub first_byte_timeout: Duration,
    /// A connection with no request in flight this long is closed.
    pub idle_timeout: Duration,
    /// HTTP/2: a `PING` after this long without a frame from the client.
    pub h2_keep_alive_interval: Duration,
    /// HTTP/2: closed when a `PING` is not answered within this.
    pub h2_keep_alive_timeout: Duration,
}

impl From<&crate::config::ServerConfig> for ServerOptions {
    fn from(c: &crate::config::ServerConfig) -> Self {
        Self {
            header_read_timeout: c.header_read_timeout,
            keep_alive: c.keep_alive,
            shutdown_grace: c.shutdown_grace,
            max_connections: c.max_connections,
            first_byte_timeout: c.first_byte_timeout,
            idle_timeout: c.idle_timeout,
            h2_keep_alive_interval: c.h2_keep_alive_interval,
            h2_keep_alive_timeout: c.h2_keep_alive_timeout,
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
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(opts.h2_keep_alive_interval))
        .keep_alive_timeout(opts.h2_keep_alive_timeout);
    let slots = Arc::new(Semaphore::new(opts.max_connections));
    let (stop, stopped) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut accept_failing = false;
    tokio::pin!(shutdown);
    loop {
        // A slot before `accept`: at the limit the loop waits here, and new connections wait
        // in the kernel's backlog (refused by it once full) instead of being accepted only to
        // be dropped.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot,
            () = &mut shutdown => break,
        };
        // The semaphore is never closed.
        let Ok(slot) = slot else { break };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // The client gave up before we took it: its loss, not the listener's.
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning or dying, and say so
                    // once per spell of failures, not 10 times a second.
                    if !accept_failing {
                        tracing::warn!(error = %e, backoff = ?ACCEPT_BACKOFF, "accept failed; retrying until it succeeds");
                        accept_failing = true;
                    }
                    drop(slot);
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if std::mem::take(&mut accept_failing) {
            tracing::info!("accepting connections again");
        }
        // Finished connections leave the set as new ones come.
        while connections.try_join_next().is_some() {}
        let _ = stream.set_nodelay(true);
        // Every request of the connection carries the client's address (rate limits by ip).
        let local = stream.local_addr().ok();
        let svc =
            tower::ServiceExt::map_request(service.clone(), move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(crate::context::PeerAddr(peer));
                if let Some(local) = local {
                    req.extensions_mut()
                        .insert(crate::context::LocalAddr(local));
                }
                req
            });
        let activity = Activity::new();
        let io = TokioIo::new(FirstByte::new(stream, opts.first_byte_timeout));
        let conn = builder
            .serve_connection_with_upgrades(io, PerConnection::new(svc, activity.clone()))
            .into_owned();
        let accepted = Accepted {
            conn,
            finish: UpgradeableConnection::graceful_shutdown,
            activity,
            peer,
        };
        connections.spawn(connection::drive(
            accepted,
            opts.idle_timeout,
            stopped.clone(),
            slot,
        ));
    }
    drop(listener);
    tracing::info!("shutting down: draining in-flight requests");
    let _ = stop.send(true);
    let drained = async { while connections.join_next().await.is_some() {} };
    match tokio::time::timeout(opts.shutdown_grace, drained).await {
        Ok(()) => tracing::info!("drained"),
        Err(_) => {
            tracing::warn!(grace = ?opts.shutdown_grace, left = connections.len(), "grace period over; remaining connections are cut");
            connections.shutdown().await;
        }
    }
    Ok(())
}

/// An accept error that concerns one connection (gone before it was taken), not the
/// listener.
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
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
