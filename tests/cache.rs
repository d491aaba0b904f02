//! The read cache end to end: hits, ETags, revalidation, scopes across companies and users,
//! coalesced misses, invalidation by writes (across packs), admin purge, quotas and audit.

mod common;

use std::sync::Arc;

use common::{CONTOSO_KEY, KEY, start, start_with};
use http::Method;
use rosetta::config::StaticKeyConfig;
use rosetta::demo::{CUSTOMER_ID, PARTNER_ID};
use serde_json::json;

const COLLEAGUE: &str = "test-key-northwind-colleague";

fn colleague(cfg: &mut rosetta::config::Config) {
    cfg.identity.static_keys.push(StaticKeyConfig {
        sha256: rosetta::identity::sha256_hex(COLLEAGUE),
        user: "colleague".into(),
        company: rosetta::demo::DEMO_COMPANY_KEY.into(),
        roles: vec!["PARTNER".into()],
    });
}

async fn as_(env: &common::Env, key: &str, path: &str, extra: &[(&str, &str)]) -> common::Resp {
    let auth = format!("Bearer {key}");
    let mut h: Vec<(&str, &str)> = vec![("authorization", &auth)];
    h.extend_from_slice(extra);
    env.send(Method::GET, path, &h, "").await
}

/// A store user `ann` of northwind with a READ quota of `per_day` points; returns their key.
async fn quota_user(env: &common::Env, per_day: u64) -> String {
    env.root(
        Method::POST,
        "/v1/companies",
        Some(json!({"key": "northwind"})),
    )
    .await;
    env.root(
        Method::POST,
        "/v1/users",
        Some(json!({"username": "ann", "company_key": "northwind", "roles": ["USER"]})),
    )
    .await;
    let quota = json!({"services": [{"service": "REDAPI_V1", "methods": [{"method_group": "READ", "points_per_day": per_day}]}]});
    env.root(Method::PUT, "/v1/users/ann/quotas", Some(quota))
        .await;
    env.root(Method::POST, "/v1/users/ann/keys", None)
        .await
        .json()["key"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn hits_etags_and_revalidation() {
    let env = start().await;
    let path = format!("/companies/{PARTNER_ID}");
    let first = env.get(&path).await;
    assert_eq!(first.status, 200);
    assert_eq!(
        first.header("cache-status"),
        Some("rosetta; fwd=miss; stored")
    );
    let calls = env.appdirect_calls();
    let second = env.get(&path).await;
    assert!(
        second
            .header("cache-status")
            .unwrap()
            .starts_with("rosetta; hit; ttl=")
    );
    assert_eq!(second.body, first.body);
    assert_eq!(env.appdirect_calls(), calls, "a hit skips the upstream");
    let tag = second.header("etag").unwrap().to_owned();
    let not_modified = as_(&env, KEY, &path, &[("if-none-match", &tag)]).await;
    assert_eq!(not_modified.status, 304);
    assert!(not_modified.body.is_empty());
    let fresh = as_(&env, KEY, &path, &[("cache-control", "no-cache")]).await;
    assert_eq!(
        fresh.header("cache-status"),
        Some("rosetta; fwd=request; stored")
    );
    assert!(
        env.appdirect_calls() > calls,
        "no-cache goes to the upstream"
    );
    // Query order does not matter; a different query is a different entry.
    let a = env
        .get("/networking/rest/tenant?fieldList=id&pageSize=2")
        .await;
    let b = env
        .get("/networking/rest/tenant?pageSize=2&fieldList=id")
        .await;
    assert!(b.header("cache-status").unwrap().contains("hit"));
    assert_eq!(a.body, b.body);
    // A read whose route has no cache_ttl is bypassed, and says so.
    let search = env.get("/companies/search?search=a").await;
    assert_eq!(search.header("cache-status"), Some("rosetta; fwd=bypass"));
    let c = env
        .get("/networking/rest/tenant?fieldList=id&pageSize=3")
        .await;
    assert!(c.header("cache-status").unwrap().contains("miss"));
}

#[tokio::test]
async fn answers_never_cross_companies_and_are_shared_within_one() {
    let env = start_with(colleague).await;
    let path = format!("/companies/{PARTNER_ID}");
    as_(&env, KEY, &path, &[]).await;
    let same_company = as_(&env, COLLEAGUE, &path, &[]).await;
    assert!(
        same_company.header("cache-status").unwrap().contains("hit"),
        "company scope: a colleague shares the entry"
    );
    // Contoso's key reaches Contoso too, from another company.
    let other_company = as_(&env, CONTOSO_KEY, &path, &[]).await;
    assert!(
        other_company
            .header("cache-status")
            .unwrap()
            .contains("miss"),
        "another company never gets it"
    );
    // `GET /companies` answers the caller's own company: never the other company's.
    let mine = as_(&env, KEY, "/companies", &[]).await.json();
    let theirs = as_(&env, CONTOSO_KEY, "/companies", &[]).await;
    assert_eq!(theirs.status, 200);
    assert_ne!(theirs.body, serde_json::to_vec(&mine).unwrap());
}

#[tokio::test]
async fn a_hundred_concurrent_misses_make_one_upstream_call() {
    let env = Arc::new(start().await);
    env.appdirect.faults().push(rosetta::demo::Fault {
        method: None,
        path_prefix: "/api".into(),
        kind: rosetta::demo::FaultKind::Delay(std::time::Duration::from_millis(150)),
        times: None,
    });
    let path = format!("/companies/{CUSTOMER_ID}");
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (env, path) = (env.clone(), path.clone());
            tokio::spawn(async move { env.get(&path).await })
        })
        .collect();
    let mut bodies = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, 200);
        bodies.push(r.body);
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));
    let company_reads = env
        .appdirect
        .log()
        .requests()
        .iter()
        .filter(|r| r.path.ends_with(CUSTOMER_ID))
        .count();
    assert_eq!(
        company_reads, 1,
        "one upstream request for 100 concurrent identical reads"
    );
}

