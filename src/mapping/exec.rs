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
use super::pack::{Call, Fan, ForwardQuery, Route, Step, StepKind, UpstreamFormat};
use super::template::{Template, lookup};
use crate::capture::{CallLog, Exchange};
use crate::context::RequestMeta;
use crate::dialect::xml::{json_to_xml_vec, xml_to_json_vec, xml_to_value};
use crate::dialect::{Dialect, longjump};
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
    /// An upstream's JSON answer as it came (checked, never parsed into values): the answer
    /// of a route that passes one call's body on unchanged ([`verbatim_call`]).
    Raw(Bytes),
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
    /// What the upstream answers allow a cache to do with this one (the strictest of them).
    pub cache: CacheDirective,
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

/// Everything a route execution needs besides the route and its context.
pub struct ExecEnv<'a> {
    pub upstreams: &'a dyn CallUpstream,
    pub meta: &'a RequestMeta,
    /// The client's query pairs, for `forward_query` (keeps repeated keys).
    pub query_pairs: &'a [(String, String)],
    /// Upstream exchanges are recorded here when the request is captured.
    pub calls: Option<&'a CallLog>,
    /// Bytes kept of each recorded upstream body.
    pub capture_cap: usize,
    /// The upstream answers' cache directives, folded as calls complete.
    pub directive: std::sync::Mutex<CacheDirective>,
}

/// The context as a jq value, converted on first use: a stage whose steps only render
/// templates (most calls) never pays for the conversion.
struct LazyVal<'a> {
    ctx: &'a Value,
    val: std::sync::OnceLock<Val>,
}

impl<'a> LazyVal<'a> {
    fn new(ctx: &'a Value) -> Self {
        Self {
            ctx,
            val: std::sync::OnceLock::new(),
        }
    }

