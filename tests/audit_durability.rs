//! The audit trail under store faults, through the real gateway: a table that cannot be
//! written loses no row (retried, spilled, replayed, never twice), a full queue refuses in
//! the client's dialect before anything is sent upstream, a client that goes away still
//! leaves its row (499), `/health` fails while the writer does, quota seeding fails closed,
//! and old rows are rolled up for the statistics.
//!
//! Faults are real: another SQLite connection holding the write lock, the spill file's path
//! taken by a folder, the audit table renamed away.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{Env, KEY, start, start_in, start_with};
use http::Method;
use serde_json::{Value, json};

/// The bound on every wait for the writer (its retries take about 3.5 s per failed batch).
const WAIT: Duration = Duration::from_secs(30);

fn partner() -> String {
    format!("/companies/{}", rosetta::demo::PARTNER_ID)
}

fn spill_path(env: &Env) -> PathBuf {
    let mut p = env.cfg.store_path().into_os_string();
    p.push(".audit-spill.jsonl");
    PathBuf::from(p)
}

/// Holds SQLite's write lock on the store until dropped (the transaction rolls back).
fn lock_writes(path: &Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(path).unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c.execute_batch("BEGIN EXCLUSIVE").unwrap();
    c
}

/// Every audit row of the test key's user: (tracecode, status).
async fn rows(env: &Env) -> Vec<(String, u16)> {
    rows_of(env, "user-northwind").await
}

/// Every audit row of `user`: (tracecode, status).
async fn rows_of(env: &Env, user: &str) -> Vec<(String, u16)> {
    let page = env
        .gw
        .store
        .list_audit(rosetta::store::AuditQuery {
            offset: 0,
            limit: 1000,
            from_ms: 0,
            to_ms: i64::MAX,
            company_key: None,
            username: Some(user.into()),
            service: None,
            operation: None,
            method_group: None,
            target: None,
            sort_field: None,
            descending: false,
        })
        .await
        .unwrap();
    page.items
        .iter()
        .map(|r| (r.tracecode.to_string(), r.status))
        .collect()
}

async fn health(env: &Env) -> (u16, Value) {
    let h = env.admin_call(Method::GET, "/health", None, None).await;
    (h.status.as_u16(), h.json())
}

