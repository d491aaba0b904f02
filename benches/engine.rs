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

mod fixtures;

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
    let f = JqFilter::compile(fixtures::COMPANY_TRANSFORM).unwrap();
    let company = fixtures::appdirect_company();
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
        next: None,
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
    let catalog = fixtures::bench_catalog();
    let customers = fixtures::route(&catalog, "redapi-v1-appdirect", "customers.list");
    let page_filter = fixtures::compute_step(&customers, "page");
    let ctx = fixtures::customers_page_ctx();
    c.bench_function(
        "list filter: V1 customers page (500 associations, ordered)",
        |b| b.iter(|| page_filter.run(black_box(&ctx)).unwrap()),
    );
    let response = customers.plan.response.jq.as_ref().unwrap();
    let ctx = fixtures::customers_answer_ctx();
    c.bench_function("list filter: V1 customers answer (30 companies)", |b| {
        b.iter(|| response.run(black_box(&ctx)).unwrap())
    });

    let users = fixtures::route(&catalog, "redapi-v1-appdirect", "users.list");
    let ctx = fixtures::users_answer_ctx();
    let response = users.plan.response.jq.as_ref().unwrap();
    c.bench_function("list filter: V1 users answer (30 memberships)", |b| {
        b.iter(|| response.run(black_box(&ctx)).unwrap())
    });

    let search = fixtures::route(&catalog, "redapi-v1-longjump", "companies.search");
    let ctx = fixtures::longjump_search_ctx();
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
