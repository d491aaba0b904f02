//! Every RedAPI V1 route (seed 000) through a real gateway in front of the sample AppDirect
//! and RedAPI backends, checking status and body shape against the seed's examples.

mod common;

use common::{assert_shape, start};
use http::Method;
use rosetta::demo::{CUSTOMER_ID, DISTRIBUTOR_ID, Fault, FaultKind, PARTNER_ID};
use serde_json::{Value, json};

fn company() -> Value {
    json!({"companyId": "s", "companyName": "s", "isEnabled": true, "type": "Partner", "parentCompanyId": "s"})
}
fn paged(item: Value) -> Value {
    json!({"results": [item]})
}
fn user() -> Value {
    json!({"userId": "s", "name": "s", "email": "s", "dateCreated": "s", "role": "s", "companyId": "s",
           "companyName": "s", "enabled": true, "verified": true, "sso": "s"})
}
fn product() -> Value {
    json!({"editions": [{"hasTrial": true, "name": "s", "id": 6}], "children": ["s"], "name": "s",
           "description": "s", "id": 0, "shortName": "s"})
}
fn subscription() -> Value {
    json!({"productId": 0, "trialStatus": "NotUsed", "editionId": 6, "subscriptionId": "s", "isActive": true})
}
fn usage() -> Value {
    json!({"totalDataProtectedInBytes": 0, "totalDataProtectedInBytesExternal": 0, "fupOverageInBytes": 0,
           "activeSeats": 6, "inactiveSeats": 1, "sharedSeats": 1, "activeWorkloads": 5})
}
fn consumption() -> Value {
    let mut c = usage();
    for (k, v) in [
        ("productId", json!(1)),
        ("productName", json!("s")),
        ("subscriptionId", json!("s")),
        ("sku", json!("s")),
        ("isTrial", json!(true)),
    ] {
        c[k] = v;
    }
    c
}
fn op_status() -> Value {
    json!({"companyId": "s", "companyName": "s", "statuses": [{"success": 1, "errors": 0, "warnings": 0, "failed": 0, "productName": "s", "productId": 4}]})
}
fn account_status() -> Value {
    json!({"accountId": "s", "accountName": "s", "status": 2, "productId": 105, "companyId": "s", "timestamp": "s"})
}

const NULLABLE: &[&str] = &["parentCompanyId", "sso", "role", "nextPageToken"];

/// Walks every page of a V1 list and returns all results; checks the token chain ends.
async fn all_pages(env: &common::Env, path: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut url = format!("{path}{sep}maxResults=2&shouldReturnCount=true");
    for _ in 0..100 {
        let r = env.get(&url).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let doc = r.json();
        out.extend(doc["results"].as_array().unwrap().iter().cloned());
        match doc["nextPageToken"].as_str() {
            Some(t) => {
                url = format!("{path}{sep}maxResults=2&shouldReturnCount=true&pageToken={t}")
            }
            None => {
                assert_eq!(
                    doc["totalCount"].as_u64().unwrap() as usize,
                    out.len(),
                    "totalCount matches the records"
                );
                return out;
            }
        }
    }
    panic!("the token chain did not end");
}

#[tokio::test]
async fn get_my_company() {
    let env = start().await;
    let r = env.get("/companies").await;
    assert_eq!(r.status, 200);
    let doc = r.json();
    assert_shape(&doc, &company(), NULLABLE);
    assert_eq!(doc["companyId"], DISTRIBUTOR_ID);
    assert_eq!(doc["type"], "Partner");
}

#[tokio::test]
async fn get_specific_company() {
    let env = start().await;
    let r = env.get(&format!("/companies/{PARTNER_ID}")).await;
    assert_eq!(r.status, 200);
    let doc = r.json();
    assert_shape(&doc, &company(), NULLABLE);
    assert_eq!(doc["companyId"], PARTNER_ID);
    assert_eq!(
        doc["parentCompanyId"], DISTRIBUTOR_ID,
        "parent comes from the association"
    );
    // A W3C traceparent reached the upstream.
    assert!(env.appdirect.log().requests().iter().all(|r| {
        r.headers
            .iter()
            .any(|(k, v)| k == "traceparent" && v.starts_with("00-"))
    }));
    let missing = env
        .get("/companies/00000000-0000-0000-0000-000000000000")
        .await;
    missing.assert_problem(404);
}

