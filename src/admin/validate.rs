//! Seed 003's field rules as pure functions: JSON in, a typed record or a 400 naming the field.

use serde_json::{Map, Value};

use crate::error::BadRequest;
use crate::store::{Company, ListQuery, User, UserGroup};

/// The roles a user may hold.
pub const ROLES: [&str; 4] = ["ADMIN", "PARTNER", "USER", "AUDITOR"];

/// `\w+`: letters, digits and `_`.
pub fn is_word(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_')
}

fn len_in(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.chars().count())
}

/// A `\w+` key of `min..=max` characters.
pub fn word(field: &str, v: &str, min: usize, max: usize) -> Result<(), BadRequest> {
    if !len_in(v, min, max) {
        return Err(BadRequest::param(
            field,
            format!("{field} must be {min} to {max} characters"),
        ));
    }
    if !is_word(v) {
        return Err(BadRequest::param(
            field,
            format!("{field} may contain only letters, digits and `_`"),
        ));
    }
    Ok(())
}

fn object<'a>(body: &'a Value, what: &str) -> Result<&'a Map<String, Value>, BadRequest> {
    body.as_object()
        .ok_or_else(|| BadRequest::new(format!("the body must be a {what} object")))
}

fn only(m: &Map<String, Value>, allowed: &[&str]) -> Result<(), BadRequest> {
    match m.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(BadRequest::param(
            k,
            format!("unknown field `{k}`; fields are {}", allowed.join(", ")),
        )),
        None => Ok(()),
    }
}

fn required_str<'a>(m: &'a Map<String, Value>, field: &str) -> Result<&'a str, BadRequest> {
    match m.get(field) {
        Some(Value::String(s)) => Ok(s),
        Some(Value::Null) | None => Err(BadRequest::param(field, format!("{field} is required"))),
        Some(_) => Err(BadRequest::param(
            field,
            format!("{field} must be a string"),
        )),
    }
}

/// An optional string of `min..=max` characters (null allowed).
fn opt_str(
    m: &Map<String, Value>,
    field: &str,
    min: usize,
    max: usize,
) -> Result<Option<String>, BadRequest> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if len_in(s, min, max) => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(BadRequest::param(
            field,
            format!("{field} must be {min} to {max} characters"),
        )),
        Some(_) => Err(BadRequest::param(
            field,
            format!("{field} must be a string or null"),
        )),
    }
}

fn opt_bool(m: &Map<String, Value>, field: &str, default: bool) -> Result<bool, BadRequest> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(BadRequest::param(
            field,
            format!("{field} must be a boolean"),
        )),
    }
}

/// A company from a create or update body.
pub fn company(body: &Value) -> Result<Company, BadRequest> {
    let m = object(body, "company")?;
    only(m, &["key", "detail", "enabled"])?;
    let key = required_str(m, "key")?;
    word("key", key, 3, 256)?;
    Ok(Company {
        key: key.to_owned(),
        detail: opt_str(m, "detail", 0, 1024)?,
        enabled: opt_bool(m, "enabled", true)?,
    })
}

/// A user and the password given (if any) from a create or update body.
pub fn user(body: &Value) -> Result<(User, Option<String>), BadRequest> {
    let m = object(body, "user")?;
    only(
        m,
        &[
            "username",
            "password",
            "name",
            "email",
            "phone",
            "company_key",
            "enabled",
            "roles",
            "timezone",
        ],
    )?;
    let username = required_str(m, "username")?;
    word("username", username, 2, 256)?;
    let password = opt_str(m, "password", 5, 256)?;
    let email = opt_str(m, "email", 5, 256)?;
    if let Some(e) = &email {
        let ok = e.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !e.contains(char::is_whitespace)
        });
        if !ok {
            return Err(BadRequest::param("email", "email must be an email address"));
        }
    }
    let company_key = required_str(m, "company_key")?;
    word("company_key", company_key, 3, 256)?;
    let roles = match m.get("roles") {
        Some(Value::Array(a)) => a,
        Some(Value::Null) | None => return Err(BadRequest::param("roles", "roles is required")),
        Some(_) => return Err(BadRequest::param("roles", "roles must be an array")),
    };
    if roles.len() > 2 {
        return Err(BadRequest::param("roles", "roles holds at most 2 items"));
    }
    let mut out_roles: Vec<String> = Vec::new();
    for r in roles {
        let Some(r) = r.as_str().filter(|r| ROLES.contains(r)) else {
            return Err(BadRequest::param(
                "roles",
                format!("roles must be among {}", ROLES.join(", ")),
            ));
        };
        if out_roles.iter().any(|x| x == r) {
            return Err(BadRequest::param("roles", "roles must be unique"));
        }
        out_roles.push(r.to_owned());
    }
    let timezone = match m.get("timezone") {
        None | Some(Value::Null) => 0,
        Some(Value::Number(n)) => match n.as_i64() {
            Some(t) if (-12..=12).contains(&t) => t as i32,
            Some(_) | None => {
                return Err(BadRequest::param(
                    "timezone",
                    "timezone must be an integer from -12 to 12",
                ));
            }
        },
        Some(_) => {
            return Err(BadRequest::param(
                "timezone",
                "timezone must be an integer from -12 to 12",
            ));
        }
    };
    Ok((
        User {
            username: username.to_owned(),
            name: opt_str(m, "name", 2, 256)?,
            email,
            phone: opt_str(m, "phone", 5, 32)?,
            company_key: company_key.to_owned(),
            enabled: opt_bool(m, "enabled", true)?,
            roles: out_roles,
            timezone,
        },
        password,
    ))
}

