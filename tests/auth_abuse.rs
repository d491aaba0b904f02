//! Authentication cannot be used to exhaust the gateway (issue 24, item 1), through the real
//! server: password checks bounded (memory measured from /proc), failures remembered,
//! budgets of failures per username and per client IP answered 429 in the client's dialect
//! before any check, unknown users checked like known ones, and failed attempts audited as
//! `anonymous` with the client's address.
//!
//! The tests of this file take turns ([`TURN`]): the memory test reads the whole process's
//! peak, which another test's password checks would move.

mod common;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{Env, KEY, ROOT, start_with};
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rosetta::config::{Config, FailureLimitConfig};
use rosetta::store::{Company, StoreError, User};

static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The allocator the binary runs on (src/main.rs): the memory measured is the gateway's as
/// shipped. (The system allocator keeps a freed 19 MiB hash buffer in each thread's arena,
/// so its peak follows the blocking threads that ever hashed, not the hashes at once.)
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PATH: &str = "/companies";

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// Creates the PARTNER `name` of the demo company with `password` (the demo key's peer).
async fn partner(env: &Env, name: &str, password: &str) {
    match env
        .gw
        .store
        .create_company(Company {
            key: rosetta::demo::DEMO_COMPANY_KEY.into(),
            detail: None,
            enabled: true,
        })
        .await
    {
        Ok(()) | Err(StoreError::Conflict(_)) => {}
        Err(e) => panic!("{e}"),
    }
    let hash = rosetta::identity::passwords::hash_password(password).unwrap();
    env.gw
        .store
        .create_user(
            User {
                username: name.into(),
                name: None,
                email: None,
                phone: None,
                company_key: rosetta::demo::DEMO_COMPANY_KEY.into(),
                enabled: true,
                roles: vec!["PARTNER".into()],
                timezone: 0,
            },
            Some(hash),
        )
        .await
        .unwrap();
}

async fn as_basic(env: &Env, user: &str, password: &str) -> common::Resp {
    env.send(
        Method::GET,
        PATH,
        &[("authorization", &basic(user, password))],
        Bytes::new(),
    )
    .await
}

fn budgets(user: (u32, &str), ip: (u32, &str)) -> impl FnOnce(&mut Config) {
    move |cfg| {
        cfg.identity.failed_per_user = FailureLimitConfig {
            burst: user.0,
            rate: user.1.into(),
        };
        cfg.identity.failed_per_ip = FailureLimitConfig {
            burst: ip.0,
            rate: ip.1.into(),
        };
    }
}

