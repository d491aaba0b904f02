//! The admin API's guards end to end, through the real admin listener: a PARTNER never acts
//! on a user above it, quota writes are ADMIN-only, and (CSRF) writes must be JSON and must
//! not come from another site. Every refusal is checked to have changed nothing, by reading
//! back as the bootstrap administrator.

mod common;

use common::{Env, start};
use http::Method;
use serde_json::{Value, json};

const PASSWORD: &str = "pa55-word-for-guards";

async fn company(env: &Env, key: &str) {
    let r = env
        .root(Method::POST, "/v1/companies", Some(json!({"key": key})))
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
}

async fn user(env: &Env, name: &str, company: &str, roles: &[&str]) {
    let r = env
        .root(
            Method::POST,
            "/v1/users",
            Some(
                json!({"username": name, "password": PASSWORD, "name": "Guarded User",
                        "company_key": company, "roles": roles}),
            ),
        )
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
}

/// A key minted by root; its id.
async fn key_id(env: &Env, name: &str) -> String {
    let r = env
        .root(Method::POST, &format!("/v1/users/{name}/keys"), None)
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    r.json()["id"].as_str().unwrap().to_owned()
}

fn basic(name: &str) -> String {
    format!("{name}:{PASSWORD}")
}

/// Everything the admin API holds about a user, as root reads it.
async fn snapshot(env: &Env, name: &str) -> Value {
    let mut out = json!({});
    for (k, path) in [
        ("user", format!("/v1/users/{name}")),
        ("keys", format!("/v1/users/{name}/keys")),
        ("quotas", format!("/v1/users/{name}/quotas")),
    ] {
        let r = env.root(Method::GET, &path, None).await;
        assert_eq!(
            r.status,
            200,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        out[k] = r.json();
    }
    out
}

fn quota(points_per_day: u64) -> Value {
    json!({"services": [{"service": "REDAPI_V1", "methods": [
        {"method_group": "READ", "points_per_day": points_per_day}]}]})
}

#[tokio::test]
async fn a_partner_cannot_act_on_an_admin_or_auditor_of_its_own_company() {
    let env = start().await;
    company(&env, "acme").await;
    user(&env, "pat", "acme", &["PARTNER"]).await;
    user(&env, "adm", "acme", &["ADMIN"]).await;
    user(&env, "aud", "acme", &["AUDITOR"]).await;
    user(&env, "mix", "acme", &["USER", "AUDITOR"]).await;
    user(&env, "usr", "acme", &["USER"]).await;
    let pat = basic("pat");
    let as_pat = |m: Method, path: String, body: Option<Value>| {
        let (env, pat) = (&env, &pat);
        async move { env.admin_call(m, &path, Some(("Basic", pat)), body).await }
    };
    for target in ["adm", "aud", "mix"] {
        let id = key_id(&env, target).await;
        env.root(
            Method::PUT,
            &format!("/v1/users/{target}/quotas"),
            Some(quota(50)),
        )
        .await;
        let before = snapshot(&env, target).await;
        let refusals = [
            (
                Method::POST,
                format!("/v1/users/{target}/keys"),
                Some(json!({})),
            ),
            (Method::POST, format!("/v1/users/{target}/keys"), None),
            (
                Method::DELETE,
                format!("/v1/users/{target}/keys/{id}"),
                None,
            ),
            // Demoted to what a PARTNER may grant.
            (
                Method::PUT,
                format!("/v1/users/{target}"),
                Some(json!({"username": target, "company_key": "acme", "roles": ["PARTNER"]})),
            ),
            // Changed (blocked, renamed) while losing the role.
            (
                Method::PUT,
                format!("/v1/users/{target}"),
                Some(
                    json!({"username": target, "company_key": "acme", "roles": ["USER"],
                            "enabled": false, "name": "Taken Over", "password": "new-password"}),
                ),
            ),
            (Method::DELETE, format!("/v1/users/{target}"), None),
        ];
        for (m, path, body) in refusals {
            let what = format!("{m} {path}");
            let msg = as_pat(m, path, body).await.assert_admin_error(403);
            assert!(msg.contains("ADMIN or AUDITOR"), "{what}: {msg}");
        }
        assert_eq!(
            snapshot(&env, target).await,
            before,
            "{target}: nothing changed"
        );
        // The password was not changed either: the target still signs in with its own.
        let me = env
            .admin_call(
                Method::GET,
                &format!("/v1/users/{target}"),
                Some(("Basic", &basic(target))),
                None,
            )
            .await;
        assert_eq!(me.status, 200, "{target} still signs in");
        // Listing and reading stay as they were.
        for path in [
            format!("/v1/users/{target}"),
            format!("/v1/users/{target}/keys"),
        ] {
            assert_eq!(
                as_pat(Method::GET, path.clone(), None).await.status,
                200,
                "{path}"
            );
        }
    }
    // The same calls on a USER of the company still work: the refusals are about the target.
    let id = key_id(&env, "usr").await;
    let minted = as_pat(Method::POST, "/v1/users/usr/keys".into(), None).await;
    assert_eq!(minted.status, 201);
    let revoked = as_pat(Method::DELETE, format!("/v1/users/usr/keys/{id}"), None).await;
    assert_eq!(revoked.status, 204);
    let changed = as_pat(
        Method::PUT,
        "/v1/users/usr".into(),
        Some(json!({"username": "usr", "company_key": "acme", "roles": ["PARTNER"]})),
    )
    .await;
    assert_eq!(changed.status, 200);
    assert_eq!(
        as_pat(Method::DELETE, "/v1/users/usr".into(), None)
            .await
            .status,
        204
    );
    // And root, an ADMIN, may do all of it to an ADMIN.
    let r = env
        .root(
            Method::PUT,
            "/v1/users/adm",
            Some(json!({"username": "adm", "company_key": "acme", "roles": ["USER"]})),
        )
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn quota_writes_are_admin_only() {
    let env = start().await;
    company(&env, "acme").await;
    user(&env, "pat", "acme", &["PARTNER"]).await;
    user(&env, "aud", "acme", &["AUDITOR"]).await;
    user(&env, "usr", "acme", &["USER"]).await;
    let r = env
        .root(Method::PUT, "/v1/users/usr/quotas", Some(quota(100)))
        .await;
    assert_eq!(r.status, 200);
    let r = env
        .root(
            Method::PUT,
            "/v1/users/usr/quotas?from=2026-12-01&to=2026-12-31",
            Some(quota(10)),
        )
        .await;
    assert_eq!(r.status, 200);
    let before = snapshot(&env, "usr").await;
    for caller in ["pat", "aud"] {
        let auth = basic(caller);
        for target in ["usr", caller] {
            for (m, q, body) in [
                (Method::PUT, "", Some(quota(1_000_000))),
                (
                    Method::PUT,
                    "?from=2026-12-01&to=2026-12-31",
                    Some(quota(0)),
                ),
                (Method::DELETE, "", None),
                (Method::DELETE, "?from=2026-12-01&to=2026-12-31", None),
            ] {
                let path = format!("/v1/users/{target}/quotas{q}");
                let msg = env
                    .admin_call(m.clone(), &path, Some(("Basic", &auth)), body)
                    .await
                    .assert_admin_error(403);
                assert!(msg.contains("only an ADMIN"), "{caller}: {m} {path}: {msg}");
            }
        }
        // Reading stays: a PARTNER reads its company's quotas, an AUDITOR everyone's.
        let read = env
            .admin_call(
                Method::GET,
                "/v1/users/usr/quotas",
                Some(("Basic", &auth)),
                None,
            )
            .await;
        assert_eq!(read.status, 200);
        assert_eq!(read.json(), before["quotas"]);
    }
    assert_eq!(snapshot(&env, "usr").await, before, "nothing changed");
    assert_eq!(
        env.root(Method::GET, "/v1/users/pat/quotas", None)
            .await
            .json()["base"]["services"],
        json!([]),
        "the PARTNER did not give itself quotas"
    );
}

/// The admin error of a write refused before authentication (`status`), and the same
/// request with wrong credentials refused the same way: were the credentials checked first,
/// that one would be a 401.
async fn refused_before_authentication(
    env: &common::Env,
    r: &common::Resp,
    status: u16,
    (method, path, headers, body): (Method, &str, &[(&str, &str)], String),
) -> String {
    let msg = r.assert_admin_error(status);
    let forged = env
        .admin_send(method, path, Some(("Basic", "root:wrong")), headers, body)
        .await;
    assert_eq!(forged.assert_admin_error(status), msg, "{path}");
    msg
}

fn root_auth() -> String {
    format!("{}:{}", common::ROOT.0, common::ROOT.1)
}

#[tokio::test]
async fn a_write_that_is_not_json_is_415_and_changes_nothing() {
    let env = start().await;
    company(&env, "acme").await;
    user(&env, "usr", "acme", &["USER"]).await;
    let root = root_auth();
    let auth = Some(("Basic", root.as_str()));
    let before = snapshot(&env, "usr").await;
    // A cross-site HTML form's POST, with a body that would otherwise be valid JSON.
    for (ct, body) in [
        (
            "application/x-www-form-urlencoded",
            "key=forged_co".to_owned(),
        ),
        ("text/plain", json!({"key": "forged_co"}).to_string()),
        ("multipart/form-data; boundary=b", "--b--".to_owned()),
    ] {
        let r = env
            .admin_send(
                Method::POST,
                "/v1/companies",
                auth,
                &[("content-type", ct)],
                body.clone(),
            )
            .await;
        let headers = [("content-type", ct)];
        let replay = (Method::POST, "/v1/companies", &headers[..], body);
        let msg = refused_before_authentication(&env, &r, 415, replay).await;
        assert!(msg.contains("application/json"), "{ct}: {msg}");
    }
    env.root(Method::GET, "/v1/companies/forged_co", None)
        .await
        .assert_admin_error(404);
    // No Content-Type at all: a key mint without a body, a user change, a quota write.
    let bare = [
        (Method::POST, "/v1/users/usr/keys", String::new()),
        (
            Method::PUT,
            "/v1/users/usr",
            json!({"username": "usr", "company_key": "acme", "roles": ["PARTNER"]}).to_string(),
        ),
        (Method::PUT, "/v1/users/usr/quotas", quota(5).to_string()),
        (Method::PATCH, "/v1/users/usr", "{}".to_owned()),
    ];
    for (m, path, body) in bare {
        let r = env
            .admin_send(m.clone(), path, auth, &[], body.clone())
            .await;
        refused_before_authentication(&env, &r, 415, (m, path, &[], body)).await;
    }
    assert_eq!(snapshot(&env, "usr").await, before, "nothing changed");
    // With a JSON type (parameters and case allowed) the same key mint works.
    let r = env
        .admin_send(
            Method::POST,
            "/v1/users/usr/keys",
            auth,
            &[("content-type", "Application/JSON; charset=utf-8")],
            "",
        )
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
}

#[tokio::test]
async fn cross_site_writes_are_403_and_same_origin_ones_pass() {
    let env = start().await;
    company(&env, "acme").await;
    user(&env, "usr", "acme", &["USER"]).await;
    let root = root_auth();
    let auth = Some(("Basic", root.as_str()));
    let ct = ("content-type", "application/json");
    let body = |key: &str| json!({"key": key}).to_string();
    let before = snapshot(&env, "usr").await;
    for (i, h) in [
        ("origin", "http://evil.example"),
        ("origin", "null"),
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
    ]
    .into_iter()
    .enumerate()
    {
        let key = format!("forged_{i}");
        let r = env
            .admin_send(Method::POST, "/v1/companies", auth, &[ct, h], body(&key))
            .await;
        let msg = r.assert_admin_error(403);
        assert!(msg.contains("cross-site"), "{h:?}: {msg}");
        env.root(Method::GET, &format!("/v1/companies/{key}"), None)
            .await
            .assert_admin_error(404);
        // DELETE has no body, and is refused all the same.
        let r = env
            .admin_send(Method::DELETE, "/v1/users/usr", auth, &[h], "")
            .await;
        let replay = (Method::DELETE, "/v1/users/usr", &[h][..], String::new());
        refused_before_authentication(&env, &r, 403, replay).await;
        // Wrong credentials do not change the answer: the check runs before authentication.
        let r = env
            .admin_send(
                Method::POST,
                "/v1/companies",
                Some(("Basic", "root:wrong")),
                &[ct, h],
                body(&key),
            )
            .await;
        r.assert_admin_error(403);
    }
    assert_eq!(
        snapshot(&env, "usr").await,
        before,
        "usr is still there, unchanged"
    );
    // The admin listener's own origin (any case), or a browser saying same-origin, passes.
    let own = env.admin_base.to_uppercase().replace("HTTP://", "http://");
    for (key, h) in [
        ("own_origin", ("origin", env.admin_base.as_str())),
        ("own_origin_case", ("origin", own.as_str())),
        ("same_origin", ("sec-fetch-site", "same-origin")),
        ("typed_url", ("sec-fetch-site", "none")),
    ] {
        let r = env
            .admin_send(Method::POST, "/v1/companies", auth, &[ct, h], body(key))
            .await;
        assert_eq!(r.status, 201, "{h:?}: {}", String::from_utf8_lossy(&r.body));
    }
    let origin = ("origin", env.admin_base.as_str());
    let r = env
        .admin_send(Method::DELETE, "/v1/users/usr", auth, &[origin], "")
        .await;
    assert_eq!(r.status, 204);
    // Reads are never refused for their origin.
    let r = env
        .admin_send(
            Method::GET,
            "/v1/companies/acme",
            auth,
            &[
                ("origin", "http://evil.example"),
                ("sec-fetch-site", "cross-site"),
            ],
            "",
        )
        .await;
    assert_eq!(r.status, 200);
}
