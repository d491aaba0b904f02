//! Audit: one row per proxied request (user, company, tracecode, service = the pack's
//! service, operation = the route id, method group, points, duration, status), handed to the
//! store's batch writer when the request completes, so the request never waits on the disk.
//! It sits after authentication: a request nobody could be named for is not an action here
//! (the authentication layer writes its own row for a failed attempt, as `anonymous`).

mod future;
mod layer;
mod service;

pub use future::AuditFuture;
pub use layer::AuditLayer;
pub use service::Audit;
