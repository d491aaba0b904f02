//! Running a route's jq filters against the context, which steps, fan-outs, walks and
//! request bodies all do: natively when the filter allows, else through jaq on the context
//! converted at most once per stage. Errors name the route and the filter.

use jaq_json::Val;
use serde_json::Value;

use crate::error::{GatewayError, Internal};
use crate::mapping::jq::JqError;
use crate::mapping::jq::{JqFilter, to_val};
use crate::mapping::pack::Route;

/// The context as a jq value, converted on first use: a stage whose steps only render
/// templates (most calls) never pays for the conversion.
pub(super) struct LazyVal<'a> {
    ctx: &'a Value,
    val: std::sync::OnceLock<Val>,
}

impl<'a> LazyVal<'a> {
    pub(super) fn new(ctx: &'a Value) -> Self {
        Self {
            ctx,
            val: std::sync::OnceLock::new(),
        }
    }

    pub(super) fn get(&self) -> &Val {
        self.val.get_or_init(|| to_val(self.ctx))
    }
}

/// The error of a route's filter that failed, naming it (`what` is formatted only here).
fn filter_failed(route: &Route, what: std::fmt::Arguments<'_>, source: JqError) -> GatewayError {
    Internal::Filter {
        route: route.id.clone(),
        part: what.to_string(),
        source,
    }
    .into()
}

/// `what` names the filter in an error; formatted only then (steps run on every request).
pub(super) fn run_jq(
    route: &Route,
    what: std::fmt::Arguments<'_>,
    f: &JqFilter,
    input: Val,
) -> Result<Value, GatewayError> {
    f.run_val(input)
        .map_err(|source| filter_failed(route, what, source))
}

/// Runs `f` on the route context: directly when the filter allows, else through jaq on the
/// context converted once for the stage.
pub(super) fn run_ctx(
    route: &Route,
    what: std::fmt::Arguments<'_>,
    f: &JqFilter,
    ctx: &Value,
    ctx_val: &LazyVal<'_>,
) -> Result<Value, GatewayError> {
    match f.run_native(ctx) {
        Some(answer) => answer.map_err(|source| filter_failed(route, what, source)),
        None => run_jq(route, what, f, ctx_val.get().clone()),
    }
}

/// A filter result's JSON type, for the error that says it has the wrong one.
pub(super) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
