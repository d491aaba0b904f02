//! The sample company hierarchy, deterministic so tests can name its members.
//!
//! ```text
//! Northwind Distribution (reseller, key "northwind")
//! ├── Contoso Partners (reseller)          ├── Iris Florists
//! │   ├── Alpine Dental                    └── Juniper Hotels
//! │   ├── Birch Logistics
//! │   └── Cedar Law (disabled)
//! └── Fabrikam Solutions (reseller)
//!     ├── Delta Bakery
//!     ├── Elm Architects
//!     └── Granite IT (reseller)
//!         └── Harbor Clinic
//! Outside Corp (unrelated root, key "outside")
//! ```

use serde_json::{Value, json};

/// The demo user's company key (the distributor's external id).
pub const DEMO_COMPANY_KEY: &str = "northwind";
/// Northwind Distribution.
pub const DISTRIBUTOR_ID: &str = "6e0f3b4a-0000-4000-8000-000000000001";
/// Contoso Partners, a partner under the distributor.
pub const PARTNER_ID: &str = "6e0f3b4a-0000-4000-8000-000000000002";
/// Fabrikam Solutions, the second partner.
pub const PARTNER2_ID: &str = "6e0f3b4a-0000-4000-8000-000000000003";
/// Alpine Dental, a customer of Contoso Partners.
pub const CUSTOMER_ID: &str = "6e0f3b4a-0000-4000-8000-000000000010";

/// (id suffix, name, external id, reseller, enabled, parent suffix)
pub type SeedCompany = (u32, &'static str, &'static str, bool, bool, Option<u32>);

const COMPANIES: &[SeedCompany] = &[
    (1, "Northwind Distribution", "northwind", true, true, None),
    (2, "Contoso Partners", "contoso", true, true, Some(1)),
    (3, "Fabrikam Solutions", "fabrikam", true, true, Some(1)),
    (10, "Alpine Dental", "alpine", false, true, Some(2)),
    (11, "Birch Logistics", "birch", false, true, Some(2)),
    (12, "Cedar Law", "cedar", false, false, Some(2)),
    (13, "Delta Bakery", "delta", false, true, Some(3)),
    (14, "Elm Architects", "elm", false, true, Some(3)),
    (15, "Granite IT", "granite", true, true, Some(3)),
    (16, "Harbor Clinic", "harbor", false, true, Some(15)),
    (17, "Iris Florists", "iris", false, true, Some(1)),
    (18, "Juniper Hotels", "juniper", false, true, Some(1)),
    (90, "Outside Corp", "outside", true, true, None),
];

const FIRST: &[&str] = &[
    "Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Frances", "Dennis",
];
const LAST: &[&str] = &[
    "Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Thompson", "Allen", "Ritchie",
];

/// The id of company number `n`.
pub fn company_id(n: u32) -> String {
    format!("6e0f3b4a-0000-4000-8000-{n:012}")
}

/// AppDirect's in-memory state.
#[derive(Debug, Clone)]
pub struct Store {
    /// Account v2 companies, as the backend answers them.
    pub companies: Vec<Value>,
    /// Company memberships (users of a company).
    pub memberships: Vec<Value>,
    /// Reseller associations between companies.
    pub associations: Vec<Value>,
    /// The last id handed out; the next one is made from it.
    pub next_id: u64,
}

impl Store {
    /// A fresh UUID-shaped id, deterministic per store.
    pub fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!("7a1c0d2e-0000-4000-9000-{:012}", self.next_id)
    }
}

/// The seeded state.
pub fn seed() -> Store {
    let base_ms: i64 = 1_600_000_000_000;
    let mut companies = Vec::new();
    let mut memberships = Vec::new();
    let mut associations = Vec::new();
    for (i, (n, name, ext, reseller, enabled, parent)) in COMPANIES.iter().enumerate() {
        let id = company_id(*n);
        companies.push(json!({
            "id": id, "externalId": ext, "name": name, "enabled": enabled, "reseller": reseller,
            "vendor": false, "channelAdmin": *n == 1, "countryCode": "US",
            "phoneNumber": format!("+1-555-01{n:02}"), "emailAddress": format!("admin@{ext}.example"),
            "website": format!("https://{ext}.example"),
            "address": {"street1": format!("{n} Main Street"), "street2": null, "city": "Springfield", "state": "IL", "zip": "62701", "country": "US"},
            "createdOn": base_ms + i as i64 * 86_400_000,
        }));
        for u in 0..2u32 {
            let k = (*n as usize + u as usize) % FIRST.len();
            memberships.push(json!({
                "user": {
                    "id": format!("5b2d0e3f-0000-4000-a000-{:08}{u:04}", n),
                    "email": format!("{}.{}@{ext}.example", FIRST[k].to_lowercase(), LAST[k].to_lowercase()),
                    "firstName": FIRST[k], "lastName": LAST[k], "activated": u == 0,
                    "createdOn": base_ms + (i as i64 * 2 + u as i64) * 3_600_000,
                },
                "company": {"id": id, "name": name},
                "roles": [if u == 0 { "ROLE_SYS_ADMIN" } else { "ROLE_USER" }],
                "enabled": true,
            }));
        }
        if let Some(p) = parent {
            let pname = COMPANIES
                .iter()
                .find(|c| c.0 == *p)
                .map(|c| c.1)
                .unwrap_or_default();
            associations.push(json!({
                "id": format!("8c3e1f40-0000-4000-b000-{n:012}"),
                "resellerCompany": {"id": company_id(*p), "name": pname},
                "customerCompany": {"id": id, "name": name},
                "createdOn": base_ms + i as i64 * 86_400_000,
            }));
        }
    }
    Store {
        companies,
        memberships,
        associations,
        next_id: 0,
    }
}

/// The seed's companies: (number, name, key, reseller, enabled, parent number).
pub fn company_rows() -> Vec<SeedCompany> {
    COMPANIES.to_vec()
}

/// Every company id of the seed with its name, for the RedAPI sample.
pub fn company_list() -> Vec<(String, &'static str, Option<String>)> {
    COMPANIES
        .iter()
        .map(|(n, name, _, _, _, p)| (company_id(*n), *name, p.map(company_id)))
        .collect()
}
