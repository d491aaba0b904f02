//! Cluster mode: state several replicas share on Redis (`[cluster] redis_url`).
//!
//! Three jobs, one module each. [`link`] holds the multiplexed connection every request's
//! limit work goes through, and knows whether Redis is reachable (what `/health` reports).
//! [`limits`] is the limit work itself: a request's rate-limit cell, quota points and
//! concurrency lease checked and taken in one Lua script, one round trip, on Redis's clock.
//! [`bus`] carries invalidations (cached reads, reaches, credentials, quotas) to every node
//! over pub/sub, and drops a node's caches when its subscription was lost.
//!
//! Without `redis_url` none of this exists: the in-process limiter, counter and caches are
//! the whole state, as on one node.

pub mod bus;
pub mod limits;
pub mod link;
