//! What failed inside Rosetta ([`Internal`]), its causes kept as sources, and [`chain`],
//! which writes them all for the log line of a 500.

use super::GatewayError;
use crate::body::BoxError;

/// What failed inside Rosetta, with the failure that caused it kept as its source.
#[derive(Debug, thiserror::Error)]
pub enum Internal {
    /// A piece of request context missing below the layer that sets it: the stack is
    /// assembled wrong.
    #[error("the {layer} layer was reached without {missing}")]
    MissingContext {
        /// The layer that needed it.
        layer: &'static str,
        /// What it needed.
        missing: &'static str,
    },
    /// A route's jq filter failed on the values it was given.
    #[error("route {route}: {part} failed")]
    Filter {
        /// The route's id.
        route: std::sync::Arc<str>,
        /// Which filter of the route (`response`, a step's name…).
        part: String,
        /// The jq failure.
        #[source]
        source: crate::mapping::jq::JqError,
    },
    /// A route's filter made a value the route cannot use.
    #[error("route {route}: {detail}")]
    Answer {
        /// The route's id.
        route: std::sync::Arc<str>,
        /// What is wrong with the value.
        detail: String,
    },
    /// A pack's `[reach]` answered something that is not a reach.
    #[error("pack {pack}: [reach] did not yield {{root, companies}}")]
    ReachShape {
        /// The pack's name.
        pack: String,
    },
    /// Resolving the caller's reach failed.
    #[error("resolving the caller's reach")]
    Reach {
        /// Why it failed (shared: callers waiting on the same resolution get it too).
        #[source]
        source: std::sync::Arc<GatewayError>,
    },
    /// The store failed.
    #[error("the store failed while {doing}")]
    Store {
        /// What Rosetta was doing, for the message.
        doing: &'static str,
        /// The store's failure.
        #[source]
        source: crate::store::StoreError,
    },
    /// An answer's body could not be read.
    #[error("reading {what}")]
    Body {
        /// Which body it was, for the message.
        what: &'static str,
        /// The read's failure.
        #[source]
        source: BoxError,
    },
    /// Something Rosetta does for itself failed (a secret drawn, a password hashed, a
    /// report written, a body encoded).
    #[error("{doing}")]
    Failed {
        /// What Rosetta was doing, for the message.
        doing: &'static str,
        /// What failed.
        #[source]
        source: BoxError,
    },
    /// A request waiting on the cache's leader was not kept for its own call.
    #[error("the request was lost while waiting for the cache")]
    LostInCache,
    /// A link needs the gateway's own address.
    #[error("a link needs server.public_url or the listener's address, and neither is known")]
    NoBaseUrl,
    /// Rosetta's own wiring is wrong (the admin route table, the stack's order).
    #[error("{what}")]
    Miswired {
        /// What is wired wrong.
        what: &'static str,
        /// What failed because of it.
        #[source]
        source: BoxError,
    },
}

/// `e` and every error it was caused by, `: `-separated, for the log line of a 500.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        next = cause.source();
    }
    out
}
