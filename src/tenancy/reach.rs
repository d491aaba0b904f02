//! A caller's reach and the checks made against it: pure functions over plain data.
//!
//! DESIGN §8: a caller reaches its root company (the upstream company whose external id is
//! its company key) and that company's descendants; `ADMIN` reaches everything. An id out of
//! reach is answered exactly as an id that does not exist (404), so a refusal never tells a
//! caller that someone else's company is there.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::Value;

use super::spec::{IdInput, Tenancy};
use crate::error::{BadRequest, GatewayError};

/// The companies one root reaches, as resolved from the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReachSet {
    /// The root company's id; `None` when no upstream company has the caller's key.
    pub root: Option<Arc<str>>,
    companies: HashSet<Box<str>, foldhash::fast::RandomState>,
    /// The walk stopped at its node bound: companies past it are out of reach.
    pub truncated: bool,
}

impl ReachSet {
    /// The reach of `root` (added to the set when known) and `companies`.
    pub fn new(root: Option<Arc<str>>, companies: impl IntoIterator<Item = String>) -> Self {
        let mut set: HashSet<Box<str>, _> = HashSet::default();
        set.extend(companies.into_iter().map(String::into_boxed_str));
        if let Some(r) = &root {
            set.insert(Box::from(&**r));
        }
        Self {
            root,
            companies: set,
            truncated: false,
        }
    }

    /// Whether company `id` is in reach.
    pub fn contains(&self, id: &str) -> bool {
        self.companies.contains(id)
    }

    /// How many companies are in reach.
    pub fn len(&self) -> usize {
        self.companies.len()
    }

    /// Whether no company is in reach.
    pub fn is_empty(&self) -> bool {
        self.companies.is_empty()
    }

    /// Roughly the bytes it holds (ids and the table), for the cache's bound.
    pub fn weight(&self) -> u32 {
        let ids: usize = self.companies.iter().map(|c| c.len() + 24).sum();
        u32::try_from(ids + 96).unwrap_or(u32::MAX)
    }
}

/// What a request's caller reaches.
#[derive(Debug, Clone)]
pub enum Reach {
    /// `ADMIN`: every company.
    All,
    /// The root company and its descendants.
    Tree(Arc<ReachSet>),
}

impl Reach {
    /// Whether company `id` is in reach.
    pub fn contains(&self, id: &str) -> bool {
        match self {
            Reach::All => true,
            Reach::Tree(set) => set.contains(id),
        }
    }

    /// The caller's root company (`None` for an ADMIN, whose creations stay unattached, and
    /// for a caller whose company the upstream does not know).
    pub fn root(&self) -> Option<&Arc<str>> {
        match self {
            Reach::All => None,
            Reach::Tree(set) => set.root.as_ref(),
        }
    }
}

/// The refusal of an id out of reach: the 404 an unknown company gets.
pub fn not_found(id: &str) -> GatewayError {
    GatewayError::NotFound(format!("company `{id}`"))
}

/// Hands `visit` the value of each of the route's path and query company ids the request gives
/// (path values as the router decoded them; a query id's first value, as the templates read
/// it). A query id given twice is refused: a template reads the first and a forwarded query
/// carries both. Nothing is allocated: this runs on every request of such a route.
pub fn each_request_id(
    tenancy: &Tenancy,
    params: &[(String, String)],
    query: Option<&str>,
    mut visit: impl FnMut(&str) -> Result<(), GatewayError>,
) -> Result<(), GatewayError> {
    for input in &tenancy.ids {
        match input {
            IdInput::Path(name) => {
                if let Some((_, v)) = params.iter().find(|(k, _)| k == name) {
                    visit(v)?;
                }
            }
            IdInput::Query(name) => {
                let mut found = form_urlencoded::parse(query.unwrap_or("").as_bytes())
                    .filter(|(k, _)| k == name)
                    .map(|(_, v)| v);
                let first = found.next();
                if found.next().is_some() {
                    return Err(GatewayError::bad_param(
                        name,
                        format!("query parameter `{name}` is given more than once"),
                    ));
                }
                if let Some(v) = first.filter(|v| !v.is_empty()) {
                    visit(&v)?;
                }
            }
            IdInput::Body(_) => {}
        }
    }
    Ok(())
}

/// The request's path and query company ids ([`each_request_id`]), collected.
pub fn request_ids(
    tenancy: &Tenancy,
    params: &[(String, String)],
    query: Option<&str>,
) -> Result<Vec<String>, GatewayError> {
    let mut out = Vec::with_capacity(tenancy.ids.len());
    each_request_id(tenancy, params, query, |id| {
        out.push(id.to_owned());
        Ok(())
    })?;
    Ok(out)
}

/// Checks the request's path and query company ids against the reach: the first out of it is
/// the 404 an unknown company gets.
pub fn check_request(
    tenancy: &Tenancy,
    reach: &Reach,
    params: &[(String, String)],
    query: Option<&str>,
) -> Result<(), GatewayError> {
    each_request_id(tenancy, params, query, |id| match reach.contains(id) {
        true => Ok(()),
        false => Err(not_found(id)),
    })
}

