//! The sample LongJump backend (seed 002): the `tenant` resource, in XML.
//!
//! Tenants mirror the AppDirect sample's hierarchy (ids `10000000NN`, `name` = the company
//! key), so the same story can be told through both packs. Search runs the real filter
//! grammar ([`crate::dialect::filter`]) so a test can see exactly what expression a gateway
//! sent: an injected condition would show up here as a second field in the parsed filter.

use parking_lot::Mutex;

use serde_json::{Map, Value, json};

use super::data::company_rows;
use super::{Answer, Inbound};
use crate::dialect::longjump::decode;
use crate::dialect::search::{SearchSpec, apply, parse_search};
use http::Method;

/// Id of company number `n` of the shared seed.
pub fn tenant_id(n: u32) -> String {
    format!("{}", 1_000_000_000u64 + u64::from(n))
}

/// The fields a tenant record has, in document order.
pub const FIELDS: &[&str] = &[
    "id",
    "object_id",
    "name",
    "company",
    "partner",
    "msp",
    "active",
    "email",
    "phone",
    "country",
    "city",
    "street",
    "state",
    "zip",
    "number",
    "start_date",
    "date_modified",
];

/// The backend's tenants (partner stored as the bare id).
#[derive(Debug)]
pub struct Tenants {
    /// The tenant records, in insertion order.
    pub rows: Vec<Map<String, Value>>,
    next: u64,
}

/// The seeded tenants.
pub fn seed() -> Tenants {
    let rows = company_rows()
        .into_iter()
        .enumerate()
        .map(|(i, (n, name, key, reseller, enabled, parent))| {
            let id = tenant_id(n);
            let date = format!("2024-01-{:02}T10:00:00Z", i + 1);
            let obj = json!({
                "id": id, "object_id": format!("{:032x}", 0x8c5b_3498_u64 * 1000 + u64::from(n)),
                "name": key, "company": name,
                "partner": parent.map(tenant_id).unwrap_or_default(),
                "msp": if reseller { "1" } else { "0" }, "active": if enabled { "1" } else { "0" },
                "email": format!("admin@{key}.example"), "phone": format!("650-555-01{n:02}"),
                "country": "United States", "city": "Sunnyvale", "street": format!("{n} Midas Way"),
                "state": "CA", "zip": "94085", "number": format!("{}", 1_742_261_000 + n),
                "start_date": date, "date_modified": date,
            });
            match obj {
                Value::Object(m) => m,
                Value::Null
                | Value::Bool(_)
                | Value::Number(_)
                | Value::String(_)
                | Value::Array(_) => Map::new(),
            }
        })
        .collect();
    Tenants { rows, next: 100 }
}

fn message(code: i32, description: &str) -> Value {
    json!({"message": {"code": code, "description": description}})
}

fn not_found(id: &str) -> Answer {
    (
        404,
        message(-200, &format!("Invalid object or record id: {id}")),
    )
}

fn bad_request(description: &str) -> Answer {
    (400, message(-300, description))
}

/// The record as the API shows it: `partner` as a lookup with `type`, `uri`, `displayValue`.
fn render(t: &Tenants, row: &Map<String, Value>, base: &str) -> Value {
    let mut out = row.clone();
    let pid = row.get("partner").and_then(Value::as_str).unwrap_or("");
    let partner = if pid.is_empty() {
        json!({"@type": "", "@uri": "", "@displayValue": ""})
    } else {
        let name = t
            .rows
            .iter()
            .find(|r| r["id"] == pid)
            .and_then(|r| r["company"].as_str())
            .unwrap_or("");
        json!({"@type": "", "@uri": format!("{base}/networking/rest/tenant/{pid}"), "@displayValue": name, "#text": pid})
    };
    out.insert("partner".into(), partner);
    Value::Object(out)
}

/// Handles one request.
pub fn handle(state: &Mutex<Tenants>, req: &Inbound) -> Answer {
    let mut t = state.lock();
    let base = format!(
        "http://{}",
        req.headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost")
    );
    let segs: Vec<&str> = req.segments.iter().map(String::as_str).collect();
    match (&req.method, segs.as_slice()) {
        (&Method::GET, ["networking", "rest", "tenant"]) => search(&t, req, &base),
        (&Method::POST, ["networking", "rest", "tenant"]) => create(&mut t, req),
        (&Method::GET, ["networking", "rest", "tenant", id]) => {
            match t.rows.iter().find(|r| r["id"] == *id) {
                Some(row) => (200, json!({"tenant": render(&t, row, &base)})),
                None => not_found(id),
            }
        }
        (&Method::PUT, ["networking", "rest", "tenant", id]) => update(&mut t, id, req),
        (&Method::DELETE, ["networking", "rest", "tenant", id]) => {
            match t.rows.iter().position(|r| r["id"] == *id) {
                Some(pos) => {
                    t.rows.remove(pos);
                    (200, message(0, "Success"))
                }
                None => not_found(id),
            }
        }
        _ => (404, message(-200, "no such resource")),
    }
}

