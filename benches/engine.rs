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

criterion_group!(benches, matching, templates, transform, paging);
criterion_main!(benches);
