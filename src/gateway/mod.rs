//! The tower stack of DESIGN §1, one folder per layer, assembled in [`stack`].
//!
//! Layers share per-request context through request extensions ([`RouteCtx`],
//! [`crate::identity::Principal`], [`crate::context::RequestMeta`]) and report failures as
//! typed [`crate::error::GatewayError`]s; the route layer tags them with the client's
//! dialect ([`Rejection`]) and the rescue layer renders them.

pub mod audit;
pub mod authn;
pub mod cache;
pub mod quota;
pub mod ratelimit;
pub mod rescue;
pub mod route;
pub mod stack;
pub mod trace;
pub mod translate;
pub mod upstream;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::dialect::Dialect;
use crate::error::GatewayError;
use crate::mapping::pack::Route;

/// A boxed, sendable future: used by layers whose work is genuinely async (authn, translate).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The matched route of a request, inserted by the route layer.
#[derive(Debug, Clone)]
pub struct RouteCtx {
    pub route: Arc<Route>,
    /// Path variables, decoded and checked.
    pub params: Vec<(String, String)>,
}

/// The points a request finally cost, when its route settles them from the answer
/// (response extension, read by the quota and audit layers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettledPoints(pub u64);

/// A failure tagged with the dialect to answer it in.
#[derive(Debug)]
pub struct Rejection {
    pub error: GatewayError,
    pub dialect: Dialect,
}