#[tokio::test]
async fn a_write_invalidates_the_reads_it_affects_in_both_packs() {
    let env = start().await;
    let v1 = format!("/companies/{CUSTOMER_ID}");
    let lj = format!("/networking/rest/tenant/{CUSTOMER_ID}");
    assert_eq!(env.get(&v1).await.json()["isEnabled"], true);
    let t = common::lj_doc(&env.get(&lj).await.body);
    assert_eq!(t["tenant"][0]["active"], "1");
    let other = env.get(&format!("/companies/{PARTNER_ID}")).await;
    assert_eq!(other.status, 200);
    let r = env
        .call(
            Method::PATCH,
            &format!("/companies/{CUSTOMER_ID}/disable"),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    let after = env.get(&v1).await;
    assert_eq!(after.json()["isEnabled"], false, "read back at once");
    let t = common::lj_doc(&env.get(&lj).await.body);
    assert_eq!(
        t["tenant"][0]["active"], "0",
        "through the LongJump pack too"
    );
    let untouched = env.get(&format!("/companies/{PARTNER_ID}")).await;
    assert!(
        untouched.header("cache-status").unwrap().contains("hit"),
        "another company's entry stays"
    );
}

#[tokio::test]
async fn admin_purge_quotas_and_audit_on_hits() {
    let env = start().await;
    let path = format!("/companies/{PARTNER_ID}");
    env.get(&path).await;
    assert!(
        env.get(&path)
            .await
            .header("cache-status")
            .unwrap()
            .contains("hit")
    );
    let purge = env
        .root(Method::DELETE, "/v1/cache?route=companies.get", None)
        .await;
    assert_eq!(purge.status, 204);
    assert!(
        env.get(&path)
            .await
            .header("cache-status")
            .unwrap()
            .contains("miss")
    );
    assert_eq!(
        env.root(Method::DELETE, "/v1/cache", None).await.status,
        204
    );
    assert!(
        env.get(&path)
            .await
            .header("cache-status")
            .unwrap()
            .contains("miss")
    );
    let metrics = String::from_utf8_lossy(
        &env.admin_call(
            Method::GET,
            "/metrics",
            Some(("Bearer", common::ADMIN_KEY)),
            None,
        )
        .await
        .body,
    )
    .into_owned();
    assert!(
        metrics.contains("rosetta_cache_hits_total") && metrics.contains("rosetta_cache_bytes")
    );

    // A store user with a 3-point day: hits still cost points, and are audited.
    let key = quota_user(&env, 3).await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(as_(&env, &key, &path, &[]).await.status.as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429]);
    env.gw.store.flush().await.unwrap();
    let audit = env
        .root(Method::GET, "/v1/audit?username=ann", None)
        .await
        .json();
    assert_eq!(
        audit["statistics"]["filter"]["total"], 4,
        "hits are audited"
    );
}