    fn get(&self) -> &Val {
        self.val.get_or_init(|| to_val(self.ctx))
    }
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
    if let Some((step, call)) = verbatim_call(route) {
        return verbatim(route, step, call, &ctx, env).await;
    }
    let mut statuses: HashMap<&str, u16> = HashMap::new();
    let mut done: Vec<&Step> = Vec::new();
    for stage in &route.stages {
        let ctx_val = LazyVal::new(&ctx);
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
    let status = answer_status(route, |step| statuses.get(step).copied());
    let body = match &route.response.jq {
        None => OutBody::Empty,
        Some(f) => {
            // A plain path (`.steps.up`) moves the value out: no conversion, no interpreter.
            let out = match f.take_path(&mut ctx) {
                Some(v) => v,
                None => f.run(&ctx).map_err(|e| {
                    GatewayError::Internal(format!("route {} response: {e}", route.id))
                })?,
            };
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
    Ok(Outcome {
        status,
        body,
        cache: directive(env),
    })
}

/// The route's answer status: its `status_from` step's upstream status (`status_of` gives a
/// step's, when it ran), else its declared `status`.
fn answer_status(route: &Route, status_of: impl Fn(&str) -> Option<u16>) -> StatusCode {
    let code = match &route.response.status_from {
        Some(step) => status_of(step),
        None => Some(route.response.status),
    };
    code.and_then(|c| StatusCode::from_u16(c).ok())
        .unwrap_or(StatusCode::OK)
}

/// Whether a step takes its call's answer: a success, or a status the step allows.
fn accepted(step: &Step, resp: &UpstreamResponse) -> bool {
    resp.status.is_success() || step.allow_status.contains(&resp.status.as_u16())
}

/// What the upstream answers so far allow a cache to do (nothing, if the lock was poisoned).
fn directive(env: &ExecEnv<'_>) -> CacheDirective {
    env.directive.lock().map(|d| *d).unwrap_or(CacheDirective {
        no_store: true,
        private: false,
        max_age: None,
    })
}

/// The call whose upstream answer is the route's answer unchanged: a route of one call (no
/// `when`, no fan-out) whose response is `.steps.<that call>`, from a JSON upstream to a JSON
/// client, not paged and with no `points_settle` (which reads the answer). Such an answer is
/// checked as JSON and sent on as it came: parsing it into values only to write the same JSON
/// again was the largest part of these routes' work for bodies of any size, and the bytes as
/// sent keep what values would not (number spelling beyond `f64`, key order, escapes).
pub fn verbatim_call(route: &Route) -> Option<(&Step, &Call)> {
    let [stage] = route.stages.as_slice() else {
        return None;
    };
    let [step] = stage.as_slice() else {
        return None;
    };
    let StepKind::Call {
        call,
        fan: Fan::One,
    } = &step.kind
    else {
        return None;
    };
    let json_client = match route.pack.client_dialect {
        Dialect::RedapiV1 | Dialect::AppDirect | Dialect::Fusion | Dialect::Admin => true,
        Dialect::LongJump => false,
    };
    let json_upstream = match route.pack.upstream_format {
        UpstreamFormat::Json => true,
        UpstreamFormat::LongJumpXml(_) => false,
    };
    if !json_client
        || !json_upstream
        || step.when.is_some()
        || route.paged
        || route.points_settle.is_some()
        || route.search.is_some()
    {
        return None;
    }
    match route.response.jq.as_ref()?.path()? {
        [steps, name] if steps == "steps" && *name == step.name => Some((step, call)),
        _ => None,
    }
}

/// Runs a [`verbatim_call`] route: the call, its status checks as [`perform`] makes them, and
/// its body passed on as [`OutBody::Raw`].
async fn verbatim(
    route: &Route,
    step: &Step,
    call: &Call,
    ctx: &Value,
    env: &ExecEnv<'_>,
) -> Result<Outcome, GatewayError> {
    let req = build_request(route, &step.name, call, ctx, &LazyVal::new(ctx), None, env)?;
    let resp = send(call, req, env).await?;
    let status = resp.status.as_u16();
    if !accepted(step, &resp) {
        let body = decode_upstream(&route.pack.upstream_format, &call.upstream, &resp, None)?;
        return Err(refused(call, &resp, &body));
    }
    let text = resp.body.trim_ascii();
    let body = if text.is_empty() || text == b"null" {
        // As a value, `null` is "no body" (an upstream 202/204 passed through).
        OutBody::Empty
    } else {
        // The whole body, as the parsing path reads it: an error's line and column are the same.
        serde_json::from_slice::<serde::de::IgnoredAny>(&resp.body)
            .map_err(|e| unreadable(&call.upstream, &resp, "JSON", e))?;
        OutBody::Raw(resp.body.slice_ref(text))
    };
    Ok(Outcome {
        status: answer_status(route, |name| (name == step.name).then_some(status)),
        body,
        cache: directive(env),
    })
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

/// `what` names the filter in an error; formatted only then (steps run on every request).
fn run_jq(
    route: &Route,
    what: std::fmt::Arguments<'_>,
    f: &JqFilter,
    input: Val,
) -> Result<Value, GatewayError> {
    f.run_val(input)
        .map_err(|e| GatewayError::Internal(format!("route {} {what}: {e}", route.id)))
}

/// Runs `f` on the route context: directly when the filter allows, else through jaq on the
/// context converted once for the stage.
fn run_ctx(
    route: &Route,
    what: std::fmt::Arguments<'_>,
    f: &JqFilter,
    ctx: &Value,
    ctx_val: &LazyVal<'_>,
) -> Result<Value, GatewayError> {
    match f.run_native(ctx) {
        Some(answer) => {
            answer.map_err(|e| GatewayError::Internal(format!("route {} {what}: {e}", route.id)))
        }
        None => run_jq(route, what, f, ctx_val.get().clone()),
    }
}

fn truthy(v: &Value) -> bool {
    !matches!(v, Value::Null | Value::Bool(false))
}

async fn run_step(
    route: &Route,
    step: &Step,
    ctx: &Value,
    ctx_val: &LazyVal<'_>,
    env: &ExecEnv<'_>,
) -> Result<StepOut, GatewayError> {
    if let Some(when) = &step.when
        && !truthy(&run_ctx(
            route,
            format_args!("step {} when", step.name),
            when,
            ctx,
            ctx_val,
        )?)
    {
        return Ok(StepOut {
            value: Value::Null,
            status: None,
            skipped: true,
        });
    }
    match &step.kind {
        StepKind::Compute(f) => {
            let value = run_ctx(route, format_args!("step {}", step.name), f, ctx, ctx_val)?;
            Ok(StepOut {
                value,
                status: None,
                skipped: false,
            })
        }
        StepKind::Call { call, fan } => match fan {
            Fan::One => {
                let (status, value) = perform(route, step, call, ctx, ctx_val, None, env).await?;
                Ok(StepOut {
                    value,
                    status: Some(status),
                    skipped: false,
                })
            }
            Fan::ForEach {
                items,
                concurrency,
                max_items,
            } => {
                let items = run_ctx(
                    route,
                    format_args!("step {} for_each", step.name),
                    items,
                    ctx,
                    ctx_val,
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
                        Box::pin(perform(
                            route,
                            step,
                            call,
                            ctx,
                            ctx_val,
                            Some(("item", item)),
                            env,
                        )) as Fanned<'_>
                    })
                    .collect();
                let results: Vec<Result<(u16, Value), GatewayError>> =
                    futures_util::stream::iter(futs)
                        .buffered(*concurrency)
                        .collect()
                        .await;
                let values = results
                    .into_iter()
                    .map(|r| r.map(|(_, v)| v))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(StepOut {
                    value: Value::Array(values),
                    status: None,
                    skipped: false,
                })
            }
            Fan::Walk {
                start,
                children,
                max_depth,
                max_nodes,
                concurrency,
            } => {
                let start = run_ctx(
                    route,
                    format_args!("step {} walk.start", step.name),
                    start,
                    ctx,
                    ctx_val,
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
                Ok(StepOut {
                    value,
                    status: None,
                    skipped: false,
                })
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
    ctx_val: &LazyVal<'_>,
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
                Box::pin(perform(
                    route,
                    step,
                    call,
                    ctx,
                    ctx_val,
                    Some(("node", node)),
                    env,
                )) as Fanned<'_>
            })
            .collect();
        let answers: Vec<Result<(u16, Value), GatewayError>> = futures_util::stream::iter(futs)
            .buffered(concurrency)
            .collect()
            .await;
        for ((node, parent), answer) in level.into_iter().zip(answers) {
            let (_, response) = answer?;
            let kids = children.run(&response).map_err(|e| {
                GatewayError::Internal(format!(
                    "route {} step {} walk.children: {e}",
                    route.id, step.name
                ))
            })?;
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
    ctx_val: &LazyVal<'_>,
    extra: Option<(&str, &Value)>,
    env: &ExecEnv<'_>,
) -> Result<(u16, Value), GatewayError> {
    let req = build_request(route, &step.name, call, ctx, ctx_val, extra, env)?;
    let resp = send(call, req, env).await?;
    if !accepted(step, &resp) {
        // A refusal's message is read from the whole answer.
        let body = decode_upstream(&route.pack.upstream_format, &call.upstream, &resp, None)?;
        return Err(refused(call, &resp, &body));
    }
    let cut = route.projections.get(&step.name);
    let body = decode_upstream(&route.pack.upstream_format, &call.upstream, &resp, cut)?;
    Ok((resp.status.as_u16(), body))
}

/// The upstream's refusal of a call (a status the step does not allow), with its message.
fn refused(call: &Call, resp: &UpstreamResponse, body: &Value) -> GatewayError {
    GatewayError::Upstream(UpstreamError::Status {
        upstream: call.upstream.clone(),
        status: resp.status,
        message: upstream_message(body),
    })
}

/// Makes one call: records the exchange when capturing, and folds the answer's cache headers
/// into the route's directive.
async fn send(
    call: &Call,
    req: UpstreamRequest,
    env: &ExecEnv<'_>,
) -> Result<UpstreamResponse, GatewayError> {
    let record = env.calls.map(|log| {
        (
            log,
            req.method.to_string(),
            req.path_and_query.clone(),
            req.body.clone(),
        )
    });
    let answer = env.upstreams.call(&call.upstream, req).await;
    if let Some((log, method, path, body)) = record {
        let (status, text) = match &answer {
            Ok(r) => (r.status.as_u16(), r.body.clone()),
            Err(e) => (0, Bytes::from(e.to_string())),
        };
        log.record(
            Exchange {
                method: &method,
                upstream: &call.upstream,
                path: &path,
                request: &body,
                status,
                response: &text,
            },
            env.capture_cap,
        );
    }
    let resp = answer?;
    if let Ok(mut d) = env.directive.lock() {
        d.observe(&resp.headers);
    }
    Ok(resp)
}

fn build_request(
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
                    GatewayError::Internal(format!(
                        "route {} step {step} body as XML: {e}",
                        route.id
                    ))
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

/// Decodes an upstream body in the pack's upstream format; an empty body is null. With
/// `cut`, only what the route reads of it is made into values (the rest is still checked);
/// a LongJump answer is then converted to JSON text whole (the converter checks all of it)
/// and that text is cut.
fn decode_upstream(
    format: &UpstreamFormat,
    upstream: &str,
    resp: &UpstreamResponse,
    cut: Option<&super::project::Projection>,
) -> Result<Value, GatewayError> {
    if resp.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    let xml = |e| unreadable(upstream, resp, "LongJump XML", e);
    let json = |e| unreadable(upstream, resp, "JSON", e);
    match (format, cut) {
        (UpstreamFormat::LongJumpXml(rules), None) => {
            xml_to_value(&resp.body, rules).map_err(|e| xml(e.to_string()))
        }
        (UpstreamFormat::LongJumpXml(rules), Some(p)) => {
            let mut text = Vec::with_capacity(resp.body.len());
            xml_to_json_vec(&resp.body, rules, &mut text).map_err(|e| xml(e.to_string()))?;
            p.parse(&text).map_err(|e| xml(e.to_string()))
        }
        (UpstreamFormat::Json, None) => {
            serde_json::from_slice(&resp.body).map_err(|e| json(e.to_string()))
        }
        (UpstreamFormat::Json, Some(p)) => p.parse(&resp.body).map_err(|e| json(e.to_string())),
    }
}

/// An upstream answer that is not the format its pack declares.
fn unreadable(
    upstream: &str,
    resp: &UpstreamResponse,
    expected: &str,
    e: impl std::fmt::Display,
) -> GatewayError {
    let ct = resp
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none");
    GatewayError::Upstream(UpstreamError::InvalidResponse {
        upstream: upstream.to_owned(),
        detail: format!("expected {expected} (content-type {ct}): {e}"),
    })
}

fn upstream_message(body: &Value) -> Option<String> {
    ["message", "detail", "title", "error_description", "error"]
        .iter()
        .find_map(|k| body.get(*k).and_then(Value::as_str))
        // LongJump: `<message><code>-200</code><description>…</description></message>`.
        .or_else(|| body.pointer("/message/description").and_then(Value::as_str))
        .map(str::to_owned)
}

async fn compensate(route: &Route, done: &[&Step], ctx: &Value, env: &ExecEnv<'_>) {
    let ctx_val = LazyVal::new(ctx);
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

#[cfg(test)]
mod tests {
    //! The executor against a scripted fake upstream: ordering, fan-out, walk, compensation.

    use std::sync::Mutex;

    use super::*;
    use crate::config::Config;
    use crate::mapping::pack::{Catalog, load_catalog};
    use serde_json::json;

    /// Answers by `METHOD path` prefix; records every call.
    struct Fake {
        answers: Vec<(String, u16, Bytes)>,
        calls: Mutex<Vec<(String, Value)>>,
    }

    impl Fake {
        fn new(answers: &[(&str, u16, Value)]) -> Self {
            Self {
                answers: answers
                    .iter()
                    .map(|(k, s, v)| ((*k).to_owned(), *s, serde_json::to_vec(v).unwrap().into()))
                    .collect(),
                calls: Mutex::new(Vec::new()),
            }
        }

        /// Answers bodies as written (spacing, spelling, broken documents).
        fn text(answers: &[(&str, u16, &str)]) -> Self {
            Self {
                answers: answers
                    .iter()
                    .map(|(k, s, t)| ((*k).to_owned(), *s, Bytes::copy_from_slice(t.as_bytes())))
                    .collect(),
                calls: Mutex::new(Vec::new()),
            }
        }
        fn calls(&self) -> Vec<String> {
            self.calls
                .lock()
                .unwrap()
                .iter()
                .map(|(c, _)| c.clone())
                .collect()
        }
    }

    impl CallUpstream for Fake {
        fn call<'a>(&'a self, _upstream: &'a str, req: UpstreamRequest) -> CallFuture<'a> {
            let line = format!("{} {}", req.method, req.path_and_query);
            let body: Value = if req.body.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&req.body).unwrap()
            };
            self.calls.lock().unwrap().push((line.clone(), body));
            let (status, body) = self
                .answers
                .iter()
                .find(|(k, _, _)| line.starts_with(k.as_str()))
                .map(|(_, s, b)| (*s, b.clone()))
                .unwrap_or((404, Bytes::from_static(br#"{"message":"no such thing"}"#)));
            Box::pin(async move {
                Ok(UpstreamResponse {
                    status: StatusCode::from_u16(status).unwrap(),
                    headers: HeaderMap::new(),
                    body,
                })
            })
        }
    }

    fn catalog(routes: &str) -> (tempfile::TempDir, Catalog) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("mappings/p");
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(
            p.join("pack.toml"),
            "[pack]\nclient_dialect = \"redapi-v1\"\nservice = \"T\"\nupstreams = [\"up\"]\n",
        )
        .unwrap();
        std::fs::write(p.join("r.toml"), routes).unwrap();
        let cfg = Config::from_toml("mappings_dir = \"mappings\"\npacks = [\"p\"]\n[upstreams.up]\nurl = \"http://127.0.0.1:1\"\n", dir.path()).unwrap();
        let cat = load_catalog(&cfg).unwrap_or_else(|e| panic!("{e}"));
        (dir, cat)
    }

    async fn run(cat: &Catalog, fake: &Fake, ctx: Value) -> Result<Outcome, GatewayError> {
        let meta = RequestMeta::new(None);
        let env = ExecEnv {
            upstreams: fake,
            meta: &meta,
            query_pairs: &[],
            calls: None,
            capture_cap: 0,
            directive: Default::default(),
        };
        execute(&cat.routes[0], ctx, &env).await
    }

    #[tokio::test]
    async fn sequential_steps_see_earlier_results() {
        let (_d, cat) = catalog(
            r#"
[[route]]
id = "r"
match = "GET /x/{id}"
tenancy = { other = ["path.id"] }
[[route.step]]
name = "a"
call = "GET up /a/{id}"
[[route.step]]
name = "b"
call = "GET up /b/{steps.a.next}"
query = { q = "{query.q}", missing = "{query.nope}" }
[route.response]
jq = "{a: .steps.a.next, b: .steps.b.v}"
"#,
        );
        let fake = Fake::new(&[
            ("GET /a/1", 200, json!({"next": "n 2"})),
            ("GET /b/n%202", 200, json!({"v": 7})),
        ]);
        let out = run(
            &cat,
            &fake,
            json!({"path": {"id": "1"}, "query": {"q": "a&b"}}),
        )
        .await
        .unwrap();
        assert_eq!(out.body, OutBody::Json(json!({"a": "n 2", "b": 7})));
        assert_eq!(fake.calls(), vec!["GET /a/1", "GET /b/n%202?q=a%26b"]);
    }

    #[tokio::test]
    async fn fan_out_keeps_item_order() {
        let (_d, cat) = catalog(
            r#"
[[route]]
id = "r"
match = "GET /x"
[[route.step]]
name = "each"
call = "GET up /item/{item}"
for_each = "[3, 1, 2]"
concurrency = 2
[route.response]
jq = "[.steps.each[].n]"
"#,
        );
        let fake = Fake::new(&[
            ("GET /item/1", 200, json!({"n": 1})),
            ("GET /item/2", 200, json!({"n": 2})),
            ("GET /item/3", 200, json!({"n": 3})),
        ]);
        let out = run(&cat, &fake, json!({})).await.unwrap();
        assert_eq!(out.body, OutBody::Json(json!([3, 1, 2])));
    }

    #[tokio::test]
    async fn walk_is_breadth_first_and_cycle_safe() {
        let (_d, cat) = catalog(
            r#"
[[route]]
id = "r"
match = "GET /x"
[[route.step]]
name = "tree"
call = "GET up /children/{node}"
walk = { start = '["a"]', children = ".kids", max_depth = 10, max_nodes = 100 }
[route.response]
jq = "[.steps.tree[] | {node, parent, depth}]"
"#,
        );
        // a → b, c; b → a (cycle), d; c → d (diamond)
        let fake = Fake::new(&[
            ("GET /children/a", 200, json!({"kids": ["b", "c"]})),
            ("GET /children/b", 200, json!({"kids": ["a", "d"]})),
            ("GET /children/c", 200, json!({"kids": ["d"]})),
            ("GET /children/d", 200, json!({"kids": []})),
        ]);
        let out = run(&cat, &fake, json!({})).await.unwrap();
        assert_eq!(
            out.body,
            OutBody::Json(json!([
                {"node": "a", "parent": null, "depth": 0},
                {"node": "b", "parent": "a", "depth": 1},
                {"node": "c", "parent": "a", "depth": 1},
                {"node": "d", "parent": "b", "depth": 2},
            ]))
        );
        assert_eq!(fake.calls().len(), 4, "each node visited once");
    }

    #[tokio::test]
    async fn walk_respects_its_bounds() {
        let (_d, cat) = catalog(
            r#"
[[route]]
id = "r"
match = "GET /x"
[[route.step]]
name = "tree"
call = "GET up /children/{node}"
walk = { start = '["n0"]', children = '[.next]', max_depth = 3, max_nodes = 100 }
[route.response]
jq = "[.steps.tree[].node]"
"#,
        );
        let answers: Vec<(String, u16, Value)> = (0..10)
            .map(|i| {
                (
                    format!("GET /children/n{i}"),
                    200,
                    json!({"next": format!("n{}", i + 1)}),
                )
            })
            .collect();
        let refs: Vec<(&str, u16, Value)> = answers
            .iter()
            .map(|(a, s, v)| (a.as_str(), *s, v.clone()))
            .collect();
        let fake = Fake::new(&refs);
        let out = run(&cat, &fake, json!({})).await.unwrap();
        assert_eq!(out.body, OutBody::Json(json!(["n0", "n1", "n2", "n3"])));
    }

    #[tokio::test]
    async fn a_failed_step_compensates_the_done_ones_in_reverse() {
        let (_d, cat) = catalog(
            r#"
[[route]]
id = "r"
match = "PATCH /move/{id}"
tenancy = { other = ["path.id"] }
[[route.step]]
name = "find"
call = "GET up /assoc/{id}"
[[route.step]]
name = "skipped"
when = "false"
call = "DELETE up /never"
[route.step.compensate]
call = "POST up /never-undo"
[[route.step]]
name = "remove"
call = "DELETE up /assoc/{steps.find.id}"
[route.step.compensate]
call = "POST up /assoc"
body = "{restore: .steps.find.id}"
[[route.step]]
name = "create"
call = "POST up /assoc-new"
"#,
        );
        let fake = Fake::new(&[
            ("GET /assoc/c1", 200, json!({"id": "a1"})),
            ("DELETE /assoc/a1", 204, Value::Null),
            ("POST /assoc-new", 409, json!({"message": "conflict"})),
            ("POST /assoc", 201, json!({})),
        ]);
        let err = run(&cat, &fake, json!({"path": {"id": "c1"}}))
            .await
            .unwrap_err();
        assert_eq!(err.status(), StatusCode::CONFLICT);
        assert_eq!(
            fake.calls(),
            vec![
                "GET /assoc/c1",
                "DELETE /assoc/a1",
                "POST /assoc-new",
                "POST /assoc"
            ]
        );
        let restore = fake.calls.lock().unwrap()[3].1.clone();
        assert_eq!(restore, json!({"restore": "a1"}));
    }

    #[tokio::test]
    async fn upstream_errors_keep_their_meaning() {
        let (_d, cat) = catalog(
            "[[route]]\nid = \"r\"\nmatch = \"GET /x\"\n[[route.step]]\ncall = \"GET up /missing\"\n",
        );
        let fake = Fake::new(&[]);
        let err = run(&cat, &fake, json!({})).await.unwrap_err();
        assert_eq!(err.status(), StatusCode::NOT_FOUND);
        assert!(err.to_string().contains("no such thing"), "{err}");
    }

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
                total: Some(9)
            }
        );
    }

    /// One call to `GET up /a`, answered by `response` (`.steps.up` passes it on verbatim).
    fn one_call(response: &str, extra: &str) -> (tempfile::TempDir, Catalog) {
        catalog(&format!(
            "[[route]]\nid = \"r\"\nmatch = \"GET /x\"\n{extra}\n[[route.step]]\nname = \"up\"\ncall = \"GET up /a\"\n[route.response]\nstatus_from = \"up\"\njq = '{response}'\n"
        ))
    }

    #[tokio::test]
    async fn a_passed_on_answer_is_the_upstream_text_checked_not_rewritten() {
        let text =
            r#"{"price":1.10,"big":123456789012345678901234567890,"s":"caf\u00e9","z":1,"a":2}"#;
        let (_d, cat) = one_call(".steps.up", "");
        assert!(verbatim_call(&cat.routes[0]).is_some());
        let fake = Fake::text(&[("GET /a", 200, &format!("\n  {text} \r\n"))]);
        let out = run(&cat, &fake, json!({})).await.unwrap();
        assert_eq!(out.status, StatusCode::OK);
        assert_eq!(
            out.body,
            OutBody::Raw(Bytes::copy_from_slice(text.as_bytes()))
        );
        // The same route through values would have rewritten it.
        let (_d2, parsed) = one_call(".steps.up | .", "");
        assert!(verbatim_call(&parsed.routes[0]).is_none());
        let OutBody::Json(v) = run(&parsed, &fake, json!({})).await.unwrap().body else {
            panic!("a value");
        };
        assert_ne!(serde_json::to_string(&v).unwrap(), text);
    }

    #[tokio::test]
    async fn a_passed_on_answer_fails_and_empties_as_a_parsed_one_does() {
        let (_d, raw) = one_call(".steps.up", "");
        let (_d2, parsed) = one_call(".steps.up | .", "");
        let outcome = |cat: &Catalog, status: u16, body: &'static str| {
            let fake = Fake::text(&[("GET /a", status, body)]);
            let route = cat.routes[0].clone();
            async move {
                let meta = RequestMeta::new(None);
                let env = ExecEnv {
                    upstreams: &fake,
                    meta: &meta,
                    query_pairs: &[],
                    calls: None,
                    capture_cap: 0,
                    directive: Default::default(),
                };
                execute(&route, json!({}), &env)
                    .await
                    .map(|o| (o.status, o.body))
                    .map_err(|e| (e.status(), e.to_string()))
            }
        };
        for (status, body) in [
            (200, r#"{"a": 1"#),
            (200, "\n\n  {\"a\": ]"),
            (200, "{} x"),
            (200, "<html></html>"),
            (404, r#"{"message": "no such thing"}"#),
            (500, "not json"),
        ] {
            let (a, b) = (
                outcome(&raw, status, body).await,
                outcome(&parsed, status, body).await,
            );
            assert!(a.is_err(), "{status} {body}: {a:?}");
            assert_eq!(a, b, "{status} {body}");
        }
        for body in ["", "  \n", "null", " null "] {
            assert_eq!(
                outcome(&raw, 200, body).await,
                Ok((StatusCode::OK, OutBody::Empty))
            );
            assert_eq!(
                outcome(&parsed, 200, body).await,
                Ok((StatusCode::OK, OutBody::Empty))
            );
        }
        // An allowed status passes its answer on, with that status.
        let (_d3, allowed) = catalog(
            "[[route]]\nid = \"r\"\nmatch = \"GET /x\"\n[[route.step]]\nname = \"up\"\ncall = \"GET up /a\"\nallow_status = [404]\n[route.response]\nstatus_from = \"up\"\njq = \".steps.up\"\n",
        );
        assert_eq!(
            outcome(&allowed, 404, r#"{"gone":true}"#).await,
            Ok((
                StatusCode::NOT_FOUND,
                OutBody::Raw(Bytes::from_static(br#"{"gone":true}"#))
            ))
        );
    }

    #[test]
    fn only_routes_answering_one_json_call_unchanged_pass_it_on() {
        let cat = crate::mapping::pack::shipped_catalog();
        let verbatim: Vec<&str> = cat
            .routes
            .iter()
            .filter(|r| verbatim_call(r).is_some())
            .map(|r| &*r.id)
            .collect();
        for id in ["products.get", "products.list", "pass"] {
            assert!(verbatim.contains(&id), "{id} in {verbatim:?}");
        }
        for r in &cat.routes {
            if verbatim.contains(&&*r.id) {
                assert_eq!(r.stages.len(), 1, "{}", r.id);
                assert!(!r.paged && r.points_settle.is_none(), "{}", r.id);
                assert!(
                    matches!(r.pack.upstream_format, UpstreamFormat::Json),
                    "{}",
                    r.id
                );
                assert!(
                    !matches!(r.pack.client_dialect, Dialect::LongJump),
                    "{}",
                    r.id
                );
            }
        }
        // Two calls, a transform, XML on either side: values as before.
        for id in ["companies.get", "companies.search"] {
            assert!(!verbatim.contains(&id), "{id}");
        }
        assert!(
            cat.routes
                .iter()
                .any(|r| matches!(r.pack.upstream_format, UpstreamFormat::LongJumpXml(_)))
        );
        let (_d, when) = catalog(
            "[[route]]\nid = \"r\"\nmatch = \"GET /x\"\n[[route.step]]\nname = \"up\"\nwhen = \"true\"\ncall = \"GET up /a\"\n[route.response]\njq = \".steps.up\"\n",
        );
        assert!(
            verbatim_call(&when.routes[0]).is_none(),
            "a step that may be skipped"
        );
        let (_d2, other) = one_call(".steps.other", "");
        assert!(
            verbatim_call(&other.routes[0]).is_none(),
            "another step's answer"
        );
    }

    proptest::proptest! {
        /// Whatever JSON an upstream sends, compact or spaced out, the passed-on answer means
        /// what the parsed route answers, and compact text is passed on as it came.
        #[test]
        fn a_passed_on_answer_means_what_the_parsed_one_does(
            v in crate::test_support::arb_json(),
            pretty in proptest::bool::ANY,
        ) {
            static CATALOGS: std::sync::LazyLock<[(tempfile::TempDir, Catalog); 2]> =
                std::sync::LazyLock::new(|| [one_call(".steps.up", ""), one_call(".steps.up | .", "")]);
            let text = if pretty {
                serde_json::to_string_pretty(&v).unwrap()
            } else {
                serde_json::to_string(&v).unwrap()
            };
            let fake = Fake::text(&[("GET /a", 200, &text)]);
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let raw = rt.block_on(run(&CATALOGS[0].1, &fake, json!({}))).unwrap().body;
            let parsed = rt.block_on(run(&CATALOGS[1].1, &fake, json!({}))).unwrap().body;
            match (raw, parsed) {
                (OutBody::Empty, OutBody::Empty) => proptest::prop_assert!(v.is_null()),
                (OutBody::Raw(b), OutBody::Json(p)) => {
                    proptest::prop_assert_eq!(&serde_json::from_slice::<Value>(&b).unwrap(), &p);
                    if !pretty {
                        proptest::prop_assert_eq!(&b[..], text.as_bytes());
                    }
                }
                (a, b) => proptest::prop_assert!(false, "{a:?} vs {b:?}"),
            }
        }
    }
}
