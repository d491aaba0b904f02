//! The sample Fusion DRaaS backend (seed 004): the `resellers` resource of one DRaaS
//! instance, in JSON, behind a static bearer token.
//!
//! Resellers mirror the shared sample hierarchy ([`super::data`]): the company key is the
//! reseller's `billingId`, a reseller's `owner` is its parent, Northwind and Outside Corp
//! hang directly under the group (no `owner`, as the seed's "distributor-less" reseller), and
//! two distributors sit under the group as well. A list with `parent` = the group holds every
//! reseller of the group (how a caller's reseller is found by its billing id, however deep);
//! with a distributor or reseller, those it owns. Lists page as the seed describes: `page_size`,
//! and a `next` token that is base64 of the query string of the following page; the token's
//! parameters are taken unless the request names them itself.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::Method;
use parking_lot::Mutex;
use serde_json::{Value, json};

use super::data::company_rows;
use super::{Answer, Inbound, error};

/// The bearer token the sample accepts (anything else is 403, as Fusion answers).
pub const FUSION_TOKEN: &str = "fusion-demo-token";
/// The DRaaS instance the sample serves (`/api/v01/draas/{instance}/…`).
pub const DRAAS_INSTANCE: &str = "demo";
/// The group every root entity hangs under.
pub const GROUP_ID: &str = "f0510000-0000-4000-8000-000000000900";
/// The suspension profiles the sample knows.
pub const SUSPENSION_PROFILES: &[u64] = &[1, 2];

/// The uuid of shared-seed company number `n` as a Fusion reseller.
pub fn reseller_id(n: u32) -> String {
    format!("f0510000-0000-4000-8000-{n:012}")
}

/// One entity: a distributor or a reseller (the group is only [`GROUP_ID`]).
#[derive(Debug, Clone)]
pub struct Entity {
    /// Its uuid.
    pub uuid: String,
    /// `distributor` or `reseller`.
    pub kind: &'static str,
    /// Its name.
    pub name: String,
    /// External billing id (the V1 company key).
    pub billing_id: String,
    /// The parent's uuid; the group when it hangs directly under it.
    pub owner: String,
    /// The suspension profile, when suspended.
    pub suspension: Option<u64>,
    /// Markup in percent.
    pub markup: f64,
    /// Tenants attached (a reseller with tenants cannot be deleted).
    pub tenants: u64,
}

/// The backend's state.
#[derive(Debug)]
pub struct Fusion {
    /// Distributors and resellers, in creation order.
    pub entities: Vec<Entity>,
    next_id: u64,
}

/// The seeded state: the shared hierarchy as resellers, Cedar Law suspended, Alpine Dental
/// with tenants, and two distributors under the group.
pub fn seed() -> Fusion {
    let mut entities: Vec<Entity> = company_rows()
        .into_iter()
        .map(|(n, name, key, _reseller, enabled, parent)| Entity {
            uuid: reseller_id(n),
            kind: "reseller",
            name: name.to_owned(),
            billing_id: key.to_owned(),
            owner: parent.map_or_else(|| GROUP_ID.to_owned(), reseller_id),
            suspension: (!enabled).then_some(1),
            markup: 10.0,
            tenants: if key == "alpine" { 3 } else { 0 },
        })
        .collect();
    for (n, name) in [(901, "Nordic Distribution"), (902, "Southern Distribution")] {
        entities.push(Entity {
            uuid: reseller_id(n),
            kind: "distributor",
            name: name.to_owned(),
            billing_id: format!("distributor::{n}"),
            owner: GROUP_ID.to_owned(),
            suspension: None,
            markup: 0.0,
            tenants: 0,
        });
    }
    Fusion {
        entities,
        next_id: 1000,
    }
}

impl Fusion {
    fn find(&self, uuid: &str) -> Option<&Entity> {
        self.entities
            .iter()
            .find(|e| e.uuid == uuid && e.kind == "reseller")
    }

    fn owner_json(&self, e: &Entity) -> Value {
        match self.entities.iter().find(|o| o.uuid == e.owner) {
            Some(o) => json!({"type": o.kind, "uuid": o.uuid, "name": o.name}),
            None => Value::Null,
        }
    }

