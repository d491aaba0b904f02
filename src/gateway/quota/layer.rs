//! [`QuotaLayer`] and the [`QuotaBook`] it shares with the admin API.

use std::sync::Arc;
use std::time::Duration;

// Synchronous caches: the quota layer decides in `call` when a user's quotas are cached,
// which cannot wait on the future cache's locks.
use moka::sync::Cache;
use tower::Layer;

use super::Quota;
use crate::clock::WallClock;
use crate::limits::quota::{QuotaCounter, QuotaRules};
use crate::store::{Directory, QuotaSettings, StoreError};

/// A user's quotas and timezone by user name (`None`: no quotas).
type QuotaCache = Cache<String, Option<Arc<(QuotaRules, i32)>>, foldhash::fast::RandomState>;

/// Users on the same quotas (a plan) share one compiled copy.
type Plans = Cache<(QuotaRules, i32), Arc<(QuotaRules, i32)>, foldhash::fast::RandomState>;

/// Users' quotas and timezones (cached briefly, dropped by the admin API on every change so
/// a `PUT` takes effect at once; as many users as the credential cache keeps, for the same
/// reason) and the usage counter.
#[derive(Clone)]
pub struct QuotaBook {
    /// Where users' quotas and past usage are read from.
    pub settings: Arc<dyn QuotaSettings>,
    /// Where users' timezones are read from (a quota's day is the user's local day).
    pub users: Arc<dyn Directory>,
    /// Reserves and settles points and concurrency slots.
    pub counter: Arc<dyn QuotaCounter>,
    /// Where the days and date windows of quotas are read from.
    pub wall: WallClock,
    /// Behind an `Arc`: the book is cloned with the service stack on every request, and a
    /// moka handle is several reference counts.
    cache: Arc<QuotaCache>,
    plans: Arc<Plans>,
}

impl QuotaBook {
    /// Quotas and past usage read from `settings`, timezones from `users`, usage counted
    /// in `counter`, days from the system's clock.
    pub fn new(
        settings: Arc<dyn QuotaSettings>,
        users: Arc<dyn Directory>,
        counter: Arc<dyn QuotaCounter>,
    ) -> Self {
        Self {
            settings,
            users,
            counter,
            wall: WallClock::System,
            cache: Arc::new(
                Cache::builder()
                    .max_capacity(crate::identity::CACHE_ENTRIES)
                    .time_to_live(Duration::from_secs(30))
                    .build_with_hasher(foldhash::fast::RandomState::default()),
            ),
            plans: Arc::new(
                Cache::builder()
                    .max_capacity(10_000)
                    .build_with_hasher(foldhash::fast::RandomState::default()),
            ),
        }
    }

    /// Reads days and date windows from `wall` instead of the system's clock.
    pub fn with_wall_clock(mut self, wall: WallClock) -> Self {
        self.wall = wall;
        self
    }

    /// The user's quotas and timezone; `None` for a user without any (or not in the store).
    pub async fn of(&self, username: &str) -> Result<Option<Arc<(QuotaRules, i32)>>, StoreError> {
        if let Some(hit) = self.cached(username) {
            return Ok(hit);
        }
        let quotas = self.settings.get_quotas(username.to_owned()).await?;
        let found = if quotas.base.is_none() && quotas.windows.is_empty() {
            None
        } else {
            let tz = match self.users.get_user(username.to_owned()).await {
                Ok(u) => u.timezone,
                Err(StoreError::NotFound(_)) => 0,
                Err(e) => return Err(e),
            };
            // Kept compiled (the stored JSON is several allocations per number) and shared
            // by every user on the same quotas.
            let plan = (QuotaRules::compile(&quotas), tz);
            Some(self.plans.get_with(plan.clone(), || Arc::new(plan)))
        };
        self.cache.insert(username.to_owned(), found.clone());
        Ok(found)
    }

    /// [`QuotaBook::of`] when it is known without the store: `Some(None)` for a user known
    /// to have no quotas, `None` when the store has to be asked.
    pub fn cached(&self, username: &str) -> Option<Option<Arc<(QuotaRules, i32)>>> {
        self.cache.get(username)
    }

    /// Forgets what is cached for `username` (quotas or timezone changed).
    pub fn invalidate(&self, username: &str) {
        self.cache.invalidate(username);
    }

    /// Forgets every user's cached quotas (this node missed changes it cannot name).
    pub fn invalidate_all(&self) {
        self.cache.invalidate_all();
    }
}

/// Reserves and settles quota points around each routed request.
#[derive(Clone)]
pub struct QuotaLayer {
    book: QuotaBook,
}

impl QuotaLayer {
    /// A layer over `book`.
    pub fn new(book: QuotaBook) -> Self {
        Self { book }
    }
}

impl<S> Layer<S> for QuotaLayer {
    type Service = Quota<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Quota {
            inner,
            book: self.book.clone(),
        }
    }
}
