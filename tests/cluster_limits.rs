//! Cluster mode's limits across real replicas: three `rosetta serve` processes sharing one
//! real `redis-server` (started here on a free port, in a temporary folder) and one sample
//! AppDirect backend. One bucket, one day's points and one set of concurrency slots between
//! them, exactly; a node killed with slots held frees them after the lease; Redis stopped
//! and started again under `deny` and `allow`.

// A measurement over a 10 s window reads the machine's real clock.
#![allow(clippy::disallowed_methods)]
#![cfg(unix)]

mod process;
mod redis;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rosetta::demo::{DemoServer, Fault, FaultKind};
use serde_json::{Value, json};

use process::{Served, serve_with};
use redis::RedisServer;

type HttpClient = Client<HttpConnector, Full<bytes::Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: String,
}

/// One request as `root`, past the read cache.
async fn send(c: &HttpClient, method: &str, url: &str, body: Option<Value>) -> Answer {
    let auth = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        "root:root-password",
    );
    let mut req = http::Request::builder()
        .method(method)
        .uri(url)
        .header("authorization", format!("Basic {auth}"))
        .header("cache-control", "no-cache");
    let bytes = match body {
        Some(v) => {
            req = req.header("content-type", "application/json");
            v.to_string()
        }
        None => String::new(),
    };
    let resp = c
        .request(req.body(Full::from(bytes)).unwrap())
        .await
        .expect("the node answers");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Answer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn company_path() -> String {
    format!("/companies/{}", rosetta::demo::PARTNER_ID)
}

/// Three nodes on `redis`, with `env` over the shipped config and `quota` (one method
/// group's entry) set for `root` on each; each warmed up (its
/// credential cache holds `root`, so no request of the test waits on a password hash), then
/// Redis emptied so the test starts from full buckets.
async fn three_nodes(
    redis: &RedisServer,
    appdirect: &DemoServer,
    dir: &std::path::Path,
    env: &[(&str, &str)],
    quota: Option<Value>,
) -> Vec<Served> {
    let url = redis.url();
    let mut all = vec![
        ("ROSETTA__CLUSTER__REDIS_URL", url.as_str()),
        // The sample backend is not AppDirect: its own limit is not under test.
        ("ROSETTA__RATE_LIMITS__APPDIRECT-UPSTREAM__BURST", "1000000"),
    ];
    all.extend_from_slice(env);
    let nodes: Vec<Served> = (0..3)
        .map(|i| serve_with(&appdirect.url(), &dir.join(format!("node{i}.db")), &all))
        .collect();
    let c = client();
    for n in &nodes {
        let a = send(&c, "GET", &format!("{}/v1/users", n.admin), None).await;
        assert_eq!(a.status, 200, "{}", a.body);
    }
    if let Some(methods) = quota {
        quotas_everywhere(&nodes, methods).await;
    }
    redis.flushall();
    nodes
}

/// The shipped policy out of the way, for tests of the quotas.
const UNLIMITED: (&str, &str) = ("ROSETTA__RATE_LIMITS__DEFAULT__BURST", "1000000");

/// Sets `root`'s quotas on every node (part 1: each node has its own store).
async fn quotas_everywhere(nodes: &[Served], methods: Value) {
    let c = client();
    for n in nodes {
        let a = send(
            &c,
            "PUT",
            &format!("{}/v1/users/root/quotas", n.admin),
            Some(json!({"services": [{"service": "REDAPI_V1", "methods": [methods.clone()]}]})),
        )
        .await;
        assert!(a.status < 300, "{} {}", a.status, a.body);
    }
}

/// `clients` tasks sending to the nodes in turn until `until` says stop; counts by status.
fn bases(nodes: &[Served]) -> Vec<String> {
    nodes.iter().map(|n| n.base.clone()).collect()
}

