//! Upstream authentication and token lifetime, observed at the sample backends.

mod common;

use std::time::Duration;

use common::start_with;
use rosetta::config::UpstreamAuthConfig;
use rosetta::demo::PARTNER_ID;

#[tokio::test]
async fn basic_credentials_reach_the_upstream_and_the_client_key_does_not() {
    let env = start_with(|c| {
        c.upstreams.get_mut("appdirect").unwrap().auth = UpstreamAuthConfig::Basic {
            username: "svc".into(),
            password: "pw".into(),
        };
    })
    .await;
    assert_eq!(
        env.get(&format!("/companies/{PARTNER_ID}")).await.status,
        200
    );
    let sent = env.appdirect.log().requests();
    assert!(!sent.is_empty());
    for r in sent {
        let auth = r
            .headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .map(|(_, v)| v.as_str());
        assert_eq!(
            auth,
            Some("Basic c3ZjOnB3"),
            "svc:pw, never the client's bearer key"
        );
    }
}

#[tokio::test]
async fn a_token_is_refreshed_when_it_is_within_the_skew_of_expiry() {
    // The sample issues 1-hour tokens; a 1-hour skew makes every token already due.
    let env = start_with(|c| {
        if let UpstreamAuthConfig::Oauth2 { refresh_skew, .. } =
            &mut c.upstreams.get_mut("redapi").unwrap().auth
        {
            *refresh_skew = Duration::from_secs(3600);
        }
    })
    .await;
    // Past the read cache, so each request reaches the upstream.
    let auth = format!("Bearer {}", common::KEY);
    for _ in 0..3 {
        let r = env
            .send(
                http::Method::GET,
                "/products",
                &[("authorization", &auth), ("cache-control", "no-cache")],
                "",
            )
            .await;
        assert_eq!(r.status, 200);
    }
    assert_eq!(env.redapi.token_requests(), 3);
}

#[tokio::test]
async fn a_token_endpoint_that_refuses_us_is_502() {
    let env = start_with(|c| {
        if let UpstreamAuthConfig::Oauth2 { client_secret, .. } =
            &mut c.upstreams.get_mut("redapi").unwrap().auth
        {
            *client_secret = "wrong".into();
        }
    })
    .await;
    let doc = env.get("/products").await.assert_problem(502);
    assert!(
        doc["detail"].as_str().unwrap().contains("authenticate"),
        "{doc}"
    );
    assert_eq!(
        env.redapi
            .log()
            .requests()
            .iter()
            .filter(|r| r.path.starts_with("/v2"))
            .count(),
        0
    );
}
