//! Mapping-engine hot paths: route matching, template expansion, the Company jq transform,
//! and V1 paging tokens.

use std::path::Path;

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use http::Method;
use rosetta::config::Config;
use rosetta::mapping::jq::JqFilter;
use rosetta::mapping::pack::load_catalog;
use rosetta::mapping::template::Template;
use serde_json::json;

fn matching(c: &mut Criterion) {
    let cfg = Config::load_with_env(Path::new("config/rosetta.toml"), Vec::new()).unwrap();
    let catalog = load_catalog(&cfg).unwrap();
    let router = &catalog.router;
    c.bench_function("route match: GET /companies/{id} (30 routes)", |b| {
        b.iter(|| {
            router
                .at(
                    &Method::GET,
                    black_box("/companies/6f1f0a52-1c1e-4a4b-9a34-6a0d6f1d2a01"),
                )
                .unwrap()
        })
    });
    c.bench_function("route match: deep path with 2 variables", |b| {
        b.iter(|| {
            router
                .at(&Method::PATCH, black_box("/companies/6f1f0a52-1c1e-4a4b-9a34-6a0d6f1d2a01/subscriptions/0b3c/trial/convert"))
                .unwrap()
        })
    });
    c.bench_function("route match: unknown path (404)", |b| {
        b.iter(|| {
            router
                .at(&Method::GET, black_box("/nothing/here"))
                .unwrap_err()
        })
    });
}

fn templates(c: &mut Criterion) {
    let t = Template::parse(
        "/api/account/v2/companies/{companyId}/memberships/{steps.m.content.0.id}",
        &["companyId".to_owned()],
    )
    .unwrap();
    let ctx = json!({"path": {"companyId": "6f1f0a52-1c1e-4a4b-9a34-6a0d6f1d2a01"}, "steps": {"m": {"content": [{"id": "u 1"}]}}});
    c.bench_function("template expand: path with 2 values", |b| {
        b.iter(|| t.render_path(black_box(&ctx)).unwrap())
    });
}

fn transform(c: &mut Criterion) {
    let f = JqFilter::compile(
        r#"{companyId: .id, companyName: .name, isEnabled: .enabled, type: (if .reseller then "Partner" else "Customer" end), parentCompanyId: null}"#,
    )
    .unwrap();
    let company = json!({"id": "6f1f0a52-1c1e-4a4b-9a34-6a0d6f1d2a01", "externalId": "acme", "name": "Acme Corp", "enabled": true,
        "reseller": false, "vendor": false, "channelAdmin": false, "countryCode": "US", "phoneNumber": "555-0100",
        "emailAddress": "ops@acme.test", "website": "https://acme.test",
        "address": {"street1": "1 Main St", "street2": null, "city": "Springfield", "state": "IL", "zip": "62701", "country": "US"},
        "createdOn": 1700000000000i64});
    assert!(
        f.is_native(),
        "the filter is in the directly evaluated subset"
    );
    c.bench_function("jq transform: AppDirect company → V1 Company", |b| {
        b.iter(|| f.run(black_box(&company)).unwrap())
    });
    // The same filter through jaq (values converted in and out), as before the direct
    // evaluator and as any filter outside its subset still runs.
    c.bench_function(
        "jq transform: AppDirect company → V1 Company (jaq)",
        |b| b.iter(|| f.run_jaq(black_box(&company)).unwrap()),
    );
}

fn paging(c: &mut Criterion) {
    use rosetta::dialect::paging::{PageDefaults, Scheme, V1Token, parse_request};
    let token = V1Token {
        page: 2,
        page_size: 30,
        total_count: 35,
    };
    let encoded = token.encode();
    c.bench_function("paging: V1 token encode", |b| {
        b.iter(|| black_box(&token).encode())
    });
    c.bench_function("paging: V1 token decode", |b| {
        b.iter(|| V1Token::decode(black_box(&encoded)).unwrap())
    });
    let query = vec![
        ("maxResults".to_owned(), "30".to_owned()),
        ("pageToken".to_owned(), encoded.clone()),
        ("shouldReturnCount".to_owned(), "true".to_owned()),
    ];
    let defaults = PageDefaults::default();
    c.bench_function("paging: V1 parse_request with token", |b| {
        b.iter(|| parse_request(Scheme::RedapiV1, black_box(&query), &defaults).unwrap())
    });
}

