//! Limits on callers: rate-limit policies (leaky bucket as GCRA) and per-user quotas.
//!
//! The arithmetic lives here as plain data and small traits ([`rate::RateLimiter`]); the
//! tower layers in `gateway::ratelimit` and `gateway::quota` only read the request's context
//! and ask. Counters sit behind traits so a shared (Redis) implementation can replace the
//! in-process one without any layer changing.

pub mod quota;
pub mod rate;
