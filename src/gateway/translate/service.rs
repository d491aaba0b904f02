//! [`Translate`].

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use http_body::Body as HttpBody;
use http_body_util::{BodyExt, Limited};
use serde_json::{Map, Value, json};
use tower::Service;

use super::super::tenancy::BodyTargets;
use super::super::upstream::ExecRequest;
use super::super::{BoxFuture, RouteCtx, SettledPoints};
use crate::body::{Body, BoxError, empty, full};
use crate::capture::{CallLog, Flow, keep};
use crate::config::CaptureMode;
use crate::context::{LocalAddr, RequestMeta};
use crate::dialect::paging::{self, PageRequest};
use crate::dialect::search::{apply, parse_search, pushdown};
use crate::error::{BadRequest, GatewayError};
use crate::identity::Principal;
use crate::mapping::exec::{OutBody, Outcome};
use crate::mapping::pack::{ParamSpec, ParamType, Route};
use crate::store::Store;
use crate::tenancy::Reach;
use crate::tenancy::reach::{body_ids, check, check_partner_flag, keep_in_reach, request_ids};

/// See the module docs.
#[derive(Debug, Clone)]
pub struct Translate<S> {
    pub(super) inner: S,
    pub(super) body_limit: usize,
    pub(super) max_depth: usize,
    pub(super) public_url: Option<Arc<str>>,
    pub(super) capture: Option<CaptureSink>,
}

