//! The sample AppDirect: Account v2 companies and memberships, Reseller v1 companies and
//! associations, with AppDirect's `{content, page}` lists and JSON errors.

use parking_lot::Mutex;

use http::Method;
use serde_json::{Value, json};

use super::data::Store;
use super::{Answer, Inbound, error, q_usize};

pub(super) fn handle(state: &Mutex<Store>, req: &Inbound) -> Answer {
    let mut s = state.lock();
    let seg: Vec<&str> = req.segments.iter().map(String::as_str).collect();
    let result = match (&req.method, seg.as_slice()) {
        (&Method::GET, ["api", "account", "v2", "companies"]) => list_companies(&s, req),
        (&Method::POST, ["api", "account", "v2", "companies"]) => create_company(&mut s, req.json(), None),
        (m, ["api", "account", "v2", "companies", id]) => company(&mut s, m, id, req),
        (&Method::GET, ["api", "account", "v2", "companies", id, "memberships"]) => {
            find(&s, id).and_then(|c| {
                let cid = c["id"].clone();
                let items: Vec<Value> = s.memberships.iter().filter(|m| m["company"]["id"] == cid).cloned().collect();
                page(items, req, "page")
            })
        }
        (&Method::POST, ["api", "account", "v2", "companies", id, "memberships"]) => find(&s, id).cloned().map(|c| {
            let b = req.json();
            let uid = s.new_id();
            let m = json!({"user": {"id": uid, "email": b["email"], "firstName": b["firstName"], "lastName": b["lastName"], "activated": false, "createdOn": 1_700_000_000_000i64},
                           "company": {"id": c["id"], "name": c["name"]}, "roles": b.get("roles").cloned().unwrap_or(json!(["ROLE_USER"])), "enabled": true});
            s.memberships.push(m.clone());
            (201, m)
        }),
        (m, ["api", "account", "v2", "companies", id, "memberships", uid]) => membership(&mut s, m, id, uid, req),
        (&Method::GET, ["api", "appReseller", "v1", "companies"]) => list_companies(&s, req),
        (&Method::POST, ["api", "appReseller", "v1", "companies"]) => reseller_create(&mut s, req.json()),
        (&Method::GET, ["api", "appReseller", "v1", "companies", id]) => find(&s, id).map(|c| (200, c.clone())),
        (&Method::GET, ["api", "appReseller", "v1", "companyAssociations"]) => {
            let items: Vec<Value> = s
                .associations
                .iter()
                .filter(|a| req.q("resellerCompanyId").is_none_or(|r| a["resellerCompany"]["id"] == r))
                .filter(|a| req.q("customerCompanyId").is_none_or(|c| a["customerCompany"]["id"] == c))
                .cloned()
                .collect();
            page(items, req, "number")
        }
        (&Method::POST, ["api", "appReseller", "v1", "companyAssociations"]) => associate(&mut s, &req.json()),
        (&Method::DELETE, ["api", "appReseller", "v1", "companyAssociations", id]) => {
            match s.associations.iter().position(|a| a["id"] == *id) {
                Some(i) => {
                    s.associations.remove(i);
                    Ok((204, Value::Null))
                }
                None => Err(error(404, "NOT_FOUND", format!("association {id} not found"))),
            }
        }
        _ => Err(error(404, "NOT_FOUND", "no such resource")),
    };
    result.unwrap_or_else(|e| e)
}

/// Finds a company by bare id, `id:…` or `externalId:…`.
fn find<'a>(s: &'a Store, key: &str) -> Result<&'a Value, Answer> {
    let (field, value) = match key.split_once(':') {
        Some(("externalId", v)) => ("externalId", v),
        Some(("id", v)) => ("id", v),
        _ => ("id", key),
    };
    s.companies
        .iter()
        .find(|c| c[field] == value)
        .ok_or_else(|| error(404, "NOT_FOUND", format!("company {key} not found")))
}

fn page(mut items: Vec<Value>, req: &Inbound, number_param: &str) -> Result<Answer, Answer> {
    let size = q_usize(req, "size", 50)?.max(1);
    let number = q_usize(req, number_param, 0)?;
    let total = items.len();
    let start = (number * size).min(total);
    let end = (start + size).min(total);
    let content: Vec<Value> = items.drain(start..end).collect();
    Ok((
        200,
        json!({"content": content, "page": {"size": size, "totalElements": total, "totalPages": total.div_ceil(size), "number": number}}),
    ))
}

fn list_companies(s: &Store, req: &Inbound) -> Result<Answer, Answer> {
    let needle = req.q("name").unwrap_or("").to_lowercase();
    let mut items: Vec<Value> = s
        .companies
        .iter()
        .filter(|c| {
            c["name"]
                .as_str()
                .unwrap_or("")
                .to_lowercase()
                .contains(&needle)
        })
        .cloned()
        .collect();
    if let Some(field) = req.q("sortField") {
        let key = |c: &Value| match field {
            "createdOn" => format!("{:020}", c["createdOn"].as_i64().unwrap_or(0)),
            _ => c["name"].as_str().unwrap_or("").to_lowercase(),
        };
        items.sort_by_key(key);
        if req
            .q("sortOrder")
            .is_some_and(|o| o.eq_ignore_ascii_case("DESC"))
        {
            items.reverse();
        }
    }
    page(items, req, "page")
}

