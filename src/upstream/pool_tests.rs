//! Connection reuse, the pool's bounds and the never-twice rule, seen from a raw HTTP/1
//! server on 127.0.0.1 that counts the connections and requests it gets and answers as each
//! test tells it (hyper's own server would hide the connection handling these tests are about).

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};

use super::{Upstream, UpstreamRequest};
use crate::config::UpstreamConfig;
use crate::error::UpstreamError;

/// What the server does with each request it has read.
#[derive(Clone, Copy)]
enum Answer {
    /// `200 ok`, connection kept.
    KeepAlive,
    /// `200 ok`, then the socket is closed (an upstream closing an idle connection).
    ThenClose,
    /// `200 ok` with `Connection: close`, then the socket is closed.
    ConnectionClose,
    /// Nothing: the socket is closed once the request is read.
    Hangup,
    /// A body of 64 bytes.
    Big,
    /// Nothing, the connection kept open: a call in flight until the test ends.
    Stall,
    /// `500`, connection kept.
    Fail,
}

struct Server {
    url: String,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    /// One message per socket the server closed.
    closed: mpsc::UnboundedReceiver<()>,
    /// One message per request the server read.
    seen: mpsc::UnboundedReceiver<()>,
}

async fn server(answer: Answer) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let (tx, closed) = mpsc::unbounded_channel();
    let (seen_tx, seen) = mpsc::unbounded_channel();
    let (c, r) = (connections.clone(), requests.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            c.fetch_add(1, Ordering::SeqCst);
            let (r, tx, seen_tx) = (r.clone(), tx.clone(), seen_tx.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    // One request head (the tests send no bodies).
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    buf.drain(..end + 4);
                    r.fetch_add(1, Ordering::SeqCst);
                    let _ = seen_tx.send(());
                    let (reply, close): (&[u8], bool) = match answer {
                        Answer::KeepAlive => {
                            (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", false)
                        }
                        Answer::ThenClose => {
                            (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", true)
                        }
                        Answer::ConnectionClose => (
                            b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok",
                            true,
                        ),
                        Answer::Hangup => (b"", true),
                        Answer::Big => (
                            b"HTTP/1.1 200 OK\r\ncontent-length: 64\r\n\r\n\
                              0123456789012345678901234567890123456789012345678901234567890123",
                            false,
                        ),
                        Answer::Stall => (b"", false),
                        Answer::Fail => (
                            b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\n\r\nboom",
                            false,
                        ),
                    };
                    if sock.write_all(reply).await.is_err() || close {
                        break;
                    }
                }
                drop(sock);
                let _ = tx.send(());
            });
        }
    });
    Server {
        url,
        connections,
        requests,
        closed,
        seen,
    }
}

fn upstream_with(url: &str, extra: &str) -> Upstream {
    let cfg: UpstreamConfig =
        toml::from_str(&format!("url = {url:?}\n{extra}")).expect("an upstream config");
    Upstream::new("up", &cfg).unwrap()
}

fn request(method: Method) -> UpstreamRequest {
    UpstreamRequest {
        method,
        path_and_query: "/x".into(),
        headers: HeaderMap::new(),
        body: Bytes::new(),
    }
}