fn body(req: &Inbound) -> Result<Map<String, Value>, Answer> {
    let doc = decode(&req.body, 64).map_err(|e| (400, message(-4601, &e.detail)))?;
    match doc.get("tenant") {
        Some(Value::Object(m)) => Ok(m.clone()),
        Some(_) | None => Err(bad_request(
            "the body must be <platform><tenant>…</tenant></platform>",
        )),
    }
}

/// Copies the writable fields of `b` into `row`; a named partner must exist.
fn assign(t: &Tenants, row: &mut Map<String, Value>, b: &Map<String, Value>) -> Result<(), Answer> {
    for (k, v) in b {
        let text = match v {
            Value::String(s) => s.trim().to_owned(),
            Value::Null => String::new(),
            other @ (Value::Bool(_) | Value::Number(_) | Value::Array(_) | Value::Object(_)) => {
                other.to_string()
            }
        };
        match k.as_str() {
            "partner" => {
                if !text.is_empty() && !t.rows.iter().any(|r| r["id"] == text.as_str()) {
                    return Err(bad_request(&format!("partner {text} is not a tenant")));
                }
                row.insert("partner".into(), Value::String(text));
            }
            "is_partner" => {
                row.insert("msp".into(), Value::String(text));
            }
            "company" | "name" | "email" | "phone" | "country" | "city" | "street" | "state"
            | "zip" | "active" | "msp" => {
                row.insert(k.clone(), Value::String(text));
            }
            // Accepted by LongJump on create, not kept by this sample.
            _ => {}
        }
    }
    Ok(())
}

fn create(t: &mut Tenants, req: &Inbound) -> Answer {
    let b = match body(req) {
        Ok(b) => b,
        Err(e) => return e,
    };
    if b.get("company")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return bad_request("company is required");
    }
    t.next += 1;
    let id = tenant_id(t.next as u32);
    let mut row = Map::new();
    for f in FIELDS {
        row.insert((*f).into(), Value::String(String::new()));
    }
    row.insert("id".into(), Value::String(id.clone()));
    row.insert("msp".into(), Value::String("0".into()));
    row.insert("active".into(), Value::String("1".into()));
    row.insert(
        "start_date".into(),
        Value::String("2026-01-01T00:00:00Z".into()),
    );
    if let Err(e) = assign(t, &mut row, &b) {
        return e;
    }
    t.rows.push(row);
    (
        200,
        json!({"message": {"code": 0, "description": "Success", "id": id}}),
    )
}

fn update(t: &mut Tenants, id: &str, req: &Inbound) -> Answer {
    let b = match body(req) {
        Ok(b) => b,
        Err(e) => return e,
    };
    let Some(pos) = t.rows.iter().position(|r| r["id"] == id) else {
        return not_found(id);
    };
    let mut row = t.rows[pos].clone();
    if let Err(e) = assign(t, &mut row, &b) {
        return e;
    }
    row.insert(
        "date_modified".into(),
        Value::String("2026-01-02T00:00:00Z".into()),
    );
    t.rows[pos] = row;
    (200, message(0, "Success"))
}

fn search(t: &Tenants, req: &Inbound, base: &str) -> Answer {
    let spec = SearchSpec {
        record: "tenant".into(),
        fields: FIELDS.iter().map(|f| (*f).to_owned()).collect(),
        pushdown: Vec::new(),
    };
    let q = match parse_search(&spec, &req.query) {
        Ok(q) => q,
        Err(e) => return bad_request(&e.detail),
    };
    let num = |k: &str, default: u64| match req.q(k) {
        None | Some("") => Ok(default),
        Some(v) => v
            .parse::<u64>()
            .map_err(|_| bad_request(&format!("{k} must be a non-negative integer"))),
    };
    let (page, size) = match (num("page", 0), num("pageSize", 100)) {
        (Ok(p), Ok(s)) => (p, s.max(1)),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let records: Vec<Value> = t.rows.iter().map(|r| render(t, r, base)).collect();
    let (items, total) = apply(&spec, &q, records, page.saturating_mul(size), size);
    let mut doc = json!({"records": items});
    if req
        .q("getTotalRecordCount")
        .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
    {
        doc["totalRecordCount"] = json!(total);
    }
    (200, doc)
}
