//! The admin API (DESIGN §6, seed 003's style) on its own listener.
//!
//! Companies, users and their API keys, the audit trail, the version and a health check.
//! Every call authenticates with the same credentials as the proxy (API key, Basic) and is
//! authorized by role: `ADMIN` everything, `AUDITOR` reads everything, `PARTNER` manages its
//! own company's users and keys below it; anything else is 403. Writes must be JSON and come
//! from no other site (`csrf`). Errors are seed 003's `{"tracedata": {…}, "message"}`
//! carrying the request's tracecode. Field rules live in [`validate`], as pure functions.

mod access;
mod csrf;
mod quotas;
mod service;
mod traffic;
pub mod validate;

pub use service::{Admin, AdminService, OPENAPI, ROUTES};
