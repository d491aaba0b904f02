//! The admin API's one route table: each route's method, path template, who may call it and
//! its handler, in one row.
//!
//! Dispatch (including the 404s and the 405s with their `Allow`), the public [`ROUTES`] list
//! and the check of `openapi.json` all read this table, so a route cannot be served without
//! being listed and documented, nor guarded otherwise than its row says: the row's [`Rule`]
//! is checked by the service before the handler runs, and a handler only adds the checks that
//! depend on what the request asks for (the user a body would create).

use http::Method;

use crate::error::GatewayError;

use super::access::{Access, Roles, Rule, Target};
use super::service::Handler;
use super::{companies, keys, quotas, system, traffic, users};

/// The OpenAPI 3.1 document of the admin API, written by hand; a test below holds its
/// `paths` to the table, both ways, and its anonymous operations to the anonymous rows.
pub const OPENAPI: &str = include_str!("openapi.json");

/// The methods the admin API serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verb {
    Get,
    Post,
    Put,
    Delete,
}

impl Verb {
    pub(super) const fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Post => "POST",
            Verb::Put => "PUT",
            Verb::Delete => "DELETE",
        }
    }

    pub(super) fn method(self) -> Method {
        match self {
            Verb::Get => Method::GET,
            Verb::Post => Method::POST,
            Verb::Put => Method::PUT,
            Verb::Delete => Method::DELETE,
        }
    }
}

/// One row of the table.
pub(super) struct Route {
    pub verb: Verb,
    /// Segments separated by `/`; `{name}` matches any one segment, percent-decoded.
    pub path: &'static str,
    pub rule: Rule,
    pub handler: Handler,
}

/// An `async fn(Call) -> Answer` as a table's [`Handler`].
macro_rules! handler {
    ($f:path) => {
        |call| Box::pin($f(call))
    };
}

const ADMIN: &[&str] = &["ADMIN"];
/// Those who read everything.
const READERS: &[&str] = &["ADMIN", "AUDITOR"];
/// Those who read everything, and a PARTNER, who reads its own company's.
const STAFF: &[&str] = &["ADMIN", "AUDITOR", "PARTNER"];

const fn row(verb: Verb, path: &'static str, rule: Rule, handler: Handler) -> Route {
    Route {
        verb,
        path,
        rule,
        handler,
    }
}

/// Any authenticated caller holding one of `roles`; else 403 naming `refusal`.
const fn only(roles: &'static [&'static str], refusal: &'static str) -> Rule {
    Rule::Caller {
        roles: Roles::OneOf(roles, refusal),
        target: Target::Nothing,
    }
}

/// Any authenticated caller allowed `access` on the user named by `{username}`.
const fn on_user(access: Access) -> Rule {
    Rule::Caller {
        roles: Roles::Any,
        target: Target::User(access),
    }
}

/// The whole admin API, at one address (a `const` is copied where it is used).
pub(super) static TABLE: &[Route] = ROWS;

