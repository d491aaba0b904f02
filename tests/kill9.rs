//! The real binary under load, killed with SIGKILL: at most the last second of usage (audit
//! rows, from which quota usage restarts) is lost. Prints the measured loss.

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
async fn kill_9_loses_at_most_the_last_second_of_usage() {
    let appdirect = rosetta::demo::start_appdirect().await.unwrap();
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
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let mut child = KillOnDrop(Some(child));
    let child_id = child.0.as_ref().unwrap().id();
    let stderr = child.0.as_mut().unwrap().stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
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
        let field = |k: &str| v.get(k).or_else(|| v["fields"].get(k)).cloned();
        if field("message").is_some_and(|m| m == "rosetta is serving") {
            break format!("http://{}", field("listen").unwrap().as_str().unwrap());
        }
    };
    let path = format!("/companies/{}", rosetta::demo::PARTNER_ID);
    assert_eq!(get(&base, &path).await, Some(200));
    // Steady load from 8 clients; each answer's time is kept.
    let answers = std::sync::Arc::new(std::sync::Mutex::new(Vec::<std::time::Instant>::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (b, p, answers, stop) = (base.clone(), path.clone(), answers.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if get(&b, &p).await == Some(200) {
                        answers.lock().unwrap().push(std::time::Instant::now());
                    }
                }
            })
        })
        .collect();
    while answers.lock().unwrap().len() < 300 {
        tokio::task::yield_now().await;
    }
    let killed_at = std::time::Instant::now();
    assert!(
        Command::new("kill")
            .args(["-KILL", &child_id.to_string()])
            .status()
            .unwrap()
            .success()
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let mut proc = child.0.take().unwrap();
    let _ = tokio::task::spawn_blocking(move || proc.wait()).await;
    let answers = answers.lock().unwrap().clone();
    let answered = answers.iter().filter(|t| **t <= killed_at).count() as u64 + 1;
    let last_second = answers
        .iter()
        .filter(|t| **t <= killed_at && killed_at.duration_since(**t) <= Duration::from_secs(1))
        .count() as u64;
    let store = SqliteStore::open(&db).unwrap();
    let rows = store
        .list_audit(AuditQuery {
            offset: 0,
            limit: 1,
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
    let lost = answered.saturating_sub(rows.filtered);
    eprintln!(
        "kill -9: {answered} answered, {} audit rows on disk, {lost} lost; {last_second} answered in the last second",
        rows.filtered
    );
    assert!(
        lost <= last_second,
        "lost {lost} > answered in the last second ({last_second})"
    );
}
