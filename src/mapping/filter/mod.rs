//! jq filters on the direct evaluator: the filter plan.
//!
//! Route filters are mostly written in a small part of jq (paths, object construction,
//! `select`, `map`, comparisons, a few builtins). jaq runs any filter, but over its own
//! values and with jq's standard library written in jq, so each run converts the context
//! in and the answer out; a filter it runs costs several times what the plan costs
//! (`benches/RESULTS.md`, "jq engines").
//!
//! The engine is chosen once per filter, when its pack loads: [`translate`] lowers the
//! filter to a [`Program`] ([`lower`]), and a filter that lowers runs on the plan for every
//! input ([`eval`], [`combine`], [`ops`], [`builtins`]); one that does not runs on jaq for every input,
//! and `rosetta check` lists it. A plan never hands a run to jaq: every operation it has
//! answers every input as jaq would, its errors worded as jaq words them. Tests compare the
//! two on every construct and on every shipped filter. [`demand`] reads, from the same
//! plan, what a filter can look at of its input.

mod builtins;
mod combine;
pub mod demand;
mod eval;
#[cfg(test)]
mod fixtures;
pub mod lower;
mod ops;
pub mod plan;

pub use lower::{Translation, translate};
pub use plan::Program;

/// The most values one `range` gives (a route's fan-out sources and item indices stay far
/// below it; a filter that reaches it is refused with an error instead of run to the end).
pub const MAX_RANGE: i64 = 1 << 20;
