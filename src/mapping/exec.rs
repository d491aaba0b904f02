//! Route execution: the steps of a route run against the request context.
//!
//! The context is one JSON object: `path`, `query`, `body`, `principal`, `page` and, as steps
//! finish, `steps.<name>`. Stages run in order and the steps of a stage concurrently; a
//! `for_each` step fans out with bounded concurrency, keeping the items' order; a `walk`
//! step visits a tree breadth-first, cycle-safe and bounded. When a step fails, the
//! compensations of the steps already done run in reverse order before the error is
//! returned, so a multi-call write never leaves the upstream half-changed (reassign).

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::join_all;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use jaq_json::Val;
use serde_json::{Map, Value};

use super::jq::{JqFilter, to_val, with_key};
use super::pack::{Call, Fan, ForwardQuery, Route, Step, StepKind};
use super::template::{Template, lookup};
use crate::context::RequestMeta;
use crate::error::{GatewayError, UpstreamError};
use crate::upstream::{UpstreamRequest, UpstreamResponse, Upstreams};

/// A boxed future of an upstream answer.
pub type CallFuture<'a> =
    Pin<Box<dyn Future<Output = Result<UpstreamResponse, UpstreamError>> + Send + 'a>>;

/// Whoever performs upstream calls: the real pooled clients, or a fake in tests.
pub trait CallUpstream: Send + Sync {
    fn call<'a>(&'a self, upstream: &'a str, req: UpstreamRequest) -> CallFuture<'a>;
}

impl CallUpstream for Upstreams {
    fn call<'a>(&'a self, upstream: &'a str, req: UpstreamRequest) -> CallFuture<'a> {
        Box::pin(Upstreams::call(self, upstream, req))
    }
}

/// What executing a route produced, before the client dialect renders it.
#[derive(Debug, Clone, PartialEq)]
pub enum OutBody {
    Empty,
    Json(Value),
    /// One page of a paged route: the dialect builds its envelope.
    Page {
        items: Vec<Value>,
        total: Option<u64>,
    },
}

/// Status and body of a route's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: StatusCode,
    pub body: OutBody,
}

/// Everything a route execution needs besides the route and its context.
pub struct ExecEnv<'a> {
    pub upstreams: &'a dyn CallUpstream,
    pub meta: &'a RequestMeta,
    /// The client's query pairs, for `forward_query` (keeps repeated keys).
    pub query_pairs: &'a [(String, String)],
}

/// One fanned-out call.
type Fanned<'a> = Pin<Box<dyn Future<Output = Result<(u16, Value), GatewayError>> + Send + 'a>>;

struct StepOut {
    value: Value,
    status: Option<u16>,
    /// The step's `when` said no: nothing was done, so there is nothing to compensate.
    skipped: bool,
}

/// Runs `route` with `ctx` (an object with `path`, `query`, `body`, `principal`, `page`).
pub async fn execute(
    route: &Route,
    mut ctx: Value,
    env: &ExecEnv<'_>,
) -> Result<Outcome, GatewayError> {
    if !ctx.is_object() {
        ctx = Value::Object(Map::new());
    }
    ctx["steps"] = Value::Object(Map::new());
    let mut statuses: HashMap<&str, u16> = HashMap::new();
    let mut done: Vec<&Step> = Vec::new();
    for stage in &route.stages {
        let ctx_val = to_val(&ctx);
        let results = join_all(
            stage
                .iter()
                .map(|step| run_step(route, step, &ctx, &ctx_val, env)),
        )
        .await;
        let mut failure = None;
        for (step, result) in stage.iter().zip(results) {
            match result {
                Ok(out) => {
                    ctx["steps"][&step.name] = out.value;
                    if let Some(s) = out.status {
                        statuses.insert(&step.name, s);
                    }
                    if !out.skipped {
                        done.push(step);
                    }
                }
                Err(e) => {
                    if failure.is_none() {
                        failure = Some(e);
                    }
                }
            }
        }
        if let Some(err) = failure {
            compensate(route, &done, &ctx, env).await;
            return Err(err);
        }
    }
    let status = match &route.response.status_from {
        Some(step) => statuses
            .get(step.as_str())
            .and_then(|s| StatusCode::from_u16(*s).ok())
            .unwrap_or(StatusCode::OK),
        None => StatusCode::from_u16(route.response.status).unwrap_or(StatusCode::OK),
    };
    let body = match &route.response.jq {
        None => OutBody::Empty,
        Some(f) => {
            let out = run_jq(route, "response", f, to_val(&ctx))?;
            if route.paged {
                page_body(route, out)?
            } else if out.is_null() {
                // `null` is "no body" (an upstream 202/204 passed through), never the text null.
                OutBody::Empty
            } else {
                OutBody::Json(out)
            }
        }
    };
    Ok(Outcome { status, body })
}