fn create_company(s: &mut Store, b: Value, forced_id: Option<String>) -> Result<Answer, Answer> {
    let Some(name) = b["name"].as_str().filter(|n| !n.is_empty()) else {
        return Err(error(400, "BAD_REQUEST", "name is required"));
    };
    if let Some(ext) = b["externalId"].as_str()
        && s.companies.iter().any(|c| c["externalId"] == ext)
    {
        return Err(error(
            409,
            "CONFLICT",
            format!("a company with externalId {ext} exists"),
        ));
    }
    let id = forced_id.unwrap_or_else(|| s.new_id());
    let c = json!({
        "id": id, "externalId": b["externalId"], "name": name, "enabled": b.get("enabled").cloned().unwrap_or(json!(true)),
        "reseller": b.get("reseller").cloned().unwrap_or(json!(false)), "vendor": false, "channelAdmin": false,
        "countryCode": b["countryCode"], "phoneNumber": b["phoneNumber"], "emailAddress": b["emailAddress"],
        "website": b["website"], "address": b.get("address").cloned().unwrap_or(json!({})), "createdOn": 1_700_000_000_000i64,
    });
    s.companies.push(c.clone());
    Ok((201, c))
}

fn company(s: &mut Store, m: &Method, key: &str, req: &Inbound) -> Result<Answer, Answer> {
    let id = find(s, key)?["id"].clone();
    let Some(c) = s.companies.iter_mut().find(|c| c["id"] == id) else {
        return Err(error(404, "NOT_FOUND", "gone"));
    };
    match *m {
        Method::GET => Ok((200, c.clone())),
        Method::PATCH | Method::PUT => {
            let Value::Object(patch) = req.json() else {
                return Err(error(400, "BAD_REQUEST", "a JSON object is required"));
            };
            for (k, v) in patch {
                if k != "id" {
                    c[k] = v;
                }
            }
            Ok((200, c.clone()))
        }
        _ => Err(error(405, "METHOD_NOT_ALLOWED", "not allowed")),
    }
}

fn membership(
    s: &mut Store,
    m: &Method,
    key: &str,
    uid: &str,
    req: &Inbound,
) -> Result<Answer, Answer> {
    let cid = find(s, key)?["id"].clone();
    let pos = s
        .memberships
        .iter()
        .position(|x| x["company"]["id"] == cid && x["user"]["id"] == uid)
        .ok_or_else(|| error(404, "NOT_FOUND", format!("user {uid} is not a member")))?;
    match *m {
        Method::GET => Ok((200, s.memberships[pos].clone())),
        Method::DELETE => {
            s.memberships.remove(pos);
            Ok((204, Value::Null))
        }
        Method::PUT | Method::PATCH => {
            let b = req.json();
            if let Some(r) = b.get("roles") {
                s.memberships[pos]["roles"] = r.clone();
            }
            if let Some(e) = b.get("enabled") {
                s.memberships[pos]["enabled"] = e.clone();
            }
            Ok((200, s.memberships[pos].clone()))
        }
        _ => Err(error(405, "METHOD_NOT_ALLOWED", "not allowed")),
    }
}

fn reseller_create(s: &mut Store, b: Value) -> Result<Answer, Answer> {
    let parent = find(s, b["createdByCompanyId"].as_str().unwrap_or(""))?.clone();
    let reseller = b["companyAccess"] == "RESELLER";
    let (_, created) = create_company(
        s,
        json!({"name": b["name"], "externalId": b["externalId"], "reseller": reseller}),
        None,
    )?;
    associate(
        s,
        &json!({"resellerCompanyId": parent["id"], "customerCompanyId": created["id"]}),
    )?;
    Ok((
        201,
        json!({"id": created["id"], "externalId": created["externalId"], "name": created["name"], "createdOn": created["createdOn"], "phone": created["phoneNumber"]}),
    ))
}

fn associate(s: &mut Store, b: &Value) -> Result<Answer, Answer> {
    let reseller = find(s, b["resellerCompanyId"].as_str().unwrap_or(""))?.clone();
    let customer = find(s, b["customerCompanyId"].as_str().unwrap_or(""))?.clone();
    if s.associations
        .iter()
        .any(|a| a["customerCompany"]["id"] == customer["id"])
    {
        return Err(error(
            409,
            "CONFLICT",
            "the customer already has a reseller",
        ));
    }
    let id = s.new_id();
    let a = json!({"id": id, "resellerCompany": {"id": reseller["id"], "name": reseller["name"]},
                   "customerCompany": {"id": customer["id"], "name": customer["name"]}, "createdOn": 1_700_000_000_000i64});
    s.associations.push(a.clone());
    Ok((201, a))
}
