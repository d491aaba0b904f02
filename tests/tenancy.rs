//! Tenant confinement and roles through the real server (DESIGN §8): every shipped route that
//! takes a company id, generated from the loaded packs, refuses a sibling's key with the 404
//! an unknown company gets (nothing sent upstream) and serves the ancestor's; lists hold only
//! what the caller reaches; roles by method group; reach changes seen at once on this node.
//!
//! The sample hierarchy (`rosetta::demo::data`): Northwind (1) above Contoso (2) and Fabrikam
//! (3); Alpine (10), Birch (11) and Cedar (12) under Contoso; Delta (13), Elm (14) and Granite
//! (15) under Fabrikam, Harbor (16) under Granite; Iris (17) and Juniper (18) under Northwind.

mod common;

use common::{
    ADMIN_KEY, AUDITOR_KEY, CONTOSO_KEY, Env, FABRIKAM_KEY, KEY, Resp, USER_KEY, start_with,
};
use http::Method;
use rosetta::demo::data::company_id;
use rosetta::demo::fusion::reseller_id;
use rosetta::demo::longjump::tenant_id;
use rosetta::mapping::pack::Route;
use rosetta::mapping::template::Segment;
use rosetta::tenancy::IdInput;
use serde_json::Value;

const XML: &str = "application/xml";
const JSON: &str = "application/json";

/// Reaches are kept for the whole test: the upstream logs then hold only the routes' calls.
async fn env() -> Env {
    start_with(|cfg| cfg.tenancy.reach_ttl = std::time::Duration::from_secs(600)).await
}

/// The id of company number `n` as the route's pack names it (AppDirect, LongJump or
/// Fusion ids).
fn id_in(route: &Route, n: u32) -> String {
    match route.pack.name.as_str() {
        "redapi-v1-longjump" => tenant_id(n),
        "redapi-v1-fusion" => reseller_id(n),
        _ => company_id(n),
    }
}

/// A request for `route` acting on company `n`: every declared company id set to it, other
/// path values made up, a body the route accepts.
fn request_for(route: &Route, n: u32) -> (Method, String, Option<(&'static str, String)>) {
    let target = id_in(route, n);
    // A reassign moves customer `n` to Contoso, its parent already (so the tree stays as it
    // is for the routes after it); out of Fabrikam's reach as much as `n` is.
    let two_ids = route.tenancy.ids.len() > 1;
    let mut path = String::new();
    for seg in &route.pattern.segments {
        path.push('/');
        match seg {
            Segment::Lit(s) => path.push_str(s),
            Segment::Var(v) => {
                let is_company = route.tenancy.ids.contains(&IdInput::Path(v.clone()));
                let value = match (is_company, two_ids && v == "companyId") {
                    (true, true) => id_in(route, 2),
                    (true, false) => target.clone(),
                    (false, _) => "s1".to_owned(),
                };
                path.push_str(&value);
            }
        }
    }
    if path.is_empty() {
        path.push('/');
    }
    let mut query: Vec<(String, String)> = Vec::new();
    for id in &route.tenancy.ids {
        if let IdInput::Query(name) = id {
            query.push((name.clone(), target.clone()));
        }
    }
    if !query.is_empty() {
        let q = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&query)
            .finish();
        path = format!("{path}?{q}");
    }
    let body_partner = route
        .tenancy
        .ids
        .iter()
        .any(|i| matches!(i, IdInput::Body(_)));
    let body = match (route.method.as_str(), route.pack.client_dialect.name()) {
        ("POST" | "PUT", "longjump") => {
            let partner = if body_partner {
                format!("<partner>{target}</partner>")
            } else {
                String::new()
            };
            Some((
                XML,
                format!(
                    "<platform><tenant><company>Matrix Co</company>{partner}</tenant></platform>"
                ),
            ))
        }
        // Every Fusion reseller is a partner: its pack takes no other type.
        ("POST" | "PUT" | "PATCH", _)
            if route.method != Method::PATCH && route.pack.name == "redapi-v1-fusion" =>
        {
            Some((
                JSON,
                r#"{"companyName": "Matrix Co", "type": "Partner"}"#.to_owned(),
            ))
        }
        ("POST" | "PUT" | "PATCH", _) if route.method != Method::PATCH => Some((
            JSON,
            r#"{"companyName": "Matrix Co", "type": "Customer"}"#.to_owned(),
        )),
        _ => None,
    };
    (route.method.clone(), path, body)
}

async fn send(env: &Env, key: &str, req: &(Method, String, Option<(&str, String)>)) -> Resp {
    let body = req.2.as_ref().map(|(ct, b)| (*ct, b.as_str()));
    env.as_key(key, req.0.clone(), &req.1, body).await
}

