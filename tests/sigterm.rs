//! The real binary under load, stopped with SIGTERM: every answered request has its audit
//! row on disk afterwards (the drain finishes in-flight requests, then the store flushes).

#![cfg(unix)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rosetta::store::{AuditQuery, SqliteStore, Store};

struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

async fn get(base: &str, path: &str) -> Option<u16> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let auth = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        "root:root-password",
    );
    let req = http::Request::get(format!("{base}{path}"))
        .header("authorization", format!("Basic {auth}"))
        // Past the read cache: every request goes to the upstream.
        .header("cache-control", "no-cache")
        .body(Empty::new())
        .ok()?;
    let resp = client.request(req).await.ok()?;
    let status = resp.status().as_u16();
    resp.into_body().collect().await.ok()?;
    Some(status)
}

#[tokio::test]
async fn sigterm_under_load_loses_no_audit_row() {
    let appdirect = rosetta::demo::start_appdirect().await.unwrap();
    appdirect.faults().push(rosetta::demo::Fault {
        method: None,
        path_prefix: "/api".into(),
        kind: rosetta::demo::FaultKind::Delay(Duration::from_millis(200)),
        times: None,
    });
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rosetta.db");
    let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/rosetta.toml");
    let child = Command::new(env!("CARGO_BIN_EXE_rosetta"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("ROSETTA__LISTEN", "127.0.0.1:0")
        .env("ROSETTA__ADMIN_LISTEN", "127.0.0.1:0")
        .env("ROSETTA__STORE__PATH", &db)
        .env("ROSETTA__ADMIN__BOOTSTRAP_USER", "root")
        .env("ROSETTA__ADMIN__BOOTSTRAP_PASSWORD", "root-password")
        .env("ROSETTA__UPSTREAMS__APPDIRECT__URL", appdirect.url())
        .env("ROSETTA__LOG__FORMAT", "json")
        .env("ROSETTA__RATE_LIMITS__DEFAULT__BURST", "1000000")
        .env("ROSETTA__LOG__LEVEL", "info")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    // A failing assertion must not leave the server running.
    let mut child = KillOnDrop(Some(child));
    let child_id = child.0.as_ref().unwrap().id();
    // Its log says where it listens (log lines go to stderr).
    // Logs go to stderr.
    let stdout = child.0.as_mut().unwrap().stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let base = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the serving line");
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        // The JSON logger may nest event fields under `fields` or flatten them.
        let field = |k: &str| v.get(k).or_else(|| v["fields"].get(k)).cloned();
        if field("message").is_some_and(|m| m == "rosetta is serving") {
            break format!("http://{}", field("listen").unwrap().as_str().unwrap());
        }
    };
    let path = format!("/companies/{}", rosetta::demo::PARTNER_ID);
    // Warm the password check so the load is pure proxying.
    assert_eq!(get(&base, &path).await, Some(200));
    let warm_calls = appdirect.log().requests().len();
    let tasks: Vec<_> = (0..30)
        .map(|_| {
            let (b, p) = (base.clone(), path.clone());
            tokio::spawn(async move { get(&b, &p).await })
        })
        .collect();
    while appdirect.log().requests().len() == warm_calls {
        tokio::task::yield_now().await;
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child_id.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let mut answered = 1u64; // the warm-up request
    for t in tasks {
        if let Some(status) = t.await.unwrap() {
            assert_eq!(status, 200);
            answered += 1;
        }
    }
    let mut proc = child.0.take().unwrap();
    let exit = tokio::task::spawn_blocking(move || proc.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "a clean exit after the drain: {exit:?}");
    let store = SqliteStore::open(&db).unwrap();
    let rows = store
        .list_audit(AuditQuery {
            offset: 0,
            limit: 1000,
            from_ms: 0,
            to_ms: i64::MAX,
            company_key: None,
            username: Some("root".into()),
            service: None,
            operation: None,
            method_group: None,
            sort_field: None,
            descending: false,
        })
        .await
        .unwrap();
    assert!(answered > 1, "requests were in flight when SIGTERM came");
    assert_eq!(
        rows.filtered, answered,
        "one audit row per answered request"
    );
}
