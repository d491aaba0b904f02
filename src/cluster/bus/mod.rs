//! Invalidations every node applies: what a write, a purge or an admin change made stale.
//!
//! Every place that drops a cached thing calls [`Invalidator::apply`]: the change is applied
//! to this node's caches at once (before the client hears back, as on one node) and, in
//! cluster mode, handed to a publisher task that sends it on the Redis channel
//! `{key_prefix}invalidations`. A subscriber task applies what the other nodes send (a
//! message carries its sender's random id, so a node skips its own). Publishing never blocks
//! or fails a request: the hand-off is a bounded queue, and an invalidation that cannot be
//! queued or sent is counted and makes the publisher send [`Invalidation::Everything`] as
//! soon as Redis takes it again, so no other node keeps what it missed.
//!
//! A node that lost its subscription cannot know what it missed: every successful
//! subscription (the first one and each after a reconnection) drops all its caches, so
//! nothing stale is served after a partition. The subscriber pings Redis every second, so a
//! silent partition is noticed too.
//!
//! Without `[cluster] redis_url` there is no task and no Redis: `apply` is the local drop
//! alone, as before.

mod tasks;
mod wire;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::config::ClusterConfig;
use crate::gateway::cache::ReadCache;
use crate::gateway::quota::QuotaBook;
use crate::identity::StoreAuth;
use crate::metrics::ClusterEvent;
use crate::tenancy::PackReach;

/// Something cached that a change made stale, on every node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Invalidation {
    /// A write's `invalidates`: cached reads of `routes` whose key holds one of `values`.
    Reads {
        /// Route ids (`pack:route`) whose cached reads are affected.
        #[serde(with = "wire::arcs")]
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
        #[serde(with = "wire::arcs")]
        ids: Vec<Arc<str>>,
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
    /// Everything cached: sent by a node whose earlier invalidations may not have reached
    /// the others, applied by a node that missed messages or received one it cannot read.
    Everything,
}

/// The caches of one node that invalidations drop. A piece left out (`None`, no reaches) is
/// one a test or a tool does not have.
#[derive(Clone, Default)]
pub struct Caches {
    /// Cached reads (`[cache]`).
    pub reads: Option<ReadCache>,
    /// Every pack's cached reaches.
    pub reaches: Arc<[Arc<PackReach>]>,
    /// Credentials checked against the store.
    pub credentials: Option<StoreAuth>,
    /// Users' quotas and timezones.
    pub quotas: Option<QuotaBook>,
}

impl Caches {
    /// Drops what `inv` made stale, on this node.
    pub fn apply(&self, inv: &Invalidation) {
        match inv {
            Invalidation::Reads { routes, values } => {
                if let Some(reads) = &self.reads {
                    reads.invalidate(routes.clone(), values.clone());
                }
            }
            Invalidation::Purge { route } => {
                if let Some(reads) = &self.reads {
                    reads.purge(route.as_deref());
                }
            }
            Invalidation::Reach { ids } => {
                for reach in self.reaches.iter() {
                    reach.forget_holding(ids);
                }
            }
            Invalidation::ReachAll => {
                for reach in self.reaches.iter() {
                    reach.forget_all();
                }
            }
            Invalidation::Credentials => {
                if let Some(auth) = &self.credentials {
                    auth.invalidate();
                }
            }
            Invalidation::Quotas { user } => {
                if let Some(quotas) = &self.quotas {
                    quotas.invalidate(user);
                }
            }
            Invalidation::Everything => {
                crate::metrics::cluster(ClusterEvent::CachesDropped);
                if let Some(reads) = &self.reads {
                    reads.purge(None);
                }
                for reach in self.reaches.iter() {
                    reach.forget_all();
                }
                if let Some(auth) = &self.credentials {
                    auth.invalidate();
                }
                if let Some(quotas) = &self.quotas {
                    quotas.invalidate_all();
                }
            }
        }
    }
}

/// Where this node's subscription to the other nodes' invalidations stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusState {
    /// No `[cluster]`: invalidations stay on this node.
    Local,
    /// Subscribed since `since_ms` (Unix milliseconds): other nodes' invalidations arrive.
    Subscribed {
        /// When the subscription was made.
        since_ms: i64,
    },
    /// Not subscribed since `since_ms`: retrying (at most a second apart); when it succeeds
    /// this node drops all its caches.
    Reconnecting {
        /// When the subscription was lost (or the node started).
        since_ms: i64,
        /// Why the last attempt failed, when one has.
        error: Option<String>,
    },
}

