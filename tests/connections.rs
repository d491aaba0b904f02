//! Connections and requests are bounded (issue 24 item 2), through the real gateway on
//! 127.0.0.1: silent and half-preface sockets are closed after the first-byte timeout while
//! traffic goes on, the connection limit holds new connections in the backlog, idle
//! keep-alive connections (HTTP/1 and HTTP/2) are closed and busy ones are not, and a
//! trickled body is answered 408 in the client's dialect and gives its quota slot back.
//! Timeouts are set short here; every wait is bounded.

mod common;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{Env, KEY, start_with};
use http::{Method, Request, StatusCode};
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::time::{Instant, timeout};

const FIRST_BYTE: Duration = Duration::from_millis(500);
const IDLE: Duration = Duration::from_millis(500);
/// Longest any one wait in these tests may take before it is a failure.
const BOUND: Duration = Duration::from_secs(10);

/// Both ends of thousands of sockets live in this process.
fn enough_file_descriptors() {
    let limit = rlimit::increase_nofile_limit(16_384).expect("raise RLIMIT_NOFILE");
    assert!(
        limit >= 6_000,
        "these tests hold ~4,500 sockets; RLIMIT_NOFILE is {limit}"
    );
}

async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    timeout(BOUND, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: still waiting after {BOUND:?}"))
}

fn partner_path() -> String {
    format!("/companies/{}", rosetta::demo::PARTNER_ID)
}