impl<S, B> Service<Request<B>> for Translate<S>
where
    S: Service<ExecRequest, Response = Outcome, Error = GatewayError> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = GatewayError;
    type Future = BoxFuture<'static, Result<Response<Body>, GatewayError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let mut inner = super::super::take_ready(&mut self.inner);
        let (limit, max_depth) = (self.body_limit, self.max_depth);
        let public_url = self.public_url.clone();
        let capture = self.capture.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let Some(rc) = parts.extensions.get::<RouteCtx>().cloned() else {
                return Err(GatewayError::Internal(
                    "translate reached without a route".into(),
                ));
            };
            let meta = parts
                .extensions
                .get::<RequestMeta>()
                .cloned()
                .unwrap_or_else(|| RequestMeta::new(None));
            let principal = parts
                .extensions
                .get::<Principal>()
                .cloned()
                .unwrap_or_else(Principal::anonymous);
            let route = rc.route.clone();
            let dialect = route.pack.client_dialect;
            let tenancy = &route.tenancy;
            // The tenancy layer hands on the caller's reach for every route that needs it.
            let reach = match (
                tenancy.reach_below() && !route.anonymous,
                parts.extensions.get::<Reach>(),
            ) {
                (true, None) => {
                    return Err(GatewayError::Internal(
                        "translate reached without the caller's reach".into(),
                    ));
                }
                (true, Some(r)) => Some(r.clone()),
                (false, _) => None,
            };

            let read = read_body(&parts.headers, body, limit).await;
            let input = read.as_ref().map(Bytes::clone).unwrap_or_default();
            let calls = capture.as_ref().map(|_| CallLog::default());
            let exec_meta = meta.clone();
            let exec_calls = calls.clone();
            let result: Result<(Response<Body>, Bytes), GatewayError> = async {
                let bytes = read?;
                let body_value = if bytes.is_empty() {
                    Value::Null
                } else {
                    dialect.decode_body(&bytes, max_depth)?
                };
                let query_pairs: Vec<(String, String)> = parts
                    .uri
                    .query()
                    .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
                    .unwrap_or_default();
                check_params(&route.params, &query_pairs)?;
                // Company ids in the body, checked before anything is sent (a 404 as for any
                // id out of reach), and the partner flag's rule.
                let body_targets = match &reach {
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
                let page = if route.paged || route.check_paging {
                    Some(
                        paging::parse_request(
                            dialect.paging(),
                            &query_pairs,
                            &route.pack.page_defaults,
                        )
                        .map_err(BadRequest::from)?,
                    )
                } else {
                    None
                };
                let search = route
                    .search
                    .as_ref()
                    .map(|spec| parse_search(spec, &query_pairs).map(|q| (spec, q)))
                    .transpose()?;
                let base = if route.context.request {
                    Some(base_url(public_url.as_deref(), &parts)?)
                } else {
                    None
                };
                let mut ctx =
                    context(&rc, &query_pairs, body_value, &principal, page.as_ref(), base);
                if tenancy.reads_root {
                    ctx["reach"] = json!({"root": reach.as_ref().and_then(Reach::root).map(|r| &**r)});
                }
            // Kept only for a route that settles its points from the answer.
            let settle_request = route
                .points_settle
                .as_ref()
                .map(|_| json!({"path": ctx["path"].clone(), "query": ctx["query"].clone()}));
                if let Some((spec, q)) = &search {
                    ctx["search"] = Value::Object(pushdown(spec, q));
                }
                if let Some(v) = &route.validate {
                    match v.run(&ctx) {
                        Ok(serde_json::Value::Null) => {}
                        Ok(serde_json::Value::String(msg)) => {
                            return Err(BadRequest::new(msg).into());
                        }
                        Ok(other) => return Err(BadRequest::new(other.to_string()).into()),
                        Err(e) => {
                            return Err(GatewayError::Internal(format!(
                                "route {} validate: {e}",
                                route.id
                            )));
                        }
                    }
                }
                let outcome = inner
                    .call(ExecRequest {
                        route: route.clone(),
                        ctx,
                        query_pairs: query_pairs.clone(),
                        meta: exec_meta,
                        calls: exec_calls,
                    })
                    .await?;
                // A list of companies keeps what the caller reaches before it is paged, so
                // totals and pages count only that.
                let outcome = match (&tenancy.items, &reach, outcome.body) {
                    (Some(field), Some(reach), OutBody::Page { items, .. }) => {
                        let items = keep_in_reach(reach, field, items);
                        let body = match &search {
                            Some(_) => OutBody::Page { items, total: None },
                            None => {
                                let total = items.len() as u64;
                                let (offset, size) = page.as_ref().map_or((0, u64::MAX), |p| (p.offset(), p.size));
                                let items = items
                                    .into_iter()
                                    .skip(usize::try_from(offset).unwrap_or(usize::MAX))
                                    .take(usize::try_from(size).unwrap_or(usize::MAX))
                                    .collect();
                                OutBody::Page { items, total: Some(total) }
                            }
                        };
                        Outcome { status: outcome.status, body, cache: outcome.cache }
                    }
                    (Some(_), _, body) | (None, _, body) => Outcome {
                        status: outcome.status,
                        body,
                        cache: outcome.cache,
                    },
                };
                let outcome = match (&search, outcome.body) {
                    (Some((spec, q)), OutBody::Page { items, .. }) => {
                        let pg = page.unwrap_or(PageRequest {
                            index: 0,
                            size: u64::MAX,
                            want_total: false,
                        });
                        let (items, total) = apply(spec, q, items, pg.offset(), pg.size);
                        Outcome {
                            status: outcome.status,
                            body: OutBody::Page {
                                items,
                                total: Some(total),
                            },
                            cache: outcome.cache,
                        }
                    }
                    (None | Some(_), body) => Outcome {
                        status: outcome.status,
                        body,
                        cache: outcome.cache,
                    },
                };
                let settled = route.points_settle.as_ref().map(|f| {
                let response = match &outcome.body {
                    OutBody::Empty => Value::Null,
                    OutBody::Json(v) => v.clone(),
                    OutBody::Raw(b) => serde_json::from_slice(b).unwrap_or(Value::Null),
                    OutBody::Page { items, total } => json!({"items": items, "total": total}),
                };
                let input = json!({"response": response, "request": settle_request});
                match f.run(&input) {
                    Ok(v) => v.as_f64().map_or(0, |n| n.max(0.0).ceil() as u64),
                    Err(e) => {
                        tracing::warn!(route = %route.id, error = %e, "points_settle failed; keeping the reserved points");
                        route_cost_fallback(&route)
                    }
                }
            });
            let directive = outcome.cache;
            let (mut resp, bytes) = render(&route, outcome, page.as_ref(), &query_pairs);
            resp.extensions_mut().insert(directive);
            if let Some(n) = settled {
                resp.extensions_mut().insert(SettledPoints(n));
            }
            if !body_targets.is_empty() {
                resp.extensions_mut().insert(BodyTargets(
                    body_targets.iter().map(|id| Arc::from(id.as_str())).collect(),
                ));
            }
            Ok((resp, bytes))
            }
            .await;
            if let Some(sink) = &capture {
                sink.keep(&meta, &route, &parts, &input, calls.as_ref(), &result);
            }
            result.map(|(resp, _)| resp)
        })
    }
}