/// Checks ids against the reach: the first out of reach is a 404.
pub fn check<S: AsRef<str>>(reach: &Reach, ids: &[S]) -> Result<(), GatewayError> {
    match ids.iter().find(|id| !reach.contains(id.as_ref())) {
        Some(id) => Err(not_found(id.as_ref())),
        None => Ok(()),
    }
}

/// The company ids in a request body that the route declares, each a string (a number is
/// read as its decimal text); a missing, null or empty value is not given. Any other value is
/// a 400 naming the field: it is not an id, and guessing one from it could pick the wrong
/// company.
pub fn body_ids(tenancy: &Tenancy, body: &Value) -> Result<Vec<String>, GatewayError> {
    let mut out = Vec::new();
    for input in tenancy.body_ids() {
        match input.in_body(body) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s.is_empty() => {}
            Some(Value::String(s)) => out.push(s.clone()),
            Some(Value::Number(n)) => out.push(n.to_string()),
            Some(Value::Bool(_) | Value::Array(_) | Value::Object(_)) => {
                let field = input.to_string();
                let name = field.strip_prefix("body.").unwrap_or(&field).to_owned();
                return Err(GatewayError::BadRequest(BadRequest::param(
                    name.clone(),
                    format!("`{name}` must be a company id"),
                )));
            }
        }
    }
    Ok(out)
}

/// The partner-flag rule: when the request sets the route's `partner_flag` input, the company
/// it acts on must be strictly below the caller's root (an ADMIN reaches above every root).
pub fn check_partner_flag(
    tenancy: &Tenancy,
    reach: &Reach,
    body: &Value,
    acted_on: Option<&str>,
) -> Result<(), GatewayError> {
    let Some(flag) = &tenancy.partner_flag else {
        return Ok(());
    };
    let set = match flag.in_body(body) {
        None | Some(Value::Null) => false,
        Some(_) => true,
    };
    match (set, reach) {
        (false, _) | (true, Reach::All) => Ok(()),
        (true, Reach::Tree(tree)) => match (acted_on, tree.root.as_deref()) {
            (Some(company), Some(root)) if company != root => Ok(()),
            (Some(_) | None, Some(_) | None) => Err(GatewayError::Forbidden {
                reason: "changing whether a company is a partner needs PARTNER on one of its \
                         ancestors; a company's own keys cannot"
                    .into(),
            }),
        },
    }
}

