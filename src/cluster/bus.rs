//! Invalidations every node applies: what a write, a purge or an admin change makes stale.
//!
//! (Stub: the pub/sub carrier is being built; today an invalidation is applied on this
//! node only.)

use std::sync::Arc;

/// Something cached that a change made stale, on every node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    /// A write's `invalidates`: cached reads of `routes` whose key holds one of `values`.
    Reads {
        /// Route ids whose cached reads are affected.
        routes: Vec<Arc<str>>,
        /// Values (ids) the affected cache keys carry.
        values: Vec<String>,
    },
    /// `DELETE /v1/cache`: every cached read, or one route's.
    Purge {
        /// The route whose reads go; `None`: all.
        route: Option<String>,
    },
    /// Reaches holding one of these company ids (a company moved or changed).
    Reach {
        /// Company ids, as the packs' reach sets hold them.
        ids: Vec<String>,
    },
    /// Every reach (a change whose extent is not known).
    ReachAll,
    /// Credentials and principals remembered from the store (a key revoked, a user
    /// disabled, a company changed).
    Credentials,
    /// A user's quotas or timezone.
    Quotas {
        /// The user whose quotas changed.
        user: String,
    },
}
