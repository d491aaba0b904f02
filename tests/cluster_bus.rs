//! Invalidations across nodes (issue 26): two gateways sharing one redis-server and one
//! AppDirect sample. A write, a purge and a reassign on node A reach node B within a second;
//! a Redis restart makes B drop its caches when it subscribes again, so a value changed
//! upstream while B was cut off is read fresh.
//!
//! Each test starts its own redis-server on a free port in a temp dir (`tests/redis`), and
//! stops it when dropped.

mod common;
mod redis;

use std::time::Duration;

use bytes::Bytes;
use common::{CONTOSO_KEY, Env, FABRIKAM_KEY, KEY, Resp, start_with};
use http::Method;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use redis::RedisServer;
use rosetta::demo::data::company_id;
use rosetta::demo::{CUSTOMER_ID, PARTNER_ID};
use serde_json::{Value, json};
use tokio::time::Instant;

/// How soon another node must apply an invalidation.
const WITHIN: Duration = Duration::from_secs(1);

/// Node A, then node B reading the same AppDirect sample, both on `redis`, both subscribed.
async fn two_nodes(redis: &RedisServer) -> (Env, Env) {
    two_nodes_at(redis.url(), redis.url()).await
}

/// As [`two_nodes`], A reaching Redis at `a_url` and B at `b_url`.
async fn two_nodes_at(a_url: String, b_url: String) -> (Env, Env) {
    let cluster = |cfg: &mut rosetta::config::Config, url: String| {
        cfg.cluster.redis_url = Some(url);
        // Reads go on while Redis is away (limits counted on the node), so a test can see
        // what a node serves from its cache meanwhile.
        cfg.cluster.on_redis_error = rosetta::config::OnRedisError::Allow;
        // Reaches outlive every test: only an invalidation drops them.
        cfg.tenancy.reach_ttl = Duration::from_secs(600);
    };
    let a = start_with(|cfg| cluster(cfg, a_url)).await;
    let shared = a.appdirect.url();
    let b = start_with(|cfg| {
        cluster(cfg, b_url);
        cfg.upstreams.get_mut("appdirect").unwrap().url = shared;
    })
    .await;
    for node in [&a, &b] {
        wait_for_bus(node, "subscribed").await;
    }
    (a, b)
}

/// `/health`'s `cluster.invalidations`.
async fn bus_health(node: &Env) -> Value {
    let h = node.admin_call(Method::GET, "/health", None, None).await;
    assert_eq!(h.status, 200, "{}", String::from_utf8_lossy(&h.body));
    h.json()["cluster"]["invalidations"].clone()
}

