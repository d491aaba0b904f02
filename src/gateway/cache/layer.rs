//! [`CacheLayer`] and the [`ReadCache`] it shares with the admin API.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderValue;
use tower::Layer;

use super::Cache;
use super::policy::{CacheKey, affected};
use crate::cluster::bus::{Caches, Invalidator};

/// One cached answer.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub status: u16,
    pub content_type: Option<HeaderValue>,
    pub body: Bytes,
    pub etag: String,
    pub ttl: Duration,
    pub stored: Instant,
}

struct PerEntryTtl;

impl moka::Expiry<CacheKey, Arc<Entry>> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        value: &Arc<Entry>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// Bytes an entry costs besides its key and body.
const ENTRY_OVERHEAD: usize = 1024;

/// The cache itself: bounded in bytes, expiring per entry TTL and after an idle time.
#[derive(Clone)]
pub struct ReadCache {
    /// Behind an `Arc`: cloned with the service stack on every request, and a moka handle
    /// is several reference counts.
    pub(super) cache: Arc<moka::future::Cache<CacheKey, Arc<Entry>, foldhash::fast::RandomState>>,
}

impl ReadCache {
    /// An empty cache holding at most `max_bytes`, dropping entries unread for `idle`.
    pub fn new(max_bytes: u64, idle: Duration) -> Self {
        let cache = moka::future::Cache::builder()
            // Measured (benches/memory.sh): an entry costs about 1 KiB beyond its key and
            // body (moka's node, timer and deque links, the Arc'd entry, the ETag, the
            // params), so `max_bytes` bounds real memory rather than payload only.
            .weigher(|k: &CacheKey, v: &Arc<Entry>| {
                u32::try_from(k.request.len() + k.scope.len() + v.body.len() + ENTRY_OVERHEAD)
                    .unwrap_or(u32::MAX)
            })
            .max_capacity(max_bytes)
            .time_to_idle(idle)
            .expire_after(PerEntryTtl)
            .support_invalidation_closures()
            .eviction_listener(|_k, _v, cause| {
                if cause == moka::notification::RemovalCause::Size {
                    crate::metrics::cache_evicted();
                }
            })
            // SipHash was a tenth of a cache miss's CPU; foldhash is seeded per process.
            .build_with_hasher(foldhash::fast::RandomState::default());
        Self {
            cache: Arc::new(cache),
        }
    }

    /// Drops the entries a successful write to `routes` (`pack:route`) with path parameter
    /// `values` affects.
    pub fn invalidate(&self, routes: Vec<Arc<str>>, values: Vec<String>) {
        let _ = self
            .cache
            .invalidate_entries_if(move |k, _| affected(k, &routes, &values));
    }

    /// Drops everything, or every entry of one route (`pack:route` or a bare route id).
    pub fn purge(&self, route: Option<&str>) {
        match route {
            None => self.cache.invalidate_all(),
            Some(r) => {
                let r = r.to_owned();
                let _ = self.cache.invalidate_entries_if(move |k, _| {
                    *k.route == *r || k.route.rsplit(':').next() == Some(r.as_str())
                });
            }
        }
    }

    /// Bytes held (moka's weighted size, after pending maintenance).
    pub async fn bytes(&self) -> u64 {
        self.cache.run_pending_tasks().await;
        self.cache.weighted_size()
    }
}

/// Serves cached reads and invalidates after writes.
#[derive(Clone)]
pub struct CacheLayer {
    cache: ReadCache,
    invalidator: Invalidator,
}

impl CacheLayer {
    /// A layer serving reads from `cache` and invalidating it (on this node only) after
    /// writes.
    pub fn new(cache: ReadCache) -> Self {
        let invalidator = Invalidator::local(Caches {
            reads: Some(cache.clone()),
            ..Caches::default()
        });
        Self { cache, invalidator }
    }

    /// Writes invalidate through `invalidator` (which must hold this layer's cache), so
    /// the other nodes drop the same reads.
    pub fn with_invalidator(mut self, invalidator: Invalidator) -> Self {
        self.invalidator = invalidator;
        self
    }
}

impl<S> Layer<S> for CacheLayer {
    type Service = Cache<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Cache {
            inner,
            cache: self.cache.clone(),
            invalidator: self.invalidator.clone(),
        }
    }
}
