//! Bad input and upstream failures, through a real gateway: each answered as V1 problem
//! details, and bad input never reaches an upstream.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{KEY, start, start_with};
use http::Method;
use rosetta::demo::{CUSTOMER_ID, DISTRIBUTOR_ID, Fault, FaultKind, PARTNER_ID};
use serde_json::json;

fn auth() -> String {
    format!("Bearer {KEY}")
}

#[tokio::test]
async fn unknown_path_is_404() {
    let env = start().await;
    let r = env.get("/no/such/thing").await;
    r.assert_problem(404);
    assert_eq!(env.appdirect_calls(), 0);
}

#[tokio::test]
async fn known_path_with_another_method_is_405_with_allow() {
    let env = start().await;
    let r = env
        .call(Method::PUT, &format!("/companies/{PARTNER_ID}"), None)
        .await;
    r.assert_problem(405);
    let allow = r.header("allow").unwrap();
    assert!(allow.contains("GET") && allow.contains("DELETE"), "{allow}");
    assert_eq!(env.appdirect_calls(), 0);
}

#[tokio::test]
async fn malformed_json_is_400_naming_the_position() {
    let env = start().await;
    let r = env
        .send(
            Method::POST,
            &format!("/companies/{PARTNER_ID}/customers"),
            &[
                ("authorization", &auth()),
                ("content-type", "application/json"),
            ],
            "{\n \"companyName\": oops}",
        )
        .await;
    let doc = r.assert_problem(400);
    assert!(
        doc["detail"].as_str().unwrap().contains("line 2 column"),
        "{doc}"
    );
    assert_eq!(env.appdirect_calls(), 0);
}

#[tokio::test]
async fn too_deep_and_invalid_utf8_bodies_are_400() {
    let env = start().await;
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let path = format!("/companies/{PARTNER_ID}/customers");
    env.send(Method::POST, &path, &[("authorization", &auth())], deep)
        .await
        .assert_problem(400);
    env.send(
        Method::POST,
        &path,
        &[("authorization", &auth())],
        Bytes::from_static(b"{\"companyName\":\"\xff\"}"),
    )
    .await
    .assert_problem(400);
    assert_eq!(env.appdirect_calls(), 0);
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let env = start_with(|c| c.server.body_limit = 1024).await;
    let big = format!("{{\"companyName\":\"{}\"}}", "x".repeat(4096));
    let r = env
        .send(
            Method::POST,
            &format!("/companies/{PARTNER_ID}/customers"),
            &[("authorization", &auth())],
            big,
        )
        .await;
    r.assert_problem(413);
    assert_eq!(env.appdirect_calls(), 0);
}

#[tokio::test]
async fn paging_parameters_are_checked_before_any_upstream_call() {
    let env = start().await;
    for q in [
        "pageToken=not-a-token",
        "pageToken=e30",
        // Page 2^63 and 2^32: well-formed, past the last page any scheme takes (2^63 once
        // answered 500 on the customers list, its offset saturating in the route's filter).
        "pageToken=eyJQYWdlIjo5MjIzMzcyMDM2ODU0Nzc1ODA4LCJQYWdlU2l6ZSI6MiwiVG90YWxDb3VudCI6M30",
        "pageToken=eyJQYWdlIjo0Mjk0OTY3Mjk2LCJQYWdlU2l6ZSI6MiwiVG90YWxDb3VudCI6M30",
        "maxResults=-1",
        "maxResults=abc",
        "maxResults=99999999999",
        "shouldReturnCount=maybe",
    ] {
        let r = env
            .get(&format!("/companies/{DISTRIBUTOR_ID}/customers?{q}"))
            .await;
        let doc = r.assert_problem(400);
        let param = q.split('=').next().unwrap();
        assert!(doc["errors"][param].is_array(), "{q}: {doc}");
        env.get(&format!(
            "/companies/{DISTRIBUTOR_ID}/customers/transitive?{q}"
        ))
        .await
        .assert_problem(400);
        // Pass-through routes check too: the RedAPI never sees the bad token.
        env.get(&format!(
            "/companies/{DISTRIBUTOR_ID}/backups/status/accounts?{q}"
        ))
        .await
        .assert_problem(400);
    }
    assert_eq!(env.appdirect_calls(), 0);
    assert_eq!(env.redapi_calls(), 0);
}

