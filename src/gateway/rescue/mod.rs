//! The outermost rescue: every [`super::Rejection`] becomes a response in the client's
//! dialect, carrying the tracecode. After this layer the stack cannot fail.

mod future;
mod layer;
mod service;

pub use future::RescueFuture;
pub use layer::RescueLayer;
pub use service::Rescue;
