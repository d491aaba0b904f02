//! The request's deadline: from its head arriving to its answer's head, at most
//! `server.request_timeout`, and its body no slower than `server.min_body_rate` once
//! `server.body_rate_grace` is over.
//!
//! The body is wrapped ([`Paced`]) so that a body that stops, or trickles, fails the read
//! of whoever is waiting on it (the translate layer, which answers 408); the answer is
//! raced against the deadline ([`TimeoutFuture`]), so a request stuck anywhere below is
//! dropped when it runs out: 408 when its body had not all arrived, 504 when it had. Either
//! way the layers below end with it, and what they hold is given back as they drop (the
//! quota layer's concurrency slot among them): a client that trickles its body cannot keep
//! a slot for longer than the grace and its bytes' worth. The minimum rate is an average
//! from the request's start, as Apache's `mod_reqtimeout` counts it: each byte received
//! buys `1 / min_body_rate` seconds more, so a body sent in bursts is fine as long as it
//! keeps up overall.

mod body;
mod future;
mod layer;
mod service;

pub use body::{BodyTimedOut, Paced};
pub use future::TimeoutFuture;
pub use layer::{RequestLimits, TimeoutLayer};
pub use service::Timeout;