#[tokio::test]
async fn search_is_required() {
    let env = start().await;
    let doc = env.get("/companies/search").await.assert_problem(400);
    assert!(doc["errors"]["search"].is_array());
    env.get("/companies/search?search=")
        .await
        .assert_problem(400);
    env.get("/users/list").await.assert_problem(400);
    assert_eq!(env.appdirect_calls(), 0);
}

#[tokio::test]
async fn typed_query_parameters_are_checked() {
    let env = start().await;
    env.get(&format!(
        "/companies/{DISTRIBUTOR_ID}/backups/status?productId=four"
    ))
    .await
    .assert_problem(400);
    env.get(&format!(
        "/companies/{DISTRIBUTOR_ID}/consumption/summary?date=yesterday"
    ))
    .await
    .assert_problem(400);
    env.get(&format!(
        "/companies/{DISTRIBUTOR_ID}/customers?orderBy=sideways"
    ))
    .await
    .assert_problem(400);
    assert_eq!(env.redapi_calls(), 0);
    assert_eq!(env.appdirect_calls(), 0);
}

#[tokio::test]
async fn path_values_that_could_steer_the_upstream_are_400() {
    let env = start().await;
    for path in [
        "/companies/..",
        "/companies/%2e%2e",
        "/companies/a%2Fb",
        "/companies/a%5Cb",
        "/companies/..%2F..%2Fadmin/customers",
    ] {
        env.get(path).await.assert_problem(400);
    }
    // A query value used in an upstream path is encoded, never a path segment of its own.
    env.get("/users/list?companyId=..")
        .await
        .assert_problem(404);
    let sent = env.appdirect.log().requests();
    assert!(
        sent.iter()
            .all(|r| !r.path.contains("/../") && !r.path.ends_with("/..")),
        "{:?}",
        sent.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn missing_or_unknown_api_keys_are_401() {
    let env = start().await;
    let path = format!("/companies/{PARTNER_ID}");
    env.send(Method::GET, &path, &[], Bytes::new())
        .await
        .assert_problem(401);
    env.send(
        Method::GET,
        &path,
        &[("authorization", "Bearer wrong")],
        Bytes::new(),
    )
    .await
    .assert_problem(401);
    env.send(Method::GET, &path, &[("x-api-key", "wrong")], Bytes::new())
        .await
        .assert_problem(401);
    env.send(
        Method::GET,
        &path,
        &[("authorization", "Negotiate abc")],
        Bytes::new(),
    )
    .await
    .assert_problem(401);
    // Two Authorization fields, the valid key first or last: which one counts would depend
    // on who reads them, so neither does.
    let good = format!("Bearer {KEY}");
    for pair in [
        [good.as_str(), "Bearer wrong"],
        ["Bearer wrong", good.as_str()],
    ] {
        let doc = env
            .send(
                Method::GET,
                &path,
                &[("authorization", pair[0]), ("authorization", pair[1])],
                Bytes::new(),
            )
            .await
            .assert_problem(401);
        assert!(
            doc["detail"].as_str().unwrap().contains("more than one"),
            "{doc}"
        );
    }
    env.send(
        Method::GET,
        &path,
        &[("x-api-key", KEY), ("x-api-key", KEY)],
        Bytes::new(),
    )
    .await
    .assert_problem(401);
    assert_eq!(env.appdirect_calls(), 0);
    // X-API-Key works as well as Bearer.
    let ok = env
        .send(Method::GET, &path, &[("x-api-key", KEY)], Bytes::new())
        .await;
    assert_eq!(ok.status, 200);
}

#[tokio::test]
async fn upstream_down_is_502() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let env = start_with(|c| {
        c.upstreams.get_mut("appdirect").unwrap().url = format!("http://127.0.0.1:{port}")
    })
    .await;
    env.get(&format!("/companies/{PARTNER_ID}"))
        .await
        .assert_problem(502);
}

#[tokio::test]
async fn upstream_slower_than_its_timeout_is_504() {
    let env = start_with(|c| {
        c.upstreams.get_mut("appdirect").unwrap().timeout = Duration::from_millis(300)
    })
    .await;
    env.appdirect.faults().push(Fault {
        method: None,
        path_prefix: "/api".into(),
        kind: FaultKind::Delay(Duration::from_secs(5)),
        times: None,
    });
    env.get(&format!("/companies/{PARTNER_ID}"))
        .await
        .assert_problem(504);
}

#[tokio::test]
async fn upstream_answering_non_json_is_502() {
    let env = start().await;
    env.appdirect.faults().push(Fault {
        method: None,
        path_prefix: "/api/account".into(),
        kind: FaultKind::NotJson,
        times: None,
    });
    let doc = env
        .get(&format!("/companies/{PARTNER_ID}"))
        .await
        .assert_problem(502);
    assert!(
        doc["detail"].as_str().unwrap().contains("unreadable"),
        "{doc}"
    );
}

/// Each of `broken`, answered once by `upstream` for paths under `prefix`, makes the read of
/// `path` a 502 naming an unreadable answer.
async fn each_broken_answer_is_502(
    env: &common::Env,
    upstream: &rosetta::demo::DemoServer,
    prefix: &str,
    path: &str,
    broken: impl IntoIterator<Item = FaultKind>,
) {
    for kind in broken {
        upstream.faults().push(Fault {
            method: None,
            path_prefix: prefix.into(),
            kind,
            times: Some(1),
        });
        let doc = env.get(path).await.assert_problem(502);
        let detail = doc["detail"].as_str().unwrap();
        assert!(
            detail.contains("unreadable") && detail.contains("expected JSON"),
            "{doc}"
        );
    }
}

#[tokio::test]
async fn a_passed_on_answer_that_is_not_json_is_502_and_not_kept() {
    // products.get passes RedAPI's body on without parsing it into values; it is still
    // checked, and a broken one is the same 502 as on a route that parses.
    let env = start().await;
    let id = env.get("/products").await.json()[0]["id"].clone();
    let path = format!("/products/{id}");
    let broken = [
        FaultKind::NotJson,
        FaultKind::JsonText(r#"{"id": 1, "name": "cut off"#.into()),
        FaultKind::JsonText(r#"{"id": 1} trailing"#.into()),
    ];
    each_broken_answer_is_502(&env, &env.redapi, "/v2/products/", &path, broken).await;
    // Nothing was cached from the broken answers: the next read is the real product.
    let r = env.get(&path).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["id"], id);
}

#[tokio::test]
async fn an_answer_broken_where_the_route_does_not_look_is_still_502_and_not_kept() {
    // companies.get parses only the fields its filter reads of AppDirect's company; the parts
    // it skips are still checked, so a broken one is refused as a whole parse refuses it.
    let env = start().await;
    let path = format!("/companies/{PARTNER_ID}");
    let broken = [
        FaultKind::JsonText(r#"{"id": "x", "name": "n", "website": [1,}"#.into()),
        FaultKind::JsonText(r#"{"id": "x", "name": "n", "address": {"city": "S"}"#.into()),
        FaultKind::JsonText(r#"{"id": "x", "name": "n"} trailing"#.into()),
        FaultKind::JsonText(r#"{"id": "x", "vendor": tru}"#.into()),
    ];
    let prefix = "/api/account/v2/companies/";
    each_broken_answer_is_502(&env, &env.appdirect, prefix, &path, broken).await;
    // Nothing was cached from the broken answers: the next read is the real company.
    let r = env.get(&path).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["companyId"], PARTNER_ID);
}

#[tokio::test]
async fn upstream_client_errors_keep_their_status() {
    let env = start().await;
    for status in [400u16, 404, 409] {
        env.appdirect.faults().push(Fault {
            method: Some(Method::GET),
            path_prefix: "/api/account".into(),
            kind: FaultKind::Status(
                status,
                json!({"code": "X", "message": format!("upstream says {status}")}),
            ),
            times: Some(1),
        });
        let doc = env
            .get(&format!("/companies/{PARTNER_ID}"))
            .await
            .assert_problem(status);
        assert!(
            doc["detail"]
                .as_str()
                .unwrap()
                .contains(&format!("upstream says {status}")),
            "{doc}"
        );
    }
    // A 5xx from the upstream is the gateway's 502, not the client's fault.
    env.appdirect.faults().push(Fault {
        method: None,
        path_prefix: "/api".into(),
        kind: FaultKind::Status(500, json!({"message": "boom"})),
        times: Some(1),
    });
    env.get(&format!("/companies/{PARTNER_ID}"))
        .await
        .assert_problem(502);
}

#[tokio::test]
async fn a_reassign_whose_create_fails_leaves_the_customer_under_its_old_parent() {
    let env = start().await;
    env.appdirect.faults().push(Fault {
        method: Some(Method::POST),
        path_prefix: "/api/appReseller/v1/companyAssociations".into(),
        kind: FaultKind::Status(500, json!({"message": "create failed"})),
        times: Some(1),
    });
    let r = env
        .call(
            Method::PATCH,
            &format!("/companies/{DISTRIBUTOR_ID}/customers/{CUSTOMER_ID}/reassign"),
            None,
        )
        .await;
    r.assert_problem(502);
    // The old association was deleted, then restored by the compensation.
    assert_eq!(
        env.appdirect
            .log()
            .count(&Method::DELETE, "/api/appReseller/v1/companyAssociations/"),
        1
    );
    assert_eq!(
        env.appdirect
            .log()
            .count(&Method::POST, "/api/appReseller/v1/companyAssociations"),
        2
    );
    let doc = env.get(&format!("/companies/{CUSTOMER_ID}")).await.json();
    assert_eq!(
        doc["parentCompanyId"], PARTNER_ID,
        "still under its old parent"
    );
}

#[tokio::test]
async fn redapi_token_is_fetched_once_and_refreshed_after_revocation() {
    let env = start().await;
    // Past the read cache, so every request reaches the RedAPI.
    let auth = format!("Bearer {}", common::KEY);
    let headers = [
        ("authorization", auth.as_str()),
        ("cache-control", "no-cache"),
    ];
    let fresh = || env.send(Method::GET, "/products", &headers, "");
    for _ in 0..5 {
        assert_eq!(fresh().await.status, 200);
    }
    assert_eq!(env.redapi.token_requests(), 1, "one token for many calls");
    env.redapi.revoke_tokens();
    assert_eq!(
        fresh().await.status,
        200,
        "a 401 refreshes the token and retries once"
    );
    assert_eq!(env.redapi.token_requests(), 2);
    // The RedAPI only ever saw bearer tokens, never the client's key.
    assert!(
        env.redapi
            .log()
            .requests()
            .iter()
            .filter(|r| r.path.starts_with("/v2"))
            .all(|r| r
                .headers
                .iter()
                .any(|(k, v)| k == "authorization" && v.starts_with("Bearer tok-")))
    );
}

#[tokio::test]
async fn concurrent_first_calls_share_one_token_request() {
    let env = start().await;
    let calls = (0..20).map(|_| env.get("/products"));
    let results = futures_util::future::join_all(calls).await;
    assert!(results.iter().all(|r| r.status == 200));
    assert_eq!(env.redapi.token_requests(), 1);
}

#[tokio::test]
async fn every_response_carries_request_id_and_tracecode() {
    let env = start().await;
    let ok = env
        .send(
            Method::GET,
            "/companies",
            &[("authorization", &auth()), ("x-request-id", "client-id-1")],
            Bytes::new(),
        )
        .await;
    assert_eq!(ok.header("x-request-id"), Some("client-id-1"));
    assert!(ok.header("x-trace-code").is_some());
    let err = env.get("/nope").await;
    assert!(err.header("x-request-id").is_some() && err.header("x-trace-code").is_some());
}