/// The rows of [`TABLE`]. Order does not matter: no two rows match the same request (a test
/// checks), and a path is matched segment by segment.
const ROWS: &[Route] = &[
    // ---- anonymous: liveness, the version and this document; the counters when configured
    row(Verb::Get, "/health", Rule::Anyone, handler!(system::health)),
    row(
        Verb::Get,
        "/v1/version",
        Rule::Anyone,
        handler!(system::version),
    ),
    row(
        Verb::Get,
        "/metrics",
        Rule::PublicIfConfigured {
            roles: Roles::OneOf(READERS, "the counters are for ADMIN and AUDITOR"),
        },
        handler!(system::metrics),
    ),
    row(
        Verb::Get,
        "/v1/docs/openapi.json",
        Rule::Anyone,
        handler!(system::openapi),
    ),
    row(
        Verb::Get,
        "/v1/docs/openapi.html",
        Rule::Anyone,
        handler!(system::openapi_html),
    ),
    row(
        Verb::Delete,
        "/v1/cache",
        only(ADMIN, "only an ADMIN purges the cache"),
        handler!(system::purge_cache),
    ),
    // ---- companies
    row(
        Verb::Post,
        "/v1/companies",
        only(ADMIN, "only an ADMIN creates companies"),
        handler!(companies::create),
    ),
    row(
        Verb::Get,
        "/v1/companies",
        only(READERS, "only an ADMIN or an AUDITOR lists companies"),
        handler!(companies::list),
    ),
    row(
        Verb::Get,
        "/v1/companies/{key}",
        Rule::Caller {
            roles: Roles::Any,
            target: Target::CompanyRead,
        },
        handler!(companies::get),
    ),
    row(
        Verb::Put,
        "/v1/companies/{key}",
        only(ADMIN, "only an ADMIN changes companies"),
        handler!(companies::replace),
    ),
    row(
        Verb::Delete,
        "/v1/companies/{key}",
        only(ADMIN, "only an ADMIN deletes companies"),
        handler!(companies::delete),
    ),
    // ---- users (the user a request would create or make is checked by the handler)
    row(
        Verb::Post,
        "/v1/users",
        Rule::Caller {
            roles: Roles::Any,
            target: Target::Nothing,
        },
        handler!(users::create),
    ),
    row(
        Verb::Get,
        "/v1/users",
        only(STAFF, "listing users needs ADMIN, AUDITOR or PARTNER"),
        handler!(users::list),
    ),
    row(
        Verb::Get,
        "/v1/users/{username}",
        on_user(Access::Read),
        handler!(users::get),
    ),
    row(
        Verb::Put,
        "/v1/users/{username}",
        on_user(Access::Write),
        handler!(users::replace),
    ),
    row(
        Verb::Delete,
        "/v1/users/{username}",
        on_user(Access::Write),
        handler!(users::delete),
    ),
    // ---- API keys
    row(
        Verb::Post,
        "/v1/users/{username}/keys",
        on_user(Access::Write),
        handler!(keys::create),
    ),
    row(
        Verb::Get,
        "/v1/users/{username}/keys",
        on_user(Access::Read),
        handler!(keys::list),
    ),
    row(
        Verb::Delete,
        "/v1/users/{username}/keys/{id}",
        on_user(Access::Write),
        handler!(keys::revoke),
    ),
    // ---- quotas: writing is ADMIN-only (see `quotas`), reading follows the user scope
    row(
        Verb::Put,
        "/v1/users/{username}/quotas",
        Rule::Caller {
            roles: Roles::OneOf(ADMIN, "only an ADMIN sets quotas"),
            target: Target::User(Access::Write),
        },
        handler!(quotas::put),
    ),
    row(
        Verb::Get,
        "/v1/users/{username}/quotas",
        on_user(Access::Read),
        handler!(quotas::get),
    ),
    row(
        Verb::Delete,
        "/v1/users/{username}/quotas",
        Rule::Caller {
            roles: Roles::OneOf(ADMIN, "only an ADMIN removes quotas"),
            target: Target::User(Access::Write),
        },
        handler!(quotas::delete),
    ),
    // ---- what the proxy recorded
    row(
        Verb::Get,
        "/v1/audit",
        only(READERS, "the audit is for ADMIN and AUDITOR"),
        handler!(traffic::audit),
    ),
    row(
        Verb::Get,
        "/v1/statistics",
        only(STAFF, "statistics need ADMIN, AUDITOR or PARTNER"),
        handler!(traffic::statistics),
    ),
    row(
        Verb::Get,
        "/v1/report",
        only(STAFF, "statistics need ADMIN, AUDITOR or PARTNER"),
        handler!(traffic::report),
    ),
    row(
        Verb::Get,
        "/v1/tracecode/{tracecode}",
        only(READERS, "captured bodies are for ADMIN and AUDITOR"),
        handler!(traffic::captured),
    ),
];

/// Every route the admin API serves, as `(METHOD, path template)`: the table's rows, in
/// order (an end-to-end test calls each one).
pub const ROUTES: &[(&str, &str)] = &listing::<{ ROWS.len() }>(ROWS);

const fn listing<const N: usize>(table: &[Route]) -> [(&'static str, &'static str); N] {
    let mut out = [("", ""); N];
    let mut i = 0;
    while i < N {
        out[i] = (table[i].verb.as_str(), table[i].path);
        i += 1;
    }
    out
}

