//! The sample new RedAPI: seed 000's resources under `/v2`, V1 paging, behind OAuth2
//! client credentials (`POST /oauth2/token`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

use base64::Engine;
use http::Method;
use serde_json::{Value, json};

use super::data::company_list;
use super::{Answer, Inbound};

/// Issued tokens, shared with the test controls on [`super::DemoServer`].
#[derive(Clone)]
pub(crate) struct Tokens {
    client_id: String,
    client_secret: String,
    valid: Arc<Mutex<HashSet<String>>>,
    issued: Arc<AtomicUsize>,
}

impl Tokens {
    pub(crate) fn new(client_id: &str, client_secret: &str) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            valid: Arc::default(),
            issued: Arc::default(),
        }
    }

    pub(crate) fn issued(&self) -> usize {
        self.issued.load(Ordering::SeqCst)
    }

    pub(crate) fn revoke_all(&self) {
        {
            let mut v = self.valid.lock();
            v.clear();
        }
    }

    fn issue(&self, req: &Inbound) -> Answer {
        let form: HashMap<String, String> =
            form_urlencoded::parse(&req.body).into_owned().collect();
        let ok = form
            .get("grant_type")
            .is_some_and(|g| g == "client_credentials")
            && form.get("client_id") == Some(&self.client_id)
            && form.get("client_secret") == Some(&self.client_secret);
        if !ok {
            return (401, json!({"error": "invalid_client"}));
        }
        let n = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
        let token = format!("tok-{n}-{}", super::random_key());
        {
            let mut v = self.valid.lock();
            v.insert(token.clone());
        }
        (
            200,
            json!({"access_token": token, "expires_in": 3600, "token_type": "Bearer"}),
        )
    }

    fn check(&self, req: &Inbound) -> bool {
        let Some(h) = req
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        let Some(t) = h.strip_prefix("Bearer ") else {
            return false;
        };
        self.valid.lock().contains(t)
    }
}

/// Subscriptions by company id.
pub(crate) struct State {
    subs: HashMap<String, Vec<Value>>,
    next: u64,
}

const PRODUCTS: &[(i64, &str, &str)] = &[
    (4, "O365", "Microsoft 365 Backup"),
    (130, "Machines", "Server and Workstation Backup"),
    (105, "GWS", "Google Workspace Backup"),
];

fn products() -> Vec<Value> {
    PRODUCTS
        .iter()
        .map(|(id, short, name)| {
            json!({"id": id, "name": name, "shortName": short, "description": format!("{name} for your customers"),
                   "children": [format!("{short}-addon")],
                   "editions": [{"id": id * 10 + 1, "name": "Standard", "hasTrial": true}, {"id": id * 10 + 2, "name": "Premium", "hasTrial": false}]})
        })
        .collect()
}

impl State {
    pub(crate) fn seed() -> Self {
        let mut subs = HashMap::new();
        for (i, (id, _, _)) in company_list().into_iter().enumerate() {
            let list: Vec<Value> = (0..=(i % 2))
                .map(|k| {
                    let (pid, ..) = PRODUCTS[(i + k) % PRODUCTS.len()];
                    json!({"subscriptionId": format!("9d4f2a51-0000-4000-c000-{:08}{k:04}", i), "productId": pid, "editionId": pid * 10 + 1,
                           "trialStatus": if k == 1 { "InTrial" } else { "NotUsed" }, "isActive": true})
                })
                .collect();
            subs.insert(id, list);
        }
        Self { subs, next: 0 }
    }
}

