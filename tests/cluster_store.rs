//! Two gateways on one PostgreSQL store (`[store] url`): what one node's admin API writes,
//! the other reads at once (a user and key made through A authenticate on B), and the audit
//! trail is one: every request answered by either node is in `/v1/audit` of both.
#![cfg(unix)]

mod common;
mod postgres;

use common::start_with;
use http::Method;
use postgres::PgServer;

#[tokio::test]
async fn a_key_made_on_one_node_works_on_the_other_and_the_audit_is_one() {
    let server = PgServer::start();
    let url = server.url();
    let a = start_with(|c| c.store.url = Some(url.clone())).await;
    let b = start_with(|c| c.store.url = Some(url.clone())).await;
    // Bootstrapped once: B found A's root user in the shared store.
    assert_eq!(server.psql("SELECT COUNT(*) FROM users"), "1");

    let key = a.ann("correct horse battery", None).await;
    let bearer = format!("Bearer {key}");
    let mut codes = Vec::new();
    for (node, path) in [
        (&b, "/companies"),
        (&a, "/companies"),
        (&b, "/companies/nope"),
    ] {
        let r = node
            .send(Method::GET, path, &[("authorization", &bearer)], "")
            .await;
        let want = if path == "/companies" { 200 } else { 404 };
        assert_eq!(r.status, want, "the key is known to both nodes: {path}");
        codes.push(r.header("x-trace-code").unwrap().to_owned());
    }
    // The key made on A is listed by B's admin API.
    let listed = b.root(Method::GET, "/v1/users/ann/keys", None).await.json();
    assert_eq!(listed["keys"].as_array().map(Vec::len), Some(1), "{listed}");

    a.gw.store.flush().await.unwrap();
    b.gw.store.flush().await.unwrap();
    for node in [&a, &b] {
        let audit = node
            .root(Method::GET, "/v1/audit?username=ann&sort_field=time", None)
            .await
            .json();
        let got: Vec<&str> = audit["actions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["tracedata"]["code"].as_str().unwrap())
            .collect();
        assert_eq!(got, codes, "{audit}");
    }
    a.stop().await;
    b.stop().await;
}
