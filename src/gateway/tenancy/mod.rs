//! Tenancy on the request path (DESIGN §8): the route's roles are checked, the caller's reach
//! is resolved (cached, coalesced) and every path and query company id the route declares is
//! checked against it, before anything is priced, cached or sent upstream. A role that does
//! not fit is 403 naming the roles needed; an id out of reach is the 404 an unknown company
//! gets, in the client's dialect. The reach goes on in the request's extensions for the
//! translate layer (body ids, lists, `reach.root`); a write that changes the company tree
//! drops the cached reaches holding the companies it touched, on its way out.
//!
//! The checks are the pure functions of [`crate::tenancy`].

mod layer;
mod service;

pub use layer::TenancyLayer;
pub use service::{BodyTargets, TenancyService};
