//! Route execution: the steps of a route run against the request context.
//!
//! The context is one JSON object: `path`, `query`, `body`, `principal`, `page` and, as steps
//! finish, `steps.<name>`. Stages run in order and the steps of a stage concurrently; a
//! `for_each` step fans out with bounded concurrency, keeping the items' order; a `walk`
//! step visits a tree breadth-first, cycle-safe and bounded. When a step fails, the
//! compensations of the steps already done run in reverse order before the error is
//! returned, so a multi-call write never leaves the upstream half-changed (reassign).
//!
//! This file is the stage loop: it owns the context and the list of steps done, which is
//! what a compensation needs. A step's own work (`steps`), the fan-outs (`fanout`,
//! `walk`), the calls (`calls`, `request`), the shaped answer (`outcome`), the passed-on
//! answer (`passthrough`) and the undoing (`compensation`) each have a file of their own.

mod budget;
mod calls;
mod compensation;
mod eval;
mod fanout;
mod outcome;
mod passthrough;
mod request;
mod steps;
mod walk;

use std::collections::HashMap;

use futures_util::future::join_all;
use serde_json::{Map, Value};

use super::pack::{Route, Step};
use crate::capture::CallLog;
use crate::context::RequestMeta;
use crate::error::{GatewayError, RouteLimit};
use compensation::compensate;
use eval::LazyVal;
use outcome::{answer_status, directive, response_body};
use passthrough::verbatim;
use steps::run_step;

pub use budget::CallBudget;
pub use calls::{CallFuture, CallUpstream};
pub use outcome::{CacheDirective, OutBody, Outcome};
pub use passthrough::verbatim_call;

/// Everything a route execution needs besides the route and its context.
pub struct ExecEnv<'a> {
    /// Performs the route's upstream calls.
    pub upstreams: &'a dyn CallUpstream,
    /// The request's ids and tracecode, passed on to the calls.
    pub meta: &'a RequestMeta,
    /// The client's query pairs, for `forward_query` (keeps repeated keys).
    pub query_pairs: &'a [(String, String)],
    /// Upstream exchanges are recorded here when the request is captured.
    pub calls: Option<&'a CallLog>,
    /// Bytes kept of each recorded upstream body.
    pub capture_cap: usize,
    /// The upstream answers' cache directives, folded as calls complete.
    pub directive: parking_lot::Mutex<CacheDirective>,
    /// The calls the request may still make.
    pub budget: CallBudget,
}

/// A step that did its work, for the compensation: a `for_each` step's items whose calls
/// succeeded (each undone with its own `item`), empty for any other step.
struct Done<'r> {
    step: &'r Step,
    items: Vec<Value>,
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
    if let Some(why) = &route.plan.unsupported {
        return Err(GatewayError::NotSupported(why.clone()));
    }
    if let Some((step, call)) = verbatim_call(route) {
        return verbatim(route, step, call, &ctx, env).await;
    }
    let mut statuses: HashMap<&str, u16> = HashMap::new();
    let mut done: Vec<Done<'_>> = Vec::new();
    let deadline = crate::clock::now() + route.plan.limits.deadline;
    for (n, stage) in route.plan.stages.iter().enumerate() {
        // A saga is not cut off by a timer (see `gateway::upstream`): it stops here, between
        // stages, and undoes what it did.
        if n > 0 && crate::clock::now() >= deadline {
            compensate(route, &done, &ctx, env).await;
            return Err(RouteLimit::Deadline {
                route: route.id.clone(),
                deadline: route.plan.limits.deadline,
            }
            .into());
        }
        let ctx_val = LazyVal::new(&ctx);
        let mut items: Vec<Vec<Value>> = stage.iter().map(|_| Vec::new()).collect();
        let results = join_all(
            stage
                .iter()
                .zip(items.iter_mut())
                .map(|(step, items)| run_step(route, step, &ctx, &ctx_val, env, items)),
        )
        .await;
        let mut failure = None;
        for ((step, result), items) in stage.iter().zip(results).zip(items) {
            match result {
                Ok(out) => {
                    ctx["steps"][&step.name] = out.value;
                    if let Some(s) = out.status {
                        statuses.insert(&step.name, s);
                    }
                    if !out.skipped {
                        done.push(Done { step, items });
                    }
                }
                Err(e) => {
                    // A fan-out's items that went through are undone even though the step
                    // as a whole failed.
                    if !items.is_empty() {
                        done.push(Done { step, items });
                    }
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
    Ok(Outcome {
        status,
        body: response_body(route, &mut ctx)?,
        cache: directive(env),
        calls: env.budget.used(),
    })
}

#[cfg(test)]
mod fake;

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::OutBody;
    use super::fake::{Fake, catalog, run};

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
}
