//! Building an upstream request from a call's templates: its path and query rendered from
//! the context (with the fan-out item or walk node when there is one), the client's query
//! forwarded as the call allows, and its body made by jq in the upstream's format. Kept
//! apart from sending so a compensation builds its request exactly as a step does.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Map, Value};

use super::ExecEnv;
use super::eval::{LazyVal, run_ctx, run_jq};
use crate::dialect::xml::json_to_xml_vec;
use crate::dialect::{longjump, paging};
use crate::error::{GatewayError, Internal, UpstreamError};
use crate::mapping::jq::{to_val, with_key};
use crate::mapping::pack::{Call, ForwardQuery, Route, UpstreamFormat};
use crate::mapping::template::{self, Template, lookup};
use crate::upstream::UpstreamRequest;

/// Renders a template, looking `extra` (the fan-out item or walk node) up first.
fn render(t: &Template, ctx: &Value, extra: Option<(&str, &Value)>, path: bool) -> Option<String> {
    match extra {
        None => {
            if path {
                t.render_path(ctx)
            } else {
                t.render_raw(ctx)
            }
        }
        Some((key, value)) => {
            // Only the first level is rebuilt: `{item.x}` and `{path.y}` both resolve.
            let mut shallow = Map::with_capacity(2);
            shallow.insert(key.to_owned(), value.clone());
            for root in template::ROOTS {
                if *root != key
                    && t.vars().any(|v| v[0] == *root)
                    && let Some(v) = lookup(ctx, &[(*root).to_owned()])
                {
                    shallow.insert((*root).to_owned(), v.clone());
                }
            }
            let view = Value::Object(shallow);
            if path {
                t.render_path(&view)
            } else {
                t.render_raw(&view)
            }
        }
    }
}

pub(super) fn build_request(
    route: &Route,
    step: &str,
    call: &Call,
    ctx: &Value,
    ctx_val: &LazyVal<'_>,
    extra: Option<(&str, &Value)>,
    env: &ExecEnv<'_>,
) -> Result<UpstreamRequest, GatewayError> {
    let Some(path) = render(&call.path, ctx, extra, true) else {
        // A path value that does not exist means the thing it points at does not exist
        // (e.g. a customer with no association): the client asked for something missing.
        return Err(GatewayError::Upstream(UpstreamError::Status {
            upstream: call.upstream.clone(),
            status: StatusCode::NOT_FOUND,
            message: Some(format!(
                "route {} step {step}: a value the upstream path needs is missing",
                route.id
            )),
            answer: None,
        }));
    };
    let mut query = form_urlencoded::Serializer::new(String::new());
    let mut set: Vec<&str> = Vec::new();
    for (k, t) in &call.query {
        if let Some(v) = render(t, ctx, extra, false) {
            query.append_pair(k, &v);
            set.push(k);
        }
    }
    match &call.forward_query {
        ForwardQuery::None => {}
        ForwardQuery::All => {
            for (k, v) in env.query_pairs {
                if !set.contains(&k.as_str()) {
                    query.append_pair(k, v);
                }
            }
        }
        ForwardQuery::Only(keys) => {
            for (k, v) in env.query_pairs {
                if keys.contains(k) && !set.contains(&k.as_str()) {
                    query.append_pair(k, v);
                }
            }
        }
    }
    // The paging step of a route the upstream pages: the client's page in the upstream's
    // scheme (its size, and the upstream's own token carried in the client's).
    if let Some(up) = &route.plan.upstream_pages
        && *up.step == *step
    {
        let size = ctx["page"]["size"].as_u64().unwrap_or(1);
        for (k, v) in paging::upstream_params(up.scheme, size, ctx["page"]["cursor"].as_str()) {
            query.append_pair(&k, &v);
        }
    }
    let query = query.finish();
    let path_and_query = if query.is_empty() {
        path
    } else {
        format!("{path}?{query}")
    };
    let xml = match &route.pack.upstream_format {
        UpstreamFormat::Json => false,
        UpstreamFormat::LongJumpXml(_) => true,
    };
    let media = if xml {
        HeaderValue::from_static("application/xml")
    } else {
        HeaderValue::from_static("application/json")
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::ACCEPT, media.clone());
    if let Some(tp) = env.meta.traceparent() {
        headers.insert(crate::header_names::TRACEPARENT, tp);
    }
    let body = match &call.body {
        None => Bytes::new(),
        Some(f) => {
            let value = match extra {
                None => run_ctx(route, format_args!("step {step} body"), f, ctx, ctx_val)?,
                Some((k, v)) => run_jq(
                    route,
                    format_args!("step {step} body"),
                    f,
                    with_key(ctx_val.get(), k, to_val(v)),
                )?,
            };
            headers.insert(header::CONTENT_TYPE, media);
            if xml {
                let mut out = Vec::with_capacity(256);
                json_to_xml_vec(&value, longjump::platform_rules(), &mut out).map_err(|e| {
                    Internal::Answer {
                        route: route.id.clone(),
                        detail: format!("step {step}: its body does not make XML: {e}"),
                    }
                })?;
                Bytes::from(out)
            } else {
                Bytes::from(serde_json::to_vec(&value).unwrap_or_default())
            }
        }
    };
    Ok(UpstreamRequest {
        method: call.method.clone(),
        path_and_query,
        headers,
        body,
    })
}