fn page_body(route: &Route, out: Value) -> Result<OutBody, GatewayError> {
    let Value::Object(mut m) = out else {
        return Err(GatewayError::Internal(format!(
            "route {}: a paged response must be {{items, total}}",
            route.id
        )));
    };
    let items = match m.remove("items") {
        Some(Value::Array(a)) => a,
        Some(Value::Null) | None => Vec::new(),
        Some(other) => {
            return Err(GatewayError::Internal(format!(
                "route {}: paged `items` must be an array, got {}",
                route.id,
                kind(&other)
            )));
        }
    };
    let total = m.get("total").and_then(Value::as_u64);
    Ok(OutBody::Page { items, total })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn run_jq(route: &Route, what: &str, f: &JqFilter, input: Val) -> Result<Value, GatewayError> {
    f.run_val(input)
        .map_err(|e| GatewayError::Internal(format!("route {} {what}: {e}", route.id)))
}

fn truthy(v: &Value) -> bool {
    !matches!(v, Value::Null | Value::Bool(false))
}

async fn run_step(
    route: &Route,
    step: &Step,
    ctx: &Value,
    ctx_val: &Val,
    env: &ExecEnv<'_>,
) -> Result<StepOut, GatewayError> {
    if let Some(when) = &step.when
        && !truthy(&run_jq(
            route,
            &format!("step {} when", step.name),
            when,
            ctx_val.clone(),
        )?)
    {
        return Ok(StepOut { value: Value::Null, status: None, skipped: true });
    }
    match &step.kind {
        StepKind::Compute(f) => {
            let value = run_jq(route, &format!("step {}", step.name), f, ctx_val.clone())?;
            Ok(StepOut { value, status: None, skipped: false })
        }
        StepKind::Call { call, fan } => match fan {
            Fan::One => {
                let (status, value) = perform(route, step, call, ctx, ctx_val, None, env).await?;
                Ok(StepOut { value, status: Some(status), skipped: false })
            }
            Fan::ForEach {
                items,
                concurrency,
                max_items,
            } => {
                let items = run_jq(
                    route,
                    &format!("step {} for_each", step.name),
                    items,
                    ctx_val.clone(),
                )?;
                let Value::Array(items) = items else {
                    return Err(GatewayError::Internal(format!(
                        "route {} step {}: for_each must yield an array, got {}",
                        route.id,
                        step.name,
                        kind(&items)
                    )));
                };
                if items.len() > *max_items {
                    return Err(GatewayError::Internal(format!(
                        "route {} step {}: {} items exceed the fan-out limit of {max_items}",
                        route.id,
                        step.name,
                        items.len()
                    )));
                }
                // Boxed and collected first: the opaque future of `perform` made in a closure
                // is not provably `Send` for all lifetimes (a rustc limitation).
                let futs: Vec<Fanned<'_>> = items
                    .iter()
                    .map(|item| {
                        Box::pin(perform(route, step, call, ctx, ctx_val, Some(("item", item)), env))
                            as Fanned<'_>
                    })
                    .collect();
                let results: Vec<Result<(u16, Value), GatewayError>> =
                    futures_util::stream::iter(futs).buffered(*concurrency).collect().await;
                let values = results
                    .into_iter()
                    .map(|r| r.map(|(_, v)| v))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(StepOut { value: Value::Array(values), status: None, skipped: false })
            }
            Fan::Walk {
                start,
                children,
                max_depth,
                max_nodes,
                concurrency,
            } => {
                let start = run_jq(
                    route,
                    &format!("step {} walk.start", step.name),
                    start,
                    ctx_val.clone(),
                )?;
                let value = walk(
                    route,
                    step,
                    call,
                    ctx,
                    ctx_val,
                    env,
                    start,
                    children,
                    *max_depth,
                    *max_nodes,
                    *concurrency,
                )
                .await?;
                Ok(StepOut { value, status: None, skipped: false })
            }
        },
    }
}

#[allow(clippy::too_many_arguments)]
async fn walk(
    route: &Route,
    step: &Step,
    call: &Call,
    ctx: &Value,
    ctx_val: &Val,
    env: &ExecEnv<'_>,
    start: Value,
    children: &JqFilter,
    max_depth: usize,
    max_nodes: usize,
    concurrency: usize,
) -> Result<Value, GatewayError> {
    let mut visited: HashSet<String> = HashSet::new();
    let mut frontier: VecDeque<(Value, Value)> = VecDeque::new();
    for id in as_list(start) {
        if visited.insert(id_key(&id)) {
            frontier.push_back((id, Value::Null));
        }
    }
    let mut out = Vec::new();
    let mut depth = 0usize;
    while !frontier.is_empty() && depth <= max_depth {
        let level: Vec<(Value, Value)> = frontier.drain(..).collect();
        let futs: Vec<Fanned<'_>> = level
            .iter()
            .map(|(node, _)| {
                Box::pin(perform(route, step, call, ctx, ctx_val, Some(("node", node)), env))
                    as Fanned<'_>
            })
            .collect();
        let answers: Vec<Result<(u16, Value), GatewayError>> =
            futures_util::stream::iter(futs).buffered(concurrency).collect().await;
        for ((node, parent), answer) in level.into_iter().zip(answers) {
            let (_, response) = answer?;
            let kids = run_jq(
                route,
                &format!("step {} walk.children", step.name),
                children,
                to_val(&response),
            )?;
            for kid in as_list(kids) {
                if visited.len() >= max_nodes {
                    break;
                }
                if visited.insert(id_key(&kid)) {
                    frontier.push_back((kid, node.clone()));
                }
            }
            out.push(serde_json::json!({"node": node, "parent": parent, "depth": depth, "response": response}));
        }
        depth += 1;
    }
    Ok(Value::Array(out))
}

fn as_list(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a.into_iter().filter(|x| !x.is_null()).collect(),
        Value::Null => Vec::new(),
        other @ (Value::Bool(_) | Value::Number(_) | Value::String(_) | Value::Object(_)) => {
            vec![other]
        }
    }
}