/// The shipped filters of list routes, over pages of realistic size: these walk whole
/// arrays (filter, order, slice, one object per element), so a filter jaq runs pays for
/// converting every element in and every answer out.
fn list_filters(c: &mut Criterion) {
    let cfg = Config::load_with_env(Path::new("config/bench.toml"), Vec::new()).unwrap();
    let catalog = load_catalog(&cfg).unwrap();
    let route = |pack: &str, id: &str| {
        catalog
            .routes
            .iter()
            .find(|r| r.pack.name == pack && &*r.id == id)
            .unwrap_or_else(|| panic!("{pack}:{id}"))
            .clone()
    };
    let assoc = |i: usize| {
        json!({"id": format!("8c3e1f40-0000-4000-b000-{i:012}"),
            "resellerCompany": {"id": "6e0f3b4a-0000-4000-8000-000000000001", "name": "Northwind Distribution"},
            "customerCompany": {"id": format!("6e0f3b4a-0000-4000-8000-{i:012}"), "name": format!("Customer {:04}", (i * 7919) % 1000)},
            "createdOn": 1600086400000i64})
    };
    let company = |i: usize| {
        let mut v: serde_json::Value =
            serde_json::from_str(rosetta::demo::canned::COMPANY).unwrap();
        v["id"] = json!(format!("6e0f3b4a-0000-4000-8000-{i:012}"));
        v
    };

    let customers = route("redapi-v1-appdirect", "customers.list");
    let page_step = customers
        .plan
        .stages
        .iter()
        .flatten()
        .find(|s| s.name == "page")
        .unwrap();
    let page_filter = match &page_step.kind {
        rosetta::mapping::pack::StepKind::Compute(f) => f,
        rosetta::mapping::pack::StepKind::Call { .. } => unreachable!("a compute step"),
    };
    let assocs: Vec<_> = (0..500).map(assoc).collect();
    let ctx = json!({"steps": {"assocs": {"content": assocs}}, "query": {"orderBy": "asc"},
        "page": {"offset": 30, "size": 30}});
    c.bench_function(
        "list filter: V1 customers page (500 associations, ordered)",
        |b| b.iter(|| page_filter.run(black_box(&ctx)).unwrap()),
    );
    let response = customers.plan.response.jq.as_ref().unwrap();
    let ctx = json!({"steps": {"page": {"items": (0..30).map(assoc).collect::<Vec<_>>(), "total": 500},
        "customers": (0..30).map(company).collect::<Vec<_>>()}});
    c.bench_function("list filter: V1 customers answer (30 companies)", |b| {
        b.iter(|| response.run(black_box(&ctx)).unwrap())
    });

    let users = route("redapi-v1-appdirect", "users.list");
    let member = |i: usize| {
        json!({"user": {"id": format!("u-{i}"), "firstName": "Ada", "lastName": format!("Lovelace {i}"),
            "email": format!("ada{i}@example.test"), "createdOn": 1600086400000i64 + i as i64 * 1000, "activated": true},
            "roles": ["USER"], "company": {"id": "6e0f3b4a-0000-4000-8000-000000000002", "name": "Contoso Partners"},
            "enabled": true})
    };
    let ctx = json!({"steps": {"members": {"content": (0..30).map(member).collect::<Vec<_>>(),
        "page": {"totalElements": 30}}}});
    let response = users.plan.response.jq.as_ref().unwrap();
    c.bench_function("list filter: V1 users answer (30 memberships)", |b| {
        b.iter(|| response.run(black_box(&ctx)).unwrap())
    });

    let search = route("redapi-v1-longjump", "companies.search");
    let tenant = |i: usize| {
        json!({"id": format!("{}", 1000000000 + i), "name": format!("t{i}"), "company": format!("Tenant {i}"),
            "partner": {"@type": "", "@uri": "http://127.0.0.1/networking/rest/tenant/1000000001",
                "@displayValue": "Northwind Distribution", "#text": "1000000001"},
            "msp": "0", "active": "1", "email": "a@b.test", "city": "Sunnyvale"})
    };
    // The route's own step names: the first page and the fanned-out rest (none here).
    let ctx = json!({"steps": {"first": {"tenant": (0..30).map(tenant).collect::<Vec<_>>(),
        "totalRecordCount": "30"}, "rest": []}});
    let response = search.plan.response.jq.as_ref().unwrap();
    c.bench_function(
        "list filter: LongJump search → V1 page (30 tenants)",
        |b| b.iter(|| response.run(black_box(&ctx)).unwrap()),
    );
}

criterion_group!(
    benches,
    matching,
    templates,
    transform,
    paging,
    list_filters
);
criterion_main!(benches);
