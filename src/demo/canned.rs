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

pub const COMPANY: &str = r#"{"id":"6e0f3b4a-0000-4000-8000-000000000002","externalId":"contoso","name":"Contoso Partners","enabled":true,"reseller":true,"vendor":false,"channelAdmin":false,"countryCode":"US","phoneNumber":"+1-555-0102","emailAddress":"admin@contoso.example","website":"https://contoso.example","address":{"street1":"2 Main Street","street2":null,"city":"Springfield","state":"IL","zip":"62701","country":"US"},"createdOn":1600086400000}"#;
pub const ASSOCIATIONS: &str = r#"{"content":[{"id":"8c3e1f40-0000-4000-b000-000000000002","resellerCompany":{"id":"6e0f3b4a-0000-4000-8000-000000000001","name":"Northwind Distribution"},"customerCompany":{"id":"6e0f3b4a-0000-4000-8000-000000000002","name":"Contoso Partners"},"createdOn":1600086400000}],"page":{"size":50,"totalElements":1,"totalPages":1,"number":0}}"#;
pub const TENANT: &str = r#"<?xml version="1.0" encoding="UTF-8"?><platform><tenant><id>1000000002</id><object_id>8c5b349851c041a28d19277a12dee8f0</object_id><name>contoso</name><company>Contoso Partners</company><partner type="" uri="http://127.0.0.1/networking/rest/tenant/1000000001" displayValue="Northwind Distribution">1000000001</partner><msp>1</msp><active>1</active><email>admin@contoso.example</email><phone>650-555-0102</phone><country>United States</country><city>Sunnyvale</city><street>2 Midas Way</street><state>CA</state><zip>94085</zip><number>1742261002</number><start_date>2024-01-02T10:00:00Z</start_date><date_modified>2024-01-02T10:00:00Z</date_modified></tenant><message><code>0</code><description>Success</description></message></platform>"#;
pub const STATIC: &str = r#"{"status":"ok","items":[1,2,3]}"#;

/// The canned answer for an upstream path: `(content type, body)`.
pub fn answer(path: &str) -> (&'static str, &'static str) {
    if path.starts_with("/api/account/v2/companies/") {
        ("application/json", COMPANY)
    } else if path.starts_with("/api/appReseller/v1/companyAssociations") {
        ("application/json", ASSOCIATIONS)
    } else if path.starts_with("/networking/rest/tenant/") {
        ("application/xml", TENANT)
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
        let path = req.path_and_query.split('?').next().unwrap_or("/");
        let (ct, body) = answer(path);
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

/// The in-process benches' rows: a name and the path of the n-th request (each miss asks for
/// a new company, so none is answered from the cache).
pub const BENCH_ROWS: [(&str, PathOf); 4] = [
    ("passthrough", |_| "/pass/static".into()),
    ("V1→AppDirect companies.get (cache miss)", |n| {
        format!("/companies/6e0f3b4a-0000-4000-8000-{n:012}")
    }),
    ("V1→LongJump companies.get (cache miss)", |n| {
        format!("/lj/companies/{n}")
    }),
    ("cache hit", |_| {
        "/companies/6e0f3b4a-0000-4000-8000-000000000002".into()
    }),
];