/// A row whose rule or handler reads something its route does not give: a mistake in the
/// table, answered with a 500 (and logged) rather than guessed around.
#[derive(Debug, thiserror::Error)]
pub(super) enum Miswired {
    #[error("the admin route {template} has no path variable `{name}`")]
    Variable {
        template: &'static str,
        name: &'static str,
    },
    #[error("the admin route {template} is anonymous, yet its handler reads the caller")]
    Anonymous { template: &'static str },
    #[error("the admin route {template} names no user in its rule, yet its handler reads one")]
    UserNotAdmitted { template: &'static str },
}

impl From<Miswired> for GatewayError {
    fn from(e: Miswired) -> Self {
        tracing::error!(error = %e, "admin route table mistake");
        crate::error::Internal::Miswired {
            what: "the admin route table",
            source: Box::new(e),
        }
        .into()
    }
}

/// The path variables of a matched route, decoded.
#[derive(Debug)]
pub(super) struct Params {
    template: &'static str,
    vars: Vec<(&'static str, String)>,
}

impl Params {
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The variable `name`, which the route's template must have.
    pub(super) fn require(&self, name: &'static str) -> Result<&str, Miswired> {
        self.get(name).ok_or(Miswired::Variable {
            template: self.template,
            name,
        })
    }
}

/// What the table says about a request.
pub(super) enum Found {
    Route(&'static Route, Params),
    /// The path is served, but not with this method: these are.
    NotAllowed(Vec<Method>),
    Nowhere,
}

/// The row serving `method` on the path of `segments` (decoded, empty ones dropped).
pub(super) fn find(method: &Method, segments: &[String]) -> Found {
    let mut allow = Vec::new();
    for route in TABLE {
        let Some(params) = matches(route.path, segments) else {
            continue;
        };
        if route.verb.method() == *method {
            return Found::Route(route, params);
        }
        allow.push(route.verb.method());
    }
    if allow.is_empty() {
        Found::Nowhere
    } else {
        Found::NotAllowed(allow)
    }
}

/// The variables of `template` when `segments` fit it.
fn matches(template: &'static str, segments: &[String]) -> Option<Params> {
    let mut vars = Vec::new();
    let mut parts = template.split('/').filter(|s| !s.is_empty());
    for seg in segments {
        let part = parts.next()?;
        match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            Some(name) => vars.push((name, seg.clone())),
            None if part == seg => {}
            None => return None,
        }
    }
    match parts.next() {
        Some(_) => None,
        None => Some(Params { template, vars }),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn segments(path: &str) -> Vec<String> {
        path.split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// `template` with each variable filled in.
    fn example(template: &str) -> String {
        template
            .split('/')
            .map(|s| if s.starts_with('{') { "x_1" } else { s })
            .collect::<Vec<_>>()
            .join("/")
    }

    #[test]
    fn the_openapi_document_lists_exactly_the_table() {
        let doc: Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        let mut documented = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                if method != "parameters" {
                    documented.push((method.to_uppercase(), path.clone(), op.clone()));
                }
            }
        }
        for route in TABLE {
            let (m, p) = (route.verb.as_str(), route.path);
            let Some((_, _, op)) = documented.iter().find(|(dm, dp, _)| dm == m && dp == p) else {
                panic!("{m} {p} is not in openapi.json");
            };
            // Anonymous exactly when the table says so; a guarded route documents its 401
            // and 403.
            let anonymous = op["security"] == serde_json::json!([]);
            match route.rule {
                Rule::Anyone => assert!(anonymous, "{m} {p} asks for no credentials"),
                // Documented as by default: credentials asked for.
                Rule::Caller { .. } | Rule::PublicIfConfigured { .. } => {
                    assert!(!anonymous, "{m} {p} needs credentials");
                    for status in ["401", "403"] {
                        assert!(op["responses"].get(status).is_some(), "{m} {p}: {status}");
                    }
                }
            }
        }
        for (m, p, _) in &documented {
            assert!(
                TABLE.iter().any(|r| r.verb.as_str() == m && r.path == p),
                "openapi.json documents {m} {p}, which is not served"
            );
        }
    }

    #[test]
    fn routes_is_the_table() {
        assert_eq!(ROUTES.len(), TABLE.len());
        for (listed, route) in ROUTES.iter().zip(TABLE) {
            assert_eq!(*listed, (route.verb.as_str(), route.path));
        }
    }

    #[test]
    fn each_request_finds_its_own_row_only() {
        for route in TABLE {
            let path = example(route.path);
            match find(&route.verb.method(), &segments(&path)) {
                Found::Route(found, params) => {
                    assert!(std::ptr::eq(found, route), "{path} found {}", found.path);
                    for var in route.path.split('/').filter(|s| s.starts_with('{')) {
                        assert_eq!(params.get(&var[1..var.len() - 1]), Some("x_1"));
                    }
                }
                Found::NotAllowed(_) | Found::Nowhere => panic!("{path} is not found"),
            }
            let same = TABLE
                .iter()
                .filter(|r| r.verb == route.verb && matches(r.path, &segments(&path)).is_some())
                .count();
            assert_eq!(same, 1, "{} {path} is served twice", route.verb.as_str());
        }
    }

    #[test]
    fn another_method_is_405_with_what_the_path_serves() {
        let allow = |method: Method, path: &str| match find(&method, &segments(path)) {
            Found::NotAllowed(allow) => allow,
            Found::Route(r, _) => panic!("{method} {path} is served by {}", r.path),
            Found::Nowhere => panic!("{method} {path} is nowhere"),
        };
        assert_eq!(
            allow(Method::PATCH, "/v1/users/ann"),
            [Method::GET, Method::PUT, Method::DELETE]
        );
        assert_eq!(allow(Method::DELETE, "/health"), [Method::GET]);
        assert_eq!(allow(Method::HEAD, "/v1/version"), [Method::GET]);
        for path in ["/", "/v1", "/v1/users/ann/keys/1/more", "/v1/nothing"] {
            assert!(
                matches!(find(&Method::GET, &segments(path)), Found::Nowhere),
                "{path}"
            );
        }
    }
}
