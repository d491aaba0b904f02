//! Pack `redapi-v1-fusion` end to end: a V1 JSON client under `/fusion`, Rosetta, the Fusion
//! DRaaS sample (seed 004) behind its bearer token. The sample pages with real `next` tokens,
//! so these tests follow them through the V1 page token and check what reached Fusion.

mod common;

use common::{ADMIN_KEY, CONTOSO_KEY, OTHER_KEY, assert_shape, start, with_query};
use http::Method;
use rosetta::demo::fusion::{DRAAS_INSTANCE, GROUP_ID, reseller_id};
use rosetta::demo::{Fault, FaultKind};
use rosetta::dialect::paging::V1Token;
use serde_json::{Value, json};

const NULLABLE: &[&str] = &["parentCompanyId", "nextPageToken"];

fn company() -> Value {
    json!({"companyId": "s", "companyName": "s", "isEnabled": true, "type": "Partner", "parentCompanyId": "s"})
}

fn resellers() -> String {
    format!("/api/v01/draas/{DRAAS_INSTANCE}/resellers")
}

fn names(doc: &Value) -> Vec<String> {
    doc["results"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| c["companyName"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The query of each request the Fusion sample received, parsed.
fn fusion_queries(env: &common::Env) -> Vec<(String, Vec<(String, String)>)> {
    env.fusion
        .log()
        .requests()
        .iter()
        .map(|r| {
            (
                format!("{} {}", r.method, r.path),
                form_urlencoded::parse(r.query.as_bytes())
                    .into_owned()
                    .collect(),
            )
        })
        .collect()
}

fn param<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
    q.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn my_company_is_the_reseller_whose_billing_id_is_my_key() {
    let env = start().await;
    let doc = env.get("/fusion/companies").await;
    assert_eq!(doc.status, 200, "{}", String::from_utf8_lossy(&doc.body));
    assert_eq!(
        doc.json(),
        json!({"companyId": reseller_id(1), "companyName": "Northwind Distribution", "isEnabled": true, "type": "Partner", "parentCompanyId": null})
    );
    assert_shape(&doc.json(), &company(), NULLABLE);
    // Every call carried the bearer token and the configured instance.
    for r in env.fusion.log().requests() {
        assert!(r.path.starts_with(&resellers()), "{}", r.path);
        assert!(
            r.headers
                .iter()
                .any(|(k, v)| k == "authorization" && v.starts_with("Bearer ")),
            "{r:?}"
        );
    }
    // A key whose company is no reseller: 404 problem; the root was searched under the group.
    let resp = env
        .send(
            Method::GET,
            "/fusion/companies",
            &[("authorization", &format!("Bearer {OTHER_KEY}"))],
            "",
        )
        .await;
    resp.assert_problem(404);
    let qs = fusion_queries(&env);
    assert!(
        qs.iter()
            .any(|(_, q)| param(q, "parent") == Some(GROUP_ID)
                && param(q, "search") == Some("nobody")),
        "{qs:?}"
    );
}

#[tokio::test]
async fn one_company_suspended_and_out_of_reach() {
    let env = start().await;
    let c = env
        .get(&format!("/fusion/companies/{}", reseller_id(16)))
        .await;
    assert_eq!(
        c.json(),
        json!({"companyId": reseller_id(16), "companyName": "Harbor Clinic", "isEnabled": true, "type": "Partner", "parentCompanyId": reseller_id(15)})
    );
    let c = env
        .get(&format!("/fusion/companies/{}", reseller_id(12)))
        .await;
    assert_eq!(c.json()["isEnabled"], false, "Cedar Law is suspended");
    env.fusion.log().clear();
    // Outside Corp is no reseller below Northwind: 404 before anything is sent.
    env.get(&format!("/fusion/companies/{}", reseller_id(90)))
        .await
        .assert_problem(404);
    assert!(env.fusion.log().requests().is_empty());
}

#[tokio::test]
async fn customers_page_through_fusions_own_next_tokens() {
    let env = start().await;
    let contoso = reseller_id(2);
    let path = format!("/fusion/companies/{contoso}/customers");
    let mut url = with_query(&path, &[("maxResults", "1"), ("shouldReturnCount", "true")]);
    let mut seen = Vec::new();
    let mut fusion_tokens = Vec::new();
    for page in 1..=4 {
        env.fusion.log().clear();
        let r = env.get(&url).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let doc = r.json();
        assert_shape(
            &doc,
            &json!({"results": [company()], "totalCount": 3}),
            NULLABLE,
        );
        assert_eq!(doc["totalCount"], 3, "totalCount is Fusion's `results`");
        seen.extend(names(&doc));
        // What Fusion was asked: page_size, and from page 2 on its own token as it issued it.
        let qs = fusion_queries(&env);
        let (_, list) = qs
            .iter()
            .find(|(m, _)| m == &format!("GET {}", resellers()))
            .expect("the list was asked for");
        assert_eq!(param(list, "parent"), Some(contoso.as_str()));
        assert_eq!(param(list, "page_size"), Some("1"));
        assert_eq!(
            param(list, "next").map(str::to_owned),
            fusion_tokens.last().cloned(),
            "page {page}: the token Fusion issued goes back untouched"
        );
        match doc["nextPageToken"].as_str() {
            Some(t) => {
                let token = V1Token::decode(t).unwrap();
                assert_eq!(token.page, page + 1);
                fusion_tokens.push(token.next.expect("Fusion's token inside the V1 one"));
                url = with_query(&path, &[("pageToken", t), ("shouldReturnCount", "true")]);
            }
            None => {
                assert_eq!(page, 3, "three pages of one");
                break;
            }
        }
    }
    assert_eq!(seen, ["Alpine Dental", "Birch Logistics", "Cedar Law"]);
    assert_eq!(fusion_tokens.len(), 2);
}

#[tokio::test]
async fn customers_search_and_order_are_fusions() {
    let env = start().await;
    let northwind = reseller_id(1);
    let path = format!("/fusion/companies/{northwind}/customers");
    let doc = env
        .get(&with_query(&path, &[("orderBy", "desc")]))
        .await
        .json();
    assert_eq!(
        names(&doc),
        [
            "Juniper Hotels",
            "Iris Florists",
            "Fabrikam Solutions",
            "Contoso Partners"
        ]
    );
    let qs = fusion_queries(&env);
    assert!(
        qs.iter()
            .any(|(_, q)| param(q, "sort") == Some("name") && param(q, "dir") == Some("desc")),
        "{qs:?}"
    );
    let doc = env
        .get(&with_query(&path, &[("search", "ris")]))
        .await
        .json();
    assert_eq!(names(&doc), ["Iris Florists"]);
    // A reseller with no customers: Fusion's 404 for an empty list is an empty page.
    let doc = env
        .get(&format!(
            "/fusion/companies/{}/customers?shouldReturnCount=true",
            reseller_id(16)
        ))
        .await;
    assert_eq!(doc.status, 200);
    assert_eq!(doc.json()["results"], json!([]));
    assert_eq!(doc.json()["totalCount"], 0);
}

#[tokio::test]
async fn a_forged_or_corrupted_page_token_is_refused_and_nothing_is_sent() {
    let env = start().await;
    let path = format!("/fusion/companies/{}/customers", reseller_id(2));
    let forged = V1Token {
        page: 2,
        page_size: 1,
        total_count: 3,
        next: None,
    }
    .encode();
    let odd = V1Token {
        page: 2,
        page_size: 1,
        total_count: 3,
        next: Some("x&parent=elsewhere".into()),
    }
    .encode();
    for token in [forged.as_str(), odd.as_str(), "%%%not-base64", "e30"] {
        env.fusion.log().clear();
        let r = env.get(&with_query(&path, &[("pageToken", token)])).await;
        let doc = r.assert_problem(400);
        assert!(
            doc["detail"].as_str().unwrap().contains("pageToken"),
            "{doc}"
        );
        assert!(env.fusion.log().requests().is_empty(), "{token}");
    }
}

#[tokio::test]
async fn fusion_refusals_are_v1_problems() {
    let env = start().await;
    let id = reseller_id(2);
    env.fusion.faults().push(Fault {
        method: Some(Method::GET),
        path_prefix: format!("{}/{id}", resellers()),
        kind: FaultKind::Status(
            403,
            json!({"code": "FORBIDDEN", "message": "no resellers.instance.read"}),
        ),
        times: Some(1),
    });
    let doc = env
        .get(&format!("/fusion/companies/{id}"))
        .await
        .assert_problem(403);
    assert!(
        doc["detail"]
            .as_str()
            .unwrap()
            .contains("resellers.instance.read"),
        "{doc}"
    );
    env.fusion.faults().push(Fault {
        method: Some(Method::GET),
        path_prefix: format!("{}/{id}", resellers()),
        kind: FaultKind::Status(
            404,
            json!({"code": "NOT_FOUND", "message": "No reseller found"}),
        ),
        times: Some(1),
    });
    env.get(&format!("/fusion/companies/{id}"))
        .await
        .assert_problem(404);
}

#[tokio::test]
async fn the_transitive_walk_finds_every_reseller_below() {
    let env = start().await;
    let doc = env
        .get(&format!(
            "/fusion/companies/{}/customers/transitive?shouldReturnCount=true&orderBy=asc",
            reseller_id(3)
        ))
        .await
        .json();
    assert_eq!(
        names(&doc),
        [
            "Delta Bakery",
            "Elm Architects",
            "Granite IT",
            "Harbor Clinic"
        ]
    );
    assert_eq!(doc["totalCount"], 4);
    // Search across the caller's whole tree.
    let doc = env
        .get("/fusion/companies/search?search=clinic")
        .await
        .json();
    assert_eq!(names(&doc), ["Harbor Clinic"]);
    // A caller who reaches everything: Fusion's own search over the group, one call.
    env.fusion.log().clear();
    let r = env
        .as_key(
            ADMIN_KEY,
            Method::GET,
            "/fusion/companies/search?search=a&shouldReturnCount=true&maxResults=100",
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let all = rosetta::demo::data::company_rows()
        .into_iter()
        .filter(|c| c.1.to_lowercase().contains('a'))
        .count();
    assert_eq!(r.json()["totalCount"], all);
    assert_eq!(env.fusion.log().requests().len(), 1);
}

#[tokio::test]
async fn the_transitive_walk_is_cycle_safe() {
    let env = start().await;
    let (a, b) = (reseller_id(3), reseller_id(13));
    // Every list answers the same two resellers, the walked company among them: a cycle.
    env.fusion.faults().push(Fault {
        method: Some(Method::GET),
        path_prefix: resellers(),
        kind: FaultKind::Status(
            200,
            json!({"results": 2, "pages": 1, "page": 1, "resellers": [
                {"uuid": a, "name": "Fabrikam Solutions", "billingId": "fabrikam", "status": "active"},
                {"uuid": b, "name": "Delta Bakery", "billingId": "delta", "status": "active"}]}),
        ),
        times: None,
    });
    let r = env
        .get(&format!(
            "/fusion/companies/{a}/customers/transitive?shouldReturnCount=true"
        ))
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let lists = env
        .fusion
        .log()
        .requests()
        .iter()
        .filter(|r| r.path == resellers())
        .count();
    assert_eq!(
        lists, 2,
        "each reseller listed once, however the answers loop"
    );
}

#[tokio::test]
async fn create_reads_the_new_reseller_back() {
    let env = start().await;
    let parent = reseller_id(2);
    let r = env
        .call(
            Method::POST,
            &format!("/fusion/companies/{parent}/customers"),
            Some(json!({"companyName": "Quartz Hosting", "type": "Partner"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let doc = r.json();
    assert_shape(&doc, &company(), NULLABLE);
    assert_eq!(doc["companyName"], "Quartz Hosting");
    assert_eq!(doc["parentCompanyId"], json!(parent));
    let sent = env
        .fusion
        .log()
        .requests()
        .into_iter()
        .find(|r| r.method == Method::POST)
        .unwrap();
    let body: Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(
        body,
        json!({"name": "Quartz Hosting", "owner": {"type": "reseller", "uuid": parent}})
    );
    // The new reseller is in the caller's reach at once, and among the parent's customers.
    let id = doc["companyId"].as_str().unwrap();
    assert_eq!(
        env.get(&format!("/fusion/companies/{id}")).await.status,
        200
    );
    // A body that is no CreateCompanyRequest: 400, nothing sent.
    env.fusion.log().clear();
    env.call(
        Method::POST,
        &format!("/fusion/companies/{parent}/customers"),
        Some(json!({"type": "Partner"})),
    )
    .await
    .assert_problem(400);
    assert!(env.fusion.log().requests().is_empty());
}

#[tokio::test]
async fn disable_and_enable_set_the_suspension_profile() {
    let env = start().await;
    let id = reseller_id(11);
    let r = env
        .call(
            Method::PATCH,
            &format!("/fusion/companies/{id}/disable"),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let put = env.fusion.log().requests().pop().unwrap();
    assert_eq!(put.method, Method::PUT);
    assert_eq!(put.path, format!("{}/{id}/suspension_profile", resellers()));
    assert_eq!(
        serde_json::from_slice::<Value>(&put.body).unwrap(),
        json!({"suspensionProfileId": 1})
    );
    let doc = env.get(&format!("/fusion/companies/{id}")).await.json();
    assert_eq!(doc["isEnabled"], false);
    env.call(
        Method::PATCH,
        &format!("/fusion/companies/{id}/enable"),
        None,
    )
    .await;
    let doc = env.get(&format!("/fusion/companies/{id}")).await.json();
    assert_eq!(doc["isEnabled"], true);
}

#[tokio::test]
async fn delete_is_real_and_refused_while_tenants_remain() {
    let env = start().await;
    // Alpine Dental has tenants: Fusion's 400 is a 409 problem with Fusion's reason.
    let doc = env
        .call(
            Method::DELETE,
            &format!("/fusion/companies/{}", reseller_id(10)),
            None,
        )
        .await
        .assert_problem(409);
    assert!(doc["detail"].as_str().unwrap().contains("tenants"), "{doc}");
    // Contoso still has resellers below it: refused the same way.
    env.call(
        Method::DELETE,
        &format!("/fusion/companies/{}", reseller_id(2)),
        None,
    )
    .await
    .assert_problem(409);
    // Birch Logistics is empty: gone.
    let birch = reseller_id(11);
    let r = env
        .call(Method::DELETE, &format!("/fusion/companies/{birch}"), None)
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    env.get(&format!("/fusion/companies/{birch}"))
        .await
        .assert_problem(404);
}

#[tokio::test]
async fn reassign_is_refused_with_nothing_sent() {
    let env = start().await;
    let doc = env
        .call(
            Method::PATCH,
            &format!(
                "/fusion/companies/{}/customers/{}/reassign",
                reseller_id(3),
                reseller_id(10)
            ),
            None,
        )
        .await
        .assert_problem(501);
    assert!(doc["detail"].as_str().unwrap().contains("owner"), "{doc}");
    assert!(env.fusion.log().requests().is_empty());
    // Ids out of reach are still a 404 first.
    let r = env
        .as_key(
            CONTOSO_KEY,
            Method::PATCH,
            &format!(
                "/fusion/companies/{}/customers/{}/reassign",
                reseller_id(3),
                reseller_id(10)
            ),
            None,
        )
        .await;
    r.assert_problem(404);
}

/// Every answer of the pack that carries a body has seed 000's shape: a company, or a page
/// of companies (`results`, `totalCount` when asked, `nextPageToken`), field by field and
/// type by type as the seed's examples show them.
#[tokio::test]
async fn every_answer_has_the_shape_of_seed_000() {
    let env = start().await;
    let paged = json!({"results": [company()], "totalCount": 0, "nextPageToken": "s"});
    let (northwind, birch) = (reseller_id(1), reseller_id(3));
    for (path, shape) in [
        ("/fusion/companies".to_owned(), company()),
        (format!("/fusion/companies/{}", reseller_id(16)), company()),
        (
            "/fusion/companies/search?search=clinic&shouldReturnCount=true".to_owned(),
            paged.clone(),
        ),
        (
            format!("/fusion/companies/{northwind}/customers?maxResults=2&shouldReturnCount=true"),
            paged.clone(),
        ),
        (
            format!(
                "/fusion/companies/{birch}/customers/transitive?maxResults=2&shouldReturnCount=true"
            ),
            paged.clone(),
        ),
    ] {
        let r = env.get(&path).await;
        assert_eq!(
            r.status,
            200,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let doc = r.json();
        assert_shape(&doc, &shape, NULLABLE);
        if shape.get("results").is_some() {
            assert!(
                !doc["results"].as_array().unwrap().is_empty(),
                "{path}: an empty page proves no shape"
            );
        }
    }
    // The writes that answer a company: create (read back) and disable/enable.
    let created = env
        .call(
            Method::POST,
            &format!("/fusion/companies/{northwind}/customers"),
            Some(json!({"companyName": "Shape Check Ltd"})),
        )
        .await;
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    assert_shape(&created.json(), &company(), NULLABLE);
    for action in ["disable", "enable"] {
        let r = env
            .call(
                Method::PATCH,
                &format!("/fusion/companies/{}/{action}", reseller_id(11)),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{action}");
        if !r.body.is_empty() {
            assert_shape(&r.json(), &company(), NULLABLE);
        }
    }
}
