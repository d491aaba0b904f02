//! Request tracing: every request gets a [`crate::context::RequestMeta`] (request id,
//! tracecode, W3C trace id) before anything else runs, a span, one access-log event, and
//! `X-Request-Id` / `X-Trace-Code` on its response, whatever the outcome.
//!
//! This layer is the one place a request's `RequestMeta` is made, on both listeners: the
//! layers below read it and treat its absence as a miswired stack, never as a reason to
//! make another (whose tracecode would then differ from the headers set here).

mod future;
mod layer;
mod service;

pub use future::TraceFuture;
pub use layer::{Listener, TraceLayer};
pub use service::Trace;