/// Keeps the items of a list whose company id (at `field` in each) is in reach. An item
/// without a readable id is dropped: nothing is shown that cannot be placed.
pub fn keep_in_reach(reach: &Reach, field: &[String], items: Vec<Value>) -> Vec<Value> {
    match reach {
        Reach::All => items,
        Reach::Tree(set) => items
            .into_iter()
            .filter(|item| {
                let id = field.iter().try_fold(item, |v, k| v.get(k));
                match id {
                    Some(Value::String(s)) => set.contains(s),
                    Some(Value::Number(n)) => set.contains(&n.to_string()),
                    Some(Value::Null | Value::Bool(_) | Value::Array(_) | Value::Object(_))
                    | None => false,
                }
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenancy::roles::{Role, RoleSet};
    use serde_json::json;

    fn tree(root: Option<&str>, ids: &[&str]) -> Reach {
        Reach::Tree(Arc::new(ReachSet::new(
            root.map(Arc::from),
            ids.iter().map(|s| s.to_string()),
        )))
    }

    fn tenancy(ids: &[&str]) -> Tenancy {
        let mut t = Tenancy::open(RoleSet::of([Role::Partner]));
        t.ids = ids.iter().map(|i| IdInput::parse(i).unwrap()).collect();
        t
    }

    #[test]
    fn the_root_is_in_its_own_reach() {
        let r = tree(Some("r"), &["a"]);
        assert!(r.contains("r") && r.contains("a"));
        assert!(!r.contains("b") && !r.contains(""));
        assert_eq!(r.root().map(|s| &**s), Some("r"));
        assert!(Reach::All.contains("anything"));
        assert_eq!(Reach::All.root(), None);
        // Ids are compared exactly: another spelling of an id is another company.
        assert!(!r.contains("A") && !r.contains("id:a") && !r.contains(" a"));
    }

    #[test]
    fn path_and_query_ids_are_read_and_a_doubled_query_id_refused() {
        let t = tenancy(&["path.companyId", "query.customerId", "body.x"]);
        let params = vec![("companyId".to_owned(), "c1".to_owned())];
        let ids = request_ids(&t, &params, Some("customerId=c2&other=1")).unwrap();
        assert_eq!(ids, ["c1", "c2"]);
        // Absent or empty: not given.
        assert_eq!(request_ids(&t, &params, None).unwrap(), ["c1"]);
        assert_eq!(
            request_ids(&t, &params, Some("customerId=")).unwrap(),
            ["c1"]
        );
        // Percent-decoded as the templates see it.
        assert_eq!(
            request_ids(&t, &params, Some("customerId=a%2Fb")).unwrap(),
            ["c1", "a/b"]
        );
        let e = request_ids(&t, &params, Some("customerId=c2&customerId=c3")).unwrap_err();
        assert_eq!(e.status(), 400);
        // Checked against a reach: the first out of it is the 404.
        let r = tree(Some("c1"), &["c2"]);
        assert!(check_request(&t, &r, &params, Some("customerId=c2")).is_ok());
        let e = check_request(&t, &r, &params, Some("customerId=c9")).unwrap_err();
        assert_eq!(e.to_string(), "company `c9` not found");
        let elsewhere = vec![("companyId".to_owned(), "c7".to_owned())];
        let e = check_request(&t, &r, &elsewhere, Some("customerId=c2")).unwrap_err();
        assert_eq!(e.to_string(), "company `c7` not found");
    }

    #[test]
    fn the_first_id_out_of_reach_is_a_404() {
        let r = tree(Some("r"), &["a", "b"]);
        assert!(check(&r, &["a", "b", "r"]).is_ok());
        let e = check(&r, &["a", "x", "y"]).unwrap_err();
        assert_eq!(e.status(), 404);
        assert_eq!(e.to_string(), "company `x` not found");
        assert!(check(&Reach::All, &["x"]).is_ok());
        assert!(check::<&str>(&r, &[]).is_ok());
    }

    #[test]
    fn body_ids_take_strings_and_numbers_and_refuse_other_values() {
        let t = tenancy(&["body.tenant.partner"]);
        let ids = |b: Value| body_ids(&t, &b);
        assert_eq!(ids(json!({"tenant": {"partner": "7"}})).unwrap(), ["7"]);
        assert_eq!(ids(json!({"tenant": {"partner": 7}})).unwrap(), ["7"]);
        for absent in [
            json!({"tenant": {"partner": null}}),
            json!({"tenant": {"partner": ""}}),
            json!({"tenant": {}}),
            json!(null),
            json!("text"),
        ] {
            assert!(ids(absent.clone()).unwrap().is_empty(), "{absent}");
        }
        for wrong in [
            json!({"tenant": {"partner": false}}),
            json!({"tenant": {"partner": {"#text": "7"}}}),
            json!({"tenant": {"partner": ["7"]}}),
        ] {
            let e = ids(wrong.clone()).unwrap_err();
            assert_eq!(e.status(), 400, "{wrong}");
            assert!(e.to_string().contains("tenant.partner"), "{e}");
        }
    }

    #[test]
    fn the_partner_flag_needs_an_ancestor() {
        let mut t = tenancy(&["path.tenant_id"]);
        t.partner_flag = Some(IdInput::parse("body.tenant.is_partner").unwrap());
        let r = tree(Some("root"), &["child"]);
        let set = json!({"tenant": {"is_partner": "1"}});
        let unset = json!({"tenant": {"company": "x"}});
        assert!(check_partner_flag(&t, &r, &set, Some("child")).is_ok());
        assert_eq!(
            check_partner_flag(&t, &r, &set, Some("root"))
                .unwrap_err()
                .status(),
            403
        );
        // Demoting is changing it too.
        let demote = json!({"tenant": {"is_partner": "0"}});
        assert!(check_partner_flag(&t, &r, &demote, Some("root")).is_err());
        assert!(check_partner_flag(&t, &r, &unset, Some("root")).is_ok());
        assert!(check_partner_flag(&t, &Reach::All, &set, Some("root")).is_ok());
        // A caller without a root company is below nothing.
        let rootless = tree(None, &[]);
        assert!(check_partner_flag(&t, &rootless, &set, Some("child")).is_err());
        // A route without the rule.
        let plain = tenancy(&["path.tenant_id"]);
        assert!(check_partner_flag(&plain, &r, &set, Some("root")).is_ok());
    }

    #[test]
    fn lists_keep_what_is_in_reach_in_their_order() {
        let r = tree(Some("r"), &["a", "c", "7"]);
        let items = vec![
            json!({"companyId": "a"}),
            json!({"companyId": "b"}),
            json!({"companyId": "c"}),
            json!({"companyId": null}),
            json!({"other": "a"}),
            json!({"companyId": 7}),
            json!("a"),
        ];
        let field = ["companyId".to_owned()];
        let kept = keep_in_reach(&r, &field, items.clone());
        assert_eq!(
            kept,
            vec![
                json!({"companyId": "a"}),
                json!({"companyId": "c"}),
                json!({"companyId": 7})
            ]
        );
        assert_eq!(keep_in_reach(&Reach::All, &field, items.clone()), items);
        let nested = [
            json!({"company": {"id": "a"}}),
            json!({"company": {"id": "z"}}),
        ];
        assert_eq!(
            keep_in_reach(&r, &["company".into(), "id".into()], nested.to_vec()),
            vec![json!({"company": {"id": "a"}})]
        );
    }
}