pub(super) fn handle(state: &Mutex<State>, tokens: &Tokens, req: &Inbound) -> Answer {
    let seg: Vec<&str> = req.segments.iter().map(String::as_str).collect();
    if seg == ["oauth2", "token"] && req.method == Method::POST {
        return tokens.issue(req);
    }
    if !tokens.check(req) {
        return problem(401, "a valid bearer token is required");
    }
    let mut s = state.lock();
    let companies = company_list();
    let known = |id: &str| companies.iter().any(|(c, ..)| c == id);
    let name_of = |id: &str| {
        companies
            .iter()
            .find(|(c, ..)| c == id)
            .map(|(_, n, _)| *n)
            .unwrap_or("")
    };
    let children = |id: &str| -> Vec<String> {
        companies
            .iter()
            .filter(|(_, _, p)| p.as_deref() == Some(id))
            .map(|(c, ..)| c.clone())
            .collect()
    };
    let descendants = |id: &str| -> Vec<String> {
        let mut out = Vec::new();
        let mut queue = children(id);
        while let Some(c) = queue.pop() {
            queue.extend(children(&c));
            out.push(c);
        }
        out.sort();
        out
    };
    let product_filter = req.q("productId").and_then(|p| p.parse::<i64>().ok());
    match (&req.method, seg.as_slice()) {
        (&Method::GET, ["v2", "products"]) => (200, Value::Array(products())),
        (&Method::GET, ["v2", "products", id]) => products()
            .into_iter()
            .find(|p| id.parse::<i64>().is_ok_and(|n| p["id"] == n))
            .map(|p| (200, p))
            .unwrap_or_else(|| problem(404, "no such product")),
        (_, ["v2", "companies", cid, ..]) if !known(cid) => {
            problem(404, &format!("company {cid} not found"))
        }
        (&Method::GET, ["v2", "companies", cid, "subscriptions"]) => (
            200,
            Value::Array(s.subs.get(*cid).cloned().unwrap_or_default()),
        ),
        (&Method::POST, ["v2", "companies", cid, "subscriptions"])
        | (&Method::POST, ["v2", "companies", cid, "subscriptions", "trial"]) => {
            let b = req.json();
            let Some(pid) = b["productId"].as_i64() else {
                return problem(400, "productId is required");
            };
            if !PRODUCTS.iter().any(|p| p.0 == pid) {
                return problem(422, "unknown product");
            }
            s.next += 1;
            let trial = seg.last() == Some(&"trial");
            let sub = json!({"subscriptionId": format!("9d4f2a51-0000-4000-d000-{:012}", s.next), "productId": pid,
                             "editionId": b["editionId"].as_i64().unwrap_or(pid * 10 + 1),
                             "trialStatus": if trial { "InTrial" } else { "NotUsed" }, "isActive": true});
            s.subs
                .entry((*cid).to_owned())
                .or_default()
                .push(sub.clone());
            (200, sub)
        }
        (&Method::DELETE, ["v2", "companies", cid, "subscriptions", sid]) => {
            let list = s.subs.entry((*cid).to_owned()).or_default();
            match list.iter().position(|x| x["subscriptionId"] == *sid) {
                Some(i) => {
                    list.remove(i);
                    (202, Value::Null)
                }
                None => problem(404, "no such subscription"),
            }
        }
        (
            &Method::PATCH,
            [
                "v2",
                "companies",
                cid,
                "subscriptions",
                sid,
                "trial",
                "convert",
            ],
        ) => {
            let list = s.subs.entry((*cid).to_owned()).or_default();
            match list.iter_mut().find(|x| x["subscriptionId"] == *sid) {
                Some(x) if x["trialStatus"] == "InTrial" => {
                    x["trialStatus"] = json!("Converted");
                    (200, Value::Null)
                }
                Some(_) => problem(422, "the subscription is not a trial"),
                None => problem(404, "no such subscription"),
            }
        }
        (&Method::GET, ["v2", "companies", cid, "consumption", "summary"]) => {
            let mine = usage(cid, None);
            let all: Vec<Value> = descendants(cid).iter().map(|c| usage(c, None)).collect();
            (
                200,
                json!({"companySummary": mine, "customerSummary": sum(&all)}),
            )
        }
        (&Method::GET, ["v2", "companies", cid, "consumption", "company"]) => {
            (200, Value::Array(consumption(&s, cid, req)))
        }
        (&Method::GET, ["v2", "companies", cid, "consumption", "customers", "direct"]) => {
            let items: Vec<Value> = children(cid)
                .iter()
                .map(|c| json!({"companyId": c, "companyName": name_of(c), "productConsumption": consumption(&s, c, req)}))
                .collect();
            v1_page(items, req)
        }
        (
            &Method::GET,
            [
                "v2",
                "companies",
                cid,
                "consumption",
                "customers",
                "transitive",
            ],
        ) => {
            let items: Vec<Value> = descendants(cid)
                .iter()
                .flat_map(|c| {
                    let parent = companies
                        .iter()
                        .find(|(x, ..)| x == c)
                        .and_then(|(_, _, p)| p.clone());
                    consumption(&s, c, req).into_iter().map(move |mut row| {
                        row["companyId"] = json!(c);
                        row["companyName"] = json!(name_of(c));
                        row["parentCompanyId"] = json!(parent);
                        row
                    })
                })
                .collect();
            v1_page(items, req)
        }
        (
            &Method::GET,
            [
                "v2",
                "companies",
                cid,
                kind @ ("backups" | "restores"),
                "status",
                rest @ ..,
            ],
        ) => {
            let op = |c: &str| json!({"companyId": c, "companyName": name_of(c), "statuses": statuses(c, kind, product_filter)});
            match rest {
                [] => (200, op(cid)),
                ["customers"] => v1_page(children(cid).iter().map(|c| op(c)).collect(), req),
                ["accounts"] => v1_page(accounts(cid, kind, product_filter), req),
                ["summary"] => {
                    let all: Vec<Value> = descendants(cid)
                        .iter()
                        .flat_map(|c| statuses(c, kind, product_filter))
                        .collect();
                    let mut by_product: Vec<Value> = Vec::new();
                    for st in all {
                        match by_product
                            .iter_mut()
                            .find(|x| x["productId"] == st["productId"])
                        {
                            Some(x) => {
                                for k in ["success", "errors", "warnings", "failed"] {
                                    x[k] = json!(
                                        x[k].as_i64().unwrap_or(0) + st[k].as_i64().unwrap_or(0)
                                    );
                                }
                            }
                            None => by_product.push(st),
                        }
                    }
                    (
                        200,
                        json!({"companySummary": op(cid), "customerSummary": by_product}),
                    )
                }
                _ => problem(404, "no such resource"),
            }
        }
        _ => problem(404, "no such resource"),
    }
}