/// Waits until `/health` is 200 again (the writer replays the spill file about once a
/// second once the table takes writes).
async fn healthy(env: &Env) -> Value {
    tokio::time::timeout(WAIT, async {
        loop {
            let (status, doc) = health(env).await;
            if status == 200 {
                return doc;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("/health turns 200 once the store takes writes")
}

fn sorted(codes: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = codes.into_iter().collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_fails_writes_loses_no_audit_row_and_replays_none_twice() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let env = start_in(dir.clone(), |_| {}).await;
    assert_eq!(health(&env).await.0, 200);
    let spill = spill_path(&env);
    let lock = lock_writes(&env.cfg.store_path());
    let mut codes = Vec::new();
    for _ in 0..12 {
        let r = env.get(&partner()).await;
        assert_eq!(r.status, 200, "answered while the store fails");
        codes.push(r.header("x-trace-code").unwrap().to_owned());
    }
    // Retried, then spilled: a flush answers once the rows are durable, in the spill file.
    env.gw
        .store
        .flush()
        .await
        .expect("spilled rows are durable");
    let (status, doc) = health(&env).await;
    assert_eq!(status, 503, "{doc}");
    assert_eq!(doc["status"], "failing");
    assert_eq!(doc["audit"]["spilled"], 12, "{doc}");
    assert_eq!(
        doc["audit"]["queued"], 0,
        "spilled rows give their room back"
    );
    let spilled = std::fs::read(&spill).expect("the spill file");
    assert_eq!(spilled.iter().filter(|b| **b == b'\n').count(), 12);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&spill).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "the spill file names users: owner only"
        );
    }
    drop(lock);
    let doc = healthy(&env).await;
    assert_eq!(doc["audit"]["spilled"], 0);
    assert_eq!(doc["audit"]["writer"], "ok");
    let got = rows(&env).await;
    assert_eq!(
        sorted(got.iter().map(|r| r.0.clone())),
        sorted(codes.clone())
    );
    assert!(got.iter().all(|r| r.1 == 200));
    assert!(!spill.exists(), "emptied once replayed");
    env.stop().await;

    // A crash after the replay committed but before the file went: the next start replays
    // the same rows again, and their keys make that change nothing.
    std::fs::write(&spill, &spilled).unwrap();
    let env = start_in(dir, |_| {}).await;
    healthy(&env).await;
    let got = rows(&env).await;
    assert_eq!(
        sorted(got.iter().map(|r| r.0.clone())),
        sorted(codes),
        "each answered request once, none twice"
    );
    assert!(!spill.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_audit_queue_refuses_in_dialect_before_anything_goes_upstream() {
    let env = start_with(|c| c.store.audit_queue = 2).await;
    let lock = lock_writes(&env.cfg.store_path());
    // Neither the table nor the spill file takes a row: rows stay in memory, in the queue.
    let spill = spill_path(&env);
    std::fs::create_dir(&spill).unwrap();
    let mut codes = Vec::new();
    for _ in 0..2 {
        let r = env.get(&partner()).await;
        assert_eq!(r.status, 200);
        codes.push(r.header("x-trace-code").unwrap().to_owned());
    }
    assert!(
        env.gw.store.flush().await.is_err(),
        "rows held in memory are not durable, and a flush says so"
    );
    let (status, doc) = health(&env).await;
    assert_eq!(status, 503, "{doc}");
    assert_eq!(doc["audit"]["writer"], "failing");
    assert_eq!(doc["audit"]["queued"], 2);
    assert_eq!(doc["audit"]["capacity"], 2);
    env.take_upstream_requests();

    let refused = env.get(&partner()).await;
    let problem = refused.assert_problem(503);
    assert!(
        problem["detail"].as_str().unwrap().contains("audit queue"),
        "{problem}"
    );
    assert_eq!(refused.header("retry-after"), Some("1"));
    env.send(
        Method::GET,
        &format!("/networking/rest/tenant/{}", rosetta::demo::PARTNER_ID),
        &[("authorization", &format!("Bearer {KEY}"))],
        Bytes::new(),
    )
    .await
    .assert_lj(503, -9503);
    assert!(
        env.take_upstream_requests().is_empty(),
        "nothing sent upstream"
    );

    // The store recovers: the held rows are written, and requests are let through again.
    drop(lock);
    std::fs::remove_dir(&spill).unwrap();
    healthy(&env).await;
    let r = env.get(&partner()).await;
    assert_eq!(r.status, 200);
    codes.push(r.header("x-trace-code").unwrap().to_owned());
    env.gw.store.flush().await.unwrap();
    let got = rows(&env).await;
    assert_eq!(
        sorted(got.iter().map(|r| r.0.clone())),
        sorted(codes),
        "a row per answered request, none for the refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_mid_request_leaves_a_499_row() {
    let env = start().await;
    env.appdirect.faults().push(rosetta::demo::Fault {
        method: Some(Method::GET),
        path_prefix: "/api".into(),
        kind: rosetta::demo::FaultKind::Delay(Duration::from_secs(20)),
        times: Some(1),
    });
    let stream = tokio::net::TcpStream::connect(env.gateway.addr())
        .await
        .unwrap();
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let req = http::Request::get(partner())
        .header("host", "rosetta")
        .header("authorization", format!("Bearer {KEY}"))
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let call = tokio::spawn(async move { send.send_request(req).await });
    tokio::time::timeout(WAIT, async {
        while env.appdirect_calls() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the request reaches the upstream");
    // The client goes away while the upstream is still working on it.
    call.abort();
    conn.abort();
    let row = tokio::time::timeout(WAIT, async {
        loop {
            env.gw.store.flush().await.unwrap();
            if let Some(r) = rows(&env).await.into_iter().next() {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the dropped request's row");
    assert_eq!(row.1, 499, "nginx's client closed request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_seeding_from_a_failing_store_refuses_rather_than_grant_a_fresh_budget() {
    let env = start().await;
    env.root(
        Method::POST,
        "/v1/companies",
        Some(json!({"key": "northwind"})),
    )
    .await;
    let r = env
        .root(
            Method::POST,
            "/v1/users",
            Some(json!({"username": "ann", "password": "ann-password-1", "company_key": "northwind", "roles": ["PARTNER"]})),
        )
        .await;
    assert_eq!(r.status, 201);
    let quota = json!({"services": [{"service": "REDAPI_V1", "methods": [{"method_group": "READ", "points_per_day": 5}]}]});
    let r = env
        .root(Method::PUT, "/v1/users/ann/quotas", Some(quota))
        .await;
    assert_eq!(r.status, 200);
    let key = env
        .root(Method::POST, "/v1/users/ann/keys", None)
        .await
        .json()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    // The usage so far cannot be read: the audit table is gone.
    let side = rusqlite::Connection::open(env.cfg.store_path()).unwrap();
    side.busy_timeout(Duration::from_secs(5)).unwrap();
    side.execute_batch("ALTER TABLE audit RENAME TO audit_away")
        .unwrap();
    env.take_upstream_requests();
    let bearer = format!("Bearer {key}");
    let r = env
        .send(Method::GET, &partner(), &[("authorization", &bearer)], "")
        .await;
    let doc = r.assert_problem(500);
    assert!(
        !doc["detail"].as_str().unwrap().contains("audit"),
        "no store internals in the answer: {doc}"
    );
    assert!(env.take_upstream_requests().is_empty(), "not let through");
    // Back: the usage is read, the request is counted, and the refused one's row (500,
    // spilled meanwhile) is replayed.
    side.execute_batch("ALTER TABLE audit_away RENAME TO audit")
        .unwrap();
    let r = env
        .send(Method::GET, &partner(), &[("authorization", &bearer)], "")
        .await;
    assert_eq!(r.status, 200);
    let remaining: u64 = r.header("x-quota-day-remaining").unwrap().parse().unwrap();
    assert!(remaining < 5, "counted against the day's budget");
    healthy(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_past_retention_are_rolled_up_deleted_and_still_counted_by_statistics() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let env = start_in(dir.clone(), |_| {}).await;
    let now = rosetta::clock::WallClock::System.now_ms();
    let day = 86_400_000;
    // 100 and 10 days ago (kept 90 days), and one now, of a user no longer in the store.
    for (i, age) in [100, 100, 100, 10, 0].into_iter().enumerate() {
        env.gw.store.record_audit(rosetta::store::AuditRow {
            time_ms: now - age * day,
            username: "retired".into(),
            company_key: "northwind".into(),
            tracecode: format!("tc-old-{i}").into(),
            server: "test".into(),
            service: "REDAPI_V1".into(),
            operation: "companies.get".into(),
            method_group: "READ".into(),
            points: 2,
            duration_ms: 5,
            status: 200,
            fingerprint: i as u64 % 2,
            targets: Arc::from([]),
            ip: None,
        });
    }
    env.gw.store.flush().await.unwrap();
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let old_day = (rosetta::clock::utc_now().date() - time::Duration::days(100))
        .format(fmt)
        .unwrap();
    let stats_path = format!("/v1/statistics?from={old_day}&to={old_day}&username=retired");
    let before = env.root(Method::GET, &stats_path, None).await.json();
    let method = &before["users"][0]["dates"][0]["services"][0]["methods"][0];
    assert_eq!(method["points_per_day"], 6, "{before}");
    assert_eq!(method["unique_points_per_day"], 4, "{before}");
    assert_eq!(rows_of(&env, "retired").await.len(), 5);
    env.stop().await;

    // The writer's daily run starts with the process.
    let env = start_in(dir, |_| {}).await;
    let left = tokio::time::timeout(WAIT, async {
        loop {
            let left = rows_of(&env, "retired").await;
            if left.len() == 2 {
                return left;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the rows past retention go");
    assert!(
        left.iter().all(|r| r.0 == "tc-old-3" || r.0 == "tc-old-4"),
        "only the rows past 90 days went: {left:?}"
    );
    let after = env.root(Method::GET, &stats_path, None).await.json();
    assert_eq!(after, before, "the statistics read the roll-up");
    let report = env
        .root(
            Method::GET,
            &format!("/v1/report?from={old_day}&to={old_day}&username=retired"),
            None,
        )
        .await;
    assert_eq!(report.status, 200);
    use calamine::{Data, Reader, Xlsx, open_workbook_from_rs};
    let mut wb: Xlsx<_> =
        open_workbook_from_rs(std::io::Cursor::new(report.body.to_vec())).expect("an XLSX file");
    let sheet = wb.worksheet_range("statistics").unwrap();
    assert_eq!(sheet.get((1, 4)), Some(&Data::Float(6.0)), "the report too");
}
