//! What the filter plan's tests share: filters of every construct, inputs of every kind,
//! route contexts with the shipped packs' step answers, and the comparison with jaq.

use crate::mapping::jq::{JqError, JqFilter};
use crate::mapping::pack::{Fan, Points, Reader, Route, StepKind};
use proptest::prelude::*;
use serde_json::{Value, json};

/// When the filter runs on the plan, jaq answers the same; returns whether it does.
pub(super) fn agree(f: &JqFilter, input: &Value) -> bool {
    match f.run_native(input) {
        None => false,
        // Refused before jaq is handed it: jaq would count it out (or forever).
        Some(Err(JqError::Runtime(m))) if m.starts_with("range of more than") => true,
        Some(native) => {
            assert_eq!(native, f.run_jaq(input), "{f:?} on {input}");
            true
        }
    }
}

/// One filter per construct the evaluator translates, and some it must refuse.
pub(super) const CONSTRUCTS: &[&str] = &[
    ".",
    ".a",
    ".a.b",
    ".[0]",
    ".[-1]",
    ".a[1]",
    ".[]",
    ".[]?",
    ".a[]?",
    "[.[]?]",
    ".a?",
    ".a.b?",
    ".a?.b",
    ".[\"a\"]",
    ".[.c]",
    "{a: .a, b: .b}",
    "{a, b}",
    "{(.c): 1}",
    "{\"x y\": .a}",
    ".a as $v | {$v}",
    ".a // .b",
    ".a // \"x\"",
    "(.a, .b) // 3",
    "(.a, error) // 1",
    "[.a, .b]",
    "[.a, .b] | .[1]",
    ".a == .b",
    ".a != 1",
    ".a < .b",
    ".a >= \"m\"",
    ".a <= null",
    ".a > false",
    ".a and .b",
    ".a or .b",
    "(.a, .b) and (true, false)",
    "if .a then .b elif .c then 1 else 2 end",
    "if .a then .b end",
    "if (.a, .b) then 1 else 2 end",
    "try .a.b",
    "try (.a, .b.c, 3)",
    "(try .a.b) | .c",
    ".a?, .b",
    ".a as $x | .b | [$x, .]",
    "[.[]? | select(. != null)]",
    "map(type)",
    "[.[]? | tostring]",
    "\"x\\(.a)y\"",
    "\"\\(.a)-\\(.b)\"",
    ".a | length",
    ".a | not",
    ".a | ascii_downcase",
    ".a | ascii_upcase",
    ".a + .b",
    "null + .a",
    "[.a] + [.b]",
    "{a: 1} + .",
    ". + {a: 1}",
    "empty",
    "(.a | select(.)) // \"no\"",
    "[.a, empty, .b]",
    "{a: empty}",
    "{a: (1, 2)}",
    "[.[]?] | length",
    "[.a[]?, .b]",
    ".a | tostring | . == \"1\"",
    "{a: empty, b: .a.b}",
    "[{a: .c, b: empty}]",
    ".a.b | empty",
    "[.a[0][]?.c | empty]",
    ". as $c | [.[]? | $c.a]",
    ". as $c | [range(0; $c | length) as $i | $c[$i]]",
    "[range(0; 3)]",
    "[range(1; [.[]?] | length)]",
    "[range(.a; 3)]?",
    "[range([.[]?] | length)]",
    ".a / 1000",
    ".a / .b",
    "(.a / 2) == (.b / 2)",
    ".a / 1000 | floor",
    ".a | floor",
    "(.a + 1600086400000) / 1000 | floor | todate",
    ".a | todate",
    ".a | tonumber",
    "(.a // \"0\") | tonumber",
    "[.[]? | tostring] | join(\"/\")",
    ".a | join(\", \")",
    ".c as $s | [.a, .b] | join($s)",
    "[.a, .b] | map(select(. != null and . != \"\")) | join(\" \")",
    ".a | contains(\"a\")",
    ".a | contains(.b)?",
    "[.[]?] | sort_by(.a)",
    ".a | sort_by(.)",
    "[.[]?] | sort_by(.a // \"\" | tostring | ascii_downcase)",
    "[.[]?] | sort_by(.a, .b)",
    ".a | reverse",
    "[.[]?] | reverse",
    ".a[1:]",
    ".a[:2]",
    ".a[1:-1]",
    ".a[-2:]",
    ".a[.b:.c]",
    ".a[1:]?",
    "[.[]?] | .[1:] | length",
    "[.[]?] | max",
    ".a | max",
    "[.a, .b, 1] | max",
    ".a | add",
    "[.[]?] | add",
    "add // []",
    ".a | keys",
    "keys",
    "to_entries",
    ".a | to_entries",
    "to_entries[] | .key",
    ".a | from_entries",
    "[.[]? | {key: (.a // \"k\" | tostring), value: .b}] | from_entries",
    "[to_entries[]? | select(.value != null)] | from_entries",
    "[.[]?] | sort_by(.a) | reverse",
    "[.[]?] | if .[0] then sort_by(.a) else . end | reverse",
    "[.[]?] | if (.[0], true) then sort_by(.a) else reverse end",
    "[.[]?] | if .[0].a.b then . else reverse end | .[1:]",
    "try ([.[]?] | if (.[0] | length) > 0 then . else reverse end)",
    "[.[]?] | (if .[0] == null then sort_by(.b) else . end | {n: length, f: .[0]})",
    "[.a, .b] | reverse | reverse",
    "(.a as $x | .b) as $y | $y",
    "(.a as $x | [$x, .b]) as $y | {y: $y, c: .c}",
    "[.[]? | (. as $x | $x) as $y | [$y]]",
];

