//! Tenant confinement (DESIGN §8): every key reaches its own companies only.
//!
//! A caller's **reach** is its root company (the upstream company whose external id is its
//! company key) and every descendant through the reseller → customer associations; `ADMIN`
//! reaches everything. Each pack says once, in `pack.toml` (`[reach]`), which upstream calls
//! give the root and a company's children ([`book::PackReach`]); each route says which of
//! its inputs are company ids and whether it lists companies ([`spec::Tenancy`]). The checks
//! themselves are pure functions over plain data ([`reach`], [`roles`]); the gateway's
//! tenancy layer and translate layer apply them before any upstream call.

pub mod book;
pub mod reach;
pub mod roles;
pub mod spec;

pub use book::PackReach;
pub use reach::{Reach, ReachSet};
pub use roles::{Role, RoleSet};
pub use spec::{IdInput, Tenancy};
