//! What a route declares about tenancy, compiled when its pack loads: which of its inputs are
//! company ids (each checked against the caller's reach before any upstream call), which
//! id-like inputs are not, whether its answer is a list of companies to keep to the reach,
//! and which roles it admits.

use std::sync::Arc;

use serde_json::Value;

use super::book::PackReach;
use super::roles::RoleSet;

/// One input of a request, named as a pack names it: `path.companyId`, `query.companyId`,
/// `body.tenant.partner`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdInput {
    /// A variable of the route's match pattern.
    Path(String),
    /// A query parameter (its first occurrence, as the route's templates read it).
    Query(String),
    /// A field of the request body, by its keys from the top.
    Body(Vec<String>),
}

impl IdInput {
    /// Parses `path.X`, `query.X` or `body.a.b…`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = text.split('.');
        let root = parts.next().unwrap_or_default();
        let rest: Vec<String> = parts.map(str::to_owned).collect();
        if rest.iter().any(String::is_empty) || rest.is_empty() {
            return Err(format!(
                "`{text}` must read path.NAME, query.NAME or body.FIELD[.FIELD…]"
            ));
        }
        match (root, rest.as_slice()) {
            ("path", [name]) => Ok(IdInput::Path(name.clone())),
            ("query", [name]) => Ok(IdInput::Query(name.clone())),
            ("body", _) => Ok(IdInput::Body(rest)),
            ("path" | "query", _) => Err(format!("`{text}` names one {root} value: {root}.NAME")),
            _ => Err(format!(
                "`{text}` must start with path., query. or body. (the client's inputs)"
            )),
        }
    }

    /// The value this input has in a request body (`None` for path and query inputs).
    pub fn in_body<'a>(&self, body: &'a Value) -> Option<&'a Value> {
        match self {
            IdInput::Body(keys) => keys.iter().try_fold(body, |v, k| v.get(k)),
            IdInput::Path(_) | IdInput::Query(_) => None,
        }
    }
}

impl std::fmt::Display for IdInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IdInput::Path(n) => write!(f, "path.{n}"),
            IdInput::Query(n) => write!(f, "query.{n}"),
            IdInput::Body(keys) => write!(f, "body.{}", keys.join(".")),
        }
    }
}

/// Whether a client input's name says it identifies something (`companyId`, `tenant_id`,
/// `productIds`, `partner`): such an input must be declared a company id or not one, so no
/// route can take a company id unchecked by forgetting to say so.
pub fn id_like(name: &str) -> bool {
    // By the name's own case: `valid` or `paid` end in "id" and identify nothing.
    let singular = name
        .strip_suffix('s')
        .filter(|s| s.ends_with("Id") || s.ends_with("ID") || s.ends_with("_id"))
        .unwrap_or(name);
    singular.eq_ignore_ascii_case("id")
        || singular.ends_with("Id")
        || singular.ends_with("ID")
        || singular.ends_with("_id")
        || singular.ends_with("-id")
        || ["ids", "partner", "parent", "owner", "reseller", "customer"]
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n))
}

/// A route's tenancy, as loaded.
#[derive(Debug, Clone)]
pub struct Tenancy {
    /// The roles the route admits (its `roles`, or its method group's).
    pub roles: RoleSet,
    /// Inputs that are company ids: each, when the request gives it, must be in the caller's
    /// reach, or the answer is a 404 and nothing is sent upstream.
    pub ids: Vec<IdInput>,
    /// A list route: the path (keys from the item) of each item's company id. The route
    /// yields every candidate; Rosetta keeps those in reach, then pages.
    pub items: Option<Vec<String>>,
    /// A success changes the company tree (create, reassign, delete): cached reaches that
    /// hold one of the request's company ids (or the caller's root) are dropped at once.
    pub changes_tree: bool,
    /// When the request sets this input (a company's partner flag), the company it acts on
    /// (its first id) must be strictly below the caller's root: only a PARTNER of an ancestor
    /// makes a company a partner.
    pub partner_flag: Option<IdInput>,
    /// The route reads `reach.root` (the caller's root company id).
    pub reads_root: bool,
    /// The pack's reach resolver, when the route needs the caller's reach.
    pub reach: Option<Arc<PackReach>>,
}

impl Tenancy {
    /// A route that admits `roles` and needs no reach (an anonymous route, a catalogue).
    pub fn open(roles: RoleSet) -> Self {
        Self {
            roles,
            ids: Vec::new(),
            items: None,
            changes_tree: false,
            partner_flag: None,
            reads_root: false,
            reach: None,
        }
    }

    /// Whether serving the route depends on the caller's reach.
    pub fn needs_reach(&self) -> bool {
        !self.ids.is_empty() || self.items.is_some() || self.reads_root
    }

    /// Whether the layers below the tenancy layer need the caller's reach: body ids and the
    /// partner flag (checked once the body is read), a list kept to it, `reach.root`. A route
    /// whose ids are all in its path and query is done with the reach once they are checked
    /// (the reach is then not handed on: a shared `Arc` less to count on every request).
    pub fn reach_below(&self) -> bool {
        self.has_body_ids()
            || self.partner_flag.is_some()
            || self.items.is_some()
            || self.reads_root
    }

    /// Company ids in the request body (checked once the body is read).
    pub fn body_ids(&self) -> impl Iterator<Item = &IdInput> {
        self.ids.iter().filter(|i| matches!(i, IdInput::Body(_)))
    }

    /// Whether any company id is read from the request body.
    pub fn has_body_ids(&self) -> bool {
        self.body_ids().next().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_parse_by_their_root() {
        assert_eq!(
            IdInput::parse("path.companyId"),
            Ok(IdInput::Path("companyId".into()))
        );
        assert_eq!(
            IdInput::parse("query.companyId"),
            Ok(IdInput::Query("companyId".into()))
        );
        assert_eq!(
            IdInput::parse("body.tenant.partner"),
            Ok(IdInput::Body(vec!["tenant".into(), "partner".into()]))
        );
        for bad in [
            "path",
            "path.",
            "path.a.b",
            "query.a.b",
            "steps.x.id",
            "body..x",
            "principal.company",
            "",
        ] {
            assert!(IdInput::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            IdInput::parse("body.tenant.partner").unwrap().to_string(),
            "body.tenant.partner"
        );
    }

    #[test]
    fn body_values_are_found_by_their_keys() {
        let body = serde_json::json!({"tenant": {"partner": "42", "company": "x"}});
        let partner = IdInput::parse("body.tenant.partner").unwrap();
        assert_eq!(partner.in_body(&body), Some(&Value::from("42")));
        let missing = IdInput::parse("body.tenant.owner").unwrap();
        assert_eq!(missing.in_body(&body), None);
        assert_eq!(
            IdInput::Path("companyId".into()).in_body(&body),
            None,
            "a path input is never read from the body"
        );
    }

    #[test]
    fn id_like_names() {
        for yes in [
            "companyId",
            "customerId",
            "tenant_id",
            "id",
            "ID",
            "productIds",
            "partner",
            "Parent",
            "owner",
            "subscription-id",
            "ids",
        ] {
            assert!(id_like(yes), "{yes}");
        }
        for no in [
            "search",
            "maxResults",
            "pageToken",
            "companyName",
            "company",
            "valid",
            "paid",
            "date",
        ] {
            assert!(!id_like(no), "{no}");
        }
    }
}