fn problem(status: u16, detail: &str) -> Answer {
    (
        status,
        json!({"type": "about:blank", "title": http::StatusCode::from_u16(status).map(|s| s.canonical_reason().unwrap_or("")).unwrap_or(""), "status": status, "detail": detail}),
    )
}

/// A number that depends only on `(company, salt)`, so answers are stable.
fn n(company: &str, salt: u64, modulo: u64) -> u64 {
    let h = company.bytes().fold(salt.wrapping_mul(1_000_003), |a, b| {
        a.wrapping_mul(31).wrapping_add(u64::from(b))
    });
    h % modulo
}

fn usage(c: &str, product: Option<i64>) -> Value {
    let s = product.unwrap_or(0) as u64;
    json!({"totalDataProtectedInBytes": n(c, s + 1, 900) * 1_073_741_824, "totalDataProtectedInBytesExternal": n(c, s + 2, 90) * 1_073_741_824,
           "fupOverageInBytes": n(c, s + 3, 5) * 1_073_741_824, "activeSeats": n(c, s + 4, 50) + 1, "inactiveSeats": n(c, s + 5, 5),
           "sharedSeats": n(c, s + 6, 4), "activeWorkloads": n(c, s + 7, 80) + 1})
}

fn sum(rows: &[Value]) -> Value {
    let mut total = usage("", None);
    for k in [
        "totalDataProtectedInBytes",
        "totalDataProtectedInBytesExternal",
        "fupOverageInBytes",
        "activeSeats",
        "inactiveSeats",
        "sharedSeats",
        "activeWorkloads",
    ] {
        total[k] = json!(rows.iter().map(|r| r[k].as_u64().unwrap_or(0)).sum::<u64>());
    }
    total
}