    fn status(e: &Entity) -> &'static str {
        if e.suspension.is_some() {
            "suspended"
        } else {
            "active"
        }
    }

    fn list_item(&self, e: &Entity) -> Value {
        let mut v = json!({"uuid": e.uuid, "name": e.name, "billingId": e.billing_id,
            "markup": e.markup, "status": Self::status(e)});
        let owner = self.owner_json(e);
        if !owner.is_null() {
            v["owner"] = owner;
        }
        v
    }

    fn detail(&self, e: &Entity) -> Value {
        let mut v = self.list_item(e);
        if let Some(m) = v.as_object_mut() {
            m.remove("markup");
        }
        v["markups"] = json!([{"markup": format!("{:.1}", e.markup), "startDate": "2024-01-01T00:00:00.000000"}]);
        v["nbOfTenants"] = json!(e.tenants);
        v
    }

    fn children(&self, uuid: &str) -> usize {
        self.entities.iter().filter(|e| e.owner == uuid).count()
    }
}

/// Handles one request.
pub fn handle(state: &Mutex<Fusion>, req: &Inbound) -> Answer {
    let bearer = req
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if bearer != Some(&format!("Bearer {FUSION_TOKEN}")) {
        return error(
            403,
            "FORBIDDEN",
            "The API consumer doesn't have sufficient rights to perform this action",
        );
    }
    let seg: Vec<&str> = req.segments.iter().map(String::as_str).collect();
    let mut f = state.lock();
    match (&req.method, seg.as_slice()) {
        (m, ["api", "v01", "draas", inst, "resellers", rest @ ..]) if *inst == DRAAS_INSTANCE => {
            match (m, rest) {
                (&Method::GET, []) => list(&f, req),
                (&Method::POST, []) => create(&mut f, req),
                (&Method::GET, [id]) => match f.find(id) {
                    Some(e) => (200, f.detail(e)),
                    None => error(
                        404,
                        "NOT_FOUND",
                        format!("No reseller found with uuid {id}"),
                    ),
                },
                (&Method::PUT, [id]) => update(&mut f, id, req),
                (&Method::DELETE, [id]) => delete(&mut f, id),
                (&Method::PUT, [id, "suspension_profile"]) => suspend(&mut f, id, req),
                _ => error(404, "NOT_FOUND", "no such endpoint"),
            }
        }
        _ => error(404, "NOT_FOUND", "no such endpoint"),
    }
}

fn list(f: &Fusion, req: &Inbound) -> Answer {
    // The `next` token's parameters, unless the request names them itself.
    let from_next: Vec<(String, String)> = match req.q("next").filter(|t| !t.is_empty()) {
        None => Vec::new(),
        Some(t) => match STANDARD.decode(t) {
            Ok(raw) => form_urlencoded::parse(&raw).into_owned().collect(),
            Err(_) => return error(400, "BAD_REQUEST", "next is not a valid token"),
        },
    };
    let get = |k: &str| -> Option<String> {
        req.q(k)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .or_else(|| {
                from_next
                    .iter()
                    .find(|(a, _)| a == k)
                    .map(|(_, v)| v.clone())
            })
    };
    let Some(parent) = get("parent") else {
        return error(400, "BAD_REQUEST", "parent is required");
    };
    let number = |k: &str, default: usize| -> Result<usize, Answer> {
        match get(k) {
            None => Ok(default),
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=1000).contains(&n) => Ok(n),
                Ok(_) | Err(_) => Err(error(
                    400,
                    "BAD_REQUEST",
                    format!("{k} must be an integer between 1 and 1000"),
                )),
            },
        }
    };
    let (size, page) = match (number("page_size", 10), number("page", 1)) {
        (Ok(s), Ok(p)) => (s, p),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let search = get("search").unwrap_or_default().to_lowercase();
    // The group serves every reseller in it, at any depth; a distributor or a reseller
    // those it owns.
    let mut rows: Vec<&Entity> = f
        .entities
        .iter()
        .filter(|e| e.kind == "reseller" && (e.owner == parent || parent == GROUP_ID))
        .filter(|e| {
            search.is_empty()
                || e.name.to_lowercase().contains(&search)
                || e.billing_id.to_lowercase().contains(&search)
        })
        .collect();
    match get("sort").as_deref() {
        None => {}
        Some("name") => rows.sort_by_key(|e| e.name.to_lowercase()),
        Some("billingId") => rows.sort_by_key(|e| e.billing_id.to_lowercase()),
        Some(other) => {
            return error(
                400,
                "BAD_REQUEST",
                format!("sort: `{other}` is not a searchable property"),
            );
        }
    }
    match get("dir").as_deref() {
        None | Some("asc") => {}
        Some("desc") => rows.reverse(),
        Some(_) => return error(400, "BAD_REQUEST", "dir must be asc or desc"),
    }
    if rows.is_empty() {
        return error(404, "NOT_FOUND", "No reseller found");
    }
    let total = rows.len();
    let pages = total.div_ceil(size);
    let start = (page - 1).saturating_mul(size).min(total);
    let end = (start + size).min(total);
    let mut doc = json!({"results": total, "pages": pages, "page": page,
        "resellers": rows[start..end].iter().map(|e| f.list_item(e)).collect::<Vec<_>>()});
    if end < total {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for k in ["parent", "search", "sort", "dir"] {
            if let Some(v) = get(k) {
                q.append_pair(k, &v);
            }
        }
        q.append_pair("page_size", &size.to_string());
        q.append_pair("page", &(page + 1).to_string());
        doc["next"] = json!(STANDARD.encode(q.finish()));
    }
    (200, doc)
}

