//! The mapping engine: packs, routes, templates, jq transforms and step execution.
pub mod exec;
// TODO(i23): documented with the jq-engine split
#[allow(missing_docs, unreachable_pub)]
pub mod jq;
// TODO(i23): documented with the jq-engine split
#[allow(missing_docs, unreachable_pub)]
pub mod native;
pub mod pack;
pub mod project;
pub mod router;
pub mod template;
mod tenancy;
