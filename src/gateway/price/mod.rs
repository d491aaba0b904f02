//! A request's price, decided once. After authentication the route's points are worked out
//! (its constant, or its jq expression over `{path, query, principal}`: the body is not read
//! before the quota decision) and carried in the request's extensions as a [`Price`]: the
//! quota layer reserves it, the audit layer records it, the cache layer charges a hit with
//! it, and the translate layer keeps it when a settlement from the answer fails. Nobody
//! works the cost out again, so the quota reserved and the audit row agree by construction.

mod layer;
mod service;

pub use layer::PriceLayer;
pub use service::{PriceService, price};

/// What a request costs in quota points (request extension, set by [`PriceLayer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    /// Reserved before the request runs; a route that settles its points from the answer
    /// replaces it with [`super::SettledPoints`].
    pub points: u64,
    /// What an answer served from the cache costs instead, when the route says so.
    pub on_hit: Option<u64>,
}
