//! The listener: HTTP/1.1 and h2c on one port, keep-alive, header read timeout, graceful
//! drain. Real sockets on 127.0.0.1; the handler is a plain service so only the server is
//! under test.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rosetta::body::{Body, full};
use rosetta::server::{ServerOptions, spawn};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

fn opts() -> ServerOptions {
    ServerOptions {
        header_read_timeout: Duration::from_millis(300),
        keep_alive: true,
        shutdown_grace: Duration::from_secs(5),
        max_connections: 10_000,
        first_byte_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        h2_keep_alive_interval: Duration::from_secs(20),
        h2_keep_alive_timeout: Duration::from_secs(20),
    }
}

fn hello()
-> impl tower::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible, Future: Send>
+ Clone
+ Send
+ 'static {
    tower::service_fn(|req: Request<Incoming>| async move {
        Ok::<_, Infallible>(Response::new(full(format!("hello {:?}", req.version()))))
    })
}

#[tokio::test]
async fn http1_and_h2c_share_the_port_and_connections_are_kept_alive() {
    let server = spawn(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        hello(),
        opts(),
    )
    .await;
    // HTTP/1.1: two requests on one connection.
    let stream = TcpStream::connect(server.addr()).await.unwrap();
    let (mut h1, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    for _ in 0..2 {
        let resp = h1
            .send_request(
                Request::get("/")
                    .header("host", "x")
                    .body(Empty::<Bytes>::new())
                    .unwrap(),
            )
            .await
            .unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"hello HTTP/1.1");
    }
    // h2c with prior knowledge.
    let stream = TcpStream::connect(server.addr()).await.unwrap();
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let resp = h2
        .send_request(
            Request::get(format!("http://{}/", server.addr()))
                .body(Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"hello HTTP/2.0");
    server.shutdown().await;
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let server = spawn(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        hello(),
        opts(),
    )
    .await;
    let mut s = TcpStream::connect(server.addr()).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut buf = Vec::new();
    // The server closes after its 300 ms header timeout; 10 s bounds the test if it does not.
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "the connection was not closed by the header read timeout"
    );
    assert!(!String::from_utf8_lossy(&buf).contains("hello"));
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests_and_refuses_new_ones() {
    let release = Arc::new(Notify::new());
    let started = Arc::new(Notify::new());
    let served = Arc::new(AtomicUsize::new(0));
    let (r, s, n) = (release.clone(), started.clone(), served.clone());
    let slow = tower::service_fn(move |_req: Request<Incoming>| {
        let (r, s, n) = (r.clone(), s.clone(), n.clone());
        async move {
            s.notify_one();
            r.notified().await;
            n.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Infallible>(Response::new(full("finished")))
        }
    });
    let server = spawn(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        slow,
        opts(),
    )
    .await;
    let addr = server.addr();
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut h1, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let in_flight = tokio::spawn(async move {
        let resp = h1
            .send_request(
                Request::get("/")
                    .header("host", "x")
                    .body(Empty::<Bytes>::new())
                    .unwrap(),
            )
            .await
            .unwrap();
        resp.into_body().collect().await.unwrap().to_bytes()
    });
    started.notified().await;
    let stopping = tokio::spawn(server.shutdown());
    // Shutdown has begun once the listener is gone; the request is still held open.
    tokio::time::timeout(Duration::from_secs(10), async {
        while TcpStream::connect(addr).await.is_ok() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the listener closes on shutdown");
    assert!(
        !in_flight.is_finished() && !stopping.is_finished(),
        "the drain waits for the in-flight request"
    );
    release.notify_one();
    let body = in_flight.await.unwrap();
    assert_eq!(&body[..], b"finished");
    stopping.await.unwrap();
    assert_eq!(served.load(Ordering::SeqCst), 1);
}
