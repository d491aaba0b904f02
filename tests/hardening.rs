//! Issue 24's smaller items end to end: what the gateway keeps to itself (the store file's
//! mode, `/metrics`, internal error text) and what it refuses (oversized admin lists and
//! ranges), each refusal in the client's dialect with nothing changed.

mod common;

use std::io::Write;
use std::sync::{Arc, LazyLock};

use common::{lj_doc, start};
use http::Method;
use parking_lot::Mutex;
use rosetta::demo::{Fault, FaultKind, PARTNER_ID};
use serde_json::json;

/// Every log line of this test binary, collected (tests run in parallel: search them by
/// tracecode).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

static LOGS: LazyLock<Logs> = LazyLock::new(|| {
    let logs = Logs::default();
    let sink = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .init();
    logs
});

/// The log lines naming `tracecode`.
fn logged(tracecode: &str) -> Vec<String> {
    String::from_utf8_lossy(&LOGS.0.lock())
        .lines()
        .filter(|l| l.contains(tracecode))
        .map(str::to_owned)
        .collect()
}

#[cfg(unix)]
#[tokio::test]
async fn the_store_and_its_journal_files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let env = start().await;
    // A write, so the journal files exist and hold something.
    env.get("/companies").await;
    env.gw.store.flush().await.expect("flushed");
    let db = env.dir.path().join("rosetta.db");
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db.clone().into_os_string();
        p.push(suffix);
        let mode = std::fs::metadata(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.to_string_lossy()))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{}: {:o}", p.to_string_lossy(), mode);
    }
}

#[tokio::test]
async fn a_500_body_names_the_tracecode_and_not_the_cause_which_the_log_has() {
    LazyLock::force(&LOGS);
    let env = start().await;
    // AppDirect's page count makes the search's filter fail at run time (its range limit).
    env.appdirect.faults().push(Fault {
        method: Some(Method::GET),
        path_prefix: "/api/account/v2/companies".into(),
        kind: FaultKind::JsonText(
            r#"{"content":[],"page":{"size":100,"totalElements":0,"totalPages":1000000000000,"number":0}}"#
                .into(),
        ),
        times: Some(1),
    });
    let r = env.get("/networking/rest/tenant").await;
    assert_eq!(r.status, 500, "{}", String::from_utf8_lossy(&r.body));
    let tracecode = r.header("x-trace-code").unwrap().to_owned();
    let doc = lj_doc(&r.body);
    assert_eq!(doc["message"]["code"], "-1", "{doc}");
    let text = doc["message"]["description"].as_str().unwrap();
    assert!(
        text.starts_with("internal error") && text.contains(&tracecode),
        "{text}"
    );
    let lines = logged(&tracecode);
    let line = lines
        .iter()
        .find(|l| l.contains("internal error"))
        .unwrap_or_else(|| panic!("no log line for {tracecode}: {lines:?}"));
    // The log has the route and the cause; the body has neither.
    assert!(line.contains("tenant.search"), "{line}");
    let body = String::from_utf8_lossy(&r.body);
    for internal in ["route", "failed", "range", "jq"] {
        assert!(!body.contains(internal), "`{internal}` in {body}");
    }
}

