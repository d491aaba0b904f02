//! Two gateways on one PostgreSQL store (`[store] url`): what one node's admin API writes,
//! the other reads at once (a user and key made through A authenticate on B), and the audit
//! trail is one: every request answered by either node is in `/v1/audit` of both. With
//! Redis too, three nodes share revocations, captures and statistics.
#![cfg(unix)]

mod common;
mod postgres;
mod redis;

use common::start_with;
use http::Method;
use postgres::PgServer;

#[tokio::test]
async fn a_key_made_on_one_node_works_on_the_other_and_the_audit_is_one() {
    let server = PgServer::start();
    let url = server.url();
    let a = start_with(|c| c.store.url = Some(url.clone())).await;
    let b = start_with(|c| c.store.url = Some(url.clone())).await;
    // Bootstrapped once: B found A's root user in the shared store.
    assert_eq!(server.psql("SELECT COUNT(*) FROM users"), "1");

    let key = a.ann("correct horse battery", None).await;
    let bearer = format!("Bearer {key}");
    let mut codes = Vec::new();
    for (node, path) in [
        (&b, "/companies"),
        (&a, "/companies"),
        (&b, "/companies/nope"),
    ] {
        let r = node
            .send(Method::GET, path, &[("authorization", &bearer)], "")
            .await;
        let want = if path == "/companies" { 200 } else { 404 };
        assert_eq!(r.status, want, "the key is known to both nodes: {path}");
        codes.push(r.header("x-trace-code").unwrap().to_owned());
    }
    // The key made on A is listed by B's admin API.
    let listed = b.root(Method::GET, "/v1/users/ann/keys", None).await.json();
    assert_eq!(listed["keys"].as_array().map(Vec::len), Some(1), "{listed}");

    a.gw.store.flush().await.unwrap();
    b.gw.store.flush().await.unwrap();
    for node in [&a, &b] {
        let audit = node
            .root(Method::GET, "/v1/audit?username=ann&sort_field=time", None)
            .await
            .json();
        let got: Vec<&str> = audit["actions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["tracedata"]["code"].as_str().unwrap())
            .collect();
        assert_eq!(got, codes, "{audit}");
    }
    a.stop().await;
    b.stop().await;
}

/// Three nodes on one PostgreSQL and one Redis, as the README's cluster runs: a key revoked
/// through B is refused by A and C within a second (the store is shared, and the bus makes
/// them forget what they remembered); a capture taken on C is read through A; statistics
/// read through any node count every node's requests.
#[tokio::test]
async fn three_nodes_share_revocations_captures_and_statistics() {
    let pg = PgServer::start();
    let redis = redis::RedisServer::start();
    let (url, redis_url) = (pg.url(), redis.url());
    let node = |capture: bool| {
        let (url, redis_url) = (url.clone(), redis_url.clone());
        start_with(move |c| {
            c.store.url = Some(url);
            c.cluster.redis_url = Some(redis_url);
            if capture {
                c.capture.mode = rosetta::config::CaptureMode::All;
            }
        })
    };
    let a = node(false).await;
    let b = node(false).await;
    let c = node(true).await;
    let key = a.ann("correct horse battery", None).await;
    let bearer = format!("Bearer {key}");
    let get = async |n: &common::Env| {
        n.send(Method::GET, "/companies", &[("authorization", &bearer)], "")
            .await
    };
    // Each node answers the key, and remembers it.
    for n in [&a, &b, &c] {
        assert_eq!(get(n).await.status, 200);
    }
    // A capture taken on C (a read not cached yet), read by its tracecode through A.
    let taken = c
        .send(
            Method::GET,
            "/companies?maxResults=7",
            &[("authorization", &bearer)],
            "",
        )
        .await;
    assert_eq!(taken.status, 200);
    let tc = taken.header("x-trace-code").unwrap().to_owned();
    for n in [&a, &b, &c] {
        n.gw.store.flush().await.unwrap();
    }
    let read = a
        .root(
            Method::GET,
            &format!("/v1/tracecode/{tc}?data_flow_type=OUTPUT&data_flow_stage=1"),
            None,
        )
        .await;
    assert_eq!(read.status, 200, "{}", String::from_utf8_lossy(&read.body));
    assert_eq!(read.body, taken.body, "the answer C sent, read through A");
    // Statistics through any node: every node's requests (today, UTC: ann has no timezone).
    let today = time::OffsetDateTime::from_unix_timestamp(
        rosetta::clock::WallClock::System.now_ms() / 1000,
    )
    .unwrap()
    .date()
    .to_string();
    let points = async |n: &common::Env| -> u64 {
        let s = n
            .root(
                Method::GET,
                &format!("/v1/statistics?username=ann&from={today}&to={today}"),
                None,
            )
            .await
            .json();
        let mut total = 0;
        for u in s["users"].as_array().unwrap() {
            for d in u["dates"].as_array().unwrap() {
                for svc in d["services"].as_array().unwrap() {
                    for m in svc["methods"].as_array().unwrap() {
                        total += m["points_per_day"].as_u64().unwrap();
                    }
                }
            }
        }
        total
    };
    let before = points(&a).await;
    assert!(before > 0, "the first requests count");
    assert_eq!(points(&b).await, before);
    assert_eq!(points(&c).await, before);
    for n in [&b, &c, &b, &c] {
        assert_eq!(get(n).await.status, 200);
    }
    for n in [&b, &c] {
        n.gw.store.flush().await.unwrap();
    }
    let after = points(&a).await;
    assert!(
        after > before,
        "B's and C's requests counted through A: {before} → {after}"
    );
    assert_eq!(points(&c).await, after);
    // Revoked through B: refused by A and C within a second.
    let keys = b.root(Method::GET, "/v1/users/ann/keys", None).await.json();
    let id = keys["keys"][0]["id"].as_str().unwrap().to_owned();
    let revoked = b
        .root(Method::DELETE, &format!("/v1/users/ann/keys/{id}"), None)
        .await;
    assert_eq!(revoked.status, 204);
    let at = rosetta::clock::now();
    for n in [&a, &c] {
        loop {
            let r = get(n).await;
            if r.status == 401 {
                break;
            }
            assert_eq!(r.status, 200);
            assert!(
                at.elapsed() < std::time::Duration::from_secs(1),
                "a revoked key still served after a second"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
    eprintln!("revoked on B, refused by A and C after {:?}", at.elapsed());
    for n in [a, b, c] {
        n.stop().await;
    }
}

/// Admin changes that nodes remember are applied by the others within a second once the
/// store is shared: a user disabled through A is refused by B and C, and quotas set through
/// C are enforced by A.
#[tokio::test]
async fn a_user_disabled_or_requoted_on_one_node_is_applied_by_the_others_within_a_second() {
    let pg = PgServer::start();
    let redis = redis::RedisServer::start();
    let (url, redis_url) = (pg.url(), redis.url());
    let node = || {
        let (url, redis_url) = (url.clone(), redis_url.clone());
        start_with(move |c| {
            c.store.url = Some(url);
            c.cluster.redis_url = Some(redis_url);
        })
    };
    let (a, b, c) = (node().await, node().await, node().await);
    let key = a.ann("correct horse battery", None).await;
    let bearer = format!("Bearer {key}");
    let get = async |n: &common::Env| {
        n.send(Method::GET, "/companies", &[("authorization", &bearer)], "")
            .await
    };
    // Each node checks the key once and remembers it, and that ann has no quotas.
    for n in [&a, &b, &c, &a, &b, &c] {
        assert_eq!(get(n).await.status, 200);
    }
    /// Asks `n` until its answer has `status`; fails past a second of `at`.
    async fn until(
        n: &common::Env,
        status: u16,
        at: tokio::time::Instant,
        get: &impl AsyncFn(&common::Env) -> common::Resp,
    ) {
        loop {
            let r = get(n).await;
            if r.status == status {
                return;
            }
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
            assert!(
                at.elapsed() < std::time::Duration::from_secs(1),
                "still 200, not {status}, after a second"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
    // Quotas set through C: a request costs more than the day allows, so A refuses it.
    let quotas = serde_json::json!({"services": [{"service": "REDAPI_V1", "methods": [
        {"method_group": "READ", "points_per_request": 5, "points_per_day": 4}]}]});
    let set = c
        .root(Method::PUT, "/v1/users/ann/quotas", Some(quotas))
        .await;
    assert_eq!(set.status, 200, "{}", String::from_utf8_lossy(&set.body));
    let at = rosetta::clock::now();
    until(&a, 429, at, &get).await;
    eprintln!("quotas set on C, enforced by A after {:?}", at.elapsed());
    assert_eq!(
        c.root(Method::DELETE, "/v1/users/ann/quotas", None)
            .await
            .status,
        204
    );
    let at = rosetta::clock::now();
    loop {
        if get(&a).await.status == 200 {
            break;
        }
        assert!(
            at.elapsed() < std::time::Duration::from_secs(1),
            "quotas kept"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // Disabled through A: refused by B and C.
    let mut user = a.root(Method::GET, "/v1/users/ann", None).await.json();
    user["enabled"] = false.into();
    let put = a.root(Method::PUT, "/v1/users/ann", Some(user)).await;
    assert_eq!(put.status, 200, "{}", String::from_utf8_lossy(&put.body));
    let at = rosetta::clock::now();
    for n in [&b, &c] {
        until(n, 401, at, &get).await;
    }
    eprintln!("disabled on A, refused by B and C after {:?}", at.elapsed());
    for n in [a, b, c] {
        n.stop().await;
    }
}
