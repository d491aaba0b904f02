//! LongJump search parameters (seed 002) applied by Rosetta to a record set.
//!
//! A LongJump client asks `GET /networking/rest/tenant?fieldList=…&filter=…&sortBy=…&page=…`;
//! the upstream (AppDirect) can filter by little more than a name. So Rosetta parses the
//! whole request up front (a bad filter, an unknown field or sort order is a 400 before any
//! upstream call), hands the upstream what it can filter ([`pushdown`]), then filters, sorts,
//! pages and projects the upstream's records itself ([`apply`]). Pure functions over JSON.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use super::filter::{self, Expr, sort_cmp};
use crate::error::BadRequest;

/// What a search route declares: the record element and the fields a client may name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchSpec {
    /// Element name of one record (`tenant`).
    pub record: String,
    /// Every field a record has, in the order `*` returns them.
    pub fields: Vec<String>,
    /// `(field, key)`: when the filter implies `field` contains some text, it is offered to
    /// the route's upstream call as `{search.<key>}`.
    pub pushdown: Vec<(String, String)>,
}

/// Sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Ascending.
    Asc,
    /// Descending.
    Desc,
}

/// A parsed search request.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchQuery {
    /// The parsed `filter`; `None` keeps every record.
    pub filter: Option<Expr>,
    /// `None` is every field (`*` or no `fieldList`).
    pub fields: Option<Vec<String>>,
    /// Up to two sort keys, primary first.
    pub sort: Vec<(String, Order)>,
}

/// LongJump writes `sortBy='id'` and `sortOrder="desc"` in its own examples: one pair of
/// quotes around a value is decoration.
fn unquote(v: &str) -> &str {
    let v = v.trim();
    for q in ['\'', '"'] {
        if let Some(inner) = v.strip_prefix(q).and_then(|s| s.strip_suffix(q)) {
            return inner;
        }
    }
    v
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.trim().is_empty())
}

fn known<'a>(spec: &SearchSpec, param_name: &str, field: &'a str) -> Result<&'a str, BadRequest> {
    if spec.fields.iter().any(|f| f == field) {
        Ok(field)
    } else {
        Err(BadRequest::param(
            param_name,
            format!(
                "unknown field `{field}` in {param_name}; {} fields are {}",
                spec.record,
                spec.fields.join(", ")
            ),
        ))
    }
}

/// Parses `filter`, `fieldList`, `sortBy`/`sortOrder`, `sortBy2`/`sortOrder2`.
pub fn parse_search(
    spec: &SearchSpec,
    pairs: &[(String, String)],
) -> Result<SearchQuery, BadRequest> {
    let filter = match param(pairs, "filter") {
        None => None,
        Some(text) => {
            let expr = filter::parse(text)
                .map_err(|e| BadRequest::param("filter", format!("filter does not parse {e}")))?;
            for f in expr.fields() {
                known(spec, "filter", f)?;
            }
            Some(expr)
        }
    };
    let fields = match param(pairs, "fieldList").map(unquote) {
        None | Some("*") => None,
        Some(list) => {
            let mut out: Vec<String> = Vec::new();
            for f in list.split(',').map(str::trim).filter(|f| !f.is_empty()) {
                if f == "*" {
                    return Ok(SearchQuery {
                        filter,
                        fields: None,
                        sort: parse_sort(spec, pairs)?,
                    });
                }
                let f = known(spec, "fieldList", f)?;
                if !out.iter().any(|x| x == f) {
                    out.push(f.to_owned());
                }
            }
            Some(out)
        }
    };
    Ok(SearchQuery {
        filter,
        fields,
        sort: parse_sort(spec, pairs)?,
    })
}

fn parse_sort(
    spec: &SearchSpec,
    pairs: &[(String, String)],
) -> Result<Vec<(String, Order)>, BadRequest> {
    let mut sort = Vec::new();
    for (by, order) in [("sortBy", "sortOrder"), ("sortBy2", "sortOrder2")] {
        let dir = match param(pairs, order).map(unquote) {
            None => Order::Asc,
            Some(o) if o.eq_ignore_ascii_case("asc") => Order::Asc,
            Some(o) if o.eq_ignore_ascii_case("desc") => Order::Desc,
            Some(o) => {
                return Err(BadRequest::param(
                    order,
                    format!("{order} must be asc or desc, not `{o}`"),
                ));
            }
        };
        if let Some(field) = param(pairs, by).map(unquote) {
            sort.push((known(spec, by, field)?.to_owned(), dir));
        }
    }
    Ok(sort)
}

