//! The seam to the upstreams and one call through it: [`CallUpstream`] (the pooled clients,
//! or a fake in tests), sending a built request with its capture and cache bookkeeping, and
//! reading the answer in the pack's upstream format. Steps and the passed-on answer both
//! call through here, so an answer is checked, recorded and decoded the same way whichever
//! of them asked for it.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use http::header;
use serde_json::Value;

use super::ExecEnv;
use super::eval::LazyVal;
use super::request::build_request;
use crate::capture::Exchange;
use crate::dialect::xml::{xml_to_json_vec, xml_to_value};
use crate::error::{GatewayError, UpstreamError};
use crate::mapping::pack::{Call, Route, Step, UpstreamFormat};
use crate::mapping::project::Projection;
use crate::upstream::{UpstreamRequest, UpstreamResponse, Upstreams};

/// A boxed future of an upstream answer.
pub type CallFuture<'a> =
    Pin<Box<dyn Future<Output = Result<UpstreamResponse, UpstreamError>> + Send + 'a>>;

/// Whoever performs upstream calls: the real pooled clients, or a fake in tests.
pub trait CallUpstream: Send + Sync {
    /// Sends `req` to the upstream named `upstream` and reads its answer.
    fn call<'a>(&'a self, upstream: &'a str, req: UpstreamRequest) -> CallFuture<'a>;
}

impl CallUpstream for Upstreams {
    fn call<'a>(&'a self, upstream: &'a str, req: UpstreamRequest) -> CallFuture<'a> {
        Box::pin(Upstreams::call(self, upstream, req))
    }
}

/// Whether a step takes its call's answer: a success, or a status the step allows.
pub(super) fn accepted(step: &Step, resp: &UpstreamResponse) -> bool {
    resp.status.is_success() || step.allow_status.contains(&resp.status.as_u16())
}

/// One call step as it runs: the route, the step and its call, the context the step sees
/// and the request's environment. A single call, a fan-out and a walk all make their calls
/// through it.
#[derive(Clone, Copy)]
pub(super) struct StepCall<'a> {
    pub(super) route: &'a Route,
    pub(super) step: &'a Step,
    pub(super) call: &'a Call,
    pub(super) ctx: &'a Value,
    pub(super) ctx_val: &'a LazyVal<'a>,
    pub(super) env: &'a ExecEnv<'a>,
}

impl StepCall<'_> {
    /// Builds and performs the call (with `extra` bound, as `item` or `node`), returning
    /// its status and decoded body.
    pub(super) async fn perform(
        self,
        extra: Option<(&str, &Value)>,
    ) -> Result<(u16, Value), GatewayError> {
        let StepCall {
            route,
            step,
            call,
            ctx,
            ctx_val,
            env,
        } = self;
        let req = build_request(route, &step.name, call, ctx, ctx_val, extra, env)?;
        let resp = send(call, req, env).await?;
        if !accepted(step, &resp) {
            // A refusal's message is read from the whole answer.
            let body = decode_upstream(&route.pack.upstream_format, &call.upstream, &resp, None)?;
            return Err(refused(step, call, &resp, &body));
        }
        let cut = route.plan.projections.get(&step.name);
        let body = decode_upstream(&route.pack.upstream_format, &call.upstream, &resp, cut)?;
        Ok((resp.status.as_u16(), body))
    }
}

/// The upstream's refusal of a call (a status the step does not allow), with its message.
/// The step's `refusals` (else its pack's) say what the client is answered for it.
pub(super) fn refused(
    step: &Step,
    call: &Call,
    resp: &UpstreamResponse,
    body: &Value,
) -> GatewayError {
    let code = resp.status.as_u16();
    let answer = step
        .refusals
        .iter()
        .find(|(from, _)| *from == code)
        .map(|(_, to)| *to);
    GatewayError::Upstream(UpstreamError::Status {
        upstream: call.upstream.clone(),
        status: resp.status,
        message: upstream_message(body),
        answer,
    })
}

/// Makes one call: records the exchange when capturing, and folds the answer's cache headers
/// into the route's directive.
pub(super) async fn send(
    call: &Call,
    req: UpstreamRequest,
    env: &ExecEnv<'_>,
) -> Result<UpstreamResponse, GatewayError> {
    env.budget.take()?;
    let record = env.calls.map(|log| {
        (
            log,
            req.method.to_string(),
            req.path_and_query.clone(),
            req.body.clone(),
        )
    });
    let answer = env.upstreams.call(&call.upstream, req).await;
    match &answer {
        Err(e) if e.nothing_sent() => {}
        Ok(_) | Err(_) => env.budget.sent(),
    }
    if let Some((log, method, path, body)) = record {
        let (status, text) = match &answer {
            Ok(r) => (r.status.as_u16(), r.body.clone()),
            Err(e) => (0, Bytes::from(e.to_string())),
        };
        log.record(
            Exchange {
                method,
                upstream: call.upstream.clone(),
                path,
                request: body,
                status,
                response: text,
            },
            env.capture_cap,
        );
    }
    let resp = answer?;
    {
        let mut d = env.directive.lock();
        d.observe(&resp.headers);
    }
    Ok(resp)
}

/// Decodes an upstream body in the pack's upstream format; an empty body is null. With
/// `cut`, only what the route reads of it is made into values (the rest is still checked);
/// a LongJump answer is then converted to JSON text whole (the converter checks all of it)
/// and that text is cut.
pub(super) fn decode_upstream(
    format: &UpstreamFormat,
    upstream: &str,
    resp: &UpstreamResponse,
    cut: Option<&Projection>,
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
pub(super) fn unreadable(
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

#[cfg(test)]
mod tests {
    use http::StatusCode;
    use serde_json::json;

    use crate::mapping::exec::fake::{Fake, catalog, run};

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
}
