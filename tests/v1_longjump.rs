//! Pack `redapi-v1-longjump` end to end: a V1 JSON client under `/lj`, Rosetta, the LongJump
//! XML sample. The sample parses every filter it receives with the real grammar, so these
//! tests can check exactly which conditions reached it.

mod common;

use common::{OTHER_KEY, start, with_query};
use http::Method;
use rosetta::demo::longjump::tenant_id;
use rosetta::dialect::filter::{self, Expr, Literal, Op};
use serde_json::{Value, json};

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

/// The `filter` parameters the LongJump sample received, parsed.
fn filters(env: &common::Env) -> Vec<Expr> {
    env.longjump
        .log()
        .requests()
        .iter()
        .filter_map(|r| {
            form_urlencoded::parse(r.query.as_bytes())
                .find(|(k, _)| k == "filter")
                .map(|(_, v)| filter::parse(&v).expect("the gateway sent a valid filter"))
        })
        .collect()
}

#[tokio::test]
async fn my_company_is_the_tenant_named_by_my_key() {
    let env = start().await;
    let doc = env.get("/lj/companies").await;
    assert_eq!(doc.status, 200);
    assert_eq!(
        doc.json(),
        json!({"companyId": tenant_id(1), "companyName": "Northwind Distribution", "isEnabled": true, "type": "Partner", "parentCompanyId": null})
    );
    assert_eq!(
        filters(&env),
        [Expr::Cmp {
            field: "name".into(),
            op: Op::Equals,
            value: Literal::Str("northwind".into())
        }]
    );
    // A key whose company has no tenant: 404, as problem details.
    let resp = env
        .send(
            Method::GET,
            "/lj/companies",
            &[("authorization", &format!("Bearer {OTHER_KEY}"))],
            "",
        )
        .await;
    resp.assert_problem(404);
}

#[tokio::test]
async fn one_company_and_an_unknown_one() {
    let env = start().await;
    let c = env.get(&format!("/lj/companies/{}", tenant_id(16))).await;
    assert_eq!(
        c.json(),
        json!({"companyId": tenant_id(16), "companyName": "Harbor Clinic", "isEnabled": true, "type": "Customer", "parentCompanyId": tenant_id(15)})
    );
    let c = env.get(&format!("/lj/companies/{}", tenant_id(12))).await;
    assert_eq!(c.json()["isEnabled"], false, "Cedar Law is disabled");
    env.get("/lj/companies/999").await.assert_problem(404);
}

#[tokio::test]
async fn a_success_without_a_tenant_is_a_404_never_a_company_of_nulls() {
    let env = start().await;
    let id = tenant_id(16);
    // Some LongJump servers answer an id they do not have with success and no record.
    env.longjump.faults().push(rosetta::demo::Fault {
        method: Some(Method::GET),
        path_prefix: format!("/networking/rest/tenant/{id}"),
        kind: rosetta::demo::FaultKind::JsonText(
            "<platform><message><code>0</code><description>Success</description></message></platform>"
                .into(),
        ),
        times: None,
    });
    let doc = env
        .get(&format!("/lj/companies/{id}"))
        .await
        .assert_problem(404);
    assert!(doc.to_string().contains("not found"), "{doc}");
}

#[tokio::test]
async fn search_is_read_whole_then_paged_by_rosetta() {
    let env = start().await;
    let first = env
        .get("/lj/companies/search?search=in&maxResults=2&shouldReturnCount=true")
        .await;
    assert_eq!(first.status, 200);
    let doc = first.json();
    assert_eq!(doc["totalCount"], 3, "{doc}");
    assert_eq!(names(&doc).len(), 2);
    let token = doc["nextPageToken"].as_str().expect("a next page");
    let second = env
        .get(&format!(
            "/lj/companies/search?search=in&maxResults=2&pageToken={token}"
        ))
        .await
        .json();
    let mut all = names(&doc);
    all.extend(names(&second));
    all.sort();
    assert_eq!(
        all,
        ["Alpine Dental", "Harbor Clinic", "Northwind Distribution"]
            .map(String::from)
            .to_vec()
    );
    // LongJump is asked for every match (1,000 a page); Rosetta keeps what the caller reaches,
    // then pages: a V1 page is never short for records dropped after paging.
    let sent = env.longjump.log().requests();
    assert!(
        sent.iter()
            .any(|r| r.query.contains("page=0") && r.query.contains("pageSize=1000")),
        "{:?}",
        sent.iter().map(|r| &r.query).collect::<Vec<_>>()
    );
    assert!(!sent.iter().any(|r| r.query.contains("pageSize=2")));
    env.get("/lj/companies/search").await.assert_problem(400);
}

#[tokio::test]
async fn customers_are_the_tenants_whose_partner_is_the_company() {
    let env = start().await;
    let path = format!("/lj/companies/{}/customers", tenant_id(1));
    let doc = env
        .get(&format!("{path}?shouldReturnCount=true"))
        .await
        .json();
    assert_eq!(
        names(&doc),
        [
            "Contoso Partners",
            "Fabrikam Solutions",
            "Iris Florists",
            "Juniper Hotels"
        ]
    );
    assert_eq!(doc["totalCount"], 4);
    let desc = env.get(&format!("{path}?orderBy=desc")).await.json();
    assert_eq!(names(&desc)[0], "Juniper Hotels");
    let searched = env.get(&format!("{path}?search=o")).await.json();
    assert_eq!(
        names(&searched),
        [
            "Contoso Partners",
            "Fabrikam Solutions",
            "Iris Florists",
            "Juniper Hotels"
        ]
    );
    let searched = env.get(&format!("{path}?search=ris")).await.json();
    assert_eq!(names(&searched), ["Iris Florists"]);
    let paged = env.get(&format!("{path}?maxResults=3")).await.json();
    assert_eq!(names(&paged).len(), 3);
    assert!(paged["nextPageToken"].is_string());
    env.get("/lj/companies/999/customers")
        .await
        .assert_problem(404);
}

