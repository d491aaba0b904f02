//! The circuit breaker and the in-flight bound of one upstream, end to end: a failing
//! upstream stops being called and the client is answered 503 in its dialect at once.

mod common;

use std::time::Duration;

use http::Method;
use rosetta::demo::{Fault, FaultKind};
use serde_json::json;

use common::{Env, KEY, Resp, start_with};

/// A gateway with the passthrough route (`GET /pass/static` → AppDirect `GET /static`,
/// answered in the AppDirect dialect) and a RedAPI V1 pack, AppDirect's settings adjusted.
async fn gateway(upstream_extra: impl FnOnce(&mut rosetta::config::UpstreamConfig)) -> Env {
    let env = start_with(|c| {
        c.packs = vec!["bench-passthrough".into(), "redapi-v1-appdirect".into()];
        upstream_extra(c.upstreams.get_mut("appdirect").expect("appdirect"));
    })
    .await;
    // The sample has no `/static`: it answers one, after any fault a test pushes first.
    env.appdirect.faults().push(Fault {
        method: None,
        path_prefix: "/static".into(),
        kind: FaultKind::Status(200, json!({"ok": true})),
        times: None,
    });
    env.appdirect.log().clear();
    env
}

/// Puts `n` answers of 500 ahead of the sample's usual ones.
fn fail_next(env: &Env, n: u32) {
    env.appdirect.faults().clear();
    env.appdirect.faults().push(Fault {
        method: None,
        path_prefix: "/".into(),
        kind: FaultKind::Status(500, json!({"message": "boom"})),
        times: Some(n),
    });
    env.appdirect.faults().push(Fault {
        method: None,
        path_prefix: "/static".into(),
        kind: FaultKind::Status(200, json!({"ok": true})),
        times: None,
    });
}

async fn pass(env: &Env) -> Resp {
    env.get("/pass/static").await
}

/// Asserts an AppDirect-dialect error with `status` and `code`; returns its message.
fn appdirect_error(r: &Resp, status: u16, code: &str) -> String {
    assert_eq!(
        r.status.as_u16(),
        status,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let doc = r.json();
    assert_eq!(doc["code"], code, "{doc}");
    assert_eq!(doc["traceCode"].as_str(), r.header("x-trace-code"), "{doc}");
    doc["message"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_failing_upstream_opens_its_breaker_and_a_success_after_the_cool_down_closes_it() {
    let env = gateway(|u| {
        u.breaker.failures = 5;
        u.breaker.cool_down = Duration::from_secs(1);
    })
    .await;
    assert_eq!(pass(&env).await.status, 200, "healthy to start with");
    fail_next(&env, 5);
    for _ in 0..5 {
        appdirect_error(&pass(&env).await, 502, "BAD_GATEWAY");
    }
    let opened = rosetta::clock::real_now();
    assert_eq!(env.appdirect_calls(), 6);

    // Open: refused at once, in the dialect, with Retry-After, and nothing sent.
    let r = pass(&env).await;
    let message = appdirect_error(&r, 503, "SERVICE_UNAVAILABLE");
    assert!(message.contains("appdirect"), "{message}");
    assert_eq!(
        r.header("retry-after"),
        Some("1"),
        "the cool-down left, rounded up"
    );
    // Another dialect, the same refusal: a RedAPI V1 route on the same upstream.
    let doc = env
        .get(&format!("/companies/{}", rosetta::demo::PARTNER_ID))
        .await
        .assert_problem(503);
    assert!(
        doc["detail"].as_str().unwrap().contains("appdirect"),
        "{doc}"
    );
    assert_eq!(env.appdirect_calls(), 6, "no call reached the upstream");

    // After the cool-down the next request is the probe; it succeeds and closes it.
    let mut refused = 0;
    let closed = loop {
        let r = pass(&env).await;
        if r.status == 200 {
            break r;
        }
        appdirect_error(&r, 503, "SERVICE_UNAVAILABLE");
        refused += 1;
        assert!(refused < 200, "the breaker never let a probe through");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        opened.elapsed() >= Duration::from_secs(1),
        "closed before the cool-down was over"
    );
    assert_eq!(closed.json(), json!({"ok": true}));
    assert_eq!(env.appdirect_calls(), 7, "only the probe went through");
    assert_eq!(pass(&env).await.status, 200);
    assert_eq!(env.appdirect_calls(), 8, "closed: calls flow again");
}

#[tokio::test]
async fn a_failed_probe_opens_the_breaker_again() {
    let env = gateway(|u| {
        u.breaker.failures = 2;
        u.breaker.cool_down = Duration::from_millis(500);
    })
    .await;
    fail_next(&env, 3);
    for _ in 0..2 {
        appdirect_error(&pass(&env).await, 502, "BAD_GATEWAY");
    }
    // Polled until the probe is let through: it meets the third 500.
    let mut tries = 0;
    while env.appdirect_calls() < 3 {
        let r = pass(&env).await;
        let status = r.status.as_u16();
        assert!(status == 503 || status == 502, "{status}");
        tries += 1;
        assert!(tries < 200, "no probe was let through");
        if status == 503 {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    // Open again for a whole cool-down: refused without a call.
    appdirect_error(&pass(&env).await, 503, "SERVICE_UNAVAILABLE");
    assert_eq!(env.appdirect_calls(), 3);
}

#[tokio::test]
async fn calls_beyond_max_in_flight_wait_then_are_refused_503_unsent() {
    let env = gateway(|u| {
        u.max_in_flight = 1;
        u.queue_timeout = Duration::from_millis(200);
        u.breaker.failures = 0;
    })
    .await;
    // The one slot is held by a slow answer.
    env.appdirect.faults().clear();
    env.appdirect.faults().push(Fault {
        method: None,
        path_prefix: "/static".into(),
        kind: FaultKind::Delay(Duration::from_millis(1500)),
        times: Some(1),
    });
    env.appdirect.faults().push(Fault {
        method: None,
        path_prefix: "/static".into(),
        kind: FaultKind::Status(200, json!({"ok": true})),
        times: None,
    });
    let slow = env.get("/pass/static");
    let queued = async {
        // Sent once the slow call holds the slot (the sample has logged it).
        while env.appdirect_calls() == 0 {
            tokio::task::yield_now().await;
        }
        // The held slot shows in /metrics.
        let metrics = env
            .admin_call(
                Method::GET,
                "/metrics",
                Some(("Bearer", common::ADMIN_KEY)),
                None,
            )
            .await;
        let text = String::from_utf8_lossy(&metrics.body).into_owned();
        assert!(
            text.contains("rosetta_upstream_in_flight{upstream=\"appdirect\"} 1"),
            "{text}"
        );
        let started = rosetta::clock::real_now();
        let r = env
            .send(
                Method::GET,
                "/pass/static",
                &[("authorization", &format!("Bearer {KEY}"))],
                "",
            )
            .await;
        (r, started.elapsed())
    };
    let (_slow, (r, waited)) = tokio::join!(slow, queued);
    let message = appdirect_error(&r, 503, "SERVICE_UNAVAILABLE");
    assert!(message.contains("busy"), "{message}");
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_millis(1500),
        "waited {waited:?}: the queue_timeout, not the slow call"
    );
    assert_eq!(env.appdirect_calls(), 1, "the queued call was never sent");
}