/// The quota limits a method group may carry (seed 003); each optional, a whole number.
pub const QUOTA_LIMITS: [&str; 4] = [
    "points_per_request",
    "points_per_day",
    "points_per_date_window",
    "max_concurrent_execution",
];

/// A base quota (no `from`/`to`) has no window for `points_per_date_window` to count over:
/// it is refused, naming the field, rather than stored and never applied.
pub fn no_date_window_limit(services: &Value) -> Result<(), BadRequest> {
    let named = services
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["methods"].as_array())
        .flatten()
        .any(|m| {
            m.get("points_per_date_window")
                .is_some_and(|v| !v.is_null())
        });
    if named {
        return Err(BadRequest::param(
            "points_per_date_window",
            "points_per_date_window counts over a dated window: set it with from and to",
        ));
    }
    Ok(())
}

/// Seed 003's quota request `{services: [{service, methods: [{method_group, …limits}]}]}`:
/// 1..100 services, each named once, each method group named once per service.
pub fn quotas(body: &Value) -> Result<Value, BadRequest> {
    let m = object(body, "quota")?;
    only(m, &["services"])?;
    let Some(Value::Array(services)) = m.get("services") else {
        return Err(BadRequest::param("services", "services must be an array"));
    };
    if services.is_empty() || services.len() > 100 {
        return Err(BadRequest::param(
            "services",
            "services holds 1 to 100 items",
        ));
    }
    let mut seen: Vec<&str> = Vec::new();
    let mut out = Vec::with_capacity(services.len());
    for s in services {
        let s = s
            .as_object()
            .ok_or_else(|| BadRequest::param("services", "each service must be an object"))?;
        only(s, &["service", "methods"])?;
        let name = required_str(s, "service")?;
        if !len_in(name, 1, 64) || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(BadRequest::param(
                "service",
                "service must be 1 to 64 letters, digits or `_`",
            ));
        }
        if seen.contains(&name) {
            return Err(BadRequest::param(
                "services",
                format!("service `{name}` is listed twice"),
            ));
        }
        seen.push(name);
        let Some(Value::Array(methods)) = s.get("methods") else {
            return Err(BadRequest::param("methods", "methods must be an array"));
        };
        let mut groups: Vec<&str> = Vec::new();
        let mut out_methods = Vec::with_capacity(methods.len());
        for mg in methods {
            let mg = mg
                .as_object()
                .ok_or_else(|| BadRequest::param("methods", "each method must be an object"))?;
            let mut allowed = vec!["method_group"];
            allowed.extend(QUOTA_LIMITS);
            only(mg, &allowed)?;
            let group = required_str(mg, "method_group")?;
            if !len_in(group, 1, 64) || !group.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
                return Err(BadRequest::param(
                    "method_group",
                    "method_group must be an upper-case name such as READ",
                ));
            }
            if groups.contains(&group) {
                return Err(BadRequest::param(
                    "methods",
                    format!("method_group `{group}` is listed twice"),
                ));
            }
            groups.push(group);
            let mut o = Map::new();
            o.insert("method_group".into(), Value::String(group.to_owned()));
            for limit in QUOTA_LIMITS {
                match mg.get(limit) {
                    None | Some(Value::Null) => {}
                    Some(Value::Number(n)) if n.as_u64().is_some_and(|v| v <= 1_000_000_000) => {
                        o.insert(limit.into(), Value::Number(n.clone()));
                    }
                    Some(_) => {
                        return Err(BadRequest::param(
                            limit,
                            format!("{limit} must be a whole number from 0 to 1000000000"),
                        ));
                    }
                }
            }
            out_methods.push(Value::Object(o));
        }
        let mut so = Map::new();
        so.insert("service".into(), Value::String(name.to_owned()));
        so.insert("methods".into(), Value::Array(out_methods));
        out.push(Value::Object(so));
    }
    Ok(Value::Array(out))
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn int_param(
    pairs: &[(String, String)],
    name: &str,
    min: u32,
    max: u32,
    default: u32,
) -> Result<u32, BadRequest> {
    match param(pairs, name) {
        None => Ok(default),
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| {
                BadRequest::param(
                    name,
                    format!("{name} must be an integer from {min} to {max}"),
                )
            }),
    }
}

