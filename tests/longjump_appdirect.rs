//! Pack `longjump-appdirect` end to end: a LongJump XML client, Rosetta, the AppDirect sample.

mod common;

use common::{lj_doc, start, with_query};
use http::Method;
use rosetta::demo::data::company_id;
use rosetta::demo::{DISTRIBUTOR_ID, PARTNER_ID, PARTNER2_ID};
use serde_json::{Value, json};

const TENANT: &str = "/networking/rest/tenant";

fn tenants(doc: &Value) -> Vec<Value> {
    doc["tenant"].as_array().cloned().unwrap_or_default()
}

fn companies(doc: &Value) -> Vec<String> {
    tenants(doc)
        .iter()
        .map(|t| t["company"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[tokio::test]
async fn get_a_tenant_with_its_partner_lookup() {
    let env = start().await;
    let doc = env
        .get(&format!("{TENANT}/{PARTNER_ID}"))
        .await
        .assert_lj(200, 0);
    let t = &tenants(&doc)[0];
    assert_eq!(t["id"], PARTNER_ID);
    assert_eq!(t["company"], "Contoso Partners");
    assert_eq!(t["name"], "contoso");
    assert_eq!(t["msp"], "1", "booleans are 0/1");
    assert_eq!(t["active"], "1");
    assert_eq!(t["partner"]["#text"], DISTRIBUTOR_ID);
    assert_eq!(t["partner"]["@displayValue"], "Northwind Distribution");
    assert_eq!(t["partner"]["@type"], "");
    assert_eq!(
        t["partner"]["@uri"],
        format!("{}{TENANT}/{DISTRIBUTOR_ID}", env.base),
        "the uri is this gateway's URL of the parent tenant"
    );
    assert_eq!(t["start_date"], "2020-09-14T12:26:40Z");
    assert_eq!(doc["message"]["description"], "Success");

    // A root company has an empty lookup.
    let doc = env
        .get(&format!("{TENANT}/{DISTRIBUTOR_ID}"))
        .await
        .assert_lj(200, 0);
    assert_eq!(
        tenants(&doc)[0]["partner"],
        json!({"@type": "", "@uri": "", "@displayValue": ""})
    );
}

#[tokio::test]
async fn an_unknown_tenant_is_code_minus_200() {
    let env = start().await;
    let doc = env
        .get(&format!("{TENANT}/no-such-tenant"))
        .await
        .assert_lj(404, -200);
    assert!(doc["message"]["description"].is_string());
}

#[tokio::test]
async fn search_filters_sorts_pages_projects_and_counts() {
    let env = start().await;
    let q = |page: &'static str| {
        with_query(
            TENANT,
            &[
                ("filter", "msp equals 1 AND company contains 'i'"),
                ("fieldList", "id,company,partner"),
                ("sortBy", "company"),
                ("pageSize", "2"),
                ("page", page),
                ("getTotalRecordCount", "true"),
            ],
        )
    };
    let doc = env.get(&q("0")).await.assert_lj(200, 0);
    assert_eq!(companies(&doc), ["Fabrikam Solutions", "Granite IT"]);
    // Outside Corp matches too, but is not below the caller's company: not counted.
    assert_eq!(doc["totalRecordCount"], "3");
    let keys: Vec<String> = tenants(&doc)[0]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(keys, ["id", "company", "partner"], "fieldList projects");
    let doc = env.get(&q("1")).await.assert_lj(200, 0);
    assert_eq!(companies(&doc), ["Northwind Distribution"]);
    // The filter implied "company contains 'i'": AppDirect was asked to narrow by name.
    let sent = env.appdirect.log().requests();
    assert!(
        sent.iter()
            .any(|r| r.path == "/api/account/v2/companies" && r.query.contains("name=i")),
        "{:?}",
        sent.iter().map(|r| &r.query).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn search_with_or_descending_two_keys_and_every_field() {
    let env = start().await;
    let path = with_query(
        TENANT,
        &[
            (
                "filter",
                "(company starts with 'c' OR company ends with 'IT') AND active equals 1",
            ),
            ("fieldList", "*"),
            ("sortBy", "msp"),
            ("sortOrder", "desc"),
            ("sortBy2", "company"),
        ],
    );
    env.appdirect.log().clear();
    let doc = env.get(&path).await.assert_lj(200, 0);
    // Cedar Law is disabled; resellers first, then by name.
    assert_eq!(companies(&doc), ["Contoso Partners", "Granite IT"], "{doc}");
    assert!(doc.get("totalRecordCount").is_none(), "only when asked");
    assert!(tenants(&doc)[0].get("zip").is_some(), "`*` is every field");
    // Under OR nothing can be pushed down: AppDirect was asked for everything.
    assert!(
        env.appdirect
            .log()
            .requests()
            .iter()
            .all(|r| !r.query.contains("name="))
    );

    // No filter: every company the caller reaches (all but Outside Corp), in AppDirect's
    // order, the default page.
    let doc = env
        .get(&with_query(TENANT, &[("getTotalRecordCount", "true")]))
        .await
        .assert_lj(200, 0);
    assert_eq!(doc["totalRecordCount"], "12");
    assert_eq!(tenants(&doc).len(), 12);
}

#[tokio::test]
async fn bad_search_parameters_are_400_and_nothing_is_sent() {
    let env = start().await;
    let cases: [(&[(&str, &str)], &str); 6] = [
        (&[("filter", "company is 'x'")], "position 9"),
        (&[("filter", "company contains 'x")], "position 18"),
        (&[("filter", "secret equals 'x'")], "unknown field `secret`"),
        (&[("fieldList", "id,password")], "unknown field `password`"),
        (
            &[("sortBy", "id"), ("sortOrder", "sideways")],
            "asc or desc",
        ),
        (&[("pageSize", "0")], "pageSize"),
    ];
    for (pairs, needle) in cases {
        let resp = env.get(&with_query(TENANT, pairs)).await;
        let doc = resp.assert_lj(400, -300);
        let text = doc["message"]["description"].as_str().unwrap_or("");
        assert!(text.contains(needle), "{pairs:?}: {text}");
    }
    assert_eq!(env.appdirect_calls(), 0, "no bad search reached AppDirect");
}

#[tokio::test]
async fn filters_over_the_limits_are_400_naming_the_limit_and_nothing_is_sent() {
    let env = start().await;
    let many = vec!["company contains 'a'"; 65].join(" OR ");
    let long = format!("company contains '{}'", "a".repeat(4100));
    for (filter, needle) in [
        (many, "more conditions than the limit of 64"),
        (long, "over the limit of 4096"),
    ] {
        let resp = env.get(&with_query(TENANT, &[("filter", &filter)])).await;
        let doc = resp.assert_lj(400, -300);
        let text = doc["message"]["description"].as_str().unwrap_or("");
        assert!(text.contains(needle), "{text}");
    }
    assert_eq!(
        env.appdirect_calls(),
        0,
        "no refused filter reached AppDirect"
    );
    // At the limit, the same shape is served.
    let ok = vec!["company contains 'a'"; 64].join(" OR ");
    env.get(&with_query(TENANT, &[("filter", &ok)]))
        .await
        .assert_lj(200, 0);
    assert!(
        env.appdirect_calls() > 0,
        "the accepted filter reached AppDirect"
    );
}

#[tokio::test]
async fn a_filter_value_cannot_add_a_condition() {
    let env = start().await;
    // The client's own quoting: one value, `x' OR name contains '`.
    let filter = "company contains 'x'' OR name contains '''";
    let doc = env
        .get(&with_query(
            TENANT,
            &[("filter", filter), ("getTotalRecordCount", "true")],
        ))
        .await
        .assert_lj(200, 0);
    assert_eq!(doc["totalRecordCount"], "0", "{doc}");
    let sent = env.appdirect.log().requests();
    let names: Vec<String> = sent
        .iter()
        .filter(|r| r.path == "/api/account/v2/companies")
        .filter_map(|r| {
            form_urlencoded::parse(r.query.as_bytes())
                .find(|(k, _)| k == "name")
                .map(|(_, v)| v.into_owned())
        })
        .collect();
    assert!(!names.is_empty());
    assert!(
        names.iter().all(|n| n == "x' OR name contains '"),
        "AppDirect got the value as one literal: {names:?}"
    );
}

#[tokio::test]
async fn create_a_tenant_under_a_partner() {
    let env = start().await;
    let body = format!(
        "<?xml version=\"1.0\"?>\n<platform>\n  <tenant>\n    <company>BSmith &amp; Co</company>\n    <email>bsmith@email.com</email>\n    <first_name>Bob</first_name>\n    <last_name>Smith</last_name>\n    <phone>650-555-1212</phone>\n    <city><![CDATA[Sunnyvale]]></city>\n    <is_partner>0</is_partner>\n    <partner>{PARTNER2_ID}</partner>\n    <appList>4949678694fe4ccd9dcdfd9c32c49521</appList>\n  </tenant>\n</platform>"
    );
    let doc = env.xml(Method::POST, TENANT, &body).await.assert_lj(200, 0);
    let id = doc["message"]["id"]
        .as_str()
        .expect("the new id")
        .to_owned();
    let sent = env.appdirect.log().requests();
    let create = sent
        .iter()
        .find(|r| r.method == Method::POST && r.path == "/api/account/v2/companies")
        .expect("company created");
    let b: Value = serde_json::from_slice(&create.body).unwrap();
    assert_eq!(b["name"], "BSmith & Co");
    assert_eq!(b["emailAddress"], "bsmith@email.com");
    assert_eq!(b["reseller"], false);
    assert_eq!(b["address"]["city"], "Sunnyvale");
    assert_eq!(
        b["firstUser"],
        json!({"email": "bsmith@email.com", "firstName": "Bob", "lastName": "Smith"})
    );
    let t = env.get(&format!("{TENANT}/{id}")).await.assert_lj(200, 0);
    assert_eq!(tenants(&t)[0]["partner"]["#text"], PARTNER2_ID);
    assert_eq!(tenants(&t)[0]["company"], "BSmith & Co");
}

#[tokio::test]
async fn create_under_an_unknown_partner_creates_nothing() {
    let env = start().await;
    let resp = env
        .xml(
            Method::POST,
            TENANT,
            "<platform><tenant><company>X</company><partner>nope</partner></tenant></platform>",
        )
        .await;
    resp.assert_lj(404, -200);
    assert!(
        env.appdirect
            .log()
            .requests()
            .iter()
            .all(|r| r.method == Method::GET),
        "no write reached AppDirect"
    );
}

#[tokio::test]
async fn bad_xml_bodies_are_400_naming_the_problem_and_nothing_is_sent() {
    let env = start().await;
    let deep = format!(
        "<platform><tenant><company>x</company>{}{}</tenant></platform>",
        "<a>".repeat(70),
        "</a>".repeat(70)
    );
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            b"<platform>\n<tenant><company>x</tenant></platform>".to_vec(),
            "line 2",
        ),
        (
            b"<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;\">]><platform><tenant><company>&lol2;</company></tenant></platform>".to_vec(),
            "DOCTYPE",
        ),
        (
            b"<!DOCTYPE x [<!ENTITY ext SYSTEM \"file:///etc/passwd\">]><platform><tenant><company>&ext;</company></tenant></platform>".to_vec(),
            "DOCTYPE",
        ),
        (
            b"<platform><tenant><company>&ext;</company></tenant></platform>".to_vec(),
            "entity",
        ),
        (deep.into_bytes(), "deeper"),
        (
            b"<platform><tenant><company a=1>x</company></tenant></platform>".to_vec(),
            "not quoted",
        ),
        (
            b"<platform><tenant a=\"1\" a=\"2\"><company>x</company></tenant></platform>"
                .to_vec(),
            "attribute `a` repeats",
        ),
        (
            b"<platform><tenant><company>\xff\xfe</company></tenant></platform>".to_vec(),
            "UTF-8",
        ),
        (
            b"<platform><tenant><email>a@b.c</email></tenant></platform>".to_vec(),
            "company is required",
        ),
        (
            b"<platform><tenant><company>a</company><company>b</company></tenant></platform>"
                .to_vec(),
            "company",
        ),
    ];
    for (body, needle) in cases {
        let resp = env
            .send(
                Method::POST,
                TENANT,
                &[
                    ("authorization", &format!("Bearer {}", common::KEY)),
                    ("content-type", "application/xml"),
                ],
                body.clone(),
            )
            .await;
        let doc = resp.assert_lj(400, -4601);
        let text = doc["message"]["description"].as_str().unwrap_or("");
        assert!(
            text.contains(needle),
            "{}: {text}",
            String::from_utf8_lossy(&body)
        );
        assert!(!text.contains("/etc/passwd") || needle == "DOCTYPE");
    }
    assert_eq!(env.appdirect_calls(), 0, "no bad body reached AppDirect");
}

#[tokio::test]
async fn update_patches_only_the_fields_given() {
    let env = start().await;
    let id = company_id(13);
    env.xml(
        Method::PUT,
        &format!("{TENANT}/{id}"),
        "<platform><tenant><free>1</free><country>India</country><payment_type>Manual</payment_type><active>0</active></tenant></platform>",
    )
    .await
    .assert_lj(200, 0);
    let t = env.get(&format!("{TENANT}/{id}")).await.assert_lj(200, 0);
    let t = &tenants(&t)[0];
    assert_eq!(t["country"], "India");
    assert_eq!(t["city"], "Springfield", "the rest of the address is kept");
    assert_eq!(t["active"], "0");
    assert_eq!(t["company"], "Delta Bakery");

    // Nothing this pack can write, or a partner change: 400, nothing sent.
    env.appdirect.log().clear();
    for body in [
        "<platform><tenant><free>1</free></tenant></platform>",
        "<platform><tenant><partner>x</partner></tenant></platform>",
        "<platform/>",
    ] {
        env.xml(Method::PUT, &format!("{TENANT}/{id}"), body)
            .await
            .assert_lj(400, -4601);
    }
    assert_eq!(env.appdirect_calls(), 0);
    env.xml(
        Method::PUT,
        &format!("{TENANT}/nope"),
        "<platform><tenant><zip>1</zip></tenant></platform>",
    )
    .await
    .assert_lj(404, -200);
}

#[tokio::test]
async fn delete_is_the_documented_soft_delete() {
    let env = start().await;
    let id = company_id(11);
    env.send(
        Method::DELETE,
        &format!("{TENANT}/{id}"),
        &[("authorization", &format!("Bearer {}", common::KEY))],
        "",
    )
    .await
    .assert_lj(200, 0);
    // Detached, it is below nobody's company any more: the caller no longer reaches it (an
    // ADMIN does).
    env.get(&format!("{TENANT}/{id}"))
        .await
        .assert_lj(404, -200);
    let t = env
        .as_key(
            common::ADMIN_KEY,
            Method::GET,
            &format!("{TENANT}/{id}"),
            None,
        )
        .await
        .assert_lj(200, 0);
    assert_eq!(tenants(&t)[0]["active"], "0");
    assert_eq!(
        tenants(&t)[0]["partner"]["@uri"],
        "",
        "detached from its partner"
    );
}

#[tokio::test]
async fn errors_without_credentials_are_longjump_documents() {
    let env = start().await;
    let resp = env.send(Method::GET, TENANT, &[], "").await;
    resp.assert_lj(401, -101);
    let resp = env
        .send(
            Method::PATCH,
            TENANT,
            &[("authorization", &format!("Bearer {}", common::KEY))],
            "",
        )
        .await;
    let doc = lj_doc(&resp.body);
    assert_eq!(resp.status.as_u16(), 405);
    assert_eq!(doc["message"]["code"], "-300");
}

#[tokio::test]
async fn a_page_count_past_the_range_limit_is_a_longjump_error_and_no_page_is_fetched() {
    // The search fans out over `range(1; totalPages)` of AppDirect's first page; a page count
    // of 10^12 is refused as a filter error instead of being counted out into memory.
    let env = start().await;
    env.appdirect.faults().push(rosetta::demo::Fault {
        method: Some(Method::GET),
        path_prefix: "/api/account/v2/companies".into(),
        kind: rosetta::demo::FaultKind::JsonText(
            r#"{"content":[],"page":{"size":100,"totalElements":0,"totalPages":1000000000000,"number":0}}"#
                .into(),
        ),
        times: Some(1),
    });
    let before = env.appdirect_calls();
    let r = env.get(TENANT).await;
    assert_eq!(r.status, 500, "{}", String::from_utf8_lossy(&r.body));
    let doc = lj_doc(&r.body);
    assert_ne!(doc["message"]["code"], "0", "{doc}");
    // The first page and the associations only: no further page was asked for.
    assert!(
        env.appdirect_calls() - before <= 2,
        "{}",
        env.appdirect_calls() - before
    );
    // The next search (a sane page count) answers.
    assert_eq!(env.get(TENANT).await.status, 200);
}