fn consumption(s: &State, c: &str, req: &Inbound) -> Vec<Value> {
    let exclude_trials = req
        .q("shouldExcludeTrials")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    s.subs
        .get(c)
        .map(|subs| {
            subs.iter()
                .filter(|x| !(exclude_trials && x["trialStatus"] == "InTrial"))
                .map(|x| {
                    let pid = x["productId"].as_i64().unwrap_or(0);
                    let mut row = usage(c, Some(pid));
                    let (_, short, name) = PRODUCTS
                        .iter()
                        .find(|p| p.0 == pid)
                        .copied()
                        .unwrap_or((0, "", ""));
                    row["productId"] = json!(pid);
                    row["productName"] = json!(name);
                    row["subscriptionId"] = x["subscriptionId"].clone();
                    row["sku"] = json!(format!("{short}-STD"));
                    row["isTrial"] = json!(x["trialStatus"] == "InTrial");
                    row
                })
                .collect()
        })
        .unwrap_or_default()
}

fn statuses(c: &str, kind: &str, product: Option<i64>) -> Vec<Value> {
    let salt = if kind == "backups" { 10 } else { 20 };
    PRODUCTS
        .iter()
        .filter(|p| product.is_none_or(|x| x == p.0))
        .map(|(pid, short, _)| {
            let s = salt + *pid as u64;
            json!({"success": n(c, s, 200), "errors": n(c, s + 1, 4), "warnings": n(c, s + 2, 8), "failed": n(c, s + 3, 3), "productName": short, "productId": pid})
        })
        .collect()
}

fn accounts(c: &str, kind: &str, product: Option<i64>) -> Vec<Value> {
    let salt = if kind == "backups" { 30 } else { 40 };
    (0..5u64)
        .map(|i| {
            let pid = PRODUCTS[(i as usize) % PRODUCTS.len()].0;
            json!({"accountId": format!("A1B2C3D4-0000-4000-E000-{:012}", n(c, salt + i, 1_000_000)), "accountName": format!("user{i}@{}.example", &c[c.len() - 4..]),
                   "status": n(c, salt + i + 100, 3), "productId": pid, "companyId": c, "BackupSetGuid": format!("608CD098-0000-4000-F000-{:012}", i),
                   "timestamp": format!("2024-08-05T02:{:02}:{:02}+00:00", i * 7 % 60, n(c, i, 60))})
        })
        .filter(|a| product.is_none_or(|p| a["productId"] == p))
        .collect()
}

/// V1 paging: `maxResults`, `pageToken` (base64 JSON, Page 1-based), `shouldReturnCount`.
fn v1_page(items: Vec<Value>, req: &Inbound) -> Answer {
    #[derive(serde::Serialize, serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Token {
        page: usize,
        page_size: usize,
        total_count: usize,
    }
    let token = match req.q("pageToken") {
        Some(t) if !t.is_empty() => {
            let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(t.trim_end_matches('='))
                .or_else(|_| base64::engine::general_purpose::STANDARD.decode(t));
            match raw
                .ok()
                .and_then(|r| serde_json::from_slice::<Token>(&r).ok())
            {
                Some(tok) if tok.page >= 1 && tok.page_size >= 1 => Some(tok),
                _ => return problem(400, "pageToken is not valid"),
            }
        }
        _ => None,
    };
    let size = match req.q("maxResults").map(str::parse::<usize>) {
        Some(Ok(0)) | None => token.as_ref().map(|t| t.page_size).unwrap_or(30),
        Some(Ok(m)) => m,
        Some(Err(_)) => return problem(400, "maxResults must be a non-negative integer"),
    };
    let page = token.map(|t| t.page).unwrap_or(1);
    let total = items.len();
    let start = ((page - 1) * size).min(total);
    let end = (start + size).min(total);
    let next = (end < total).then(|| {
        let t = Token {
            page: page + 1,
            page_size: size,
            total_count: total,
        };
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&t).unwrap_or_default())
    });
    let mut doc = json!({"results": items[start..end].to_vec(), "nextPageToken": next});
    if req
        .q("shouldReturnCount")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        doc["totalCount"] = json!(total);
    }
    (200, doc)
}