impl BusState {
    /// `local`, `subscribed` or `reconnecting`.
    pub fn word(&self) -> &'static str {
        match self {
            BusState::Local => "local",
            BusState::Subscribed { .. } => "subscribed",
            BusState::Reconnecting { .. } => "reconnecting",
        }
    }
}

/// Invalidations not yet handed to the publisher at most; past it they are counted as
/// unsent and the publisher sends [`Invalidation::Everything`] instead.
const QUEUE: usize = 1024;

/// The cluster side of an [`Invalidator`].
struct Cluster {
    queue: mpsc::Sender<Invalidation>,
    /// Set when an invalidation could not be queued or sent: the others may have missed it.
    lost: Arc<AtomicBool>,
    state: Arc<Mutex<BusState>>,
    /// The publisher and subscriber, stopped with the last handle.
    tasks: [tokio::task::AbortHandle; 2],
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

struct Inner {
    caches: Caches,
    cluster: Option<Cluster>,
}

/// The one door to this node's caches (and, in cluster mode, the other nodes'): cheap to
/// clone, shared by the cache and tenancy layers and the admin API.
#[derive(Clone)]
pub struct Invalidator {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Invalidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invalidator")
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

/// Why cluster mode could not start.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// `cluster.redis_url` is not a URL the client accepts.
    #[error("cluster.redis_url `{url}` cannot be used")]
    Url {
        /// The URL, its password redacted.
        url: String,
        /// The client's complaint.
        #[source]
        source: redis::RedisError,
    },
    /// Built outside a tokio runtime: the bus's tasks have nowhere to run.
    #[error("cluster mode is started from outside a tokio runtime")]
    NoRuntime(#[source] tokio::runtime::TryCurrentError),
}

impl Invalidator {
    /// Invalidations applied to `caches` on this node only.
    pub fn local(caches: Caches) -> Self {
        Self {
            inner: Arc::new(Inner {
                caches,
                cluster: None,
            }),
        }
    }

    /// As [`Invalidator::local`] without `cfg.redis_url`; with it, the publisher and the
    /// subscriber are spawned on the current runtime (neither waits for Redis: a node starts
    /// while Redis is down, and reports it in [`Invalidator::state`]).
    pub fn start(caches: Caches, cfg: &ClusterConfig) -> Result<Self, BusError> {
        let Some(url) = &cfg.redis_url else {
            return Ok(Self::local(caches));
        };
        let client = redis::Client::open(url.as_str()).map_err(|source| BusError::Url {
            url: crate::config::redact_url(url),
            source,
        })?;
        let runtime = tokio::runtime::Handle::try_current().map_err(BusError::NoRuntime)?;
        let node: Arc<str> = Arc::from(uuid::Uuid::new_v4().simple().to_string());
        let channel: Arc<str> = Arc::from(format!("{}invalidations", cfg.key_prefix));
        let (queue, rx) = mpsc::channel(QUEUE);
        let lost = Arc::new(AtomicBool::new(false));
        let state = Arc::new(Mutex::new(BusState::Reconnecting {
            since_ms: crate::clock::system_ms(),
            error: None,
        }));
        let link = tasks::Link {
            client,
            channel,
            node,
            timeout: cfg.timeout,
        };
        let publisher = runtime.spawn(tasks::publish(link.clone(), rx, lost.clone()));
        let subscriber = runtime.spawn(tasks::subscribe(link, caches.clone(), state.clone()));
        Ok(Self {
            inner: Arc::new(Inner {
                caches,
                cluster: Some(Cluster {
                    queue,
                    lost,
                    state,
                    tasks: [publisher.abort_handle(), subscriber.abort_handle()],
                }),
            }),
        })
    }

    /// Drops what `inv` made stale on this node now and, in cluster mode, queues it for the
    /// other nodes (never waiting: a full queue is counted, and covered by an
    /// [`Invalidation::Everything`] once the publisher catches up).
    pub fn apply(&self, inv: Invalidation) {
        self.inner.caches.apply(&inv);
        if let Some(c) = &self.inner.cluster {
            match c.queue.try_send(inv) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_) | mpsc::error::TrySendError::Closed(_)) => {
                    c.lost.store(true, Ordering::Release);
                    crate::metrics::cluster(ClusterEvent::Unsent);
                }
            }
        }
    }

    /// Where the subscription stands (a lock held for a copy: cheap enough for `/health`).
    pub fn state(&self) -> BusState {
        match &self.inner.cluster {
            None => BusState::Local,
            Some(c) => c.state.lock().clone(),
        }
    }
}

#[cfg(test)]
mod tests;