/// Most items one admin list answers (`limit`): a page is built in memory and its query
/// holds the store, which authentication shares.
pub const MAX_LIMIT: u32 = 1000;

/// Longest period one audit or statistics query spans, in days.
pub const MAX_PERIOD_DAYS: i64 = 366;

/// Seed 003's list parameters; `sortable` are the fields `sort_field` may name.
pub fn list(pairs: &[(String, String)], sortable: &[&str]) -> Result<ListQuery, BadRequest> {
    let offset = int_param(pairs, "offset", 0, 10_000_000, 0)?;
    let limit = int_param(pairs, "limit", 1, MAX_LIMIT, 100)?;
    let filter = match param(pairs, "filter") {
        None => None,
        Some(f) if len_in(f, 1, 64) => Some(f.to_owned()),
        Some(_) => {
            return Err(BadRequest::param(
                "filter",
                "filter must be 1 to 64 characters",
            ));
        }
    };
    let sort_field = match param(pairs, "sort_field") {
        None => None,
        Some(f) if sortable.contains(&f) => Some(f.to_owned()),
        Some(f) => {
            return Err(BadRequest::param(
                "sort_field",
                format!(
                    "cannot sort by `{f}`; sortable fields are {}",
                    sortable.join(", ")
                ),
            ));
        }
    };
    let descending = match param(pairs, "sort_direction") {
        None => false,
        Some(d) if d.eq_ignore_ascii_case("ASC") => false,
        Some(d) if d.eq_ignore_ascii_case("DESC") => true,
        Some(_) => {
            return Err(BadRequest::param(
                "sort_direction",
                "sort_direction must be ASC or DESC",
            ));
        }
    };
    Ok(ListQuery {
        offset,
        limit,
        filter,
        sort_field,
        descending,
    })
}

/// Seed 003's `user_group`.
pub fn user_group(pairs: &[(String, String)]) -> Result<UserGroup, BadRequest> {
    match param(pairs, "user_group") {
        None => Ok(UserGroup::Total),
        Some(g) if g.eq_ignore_ascii_case("TOTAL") => Ok(UserGroup::Total),
        Some(g) if g.eq_ignore_ascii_case("ACTIVE") => Ok(UserGroup::Active),
        Some(g) if g.eq_ignore_ascii_case("BLOCKED") => Ok(UserGroup::Blocked),
        Some(g) if g.eq_ignore_ascii_case("ADMINS") => Ok(UserGroup::Admins),
        Some(_) => Err(BadRequest::param(
            "user_group",
            "user_group must be TOTAL, ACTIVE, BLOCKED or ADMINS",
        )),
    }
}

/// An optional `\w+` query parameter.
pub fn word_param(
    pairs: &[(String, String)],
    name: &str,
    min: usize,
    max: usize,
) -> Result<Option<String>, BadRequest> {
    match param(pairs, name) {
        None => Ok(None),
        Some(v) => word(name, v, min, max).map(|()| Some(v.to_owned())),
    }
}

/// An optional free-text query parameter of `min..=max` characters.
pub fn text_param(
    pairs: &[(String, String)],
    name: &str,
    min: usize,
    max: usize,
) -> Result<Option<String>, BadRequest> {
    match param(pairs, name) {
        None => Ok(None),
        Some(v) if len_in(v, min, max) => Ok(Some(v.to_owned())),
        Some(_) => Err(BadRequest::param(
            name,
            format!("{name} must be {min} to {max} characters"),
        )),
    }
}

