//! A request's bounded work, end to end: a route's call budget refuses a fan-out before
//! its calls, its deadline answers 504 in the client's dialect, and a multi-call write runs
//! to its end when the client goes away.

mod common;

use std::time::Duration;

use common::{Env, pack_copy, start_with};
use http::Method;
use rosetta::demo::{CUSTOMER_ID, DISTRIBUTOR_ID, Fault, FaultKind, PARTNER_ID};

/// Rosetta on a copy of the V1 AppDirect pack whose `companies.toml` is edited by `edit`.
async fn with_routes(edit: impl Fn(String) -> String) -> (tempfile::TempDir, Env) {
    let tmp = tempfile::tempdir().unwrap();
    let mappings = pack_copy(tmp.path(), "redapi-v1-appdirect", |file, text| {
        if file == "companies.toml" {
            edit(text)
        } else {
            text
        }
    });
    let env = start_with(move |cfg| {
        cfg.mappings_dir = mappings;
        cfg.packs = vec!["redapi-v1-appdirect".into()];
    })
    .await;
    (tmp, env)
}

#[tokio::test]
async fn a_fan_out_past_the_call_budget_is_refused_before_its_calls() {
    // The company and its associations: two calls, none left for the page's companies.
    let (_tmp, env) = with_routes(|t| t.replacen("max_calls = 1002", "max_calls = 2", 1)).await;
    let r = env
        .get(&format!("/companies/{DISTRIBUTOR_ID}/customers"))
        .await;
    let doc = r.assert_problem(502);
    assert!(
        doc["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("max_calls")
            || doc.to_string().contains("max_calls"),
        "{doc}"
    );
    let log = env.appdirect.log();
    assert_eq!(
        log.count(&Method::GET, "/api/account/v2/companies/"),
        1,
        "the company only: no customer was fetched"
    );
}

#[tokio::test]
async fn a_route_past_its_deadline_answers_504_at_the_deadline() {
    let (_tmp, env) = with_routes(|t| {
        t.replacen(
            "max_calls = 1002",
            "max_calls = 1002\ndeadline = \"300ms\"",
            1,
        )
    })
    .await;
    env.appdirect.faults().push(Fault {
        method: Some(Method::GET),
        path_prefix: "/api/appReseller/v1/companyAssociations".into(),
        kind: FaultKind::Delay(Duration::from_secs(5)),
        times: None,
    });
    let started = rosetta::clock::real_now();
    let r = env
        .get(&format!("/companies/{DISTRIBUTOR_ID}/customers"))
        .await;
    let doc = r.assert_problem(504);
    assert!(doc.to_string().contains("deadline"), "{doc}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "answered at the deadline, not after the upstream: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_client_gone_mid_reassign_leaves_the_customer_with_a_parent() {
    let (_tmp, env) = with_routes(|t| t).await;
    // The new association is slow: the client gives up after the old one is deleted.
    env.appdirect.faults().push(Fault {
        method: Some(Method::POST),
        path_prefix: "/api/appReseller/v1/companyAssociations".into(),
        kind: FaultKind::Delay(Duration::from_millis(800)),
        times: Some(1),
    });
    let path = format!("/companies/{DISTRIBUTOR_ID}/customers/{CUSTOMER_ID}/reassign");
    let gave_up = tokio::time::timeout(
        Duration::from_millis(300),
        env.call(Method::PATCH, &path, None),
    )
    .await;
    assert!(gave_up.is_err(), "the client left before the answer");
    let log = env.appdirect.log();
    assert_eq!(
        log.count(&Method::DELETE, "/api/appReseller/v1/companyAssociations/"),
        1,
        "the old association was deleted before the client left"
    );
    // The write goes on without the client: the new association is made.
    let auth = format!("Bearer {}", common::KEY);
    let mut parent = serde_json::Value::Null;
    for _ in 0..100 {
        // Past the read cache: a read made while the write was under way may be cached.
        let doc = env
            .send(
                Method::GET,
                &format!("/companies/{CUSTOMER_ID}"),
                &[("authorization", &auth), ("cache-control", "no-cache")],
                "",
            )
            .await
            .json();
        parent = doc["parentCompanyId"].clone();
        if parent == DISTRIBUTOR_ID {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(parent, DISTRIBUTOR_ID, "moved, never left without a parent");
    assert_ne!(parent, PARTNER_ID);
}

#[tokio::test]
async fn a_fan_out_route_is_charged_by_the_calls_it_made() {
    let env = common::start().await;
    let quotas = serde_json::json!({"services": [{"service": "REDAPI_V1", "methods": [
        {"method_group": "READ", "points_per_day": 1000}]}]});
    let key = env.ann("fan-out-pass", Some(quotas)).await;
    let auth = format!("Bearer {key}");
    let get = |path: String| {
        let auth = auth.clone();
        let env = &env;
        async move {
            env.send(Method::GET, &path, &[("authorization", &auth)], "")
                .await
        }
    };
    let r = get(format!(
        "/companies/{DISTRIBUTOR_ID}/customers?maxResults=25"
    ))
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let customers = r.json()["results"].as_array().unwrap().len() as u64;
    assert!(customers > 1, "a fan-out over several customers");
    // The company, its associations, then one call per customer: a point per ten calls.
    let cost = (2 + customers).div_ceil(10);
    let r = get(format!("/companies/{PARTNER_ID}")).await;
    assert_eq!(
        r.header("x-quota-day-remaining"),
        Some((1000 - cost - 1).to_string().as_str()),
        "{customers} customers cost {cost} points, not the 1 reserved"
    );
}
