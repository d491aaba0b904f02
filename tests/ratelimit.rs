//! Rate limits through the real server: the pack's policy, the headers, and 429 refusals in
//! each client's dialect that consume nothing and reach no upstream.

mod common;

use common::{ADMIN_KEY, CONTOSO_KEY, KEY, start_with};
use http::Method;

fn tight(cfg: &mut rosetta::config::Config) {
    let d = cfg.rate_limits.get_mut("default").unwrap();
    d.burst = 3;
    d.rate = "1/h".into();
}

#[tokio::test]
async fn v1_clients_get_headers_then_a_problem_429() {
    let env = start_with(tight).await;
    for remaining in [2, 1, 0] {
        let r = env.get("/companies").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("ratelimit-limit"), Some("3"));
        assert_eq!(
            r.header("ratelimit-remaining"),
            Some(remaining.to_string().as_str())
        );
        assert!(r.header("ratelimit-reset").is_some());
    }
    let calls = env.appdirect_calls();
    let r = env.get("/companies").await;
    let doc = r.assert_problem(429);
    assert!(doc["detail"].as_str().unwrap().contains("default"));
    assert_eq!(r.header("retry-after"), Some("3600"));
    assert_eq!(r.header("ratelimit-remaining"), Some("0"));
    assert_eq!(
        env.appdirect_calls(),
        calls,
        "a refusal reaches no upstream"
    );
    // Another user has a bucket of their own.
    let other = env
        .send(
            Method::GET,
            &format!("/companies/{}", rosetta::demo::PARTNER_ID),
            &[("authorization", &format!("Bearer {CONTOSO_KEY}"))],
            "",
        )
        .await;
    assert_eq!(other.status, 200);
}

#[tokio::test]
async fn longjump_clients_get_code_minus_9429() {
    let env = start_with(tight).await;
    let path = format!("/networking/rest/tenant/{}", rosetta::demo::PARTNER_ID);
    for _ in 0..3 {
        assert_eq!(env.get(&path).await.status, 200);
    }
    let r = env.get(&path).await;
    let doc = r.assert_lj(429, -9429);
    assert!(
        doc["message"]["description"]
            .as_str()
            .unwrap()
            .contains("rate limit")
    );
    assert_eq!(r.header("retry-after"), Some("3600"));
}

#[tokio::test]
async fn an_ip_key_is_shared_by_every_user_of_the_address() {
    let env = start_with(|cfg| {
        tight(cfg);
        cfg.rate_limits.get_mut("default").unwrap().key = "ip".into();
    })
    .await;
    let path = format!("/companies/{}", rosetta::demo::PARTNER_ID);
    for key in [KEY, CONTOSO_KEY, KEY] {
        let r = env
            .send(
                Method::GET,
                &path,
                &[("authorization", &format!("Bearer {key}"))],
                "",
            )
            .await;
        assert_eq!(r.status, 200);
    }
    env.send(
        Method::GET,
        &path,
        &[("authorization", &format!("Bearer {CONTOSO_KEY}"))],
        "",
    )
    .await
    .assert_problem(429);
}

#[tokio::test]
async fn a_policy_on_an_upstream_shapes_every_call_to_it() {
    let env = start_with(|cfg| {
        cfg.rate_limits.insert(
            "appdirect_shape".into(),
            rosetta::config::RateLimitConfig {
                burst: 2,
                rate: "20/s".into(),
                key: "global".into(),
                count: None,
            },
        );
        cfg.upstreams.get_mut("appdirect").unwrap().rate_limit = Some("appdirect_shape".into());
    })
    .await;
    let env = std::sync::Arc::new(env);
    let tasks: Vec<_> = (0..6u32)
        .map(|i| {
            // Six different companies: the read cache must not fold them into one call.
            let path = format!("/companies/{}", rosetta::demo::data::company_id(10 + i));
            let env = env.clone();
            let key = if i % 2 == 0 { KEY } else { ADMIN_KEY };
            tokio::spawn(async move {
                env.send(
                    Method::GET,
                    &path,
                    &[("authorization", &format!("Bearer {key}"))],
                    "",
                )
                .await
                .status
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(
            t.await.unwrap(),
            200,
            "shaped calls wait, they are not refused"
        );
    }
    let mut at: Vec<_> = env
        .appdirect
        .log()
        .requests()
        .iter()
        .map(|r| r.at)
        .collect();
    at.sort();
    assert_eq!(at.len(), 12, "two calls per request");
    // 2 at once, then one every 50 ms whoever asks: 10 × 50 ms at the least.
    let span = at[11].duration_since(at[0]);
    assert!(
        span >= std::time::Duration::from_millis(450),
        "calls spread over {span:?}"
    );
}

#[tokio::test]
async fn with_count_success_requests_no_upstream_received_give_their_cell_back() {
    let env = start_with(|cfg| {
        tight(cfg);
        // Port 1 on loopback: refused at once, nothing is ever sent.
        cfg.upstreams.get_mut("appdirect").unwrap().url = "http://127.0.0.1:1".into();
    })
    .await;
    let path = format!("/companies/{}", rosetta::demo::PARTNER_ID);
    for _ in 0..5 {
        let r = env.get(&path).await;
        assert!(
            r.status == 502 || r.status == 503,
            "refused or circuit open, never 429: {}",
            r.status
        );
    }
}

#[tokio::test]
async fn with_count_success_requests_an_upstream_answered_use_their_cell() {
    let env = start_with(|cfg| {
        tight(cfg);
        cfg.upstreams.get_mut("appdirect").unwrap().breaker.failures = 0;
    })
    .await;
    let path = format!("/companies/{}", rosetta::demo::PARTNER_ID);
    env.appdirect_fails(None);
    for _ in 0..3 {
        assert_eq!(env.get(&path).await.status, 502);
    }
    env.get(&path).await.assert_problem(429);
}

#[tokio::test]
async fn with_count_all_failed_requests_use_the_bucket() {
    let env = start_with(|cfg| {
        tight(cfg);
        cfg.rate_limits.get_mut("default").unwrap().count = Some("all".into());
    })
    .await;
    let path = format!("/companies/{}", rosetta::demo::PARTNER_ID);
    env.appdirect_fails(None);
    for _ in 0..3 {
        assert_eq!(env.get(&path).await.status, 502);
    }
    env.appdirect.faults().clear();
    env.get(&path).await.assert_problem(429);
}

#[tokio::test]
async fn with_count_success_timed_out_requests_use_their_cell() {
    let env = start_with(|cfg| {
        tight(cfg);
        cfg.upstreams.get_mut("appdirect").unwrap().timeout = std::time::Duration::from_millis(300);
    })
    .await;
    let path = format!("/companies/{}", rosetta::demo::PARTNER_ID);
    // The route makes two calls; both of the first two requests' calls stall past the timeout.
    env.appdirect.faults().push(rosetta::demo::Fault {
        method: None,
        path_prefix: "/api".into(),
        kind: rosetta::demo::FaultKind::Delay(std::time::Duration::from_secs(5)),
        times: Some(4),
    });
    for _ in 0..2 {
        env.get(&path).await.assert_problem(504);
    }
    // The calls were sent: the two timed-out requests keep their cells.
    let r = env.get(&path).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("ratelimit-remaining"), Some("0"));
    env.get(&path).await.assert_problem(429);
}
