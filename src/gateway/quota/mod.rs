//! Per-user quotas: after authentication and rate limiting, each request of a user with
//! quotas for the route's service and method group reserves its points (and a concurrency
//! slot) before anything else runs, and settles when the answer is known: a server error
//! gives the points back (quotas count successes). A refusal is 429 with `Retry-After`
//! until the limit resets and a message naming the exhausted limit. The arithmetic is in
//! [`crate::limits::quota`].

mod layer;
mod service;

pub use layer::{QuotaBook, QuotaLayer};
pub use service::Quota;
pub(crate) use service::{headers, plan, usage_so_far};