fn create(f: &mut Fusion, req: &Inbound) -> Answer {
    let body = req.json();
    let Some(name) = body["name"].as_str().filter(|n| !n.trim().is_empty()) else {
        return error(400, "BAD_REQUEST", "name is required");
    };
    let Some(owner) = body["owner"]["uuid"].as_str() else {
        return error(
            400,
            "BAD_REQUEST",
            "owner is required when logged as a system administrator",
        );
    };
    if owner != GROUP_ID && !f.entities.iter().any(|e| e.uuid == owner) {
        return error(400, "BAD_REQUEST", format!("owner {owner} does not exist"));
    }
    f.next_id += 1;
    let uuid = reseller_id(u32::try_from(f.next_id).unwrap_or(u32::MAX));
    let billing_id = body["billingId"]
        .as_str()
        .map_or_else(|| format!("fusion::reseller::{}", f.next_id), str::to_owned);
    if f.entities.iter().any(|e| e.billing_id == billing_id) {
        return error(400, "BAD_REQUEST", "billingId must be unique per group");
    }
    f.entities.push(Entity {
        uuid: uuid.clone(),
        kind: "reseller",
        name: name.to_owned(),
        billing_id,
        owner: owner.to_owned(),
        suspension: None,
        markup: body["markup"].as_f64().unwrap_or(0.0),
        tenants: 0,
    });
    (200, json!({"uuid": uuid}))
}

fn update(f: &mut Fusion, id: &str, req: &Inbound) -> Answer {
    let body = req.json();
    if body.get("owner").is_some() {
        return error(
            400,
            "BAD_REQUEST",
            "it is currently not possible to update the reseller's owner through API",
        );
    }
    let Some(e) = f
        .entities
        .iter_mut()
        .find(|e| e.uuid == id && e.kind == "reseller")
    else {
        return error(
            404,
            "NOT_FOUND",
            format!("No reseller found with uuid {id}"),
        );
    };
    if let Some(n) = body["name"].as_str() {
        e.name = n.to_owned();
    }
    if let Some(b) = body["billingId"].as_str() {
        e.billing_id = b.to_owned();
    }
    if let Some(m) = body["markup"].as_f64() {
        e.markup = m;
    }
    (200, json!({"uuid": id}))
}

fn delete(f: &mut Fusion, id: &str) -> Answer {
    let Some(i) = f
        .entities
        .iter()
        .position(|e| e.uuid == id && e.kind == "reseller")
    else {
        // Seed 004: deleting a reseller that does not exist is a success.
        return (200, json!({"uuid": id}));
    };
    if f.entities[i].tenants > 0 || f.children(id) > 0 {
        return error(
            400,
            "BAD_REQUEST",
            "It is not possible to delete resellers that still have tenants attached",
        );
    }
    f.entities.remove(i);
    (200, json!({"uuid": id}))
}

fn suspend(f: &mut Fusion, id: &str, req: &Inbound) -> Answer {
    let body = req.json();
    let profile = match body.get("suspensionProfileId") {
        Some(Value::Null) => None,
        Some(v) => match v.as_u64().filter(|p| SUSPENSION_PROFILES.contains(p)) {
            Some(p) => Some(p),
            None => return error(400, "BAD_REQUEST", "unknown suspension profile"),
        },
        None => return error(400, "BAD_REQUEST", "suspensionProfileId is required"),
    };
    match f
        .entities
        .iter_mut()
        .find(|e| e.uuid == id && e.kind == "reseller")
    {
        Some(e) => {
            e.suspension = profile;
            (200, json!({"uuid": id}))
        }
        None => error(
            404,
            "NOT_FOUND",
            format!("No reseller found with uuid {id}"),
        ),
    }
}
