//! What a route's execution answers, before the client dialect renders it: the status, the
//! body the route's response filter makes of the context (a page's items and total, or
//! nothing for `null`), and what the upstreams' cache headers allow. Both the stage loop and
//! the passed-on answer shape their outcome here, so the two cannot drift apart.

use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use serde_json::Value;

use super::ExecEnv;
use super::eval::kind;
use crate::dialect::paging::Continuation;
use crate::error::{GatewayError, Internal};
use crate::mapping::pack::{Paging, Route};

/// What executing a route produced, before the client dialect renders it.
#[derive(Debug, Clone, PartialEq)]
pub enum OutBody {
    /// No body.
    Empty,
    /// A JSON value, written in the client's dialect.
    Json(Value),
    /// An upstream's JSON answer as it came (checked, never parsed into values): the answer
    /// of a route that passes one call's body on unchanged
    /// ([`verbatim_call`](super::verbatim_call)).
    Raw(Bytes),
    /// One page of a paged route: the dialect builds its envelope.
    Page {
        /// The page's records.
        items: Vec<Value>,
        /// The response filter's `total`; `None` when it gave no number.
        total: Option<u64>,
        /// Who says whether a next page exists (the upstream, on `upstream_pages` routes).
        more: Continuation,
    },
}

/// Status and body of a route's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The HTTP status to answer.
    pub status: StatusCode,
    /// The body to answer.
    pub body: OutBody,
    /// What the upstream answers allow a cache to do with this one (the strictest of them).
    pub cache: CacheDirective,
    /// How many upstream calls the route made (what `points_settle` may charge by).
    pub calls: u32,
}

/// The upstreams' `Cache-Control` and `Set-Cookie`, folded over every call of a route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheDirective {
    /// `no-store`, or a `Set-Cookie`: never stored.
    pub no_store: bool,
    /// `private`: only for the user it was made for.
    pub private: bool,
    /// The smallest `s-maxage`/`max-age` seen, in seconds.
    pub max_age: Option<u64>,
}

impl CacheDirective {
    /// Folds one upstream answer's headers in.
    pub fn observe(&mut self, headers: &HeaderMap) {
        if headers.contains_key(header::SET_COOKIE) {
            self.no_store = true;
        }
        let mut max_age = None;
        let mut s_maxage = None;
        for v in headers.get_all(header::CACHE_CONTROL) {
            for d in v.to_str().unwrap_or("").split(',').map(str::trim) {
                let lower = d.to_ascii_lowercase();
                match lower.split_once('=') {
                    Some(("max-age", n)) => max_age = n.trim_matches('"').parse::<u64>().ok(),
                    Some(("s-maxage", n)) => s_maxage = n.trim_matches('"').parse::<u64>().ok(),
                    Some(_) => {}
                    None if lower == "no-store" || lower == "no-cache" => self.no_store = true,
                    None if lower == "private" => self.private = true,
                    None => {}
                }
            }
        }
        // A shared cache prefers s-maxage.
        if let Some(age) = s_maxage.or(max_age) {
            self.max_age = Some(self.max_age.map_or(age, |m| m.min(age)));
        }
    }
}

/// The route's answer status: its `status_from` step's upstream status (`status_of` gives a
/// step's, when it ran), else its declared `status`.
pub(super) fn answer_status(route: &Route, status_of: impl Fn(&str) -> Option<u16>) -> StatusCode {
    let code = match &route.plan.response.status_from {
        Some(step) => status_of(step),
        None => Some(route.plan.response.status),
    };
    code.and_then(|c| StatusCode::from_u16(c).ok())
        .unwrap_or(StatusCode::OK)
}

/// What the upstream answers so far allow a cache to do (nothing, if the lock was poisoned).
pub(super) fn directive(env: &ExecEnv<'_>) -> CacheDirective {
    *env.directive.lock()
}

/// The body the route's response filter makes of the finished context. A plain path
/// (`.steps.up`) moves its value out of `ctx`: no conversion, no interpreter.
pub(super) fn response_body(route: &Route, ctx: &mut Value) -> Result<OutBody, GatewayError> {
    if let Some(found) = &route.plan.response.found {
        // Read in place: the record is not copied only to be looked at.
        let there = found.holds(ctx).map_err(|source| Internal::Filter {
            route: route.id.clone(),
            part: "response.found".into(),
            source,
        })?;
        if !there {
            return Err(GatewayError::NotFound("the requested record".into()));
        }
    }
    let Some(f) = &route.plan.response.jq else {
        return Ok(OutBody::Empty);
    };
    // Read before the filter, which may move the step's answer out of `ctx`.
    let more = match &route.plan.upstream_pages {
        Some(up) => {
            Continuation::Upstream(ctx["steps"][&*up.step]["next"].as_str().map(str::to_owned))
        }
        None => Continuation::Rosetta,
    };
    let out = match f.take_path(ctx) {
        Some(v) => v,
        None => f.run(ctx).map_err(|source| Internal::Filter {
            route: route.id.clone(),
            part: "response".into(),
            source,
        })?,
    };
    Ok(if route.paging == Paging::Rosetta {
        page_body(route, out, more)?
    } else if out.is_null() {
        // `null` is "no body" (an upstream 202/204 passed through), never the text null.
        OutBody::Empty
    } else {
        OutBody::Json(out)
    })
}

/// A paged route's `{items, total}`, as the dialect's page envelope takes them.
fn page_body(route: &Route, out: Value, more: Continuation) -> Result<OutBody, GatewayError> {
    let Value::Object(mut m) = out else {
        return Err(Internal::Answer {
            route: route.id.clone(),
            detail: "a paged response must be {items, total}".into(),
        }
        .into());
    };
    let items = match m.remove("items") {
        Some(Value::Array(a)) => a,
        Some(Value::Null) | None => Vec::new(),
        Some(other) => {
            return Err(Internal::Answer {
                route: route.id.clone(),
                detail: format!("paged `items` must be an array, got {}", kind(&other)),
            }
            .into());
        }
    };
    let total = m.get("total").and_then(Value::as_u64);
    Ok(OutBody::Page { items, total, more })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::OutBody;
    use crate::mapping::exec::fake::{Fake, catalog, run};

    #[tokio::test]
    async fn paged_routes_yield_items_and_total() {
        let (_d, cat) = catalog(
            "[[route]]\nid = \"r\"\nmatch = \"GET /x\"\npaged = true\ntenancy = { catalog = true }\n[route.response]\njq = '{items: [1,2], total: 9}'\n",
        );
        let out = run(&cat, &Fake::new(&[]), json!({})).await.unwrap();
        assert_eq!(
            out.body,
            OutBody::Page {
                items: vec![json!(1), json!(2)],
                total: Some(9),
                more: crate::dialect::paging::Continuation::Rosetta,
            }
        );
    }
}