/// Asserts the 404 an unknown company gets, in the route's client dialect.
fn assert_not_found(route: &Route, resp: &Resp) {
    match route.pack.client_dialect.name() {
        "longjump" => {
            resp.assert_lj(404, -200);
        }
        _ => {
            resp.assert_problem(404);
        }
    }
}

/// Warms `key`'s reach in every pack (a read of a company it reaches), then forgets the calls.
async fn warm(env: &Env, key: &str, own: u32) {
    for path in [
        format!("/companies/{}", company_id(own)),
        format!("/networking/rest/tenant/{}", company_id(own)),
        format!("/lj/companies/{}", tenant_id(own)),
        format!("/fusion/companies/{}", reseller_id(own)),
    ] {
        let r = env.as_key(key, Method::GET, &path, None).await;
        assert_eq!(
            r.status,
            200,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    env.take_upstream_requests();
}

/// The routes that take a company id: generated from the loaded packs, so a new route joins.
fn id_routes(env: &Env) -> Vec<std::sync::Arc<Route>> {
    env.gw
        .catalog
        .routes
        .iter()
        .filter(|r| !r.tenancy.ids.is_empty())
        .cloned()
        .collect()
}

#[tokio::test]
async fn every_id_taking_route_refuses_a_sibling_and_serves_the_ancestor() {
    let env = env().await;
    let routes = id_routes(&env);
    let listing = env
        .gw
        .catalog
        .routes
        .iter()
        .filter(|r| r.tenancy.items.is_some())
        .count();
    // DESIGN §5's packs: 46 routes take a company id, 4 list companies (of 55).
    assert_eq!((routes.len(), listing), (46, 4));
    warm(&env, FABRIKAM_KEY, 3).await;
    warm(&env, KEY, 1).await;
    // Fabrikam's key asks for Alpine, a customer of its sibling Contoso: refused as unknown,
    // nothing sent upstream, for every route of every pack.
    for route in &routes {
        let req = request_for(route, 10);
        let resp = send(&env, FABRIKAM_KEY, &req).await;
        assert_not_found(route, &resp);
        let sent = env.take_upstream_requests();
        assert!(
            sent.is_empty(),
            "{} {}: {} upstream call(s) for an id out of reach: {:?}",
            route.id,
            req.1,
            sent.len(),
            sent.iter().map(|r| &r.path).collect::<Vec<_>>()
        );
    }
    // Northwind's key, two levels up, is served as before: each route reaches its upstream.
    // Deletes go last and each on a company of its own (a soft delete detaches it from the tree).
    let mut ordered = routes.clone();
    ordered.sort_by_key(|r| r.tenancy.changes_tree && r.method == Method::DELETE);
    for route in &ordered {
        let n = match (
            route.method == Method::DELETE && route.tenancy.changes_tree,
            route.pack.name.as_str(),
        ) {
            (true, "longjump-appdirect") => 12,
            (true, _) => 11,
            (false, _) => 10,
        };
        let req = request_for(route, n);
        let resp = send(&env, KEY, &req).await;
        let sent = env.take_upstream_requests();
        // A route its upstream cannot serve (Fusion's reassign) refuses after the ids are
        // checked, with nothing sent.
        if route.plan.unsupported.is_some() {
            resp.assert_problem(501);
            assert!(sent.is_empty(), "{}", route.id);
            continue;
        }
        assert!(
            !sent.is_empty(),
            "{} {}: nothing reached the upstream ({}: {})",
            route.id,
            req.1,
            resp.status,
            String::from_utf8_lossy(&resp.body)
        );
        assert_ne!(resp.status, 403, "{}", route.id);
        if route.method == Method::GET {
            assert!(
                resp.status.is_success(),
                "{} {}: {} {}",
                route.id,
                req.1,
                resp.status,
                String::from_utf8_lossy(&resp.body)
            );
        }
    }
}

/// The companies of the sample whose name contains `needle` (case-insensitive), by number.
fn named(needle: &str, among: &[u32]) -> Vec<u32> {
    rosetta::demo::data::company_rows()
        .into_iter()
        .filter(|c| among.contains(&c.0) && c.1.to_lowercase().contains(needle))
        .map(|c| c.0)
        .collect()
}

fn ids_of(doc: &Value, field: &str) -> Vec<String> {
    doc.as_array()
        .map(|a| {
            a.iter()
                .map(|c| c[field].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn searches_hold_only_what_the_caller_reaches_with_totals_and_pages_to_match() {
    let env = env().await;
    let contoso = [2, 10, 11, 12];
    let expected = named("a", &contoso);
    assert_eq!(
        expected.len(),
        3,
        "Contoso Partners, Alpine Dental, Cedar Law"
    );
    // Northwind reaches more of them: the filter is really the reach.
    assert!(named("a", &[1, 2, 3, 10, 11, 12, 13, 14, 15, 16, 17, 18]).len() > 3);
    for (base, id) in [
        ("/companies/search", company_id as fn(u32) -> String),
        ("/lj/companies/search", tenant_id as fn(u32) -> String),
        ("/fusion/companies/search", reseller_id as fn(u32) -> String),
    ] {
        let mut seen = Vec::new();
        let mut token: Option<String> = None;
        for page in 1..=2 {
            let mut q = vec![
                ("search", "a".to_owned()),
                ("maxResults", "2".to_owned()),
                ("shouldReturnCount", "true".to_owned()),
            ];
            if let Some(t) = &token {
                q.push(("pageToken", t.clone()));
            }
            let pairs: Vec<(&str, &str)> = q.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let r = env
                .as_key(
                    CONTOSO_KEY,
                    Method::GET,
                    &common::with_query(base, &pairs),
                    None,
                )
                .await;
            assert_eq!(
                r.status,
                200,
                "{base}: {}",
                String::from_utf8_lossy(&r.body)
            );
            let doc = r.json();
            assert_eq!(doc["totalCount"], 3, "{base} page {page}: {doc}");
            let ids = ids_of(&doc["results"], "companyId");
            assert_eq!(ids.len(), if page == 1 { 2 } else { 1 }, "{base}: {doc}");
            seen.extend(ids);
            token = doc["nextPageToken"].as_str().map(str::to_owned);
            assert_eq!(token.is_some(), page == 1, "{base}: {doc}");
        }
        let mut want: Vec<String> = expected.iter().map(|n| id(*n)).collect();
        want.sort();
        seen.sort();
        assert_eq!(seen, want, "{base}");
    }
    // LongJump's tenant search, its total and its pages.
    let path = common::with_query(
        "/networking/rest/tenant",
        &[
            ("filter", "company contains 'a'"),
            ("getTotalRecordCount", "true"),
            ("pageSize", "2"),
            ("fieldList", "id,company"),
        ],
    );
    let doc = env
        .as_key(CONTOSO_KEY, Method::GET, &path, None)
        .await
        .assert_lj(200, 0);
    assert_eq!(doc["totalRecordCount"], "3", "{doc}");
    assert_eq!(doc["tenant"].as_array().map(Vec::len), Some(2), "{doc}");
    let doc = env
        .as_key(CONTOSO_KEY, Method::GET, &format!("{path}&page=1"), None)
        .await
        .assert_lj(200, 0);
    let last = ids_of(&doc["tenant"], "id");
    assert_eq!(last.len(), 1, "{doc}");
    assert!(expected.iter().any(|n| company_id(*n) == last[0]));
    // A key whose company the upstream does not know reaches nothing: empty, not an error.
    let r = env
        .as_key(
            common::OTHER_KEY,
            Method::GET,
            "/companies/search?search=a&shouldReturnCount=true",
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["totalCount"], 0);
    // An ADMIN reaches everything.
    let r = env
        .as_key(
            ADMIN_KEY,
            Method::GET,
            "/companies/search?search=a&shouldReturnCount=true&maxResults=100",
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["totalCount"],
        named("a", &[1, 2, 3, 10, 11, 12, 13, 14, 15, 16, 17, 18, 90]).len()
    );
}

#[tokio::test]
async fn auditors_and_users_read_but_never_write_in_either_dialect() {
    let env = env().await;
    let alpine = company_id(10);
    for key in [AUDITOR_KEY, USER_KEY] {
        let r = env
            .as_key(key, Method::GET, &format!("/companies/{alpine}"), None)
            .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        env.take_upstream_requests();
        let r = env
            .as_key(
                key,
                Method::PATCH,
                &format!("/companies/{alpine}/disable"),
                None,
            )
            .await;
        let doc = r.assert_problem(403);
        assert!(
            doc["detail"].as_str().unwrap_or("").contains("PARTNER"),
            "names the role needed: {doc}"
        );
        let r = env
            .as_key(
                key,
                Method::PUT,
                &format!("/networking/rest/tenant/{alpine}"),
                Some((
                    XML,
                    "<platform><tenant><company>X</company></tenant></platform>",
                )),
            )
            .await;
        r.assert_lj(403, -850);
        let r = env
            .as_key(
                key,
                Method::DELETE,
                &format!("/lj/companies/{}", tenant_id(10)),
                None,
            )
            .await;
        r.assert_problem(403);
        assert!(
            env.take_upstream_requests().is_empty(),
            "nothing sent for a refused write"
        );
    }
    // A PARTNER writes inside its reach.
    let r = env
        .as_key(
            CONTOSO_KEY,
            Method::PATCH,
            &format!("/companies/{alpine}/disable"),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

#[tokio::test]
async fn a_reassign_moves_reach_at_once_on_this_node() {
    let env = env().await;
    let alpine = company_id(10);
    let get = |key: &'static str| {
        let path = format!("/companies/{alpine}");
        let env = &env;
        async move {
            env.as_key(key, Method::GET, &path, None)
                .await
                .status
                .as_u16()
        }
    };
    assert_eq!(get(CONTOSO_KEY).await, 200);
    assert_eq!(get(FABRIKAM_KEY).await, 404);
    // Northwind moves Alpine from Contoso to Fabrikam.
    let r = env
        .as_key(
            KEY,
            Method::PATCH,
            &format!("/companies/{}/customers/{alpine}/reassign", company_id(3)),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // Both cached reaches were dropped by the write, though their TTL is ten minutes.
    assert_eq!(get(CONTOSO_KEY).await, 404);
    assert_eq!(get(FABRIKAM_KEY).await, 200);
    // The LongJump pack on the same upstream sees it too.
    let r = env
        .as_key(
            CONTOSO_KEY,
            Method::GET,
            &format!("/networking/rest/tenant/{alpine}"),
            None,
        )
        .await;
    r.assert_lj(404, -200);
}

/// The reseller association the AppDirect sample holds for `customer`, if any.
async fn parent_of(env: &Env, customer: &str) -> Option<String> {
    let r = env
        .as_key(
            ADMIN_KEY,
            Method::GET,
            &format!("/companies/{customer}"),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()["parentCompanyId"].as_str().map(str::to_owned)
}

/// A LongJump tenant created with `key`.
async fn lj_create(env: &Env, key: &str, body: &str) -> Resp {
    env.as_key(
        key,
        Method::POST,
        "/networking/rest/tenant",
        Some((XML, body)),
    )
    .await
}

#[tokio::test]
async fn a_longjump_create_without_partner_lands_under_the_callers_root() {
    let env = env().await;
    let body = "<platform><tenant><company>Kestrel Labs</company></tenant></platform>";
    let doc = lj_create(&env, CONTOSO_KEY, body).await.assert_lj(200, 0);
    let id = doc["message"]["id"].as_str().unwrap().to_owned();
    assert_eq!(parent_of(&env, &id).await, Some(company_id(2)));
    // Its creator reaches it at once (the create dropped Contoso's cached reach).
    let r = env
        .as_key(
            CONTOSO_KEY,
            Method::GET,
            &format!("/networking/rest/tenant/{id}"),
            None,
        )
        .await;
    r.assert_lj(200, 0);
    // An ADMIN's stays unattached.
    let doc = lj_create(&env, ADMIN_KEY, body).await.assert_lj(200, 0);
    let id = doc["message"]["id"].as_str().unwrap().to_owned();
    assert_eq!(parent_of(&env, &id).await, None);
    // A partner out of reach: nothing created.
    let before = env.appdirect.log().count(&Method::POST, "/api");
    let outside = company_id(13);
    let r = lj_create(
        &env,
        CONTOSO_KEY,
        &format!(
            "<platform><tenant><company>X</company><partner>{outside}</partner></tenant></platform>"
        ),
    )
    .await;
    r.assert_lj(404, -200);
    assert_eq!(env.appdirect.log().count(&Method::POST, "/api"), before);
    // A partner given as something else than an id is a bad request.
    let r = lj_create(
        &env,
        CONTOSO_KEY,
        "<platform><tenant><company>X</company><partner><id>1</id></partner></tenant></platform>",
    )
    .await;
    r.assert_lj(400, -300);
}

#[tokio::test]
async fn only_a_partner_of_an_ancestor_changes_whether_a_company_is_a_partner() {
    let env = env().await;
    let promote = "<platform><tenant><is_partner>1</is_partner></tenant></platform>";
    // Contoso's key cannot promote (or demote) Contoso itself.
    let r = env
        .as_key(
            CONTOSO_KEY,
            Method::PUT,
            &format!("/networking/rest/tenant/{}", company_id(2)),
            Some((XML, promote)),
        )
        .await;
    r.assert_lj(403, -850);
    assert!(
        env.take_upstream_requests()
            .iter()
            .all(|r| r.method == Method::GET)
    );
    // It can promote a customer below it; and change its own company's other fields.
    let r = env
        .as_key(
            CONTOSO_KEY,
            Method::PUT,
            &format!("/networking/rest/tenant/{}", company_id(10)),
            Some((XML, promote)),
        )
        .await;
    r.assert_lj(200, 0);
    let r = env
        .as_key(
            CONTOSO_KEY,
            Method::PUT,
            &format!("/networking/rest/tenant/{}", company_id(2)),
            Some((
                XML,
                "<platform><tenant><phone>555</phone></tenant></platform>",
            )),
        )
        .await;
    r.assert_lj(200, 0);
}

#[tokio::test]
async fn a_query_company_id_is_checked_and_may_not_be_doubled() {
    let env = env().await;
    let users = |id: &str| format!("/users/list?companyId={id}");
    let r = env
        .as_key(CONTOSO_KEY, Method::GET, &users(&company_id(10)), None)
        .await;
    assert_eq!(r.status, 200);
    env.take_upstream_requests();
    env.as_key(CONTOSO_KEY, Method::GET, &users(&company_id(13)), None)
        .await
        .assert_problem(404);
    // The first value in reach, a second one not: refused before anything is sent.
    let doubled = format!("{}&companyId={}", users(&company_id(10)), company_id(13));
    let doc = env
        .as_key(CONTOSO_KEY, Method::GET, &doubled, None)
        .await
        .assert_problem(400);
    assert!(
        doc["detail"].as_str().unwrap().contains("companyId"),
        "{doc}"
    );
    assert!(env.take_upstream_requests().is_empty());
}

#[tokio::test]
async fn audit_rows_name_the_companies_acted_on() {
    let env = env().await;
    let alpine = company_id(10);
    assert_eq!(
        env.as_key(
            CONTOSO_KEY,
            Method::GET,
            &format!("/companies/{alpine}"),
            None
        )
        .await
        .status,
        200
    );
    env.as_key(
        FABRIKAM_KEY,
        Method::GET,
        &format!("/companies/{alpine}"),
        None,
    )
    .await
    .assert_problem(404);
    let r = lj_create(
        &env,
        KEY,
        &format!(
            "<platform><tenant><company>Y</company><partner>{alpine}</partner></tenant></platform>"
        ),
    )
    .await;
    r.assert_lj(200, 0);
    env.gw.store.flush().await.unwrap();
    let r = env
        .root(
            Method::GET,
            &format!("/v1/audit?company={alpine}&sort_direction=ASC"),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let doc = r.json();
    let actions = doc["actions"].as_array().expect("actions");
    let who: Vec<(String, i64)> = actions
        .iter()
        .map(|a| {
            (
                a["username"].as_str().unwrap_or("").to_owned(),
                a["status"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        who,
        [
            ("user-contoso".to_owned(), 200),
            ("user-fabrikam".to_owned(), 404),
            ("user-northwind".to_owned(), 200),
        ],
        "{doc}"
    );
    for a in actions {
        assert_eq!(a["targets"], serde_json::json!([alpine]), "{a}");
    }
}

#[tokio::test]
async fn links_name_the_gateway_never_the_clients_host() {
    let env = env().await;
    let path = format!("/networking/rest/tenant/{}", company_id(10));
    let r = env
        .send(
            Method::GET,
            &path,
            &[
                ("authorization", &format!("Bearer {KEY}")),
                ("host", "evil.example"),
            ],
            bytes::Bytes::new(),
        )
        .await;
    let doc = r.assert_lj(200, 0);
    let uri = doc["tenant"][0]["partner"]["@uri"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        uri,
        format!("{}/networking/rest/tenant/{}", env.base, company_id(2)),
        "the listener's own address"
    );
    // The cached answer another caller gets carries the same.
    let r = env.as_key(KEY, Method::GET, &path, None).await;
    assert_eq!(
        r.header("cache-status")
            .map(|s| s.starts_with("rosetta; hit")),
        Some(true)
    );
    assert!(!String::from_utf8_lossy(&r.body).contains("evil.example"));
    // With server.public_url set, that is the base.
    let env =
        start_with(|cfg| cfg.server.public_url = Some("https://api.example.com/".into())).await;
    let doc = env
        .as_key(KEY, Method::GET, &path, None)
        .await
        .assert_lj(200, 0);
    assert_eq!(
        doc["tenant"][0]["partner"]["@uri"],
        format!(
            "https://api.example.com/networking/rest/tenant/{}",
            company_id(2)
        )
    );
}
