//! The client's request made into the route's execution context: the context the layers
//! above left in the extensions, the body read within its limit and decoded in the client's
//! dialect, declared query parameters, company ids in the body, paging and search parameters,
//! and the route's own validation. Everything a client can get wrong is refused here, before
//! any upstream is called.

use bytes::Bytes;
use http::header;
use http_body::Body as HttpBody;
use http_body_util::{BodyExt, Limited};
use serde_json::{Map, Value, json};

use super::super::price::Price;
use super::super::timeout::BodyTimedOut;
use super::super::{RouteCtx, missing};
use crate::body::BoxError;
use crate::context::{LocalAddr, RequestMeta};
use crate::dialect::paging::{self, PageRequest};
use crate::dialect::search::{SearchQuery, SearchSpec, parse_search, pushdown};
use crate::error::{BadRequest, GatewayError, Internal};
use crate::identity::Principal;
use crate::mapping::pack::{ParamSpec, ParamType};
use crate::tenancy::Reach;
use crate::tenancy::reach::{body_ids, check, check_partner_flag, request_ids};

/// What the layers above left in the request's extensions, taken once: a missing piece is
/// the stack assembled wrong, an internal error.
pub(super) struct Given {
    pub(super) rc: RouteCtx,
    pub(super) meta: RequestMeta,
    pub(super) principal: Principal,
    pub(super) price: Price,
    /// The caller's reach, for a route that reads it below the tenancy layer.
    pub(super) reach: Option<Reach>,
}

impl Given {
    pub(super) fn take(ext: &http::Extensions) -> Result<Self, GatewayError> {
        let fail = |what| missing("translate", what);
        let rc = ext
            .get::<RouteCtx>()
            .cloned()
            .ok_or_else(|| fail("a route"))?;
        let meta = ext
            .get::<RequestMeta>()
            .cloned()
            .ok_or_else(|| fail("the request's trace context"))?;
        let principal = ext
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| fail("a principal"))?;
        let price = rc.price.ok_or_else(|| fail("a price"))?;
        let route = &rc.route;
        let reach = match (
            route.tenancy.reach_below() && !route.anonymous,
            ext.get::<Reach>(),
        ) {
            (true, None) => return Err(fail("the caller's reach")),
            (true, Some(r)) => Some(r.clone()),
            (false, _) => None,
        };
        Ok(Self {
            rc,
            meta,
            principal,
            price,
            reach,
        })
    }
}

/// The execution context and what the answer is made with.
pub(super) struct Prepared<'a> {
    pub(super) ctx: Value,
    pub(super) query_pairs: Vec<(String, String)>,
    pub(super) page: Option<PageRequest>,
    pub(super) search: Option<(&'a SearchSpec, SearchQuery)>,
    /// Company ids the body named (checked), for the audit row.
    pub(super) body_targets: Vec<String>,
    /// `{path, query}`, kept only for a route that settles its points from the answer.
    pub(super) settle_request: Option<Value>,
}