#[tokio::test]
async fn transitive_customers_walk_the_tree() {
    let env = start().await;
    let doc = env
        .get(&format!(
            "/lj/companies/{}/customers/transitive?shouldReturnCount=true&maxResults=100",
            tenant_id(1)
        ))
        .await
        .json();
    assert_eq!(doc["totalCount"], 11, "{doc}");
    assert!(
        names(&doc).contains(&"Harbor Clinic".to_owned()),
        "three levels down"
    );
    assert!(!names(&doc).contains(&"Outside Corp".to_owned()));
    let doc = env
        .get(&format!(
            "/lj/companies/{}/customers/transitive?orderBy=asc&search=a",
            tenant_id(3)
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
}

#[tokio::test]
async fn create_a_customer_as_a_tenant() {
    let env = start().await;
    let resp = env
        .call(
            Method::POST,
            &format!("/lj/companies/{}/customers", tenant_id(2)),
            Some(json!({"companyName": "New <Partner> & Co", "type": "Partner"})),
        )
        .await;
    assert_eq!(resp.status, 201, "{}", String::from_utf8_lossy(&resp.body));
    let c = resp.json();
    assert_eq!(c["companyName"], "New <Partner> & Co");
    assert_eq!(c["type"], "Partner");
    assert_eq!(c["parentCompanyId"], tenant_id(2));
    let sent = env.longjump.log().requests();
    let post = sent
        .iter()
        .find(|r| r.method == Method::POST)
        .expect("a POST");
    let xml = String::from_utf8_lossy(&post.body);
    assert!(
        xml.contains("<company>New &lt;Partner&gt; &amp; Co</company>"),
        "{xml}"
    );
    assert!(xml.contains("<is_partner>1</is_partner>"), "{xml}");
    assert_eq!(
        post.headers
            .iter()
            .find(|(k, _)| k == "content-type")
            .map(|(_, v)| v.as_str()),
        Some("application/xml")
    );
    let bad = env
        .call(
            Method::POST,
            &format!("/lj/companies/{}/customers", tenant_id(2)),
            Some(json!({"type": "Partner"})),
        )
        .await;
    bad.assert_problem(400);
}

#[tokio::test]
async fn disable_enable_delete_and_reassign() {
    let env = start().await;
    let c = tenant_id(10);
    for (action, enabled) in [("disable", false), ("enable", true)] {
        let r = env
            .call(Method::PATCH, &format!("/lj/companies/{c}/{action}"), None)
            .await;
        assert_eq!(r.status, 200);
        let got = env.get(&format!("/lj/companies/{c}")).await.json();
        assert_eq!(got["isEnabled"], enabled, "{action}");
    }
    let r = env
        .call(
            Method::PATCH,
            &format!("/lj/companies/{}/customers/{c}/reassign", tenant_id(3)),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    let got = env.get(&format!("/lj/companies/{c}")).await.json();
    assert_eq!(got["parentCompanyId"], tenant_id(3));
    let puts: Vec<String> = env
        .longjump
        .log()
        .requests()
        .iter()
        .filter(|r| r.method == Method::PUT)
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert!(puts[0].contains("<active>0</active>"), "{puts:?}");
    assert!(puts[2].contains(&format!("<partner>{}</partner>", tenant_id(3))));
    // Reassigning to a company that does not exist changes nothing.
    env.call(
        Method::PATCH,
        &format!("/lj/companies/999/customers/{c}/reassign"),
        None,
    )
    .await
    .assert_problem(404);

    let r = env
        .call(Method::DELETE, &format!("/lj/companies/{c}"), None)
        .await;
    assert_eq!(r.status, 200);
    env.get(&format!("/lj/companies/{c}"))
        .await
        .assert_problem(404);
    env.call(Method::DELETE, &format!("/lj/companies/{c}"), None)
        .await
        .assert_problem(404);
}

#[tokio::test]
async fn a_v1_value_meant_to_break_out_of_the_filter_stays_one_value() {
    let env = start().await;
    let evil = "x' OR name contains '";
    let customers = env
        .get(&with_query(
            &format!("/lj/companies/{}/customers", tenant_id(1)),
            &[("search", evil), ("shouldReturnCount", "true")],
        ))
        .await
        .json();
    assert_eq!(customers["totalCount"], 0, "{customers}");
    let search = env
        .get(&with_query("/lj/companies/search", &[("search", evil)]))
        .await
        .json();
    assert_eq!(names(&search), Vec::<String>::new());
    let got = filters(&env);
    let company = Expr::Cmp {
        field: "company".into(),
        op: Op::Contains,
        value: Literal::Str(evil.into()),
    };
    assert!(
        got.contains(&Expr::And(vec![
            Expr::Cmp {
                field: "partner".into(),
                op: Op::Equals,
                value: Literal::Str(tenant_id(1)),
            },
            company.clone(),
        ])),
        "{got:?}"
    );
    assert!(got.contains(&company), "{got:?}");
    for f in &got {
        assert!(!f.fields().contains(&"name"), "an injected condition: {f}");
    }
}
