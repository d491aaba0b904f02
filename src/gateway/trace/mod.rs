//! Request tracing: every request gets a [`crate::context::RequestMeta`] (request id,
//! tracecode, W3C trace id) before anything else runs, a span, one access-log event, and
//! `X-Request-Id` / `X-Trace-Code` on its response, whatever the outcome.

mod future;
mod layer;
mod service;

pub use future::TraceFuture;
pub use layer::TraceLayer;
pub use service::Trace;
