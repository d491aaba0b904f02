//! Quotas through the real gateway: exact under concurrency, concurrency caps seen from the
//! upstream, refunds for upstream failures, admin changes at once, usage surviving a restart.

mod common;

use std::sync::Arc;

use common::{Env, start, start_in};
use http::Method;
use serde_json::{Value, json};

const PASSWORD: &str = "quota-user-pass";

async fn user_with_key(env: &Env, quotas: Value) -> String {
    env.ann(PASSWORD, Some(quotas)).await
}

fn read_quota(per_day: u64) -> Value {
    json!({"services": [{"service": "REDAPI_V1", "methods": [{"method_group": "READ", "points_per_day": per_day}]}]})
}

async fn get(env: &Env, key: &str, path: &str) -> common::Resp {
    env.send(
        Method::GET,
        path,
        &[("authorization", &format!("Bearer {key}"))],
        "",
    )
    .await
}

#[tokio::test]
async fn a_daily_budget_is_exact_under_64_concurrent_clients() {
    let env = Arc::new(start().await);
    let key = user_with_key(&env, read_quota(100)).await;
    let path = format!("/companies/{}", rosetta::demo::PARTNER_ID);
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let (env, key, path) = (env.clone(), key.clone(), path.clone());
            tokio::spawn(async move {
                let mut ok = 0u32;
                for _ in 0..3 {
                    let r = get(&env, &key, &path).await;
                    match r.status.as_u16() {
                        200 => ok += 1,
                        429 => {
                            let doc = r.assert_problem(429);
                            assert!(doc["detail"].as_str().unwrap().contains("points_per_day"));
                            assert!(r.header("retry-after").is_some());
                        }
                        s => panic!("unexpected {s}"),
                    }
                }
                ok
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        ok += t.await.unwrap();
    }
    assert_eq!(ok, 100, "exactly the budget, under 64 concurrent clients");
    env.gw.store.flush().await.unwrap();
    let stats = env
        .root(Method::GET, "/v1/audit?username=ann&limit=1000", None)
        .await
        .json();
    assert_eq!(
        stats["statistics"]["filter"]["total"], 192,
        "every request is audited"
    );
}

#[tokio::test]
async fn the_upstream_never_sees_more_than_max_concurrent_execution() {
    let env = Arc::new(start().await);
    let key = user_with_key(
        &env,
        json!({"services": [{"service": "REDAPI_V1", "methods": [{"method_group": "WRITE", "max_concurrent_execution": 5}]}]}),
    )
    .await;
    env.appdirect.faults().push(rosetta::demo::Fault {
        method: Some(Method::PATCH),
        path_prefix: "/api".into(),
        kind: rosetta::demo::FaultKind::Delay(std::time::Duration::from_millis(100)),
        times: None,
    });
    let path = format!("/companies/{}/disable", rosetta::demo::CUSTOMER_ID);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (env, key, path) = (env.clone(), key.clone(), path.clone());
            tokio::spawn(async move {
                env.send(
                    Method::PATCH,
                    &path,
                    &[("authorization", &format!("Bearer {key}"))],
                    "",
                )
                .await
                .status
                .as_u16()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    let max = env.appdirect.max_in_flight();
    assert!(max <= 5, "the upstream saw {max} requests at once");
    assert!(
        statuses.contains(&200) && statuses.contains(&429),
        "{statuses:?}"
    );
}

/// No breaker (so every call reaches the upstream) and, with `dead`, an upstream that
/// accepts no connection.
fn plain_upstream(dead: bool) -> impl FnOnce(&mut rosetta::config::Config) {
    move |cfg| {
        let up = cfg.upstreams.get_mut("appdirect").unwrap();
        up.breaker.failures = 0;
        if dead {
            // Port 1 on loopback: refused at once, nothing is ever sent.
            up.url = "http://127.0.0.1:1".into();
        }
    }
}

#[tokio::test]
async fn a_request_no_upstream_received_costs_nothing() {
    let env = common::start_with(plain_upstream(true)).await;
    let key = user_with_key(&env, read_quota(3)).await;
    let path = format!("/companies/{}", rosetta::demo::PARTNER_ID);
    for _ in 0..5 {
        let r = get(&env, &key, &path).await;
        assert_eq!(r.status, 502, "never 429: nothing was charged");
    }
    env.gw.store.flush().await.unwrap();
    let audit = env
        .root(Method::GET, "/v1/audit?username=ann", None)
        .await
        .json();
    assert_eq!(audit["actions"][0]["statistics"]["points_count"], 0);
}

#[tokio::test]
async fn a_request_an_upstream_failed_after_receiving_it_costs_its_points() {
    let env = common::start_with(plain_upstream(false)).await;
    let key = user_with_key(&env, read_quota(3)).await;
    let path = format!("/companies/{}", rosetta::demo::PARTNER_ID);
    env.appdirect_fails(None);
    for _ in 0..3 {
        assert_eq!(get(&env, &key, &path).await.status, 502);
    }
    get(&env, &key, &path).await.assert_problem(429);
}

#[tokio::test]
async fn admin_changes_to_quotas_apply_at_once() {
    let env = start().await;
    let key = user_with_key(&env, read_quota(3)).await;
    let path = format!("/companies/{}", rosetta::demo::PARTNER_ID);
    for left in ["2", "1", "0"] {
        let r = get(&env, &key, &path).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-quota-day-remaining"), Some(left));
    }
    get(&env, &key, &path).await.assert_problem(429);
    // Raising the quota takes effect on the next request.
    env.root(Method::PUT, "/v1/users/ann/quotas", Some(read_quota(4)))
        .await;
    assert_eq!(get(&env, &key, &path).await.status, 200);
    env.root(Method::DELETE, "/v1/users/ann/quotas", None).await;
    for _ in 0..3 {
        assert_eq!(
            get(&env, &key, &path).await.status,
            200,
            "no quota, no limit"
        );
    }
}

#[tokio::test]
async fn usage_survives_a_restart() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let path = format!("/companies/{}", rosetta::demo::PARTNER_ID);
    let key;
    {
        let env = start_in(dir.clone(), |_| {}).await;
        key = user_with_key(&env, read_quota(2)).await;
        for _ in 0..2 {
            assert_eq!(get(&env, &key, &path).await.status, 200);
        }
        env.stop().await;
    }
    let env = start_in(dir, |_| {}).await;
    get(&env, &key, &path).await.assert_problem(429);
}

#[tokio::test]
async fn with_count_all_failures_use_the_budget_too() {
    let env = common::start_with(|cfg| {
        cfg.rate_limits.get_mut("default").unwrap().count = Some("all".into());
    })
    .await;
    let key = user_with_key(&env, read_quota(3)).await;
    let path = format!("/companies/{}", rosetta::demo::PARTNER_ID);
    env.appdirect_fails(Some(6));
    for _ in 0..3 {
        assert_eq!(get(&env, &key, &path).await.status, 502);
    }
    env.appdirect.faults().clear();
    get(&env, &key, &path).await.assert_problem(429);
}

#[tokio::test]
async fn points_settled_from_the_answer_are_what_counts() {
    let env = start().await;
    let key = user_with_key(&env, read_quota(10)).await;
    // "o" matches several companies; the search route costs one point per result.
    let r = get(&env, &key, "/companies/search?search=o&maxResults=5").await;
    assert_eq!(r.status, 200);
    let results = r.json()["results"].as_array().unwrap().len() as u64;
    assert!(results > 1);
    let r = get(
        &env,
        &key,
        &format!("/companies/{}", rosetta::demo::PARTNER_ID),
    )
    .await;
    assert_eq!(
        r.header("x-quota-day-remaining"),
        Some((10 - results - 1).to_string().as_str()),
        "the search cost {results} points, not the 1 reserved"
    );
    env.gw.store.flush().await.unwrap();
    let audit = env
        .root(
            Method::GET,
            "/v1/audit?username=ann&operation_id=companies.search",
            None,
        )
        .await
        .json();
    assert_eq!(audit["actions"][0]["statistics"]["points_count"], results);
}

#[tokio::test]
async fn with_count_all_failed_requests_still_count_after_a_restart() {
    let count_all = |cfg: &mut rosetta::config::Config| {
        cfg.rate_limits.get_mut("default").unwrap().count = Some("all".into());
    };
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let path = format!("/companies/{}", rosetta::demo::PARTNER_ID);
    let key;
    {
        let env = start_in(dir.clone(), count_all).await;
        key = user_with_key(&env, read_quota(3)).await;
        env.appdirect_fails(Some(6));
        for _ in 0..3 {
            assert_eq!(get(&env, &key, &path).await.status, 502);
        }
        env.stop().await;
    }
    // Usage is reloaded from the audit trail: the failed requests were counted, so they
    // still are.
    let env = start_in(dir, count_all).await;
    get(&env, &key, &path).await.assert_problem(429);
}
