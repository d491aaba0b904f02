//! Rate limiting (leaky bucket per policy and key): a seam for now.
//!
//! The stack already has this layer's place so that adding the governor-backed limiter
//! changes no other layer; until then it passes requests through untouched.

use tower::layer::util::Identity;

/// The rate-limit layer (pass-through until the rate-limit issue lands).
pub fn layer() -> Identity {
    Identity::new()
}
