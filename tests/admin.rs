//! The admin API end to end: a real admin listener and proxy over a store in a temporary
//! folder, the bootstrap administrator (`root`), and the sample backends.

mod common;

use std::sync::Arc;

use common::{Env, ROOT, start, start_in};
use http::Method;
use serde_json::{Value, json};

const PASSWORD: &str = "pa55-word-never-shown";

async fn company(env: &Env, key: &str) {
    let r = env
        .root(
            Method::POST,
            "/v1/companies",
            Some(json!({"key": key, "detail": null})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
}

async fn user(env: &Env, name: &str, company: &str, roles: &[&str]) -> Value {
    let r = env
        .root(
            Method::POST,
            "/v1/users",
            Some(
                json!({"username": name, "password": PASSWORD, "name": "Test User",
                        "email": format!("{name}@example.com"), "phone": "+15550100",
                        "company_key": company, "roles": roles, "timezone": 2}),
            ),
        )
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

async fn key_for(env: &Env, name: &str) -> String {
    let r = env
        .root(Method::POST, &format!("/v1/users/{name}/keys"), None)
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    r.json()["key"].as_str().unwrap().to_owned()
}

fn basic(name: &str) -> String {
    format!("{name}:{PASSWORD}")
}

#[tokio::test]
async fn version_and_health_need_no_credentials() {
    let env = start().await;
    let v = env.admin_call(Method::GET, "/v1/version", None, None).await;
    assert_eq!(v.status, 200);
    let v = v.json();
    // The crate's own version, within seed 003's bounds, and the commit when git knew it.
    let major: u64 = env!("CARGO_PKG_VERSION_MAJOR").parse().unwrap();
    let minor: u64 = env!("CARGO_PKG_VERSION_MINOR").parse().unwrap();
    assert_eq!(
        (v["major"].as_u64(), v["minor"].as_u64()),
        (Some(major), Some(minor))
    );
    assert!((1..=100).contains(&major) && minor <= 111);
    let build = v["build"].as_str().unwrap();
    assert!(build.starts_with(env!("CARGO_PKG_VERSION")), "{build}");
    assert!((1..=64).contains(&build.len()), "{build}");
    if let Some(hash) = option_env!("ROSETTA_GIT_HASH") {
        assert!(build.ends_with(hash), "{build}");
    }
    let h = env.admin_call(Method::GET, "/health", None, None).await;
    let h = h.json();
    assert_eq!(h["status"], "ok", "{h}");
    assert_eq!(h["audit"]["writer"], "ok", "{h}");
    assert_eq!(h["audit"]["spilled"], 0, "{h}");
}

#[tokio::test]
async fn the_openapi_document_is_served_as_a_readable_page_too() {
    let env = start().await;
    let page = env
        .admin_call(Method::GET, "/v1/docs/openapi.html", None, None)
        .await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let html = String::from_utf8_lossy(&page.body).into_owned();
    let doc = env
        .admin_call(Method::GET, "/v1/docs/openapi.json", None, None)
        .await
        .json();
    // Every path and schema of the JSON document is on the page (rendered from the same
    // source at build time).
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item
            .as_object()
            .unwrap()
            .keys()
            .filter(|m| *m != "parameters")
        {
            let heading = format!("<code>{} {}</code>", method.to_uppercase(), path);
            assert!(html.contains(&heading), "{heading} is missing");
        }
    }
    for name in doc["components"]["schemas"].as_object().unwrap().keys() {
        assert!(html.contains(&format!("id=\"schema-{name}\"")), "{name}");
    }
}

#[tokio::test]
async fn companies_crud_with_statistics_and_paging() {
    let env = start().await;
    for k in ["acme", "beta_co", "gamma"] {
        company(&env, k).await;
    }
    env.root(Method::POST, "/v1/companies", Some(json!({"key": "acme"})))
        .await
        .assert_admin_error(409);
    let list = env
        .root(
            Method::GET,
            "/v1/companies?filter=a&sort_field=key&sort_direction=DESC&limit=2&offset=0",
            None,
        )
        .await
        .json();
    // root's company `system` exists too, and its detail ("…administrator") matches `a`.
    assert_eq!(list["statistics"]["overall"]["total"], 4);
    assert_eq!(list["statistics"]["filter"]["total"], 4, "{list}");
    let keys: Vec<&str> = list["companies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["system", "gamma"]);
    let list = env
        .root(Method::GET, "/v1/companies?filter=ta&offset=0", None)
        .await
        .json();
    assert_eq!(list["statistics"]["filter"]["total"], 1, "{list}");
    assert_eq!(list["companies"][0]["key"], "beta_co");
    let got = env
        .root(Method::GET, "/v1/companies/acme", None)
        .await
        .json();
    assert_eq!(got, json!({"key": "acme", "detail": null, "enabled": true}));
    let put = env
        .root(
            Method::PUT,
            "/v1/companies/acme",
            Some(json!({"key": "acme_corp", "detail": "renamed"})),
        )
        .await;
    assert_eq!(put.status, 200);
    env.root(Method::GET, "/v1/companies/acme", None)
        .await
        .assert_admin_error(404);
    assert_eq!(
        env.root(Method::GET, "/v1/companies/acme_corp", None)
            .await
            .json()["detail"],
        "renamed"
    );
    let del = env.root(Method::DELETE, "/v1/companies/gamma", None).await;
    assert_eq!(del.status, 204);
    env.root(Method::DELETE, "/v1/companies/gamma", None)
        .await
        .assert_admin_error(404);
    // A company with users cannot go.
    user(&env, "ann", "beta_co", &["USER"]).await;
    env.root(Method::DELETE, "/v1/companies/beta_co", None)
        .await
        .assert_admin_error(400);
}

#[tokio::test]
async fn bad_company_and_list_input_is_400_naming_the_field_and_writes_nothing() {
    let env = start().await;
    let bodies = [
        (json!({"key": "ab"}), "key"),
        (json!({"key": "has-dash"}), "key"),
        (json!({"key": "okay", "detail": "x".repeat(1025)}), "detail"),
        (json!({"detail": "no key"}), "key"),
        (json!({"key": "okay", "colour": "red"}), "colour"),
        (json!(["not", "an", "object"]), "object"),
    ];
    for (body, field) in bodies {
        let msg = env
            .root(Method::POST, "/v1/companies", Some(body.clone()))
            .await
            .assert_admin_error(400);
        assert!(msg.contains(field), "{body}: {msg}");
    }
    let malformed = env
        .admin_call(
            Method::POST,
            "/v1/companies",
            Some(("Basic", &format!("{}:{}", ROOT.0, ROOT.1))),
            None,
        )
        .await;
    malformed.assert_admin_error(400);
    for q in [
        "offset=-1",
        "offset=10000001",
        "limit=0",
        "limit=10000001",
        "sort_field=password",
        "sort_direction=SIDEWAYS",
        "filter=",
    ] {
        env.root(Method::GET, &format!("/v1/companies?{q}"), None)
            .await
            .assert_admin_error(400);
    }
    let list = env.root(Method::GET, "/v1/companies", None).await.json();
    assert_eq!(list["statistics"]["overall"]["total"], 1, "only `system`");
}

#[tokio::test]
async fn users_crud_statistics_and_every_rejection() {
    let env = start().await;
    company(&env, "acme").await;
    let created = user(&env, "ann", "acme", &["ADMIN"]).await;
    assert!(created.get("password").is_none());
    assert_eq!(created["timezone"], 2);
    user(&env, "bob", "acme", &["USER"]).await;
    let put = env
        .root(
            Method::PUT,
            "/v1/users/bob",
            Some(json!({"username": "bob", "company_key": "acme", "roles": ["USER"], "enabled": false})),
        )
        .await;
    assert_eq!(put.status, 200);
    let list = env
        .root(
            Method::GET,
            "/v1/users?company_key=acme&user_group=BLOCKED",
            None,
        )
        .await
        .json();
    assert_eq!(
        list["statistics"]["overall"],
        json!({"total": 2, "active": 1, "blocked": 1, "admins": 1})
    );
    assert_eq!(list["statistics"]["filter"]["total"], 1);
    assert_eq!(list["users"][0]["username"], "bob");

    // Rejections: nothing is written.
    let dup = env
        .root(
            Method::POST,
            "/v1/users",
            Some(json!({"username": "ann", "company_key": "acme", "roles": []})),
        )
        .await;
    dup.assert_admin_error(409);
    let unknown = env
        .root(
            Method::POST,
            "/v1/users",
            Some(json!({"username": "cy", "company_key": "nowhere", "roles": []})),
        )
        .await
        .assert_admin_error(400);
    assert!(unknown.contains("nowhere"));
    let bad = [
        ("username", json!("x")),
        ("password", json!("1234")),
        ("email", json!("nope")),
        ("phone", json!("12")),
        ("roles", json!(["ROOT"])),
        ("roles", json!(["USER", "USER"])),
        ("timezone", json!(14)),
        ("enabled", json!("yes")),
    ];
    for (field, value) in bad {
        let mut body = json!({"username": "dee", "company_key": "acme", "roles": ["USER"]});
        body[field] = value.clone();
        let msg = env
            .root(Method::POST, "/v1/users", Some(body))
            .await
            .assert_admin_error(400);
        assert!(msg.contains(field), "{field}={value}: {msg}");
    }
    let rename = env
        .root(
            Method::PUT,
            "/v1/users/bob",
            Some(json!({"username": "robert", "company_key": "acme", "roles": []})),
        )
        .await
        .assert_admin_error(400);
    assert!(rename.contains("username"));
    let all = env.root(Method::GET, "/v1/users", None).await.json();
    assert_eq!(all["statistics"]["overall"]["total"], 3, "root, ann, bob");
    assert_eq!(
        env.root(Method::DELETE, "/v1/users/bob", None).await.status,
        204
    );
    env.root(Method::GET, "/v1/users/bob", None)
        .await
        .assert_admin_error(404);
}

#[tokio::test]
async fn keys_are_shown_once_work_on_the_proxy_and_die_when_revoked() {
    let env = start().await;
    company(&env, "northwind").await;
    user(&env, "ann", "northwind", &["PARTNER"]).await;
    let created = env
        .root(
            Method::POST,
            "/v1/users/ann/keys",
            Some(json!({"expires": null})),
        )
        .await
        .json();
    let secret = created["key"].as_str().unwrap().to_owned();
    assert!(secret.starts_with(created["prefix"].as_str().unwrap()));
    let listed = env.root(Method::GET, "/v1/users/ann/keys", None).await;
    assert!(
        !String::from_utf8_lossy(&listed.body).contains(&secret),
        "never listed"
    );
    assert_eq!(listed.json()["keys"][0]["id"], created["id"]);

    // The key (Bearer or X-API-Key) and the password (Basic) work on the proxy.
    let bearer = format!("Bearer {secret}");
    let r = env
        .send(Method::GET, "/companies", &[("authorization", &bearer)], "")
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let r = env
        .send(Method::GET, "/companies", &[("x-api-key", &secret)], "")
        .await;
    assert_eq!(r.status, 200);
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, basic("ann"))
    );
    let r = env
        .send(Method::GET, "/companies", &[("authorization", &basic)], "")
        .await;
    assert_eq!(r.status, 200);

    let id = created["id"].as_str().unwrap();
    assert_eq!(
        env.root(Method::DELETE, &format!("/v1/users/ann/keys/{id}"), None)
            .await
            .status,
        204
    );
    env.send(Method::GET, "/companies", &[("authorization", &bearer)], "")
        .await
        .assert_problem(401);
    env.admin_call(Method::GET, "/v1/users", Some(("Bearer", &secret)), None)
        .await
        .assert_admin_error(401);

    // An expired key (written straight to the store: no test waits for a clock).
    let old = "rk_expired_key_for_the_test";
    env.gw
        .store
        .create_key(
            rosetta::store::ApiKeyInfo {
                id: "old".into(),
                username: "ann".into(),
                prefix: old[..10].into(),
                created_ms: 0,
                expires_ms: Some(1),
                revoked: false,
            },
            rosetta::identity::sha256_hex(old),
        )
        .await
        .unwrap();
    env.send(
        Method::GET,
        "/companies",
        &[("authorization", &format!("Bearer {old}"))],
        "",
    )
    .await
    .assert_problem(401);
    env.root(
        Method::POST,
        "/v1/users/ann/keys",
        Some(json!({"expires": "2001-01-01T00:00:00Z"})),
    )
    .await
    .assert_admin_error(400);
}

#[tokio::test]
async fn disabled_users_and_blocked_companies_are_401() {
    let env = start().await;
    company(&env, "northwind").await;
    user(&env, "ann", "northwind", &["USER"]).await;
    let secret = key_for(&env, "ann").await;
    let bearer = format!("Bearer {secret}");
    assert_eq!(
        env.send(Method::GET, "/companies", &[("authorization", &bearer)], "")
            .await
            .status,
        200
    );
    env.root(
        Method::PUT,
        "/v1/companies/northwind",
        Some(json!({"key": "northwind", "enabled": false})),
    )
    .await;
    env.send(Method::GET, "/companies", &[("authorization", &bearer)], "")
        .await
        .assert_problem(401);
    env.root(
        Method::PUT,
        "/v1/companies/northwind",
        Some(json!({"key": "northwind", "enabled": true})),
    )
    .await;
    env.root(
        Method::PUT,
        "/v1/users/ann",
        Some(json!({"username": "ann", "company_key": "northwind", "roles": ["USER"], "enabled": false})),
    )
    .await;
    env.send(Method::GET, "/companies", &[("authorization", &bearer)], "")
        .await
        .assert_problem(401);
    // And on the admin listener: no credentials, wrong password.
    env.admin_call(Method::GET, "/v1/users", None, None)
        .await
        .assert_admin_error(401);
    env.admin_call(
        Method::GET,
        "/v1/users",
        Some(("Basic", "root:wrong")),
        None,
    )
    .await
    .assert_admin_error(401);
}

#[tokio::test]
async fn roles_decide_what_each_caller_may_do() {
    let env = start().await;
    company(&env, "acme").await;
    company(&env, "other").await;
    user(&env, "pat", "acme", &["PARTNER"]).await;
    user(&env, "aud", "other", &["AUDITOR"]).await;
    user(&env, "usr", "acme", &["USER"]).await;
    user(&env, "oli", "other", &["USER"]).await;
    let (pat, aud, usr) = (basic("pat"), basic("aud"), basic("usr"));

    // PARTNER: its own company's users and keys only.
    let mine = env
        .admin_call(Method::GET, "/v1/users", Some(("Basic", &pat)), None)
        .await
        .json();
    let names: Vec<&str> = mine["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["pat", "usr"]);
    env.admin_call(
        Method::GET,
        "/v1/users?company_key=other",
        Some(("Basic", &pat)),
        None,
    )
    .await
    .assert_admin_error(403);
    env.admin_call(Method::GET, "/v1/users/oli", Some(("Basic", &pat)), None)
        .await
        .assert_admin_error(403);
    let new_user = json!({"username": "newbie", "password": PASSWORD, "company_key": "acme", "roles": ["USER"]});
    assert_eq!(
        env.admin_call(
            Method::POST,
            "/v1/users",
            Some(("Basic", &pat)),
            Some(new_user)
        )
        .await
        .status,
        201
    );
    for body in [
        json!({"username": "x_other", "company_key": "other", "roles": ["USER"]}),
        json!({"username": "x_admin", "company_key": "acme", "roles": ["ADMIN"]}),
    ] {
        env.admin_call(Method::POST, "/v1/users", Some(("Basic", &pat)), Some(body))
            .await
            .assert_admin_error(403);
    }
    assert_eq!(
        env.admin_call(
            Method::POST,
            "/v1/users/usr/keys",
            Some(("Basic", &pat)),
            None
        )
        .await
        .status,
        201
    );
    env.admin_call(
        Method::POST,
        "/v1/users/oli/keys",
        Some(("Basic", &pat)),
        None,
    )
    .await
    .assert_admin_error(403);
    env.admin_call(Method::GET, "/v1/companies", Some(("Basic", &pat)), None)
        .await
        .assert_admin_error(403);
    env.admin_call(Method::GET, "/v1/audit", Some(("Basic", &pat)), None)
        .await
        .assert_admin_error(403);

    // AUDITOR: reads everything, writes nothing.
    for path in [
        "/v1/users",
        "/v1/companies",
        "/v1/audit",
        "/v1/users/pat/keys",
    ] {
        let r = env
            .admin_call(Method::GET, path, Some(("Basic", &aud)), None)
            .await;
        assert_eq!(r.status, 200, "{path}");
    }
    env.admin_call(
        Method::POST,
        "/v1/companies",
        Some(("Basic", &aud)),
        Some(json!({"key": "nope"})),
    )
    .await
    .assert_admin_error(403);
    env.admin_call(Method::DELETE, "/v1/users/usr", Some(("Basic", &aud)), None)
        .await
        .assert_admin_error(403);

    // USER: nothing.
    env.admin_call(Method::GET, "/v1/users", Some(("Basic", &usr)), None)
        .await
        .assert_admin_error(403);
    let users = env.root(Method::GET, "/v1/users", None).await.json();
    assert_eq!(
        users["statistics"]["overall"]["total"], 6,
        "root + 4 + newbie"
    );
}

#[tokio::test]
async fn every_proxied_request_is_one_audit_action() {
    let env = start().await;
    company(&env, "northwind").await;
    user(&env, "ann", "northwind", &["PARTNER"]).await;
    let secret = key_for(&env, "ann").await;
    let bearer = format!("Bearer {secret}");
    let c = rosetta::demo::DISTRIBUTOR_ID;
    for path in [
        "/companies".to_owned(),
        format!("/companies/{c}"),
        "/companies/nope-id".to_owned(),
    ] {
        env.send(Method::GET, &path, &[("authorization", &bearer)], "")
            .await;
    }
    env.gw.store.flush().await.unwrap();
    let audit = env
        .root(Method::GET, "/v1/audit?username=ann&sort_field=time", None)
        .await
        .json();
    assert_eq!(audit["statistics"]["filter"]["total"], 3, "{audit}");
    let a = &audit["actions"][1];
    assert_eq!(a["username"], "ann");
    assert_eq!(a["company_key"], "northwind");
    assert_eq!(a["tracedata"]["service"], "REDAPI_V1");
    assert_eq!(a["tracedata"]["operation"], "companies.get");
    assert_eq!(a["tracedata"]["client"], "northwind_|_ann");
    assert_eq!(a["method_group"], "READ");
    assert_eq!(a["targets"], json!([c]), "the company the read acted on");
    assert_eq!(
        audit["actions"][0]["targets"],
        json!([]),
        "`/companies` names none"
    );
    assert_eq!(
        audit["actions"][2]["targets"],
        json!(["nope-id"]),
        "a refused id too"
    );
    assert_eq!(a["statistics"]["points_count"], 1);
    assert!(
        a["statistics"]["duration"]
            .as_str()
            .unwrap()
            .starts_with("PT")
    );
    assert_eq!(audit["actions"][2]["status"], 404);
    let only = env
        .root(
            Method::GET,
            "/v1/audit?operation_id=companies.mine&company_key=northwind",
            None,
        )
        .await
        .json();
    assert_eq!(only["statistics"]["filter"]["total"], 1);
    let none = env
        .root(
            Method::GET,
            "/v1/audit?from=2001-01-01T00:00:00Z&to=2001-01-02T00:00:00Z",
            None,
        )
        .await
        .json();
    assert_eq!(none["statistics"]["filter"]["total"], 0);
    for q in ["from=yesterday", "username=a", "company_key=a-b", "limit=0"] {
        env.root(Method::GET, &format!("/v1/audit?{q}"), None)
            .await
            .assert_admin_error(400);
    }
    // The password appears nowhere: not in any admin answer, not in the audit.
    let everything = [
        env.root(Method::GET, "/v1/users", None).await,
        env.root(Method::GET, "/v1/users/ann", None).await,
        env.root(Method::GET, "/v1/audit", None).await,
    ];
    for r in everything {
        assert!(!String::from_utf8_lossy(&r.body).contains(PASSWORD));
    }
}

#[tokio::test]
async fn the_audit_filters_by_target_company_and_shows_every_actions_targets() {
    let env = start().await;
    // 2026-01-01T00:00:00Z, so the rows sit in a window of their own.
    let t0: i64 = 1_767_225_600_000;
    let rows: [(&str, &[&str]); 5] = [
        ("acme", &["P-1001"]),
        ("other", &["P-1001", "C-2002"]),
        ("acme", &[]),
        ("acme", &["P-10011"]),
        ("acme", &["C-2002"]),
    ];
    for (i, (company_key, targets)) in rows.iter().enumerate() {
        env.gw.store.record_audit(rosetta::store::AuditRow {
            time_ms: t0 + i as i64,
            username: "ann".into(),
            company_key: (*company_key).into(),
            tracecode: format!("tc-target-{i}").into(),
            server: "test".into(),
            service: "REDAPI_V1".into(),
            operation: "companies.get".into(),
            method_group: "READ".into(),
            points: 1,
            duration_ms: 2,
            status: 200,
            fingerprint: i as u64,
            targets: targets.iter().map(|t| Arc::from(*t)).collect(),
            ip: None,
        });
    }
    env.gw.store.flush().await.unwrap();
    let audit = |q: &str| {
        let env = &env;
        let path = format!(
            "/v1/audit?from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z&sort_field=time&{q}"
        );
        async move {
            let r = env.root(Method::GET, &path, None).await;
            assert_eq!(
                r.status,
                200,
                "{path}: {}",
                String::from_utf8_lossy(&r.body)
            );
            let doc = r.json();
            let got: Vec<(String, Value)> = doc["actions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| {
                    (
                        a["tracedata"]["code"].as_str().unwrap().to_owned(),
                        a["targets"].clone(),
                    )
                })
                .collect();
            assert_eq!(doc["statistics"]["filter"]["total"], got.len(), "{doc}");
            got
        }
    };
    let want = |items: &[(usize, Value)]| -> Vec<(String, Value)> {
        items
            .iter()
            .map(|(i, t)| (format!("tc-target-{i}"), t.clone()))
            .collect()
    };
    assert_eq!(
        audit("company=P-1001").await,
        want(&[(0, json!(["P-1001"])), (1, json!(["P-1001", "C-2002"]))]),
        "exact ids only: not P-10011"
    );
    assert_eq!(
        audit("company=C-2002").await,
        want(&[(1, json!(["P-1001", "C-2002"])), (4, json!(["C-2002"]))])
    );
    assert!(
        audit("company=P-100").await.is_empty(),
        "no substring match"
    );
    // With the caller's company filter, unchanged: both must hold.
    assert_eq!(
        audit("company=P-1001&company_key=acme").await,
        want(&[(0, json!(["P-1001"]))])
    );
    // Without the filter, every action, each with its targets (none is `[]`).
    let all = audit("").await;
    assert_eq!(all.len(), 5);
    assert_eq!(all[2], want(&[(2, json!([]))])[0]);
    assert_eq!(all[3].1, json!(["P-10011"]));
    // The parameter is 1 to 256 characters; a 400 names it.
    for bad in [
        "company=".to_owned(),
        format!("company={}", "x".repeat(257)),
    ] {
        let msg = env
            .root(Method::GET, &format!("/v1/audit?{bad}"), None)
            .await
            .assert_admin_error(400);
        assert!(msg.contains("company"), "{msg}");
    }
}

#[tokio::test]
async fn companies_users_keys_audit_and_captures_survive_a_restart() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let secret;
    let tracecode;
    {
        let env = start_in(dir.clone(), |_| {}).await;
        company(&env, "northwind").await;
        user(&env, "ann", "northwind", &["PARTNER"]).await;
        secret = key_for(&env, "ann").await;
        let r = env
            .send(
                Method::GET,
                "/companies",
                &[("authorization", &format!("Bearer {secret}"))],
                "",
            )
            .await;
        assert_eq!(r.status, 200);
        // An error is captured (the default mode).
        let failed = env
            .as_key(
                common::ADMIN_KEY,
                Method::GET,
                "/companies/no-such-company",
                None,
            )
            .await;
        assert_eq!(failed.status, 404);
        tracecode = failed.header("x-trace-code").unwrap().to_owned();
        env.stop().await;
    }
    let env = start_in(dir, |_| {}).await;
    let kept = env
        .root(
            Method::GET,
            &format!("/v1/tracecode/{tracecode}?data_flow_type=OUTPUT&data_flow_stage=1"),
            None,
        )
        .await;
    assert_eq!(kept.status, 200, "the capture survived");
    assert_eq!(kept.json()["status"], 404);
    let users = env.root(Method::GET, "/v1/users", None).await.json();
    assert_eq!(
        users["statistics"]["overall"]["total"], 2,
        "root was not created twice"
    );
    assert_eq!(
        env.root(Method::GET, "/v1/users/ann/keys", None)
            .await
            .json()["keys"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let r = env
        .send(
            Method::GET,
            "/companies",
            &[("authorization", &format!("Bearer {secret}"))],
            "",
        )
        .await;
    assert_eq!(r.status, 200, "the key still works");
    let audit = env
        .root(Method::GET, "/v1/audit?username=ann", None)
        .await
        .json();
    assert!(audit["statistics"]["filter"]["total"].as_u64().unwrap() >= 1);
}

/// One request on its own connection; `None` when the gateway did not answer (stopped).
async fn send_once(base: &str, path: &str, bearer: &str) -> Option<u16> {
    use http_body_util::{BodyExt, Empty};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<bytes::Bytes>>();
    let req = http::Request::get(format!("{base}{path}"))
        .header("authorization", bearer)
        .body(Empty::new())
        .unwrap();
    let resp = client.request(req).await.ok()?;
    let status = resp.status().as_u16();
    resp.into_body().collect().await.ok()?;
    Some(status)
}

#[tokio::test]
async fn a_graceful_stop_under_load_loses_no_audit_row() {
    let env = start().await;
    company(&env, "northwind").await;
    user(&env, "ann", "northwind", &["PARTNER"]).await;
    let secret = key_for(&env, "ann").await;
    // Slow upstream answers keep requests in flight when the stop begins.
    env.appdirect.faults().push(rosetta::demo::Fault {
        method: None,
        path_prefix: "/api".into(),
        kind: rosetta::demo::FaultKind::Delay(std::time::Duration::from_millis(150)),
        times: None,
    });
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let (base, bearer) = (env.base.clone(), format!("Bearer {secret}"));
        let path = format!("/companies/{}", rosetta::demo::PARTNER_ID);
        tasks.push(tokio::spawn(async move {
            send_once(&base, &path, &bearer).await
        }));
    }
    // Stop once the gateway is working on them (the upstream has seen requests).
    while env.appdirect_calls() == 0 {
        tokio::task::yield_now().await;
    }
    env.gateway.shutdown().await;
    env.gw.store.flush().await.unwrap();
    let mut answered = 0u64;
    for t in tasks {
        if t.await.unwrap().is_some() {
            answered += 1;
        }
    }
    let rows = env
        .gw
        .store
        .list_audit(rosetta::store::AuditQuery {
            offset: 0,
            limit: 1000,
            from_ms: 0,
            to_ms: i64::MAX,
            company_key: None,
            username: Some("ann".into()),
            service: None,
            operation: None,
            method_group: None,
            target: None,
            sort_field: None,
            descending: false,
        })
        .await
        .unwrap();
    assert!(answered > 0);
    assert_eq!(
        rows.filtered, answered,
        "one audit row per answered request"
    );
}

#[tokio::test]
async fn statistics_and_the_xlsx_report_count_points_and_unique_points() {
    let env = start().await;
    company(&env, "northwind").await;
    user(&env, "ann", "northwind", &["PARTNER"]).await;
    let secret = key_for(&env, "ann").await;
    let bearer = format!("Bearer {secret}");
    let c = format!("/companies/{}", rosetta::demo::DISTRIBUTOR_ID);
    for path in [c.as_str(), c.as_str(), "/companies"] {
        let r = env
            .send(Method::GET, path, &[("authorization", &bearer)], "")
            .await;
        assert_eq!(r.status, 200);
    }
    env.gw.store.flush().await.unwrap();
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let today = rosetta::clock::utc_now().date();
    let (from, to) = (
        today.previous_day().unwrap().format(fmt).unwrap(),
        today.next_day().unwrap().format(fmt).unwrap(),
    );
    let q = format!("from={from}&to={to}&username=ann");
    let stats = env
        .root(Method::GET, &format!("/v1/statistics?{q}"), None)
        .await
        .json();
    let ann = &stats["users"][0];
    assert_eq!(ann["username"], "ann", "{stats}");
    let method = &ann["dates"][0]["services"][0]["methods"][0];
    assert_eq!(ann["dates"][0]["services"][0]["service"], "REDAPI_V1");
    assert_eq!(method["method_group"], "READ");
    assert_eq!(method["points_per_day"], 3);
    assert_eq!(
        method["unique_points_per_day"], 2,
        "the same GET twice counts once"
    );

    let report = env
        .root(Method::GET, &format!("/v1/report?{q}"), None)
        .await;
    assert_eq!(report.status, 200);
    assert_eq!(
        report.header("content-type"),
        Some("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
    );
    use calamine::{Data, Reader, Xlsx, open_workbook_from_rs};
    let mut wb: Xlsx<_> =
        open_workbook_from_rs(std::io::Cursor::new(report.body.to_vec())).expect("an XLSX file");
    let sheet = wb
        .worksheet_range("statistics")
        .expect("the statistics sheet");
    assert_eq!(sheet.get((0, 0)), Some(&Data::String("username".into())));
    assert_eq!(sheet.get((1, 0)), Some(&Data::String("ann".into())));
    assert_eq!(sheet.get((1, 2)), Some(&Data::String("REDAPI_V1".into())));
    assert_eq!(sheet.get((1, 4)), Some(&Data::Float(3.0)));
    assert_eq!(sheet.get((1, 5)), Some(&Data::Float(2.0)));

    for bad in [
        "from=2024-13-01",
        "to=soon",
        "from=2024-02-01&to=2024-01-01",
        "from=2020-01-01&to=2024-01-01",
    ] {
        env.root(Method::GET, &format!("/v1/statistics?{bad}"), None)
            .await
            .assert_admin_error(400);
    }
    // A PARTNER of another company sees none of ann's points.
    company(&env, "other").await;
    user(&env, "pat", "other", &["PARTNER"]).await;
    let theirs = env
        .admin_call(
            Method::GET,
            &format!("/v1/statistics?from={from}&to={to}"),
            Some(("Basic", &basic("pat"))),
            None,
        )
        .await
        .json();
    assert_eq!(theirs, json!({"users": []}));
}

#[tokio::test]
async fn every_documented_route_is_served() {
    let env = start().await;
    company(&env, "acme").await;
    user(&env, "ann", "acme", &["USER"]).await;
    let doc = env
        .admin_call(Method::GET, "/v1/docs/openapi.json", None, None)
        .await
        .json();
    assert_eq!(doc["info"]["title"], "Rosetta admin API");
    for (method, template) in rosetta::admin::ROUTES {
        let path = template
            .replace("{key}", "acme")
            .replace("{username}", "ann")
            .replace("{id}", "no-such-key");
        let body = match *method {
            "POST" | "PUT" => Some(json!({})),
            _ => None,
        };
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let r = env.root(m, &path, body).await;
        let text = String::from_utf8_lossy(&r.body);
        assert!(
            !text.contains("no route matches"),
            "{method} {path} is documented but not routed: {text}"
        );
        assert!(r.status.as_u16() < 500, "{method} {path}: {text}");
    }
}

#[tokio::test]
async fn bodies_are_captured_by_tracecode_with_secrets_masked() {
    let env = common::start_with(|cfg| cfg.capture.mode = rosetta::config::CaptureMode::All).await;
    let body = "<platform><tenant><company>Captured Co</company><password>hunter2-secret</password><partner>nope</partner></tenant></platform>";
    // An ADMIN reaches every company: the unknown partner is the upstream's 404, its call
    // captured (tenancy would refuse it for a PARTNER before any call).
    let r = env
        .as_key(
            common::ADMIN_KEY,
            Method::POST,
            "/networking/rest/tenant",
            Some(("application/xml", body)),
        )
        .await;
    assert_eq!(r.status, 404, "unknown partner");
    let tc = r.header("x-trace-code").unwrap().to_owned();
    let ok = env
        .get(&format!(
            "/networking/rest/tenant/{}",
            rosetta::demo::PARTNER_ID
        ))
        .await;
    let ok_tc = ok.header("x-trace-code").unwrap().to_owned();
    env.gw.store.flush().await.unwrap();
    let get = |q: String| {
        let env = &env;
        async move {
            env.root(Method::GET, &format!("/v1/tracecode/{q}"), None)
                .await
        }
    };
    let input = get(format!("{tc}?data_flow_type=INPUT&data_flow_stage=0")).await;
    assert_eq!(input.status, 200);
    assert_eq!(input.header("content-type"), Some("application/xml"));
    let text = String::from_utf8_lossy(&input.body).into_owned();
    assert!(text.contains("<company>Captured Co</company>"), "{text}");
    assert!(!text.contains("hunter2-secret") && text.contains("<password>***</password>"));
    let as_json = get(format!("{tc}?data_flow_convert=JSON")).await.json();
    assert_eq!(as_json["platform"]["tenant"][0]["company"], "Captured Co");
    let sent = get(format!("{tc}?data_flow_type=INPUT&data_flow_stage=1"))
        .await
        .json();
    assert_eq!(sent[0]["method"], "GET");
    assert_eq!(sent[0]["path"], "/api/account/v2/companies/nope");
    let received = get(format!("{tc}?data_flow_type=OUTPUT&data_flow_stage=0"))
        .await
        .json();
    assert_eq!(received[0]["status"], 404);
    let out = get(format!("{tc}?data_flow_type=OUTPUT&data_flow_stage=1")).await;
    assert!(String::from_utf8_lossy(&out.body).contains("<code>-200</code>"));
    // A success is kept too in mode `all`; the XML answer converts to JSON.
    let ok_out = get(format!(
        "{ok_tc}?data_flow_type=OUTPUT&data_flow_stage=1&data_flow_convert=JSON"
    ))
    .await
    .json();
    assert_eq!(
        ok_out["platform"]["tenant"][0]["company"],
        "Contoso Partners"
    );
    // Bad parameters and unknown tracecodes.
    for q in [
        format!("{tc}?data_flow_type=SIDEWAYS"),
        format!("{tc}?data_flow_stage=4"),
        format!("{tc}?data_flow_convert=XLSX"),
        "bad%20code".to_owned(),
    ] {
        get(q).await.assert_admin_error(400);
    }
    get("0000000000000000".to_owned())
        .await
        .assert_admin_error(404);
    // Stages 2 and 3: the upstream requests and answers, whatever the flow named.
    for flow in ["INPUT", "OUTPUT"] {
        let requests = get(format!("{tc}?data_flow_type={flow}&data_flow_stage=2"))
            .await
            .json();
        assert_eq!(requests, sent, "{flow} 2");
        let answers = get(format!("{tc}?data_flow_type={flow}&data_flow_stage=3"))
            .await
            .json();
        assert_eq!(answers, received, "{flow} 3");
    }
    get(format!("{ok_tc}x?data_flow_stage=3"))
        .await
        .assert_admin_error(404);
    // Retention: everything older than now goes.
    let gone = env.gw.store.purge_captures(i64::MAX).await.unwrap();
    assert_eq!(gone, 8);
    get(tc.clone()).await.assert_admin_error(404);
}

#[tokio::test]
async fn malformed_bodies_are_captured_with_their_secrets_masked() {
    // The default mode keeps the failed requests, so the bodies that do not parse.
    let env = start().await;
    let secret = "never-captured-51e7";
    let xml = format!(
        "<platform><tenant api_key=\"{secret}\"><company>Cut Co</company><password>{secret}"
    );
    let lj = env.xml(Method::POST, "/networking/rest/tenant", &xml).await;
    assert_eq!(lj.status, 400);
    let auth = format!("Bearer {}", common::KEY);
    let v1 = env
        .send(
            Method::POST,
            &format!("/companies/{}/customers", rosetta::demo::PARTNER_ID),
            &[
                ("authorization", auth.as_str()),
                ("content-type", "application/json"),
            ],
            format!(
                r#"{{"companyName": "Cut Co", "adminPassword": "{secret}", "token": "{secret}"#
            ),
        )
        .await;
    assert_eq!(v1.status, 400);
    env.gw.store.flush().await.unwrap();
    for r in [lj, v1] {
        let tc = r.header("x-trace-code").unwrap().to_owned();
        let kept = env
            .root(
                Method::GET,
                &format!("/v1/tracecode/{tc}?data_flow_type=INPUT&data_flow_stage=0"),
                None,
            )
            .await;
        assert_eq!(kept.status, 200);
        let text = String::from_utf8_lossy(&kept.body);
        assert!(text.contains("Cut Co") && text.contains("***"), "{text}");
        assert!(!text.contains(secret), "{text}");
    }
}

#[tokio::test]
async fn by_default_only_errors_are_captured() {
    let env = start().await;
    let ok = env
        .get(&format!(
            "/networking/rest/tenant/{}",
            rosetta::demo::PARTNER_ID
        ))
        .await;
    let bad = env
        .as_key(
            common::ADMIN_KEY,
            Method::GET,
            "/networking/rest/tenant/nope",
            None,
        )
        .await;
    env.gw.store.flush().await.unwrap();
    let tc = |r: &common::Resp| r.header("x-trace-code").unwrap().to_owned();
    env.root(Method::GET, &format!("/v1/tracecode/{}", tc(&ok)), None)
        .await
        .assert_admin_error(404);
    let out = env
        .root(
            Method::GET,
            &format!(
                "/v1/tracecode/{}?data_flow_type=OUTPUT&data_flow_stage=1",
                tc(&bad)
            ),
            None,
        )
        .await;
    assert_eq!(out.status, 200);
    assert!(String::from_utf8_lossy(&out.body).contains("<code>-200</code>"));
}

#[tokio::test]
async fn quotas_base_and_dated_windows() {
    let env = start().await;
    company(&env, "acme").await;
    company(&env, "other").await;
    user(&env, "ann", "acme", &["USER"]).await;
    user(&env, "pat", "acme", &["PARTNER"]).await;
    user(&env, "oli", "other", &["PARTNER"]).await;
    let base = json!({"services": [{"service": "REDAPI_V1", "methods": [
        {"method_group": "READ", "points_per_request": 1, "points_per_day": 1500,
         "max_concurrent_execution": 5}]}]});
    let r = env
        .root(Method::PUT, "/v1/users/ann/quotas", Some(base.clone()))
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let window = json!({"services": [{"service": "REDAPI_V1", "methods": [{"method_group": "WRITE", "points_per_date_window": 10}]}]});
    let dated = "/v1/users/ann/quotas?from=2026-12-01&to=2026-12-31";
    let r = env.root(Method::PUT, dated, Some(window.clone())).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // Quota writes are ADMIN-only: not even the user's own company's PARTNER sets them.
    env.admin_call(
        Method::PUT,
        dated,
        Some(("Basic", &basic("pat"))),
        Some(base.clone()),
    )
    .await
    .assert_admin_error(403);
    let got = env
        .root(Method::GET, "/v1/users/ann/quotas", None)
        .await
        .json();
    assert_eq!(got["base"], base);
    assert_eq!(
        got["windows"],
        json!([{"from": "2026-12-01", "to": "2026-12-31", "services": window["services"]}])
    );
    // Another company's PARTNER may not; bad bodies and windows are 400 and change nothing.
    env.admin_call(
        Method::PUT,
        "/v1/users/ann/quotas",
        Some(("Basic", &basic("oli"))),
        Some(base.clone()),
    )
    .await
    .assert_admin_error(403);
    for (q, body) in [
        ("", json!({"services": []})),
        (
            "",
            json!({"services": [{"service": "X", "methods": [{"method_group": "READ", "points_per_day": -5}]}]}),
        ),
        ("?from=2026-12-31&to=2026-12-01", base.clone()),
        ("?from=2026-12-01", base.clone()),
        ("?from=tomorrow&to=2026-12-01", base.clone()),
    ] {
        env.root(Method::PUT, &format!("/v1/users/ann/quotas{q}"), Some(body))
            .await
            .assert_admin_error(400);
    }
    // A base quota has no window to count points_per_date_window over: refused, named.
    let windowless = json!({"services": [{"service": "REDAPI_V1", "methods": [
        {"method_group": "READ", "points_per_date_window": 10}]}]});
    let msg = env
        .root(Method::PUT, "/v1/users/ann/quotas", Some(windowless))
        .await
        .assert_admin_error(400);
    assert!(msg.contains("points_per_date_window"), "{msg}");
    assert_eq!(
        env.root(Method::GET, "/v1/users/ann/quotas", None)
            .await
            .json(),
        got,
        "nothing changed"
    );
    env.root(Method::PUT, "/v1/users/nobody/quotas", Some(base.clone()))
        .await
        .assert_admin_error(404);
    let del = env
        .root(
            Method::DELETE,
            "/v1/users/ann/quotas?from=2026-12-01&to=2026-12-31",
            None,
        )
        .await;
    assert_eq!(del.status, 204);
    assert_eq!(
        env.root(Method::GET, "/v1/users/ann/quotas", None)
            .await
            .json()["windows"],
        json!([])
    );
    assert_eq!(
        env.root(Method::DELETE, "/v1/users/ann/quotas", None)
            .await
            .status,
        204
    );
    env.root(Method::DELETE, "/v1/users/ann/quotas", None)
        .await
        .assert_admin_error(404);
}

#[tokio::test]
async fn metrics_count_requests_and_audit_rows() {
    let env = start().await;
    let before = env
        .admin_call(
            Method::GET,
            "/metrics",
            Some(("Bearer", common::ADMIN_KEY)),
            None,
        )
        .await;
    assert_eq!(
        before.header("content-type"),
        Some("text/plain; version=0.0.4")
    );
    env.get("/companies").await;
    env.gw.store.flush().await.unwrap();
    let text = String::from_utf8_lossy(
        &env.admin_call(
            Method::GET,
            "/metrics",
            Some(("Bearer", common::ADMIN_KEY)),
            None,
        )
        .await
        .body,
    )
    .into_owned();
    let value = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
    };
    assert!(value("rosetta_http_requests_total{class=\"2xx\"}") >= 1.0);
    assert!(value("rosetta_audit_rows_written_total") >= 1.0);
    assert!(value("rosetta_admin_requests_total") >= 1.0);
}