/// `name` (kB) of /proc/self/status: this process is the gateway.
fn proc_kb(name: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("{name} in /proc/self/status"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_wrong_passwords_holds_memory_and_lets_a_valid_key_through() {
    let _turn = TURN.lock().await;
    let env = Arc::new(
        start_with(|cfg| {
            // The budgets out of the way: this test is about the work of the checks.
            budgets((100_000, "1000/s"), (100_000, "1000/s"))(cfg);
            cfg.identity.hashing.wait = Some(Duration::from_millis(500));
        })
        .await,
    );
    partner(&env, "ann", "right").await;
    // A stored key, never used before the storm: its lookup happens during it.
    let stored = env
        .root(Method::POST, "/v1/users/ann/keys", None)
        .await
        .json()["key"]
        .as_str()
        .expect("a new key")
        .to_owned();
    // Warm the dummy hash and the harness so the baseline holds what any login holds.
    assert_eq!(as_basic(&env, "nobody", "x").await.status, 401);
    assert_eq!(as_basic(&env, "ann", "x").await.status, 401);
    let (hwm_before, rss_before) = (proc_kb("VmHWM:"), proc_kb("VmRSS:"));
    let permits = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;

    // 200 logins at once, half for a known user, half for unknown ones, every password new.
    let (tx, mut first) = tokio::sync::mpsc::channel::<()>(200);
    let storm: Vec<_> = (0..200)
        .map(|i| {
            let (env, tx) = (env.clone(), tx.clone());
            tokio::spawn(async move {
                let user = if i % 2 == 0 {
                    "ann".to_owned()
                } else {
                    format!("ghost{i}")
                };
                let r = as_basic(&env, &user, &format!("guess-{i}")).await;
                let _ = tx.try_send(());
                r
            })
        })
        .collect();
    drop(tx);
    // Once the first answers are out, the storm is under way: a valid caller now.
    first.recv().await.expect("a storm answer");
    let started = rosetta::clock::real_now();
    let declared = env.get(PATH).await;
    let declared_took = started.elapsed();
    let with_stored = env
        .send(
            Method::GET,
            PATH,
            &[("authorization", &format!("Bearer {stored}"))],
            Bytes::new(),
        )
        .await;
    let stored_took = started.elapsed();
    let answered_meanwhile = storm.iter().filter(|t| t.is_finished()).count();

    let (mut refused, mut shed) = (0, 0);
    for t in storm {
        let r = t.await.unwrap();
        match r.status.as_u16() {
            401 => {
                r.assert_problem(401);
                refused += 1;
            }
            503 => {
                let doc = r.assert_problem(503);
                assert!(doc["detail"].as_str().unwrap().contains("password checks"));
                assert_eq!(r.header("retry-after"), Some("1"));
                shed += 1;
            }
            other => panic!("{other}: {:?}", r.body),
        }
    }
    let (hwm_after, rss_after) = (proc_kb("VmHWM:"), proc_kb("VmRSS:"));
    let grew_mib = hwm_after.saturating_sub(hwm_before) / 1024;
    eprintln!(
        "storm: {refused} refused, {shed} shed; peak RSS {} → {} MiB (+{grew_mib}), RSS {} → {} MiB, {permits} permits",
        hwm_before / 1024,
        hwm_after / 1024,
        rss_before / 1024,
        rss_after / 1024
    );
    eprintln!("a valid key during the storm: declared {declared_took:?}, stored {stored_took:?}");
    assert_eq!(declared.status, 200);
    assert_eq!(with_stored.status, 200, "{:?}", with_stored.body);
    assert!(
        answered_meanwhile < 200,
        "the valid requests were answered while the storm went on"
    );
    // Unbounded (hashing.concurrency = 1000), the hashes starved the runtime's workers:
    // 10-11 s measured for both, and the peak RSS grew 1282 MiB against 19 bounded.
    assert!(
        declared_took < Duration::from_millis(500) && stored_took < Duration::from_millis(1000),
        "not queued behind the hashes: {declared_took:?}, {stored_took:?}"
    );
    assert!(refused >= permits as usize, "some were checked");
    assert!(shed > 0, "the excess was shed, not queued for ever");
    // Each check holds 19 MiB (argon2id's defaults): unbounded, 200 at once would be
    // gigabytes; bounded, the peak grows by the permits' worth and some slack.
    let bound = permits * 20 + 64;
    assert!(
        grew_mib <= bound,
        "peak RSS grew {grew_mib} MiB during the storm (bound {bound} MiB)"
    );
    Arc::into_inner(env).unwrap().stop().await;
}

#[tokio::test]
async fn a_spent_username_is_refused_429_before_any_check_even_with_its_password() {
    let _turn = TURN.lock().await;
    let env = start_with(|_| {}).await;
    partner(&env, "ann", "right").await;
    partner(&env, "bob", "right").await;
    // Ten failures are the default burst (answers from the negative cache count too).
    for i in 0..10 {
        as_basic(&env, "ann", &format!("wrong{}", i % 3))
            .await
            .assert_problem(401);
    }
    let calls = env.appdirect_calls();
    let r = as_basic(&env, "ann", "wrong-again").await;
    let doc = r.assert_problem(429);
    assert!(
        doc["detail"]
            .as_str()
            .unwrap()
            .contains("identity.failed_per_user"),
        "{doc}"
    );
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.header("ratelimit-limit"), Some("10"));
    // The right password is refused too until the budget refills: a guesser cannot tell.
    as_basic(&env, "ann", "right").await.assert_problem(429);
    // In every dialect, and on the admin API, which shares the budgets.
    env.send(
        Method::GET,
        &format!("/networking/rest/tenant/{}", rosetta::demo::PARTNER_ID),
        &[("authorization", &basic("ann", "right"))],
        Bytes::new(),
    )
    .await
    .assert_lj(429, -9429);
    env.admin_call(Method::GET, "/v1/users", Some(("Basic", "ann:right")), None)
        .await
        .assert_admin_error(429);
    assert_eq!(env.appdirect_calls(), calls, "nothing was sent upstream");
    // Another user is not affected.
    as_basic(&env, "bob", "wrong").await.assert_problem(401);
    assert_eq!(as_basic(&env, "bob", "right").await.status, 200);
    // One second later, one more attempt: the right password goes through.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(as_basic(&env, "ann", "right").await.status, 200);
    env.stop().await;
}

/// A client bound to `local` (any 127.0.0.0/8 address reaches the gateway on 127.0.0.1).
async fn send_from(env: &Env, local: IpAddr, auth: Option<&str>) -> (u16, Option<String>) {
    let mut conn = HttpConnector::new();
    conn.set_local_address(Some(local));
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(conn);
    let mut req = Request::get(format!("{}{PATH}", env.base));
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let resp = client
        .request(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let _ = resp.into_body().collect().await;
    (status, retry)
}

#[tokio::test]
async fn a_spent_client_ip_is_refused_429_for_every_user() {
    let _turn = TURN.lock().await;
    let env = start_with(budgets((10, "1/s"), (5, "1/h"))).await;
    partner(&env, "ann", "right").await;
    let attacker: IpAddr = "127.0.0.2".parse().unwrap();
    let bystander: IpAddr = "127.0.0.3".parse().unwrap();
    // Five failures of any kind: unknown users, a wrong key, no credentials at all.
    for auth in [
        Some(basic("u1", "x")),
        Some(basic("u2", "x")),
        Some("Bearer rk_nope".to_owned()),
        None,
        Some(basic("u3", "x")),
    ] {
        assert_eq!(send_from(&env, attacker, auth.as_deref()).await.0, 401);
    }
    let (status, retry) = send_from(&env, attacker, Some(&basic("ann", "right"))).await;
    assert_eq!(status, 429, "a spent IP is refused whoever it names");
    assert_eq!(retry.as_deref(), Some("3600"), "one failure more per hour");
    let (status, _) = send_from(&env, attacker, Some("Bearer rk_other")).await;
    assert_eq!(status, 429);
    // Another address is not affected.
    assert_eq!(
        send_from(&env, bystander, Some(&basic("ann", "right")))
            .await
            .0,
        200
    );
    assert_eq!(
        send_from(&env, bystander, Some(&basic("u1", "x"))).await.0,
        401
    );
    // A key known at once (declared in the file, or a check still cached) is not an
    // attempt: it goes through from the spent address too.
    assert_eq!(
        send_from(&env, attacker, Some(&format!("Bearer {KEY}")))
            .await
            .0,
        200
    );
    env.stop().await;
}

/// The median time of five refused logins of `user`, each with a new password, and what
/// each refusal said.
async fn refusals(env: &Env, user: &str) -> (Duration, Vec<String>) {
    let mut times = Vec::new();
    let mut details = Vec::new();
    for i in 0..5 {
        let started = rosetta::clock::real_now();
        let doc = as_basic(env, user, &format!("new-guess-{i}"))
            .await
            .assert_problem(401);
        times.push(started.elapsed());
        details.push(doc["detail"].as_str().unwrap().to_owned());
    }
    times.sort();
    (times[2], details)
}

#[tokio::test]
async fn unknown_users_are_refused_like_known_ones_and_in_as_long() {
    let _turn = TURN.lock().await;
    let env = start_with(budgets((1000, "100/s"), (1000, "100/s"))).await;
    partner(&env, "ann", "right").await;
    // Warm the dummy hash (made once, on first use).
    as_basic(&env, "nobody", "warm").await.assert_problem(401);
    let (known, known_said) = refusals(&env, "ann").await;
    let (unknown, unknown_said) = refusals(&env, "nobody").await;
    assert_eq!(known_said, unknown_said, "the same refusal");
    // Without the dummy hash an unknown user is refused in a store lookup (~0.1 ms) against
    // a hash's ~20-100 ms: a factor far beyond this margin.
    assert!(
        unknown * 3 >= known,
        "unknown {unknown:?} against known {known:?}"
    );
    env.stop().await;
}

#[tokio::test]
async fn a_failed_attempt_is_audited_as_anonymous_with_the_client_ip() {
    let _turn = TURN.lock().await;
    let env = start_with(|_| {}).await;
    let refused = as_basic(&env, "mallory", "guess").await;
    refused.assert_problem(401);
    let tracecode = refused.header("x-trace-code").unwrap().to_owned();
    let missing = env.send(Method::GET, PATH, &[], Bytes::new()).await;
    missing.assert_problem(401);
    let ok = env.get(PATH).await;
    assert_eq!(ok.status, 200);
    env.gw.store.flush().await.unwrap();
    let up = format!("{}:{}", ROOT.0, ROOT.1);
    let doc = env
        .admin_call(
            Method::GET,
            "/v1/audit?username=anonymous&sort_field=time",
            Some(("Basic", &up)),
            None,
        )
        .await
        .json();
    let actions = doc["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 2, "{doc}");
    let row = &actions[0];
    assert_eq!(row["tracedata"]["code"], tracecode.as_str());
    assert_eq!(row["status"], 401);
    assert_eq!(row["username"], "anonymous");
    assert_eq!(row["ip"], "127.0.0.1");
    assert_eq!(row["tracedata"]["operation"], "companies.mine", "{row}");
    assert_eq!(row["statistics"]["points_count"], 0);
    assert_eq!(
        actions[1]["tracedata"]["code"],
        missing.header("x-trace-code").unwrap()
    );
    // A request let in carries its address too.
    let doc = env
        .admin_call(
            Method::GET,
            "/v1/audit?operation_id=companies.mine&sort_field=time",
            Some(("Basic", &up)),
            None,
        )
        .await
        .json();
    let row = doc["actions"]
        .as_array()
        .unwrap_or_else(|| panic!("{doc}"))
        .iter()
        .find(|r| r["tracedata"]["code"] == ok.header("x-trace-code").unwrap())
        .unwrap_or_else(|| panic!("{doc}"));
    assert_eq!(row["ip"], "127.0.0.1");
    env.stop().await;
}