/// Where and how much of each request's bodies are kept (`[capture]`).
#[derive(Clone)]
pub struct CaptureSink {
    pub store: Arc<dyn Store>,
    pub mode: CaptureMode,
    pub max_body_bytes: usize,
}

impl std::fmt::Debug for CaptureSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureSink")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl CaptureSink {
    /// Hands the four flows of one request to the store when the mode wants them.
    fn keep(
        &self,
        meta: &RequestMeta,
        route: &Route,
        parts: &http::request::Parts,
        input: &[u8],
        calls: Option<&CallLog>,
        result: &Result<(Response<Body>, Bytes), GatewayError>,
    ) {
        let dialect = route.pack.client_dialect;
        let (status, content_type, output) = match result {
            Ok((resp, bytes)) => (
                resp.status(),
                dialect.content_type().to_owned(),
                bytes.clone(),
            ),
            Err(e) => {
                let (ct, body) = dialect.error_body(e, meta, parts.uri.path());
                (e.status(), ct.to_owned(), body)
            }
        };
        let wanted = match self.mode {
            CaptureMode::Off => false,
            CaptureMode::Errors => status.as_u16() >= 400,
            CaptureMode::All => true,
        };
        if !wanted {
            return;
        }
        let cap = self.max_body_bytes;
        let in_ct = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream");
        let (sent, received) = calls.map(CallLog::documents).unwrap_or_default();
        let bodies = vec![
            keep(Flow::Input, 0, in_ct, input, cap),
            keep(Flow::Input, 1, "application/json", &sent, cap),
            keep(Flow::Output, 0, "application/json", &received, cap),
            keep(Flow::Output, 1, &content_type, &output, cap),
        ];
        let now = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
        self.store
            .record_capture(meta.tracecode.to_string(), now, bodies);
    }
}

async fn read_body<B>(
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
            } else {
                Err(GatewayError::BadRequest(BadRequest::new(format!(
                    "could not read the request body: {e}"
                ))))
            }
        }
    }
}

/// A settlement that fails keeps the route's constant cost (jq costs count 1).
fn route_cost_fallback(route: &Route) -> u64 {
    match &route.points {
        crate::mapping::pack::Points::Const(n) => u64::from(*n),
        crate::mapping::pack::Points::Jq(_) => 1,
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
        None => Err(GatewayError::Internal(
            "a link needs server.public_url or the listener's address, and neither is known".into(),
        )),
    }
}

/// Checks the route's declared query parameters.
pub fn check_params(specs: &[ParamSpec], pairs: &[(String, String)]) -> Result<(), BadRequest> {
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
    let uses = rc.route.context;
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

fn render(
    route: &Route,
    outcome: Outcome,
    page: Option<&PageRequest>,
    pairs: &[(String, String)],
) -> (Response<Body>, Bytes) {
    let dialect = route.pack.client_dialect;
    let body = match outcome.body {
        OutBody::Empty => None,
        OutBody::Json(v) => Some(dialect.encode_body(&v)),
        OutBody::Raw(b) => Some(dialect.encode_json_text(b)),
        OutBody::Page { items, total } => {
            let page = page.copied().unwrap_or(PageRequest {
                index: 0,
                size: items.len().max(1) as u64,
                want_total: false,
            });
            Some(dialect.encode_body(&paging::render_page(
                dialect.paging(),
                items,
                total,
                &page,
                pairs,
            )))
        }
    };
    let sent = body.clone().unwrap_or_default();
    let mut resp = match body {
        Some(b) => {
            let mut r = super::super::answer(full(b));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(dialect.content_type()),
            );
            r
        }
        None => super::super::answer(empty()),
    };
    *resp.status_mut() = outcome.status;
    (resp, sent)
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