/// Checks the audit's `from_ms..to_ms` (epoch milliseconds, defaults applied): in order
/// when the client named either end, and at most [`MAX_PERIOD_DAYS`] long.
pub fn period(pairs: &[(String, String)], from_ms: i64, to_ms: i64) -> Result<(), BadRequest> {
    let named = param(pairs, "from").is_some() || param(pairs, "to").is_some();
    if named && from_ms > to_ms {
        return Err(BadRequest::param("from", "from must not be after to"));
    }
    if to_ms.saturating_sub(from_ms) > MAX_PERIOD_DAYS * 86_400_000 {
        return Err(BadRequest::param(
            "to",
            format!("a period spans at most {MAX_PERIOD_DAYS} days"),
        ));
    }
    Ok(())
}

/// An optional RFC 3339 date-time parameter, as epoch milliseconds.
pub fn time_param(pairs: &[(String, String)], name: &str) -> Result<Option<i64>, BadRequest> {
    match param(pairs, name) {
        None => Ok(None),
        Some(v) => time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
            .map(|t| Some((t.unix_timestamp_nanos() / 1_000_000) as i64))
            .map_err(|_| {
                BadRequest::param(
                    name,
                    format!(
                        "{name} must be an ISO 8601 date-time such as 2024-02-21T09:30:00+03:00"
                    ),
                )
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field_of(r: Result<impl Sized, BadRequest>) -> String {
        match r {
            Ok(_) => "ok".into(),
            Err(e) => e.parameter.unwrap_or_default(),
        }
    }

    fn valid_user() -> Value {
        json!({"username": "ann_1", "password": "secret", "name": "Ann", "email": "a@b.co",
               "phone": "+12345", "company_key": "acme", "enabled": true, "roles": ["ADMIN"], "timezone": 3})
    }

    #[test]
    fn every_user_rule_names_its_field() {
        assert_eq!(field_of(user(&valid_user())), "ok");
        let cases: Vec<(&str, Value, &str)> = vec![
            ("username", json!("a"), "username"),
            ("username", json!("has space"), "username"),
            ("username", json!("x".repeat(257)), "username"),
            ("password", json!("1234"), "password"),
            ("name", json!("A"), "name"),
            ("email", json!("not-an-email"), "email"),
            ("email", json!("a@b"), "email"),
            ("phone", json!("1234"), "phone"),
            ("phone", json!("1".repeat(33)), "phone"),
            ("company_key", json!("ab"), "company_key"),
            ("company_key", json!("a-b-c"), "company_key"),
            ("enabled", json!("yes"), "enabled"),
            ("roles", json!(["ADMIN", "USER", "PARTNER"]), "roles"),
            ("roles", json!(["ROOT"]), "roles"),
            ("roles", json!(["USER", "USER"]), "roles"),
            ("roles", json!("ADMIN"), "roles"),
            ("timezone", json!(13), "timezone"),
            ("timezone", json!(-13), "timezone"),
            ("timezone", json!(1.5), "timezone"),
            ("extra", json!(1), "extra"),
        ];
        for (field, value, named) in cases {
            let mut u = valid_user();
            u[field] = value.clone();
            assert_eq!(field_of(user(&u)), named, "{field} = {value}");
        }
        for missing in ["username", "company_key", "roles"] {
            let mut u = valid_user();
            u.as_object_mut().unwrap().remove(missing);
            assert_eq!(field_of(user(&u)), missing);
        }
        let (u, pw) = user(&json!({"username": "bo", "company_key": "acme", "roles": []})).unwrap();
        assert!(u.enabled && u.timezone == 0 && pw.is_none());
    }

    #[test]
    fn company_rules() {
        assert_eq!(
            field_of(company(&json!({"key": "my_company", "detail": null}))),
            "ok"
        );
        assert_eq!(field_of(company(&json!({"key": "ab"}))), "key");
        assert_eq!(field_of(company(&json!({"key": "a.b.c"}))), "key");
        assert_eq!(
            field_of(company(&json!({"key": "abc", "detail": "x".repeat(1025)}))),
            "detail"
        );
        assert_eq!(field_of(company(&json!({"detail": "x"}))), "key");
        assert_eq!(
            field_of(company(&json!({"key": "abc", "owner": 1}))),
            "owner"
        );
    }

    #[test]
    fn quota_rules() {
        let ok = json!({"services": [{"service": "UNIVERSAL", "methods": [{"method_group": "PLAN",
                 "points_per_request": 15, "points_per_day": 1500, "points_per_date_window": 1500, "max_concurrent_execution": 5}]}]});
        assert_eq!(field_of(quotas(&ok)), "ok");
        let cases = [
            (json!({"services": []}), "services"),
            (
                json!({"services": [{"service": "A", "methods": []}, {"service": "A", "methods": []}]}),
                "services",
            ),
            (
                json!({"services": [{"service": "bad name", "methods": []}]}),
                "service",
            ),
            (
                json!({"services": [{"service": "A", "methods": [{"method_group": "read"}]}]}),
                "method_group",
            ),
            (
                json!({"services": [{"service": "A", "methods": [{"method_group": "R"}, {"method_group": "R"}]}]}),
                "methods",
            ),
            (
                json!({"services": [{"service": "A", "methods": [{"method_group": "R", "points_per_day": -1}]}]}),
                "points_per_day",
            ),
            (
                json!({"services": [{"service": "A", "methods": [{"method_group": "R", "max_concurrent_execution": 1.5}]}]}),
                "max_concurrent_execution",
            ),
            (
                json!({"services": [{"service": "A", "methods": [{"method_group": "R", "burst": 1}]}]}),
                "burst",
            ),
            (json!({"base": {}}), "base"),
        ];
        for (body, field) in cases {
            assert_eq!(field_of(quotas(&body)), field, "{body}");
        }
    }

    #[test]
    fn list_parameters() {
        let p = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        let q = list(&p(&[]), &["key"]).unwrap();
        assert_eq!((q.offset, q.limit, q.descending), (0, 100, false));
        assert_eq!(
            list(&p(&[("limit", "1000")]), &["key"]).unwrap().limit,
            1000
        );
        let e = list(&p(&[("limit", "1001")]), &["key"]).unwrap_err();
        assert!(e.detail.contains("1 to 1000"), "{}", e.detail);
        for (k, v) in [
            ("offset", "-1"),
            ("offset", "10000001"),
            ("limit", "0"),
            ("limit", "1001"),
            ("limit", "x"),
            ("filter", ""),
            ("sort_field", "password"),
            ("sort_direction", "UP"),
        ] {
            assert_eq!(field_of(list(&p(&[(k, v)]), &["key"])), k, "{k}={v}");
        }
        assert_eq!(
            field_of(user_group(&p(&[("user_group", "ALL")]))),
            "user_group"
        );
        assert_eq!(
            field_of(time_param(&p(&[("from", "yesterday")]), "from")),
            "from"
        );
        assert_eq!(
            time_param(&p(&[("from", "1970-01-01T00:00:01Z")]), "from").unwrap(),
            Some(1000)
        );
        let day = 86_400_000;
        assert!(period(&p(&[]), 0, 366 * day).is_ok());
        let e = period(&p(&[("from", "x")]), 0, 366 * day + 1).unwrap_err();
        assert_eq!(
            (e.parameter.as_deref(), e.detail.contains("366 days")),
            (Some("to"), true)
        );
        assert_eq!(field_of(period(&p(&[("to", "x")]), 2, 1)), "from");
        assert!(
            period(&p(&[]), 2, 1).is_ok(),
            "defaults alone are not the client's"
        );
        let id = "3f2c-9a/é";
        assert_eq!(
            text_param(&p(&[("company", id)]), "company", 1, 256).unwrap(),
            Some(id.to_owned())
        );
        assert_eq!(text_param(&p(&[]), "company", 1, 256).unwrap(), None);
        let long = "é".repeat(257);
        for bad in ["", long.as_str()] {
            assert_eq!(
                field_of(text_param(&p(&[("company", bad)]), "company", 1, 256)),
                "company"
            );
        }
        assert!(text_param(&p(&[("company", &long[..512])]), "company", 1, 256).is_ok());
    }

    #[test]
    fn the_openapi_document_declares_the_list_caps() {
        let doc: Value = serde_json::from_str(super::super::routes::OPENAPI).unwrap();
        let mut limits = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                for p in op["parameters"].as_array().into_iter().flatten() {
                    if p["name"] == "limit" {
                        limits += 1;
                        assert_eq!(p["schema"]["maximum"], MAX_LIMIT, "{method} {path}");
                        assert_eq!(p["schema"]["minimum"], 1, "{method} {path}");
                    }
                }
            }
        }
        assert_eq!(limits, 3, "companies, users and audit are the paged lists");
    }
}