fn id_key(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other @ (Value::Null
        | Value::Bool(_)
        | Value::Number(_)
        | Value::Array(_)
        | Value::Object(_)) => other.to_string(),
    }
}

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
            for root in super::template::ROOTS {
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

/// Builds and performs one upstream call, returning its status and decoded body.
async fn perform(
    route: &Route,
    step: &Step,
    call: &Call,
    ctx: &Value,
    ctx_val: &Val,
    extra: Option<(&str, &Value)>,
    env: &ExecEnv<'_>,
) -> Result<(u16, Value), GatewayError> {
    let req = build_request(route, &step.name, call, ctx, ctx_val, extra, env)?;
    let resp = env.upstreams.call(&call.upstream, req).await?;
    let status = resp.status.as_u16();
    let body = decode_upstream(&call.upstream, &resp)?;
    if resp.status.is_success() {
        return Ok((status, body));
    }
    if step.allow_status.contains(&status) {
        return Ok((status, body));
    }
    Err(GatewayError::Upstream(UpstreamError::Status {
        upstream: call.upstream.clone(),
        status: resp.status,
        message: upstream_message(&body),
    }))
}

fn build_request(
    route: &Route,
    step: &str,
    call: &Call,
    ctx: &Value,
    ctx_val: &Val,
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
    let query = query.finish();
    let path_and_query = if query.is_empty() {
        path
    } else {
        format!("{path}?{query}")
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    if let Ok(tp) = HeaderValue::from_str(&env.meta.traceparent()) {
        headers.insert("traceparent", tp);
    }
    let body = match &call.body {
        None => Bytes::new(),
        Some(f) => {
            let input = match extra {
                None => ctx_val.clone(),
                Some((k, v)) => with_key(ctx_val, k, to_val(v)),
            };
            let value = f.run_val(input).map_err(|e| {
                GatewayError::Internal(format!("route {} step {step} body: {e}", route.id))
            })?;
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            Bytes::from(serde_json::to_vec(&value).unwrap_or_default())
        }
    };
    Ok(UpstreamRequest {
        method: call.method.clone(),
        path_and_query,
        headers,
        body,
    })
}

/// Decodes an upstream body as JSON; an empty body is null.
fn decode_upstream(upstream: &str, resp: &UpstreamResponse) -> Result<Value, GatewayError> {
    if resp.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&resp.body).map_err(|e| {
        let ct = resp
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none");
        GatewayError::Upstream(UpstreamError::InvalidResponse {
            upstream: upstream.to_owned(),
            detail: format!("expected JSON (content-type {ct}): {e}"),
        })
    })
}

fn upstream_message(body: &Value) -> Option<String> {
    ["message", "detail", "title", "error_description", "error"]
        .iter()
        .find_map(|k| body.get(*k).and_then(Value::as_str))
        .map(str::to_owned)
}

async fn compensate(route: &Route, done: &[&Step], ctx: &Value, env: &ExecEnv<'_>) {
    let ctx_val = to_val(ctx);
    for step in done.iter().rev() {
        let Some(call) = &step.compensate else {
            continue;
        };
        let result = match build_request(route, &step.name, call, ctx, &ctx_val, None, env) {
            Ok(req) => env
                .upstreams
                .call(&call.upstream, req)
                .await
                .map_err(GatewayError::from),
            Err(e) => Err(e),
        };
        match result {
            Ok(resp) if resp.status.is_success() => {
                tracing::warn!(route = %route.id, step = %step.name, tracecode = %env.meta.tracecode, "compensated after a failed step");
            }
            Ok(resp) => {
                tracing::error!(route = %route.id, step = %step.name, status = resp.status.as_u16(), tracecode = %env.meta.tracecode, "compensation answered an error: upstream state needs repair");
            }
            Err(e) => {
                tracing::error!(route = %route.id, step = %step.name, error = %e, tracecode = %env.meta.tracecode, "compensation failed: upstream state needs repair");
            }
        }
    }
}
