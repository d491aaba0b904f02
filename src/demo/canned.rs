//! Canned upstream answers for the load benchmarks: the same AppDirect JSON and LongJump XML
//! documents whether they travel over loopback (`examples/load_upstream.rs`, `benches/load.sh`)
//! or come straight from memory (`benches/stack.rs`), so both measure the same work. Also the
//! LongJump-like tenant documents the XML converter is measured and profiled on.

use crate::dialect::xml::{Typing, XmlRules};

/// A LongJump-like `<platform>` document of `n` tenant records (with a lookup field and an
/// escaped entity in each), as `benches/xml.rs` and `examples/xml_profile.rs` convert it.
pub fn tenant_records(n: usize) -> String {
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?><platform>");
    for i in 0..n {
        s.push_str(&format!(
            "<record><id>{i:09}</id><company>Tenant {i} &amp; Partners</company><name>tenant-{i}</name><active>1</active><msp>{msp}</msp>\
             <partner type=\"Tenant\" uri=\"/networking/rest/tenant/{p}\" displayValue=\"Partner {p}\">{p}</partner>\
             <country>US</country><city>Springfield</city><street>{i} Main Street</street><state>IL</state><zip>62701</zip>\
             <phone>+1-555-{i:04}</phone><start_date>2024-01-01</start_date><date_modified>2024-06-01T10:00:00Z</date_modified></record>",
            msp = i % 2,
            p = i / 10
        ));
    }
    s.push_str(&format!(
        "<totalRecordCount>{n}</totalRecordCount></platform>"
    ));
    s
}

/// The rules `tenant_records` documents are converted under.
pub fn tenant_rules() -> XmlRules {
    XmlRules::default()
        .unwrap("/platform")
        .array("/platform/record")
        .typed("record/active", Typing::Boolean)
        .typed("record/msp", Typing::Boolean)
        .typed("totalRecordCount", Typing::Number)
        .root("platform")
        .item_name("platform/record", "record")
}

/// An AppDirect company (Contoso), as `GET /api/account/v2/companies/{id}` answers.
pub const COMPANY: &str = r#"{"id":"6e0f3b4a-0000-4000-8000-000000000002","externalId":"contoso","name":"Contoso Partners","enabled":true,"reseller":true,"vendor":false,"channelAdmin":false,"countryCode":"US","phoneNumber":"+1-555-0102","emailAddress":"admin@contoso.example","website":"https://contoso.example","address":{"street1":"2 Main Street","street2":null,"city":"Springfield","state":"IL","zip":"62701","country":"US"},"createdOn":1600086400000}"#;
/// An AppDirect company-associations page naming Contoso's reseller.
pub const ASSOCIATIONS: &str = r#"{"content":[{"id":"8c3e1f40-0000-4000-b000-000000000002","resellerCompany":{"id":"6e0f3b4a-0000-4000-8000-000000000001","name":"Northwind Distribution"},"customerCompany":{"id":"6e0f3b4a-0000-4000-8000-000000000002","name":"Contoso Partners"},"createdOn":1600086400000}],"page":{"size":50,"totalElements":1,"totalPages":1,"number":0}}"#;
/// A LongJump `<platform>` document of one tenant (Contoso).
pub const TENANT: &str = r#"<?xml version="1.0" encoding="UTF-8"?><platform><tenant><id>1000000002</id><object_id>8c5b349851c041a28d19277a12dee8f0</object_id><name>contoso</name><company>Contoso Partners</company><partner type="" uri="http://127.0.0.1/networking/rest/tenant/1000000001" displayValue="Northwind Distribution">1000000001</partner><msp>1</msp><active>1</active><email>admin@contoso.example</email><phone>650-555-0102</phone><country>United States</country><city>Sunnyvale</city><street>2 Midas Way</street><state>CA</state><zip>94085</zip><number>1742261002</number><start_date>2024-01-02T10:00:00Z</start_date><date_modified>2024-01-02T10:00:00Z</date_modified></tenant><message><code>0</code><description>Success</description></message></platform>"#;
/// The JSON answer of every other path.
pub const STATIC: &str = r#"{"status":"ok","items":[1,2,3]}"#;

/// How many customers the canned root company has: the bench key's reach (its company key's
/// root is [`COMPANY`], on both AppDirect and LongJump), so the translated rows read companies
/// the caller may read.
pub const REACH_CUSTOMERS: u64 = 1000;

/// The `n`-th request's AppDirect company id in the bench key's reach (one of the root's
/// customers, in turn).
pub fn reached_company(n: u64) -> String {
    format!("6e0f3b4a-0000-4000-8000-{:012}", 1000 + n % REACH_CUSTOMERS)
}

/// The `n`-th request's LongJump tenant id in the bench key's reach.
pub fn reached_tenant(n: u64) -> u64 {
    2_000_000_000 + n % REACH_CUSTOMERS
}

