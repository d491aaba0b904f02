//! Route matching: finds the pack route of a request and records it as a
//! [`super::RouteCtx`]; unknown paths are 404, known paths with another method 405 with
//! `Allow`, unsafe path values 400 — each in the dialect of the nearest pack.

mod layer;
mod service;

pub use layer::RouteLayer;
pub use service::RouteService;