#[tokio::test]
async fn a_502_body_names_the_upstream_and_its_status_not_what_it_said() {
    LazyLock::force(&LOGS);
    let env = start().await;
    env.appdirect.faults().push(Fault {
        method: None,
        path_prefix: "/api".into(),
        kind: FaultKind::Status(
            500,
            json!({"message": "NullPointerException at com.appdirect.db.Pool:42"}),
        ),
        times: Some(1),
    });
    let r = env.get(&format!("/companies/{PARTNER_ID}")).await;
    let doc = r.assert_problem(502);
    assert_eq!(doc["detail"], "upstream appdirect answered 500", "{doc}");
    let tracecode = r.header("x-trace-code").unwrap().to_owned();
    assert!(
        logged(&tracecode)
            .iter()
            .any(|l| l.contains("NullPointerException")),
        "the log keeps what the upstream said"
    );

    // An unreadable answer: what was expected, not the parser's words about its bytes.
    env.appdirect.faults().push(Fault {
        method: None,
        path_prefix: "/api".into(),
        kind: FaultKind::JsonText(r#"{"id": "x", "name": tru}"#.into()),
        times: Some(1),
    });
    let doc = env
        .get(&format!("/companies/{PARTNER_ID}"))
        .await
        .assert_problem(502);
    let detail = doc["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("upstream appdirect sent an unreadable response: expected JSON"),
        "{detail}"
    );
    assert!(
        !detail.contains("line") && !detail.contains("column"),
        "{detail}"
    );
}

#[tokio::test]
async fn admin_lists_and_periods_are_capped_in_the_admin_dialect() {
    let env = start().await;
    for list in ["/v1/users", "/v1/companies", "/v1/audit"] {
        let r = env
            .root(Method::GET, &format!("{list}?limit=1001"), None)
            .await;
        let message = r.assert_admin_error(400);
        assert!(
            message.contains("limit") && message.contains("1000"),
            "{list}: {message}"
        );
        let r = env
            .root(Method::GET, &format!("{list}?limit=1000"), None)
            .await;
        assert_eq!(r.status, 200, "{list}");
    }
    let cases = [
        "/v1/audit?from=2024-01-01T00:00:00Z&to=2025-01-02T00:00:01Z",
        "/v1/audit?from=2025-01-02T00:00:00Z&to=2025-01-01T00:00:00Z",
        "/v1/statistics?from=2024-01-01&to=2025-01-03",
        "/v1/report?from=2024-01-01&to=2025-01-03",
    ];
    for path in cases {
        let message = env
            .root(Method::GET, path, None)
            .await
            .assert_admin_error(400);
        assert!(
            message.contains("366 days") || message.contains("after to"),
            "{path}: {message}"
        );
    }
    let r = env
        .root(
            Method::GET,
            "/v1/audit?from=2024-01-01T00:00:00Z&to=2025-01-01T00:00:00Z",
            None,
        )
        .await;
    assert_eq!(r.status, 200, "366 days is within the cap");
}

#[tokio::test]
async fn metrics_ask_for_an_admin_or_auditor_unless_public() {
    let env = start().await;
    let anonymous = env.admin_call(Method::GET, "/metrics", None, None).await;
    anonymous.assert_admin_error(401);
    assert!(anonymous.header("www-authenticate").is_some());
    assert!(!String::from_utf8_lossy(&anonymous.body).contains("rosetta_"));
    let partner = env
        .admin_call(Method::GET, "/metrics", Some(("Bearer", common::KEY)), None)
        .await;
    assert!(
        partner
            .assert_admin_error(403)
            .contains("ADMIN and AUDITOR")
    );
    for key in [common::ADMIN_KEY, common::AUDITOR_KEY] {
        let r = env
            .admin_call(Method::GET, "/metrics", Some(("Bearer", key)), None)
            .await;
        assert_eq!(r.status, 200, "{key}");
        assert!(String::from_utf8_lossy(&r.body).contains("rosetta_http_requests_total"));
    }
    // The rest of the anonymous routes stay anonymous.
    for path in ["/health", "/v1/version", "/v1/docs/openapi.json"] {
        assert_eq!(
            env.admin_call(Method::GET, path, None, None).await.status,
            200,
            "{path}"
        );
    }

    let public = common::start_with(|cfg| cfg.metrics.public = true).await;
    let r = public.admin_call(Method::GET, "/metrics", None, None).await;
    assert_eq!(r.status, 200);
    assert!(String::from_utf8_lossy(&r.body).contains("rosetta_http_requests_total"));
}

/// `rosetta demo` works out of the box with the shipped configuration, which holds no
/// secret: it gives its sample RedAPI's OAuth2 credentials to the gateway itself.
#[cfg(unix)]
#[tokio::test]
async fn the_demo_runs_on_the_shipped_configuration_without_secrets() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_rosetta"))
        .arg("demo")
        .env("ROSETTA__LISTEN", "127.0.0.1:0")
        .env("ROSETTA__ADMIN_LISTEN", "127.0.0.1:0")
        .env_remove("ROSETTA__UPSTREAMS__REDAPI__AUTH__CLIENT_SECRET")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Read until the gateway and the key are printed, then on to the end: the demo prints
    // more, and a closed pipe would stop it.
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let (mut gateway, mut key, mut tx) = (None, None, Some(tx));
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["gateway", url, ..] => {
                    gateway = Some(url.trim_start_matches("http://").to_owned())
                }
                ["API", "key", k, ..] => key = Some((*k).to_owned()),
                _ => {}
            }
            if gateway.is_some()
                && key.is_some()
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(gateway.clone().zip(key.clone()));
            }
        }
    });
    let banner = tokio::time::timeout(std::time::Duration::from_secs(60), rx)
        .await
        .ok()
        .and_then(Result::ok)
        .flatten();
    let answered = banner.map(|(addr, key)| {
        // RedAPI's products: the gateway fetched an OAuth2 token with the demo's secret.
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            s,
            "GET /products HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = Vec::new();
        let read = s.read_to_end(&mut answer);
        format!("{read:?} {}", String::from_utf8_lossy(&answer))
    });
    // SIGTERM: the demo drains and removes its store.
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
    let answer = answered.expect("the demo printed its gateway and key");
    assert!(answer.contains("HTTP/1.1 200"), "{answer}");
}
