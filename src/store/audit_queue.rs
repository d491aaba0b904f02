//! The audit queue's bound and the writer's health, shared by the store, the requests that
//! hold room in the queue ([`AuditSlot`]) and the writer thread.
//!
//! The bound counts every row not yet durable: room taken by a request still being answered,
//! rows waiting in the writer's channel, rows the writer is writing or retrying. A row is
//! durable once committed to the table or appended to the spill file; only then is its room
//! given back. So memory stays bounded while the store fails, and the requests that find no
//! room are refused (503) before any work is done for them, instead of answered and then
//! left without a row.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// The audit queue's bound and the retention, from `[store]`. The default bounds the queue
/// as the configuration does but keeps rows forever (what [`crate::store::SqliteStore::open`]
/// uses, for tools and tests; the gateway passes `[store]`'s values).
#[derive(Debug, Clone, Copy)]
pub struct AuditOptions {
    /// Rows not yet durable at most (`store.audit_queue`); beyond, requests are refused.
    pub queue: usize,
    /// Days raw rows are kept before they are rolled up (`store.audit_days`; 0: forever).
    pub days: u32,
    /// The clock retention dates by.
    pub wall: crate::clock::WallClock,
}

impl Default for AuditOptions {
    fn default() -> Self {
        Self {
            queue: 100_000,
            days: 0,
            wall: crate::clock::WallClock::System,
        }
    }
}

/// Room for one audit row in the queue, taken before a request is let through
/// ([`crate::store::AuditSink::reserve_audit`]). Handing it to
/// [`crate::store::AuditSink::record_reserved`] with the row passes the room on to the writer;
/// dropping it unused gives the room back.
#[derive(Debug)]
pub struct AuditSlot {
    state: Option<Arc<AuditState>>,
}

impl AuditSlot {
    /// The room passes to the row it was taken for: the writer gives it back once the row
    /// is durable.
    pub(super) fn hand_over(mut self) {
        self.state = None;
    }
}

impl Drop for AuditSlot {
    fn drop(&mut self) {
        if let Some(s) = self.state.take() {
            s.depth.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// What the writer is doing, as `/health` tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriterState {
    /// The last write succeeded.
    Ok,
    /// The last write failed (rows are being retried, spilled or held).
    Failing,
    /// The writer thread is gone: rows are spilled by the callers.
    Stopped,
}

impl WriterState {
    /// The state's name in `/health`.
    pub fn as_str(self) -> &'static str {
        match self {
            WriterState::Ok => "ok",
            WriterState::Failing => "failing",
            WriterState::Stopped => "stopped",
        }
    }
}

/// The audit writer's state, read by `/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditHealth {
    /// Rows not yet durable (reserved, queued or being written).
    pub queued: u64,
    /// The queue's bound (`store.audit_queue`).
    pub capacity: u64,
    /// Rows in the spill file, waiting to be replayed into the table.
    pub spilled: u64,
    /// The writer's state.
    pub writer: WriterState,
}

impl AuditHealth {
    /// Healthy when the writer runs, its last write succeeded and nothing waits in the
    /// spill file.
    pub fn healthy(&self) -> bool {
        self.writer == WriterState::Ok && self.spilled == 0
    }
}

/// The counters behind [`AuditSlot`] and [`AuditHealth`].
#[derive(Debug)]
pub(super) struct AuditState {
    capacity: usize,
    depth: AtomicUsize,
    spilled: AtomicU64,
    failing: AtomicBool,
    stopped: AtomicBool,
}

impl AuditState {
    pub(super) fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            capacity: capacity.max(1),
            depth: AtomicUsize::new(0),
            spilled: AtomicU64::new(0),
            failing: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
        })
    }

    /// Room for one row, or `None` when the queue is full.
    pub(super) fn reserve(self: &Arc<Self>) -> Option<AuditSlot> {
        let mut n = self.depth.load(Ordering::Acquire);
        loop {
            if n >= self.capacity {
                return None;
            }
            match self
                .depth
                .compare_exchange_weak(n, n + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    return Some(AuditSlot {
                        state: Some(self.clone()),
                    });
                }
                Err(now) => n = now,
            }
        }
    }

    /// A row queued without room taken first (a refused authentication: its rate is bounded
    /// by the failure budgets, and refusing it would only lose the row). It counts against
    /// the bound like any other, so requests are refused sooner.
    pub(super) fn add_unreserved(&self) {
        self.depth.fetch_add(1, Ordering::AcqRel);
    }

    /// `n` rows are durable: their room is given back.
    pub(super) fn done(&self, n: usize) {
        self.depth.fetch_sub(n, Ordering::AcqRel);
    }

    pub(super) fn set_spilled(&self, n: u64) {
        self.spilled.store(n, Ordering::Release);
    }

    pub(super) fn add_spilled(&self, n: u64) {
        self.spilled.fetch_add(n, Ordering::AcqRel);
    }

    pub(super) fn spilled(&self) -> u64 {
        self.spilled.load(Ordering::Acquire)
    }

    pub(super) fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::Release);
    }

    pub(super) fn set_stopped(&self) {
        self.stopped.store(true, Ordering::Release);
    }

    pub(super) fn health(&self) -> AuditHealth {
        AuditHealth {
            queued: self.depth.load(Ordering::Acquire) as u64,
            capacity: self.capacity as u64,
            spilled: self.spilled(),
            writer: if self.stopped.load(Ordering::Acquire) {
                WriterState::Stopped
            } else if self.failing.load(Ordering::Acquire) {
                WriterState::Failing
            } else {
                WriterState::Ok
            },
        }
    }
}

/// Marks the writer stopped when its thread ends, a panic included.
pub(super) struct StoppedOnDrop(pub(super) Arc<AuditState>);

impl Drop for StoppedOnDrop {
    fn drop(&mut self) {
        self.0.set_stopped();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_is_bounded_and_given_back_by_unused_slots_and_durable_rows() {
        let s = AuditState::new(2);
        let a = s.reserve().unwrap();
        let b = s.reserve().unwrap();
        assert!(s.reserve().is_none(), "full at the bound");
        drop(a);
        let c = s.reserve().expect("an unused slot gives its room back");
        b.hand_over();
        c.hand_over();
        assert_eq!(s.health().queued, 2, "handed-over rows keep their room");
        assert!(s.reserve().is_none());
        s.done(2);
        assert_eq!(s.health().queued, 0);
        s.add_unreserved();
        s.add_unreserved();
        s.add_unreserved();
        assert!(s.reserve().is_none(), "unreserved rows count too");
        assert_eq!(s.health().queued, 3);
    }

    #[test]
    fn health_fails_while_failing_spilled_or_stopped() {
        let s = AuditState::new(10);
        assert!(s.health().healthy());
        s.set_failing(true);
        assert_eq!(s.health().writer, WriterState::Failing);
        assert!(!s.health().healthy());
        s.set_failing(false);
        s.add_spilled(3);
        assert!(!s.health().healthy());
        s.set_spilled(0);
        assert!(s.health().healthy());
        drop(StoppedOnDrop(s.clone()));
        assert_eq!(s.health().writer, WriterState::Stopped);
    }
}
