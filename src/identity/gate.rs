//! [`Gate`]: a bound on concurrent authentication work with a bounded, timed queue in front.
//!
//! A semaphore alone bounds the work but not the waiting: every caller past the permits
//! parks a task and its request until a permit frees, however many there are. Here a caller
//! finds a permit at once, or takes one of `queue` places and waits at most `wait`, or is
//! refused at once ([`AuthError::Busy`], a 503 with `Retry-After`): under a flood the
//! gateway holds at most `concurrency + queue` callers per gate, each for a bounded time.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::AuthError;
use crate::metrics::AuthWork;

/// How much of a piece of work runs at once and how long callers wait for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateSettings {
    /// Pieces of work at once (at least 1).
    pub concurrency: usize,
    /// Callers waiting at most; beyond, refused at once.
    pub queue: usize,
    /// The longest a caller waits for its turn.
    pub wait: Duration,
}

/// See the module docs. Clones share the permits.
#[derive(Debug, Clone)]
pub(crate) struct Gate {
    permits: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
    settings: GateSettings,
    work: AuthWork,
}

/// Gives the caller's place in the queue back however its wait ends (a permit, the
/// timeout, or the request dropped while waiting).
struct Place<'a>(&'a AtomicUsize);

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Gate {
    /// A gate for `work` with `settings`.
    pub(crate) fn new(work: AuthWork, settings: GateSettings) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(settings.concurrency.max(1))),
            waiting: Arc::default(),
            settings,
            work,
        }
    }

    /// A permit for one piece of work; held until dropped (moved into the blocking task
    /// that does the work, so a cancelled request does not free a permit its work still
    /// uses).
    pub(crate) async fn enter(&self) -> Result<OwnedSemaphorePermit, AuthError> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Ok(permit);
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.settings.queue {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(self.busy());
        }
        let _place = Place(&self.waiting);
        match tokio::time::timeout(self.settings.wait, self.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            // The semaphore is never closed; a closed one is no room either.
            Ok(Err(_)) | Err(_) => Err(self.busy()),
        }
    }

    fn busy(&self) -> AuthError {
        crate::metrics::auth_shed(self.work);
        AuthError::Busy {
            what: match self.work {
                AuthWork::Hashing => "password checks",
                AuthWork::Lookups => "credential lookups",
            },
            retry_after: self.settings.wait.max(Duration::from_secs(1)),
        }
    }

    /// Permits free now (tests).
    #[cfg(test)]
    pub(crate) fn available(&self) -> usize {
        self.permits.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(concurrency: usize, queue: usize) -> Gate {
        Gate::new(
            AuthWork::Hashing,
            GateSettings {
                concurrency,
                queue,
                wait: Duration::from_secs(2),
            },
        )
    }

    #[tokio::test(start_paused = true)]
    async fn past_the_permits_callers_wait_their_turn_within_the_wait() {
        let g = gate(2, 4);
        let a = g.enter().await.unwrap();
        let _b = g.enter().await.unwrap();
        assert_eq!(g.available(), 0);
        let waiter = tokio::spawn({
            let g = g.clone();
            async move { g.enter().await.map(drop) }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        drop(a);
        assert_eq!(waiter.await.unwrap(), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_past_its_bound_is_busy_and_gives_its_place_back() {
        let g = gate(1, 1);
        let _held = g.enter().await.unwrap();
        let started = crate::clock::now();
        let e = g.enter().await.unwrap_err();
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        assert!(
            matches!(e, AuthError::Busy { retry_after, .. } if retry_after == Duration::from_secs(2)),
            "{e:?}"
        );
        assert_eq!(g.waiting.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_refuses_at_once_and_a_dropped_waiter_leaves_it() {
        let g = gate(1, 2);
        let _held = g.enter().await.unwrap();
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let g = g.clone();
                tokio::spawn(async move { g.enter().await.map(drop) })
            })
            .collect();
        tokio::task::yield_now().await;
        assert_eq!(g.waiting.load(Ordering::SeqCst), 2);
        let started = crate::clock::now();
        assert!(matches!(g.enter().await, Err(AuthError::Busy { .. })));
        assert_eq!(started.elapsed(), Duration::ZERO, "refused without waiting");
        for w in &waiters {
            w.abort();
        }
        for w in waiters {
            let _ = w.await;
        }
        assert_eq!(
            g.waiting.load(Ordering::SeqCst),
            0,
            "cancelled waiters left"
        );
    }
}