/// Filters the evaluator must leave to jaq.
pub(super) const OUTSIDE: &[&str] = &[
    "first(.a)",
    "reduce .[]? as $x (0; . + 1)",
    ".a - 1",
    ".a * 2",
    "1.5",
    "@json",
    "def f: .a; f",
    "..",
    "-.a",
    "-1.5",
    ".a |= 1",
    ". as [$x] | $x",
    "try .a catch 1",
    "def f(g): g; f(.a)",
];

/// Compiled once: compiling per generated input was most of the property's time.
pub(super) static COMPILED: std::sync::LazyLock<Vec<JqFilter>> = std::sync::LazyLock::new(|| {
    CONSTRUCTS
        .iter()
        .chain(OUTSIDE)
        .map(|code| JqFilter::compile(code).unwrap())
        .collect()
});

pub(super) fn arb_input() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-3i64..3).prop_map(|n| json!(n)),
        prop_oneof![Just(1.5), Just(2.0), Just(-0.5)].prop_map(|f| json!(f)),
        prop_oneof![
            Just(""),
            Just("1"),
            Just("0"),
            Just("a"),
            Just("b"),
            Just("É x")
        ]
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![Just("a"), Just("b"), Just("c"), Just("#text")],
                    inner
                ),
                0..4
            )
            .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}

/// Every filter of `route`: those over the context, and those over the quota's input or
/// one answer of a walk.
pub(super) fn filters(route: &Route) -> Vec<&JqFilter> {
    let mut out = context_filters(route);
    out.extend(route.pricing.settle.as_ref());
    match &route.pricing.points {
        Points::Jq(f) => out.push(f),
        Points::Const(_) => {}
    }
    out.extend(walk_children(route));
    out
}

/// The filters that find a walk's next nodes in one step answer.
pub(super) fn walk_children(route: &Route) -> Vec<&JqFilter> {
    let mut out = Vec::new();
    for step in route.plan.stages.iter().flatten() {
        match &step.kind {
            StepKind::Call {
                fan: Fan::Walk { children, .. },
                ..
            } => out.push(children),
            StepKind::Call {
                fan: Fan::One | Fan::ForEach { .. },
                ..
            }
            | StepKind::Compute(_) => {}
        }
    }
    out
}