#[tokio::test]
async fn calls_one_after_another_share_one_connection() {
    let s = server(Answer::KeepAlive).await;
    let up = upstream_with(&s.url, "");
    for _ in 0..5 {
        let r = up.call(request(Method::GET)).await.unwrap();
        assert_eq!((r.status, &r.body[..]), (StatusCode::OK, &b"ok"[..]));
    }
    assert_eq!(s.requests.load(Ordering::SeqCst), 5);
    assert_eq!(s.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn idle_connections_are_kept_up_to_the_pool_size() {
    let s = server(Answer::KeepAlive).await;
    let up = upstream_with(&s.url, "pool_max_idle_per_host = 2");
    for _ in 0..2 {
        // Four at once need four connections; only two are kept for the next four.
        let calls = (0..4).map(|_| up.call(request(Method::GET)));
        for r in futures_util::future::join_all(calls).await {
            assert_eq!(r.unwrap().status, StatusCode::OK);
        }
    }
    assert_eq!(s.connections.load(Ordering::SeqCst), 4 + 2);
}

#[tokio::test]
async fn a_connection_the_upstream_closed_while_idle_is_replaced_without_an_error() {
    let mut s = server(Answer::ThenClose).await;
    let up = upstream_with(&s.url, "");
    for i in 1..=3 {
        let r = up.call(request(Method::POST)).await;
        assert_eq!(r.unwrap().status, StatusCode::OK, "call {i}");
        // The upstream has closed it (the client has not yet noticed: it is idle).
        s.closed.recv().await.unwrap();
    }
    assert_eq!(s.requests.load(Ordering::SeqCst), 3, "each sent once");
    assert_eq!(s.connections.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn connection_close_answers_are_not_kept() {
    let s = server(Answer::ConnectionClose).await;
    let up = upstream_with(&s.url, "");
    for _ in 0..3 {
        assert_eq!(
            up.call(request(Method::GET)).await.unwrap().status,
            StatusCode::OK
        );
    }
    assert_eq!(s.connections.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_request_the_upstream_took_without_answering_is_not_sent_again() {
    for method in [Method::GET, Method::POST] {
        let s = server(Answer::Hangup).await;
        let up = upstream_with(&s.url, "");
        match up.call(request(method.clone())).await {
            Err(e @ UpstreamError::Broken { .. }) => {
                assert!(e.to_string().contains("upstream up"), "{e}");
                assert!(!e.nothing_sent(), "the request was read");
            }
            other => panic!("{method}: {other:?}"),
        }
        assert_eq!(s.requests.load(Ordering::SeqCst), 1, "{method}");
    }
}

#[tokio::test]
async fn an_answer_over_the_body_limit_is_refused() {
    let s = server(Answer::Big).await;
    let up = upstream_with(&s.url, "body_limit = 63");
    match up.call(request(Method::GET)).await {
        Err(UpstreamError::InvalidResponse { detail, .. }) => {
            assert!(detail.contains("reading the body failed"), "{detail}")
        }
        other => panic!("{other:?}"),
    }
    let up = upstream_with(&s.url, "body_limit = 64");
    assert_eq!(up.call(request(Method::GET)).await.unwrap().body.len(), 64);
}

#[tokio::test]
async fn a_connection_idle_past_the_timeout_is_not_used() {
    let s = server(Answer::KeepAlive).await;
    let up = upstream_with(&s.url, "pool_idle_timeout = \"30s\"");
    up.call(request(Method::GET)).await.unwrap();
    up.call(request(Method::GET)).await.unwrap();
    assert_eq!(s.connections.load(Ordering::SeqCst), 1);
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(30)).await;
    tokio::time::resume();
    up.call(request(Method::GET)).await.unwrap();
    assert_eq!(s.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_error() {
    // A port that was just free: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let up = upstream_with(&format!("http://127.0.0.1:{port}"), "");
    match up.call(request(Method::GET)).await {
        Err(e @ UpstreamError::Connect { .. }) => assert!(e.nothing_sent()),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn calls_beyond_max_in_flight_wait_for_a_slot() {
    let s = server(Answer::KeepAlive).await;
    let up = upstream_with(&s.url, "max_in_flight = 1");
    // Four at once, one at a time: one connection does for all (unbounded, four were made).
    let calls = (0..4).map(|_| up.call(request(Method::GET)));
    for r in futures_util::future::join_all(calls).await {
        assert_eq!(r.unwrap().status, StatusCode::OK);
    }
    assert_eq!(s.requests.load(Ordering::SeqCst), 4);
    assert_eq!(s.connections.load(Ordering::SeqCst), 1);
    assert_eq!(up.in_flight(), 0, "every slot given back");
}

#[tokio::test]
async fn a_call_that_finds_no_slot_within_the_queue_timeout_is_busy_and_unsent() {
    let mut s = server(Answer::Stall).await;
    let up = Arc::new(upstream_with(
        &s.url,
        "max_in_flight = 1\nqueue_timeout = \"100ms\"\ntimeout = \"10s\"",
    ));
    let stalled = tokio::spawn({
        let up = up.clone();
        async move { up.call(request(Method::GET)).await }
    });
    s.seen.recv().await.unwrap();
    assert_eq!(up.in_flight(), 1);
    let started = crate::clock::real_now();
    match up.call(request(Method::GET)).await {
        Err(e @ UpstreamError::Busy { .. }) => {
            assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert!(e.nothing_sent());
            assert!(e.to_string().contains("1 calls in flight"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(100) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    assert_eq!(
        s.requests.load(Ordering::SeqCst),
        1,
        "the second was never sent"
    );
    // The stalled call ending frees its slot.
    stalled.abort();
    let _ = stalled.await;
    assert_eq!(up.in_flight(), 0);
}

#[tokio::test]
async fn failing_calls_open_the_breaker_and_calls_stop_reaching_the_upstream() {
    let s = server(Answer::Fail).await;
    let up = upstream_with(&s.url, "breaker = { failures = 3, cool_down = \"1h\" }");
    for _ in 0..3 {
        let r = up.call(request(Method::GET)).await.unwrap();
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    }
    match up.call(request(Method::GET)).await {
        Err(e @ UpstreamError::CircuitOpen { .. }) => {
            assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert!(e.nothing_sent());
            let retry = e.retry_after().unwrap();
            assert!(retry > Duration::from_secs(3590), "{retry:?}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.requests.load(Ordering::SeqCst), 3);
}
