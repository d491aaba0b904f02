//! Rosetta: an API gateway and compatibility translation proxy.
//!
//! Clients keep the API dialect they were written for; packs under `mappings/` translate
//! their requests to new backends and the answers back. See `DESIGN.md` in `shared/` and the
//! README for the architecture.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod admin;
pub mod body;
pub mod capture;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod context;
pub mod demo;
pub mod dialect;
pub mod error;
pub mod gateway;
pub mod header_names;
pub mod identity;
pub mod limits;
pub mod mapping;
pub mod metrics;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod tenancy;
pub mod upstream;

#[cfg(test)]
mod test_support;