/// Makes the request's execution context, or says what the client got wrong.
pub(super) fn prepare<'a>(
    given: &'a Given,
    parts: &http::request::Parts,
    bytes: &Bytes,
    max_depth: usize,
    public_url: Option<&str>,
) -> Result<Prepared<'a>, GatewayError> {
    let (rc, route) = (&given.rc, &given.rc.route);
    let dialect = route.pack.client_dialect;
    let tenancy = &route.tenancy;
    let body_value = if bytes.is_empty() {
        Value::Null
    } else {
        dialect.decode_body(bytes, max_depth)?
    };
    let query_pairs: Vec<(String, String)> = parts
        .uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    check_params(&route.request.params, &query_pairs)?;
    // Company ids in the body, checked before anything is sent (a 404 as for any id out of
    // reach), and the partner flag's rule.
    let body_targets = match &given.reach {
        Some(reach) if tenancy.has_body_ids() || tenancy.partner_flag.is_some() => {
            let ids = body_ids(tenancy, &body_value)?;
            check(reach, &ids)?;
            let acted_on = request_ids(tenancy, &rc.params, parts.uri.query())?;
            check_partner_flag(
                tenancy,
                reach,
                &body_value,
                acted_on.first().map(String::as_str),
            )?;
            ids
        }
        Some(_) | None => Vec::new(),
    };
    let page = if route.paging.reads_page() {
        Some(
            paging::parse_request(dialect.paging(), &query_pairs, &route.pack.page_defaults)
                .map_err(BadRequest::from)?,
        )
    } else {
        None
    };
    // A route the upstream pages: the upstream's token from the client's, checked before
    // anything is sent (a later page without one is a token this API never issued).
    let cursor = match (&route.plan.upstream_pages, &page) {
        (Some(_), Some(p)) => paging::upstream_cursor(&query_pairs, p).map_err(BadRequest::from)?,
        (Some(_) | None, _) => None,
    };
    let search = route
        .request
        .search
        .as_ref()
        .map(|spec| parse_search(spec, &query_pairs).map(|q| (spec, q)))
        .transpose()?;
    let base = if route.request.context.request {
        Some(base_url(public_url, parts)?)
    } else {
        None
    };
    let mut ctx = context(
        rc,
        &query_pairs,
        body_value,
        &given.principal,
        page.as_ref(),
        base,
    );
    if let Some(c) = cursor {
        ctx["page"]["cursor"] = Value::String(c);
    }
    if tenancy.reads_root {
        ctx["reach"] = json!({"root": given.reach.as_ref().and_then(Reach::root).map(|r| &**r)});
    }
    let settle_request = route
        .pricing
        .settle
        .as_ref()
        .map(|_| json!({"path": ctx["path"].clone(), "query": ctx["query"].clone()}));
    if let Some((spec, q)) = &search {
        ctx["search"] = Value::Object(pushdown(spec, q));
    }
    if let Some(v) = &route.request.validate {
        match v.run(&ctx) {
            Ok(Value::Null) => {}
            Ok(Value::String(msg)) => return Err(BadRequest::new(msg).into()),
            Ok(other) => return Err(BadRequest::new(other.to_string()).into()),
            Err(source) => {
                return Err(Internal::Filter {
                    route: route.id.clone(),
                    part: "validate".into(),
                    source,
                }
                .into());
            }
        }
    }
    Ok(Prepared {
        ctx,
        query_pairs,
        page,
        search,
        body_targets,
        settle_request,
    })
}

pub(super) async fn read_body<B>(
    headers: &http::HeaderMap,
    body: B,
    limit: usize,
) -> Result<Bytes, GatewayError>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    // Refuse what is announced too large before reading a byte of it.
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        && len > limit as u64
    {
        return Err(GatewayError::PayloadTooLarge { limit });
    }
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(GatewayError::PayloadTooLarge { limit })
            } else if let Some(late) = e.downcast_ref::<BodyTimedOut>() {
                Err(late.into())
            } else {
                Err(GatewayError::BadRequest(BadRequest::new(format!(
                    "could not read the request body: {e}"
                ))))
            }
        }
    }
}

/// The gateway's own base URL for links in answers: `server.public_url`, else the address
/// the listener that took the request is bound to. Never the client's `Host`: a client could
/// name any host, and a cached answer would carry it to every other caller.
fn base_url(
    public_url: Option<&str>,
    parts: &http::request::Parts,
) -> Result<String, GatewayError> {
    if let Some(u) = public_url {
        return Ok(u.to_owned());
    }
    match parts.extensions.get::<LocalAddr>() {
        Some(LocalAddr(addr)) => Ok(format!("http://{addr}")),
        None => Err(Internal::NoBaseUrl.into()),
    }
}

