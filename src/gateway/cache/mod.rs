//! The read cache: translated GET answers, kept per route TTL and per caller scope, so a hit
//! skips both the upstream calls and the translation.
//!
//! Keys carry the pack and route, the normalised path and query, the client dialect and
//! `Accept`, and the caller's scope (`company` by default, `user`, or `public`): an answer is
//! never served outside the scope it was made for. Concurrent misses on one key make one
//! upstream call (moka's coalescing `try_get_with`). Successful writes invalidate the reads
//! their route declares. `Cache-Status` (RFC 9211) says what happened; bodies get an `ETag`
//! and `If-None-Match` gets a 304. Sitting after rate limits and quotas, a hit still counts.

mod layer;
mod policy;
mod service;

pub use layer::{CacheLayer, ReadCache};
pub use policy::{CacheKey, Scope, etag, normalise_query, scope_value};
pub use service::Cache;