/// Route contexts with the canned upstream answers under the step names packs use.
pub(super) fn contexts() -> Vec<Value> {
    let company: Value = serde_json::from_str(crate::demo::canned::COMPANY).unwrap();
    let assoc: Value = serde_json::from_str(crate::demo::canned::ASSOCIATIONS).unwrap();
    let tenant = crate::dialect::xml::xml_to_value(
        crate::demo::canned::TENANT.as_bytes(),
        &crate::dialect::xml::XmlRules::default()
            .unwrap("/platform")
            .array("/platform/tenant"),
    )
    .unwrap();
    let principal = json!({"user": "ann", "company": "northwind", "roles": ["PARTNER"]});
    let page = json!({"index": 0, "number": 1, "size": 2, "offset": 0, "want_total": true});
    let steps = json!({"company": company, "assoc": assoc, "tenant": tenant,
        "find": tenant, "list": tenant, "customers": [company], "page": {"items": assoc["content"], "total": 1}});
    // List routes' steps: several elements, names out of order and of mixed case
    // (search, order and paging), dates, a walk's answers.
    let named = |i: usize, name: &str| {
        let mut a = assoc["content"][0].clone();
        a["customerCompany"]["id"] = json!(format!("c{i}"));
        a["customerCompany"]["name"] = json!(name);
        a
    };
    let assocs: Vec<Value> = ["beta", "Alpha", "gamma", "alpha", "Delta"]
        .iter()
        .enumerate()
        .map(|(i, n)| named(i, n))
        .collect();
    let companies: Vec<Value> = (0..3)
        .map(|i| {
            let mut c = company.clone();
            c["id"] = json!(format!("c{i}"));
            c["name"] = json!(["Zeta", "alpha", "Beta"][i]);
            c
        })
        .collect();
    let tenants: Vec<Value> = (0..3)
        .map(|i| {
            let mut t = tenant["tenant"][0].clone();
            t["id"] = json!(format!("{}", 1000000010 + i));
            t["company"] = json!(["Zeta", "alpha", "Beta"][i]);
            t
        })
        .collect();
    let member = |i: i64| {
        json!({"user": {"id": format!("u{i}"), "firstName": "Ada", "lastName": if i == 1 { Value::Null } else { json!("Lovelace") },
            "email": "ada@example.test", "createdOn": 1600086400123i64 + i * 86_400_000, "activated": i != 2},
            "roles": if i == 0 { json!(["USER"]) } else { json!([]) }, "company": {"id": "c0", "name": "Zeta"}, "enabled": true})
    };
    let listing = json!({"tenant": tenants, "totalRecordCount": "3"});
    let lists = json!({
        "assocs": {"content": assocs, "page": {"totalElements": 5, "totalPages": 1}},
        "members": {"content": [member(0), member(1), member(2)], "page": {"totalElements": 3}},
        "list": listing, "all": listing, "matching": listing,
        "tree": [{"response": {"content": assocs, "tenant": tenants}},
            {"response": {"content": [], "tenant": []}}],
        "first": {"content": companies, "page": {"totalPages": 2}},
        "rest": [{"content": companies}],
        "customers": companies,
        "page": {"items": assocs[..3], "total": 5}});
    // The AppDirect search's steps: a page of companies and one association answer each.
    let search = json!({
        "list": {"content": companies, "page": {"totalElements": 7}},
        "assocs": [{"content": [named(0, "x")]}, {"content": []}, assoc]});
    let list_page = json!({"index": 1, "number": 2, "size": 2, "offset": 1, "want_total": true});
    let request = json!({"base_url": "http://gw.test"});
    vec![
        json!({"path": {"companyId": "1000000002"}, "query": {}, "body": null,
            "principal": principal, "page": page, "steps": steps}),
        json!({"path": {"companyId": "x"}, "query": {"search": "Con", "orderBy": "desc"},
            "body": {"tenant": {"company": "A", "active": "1", "is_partner": "true"}},
            "principal": principal, "steps": {}}),
        json!({"path": {}, "query": {}, "body": company, "principal": principal, "steps": steps}),
        json!({"path": {"companyId": "c0"}, "query": {"search": "A", "orderBy": "desc"},
            "principal": principal, "page": list_page, "request": request, "steps": lists}),
        json!({"path": {"companyId": "c0"}, "query": {"orderBy": "asc"},
            "principal": principal, "page": page, "request": request, "steps": lists}),
        json!({"path": {"companyId": "c0"}, "query": {},
            "principal": principal, "page": list_page, "request": request, "steps": lists}),
        json!({"path": {}, "query": {}, "principal": principal, "page": list_page,
            "request": request, "response": {"items": companies}, "steps": search}),
    ]
}

/// [`contexts`], each with values swapped by [`mutate`] from one `seed`.
pub(super) fn mutated_contexts(seed: u64) -> Vec<Value> {
    let mut seed = seed;
    contexts().iter().map(|c| mutate(c, &mut seed)).collect()
}

/// `v` with some of its values replaced (by `seed`'s choice) with values of other kinds:
/// null, empty or digit strings, numbers, booleans, empty containers.
pub(super) fn mutate(v: &Value, seed: &mut u64) -> Value {
    let mut next = || {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    };
    if next() % 5 == 0 {
        return match next() % 9 {
            0 => Value::Null,
            1 => json!(""),
            2 => json!("1"),
            3 => json!(0),
            4 => json!(1.5),
            5 => json!(true),
            6 => json!([]),
            7 => json!({}),
            _ => json!("true"),
        };
    }
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), mutate(v, seed)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(|v| mutate(v, seed)).collect()),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => v.clone(),
    }
}

/// `v` as `projection` keeps it, through its JSON text as an upstream would send it.
pub(super) fn projected(p: &crate::mapping::project::Projection, v: &Value) -> Value {
    p.parse(serde_json::to_string(v).unwrap().as_bytes())
        .unwrap()
}

/// The filters of `route` that run over the request's context (not over one answer, the
/// response or the quota's input).
pub(super) fn context_filters(route: &Route) -> Vec<&JqFilter> {
    let mut out = Vec::new();
    route.context_readers(|r| match r {
        Reader::Filter(f) => out.push(f),
        Reader::Template(_) => {}
    });
    out
}

pub(super) static SHIPPED: std::sync::LazyLock<crate::mapping::pack::Catalog> =
    std::sync::LazyLock::new(crate::mapping::pack::shipped_catalog);
