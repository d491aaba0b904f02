//! The real `rosetta` binary as a child process: started with a store in a temporary folder
//! and ports chosen by the OS (read back from its log), stopped by signal, and its store
//! read afterwards. Used by the SIGTERM and kill -9 tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rosetta::store::{AuditLog, AuditQuery, SqliteStore};

/// A child that is killed if a test fails before stopping it.
pub struct KillOnDrop(pub Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A running gateway process.
pub struct Served {
    pub child: KillOnDrop,
    pub pid: u32,
    /// `http://127.0.0.1:port` of the proxy listener.
    pub base: String,
    /// `http://127.0.0.1:port` of the admin listener.
    pub admin: String,
}

impl Served {
    /// Sends `signal` (`TERM`, `KILL`) and waits for the process to end; `true` on a clean exit.
    pub async fn stop(mut self, signal: &str) -> bool {
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(sent, "kill -{signal} failed");
        let mut proc = self.child.0.take().expect("running");
        tokio::task::spawn_blocking(move || proc.wait())
            .await
            .ok()
            .and_then(Result::ok)
            .is_some_and(|s| s.success())
    }
}

/// Starts `rosetta serve` with the shipped config, AppDirect at `appdirect`, the store at
/// `db`, a bootstrap `root` and limits high enough that nothing is refused.
pub fn serve(appdirect: &str, db: &Path) -> Served {
    serve_with(
        appdirect,
        db,
        &[("ROSETTA__RATE_LIMITS__DEFAULT__BURST", "1000000")],
    )
}

/// [`serve`] with the shipped limits, and `env` set over the rest.
pub fn serve_with(appdirect: &str, db: &Path, env: &[(&str, &str)]) -> Served {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/rosetta.toml");
    let child = Command::new(env!("CARGO_BIN_EXE_rosetta"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("ROSETTA__LISTEN", "127.0.0.1:0")
        .env("ROSETTA__ADMIN_LISTEN", "127.0.0.1:0")
        .env("ROSETTA__STORE__PATH", db)
        .env("ROSETTA__ADMIN__BOOTSTRAP_USER", "root")
        .env("ROSETTA__ADMIN__BOOTSTRAP_PASSWORD", "root-password")
        .env("ROSETTA__UPSTREAMS__APPDIRECT__URL", appdirect)
        .env(
            "ROSETTA__UPSTREAMS__REDAPI__AUTH__CLIENT_SECRET",
            rosetta::demo::REDAPI_CLIENT_SECRET,
        )
        .env(
            "ROSETTA__UPSTREAMS__FUSION__AUTH__VALUE",
            format!("Bearer {}", rosetta::demo::fusion::FUSION_TOKEN),
        )
        .env("ROSETTA__LOG__FORMAT", "json")
        .envs(env.iter().copied())
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let mut child = KillOnDrop(Some(child));
    let pid = child.0.as_ref().map(Child::id).unwrap_or_default();
    // The log (stderr) says where it listens.
    let stderr = child
        .0
        .as_mut()
        .and_then(|c| c.stderr.take())
        .expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let (base, admin) = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the serving line");
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        // The JSON logger may nest event fields under `fields` or flatten them.
        let field = |k: &str| v.get(k).or_else(|| v["fields"].get(k)).cloned();
        if field("message").is_some_and(|m| m == "rosetta is serving") {
            let at = |k: &str| format!("http://{}", field(k).unwrap().as_str().unwrap());
            break (at("listen"), at("admin"));
        }
    };
    // Keeps reading the log, so a chatty node never blocks on a full pipe.
    std::thread::spawn(move || while rx.recv().is_ok() {});
    Served {
        child,
        pid,
        base,
        admin,
    }
}

/// One GET as `root` on its own connection, past the read cache; `None` when unanswered.
pub async fn get(base: &str, path: &str) -> Option<u16> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let auth = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        "root:root-password",
    );
    let req = http::Request::get(format!("{base}{path}"))
        .header("authorization", format!("Basic {auth}"))
        .header("cache-control", "no-cache")
        .body(Empty::new())
        .ok()?;
    let resp = client.request(req).await.ok()?;
    let status = resp.status().as_u16();
    resp.into_body().collect().await.ok()?;
    Some(status)
}

/// Audit rows of `root` in the store at `db` (opened after the process ended).
pub async fn root_audit_rows(db: &Path) -> u64 {
    let store = SqliteStore::open(db).unwrap();
    store
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
            target: None,
            sort_field: None,
            descending: false,
        })
        .await
        .unwrap()
        .filtered
}