/// Checks the route's declared query parameters.
pub(super) fn check_params(
    specs: &[ParamSpec],
    pairs: &[(String, String)],
) -> Result<(), BadRequest> {
    for spec in specs {
        let value = pairs
            .iter()
            .find(|(k, _)| *k == spec.name)
            .map(|(_, v)| v.as_str());
        let Some(value) = value.filter(|v| !v.is_empty()) else {
            if spec.required {
                return Err(BadRequest::param(
                    &spec.name,
                    format!("query parameter `{}` is required", spec.name),
                ));
            }
            continue;
        };
        let ok = match spec.kind {
            ParamType::String => true,
            ParamType::Int32 => value.parse::<i32>().is_ok(),
            ParamType::Int64 => value.parse::<i64>().is_ok(),
            ParamType::Bool => {
                value.eq_ignore_ascii_case("true") || value.eq_ignore_ascii_case("false")
            }
            ParamType::DateTime => {
                time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
                    .is_ok()
                    || time::Date::parse(
                        value,
                        time::macros::format_description!("[year]-[month]-[day]"),
                    )
                    .is_ok()
            }
        };
        if ok
            && !spec.values.is_empty()
            && !spec.values.iter().any(|v| v.eq_ignore_ascii_case(value))
        {
            return Err(BadRequest::param(
                &spec.name,
                format!(
                    "query parameter `{}` must be one of {}",
                    spec.name,
                    spec.values.join(", ")
                ),
            ));
        }
        if !ok {
            let expected = match spec.kind {
                ParamType::String => "a string",
                ParamType::Int32 => "a 32-bit integer",
                ParamType::Int64 => "a 64-bit integer",
                ParamType::Bool => "true or false",
                ParamType::DateTime => "an RFC 3339 date-time or a date",
            };
            return Err(BadRequest::param(
                &spec.name,
                format!("query parameter `{}` must be {expected}", spec.name),
            ));
        }
    }
    Ok(())
}

/// The route's context: `body` always, `page` when the route pages, and of `path`,
/// `query`, `principal`, `request` what the route's templates and filters can read
/// (building the rest was a third of a passthrough request's allocations).
fn context(
    rc: &RouteCtx,
    pairs: &[(String, String)],
    body: Value,
    p: &Principal,
    page: Option<&PageRequest>,
    base_url: Option<String>,
) -> Value {
    let uses = rc.route.request.context;
    let mut ctx = Map::new();
    if uses.path {
        let path: Map<String, Value> = rc
            .params
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        ctx.insert("path".into(), Value::Object(path));
    }
    if uses.query {
        let mut query = Map::new();
        for (k, v) in pairs {
            query
                .entry(k.clone())
                .or_insert_with(|| Value::String(v.clone()));
        }
        ctx.insert("query".into(), Value::Object(query));
    }
    ctx.insert("body".into(), body);
    if uses.principal {
        ctx.insert(
            "principal".into(),
            json!({"user": &*p.user, "company": &*p.company, "roles": &*p.roles}),
        );
    }
    if let Some(pg) = page {
        ctx.insert(
            "page".into(),
            json!({
                "index": pg.index,
                "number": pg.index + 1,
                "size": pg.size,
                "offset": pg.offset(),
                "want_total": pg.want_total,
            }),
        );
    }
    if let Some(base) = base_url {
        ctx.insert("request".into(), json!({ "base_url": base }));
    }
    Value::Object(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, required: bool, kind: ParamType) -> ParamSpec {
        ParamSpec {
            name: name.into(),
            required,
            kind,
            values: Vec::new(),
        }
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn required_and_typed_params() {
        let specs = [
            spec("search", true, ParamType::String),
            spec("productId", false, ParamType::Int32),
        ];
        assert_eq!(
            check_params(&specs, &pairs(&[]))
                .unwrap_err()
                .parameter
                .as_deref(),
            Some("search")
        );
        assert_eq!(
            check_params(&specs, &pairs(&[("search", "")]))
                .unwrap_err()
                .parameter
                .as_deref(),
            Some("search")
        );
        assert!(check_params(&specs, &pairs(&[("search", "a")])).is_ok());
        let e = check_params(
            &specs,
            &pairs(&[("search", "a"), ("productId", "99999999999")]),
        )
        .unwrap_err();
        assert_eq!(e.parameter.as_deref(), Some("productId"));
        let dt = [
            spec("date", false, ParamType::DateTime),
            spec("flag", false, ParamType::Bool),
        ];
        assert!(
            check_params(
                &dt,
                &pairs(&[("date", "2024-01-02T03:04:05Z"), ("flag", "TRUE")])
            )
            .is_ok()
        );
        assert!(check_params(&dt, &pairs(&[("date", "2024-01-02")])).is_ok());
        assert!(check_params(&dt, &pairs(&[("date", "yesterday")])).is_err());
        assert!(check_params(&dt, &pairs(&[("flag", "yes")])).is_err());
    }
}
