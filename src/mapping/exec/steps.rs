//! One step of a stage: its `when` decides whether it runs, then its kind does the work (a
//! computed value, one call, a `for_each` fan-out or a `walk`). What the step yields goes
//! back to the stage loop, which owns the context and the compensation bookkeeping.

use serde_json::Value;

use super::ExecEnv;
use super::calls::StepCall;
use super::eval::{LazyVal, run_ctx};
use super::fanout::for_each;
use super::walk::walk;
use crate::dialect::paging;
use crate::error::{GatewayError, UpstreamError};
use crate::mapping::pack::{Fan, Route, Step, StepKind, UpstreamPages};

/// What a step yields to the stage loop.
pub(super) struct StepOut {
    pub(super) value: Value,
    /// The upstream status of a single call, for `status_from`.
    pub(super) status: Option<u16>,
    /// The step's `when` said no: nothing was done, so there is nothing to compensate.
    pub(super) skipped: bool,
}

/// The answer of a route's upstream-paged step as the route reads it, `{items, total,
/// next}`; a status the step allows that is not a success (Fusion's 404 for an empty list)
/// is an empty last page.
fn upstream_page(
    up: &UpstreamPages,
    upstream: &str,
    status: u16,
    value: Value,
) -> Result<Value, GatewayError> {
    if !(200..300).contains(&status) {
        return Ok(serde_json::json!({"items": [], "total": 0, "next": null}));
    }
    paging::read_upstream_page(up.scheme, &up.list, value).map_err(|e| {
        GatewayError::Upstream(UpstreamError::InvalidResponse {
            upstream: upstream.to_owned(),
            detail: format!("not a page: {e}"),
        })
    })
}

/// jq truthiness: everything but `null` and `false`.
fn truthy(v: &Value) -> bool {
    !matches!(v, Value::Null | Value::Bool(false))
}

/// Runs one step against the context as it stood when its stage began. A `for_each` step
/// with a compensation adds the items whose calls succeeded to `done_items`, whether or not
/// the step as a whole succeeds.
pub(super) async fn run_step(
    route: &Route,
    step: &Step,
    ctx: &Value,
    ctx_val: &LazyVal<'_>,
    env: &ExecEnv<'_>,
    done_items: &mut Vec<Value>,
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
        StepKind::Call { call, fan } => {
            let at = |call| StepCall {
                route,
                step,
                call,
                ctx,
                ctx_val,
                env,
            };
            match fan {
                Fan::One => {
                    let (status, value) = at(call).perform(None).await?;
                    let value = match &route.plan.upstream_pages {
                        Some(up) if *up.step == *step.name => {
                            upstream_page(up, &call.upstream, status, value)?
                        }
                        Some(_) | None => value,
                    };
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
                    let value =
                        for_each(at(call), items, *concurrency, *max_items, done_items).await?;
                    Ok(StepOut {
                        value,
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
                        at(call),
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
            }
        }
    }
}