/// Waits (5 s at most) until the node's bus reports `state`; returns its `/health` part.
async fn wait_for_bus(node: &Env, state: &str) -> Value {
    let deadline = rosetta::clock::now() + Duration::from_secs(5);
    loop {
        let bus = bus_health(node).await;
        if bus["state"] == state {
            return bus;
        }
        assert!(
            rosetta::clock::now() < deadline,
            "the bus never got {state}: {bus}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Reads `path` on `node` as `key` until `done` holds; fails past [`WITHIN`] of `since`.
async fn until(
    node: &Env,
    key: &str,
    path: &str,
    since: Instant,
    what: &str,
    done: impl Fn(&Resp) -> bool,
) -> Resp {
    loop {
        let r = node.as_key(key, Method::GET, path, None).await;
        if done(&r) {
            return r;
        }
        assert!(
            since.elapsed() < WITHIN,
            "{what} not seen within {WITHIN:?}: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn cache_status(r: &Resp) -> &str {
    r.header("cache-status").unwrap_or("")
}

fn is_hit(r: &Resp) -> bool {
    cache_status(r).starts_with("rosetta; hit")
}

/// Caches `path` on `node` (read twice: the second is a hit).
async fn cached(node: &Env, path: &str) -> Resp {
    let first = node.get(path).await;
    assert_eq!(
        first.status,
        200,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    let again = node.get(path).await;
    assert!(is_hit(&again), "{path}: {}", cache_status(&again));
    again
}

#[tokio::test]
async fn a_write_on_a_makes_bs_cached_read_fresh_within_a_second() {
    let redis = RedisServer::start();
    let (a, b) = two_nodes(&redis).await;
    let customer = format!("/companies/{CUSTOMER_ID}");
    let partner = format!("/companies/{PARTNER_ID}");
    assert_eq!(cached(&b, &customer).await.json()["isEnabled"], true);
    cached(&b, &partner).await;
    let r = a
        .call(Method::PATCH, &format!("{customer}/disable"), None)
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let sent = rosetta::clock::now();
    let fresh = until(&b, KEY, &customer, sent, "the disable", |r| {
        r.json()["isEnabled"] == false
    })
    .await;
    assert!(!is_hit(&fresh), "{}", cache_status(&fresh));
    // Only the reads the write names: another company's entry is still served from B's cache.
    assert!(is_hit(&b.get(&partner).await));
}

#[tokio::test]
async fn a_purge_on_a_empties_bs_cache() {
    let redis = RedisServer::start();
    let (a, b) = two_nodes(&redis).await;
    let company = format!("/companies/{PARTNER_ID}");
    let tenants = "/networking/rest/tenant?fieldList=id&pageSize=2";
    cached(&b, &company).await;
    cached(&b, tenants).await;
    // One route's reads first.
    let purge = a
        .root(Method::DELETE, "/v1/cache?route=companies.get", None)
        .await;
    assert_eq!(purge.status, 204);
    until(
        &b,
        KEY,
        &company,
        rosetta::clock::now(),
        "the route purge",
        |r| !is_hit(r),
    )
    .await;
    assert!(is_hit(&b.get(tenants).await), "another route's reads stay");
    // Then everything.
    assert_eq!(a.root(Method::DELETE, "/v1/cache", None).await.status, 204);
    until(&b, KEY, tenants, rosetta::clock::now(), "the purge", |r| {
        !is_hit(r)
    })
    .await;
}

#[tokio::test]
async fn a_reassign_on_a_moves_the_reach_on_b_within_a_second() {
    let redis = RedisServer::start();
    let (a, b) = two_nodes(&redis).await;
    let alpine = format!("/companies/{}", company_id(10));
    // B resolves and keeps Contoso's reach (holding Alpine) and Fabrikam's (without it).
    for _ in 0..2 {
        assert_eq!(
            b.as_key(CONTOSO_KEY, Method::GET, &alpine, None)
                .await
                .status,
            200
        );
        assert_eq!(
            b.as_key(FABRIKAM_KEY, Method::GET, &alpine, None)
                .await
                .status,
            404
        );
    }
    // Northwind moves Alpine from Contoso to Fabrikam, through A.
    let r = a
        .call(
            Method::PATCH,
            &format!(
                "/companies/{}/customers/{}/reassign",
                company_id(3),
                company_id(10)
            ),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let sent = rosetta::clock::now();
    until(
        &b,
        FABRIKAM_KEY,
        &alpine,
        sent,
        "Fabrikam's new reach",
        |r| r.status == 200,
    )
    .await;
    until(
        &b,
        CONTOSO_KEY,
        &alpine,
        sent,
        "Contoso's lost reach",
        |r| r.status == 404,
    )
    .await;
}

#[tokio::test]
async fn after_a_redis_restart_b_drops_what_it_cached_before() {
    let mut redis = RedisServer::start();
    let (a, b) = two_nodes(&redis).await;
    let company = format!("/companies/{PARTNER_ID}");
    let before = cached(&b, &company).await.json();
    let subscribed = bus_health(&b).await;
    redis.stop();
    // B notices (the connection closes) and says so; it keeps serving, from its cache.
    let down = wait_for_bus(&b, "reconnecting").await;
    assert!(down["error"].is_string(), "{down}");
    // Renamed upstream behind B's cache while no invalidation can reach it.
    rename_upstream(&a, PARTNER_ID, "Renamed while Redis was down").await;
    let stale = b.get(&company).await;
    assert!(is_hit(&stale));
    assert_eq!(stale.json(), before);
    redis.restart();
    let back = wait_for_bus(&b, "subscribed").await;
    assert_ne!(back["since"], subscribed["since"]);
    let fresh = b.get(&company).await;
    assert!(!is_hit(&fresh), "{}", cache_status(&fresh));
    assert!(
        String::from_utf8_lossy(&fresh.body).contains("Renamed while Redis was down"),
        "{}",
        String::from_utf8_lossy(&fresh.body)
    );
    // And the bus carries A's writes again, with no restart of either node.
    wait_for_bus(&a, "subscribed").await;
    let customer = format!("/companies/{CUSTOMER_ID}");
    cached(&b, &customer).await;
    let r = a
        .call(Method::PATCH, &format!("{customer}/disable"), None)
        .await;
    assert_eq!(r.status, 200);
    until(
        &b,
        KEY,
        &customer,
        rosetta::clock::now(),
        "the disable after the restart",
        |r| r.json()["isEnabled"] == false,
    )
    .await;
    drop(redis);
}

#[tokio::test]
async fn a_write_a_could_not_publish_makes_b_drop_everything_once_it_can() {
    let redis = RedisServer::start();
    // A speaks to Redis as a user that can be refused PUBLISH, leaving B's subscription be.
    let acl = async |rule: &str| {
        let client = ::redis::Client::open(redis.url()).unwrap();
        let mut c = client.get_multiplexed_async_connection().await.unwrap();
        ::redis::cmd("ACL")
            .arg("SETUSER")
            .arg("node-a")
            .arg(rule.split(' ').collect::<Vec<_>>())
            .query_async::<()>(&mut c)
            .await
            .unwrap();
    };
    acl("on >pw ~* &* +@all -publish").await;
    let a_url = format!("redis://node-a:pw@127.0.0.1:{}/0", redis.port());
    let (a, b) = two_nodes_at(a_url, redis.url()).await;
    let customer = format!("/companies/{CUSTOMER_ID}");
    cached(&b, &customer).await;
    let r = a
        .call(Method::PATCH, &format!("{customer}/disable"), None)
        .await;
    assert_eq!(r.status, 200, "the write does not wait on Redis");
    assert_eq!(a.get(&customer).await.json()["isEnabled"], false);
    // The invalidation was refused: B serves its entry from before the write.
    let stale = b.get(&customer).await;
    assert!(is_hit(&stale));
    assert_eq!(stale.json()["isEnabled"], true);
    // Once Redis takes A's messages again, A tells everyone to drop everything.
    acl("+publish").await;
    until(
        &b,
        KEY,
        &customer,
        rosetta::clock::now(),
        "the drop after the lost publish",
        |r| r.json()["isEnabled"] == false,
    )
    .await;
    assert_eq!(
        bus_health(&b).await["state"],
        "subscribed",
        "B never lost its own"
    );
}

/// Renames company `id` in the AppDirect sample directly, past every gateway.
async fn rename_upstream(env: &Env, id: &str, name: &str) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = http::Request::patch(format!(
        "{}/api/account/v2/companies/{id}",
        env.appdirect.url()
    ))
    .header("content-type", "application/json")
    .body(Full::new(Bytes::from(json!({"name": name}).to_string())))
    .unwrap();
    let resp = client.request(req).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
}