#[tokio::test]
async fn list_customers_paged_searched_and_ordered() {
    let env = start().await;
    let all = all_pages(&env, &format!("/companies/{DISTRIBUTOR_ID}/customers")).await;
    assert!(all.len() >= 3, "{all:?}");
    for c in &all {
        assert_shape(c, &company(), NULLABLE);
        assert_eq!(c["parentCompanyId"], DISTRIBUTOR_ID);
    }
    let mut ids: Vec<&str> = all
        .iter()
        .map(|c| c["companyId"].as_str().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), all.len(), "no record repeated across pages");

    let desc = env
        .get(&format!(
            "/companies/{DISTRIBUTOR_ID}/customers?orderBy=desc&maxResults=100"
        ))
        .await
        .json();
    let names: Vec<String> = desc["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["companyName"].as_str().unwrap().to_lowercase())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(names, sorted);
    assert!(
        desc.get("totalCount").is_none(),
        "totalCount only when asked"
    );

    let needle = all[0]["companyName"].as_str().unwrap().to_lowercase();
    let found = env
        .get(&format!(
            "/companies/{DISTRIBUTOR_ID}/customers?search={}",
            urlencode(&needle)
        ))
        .await
        .json();
    assert!(found["results"].as_array().unwrap().iter().all(|c| {
        c["companyName"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains(&needle)
    }));
    assert!(!found["results"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn list_customers_transitive() {
    let env = start().await;
    let direct = all_pages(&env, &format!("/companies/{DISTRIBUTOR_ID}/customers")).await;
    let all = all_pages(
        &env,
        &format!("/companies/{DISTRIBUTOR_ID}/customers/transitive"),
    )
    .await;
    assert!(
        all.len() > direct.len(),
        "the walk goes below the direct customers"
    );
    for c in &all {
        assert_shape(c, &company(), NULLABLE);
    }
    assert!(
        all.iter()
            .any(|c| c["companyId"] == CUSTOMER_ID && c["parentCompanyId"] == PARTNER_ID)
    );
}

#[tokio::test]
async fn search_companies() {
    let env = start().await;
    let r = env
        .get("/companies/search?search=north&shouldReturnCount=true")
        .await;
    assert_eq!(r.status, 200);
    let doc = r.json();
    assert_shape(&doc, &paged(company()), NULLABLE);
    assert!(doc["totalCount"].as_u64().unwrap() >= 1);
    assert!(
        doc["results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["companyId"] == DISTRIBUTOR_ID)
    );
}

#[tokio::test]
async fn create_customer() {
    let env = start().await;
    let r = env
        .call(
            Method::POST,
            &format!("/companies/{PARTNER_ID}/customers"),
            Some(json!({"companyName": "Brand New Ltd", "type": "Customer"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let doc = r.json();
    assert_shape(&doc, &company(), NULLABLE);
    assert_eq!(doc["parentCompanyId"], PARTNER_ID);
    let id = doc["companyId"].as_str().unwrap().to_owned();
    // It is now one of the partner's customers.
    let customers = env
        .get(&format!("/companies/{PARTNER_ID}/customers?maxResults=100"))
        .await
        .json();
    assert!(
        customers["results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["companyId"] == id.as_str())
    );
    // A body without a name is refused before anything reaches AppDirect.
    let before = env.appdirect_calls();
    let bad = env
        .call(
            Method::POST,
            &format!("/companies/{PARTNER_ID}/customers"),
            Some(json!({"type": "Customer"})),
        )
        .await;
    bad.assert_problem(400);
    assert_eq!(env.appdirect_calls(), before);
}

#[tokio::test]
async fn disable_and_enable_customer() {
    let env = start().await;
    let r = env
        .call(
            Method::PATCH,
            &format!("/companies/{CUSTOMER_ID}/disable"),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        env.get(&format!("/companies/{CUSTOMER_ID}")).await.json()["isEnabled"],
        false
    );
    let r = env
        .call(
            Method::PATCH,
            &format!("/companies/{CUSTOMER_ID}/enable"),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        env.get(&format!("/companies/{CUSTOMER_ID}")).await.json()["isEnabled"],
        true
    );
}

#[tokio::test]
async fn enable_unknown_company_is_404() {
    let env = start().await;
    env.call(
        Method::PATCH,
        "/companies/00000000-0000-0000-0000-000000000000/enable",
        None,
    )
    .await
    .assert_problem(404);
}

#[tokio::test]
async fn delete_company_is_a_soft_delete() {
    let env = start().await;
    let r = env
        .call(Method::DELETE, &format!("/companies/{CUSTOMER_ID}"), None)
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // Detached, it is below nobody's company any more: out of the caller's reach at once.
    env.get(&format!("/companies/{CUSTOMER_ID}"))
        .await
        .assert_problem(404);
    let doc = env
        .as_key(
            common::ADMIN_KEY,
            Method::GET,
            &format!("/companies/{CUSTOMER_ID}"),
            None,
        )
        .await
        .json();
    assert_eq!(doc["isEnabled"], false);
    assert_eq!(
        doc["parentCompanyId"],
        Value::Null,
        "detached from its reseller"
    );
}

#[tokio::test]
async fn reassign_customer() {
    let env = start().await;
    let r = env
        .call(
            Method::PATCH,
            &format!("/companies/{DISTRIBUTOR_ID}/customers/{CUSTOMER_ID}/reassign"),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        env.get(&format!("/companies/{CUSTOMER_ID}")).await.json()["parentCompanyId"],
        DISTRIBUTOR_ID
    );
}

#[tokio::test]
async fn list_users() {
    let env = start().await;
    let r = env
        .get(&format!(
            "/users/list?companyId={PARTNER_ID}&shouldReturnCount=true"
        ))
        .await;
    assert_eq!(r.status, 200);
    let doc = r.json();
    assert_shape(&doc, &paged(user()), NULLABLE);
    let users = doc["results"].as_array().unwrap();
    assert!(!users.is_empty());
    for u in users {
        assert_eq!(u["companyId"], PARTNER_ID);
        assert!(
            time::OffsetDateTime::parse(
                u["dateCreated"].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339
            )
            .is_ok()
        );
        assert_eq!(u["sso"], Value::Null);
    }
    let all = all_pages(&env, &format!("/users/list?companyId={PARTNER_ID}")).await;
    assert_eq!(all.len(), users.len());
}

#[tokio::test]
async fn list_products() {
    let env = start().await;
    let r = env.get("/products").await;
    assert_eq!(r.status, 200);
    let doc = r.json();
    assert_shape(&doc, &json!([product()]), NULLABLE);
    assert!(!doc.as_array().unwrap().is_empty());
}

#[tokio::test]
async fn a_passed_on_answer_reaches_the_client_byte_for_byte() {
    // products.get answers RedAPI's body unchanged: checked as JSON, not parsed into values
    // and written again, so what values would not keep survives (a decimal's spelling, an
    // integer past u64, an escape, key order); the surrounding whitespace is dropped.
    let env = start().await;
    let text = r#"{"id":7,"price":1.10,"big":123456789012345678901234567890,"name":"caf\u00e9","z":1,"a":2}"#;
    env.redapi.faults().push(Fault {
        method: None,
        path_prefix: "/v2/products/7".into(),
        kind: FaultKind::JsonText(format!("  {text}\n")),
        times: Some(1),
    });
    let r = env.get("/products/7").await;
    assert_eq!(r.status, 200);
    assert_eq!(std::str::from_utf8(&r.body).unwrap(), text);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    // The cached copy is the same bytes (the fault is spent: this is not the upstream).
    let again = env.get("/products/7").await;
    assert_eq!(
        again.header("cache-status").map(|h| h.contains("hit")),
        Some(true)
    );
    assert_eq!(again.body, r.body);
    let product_calls = env
        .redapi
        .log()
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/v2/products/7"))
        .count();
    assert_eq!(product_calls, 1);
}

#[tokio::test]
async fn get_product() {
    let env = start().await;
    let first = env.get("/products").await.json()[0]["id"].clone();
    let r = env.get(&format!("/products/{first}")).await;
    assert_eq!(r.status, 200);
    assert_shape(&r.json(), &product(), NULLABLE);
    env.get("/products/999999").await.assert_problem(404);
}

#[tokio::test]
async fn list_subscriptions() {
    let env = start().await;
    let r = env
        .get(&format!("/companies/{CUSTOMER_ID}/subscriptions"))
        .await;
    assert_eq!(r.status, 200);
    assert_shape(&r.json(), &json!([subscription()]), NULLABLE);
}

/// Creates a subscription (`/subscriptions` or `/subscriptions/trial`) to the first product.
async fn new_subscription(env: &common::Env, path: &str) -> Value {
    let product = env.get("/products").await.json()[0].clone();
    let body = json!({"productId": product["id"], "editionId": product["editions"][0]["id"]});
    let r = env
        .call(
            Method::POST,
            &format!("/companies/{CUSTOMER_ID}{path}"),
            Some(body),
        )
        .await;
    assert!(
        r.status.is_success(),
        "{} {}",
        r.status,
        String::from_utf8_lossy(&r.body)
    );
    let doc = r.json();
    assert_shape(&doc, &subscription(), NULLABLE);
    doc
}

#[tokio::test]
async fn create_subscription() {
    let env = start().await;
    let doc = new_subscription(&env, "/subscriptions").await;
    assert_eq!(doc["trialStatus"], "NotUsed");
}

#[tokio::test]
async fn delete_subscription() {
    let env = start().await;
    let subs = env
        .get(&format!("/companies/{CUSTOMER_ID}/subscriptions"))
        .await
        .json();
    let sid = subs[0]["subscriptionId"].as_str().unwrap().to_owned();
    let r = env
        .call(
            Method::DELETE,
            &format!("/companies/{CUSTOMER_ID}/subscriptions/{sid}"),
            None,
        )
        .await;
    assert!(r.status == 200 || r.status == 202, "{}", r.status);
    let after = env
        .get(&format!("/companies/{CUSTOMER_ID}/subscriptions"))
        .await
        .json();
    assert!(
        !after
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["subscriptionId"] == sid.as_str())
    );
}

#[tokio::test]
async fn create_trial_subscription() {
    let env = start().await;
    let doc = new_subscription(&env, "/subscriptions/trial").await;
    assert_eq!(doc["trialStatus"], "InTrial");
}

#[tokio::test]
async fn convert_trial_subscription() {
    let env = start().await;
    let trial = new_subscription(&env, "/subscriptions/trial").await;
    let sid = trial["subscriptionId"].as_str().unwrap();
    let path = format!("/companies/{CUSTOMER_ID}/subscriptions/{sid}/trial/convert");
    let r = env.call(Method::PATCH, &path, None).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // Converting twice is the upstream's 422, passed on.
    env.call(Method::PATCH, &path, None)
        .await
        .assert_problem(422);
}

#[tokio::test]
async fn consumption_summary() {
    let env = start().await;
    let r = env
        .get(&format!(
            "/companies/{DISTRIBUTOR_ID}/consumption/summary?shouldExcludeTrials=true"
        ))
        .await;
    assert_eq!(r.status, 200);
    assert_shape(
        &r.json(),
        &json!({"companySummary": usage(), "customerSummary": usage()}),
        NULLABLE,
    );
}

#[tokio::test]
async fn consumption_company() {
    let env = start().await;
    let r = env
        .get(&format!(
            "/companies/{CUSTOMER_ID}/consumption/company?date=2024-01-01T00:00:00Z"
        ))
        .await;
    assert_eq!(r.status, 200);
    assert_shape(&r.json(), &json!([consumption()]), NULLABLE);
}

#[tokio::test]
async fn consumption_customers_direct() {
    let env = start().await;
    let r = env
        .get(&format!(
            "/companies/{DISTRIBUTOR_ID}/consumption/customers/direct?shouldReturnCount=true"
        ))
        .await;
    assert_eq!(r.status, 200);
    let item = json!({"companyId": "s", "companyName": "s", "productConsumption": [consumption()]});
    assert_shape(&r.json(), &paged(item), NULLABLE);
}

#[tokio::test]
async fn consumption_customers_transitive() {
    let env = start().await;
    let r = env
        .get(&format!(
            "/companies/{DISTRIBUTOR_ID}/consumption/customers/transitive?maxResults=3"
        ))
        .await;
    assert_eq!(r.status, 200);
    let mut item = consumption();
    item["companyId"] = json!("s");
    item["companyName"] = json!("s");
    item["parentCompanyId"] = json!("s");
    assert_shape(&r.json(), &paged(item), NULLABLE);
}

async fn status_routes(kind: &str) {
    let env = start().await;
    let r = env
        .get(&format!("/companies/{DISTRIBUTOR_ID}/{kind}/status"))
        .await;
    assert_eq!(r.status, 200, "{kind}/status");
    assert_shape(&r.json(), &op_status(), NULLABLE);
}

#[tokio::test]
async fn backups_status() {
    status_routes("backups").await;
}

#[tokio::test]
async fn restores_status() {
    status_routes("restores").await;
}

async fn customers_status(kind: &str) {
    let env = start().await;
    let r = env
        .get(&format!(
            "/companies/{DISTRIBUTOR_ID}/{kind}/status/customers?maxResults=2&aggregate=true"
        ))
        .await;
    assert_eq!(r.status, 200);
    assert_shape(&r.json(), &paged(op_status()), NULLABLE);
}

#[tokio::test]
async fn backups_status_customers() {
    customers_status("backups").await;
}

#[tokio::test]
async fn restores_status_customers() {
    customers_status("restores").await;
}

async fn accounts_status(kind: &str) {
    let env = start().await;
    let r = env
        .get(&format!("/companies/{CUSTOMER_ID}/{kind}/status/accounts"))
        .await;
    assert_eq!(r.status, 200);
    assert_shape(&r.json(), &paged(account_status()), NULLABLE);
}

#[tokio::test]
async fn backups_status_accounts() {
    accounts_status("backups").await;
}

#[tokio::test]
async fn restores_status_accounts() {
    accounts_status("restores").await;
}

async fn summary_status(kind: &str) {
    let env = start().await;
    let r = env
        .get(&format!(
            "/companies/{DISTRIBUTOR_ID}/{kind}/status/summary?productId=4"
        ))
        .await;
    assert_eq!(r.status, 200);
    let statuses = op_status()["statuses"].clone();
    assert_shape(
        &r.json(),
        &json!({"companySummary": op_status(), "customerSummary": statuses}),
        NULLABLE,
    );
}

#[tokio::test]
async fn backups_status_summary() {
    summary_status("backups").await;
}

#[tokio::test]
async fn restores_status_summary() {
    summary_status("restores").await;
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
