//! Invalidations across three real replicas: three `rosetta serve` processes sharing one
//! real `redis-server` (started here on a free port, in a temporary folder) and one sample
//! AppDirect backend, each with its own store (cluster mode part 1). A V1 disable through
//! node A makes node B's cached reads fresh within a second, read back in both dialects (V1
//! and LongJump); `DELETE /v1/cache` on A empties C's cache; a reassign through A moves the
//! reach B resolved for two partners.
#![cfg(unix)]

mod process;
mod redis;

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rosetta::demo::data::company_id;
use rosetta::demo::{CUSTOMER_ID, PARTNER_ID};
use serde_json::{Value, json};
use tokio::time::Instant;

use process::{Served, serve_with};
use redis::RedisServer;

/// How soon another node must apply an invalidation.
const WITHIN: Duration = Duration::from_secs(1);
const ROOT: (&str, &str) = ("root", "root-password");

struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: bytes::Bytes,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }

    /// The one `tenant` of a LongJump document.
    fn tenant(&self) -> Value {
        let rules = rosetta::dialect::xml::XmlRules::default()
            .unwrap("/platform")
            .array("/platform/tenant");
        let doc = rosetta::dialect::xml::xml_to_value(&self.body, &rules)
            .unwrap_or_else(|e| panic!("not a LongJump document ({e}): {}", self.text()));
        doc["tenant"][0].clone()
    }

    fn is_hit(&self) -> bool {
        self.headers
            .get("cache-status")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("rosetta; hit"))
    }
}

struct Cluster {
    client: Client<HttpConnector, Full<bytes::Bytes>>,
    nodes: Vec<Served>,
}

impl Cluster {
    /// Three nodes on `redis` in front of `appdirect`, each subscribed to the bus. Reaches
    /// outlive the test, so only an invalidation drops them.
    async fn start(redis: &RedisServer, appdirect: &str, dir: &std::path::Path) -> Self {
        let url = redis.url();
        let env = [
            ("ROSETTA__CLUSTER__REDIS_URL", url.as_str()),
            ("ROSETTA__RATE_LIMITS__DEFAULT__BURST", "1000000"),
            ("ROSETTA__RATE_LIMITS__APPDIRECT-UPSTREAM__BURST", "1000000"),
            ("ROSETTA__TENANCY__REACH_TTL", "600s"),
        ];
        let nodes = (0..3)
            .map(|i| serve_with(appdirect, &dir.join(format!("node{i}.db")), &env))
            .collect();
        let cluster = Cluster {
            client: Client::builder(TokioExecutor::new()).build_http(),
            nodes,
        };
        for i in 0..3 {
            cluster.wait_subscribed(i).await;
        }
        cluster
    }

