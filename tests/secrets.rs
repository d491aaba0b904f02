//! Passwords and key secrets never reach a log line, at any level: every log event of a
//! full admin and proxy session is collected and searched.

mod common;

use std::io::Write;
use std::sync::Arc;

use parking_lot::Mutex;

use http::Method;
use serde_json::json;

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        {
            let mut v = self.0.lock();
            v.extend_from_slice(b);
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_password_or_key_in_any_log_line() {
    let logs = Buffer::default();
    let sink = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .init();
    let env = common::start().await;
    let password = "log-me-never-7f3a";
    let new_password = "log-me-never-either-9c1d";
    let key = env.ann(password, None).await;
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("ann:{password}"),
    );
    for auth in [format!("Basic {basic}"), format!("Bearer {key}")] {
        let r = env
            .send(Method::GET, "/companies", &[("authorization", &auth)], "")
            .await;
        assert_eq!(r.status, 200);
    }
    // A wrong password and an update that sets a new one.
    env.admin_call(
        Method::GET,
        "/v1/users",
        Some(("Basic", &format!("root:{password}"))),
        None,
    )
    .await
    .assert_admin_error(401);
    env.root(
        Method::PUT,
        "/v1/users/ann",
        Some(json!({"username": "ann", "password": new_password, "company_key": "northwind", "roles": ["PARTNER"]})),
    )
    .await;
    env.gw.store.flush().await.unwrap();
    let text = String::from_utf8_lossy(&logs.0.lock()).into_owned();
    assert!(text.contains("admin request"), "the logs were collected");
    for secret in [password, new_password, key.as_str(), common::ROOT.1] {
        assert!(!text.contains(secret), "a secret reached the logs");
    }
}
