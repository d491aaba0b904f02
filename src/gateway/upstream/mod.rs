//! The innermost service: runs a matched route's steps against the pooled upstream clients
//! ([`crate::upstream::Upstreams`]) and returns an [`crate::mapping::exec::Outcome`].

mod service;

pub use service::{ExecRequest, Executor};