async fn hammer(
    bases: Vec<String>,
    clients: usize,
    path: String,
    until: impl Fn(&[AtomicU64; 6]) -> bool + Send + Sync + 'static,
) -> [u64; 6] {
    // 200, 429, 503, other, requests, concurrency refusals
    let counts: Arc<[AtomicU64; 6]> = Arc::new(Default::default());
    let until = Arc::new(until);
    let stop = Arc::new(AtomicBool::new(false));
    let bases = Arc::new(bases);
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            let (counts, until, stop, bases, path) = (
                counts.clone(),
                until.clone(),
                stop.clone(),
                bases.clone(),
                path.clone(),
            );
            tokio::spawn(async move {
                let c = client();
                let mut n = i;
                while !stop.load(Ordering::Relaxed) {
                    let a = send(&c, "GET", &format!("{}{path}", bases[n % 3]), None).await;
                    n += 1;
                    let slot = match a.status {
                        200 => 0,
                        429 => 1,
                        503 => 2,
                        _ => 3,
                    };
                    counts[slot].fetch_add(1, Ordering::SeqCst);
                    counts[4].fetch_add(1, Ordering::SeqCst);
                    if a.status == 429 && a.body.contains("max_concurrent_execution") {
                        counts[5].fetch_add(1, Ordering::SeqCst);
                    }
                    if until(&counts) {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    std::array::from_fn(|i| counts[i].load(Ordering::SeqCst))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_let_exactly_one_bucket_through() {
    let redis = RedisServer::start();
    let appdirect = rosetta::demo::start_appdirect().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The shipped policy: burst 20, 5/s, per user.
    let nodes = three_nodes(&redis, &appdirect, dir.path(), &[], None).await;
    let started = Instant::now();
    let window = Duration::from_secs(10);
    let counts = hammer(bases(&nodes), 64, company_path(), move |_| {
        started.elapsed() >= window
    })
    .await;
    let elapsed = started.elapsed().as_secs_f64();
    let [allowed, refused, unavailable, other, sent, _] = counts;
    eprintln!(
        "3 replicas, 64 clients, {elapsed:.2} s: {allowed} allowed, {refused} refused, of {sent}"
    );
    assert_eq!((unavailable, other), (0, 0), "{counts:?}");
    // The bucket's 20, and one more every 200 ms of the window (the last answers arrive
    // a little after it ends).
    let expected = 20.0 + 5.0 * elapsed;
    assert!(
        (allowed as f64 - expected).abs() <= 1.5 && (69..=71).contains(&allowed),
        "{allowed} allowed in {elapsed:.2} s, expected {expected:.1}"
    );
    assert!(refused > 1000, "the clients pressed hard enough: {refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_spend_a_days_points_exactly_once() {
    let redis = RedisServer::start();
    let appdirect = rosetta::demo::start_appdirect().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let nodes = three_nodes(
        &redis,
        &appdirect,
        dir.path(),
        &[UNLIMITED],
        Some(json!({"method_group": "READ", "points_per_day": 100})),
    )
    .await;
    let before = appdirect.log().requests().len();
    let counts = hammer(bases(&nodes), 64, company_path(), |c| {
        c[1].load(Ordering::SeqCst) >= 200
    })
    .await;
    let [allowed, refused, unavailable, other, _, _] = counts;
    assert_eq!(allowed, 100, "{counts:?}");
    assert!(refused >= 200, "{counts:?}");
    assert_eq!((unavailable, other), (0, 0), "{counts:?}");
    // Refusals sent nothing upstream (admitted reads may share one call: misses coalesce).
    assert!(appdirect.log().requests().len() - before <= 100);
    let c = client();
    let a = send(
        &c,
        "GET",
        &format!("{}{}", nodes[2].base, company_path()),
        None,
    )
    .await;
    assert_eq!(a.status, 429);
    assert!(a.body.contains("points_per_day: 100 of 100"), "{}", a.body);
    assert!(a.headers.contains_key("retry-after"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_hold_five_in_flight_between_them() {
    let redis = RedisServer::start();
    let appdirect = rosetta::demo::start_appdirect().await.unwrap();
    appdirect.faults().push(Fault {
        method: None,
        path_prefix: "/api/account/v2/companies".into(),
        kind: FaultKind::Delay(Duration::from_millis(200)),
        times: None,
    });
    let dir = tempfile::tempdir().unwrap();
    let nodes = three_nodes(
        &redis,
        &appdirect,
        dir.path(),
        &[UNLIMITED],
        Some(json!({"method_group": "READ", "max_concurrent_execution": 5})),
    )
    .await;
    let counts = hammer(bases(&nodes), 30, company_path(), |c| {
        c[0].load(Ordering::SeqCst) >= 60
    })
    .await;
    let [allowed, _, unavailable, other, _, concurrency] = counts;
    assert!(allowed >= 60, "{counts:?}");
    assert_eq!((unavailable, other), (0, 0), "{counts:?}");
    assert!(concurrency > 0, "the slots were contended: {counts:?}");
    let most = appdirect.max_in_flight();
    eprintln!("3 replicas, max_concurrent_execution 5: the upstream saw at most {most} at once");
    assert!((1..=5).contains(&most), "the upstream saw {most} at once");
    // Every lease is given back (off the requests' path, so just after their answers).
    let deadline = Instant::now() + Duration::from_secs(5);
    while redis.cmd::<u64>(&["ZCARD", "rosetta:c:REDAPI_V1:READ:root"]) > 0 {
        assert!(Instant::now() < deadline, "leases left held");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_killed_holding_slots_frees_them_after_the_lease() {
    let redis = RedisServer::start();
    let appdirect = rosetta::demo::start_appdirect().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = three_nodes(
        &redis,
        &appdirect,
        dir.path(),
        &[UNLIMITED, ("ROSETTA__CLUSTER__LEASE", "3s")],
        Some(json!({"method_group": "READ", "max_concurrent_execution": 5})),
    )
    .await;
    // Five requests held upstream on node 0, far longer than the lease (another company:
    // the later requests are answered at once).
    let slow = rosetta::demo::PARTNER2_ID;
    appdirect.faults().push(Fault {
        method: None,
        path_prefix: format!("/api/account/v2/companies/{slow}"),
        kind: FaultKind::Delay(Duration::from_secs(30)),
        times: None,
    });
    let base0 = nodes[0].base.clone();
    let held: Vec<_> = (0..5)
        .map(|_| {
            let url = format!("{base0}/companies/{slow}");
            tokio::spawn(async move {
                let _ = client()
                    .request(
                        http::Request::get(url)
                            .header(
                                "authorization",
                                format!(
                                    "Basic {}",
                                    base64::Engine::encode(
                                        &base64::engine::general_purpose::STANDARD,
                                        "root:root-password"
                                    )
                                ),
                            )
                            .body(Full::default())
                            .unwrap(),
                    )
                    .await;
            })
        })
        .collect();
    let key = "rosetta:c:REDAPI_V1:READ:root";
    let deadline = Instant::now() + Duration::from_secs(10);
    while redis.cmd::<u64>(&["ZCARD", key]) < 5 {
        assert!(Instant::now() < deadline, "five slots taken on node 0");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Held past one renewal (a third of the lease): the node renews what it holds.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(
        redis.cmd::<u64>(&["ZCARD", key]),
        5,
        "a live node keeps its leases"
    );
    let c = client();
    let refused = send(
        &c,
        "GET",
        &format!("{}{}", nodes[1].base, company_path()),
        None,
    )
    .await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert!(
        refused.body.contains("max_concurrent_execution"),
        "{}",
        refused.body
    );
    let killed = nodes.remove(0);
    let killed_at = Instant::now();
    assert!(!killed.stop("KILL").await);
    for h in held {
        h.abort();
    }
    // Free again once the lease runs out, never before, and never later than a lease.
    let answer = loop {
        let a = send(
            &c,
            "GET",
            &format!("{}{}", nodes[0].base, company_path()),
            None,
        )
        .await;
        if a.status == 200 {
            break killed_at.elapsed();
        }
        assert!(a.body.contains("max_concurrent_execution"), "{}", a.body);
        assert!(
            killed_at.elapsed() < Duration::from_secs(8),
            "the slots were not freed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("slots of the killed node free after {answer:?} (lease 3 s)");
    assert!(answer <= Duration::from_millis(3500), "{answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_gone_denies_in_the_clients_dialect_and_recovers_by_itself() {
    let mut redis = RedisServer::start();
    let appdirect = rosetta::demo::start_appdirect().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let nodes = three_nodes(&redis, &appdirect, dir.path(), &[], None).await;
    let c = client();
    let v1 = format!("{}{}", nodes[0].base, company_path());
    let ok = send(&c, "GET", &v1, None).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.headers["ratelimit-remaining"], "19");
    redis.stop();
    let before = appdirect.log().requests().len();
    let denied = send(&c, "GET", &v1, None).await;
    assert_eq!(denied.status, 503, "{}", denied.body);
    assert_eq!(denied.headers["retry-after"], "1");
    assert!(
        denied.headers["content-type"]
            .to_str()
            .unwrap()
            .contains("problem+json"),
        "a V1 problem"
    );
    let problem: Value = serde_json::from_str(&denied.body).unwrap();
    assert_eq!(problem["status"], 503);
    // A LongJump client gets LongJump's error document.
    let lj = send(
        &c,
        "GET",
        &format!("{}/networking/rest/tenant/northwind", nodes[1].base),
        None,
    )
    .await;
    assert_eq!(lj.status, 503, "{}", lj.body);
    assert!(lj.body.contains("<code>-9503</code>"), "{}", lj.body);
    assert_eq!(
        appdirect.log().requests().len(),
        before,
        "nothing was sent upstream"
    );
    let health = send(&c, "GET", &format!("{}/health", nodes[2].admin), None).await;
    let health: Value = serde_json::from_str(&health.body).unwrap();
    assert_eq!(health["cluster"]["redis"], "down", "{health}");
    // Under load from here: every answer is 503 until Redis is back, then 200 or 429.
    let quit = Arc::new(AtomicBool::new(false));
    let flag = quit.clone();
    let load = tokio::spawn(hammer(bases(&nodes), 8, company_path(), move |_| {
        flag.load(Ordering::Relaxed)
    }));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Back on the same port, empty: each node reconnects by itself (its probe finds Redis
    // again), and the bucket is shared, and exact, again.
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    for n in &nodes {
        loop {
            let a = send(&c, "GET", &format!("{}/metrics", n.admin), None).await;
            assert_eq!(a.status, 200);
            let h = send(&c, "GET", &format!("{}/health", n.admin), None).await;
            let h: Value = serde_json::from_str(&h.body).unwrap();
            if h["cluster"]["redis"] == "up" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node did not see Redis again: {h}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    quit.store(true, Ordering::Relaxed);
    let [allowed, refused, unavailable, other, _, _] = load.await.unwrap();
    assert!(
        unavailable > 0 && allowed > 0,
        "{allowed} 200, {unavailable} 503"
    );
    assert_eq!(other, 0, "only 200, 429 and 503 under load ({refused} 429)");
    redis.flushall();
    for (i, n) in nodes.iter().enumerate() {
        let a = send(&c, "GET", &format!("{}{}", n.base, company_path()), None).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(
            a.headers["ratelimit-remaining"],
            (19 - i).to_string().as_str(),
            "one bucket across the nodes"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_gone_under_allow_lets_requests_through_counted_here() {
    let mut redis = RedisServer::start();
    let appdirect = rosetta::demo::start_appdirect().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let nodes = three_nodes(
        &redis,
        &appdirect,
        dir.path(),
        &[("ROSETTA__CLUSTER__ON_REDIS_ERROR", "allow")],
        None,
    )
    .await;
    let c = client();
    let v1 = format!("{}{}", nodes[0].base, company_path());
    redis.stop();
    // This node's own bucket (burst 20) takes over: 20 pass, then 429.
    let mut statuses = Vec::new();
    for _ in 0..21 {
        statuses.push(send(&c, "GET", &v1, None).await.status);
    }
    assert!(statuses[..20].iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(statuses[20], 429, "{statuses:?}");
    let metrics = send(&c, "GET", &format!("{}/metrics", nodes[0].admin), None).await;
    let line = metrics
        .body
        .lines()
        .find(|l| l.starts_with("rosetta_cluster_unavailable_total{outcome=\"allowed\"}"))
        .expect("the warning metric");
    let n: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 21, "{line}");
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let a = send(
            &c,
            "GET",
            &format!("{}{}", nodes[1].base, company_path()),
            None,
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.body);
        // Back on Redis: a fresh shared bucket (node 1's own would say 19 too, so ask
        // Redis itself).
        if redis.cmd::<bool>(&["EXISTS", "rosetta:rl:default:u:root"]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the node did not return to Redis"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
