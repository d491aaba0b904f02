//! Rate limiting: the route's policy (its own, else its pack's) is checked before anything
//! is read or translated; a refusal is 429 with `Retry-After` in the client's dialect, and
//! every answer of a limited route carries `RateLimit-Limit`, `RateLimit-Remaining` and
//! `RateLimit-Reset`. The arithmetic is in [`crate::limits::rate`].

mod future;
mod layer;
mod service;

pub use future::RateLimitFuture;
pub(crate) use future::headers;
pub use layer::RateLimitLayer;
pub use service::RateLimit;
pub(crate) use service::bucket_for;