/// What the upstream call may filter for Rosetta: `{key: substring}` per declared pushdown.
pub fn pushdown(spec: &SearchSpec, q: &SearchQuery) -> Map<String, Value> {
    let mut out = Map::new();
    if let Some(f) = &q.filter {
        for (field, key) in &spec.pushdown {
            if let Some(s) = f.implied_substring(field) {
                out.insert(key.clone(), Value::String(s.to_owned()));
            }
        }
    }
    out
}

/// Filters, sorts, pages (`offset`, `size`) and projects `records`; each returned item is
/// `{<record>: {…}}`. Also returns how many records matched before paging.
pub fn apply(
    spec: &SearchSpec,
    q: &SearchQuery,
    records: Vec<Value>,
    offset: u64,
    size: u64,
) -> (Vec<Value>, u64) {
    let mut matched: Vec<Map<String, Value>> = records
        .into_iter()
        .filter_map(|r| match r {
            Value::Object(m) => Some(m),
            Value::Null
            | Value::Bool(_)
            | Value::Number(_)
            | Value::String(_)
            | Value::Array(_) => None,
        })
        .filter(|m| q.filter.as_ref().is_none_or(|f| f.matches(m)))
        .collect();
    let total = matched.len() as u64;
    if !q.sort.is_empty() {
        // Stable: records equal on every key keep the upstream's order.
        matched.sort_by(|a, b| {
            q.sort.iter().fold(Ordering::Equal, |acc, (field, order)| {
                acc.then_with(|| {
                    let o = sort_cmp(a.get(field), b.get(field));
                    match order {
                        Order::Asc => o,
                        Order::Desc => o.reverse(),
                    }
                })
            })
        });
    }
    let start = usize::try_from(offset).unwrap_or(usize::MAX);
    let take = usize::try_from(size).unwrap_or(usize::MAX);
    let page = matched
        .into_iter()
        .skip(start)
        .take(take)
        .map(|m| {
            let rec = match &q.fields {
                None => m,
                Some(fields) => {
                    let mut src = m;
                    fields
                        .iter()
                        .map(|f| (f.clone(), src.remove(f).unwrap_or(Value::Null)))
                        .collect()
                }
            };
            let mut wrap = Map::with_capacity(1);
            wrap.insert(spec.record.clone(), Value::Object(rec));
            Value::Object(wrap)
        })
        .collect();
    (page, total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn spec() -> SearchSpec {
        SearchSpec {
            record: "tenant".into(),
            fields: ["id", "company", "active", "msp", "partner"]
                .map(String::from)
                .to_vec(),
            pushdown: vec![("company".into(), "name".into())],
        }
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn records() -> Vec<Value> {
        vec![
            json!({"id": "1", "company": "Alpine", "active": true, "msp": false, "partner": {"#text": "9"}}),
            json!({"id": "2", "company": "birch", "active": false, "msp": false, "partner": {"#text": "9"}}),
            json!({"id": "10", "company": "Cedar", "active": true, "msp": true, "partner": null}),
            json!({"id": "3", "company": "alpine two", "active": true, "msp": false, "partner": {"#text": "8"}}),
        ]
    }

    fn ids(items: &[Value]) -> Vec<String> {
        items
            .iter()
            .map(|i| i["tenant"]["id"].as_str().unwrap_or("").to_owned())
            .collect()
    }

    #[test]
    fn filter_sort_page_project() {
        let q = parse_search(
            &spec(),
            &pairs(&[
                ("filter", "active equals 1"),
                ("fieldList", "id,company"),
                ("sortBy", "'company'"),
                ("sortOrder", "\"desc\""),
            ]),
        )
        .unwrap();
        let (items, total) = apply(&spec(), &q, records(), 0, 2);
        assert_eq!(total, 3);
        assert_eq!(ids(&items), ["10", "3"]);
        assert_eq!(
            items[0],
            json!({"tenant": {"id": "10", "company": "Cedar"}})
        );
        let (items, _) = apply(&spec(), &q, records(), 2, 2);
        assert_eq!(ids(&items), ["1"]);
    }

    #[test]
    fn two_sort_keys_numbers_numerically() {
        let q = parse_search(
            &spec(),
            &pairs(&[("sortby", "msp"), ("sortBy2", "id"), ("sortOrder2", "desc")]),
        )
        .unwrap();
        let (items, total) = apply(&spec(), &q, records(), 0, 10);
        assert_eq!(total, 4);
        assert_eq!(ids(&items), ["3", "2", "1", "10"]);
        let q = parse_search(&spec(), &pairs(&[("sortBy", "id")])).unwrap();
        assert_eq!(
            ids(&apply(&spec(), &q, records(), 0, 10).0),
            ["1", "2", "3", "10"]
        );
    }

    #[test]
    fn star_and_absent_field_lists_return_everything() {
        for p in [
            pairs(&[]),
            pairs(&[("fieldList", "*")]),
            pairs(&[("fieldList", "id,*")]),
        ] {
            let q = parse_search(&spec(), &p).unwrap();
            assert_eq!(q.fields, None);
            let (items, _) = apply(&spec(), &q, records(), 0, 1);
            assert_eq!(items[0]["tenant"], records()[0]);
        }
    }

    #[test]
    fn rejections_name_the_parameter() {
        let cases = [
            (
                vec![("fieldList", "id,secret")],
                "fieldList",
                "unknown field `secret`",
            ),
            (
                vec![("filter", "secret equals 'x'")],
                "filter",
                "unknown field `secret`",
            ),
            (
                vec![("filter", "company is 'x'")],
                "filter",
                "at position 9",
            ),
            (vec![("sortBy", "nope")], "sortBy", "unknown field"),
            (
                vec![("sortBy", "id"), ("sortOrder", "up")],
                "sortOrder",
                "asc or desc",
            ),
        ];
        for (p, name, msg) in cases {
            let e = parse_search(&spec(), &pairs(&p)).unwrap_err();
            assert_eq!(e.parameter.as_deref(), Some(name), "{p:?}");
            assert!(e.detail.contains(msg), "{p:?}: {}", e.detail);
        }
    }

    #[test]
    fn pushdown_only_what_the_filter_implies() {
        let q = |f: &str| parse_search(&spec(), &pairs(&[("filter", f)])).unwrap();
        assert_eq!(
            pushdown(&spec(), &q("company contains 'alp' AND active equals 1")),
            json!({"name": "alp"}).as_object().unwrap().clone()
        );
        assert!(pushdown(&spec(), &q("company contains 'alp' OR active equals 1")).is_empty());
    }

    proptest! {
        /// Walking the pages of any filtered, sorted set returns every match exactly once.
        #[test]
        fn pages_cover_the_matches_exactly_once(n in 0usize..60, size in 1u64..9, cut in 0i64..60) {
            let recs: Vec<Value> = (0..n).map(|i| json!({"id": i.to_string(), "company": format!("c{}", (i * 7) % 13), "active": true, "msp": false, "partner": null})).collect();
            let q = parse_search(&spec(), &pairs(&[("filter", &format!("id greater than equals {cut}")), ("sortBy", "company"), ("sortBy2", "id")])).unwrap();
            let (_, total) = apply(&spec(), &q, recs.clone(), 0, u64::MAX);
            let mut seen = Vec::new();
            let mut offset = 0;
            loop {
                let (page, t) = apply(&spec(), &q, recs.clone(), offset, size);
                prop_assert_eq!(t, total);
                if page.is_empty() { break; }
                seen.extend(ids(&page));
                offset += size;
            }
            let mut expected: Vec<String> = (0..n).filter(|i| *i as i64 >= cut).map(|i| i.to_string()).collect();
            prop_assert_eq!(seen.len() as u64, total);
            seen.sort();
            expected.sort();
            prop_assert_eq!(seen, expected);
        }
    }
}