    async fn send(
        &self,
        url: String,
        method: &str,
        who: (&str, &str),
        body: Option<Value>,
    ) -> Answer {
        let auth = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{}:{}", who.0, who.1),
        );
        let mut req = http::Request::builder()
            .method(method)
            .uri(url)
            .header("authorization", format!("Basic {auth}"));
        let bytes = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                v.to_string()
            }
            None => String::new(),
        };
        let resp = self
            .client
            .request(req.body(Full::from(bytes)).unwrap())
            .await
            .expect("the node answers");
        let (parts, body) = resp.into_parts();
        Answer {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    }

    /// A request to node `n`'s proxy listener.
    async fn proxy(
        &self,
        n: usize,
        method: &str,
        path: &str,
        who: (&str, &str),
        body: Option<Value>,
    ) -> Answer {
        let url = format!("{}{path}", self.nodes[n].base);
        self.send(url, method, who, body).await
    }

    /// A request to node `n`'s admin listener, as root.
    async fn admin(&self, n: usize, method: &str, path: &str, body: Option<Value>) -> Answer {
        let url = format!("{}{path}", self.nodes[n].admin);
        self.send(url, method, ROOT, body).await
    }

    async fn wait_subscribed(&self, n: usize) {
        let deadline = rosetta::clock::now() + Duration::from_secs(10);
        loop {
            let h = self.admin(n, "GET", "/health", None).await;
            assert_eq!(h.status, 200, "{}", h.text());
            let bus = &h.json()["cluster"]["invalidations"];
            if bus["state"] == "subscribed" {
                return;
            }
            assert!(
                rosetta::clock::now() < deadline,
                "node {n} never subscribed: {bus}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Reads `path` on node `n` as root twice: the second answer comes from its cache.
    async fn cached(&self, n: usize, path: &str) -> Answer {
        let first = self.proxy(n, "GET", path, ROOT, None).await;
        assert_eq!(first.status, 200, "{path}: {}", first.text());
        let again = self.proxy(n, "GET", path, ROOT, None).await;
        assert!(again.is_hit(), "{path}: {:?}", again.headers);
        again
    }

    /// Reads `path` on node `n` as `who` until `done` holds; fails past [`WITHIN`] of `since`.
    async fn until(
        &self,
        n: usize,
        path: &str,
        who: (&str, &str),
        since: Instant,
        what: &str,
        done: impl Fn(&Answer) -> bool,
    ) -> Answer {
        loop {
            let r = self.proxy(n, "GET", path, who, None).await;
            if done(&r) {
                eprintln!("{what} seen on node {n} after {:?}", since.elapsed());
                return r;
            }
            assert!(
                since.elapsed() < WITHIN,
                "{what} not seen on node {n} within {WITHIN:?}: {} {}",
                r.status,
                r.text()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_disable_on_a_is_read_fresh_on_b_in_v1_and_longjump_within_a_second() {
    let redis = RedisServer::start();
    let appdirect = rosetta::demo::start_appdirect().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(&redis, &appdirect.url(), dir.path()).await;
    let v1 = format!("/companies/{CUSTOMER_ID}");
    let lj = format!("/networking/rest/tenant/{CUSTOMER_ID}");
    let partner = format!("/companies/{PARTNER_ID}");
    assert_eq!(cluster.cached(1, &v1).await.json()["isEnabled"], true);
    assert_eq!(cluster.cached(1, &lj).await.tenant()["active"], "1");
    cluster.cached(1, &partner).await;

    let r = cluster
        .proxy(0, "PATCH", &format!("{v1}/disable"), ROOT, None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let sent = rosetta::clock::now();
    let fresh = cluster
        .until(1, &v1, ROOT, sent, "the disable in V1", |r| {
            r.json()["isEnabled"] == false
        })
        .await;
    assert!(!fresh.is_hit(), "{:?}", fresh.headers);
    let fresh = cluster
        .until(1, &lj, ROOT, sent, "the disable in LongJump", |r| {
            r.tenant()["active"] == "0"
        })
        .await;
    assert!(!fresh.is_hit(), "{:?}", fresh.headers);
    // Only the reads the write names: another company's entry is still B's cached one.
    let other = cluster.proxy(1, "GET", &partner, ROOT, None).await;
    assert!(other.is_hit(), "{:?}", other.headers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_purge_on_a_empties_cs_cache() {
    let redis = RedisServer::start();
    let appdirect = rosetta::demo::start_appdirect().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(&redis, &appdirect.url(), dir.path()).await;
    let company = format!("/companies/{PARTNER_ID}");
    let tenants = "/networking/rest/tenant?fieldList=id&pageSize=2";
    cluster.cached(2, &company).await;
    cluster.cached(2, tenants).await;
    // One route's reads first: the other route's entry stays.
    let purge = cluster
        .admin(0, "DELETE", "/v1/cache?route=companies.get", None)
        .await;
    assert_eq!(purge.status, 204, "{}", purge.text());
    let sent = rosetta::clock::now();
    cluster
        .until(2, &company, ROOT, sent, "the route purge", |r| !r.is_hit())
        .await;
    let kept = cluster.proxy(2, "GET", tenants, ROOT, None).await;
    assert!(
        kept.is_hit(),
        "another route's reads stay: {:?}",
        kept.headers
    );
    // Then everything.
    assert_eq!(
        cluster.admin(0, "DELETE", "/v1/cache", None).await.status,
        204
    );
    let sent = rosetta::clock::now();
    cluster
        .until(2, tenants, ROOT, sent, "the purge", |r| !r.is_hit())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reassign_on_a_moves_the_reach_b_resolved_within_a_second() {
    let redis = RedisServer::start();
    let appdirect = rosetta::demo::start_appdirect().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(&redis, &appdirect.url(), dir.path()).await;
    // A partner user of Contoso and one of Fabrikam on B (each node has its own store).
    let contoso = ("contoso_user", "contoso-password");
    let fabrikam = ("fabrikam_user", "fabrikam-password");
    for (company, (user, password)) in [("contoso", contoso), ("fabrikam", fabrikam)] {
        let c = cluster
            .admin(1, "POST", "/v1/companies", Some(json!({"key": company})))
            .await;
        assert_eq!(c.status, 201, "{}", c.text());
        let u = cluster
            .admin(
                1,
                "POST",
                "/v1/users",
                Some(json!({"username": user, "password": password,
                    "company_key": company, "roles": ["PARTNER"]})),
            )
            .await;
        assert_eq!(u.status, 201, "{}", u.text());
    }
    let alpine = format!("/companies/{}", company_id(10));
    // B resolves and keeps Contoso's reach (holding Alpine) and Fabrikam's (without it).
    for _ in 0..2 {
        let c = cluster.proxy(1, "GET", &alpine, contoso, None).await;
        assert_eq!(c.status, 200, "{}", c.text());
        let f = cluster.proxy(1, "GET", &alpine, fabrikam, None).await;
        assert_eq!(f.status, 404, "{}", f.text());
    }
    // Northwind's distributor moves Alpine from Contoso to Fabrikam, through A.
    let path = format!(
        "/companies/{}/customers/{}/reassign",
        company_id(3),
        company_id(10)
    );
    let r = cluster.proxy(0, "PATCH", &path, ROOT, None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let sent = rosetta::clock::now();
    cluster
        .until(1, &alpine, fabrikam, sent, "Fabrikam's new reach", |r| {
            r.status == 200
        })
        .await;
    cluster
        .until(1, &alpine, contoso, sent, "Contoso's lost reach", |r| {
            r.status == 404
        })
        .await;
}
