//! The mapping engine: packs, routes, templates, jq transforms and step execution.
pub mod exec;
pub mod filter;
pub mod jq;
pub mod pack;
pub mod project;
pub mod router;
pub mod template;
mod tenancy;
