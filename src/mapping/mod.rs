//! The mapping engine: packs, routes, templates, jq transforms and step execution.
pub mod exec;
pub mod jq;
pub mod native;
pub mod pack;
pub mod project;
pub mod router;
pub mod template;
mod tenancy;
