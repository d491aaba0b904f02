//! Cluster mode's limits: in place of the rate-limit and quota layers, one layer that asks
//! Redis once per request for everything the request is held to (its rate-limit cell, its
//! quota points, its concurrency lease; [`crate::cluster::limits`]), so every replica draws
//! from the same buckets and budgets.
//!
//! Answers are the two layers' own: 429 naming the policy or the exhausted quota with
//! `Retry-After`, `RateLimit-*` and `X-Quota-*-Remaining` on admitted answers, points given
//! back under `count = "success"` when the upstream failed before anything was sent. A
//! request nothing limits never waits on Redis. When Redis does not answer in time:
//! `on_redis_error = "deny"` answers 503 with `Retry-After` (nothing sent upstream);
//! `"allow"` lets the request through the in-process rate-limit and quota layers, counted on
//! this node alone, and counts it in `rosetta_cluster_unavailable_total`.

mod layer;
mod service;

pub use layer::SharedLimitLayer;
pub use service::SharedLimit;