#[tokio::test]
async fn upstream_cache_control_is_respected() {
    let env = start().await;
    let header = |name: &str, value: &str| rosetta::demo::Fault {
        method: None,
        path_prefix: format!("/api/account/v2/companies/{PARTNER_ID}"),
        kind: rosetta::demo::FaultKind::Header(name.into(), value.into()),
        times: None,
    };
    let path = format!("/companies/{PARTNER_ID}");
    for (name, value) in [
        ("cache-control", "no-store"),
        ("cache-control", "private, max-age=60"),
        ("set-cookie", "session=1"),
        ("cache-control", "max-age=0"),
    ] {
        env.appdirect.faults().clear();
        env.appdirect.faults().push(header(name, value));
        let first = env.get(&path).await;
        assert_eq!(first.status, 200);
        assert_eq!(
            first.header("cache-status"),
            Some("rosetta; fwd=miss; detail=not-stored"),
            "{name}: {value}"
        );
        assert!(
            env.get(&path)
                .await
                .header("cache-status")
                .unwrap()
                .contains("miss")
        );
    }
    // max-age bounds the route's 30 s.
    env.appdirect.faults().clear();
    env.appdirect
        .faults()
        .push(header("cache-control", "max-age=5"));
    env.get(&path).await;
    let hit = env.get(&path).await;
    let status = hit.header("cache-status").unwrap();
    assert!(status.starts_with("rosetta; hit; ttl="), "{status}");
    let ttl: u64 = status.rsplit('=').next().unwrap().parse().unwrap();
    assert!(ttl <= 5, "{status}");
}

/// A copy of the shipped V1 pack where `companies.get` hits cost nothing.
fn free_hits_pack(dir: &std::path::Path) -> std::path::PathBuf {
    common::pack_copy(dir, "redapi-v1-appdirect", |file, text| {
        if file == "companies.toml" {
            text.replacen(
                "id = \"companies.get\"\n",
                "id = \"companies.get\"\ncache_hit_points = 0\n",
                1,
            )
        } else {
            text
        }
    })
}

#[tokio::test]
async fn a_route_may_make_its_hits_free() {
    let tmp = tempfile::tempdir().unwrap();
    let mappings = free_hits_pack(tmp.path());
    let env = start_with(move |cfg| {
        cfg.mappings_dir = mappings;
        cfg.packs = vec!["redapi-v1-appdirect".into()];
    })
    .await;
    let key = quota_user(&env, 2).await;
    let path = format!("/companies/{PARTNER_ID}");
    for _ in 0..5 {
        assert_eq!(
            as_(&env, &key, &path, &[]).await.status,
            200,
            "hits are free here"
        );
    }
    // The one miss cost 1 point: one more paid request fits, the next does not.
    let other = format!("/companies/{CUSTOMER_ID}");
    assert_eq!(as_(&env, &key, &other, &[]).await.status, 200);
    let third = format!("/companies/{}", rosetta::demo::PARTNER2_ID);
    as_(&env, &key, &third, &[]).await.assert_problem(429);
}