/// Waits for the server to close `s`: end of stream or a reset, nothing else read.
async fn closed_by_server(mut s: TcpStream) {
    let mut buf = [0u8; 64];
    match s.read(&mut buf).await {
        Ok(0) => {}
        Ok(n) => panic!(
            "read {:?} instead of the close",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
}

/// Opens `n` sockets, a hundred connects at a time (the backlog holds 1,024), each sent
/// `first` once connected; returns each with the moment its connect began.
async fn open(
    addr: std::net::SocketAddr,
    n: usize,
    first: &'static [u8],
) -> Vec<(TcpStream, Instant)> {
    let mut out = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let batch = chunk.iter().map(|_| async move {
            // Before the connect: the server's timer cannot start earlier.
            let at = rosetta::clock::now();
            let mut s = TcpStream::connect(addr).await.expect("connect");
            s.write_all(first).await.unwrap();
            (s, at)
        });
        out.extend(futures_util::future::join_all(batch).await);
    }
    out
}

fn metric(text: &str, line_start: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {line_start} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_half_preface_sockets_are_closed_after_the_first_byte_timeout_while_traffic_is_served()
 {
    enough_file_descriptors();
    let env = Arc::new(start_with(|c| c.server.first_byte_timeout = FIRST_BYTE).await);
    let before = metric(
        &rosetta::metrics::render(),
        "rosetta_connections_timed_out_total{after=\"first_byte\"}",
    );
    let addr = env.gateway.addr();
    let mut sockets = open(addr, 2_000, b"").await;
    sockets.extend(open(addr, 200, b"PRI * HTTP/2.0\r\n").await);
    let closes: Vec<_> = sockets
        .into_iter()
        .map(|(s, at)| {
            tokio::spawn(async move {
                closed_by_server(s).await;
                at.elapsed()
            })
        })
        .collect();
    // Normal requests are answered while the 2,200 sockets are held.
    let traffic = {
        let env = env.clone();
        tokio::spawn(async move {
            for _ in 0..20 {
                assert_eq!(env.get(&partner_path()).await.status, 200);
            }
        })
    };
    bounded("traffic", traffic).await.unwrap();
    let mut slowest = Duration::ZERO;
    for close in closes {
        let open_for = bounded("a socket's close", close).await.unwrap();
        assert!(
            open_for >= FIRST_BYTE,
            "closed after {open_for:?}, before the timeout"
        );
        slowest = slowest.max(open_for);
    }
    assert!(
        slowest < Duration::from_secs(5),
        "the last closed after {slowest:?}"
    );
    // And the gateway still answers afterwards.
    assert_eq!(env.get(&partner_path()).await.status, 200);
    let after = metric(
        &rosetta::metrics::render(),
        "rosetta_connections_timed_out_total{after=\"first_byte\"}",
    );
    assert!(after - before >= 2_200, "{before} → {after}");
}

/// An HTTP/1 connection of its own, driven on a task; the task ends when the server closes it.
async fn h1(
    addr: std::net::SocketAddr,
) -> (
    hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    tokio::task::JoinHandle<()>,
) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    (
        send,
        tokio::spawn(async move {
            let _ = conn.await;
        }),
    )
}

fn get_partner() -> Request<Empty<Bytes>> {
    Request::get(partner_path())
        .header("host", "gateway")
        .header("authorization", format!("Bearer {KEY}"))
        .body(Empty::new())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_connections_a_new_connection_waits_until_one_closes() {
    enough_file_descriptors();
    const MAX: usize = 4;
    let env = start_with(|c| c.server.max_connections = MAX).await;
    let addr = env.gateway.addr();
    let mut held = Vec::new();
    for _ in 0..MAX {
        let (mut send, task) = h1(addr).await;
        let resp = bounded("a held connection", send.send_request(get_partner())).await;
        assert_eq!(resp.unwrap().status(), 200);
        held.push((send, task));
    }
    // The kernel completes the handshake (backlog), but the gateway does not take it.
    let (mut waiting, _task) = h1(addr).await;
    let answer = tokio::spawn(async move { waiting.send_request(get_partner()).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!answer.is_finished(), "served past max_connections");
    // One closes: the waiting connection is taken and answered.
    let (send, task) = held.pop().unwrap();
    drop(send);
    task.abort();
    let resp = bounded("the waiting connection", answer)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_after_the_idle_timeout_and_busy_ones_are_not() {
    let env = start_with(|c| {
        c.server.idle_timeout = IDLE;
        // Longer than the idle timeout, so that it is the idle timeout that closes.
        c.server.header_read_timeout = Duration::from_secs(30);
    })
    .await;
    let addr = env.gateway.addr();
    // HTTP/1.1 keep-alive.
    let (mut send, task) = h1(addr).await;
    assert_eq!(
        send.send_request(get_partner()).await.unwrap().status(),
        200
    );
    let idle_from = rosetta::clock::now();
    bounded("the idle HTTP/1 close", task).await.unwrap();
    let idle_for = idle_from.elapsed();
    assert!(idle_for >= IDLE - Duration::from_millis(10), "{idle_for:?}");
    assert!(send.send_request(get_partner()).await.is_err());
    // HTTP/2: GOAWAY once no stream has been open for the timeout.
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let task = tokio::spawn(conn);
    assert_eq!(
        send.send_request(get_partner()).await.unwrap().status(),
        200
    );
    let idle_from = rosetta::clock::now();
    bounded("the idle HTTP/2 close", task)
        .await
        .unwrap()
        .unwrap();
    assert!(idle_from.elapsed() >= IDLE - Duration::from_millis(10));
    // A request in flight for longer than the idle timeout is not cut.
    env.appdirect.faults().push(rosetta::demo::Fault {
        method: Some(Method::GET),
        path_prefix: "/api".into(),
        kind: rosetta::demo::FaultKind::Delay(IDLE * 3),
        times: Some(1),
    });
    let (mut send, _task) = h1(addr).await;
    let slow = bounded("a slow answer", send.send_request(get_partner())).await;
    assert_eq!(slow.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hypers_header_read_timeout_also_closes_a_quiet_keep_alive_connection() {
    // hyper runs `header_read_timeout` while waiting for the next request's head too, so a
    // quiet HTTP/1 connection is closed after the shorter of it and `idle_timeout` (the
    // README's limits table says so).
    const HEADERS: Duration = Duration::from_millis(400);
    let env = start_with(|c| c.server.header_read_timeout = HEADERS).await;
    let (mut send, task) = h1(env.gateway.addr()).await;
    assert_eq!(
        send.send_request(get_partner()).await.unwrap().status(),
        200
    );
    let quiet_from = rosetta::clock::now();
    bounded("the close", task).await.unwrap();
    let quiet_for = quiet_from.elapsed();
    assert!(
        quiet_for >= HEADERS - Duration::from_millis(10) && quiet_for < env.cfg.server.idle_timeout,
        "{quiet_for:?}"
    );
}

/// A user whose WRITE calls may run one at a time; returns their key.
async fn one_write_at_a_time(env: &Env) -> String {
    let quotas = json!({"services": [{"service": "REDAPI_V1", "methods": [{"method_group": "WRITE", "max_concurrent_execution": 1}]}]});
    env.ann("slow-body-pass", Some(quotas)).await
}

/// Reads one HTTP/1 response off `s`: status, headers, body (by `content-length`).
async fn read_response(s: &mut (impl AsyncRead + Unpin)) -> common::Resp {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut buf).await.expect("read the response");
        assert!(
            n > 0,
            "closed before a response: {:?}",
            String::from_utf8_lossy(&raw)
        );
        raw.extend_from_slice(&buf[..n]);
    };
    let head = std::str::from_utf8(&raw[..head_end - 4]).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let mut headers = http::HeaderMap::new();
    for line in lines {
        let (name, value) = line.split_once(':').unwrap();
        headers.append(
            http::HeaderName::from_bytes(name.trim().as_bytes()).unwrap(),
            http::HeaderValue::from_str(value.trim()).unwrap(),
        );
    }
    let len: usize = headers["content-length"].to_str().unwrap().parse().unwrap();
    while raw.len() < head_end + len {
        let n = s.read(&mut buf).await.expect("read the body");
        assert!(n > 0, "closed mid-body");
        raw.extend_from_slice(&buf[..n]);
    }
    common::Resp {
        status: StatusCode::from_u16(status).unwrap(),
        headers,
        body: Bytes::copy_from_slice(&raw[head_end..head_end + len]),
    }
}

/// Sends a request's head and the start of its body, then one byte every 200 ms (until
/// the server stops taking them); returns the socket's reading half and the trickle's task.
async fn trickle(
    addr: std::net::SocketAddr,
    head: String,
) -> (OwnedReadHalf, tokio::task::JoinHandle<()>) {
    let (read, mut write) = TcpStream::connect(addr).await.unwrap().into_split();
    write.write_all(head.as_bytes()).await.unwrap();
    write.write_all(b"{").await.unwrap();
    let task = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if write.write_all(b" ").await.is_err() {
                return;
            }
        }
    });
    (read, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_is_408_in_dialect_and_gives_its_quota_slot_back() {
    // Long enough for the writes below to meet the held slot on a busy machine (under a
    // second, a loaded CI box could see the slow body cut before any of them arrived).
    const GRACE: Duration = Duration::from_millis(3_000);
    let env = start_with(|c| {
        c.server.min_body_rate = 1_000;
        c.server.body_rate_grace = GRACE;
    })
    .await;
    let key = one_write_at_a_time(&env).await;
    let path = format!("/companies/{}/disable", rosetta::demo::CUSTOMER_ID);
    let bearer = format!("Bearer {key}");
    let auth = [("authorization", bearer.as_str())];
    let quick = || env.send(Method::PATCH, &path, &auth, "");
    assert_eq!(quick().await.status, 200);
    let calls_before = env.appdirect_calls();
    let head = format!(
        "PATCH {path} HTTP/1.1\r\nhost: gateway\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n"
    );
    // The slow request and the quick writes race for the one slot: when a quick write holds
    // it as the slow request's head arrives, the slow request is the one refused (429 on its
    // own socket); then it is sent again on a new connection.
    let (mut slow, trickling, started, refused) =
        bounded("a write refused for the held slot", async {
            loop {
                let started = rosetta::clock::now();
                let (mut slow, trickling) = trickle(env.gateway.addr(), head.clone()).await;
                let refused = loop {
                    let r = quick().await;
                    if r.status == 429 {
                        break Some(r);
                    }
                    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
                    let mut peeked = [0u8; 1];
                    if timeout(Duration::ZERO, slow.peek(&mut peeked))
                        .await
                        .is_ok()
                    {
                        break None;
                    }
                };
                match refused {
                    Some(r) => break (slow, trickling, started, r),
                    None => {
                        eprintln!("the slow request lost the slot to a quick write; again");
                        trickling.abort();
                        read_response(&mut slow).await.assert_problem(429);
                    }
                }
            }
        })
        .await;
    let detail = refused.assert_problem(429)["detail"].to_string();
    assert!(detail.contains("concurren"), "{detail}");
    // The trickle falls behind 1,000 bytes/s once the grace is over: 408, problem details.
    let resp = bounded("the 408", read_response(&mut slow)).await;
    let took = started.elapsed();
    trickling.abort();
    let doc = resp.assert_problem(408);
    assert!(
        doc["detail"]
            .as_str()
            .unwrap()
            .contains("slower than 1000 bytes/s"),
        "{doc}"
    );
    assert!(took >= GRACE && took < GRACE * 3, "408 after {took:?}");
    // The slot is free again at once, and the slow request sent nothing upstream.
    let calls_by_quick = env.appdirect_calls() - calls_before;
    assert_eq!(quick().await.status, 200, "the slot was given back");
    assert_eq!(env.appdirect_calls() - calls_before, calls_by_quick + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_is_408_in_the_longjump_dialect() {
    let env = start_with(|c| {
        c.server.min_body_rate = 0;
        c.server.request_timeout = Duration::from_millis(600);
    })
    .await;
    let head = format!(
        "POST /networking/rest/tenant HTTP/1.1\r\nhost: gateway\r\nauthorization: Bearer {KEY}\r\ncontent-type: application/xml\r\ncontent-length: 1000\r\n\r\n<platform>"
    );
    let mut s = TcpStream::connect(env.gateway.addr()).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let started = rosetta::clock::now();
    let resp = bounded("the 408", read_response(&mut s)).await;
    assert!(started.elapsed() >= Duration::from_millis(590));
    let doc = resp.assert_lj(408, -9408);
    assert!(
        doc["message"]["description"]
            .as_str()
            .unwrap()
            .contains("not all received within 600ms"),
        "{doc}"
    );
}

#[tokio::test]
async fn an_admin_body_that_stops_is_408_in_the_admin_dialect() {
    let env = start_with(|c| c.server.request_timeout = Duration::from_millis(600)).await;
    let before = env.root(Method::GET, "/v1/companies", None).await.json()["statistics"]["overall"]
        ["total"]
        .clone();
    let head = format!(
        "POST /v1/companies HTTP/1.1\r\nhost: admin\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"key\": ",
        common::ADMIN_KEY
    );
    let mut s = TcpStream::connect(env.admin.addr()).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let started = rosetta::clock::now();
    let resp = bounded("the admin 408", read_response(&mut s)).await;
    assert!(started.elapsed() >= Duration::from_millis(590));
    let message = resp.assert_admin_error(408);
    assert!(message.contains("did not arrive within 600ms"), "{message}");
    // Nothing was created.
    let total = |doc: serde_json::Value| doc["statistics"]["overall"]["total"].clone();
    let after = total(env.root(Method::GET, "/v1/companies", None).await.json());
    assert_eq!(after, before, "no company was created");
}