/// The root's customers, as AppDirect lists associations.
static CUSTOMERS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let items: Vec<String> = (0..REACH_CUSTOMERS)
        .map(|i| {
            format!(
                r#"{{"id":"8c3e1f40-0000-4000-b000-{i:012}","resellerCompany":{{"id":"6e0f3b4a-0000-4000-8000-000000000002","name":"Contoso Partners"}},"customerCompany":{{"id":"{}","name":"Customer {i}"}},"createdOn":1600086400000}}"#,
                reached_company(i)
            )
        })
        .collect();
    format!(
        r#"{{"content":[{}],"page":{{"size":{REACH_CUSTOMERS},"totalElements":{REACH_CUSTOMERS},"totalPages":1,"number":0}}}}"#,
        items.join(",")
    )
});
const NO_ASSOCIATIONS: &str =
    r#"{"content":[],"page":{"size":1000,"totalElements":0,"totalPages":0,"number":0}}"#;

/// The root's customers, as a LongJump search lists tenants.
static TENANTS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let mut s = String::from(r#"<?xml version="1.0" encoding="UTF-8"?><platform>"#);
    for i in 0..REACH_CUSTOMERS {
        s.push_str(&format!("<tenant><id>{}</id></tenant>", reached_tenant(i)));
    }
    s.push_str(&format!(
        "<totalRecordCount>{REACH_CUSTOMERS}</totalRecordCount><message><code>0</code><description>Success</description></message></platform>"
    ));
    s
});
const ROOT_TENANT: &str = r#"<?xml version="1.0" encoding="UTF-8"?><platform><tenant><id>1000000002</id></tenant><totalRecordCount>1</totalRecordCount><message><code>0</code><description>Success</description></message></platform>"#;
const NO_TENANTS: &str = r#"<?xml version="1.0" encoding="UTF-8"?><platform><totalRecordCount>0</totalRecordCount><message><code>0</code><description>Success</description></message></platform>"#;

/// The canned answer for an upstream path and query: `(content type, body)`. A reach walk
/// finds the root's customers under the root and nothing under them.
pub fn answer(path: &str, query: &str) -> (&'static str, &'static str) {
    let root = "6e0f3b4a-0000-4000-8000-000000000002";
    if path.starts_with("/api/account/v2/companies/") {
        ("application/json", COMPANY)
    } else if path.starts_with("/api/appReseller/v1/companyAssociations") {
        match query
            .split('&')
            .find_map(|kv| kv.strip_prefix("resellerCompanyId="))
        {
            Some(id) if id == root => ("application/json", CUSTOMERS.as_str()),
            Some(_) => ("application/json", NO_ASSOCIATIONS),
            None => ("application/json", ASSOCIATIONS),
        }
    } else if path.starts_with("/networking/rest/tenant/") {
        ("application/xml", TENANT)
    } else if path == "/networking/rest/tenant" {
        let filter = form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "filter")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        if filter.starts_with("name equals") {
            ("application/xml", ROOT_TENANT)
        } else if filter == "partner equals '1000000002'" {
            ("application/xml", TENANTS.as_str())
        } else {
            ("application/xml", NO_TENANTS)
        }
    } else {
        ("application/json", STATIC)
    }
}

/// Upstreams answering [`answer`]'s documents from memory, for the in-process benches
/// (`benches/stack.rs`, `benches/allocs.rs`): the gateway's own work with no network.
pub struct Canned;

impl crate::mapping::exec::CallUpstream for Canned {
    fn call<'a>(
        &'a self,
        _upstream: &'a str,
        req: crate::upstream::UpstreamRequest,
    ) -> crate::mapping::exec::CallFuture<'a> {
        let (path, query) = req
            .path_and_query
            .split_once('?')
            .unwrap_or((&req.path_and_query, ""));
        let (ct, body) = answer(path, query);
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(ct),
        );
        Box::pin(std::future::ready(Ok(crate::upstream::UpstreamResponse {
            status: http::StatusCode::OK,
            headers,
            body: bytes::Bytes::from_static(body.as_bytes()),
        })))
    }
}

/// The gateway of `config/bench.toml` with its store at `store` and its upstreams answering
/// from memory ([`Canned`]): what the in-process benches drive. Called inside a tokio
/// runtime (the upstream clients are built with it).
pub fn bench_gateway(store: &std::path::Path) -> crate::gateway::stack::Gateway {
    let mut cfg =
        crate::config::Config::load_with_env(std::path::Path::new("config/bench.toml"), Vec::new())
            .expect("config/bench.toml loads");
    cfg.store.path = store.to_path_buf();
    let mut gateway =
        crate::gateway::stack::Gateway::from_config(&cfg).expect("the bench gateway builds");
    gateway.upstreams = std::sync::Arc::new(Canned);
    gateway
}

/// The path of a bench row's n-th request.
pub type PathOf = fn(u64) -> String;

/// The in-process benches' rows: a name and the path of the n-th request (each miss asks for a
/// company in the bench key's reach with a query of its own, so none is answered from the
/// cache).
pub const BENCH_ROWS: [(&str, PathOf); 4] = [
    ("passthrough", |_| "/pass/static".into()),
    ("V1→AppDirect companies.get (cache miss)", |n| {
        format!("/companies/{}?r={n}", reached_company(n))
    }),
    ("V1→LongJump companies.get (cache miss)", |n| {
        format!("/lj/companies/{}?r={n}", reached_tenant(n))
    }),
    ("cache hit", |_| {
        "/companies/6e0f3b4a-0000-4000-8000-000000000002".into()
    }),
];
