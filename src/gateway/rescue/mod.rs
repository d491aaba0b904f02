//! The outermost rescue: every [`super::Rejection`] becomes a response in the client's
//! dialect, carrying the tracecode. After this layer the stack cannot fail.
//!
//! It renders with the request's own [`crate::context::RequestMeta`], which the trace layer
//! above inserts; it never makes one up for the request, or an error body could name
//! another tracecode than the response's headers. A request without one means the stack
//! is miswired: the layers below are not called, and the answer is a 500 in the listener's
//! dialect, logged with a tracecode of its own.

mod future;
mod layer;
mod service;

pub use future::RescueFuture;
pub use layer::RescueLayer;
pub use service::{NoRequestMeta, Rescue};
