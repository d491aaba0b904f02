//! The admin API (DESIGN §6, seed 003's style) on its own listener.
//!
//! Companies, users and their API keys, quotas, the audit trail, statistics, the version and
//! a health check. One route table ([`routes`]) holds every route's method, path, who may
//! call it and its handler: dispatch, [`ROUTES`] and the OpenAPI document are all held to it.
//! Callers authenticate with the same credentials as the proxy (API key, Basic) and are
//! authorized by role: `ADMIN` everything, `AUDITOR` reads everything, `PARTNER` manages its
//! own company's users and keys below it; anything else is 403. Writes must be JSON and come
//! from no other site (`csrf`). The listener runs behind the proxy's trace and rescue layers,
//! so its errors are [`crate::dialect::Dialect::Admin`]'s `{"tracedata": {…}, "message"}`
//! carrying the request's tracecode. Field rules live in [`validate`], as pure functions.

mod access;
mod companies;
mod csrf;
mod keys;
mod quotas;
mod routes;
mod service;
mod system;
mod traffic;
mod users;
pub mod validate;
mod wire;

pub use routes::{OPENAPI, ROUTES};
pub use service::{Admin, AdminService, AdminStack};
