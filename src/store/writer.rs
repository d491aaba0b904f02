//! The store's writer thread: it drains the audit queue (and the captures) in batches, one
//! transaction per batch, so a proxied request never waits on the disk. Backend-neutral:
//! each backend gives it a [`Sink`] (SQLite's writer connection, PostgreSQL's own pool) and
//! keeps a [`Pipe`], the requests' side of the queue.
//!
//! A batch that fails is tried again a few times with a short backoff; if it still fails,
//! its rows go to the spill file ([`Spill`]) and are replayed into the table once a write
//! succeeds again (and at start). If the spill file fails too, the rows stay in memory,
//! counted against the queue's bound, and are tried again each second: the queue fills and
//! the audit layer refuses new requests (503) rather than answering requests it cannot
//! record. Between batches the writer takes one step of the audit retention.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use parking_lot::Mutex;

use super::audit_queue::{AuditHealth, AuditSlot, AuditState, StoppedOnDrop};
use super::rollup::{Retention, Step};
use super::spill::{Keyed, Spill};
use super::{AuditRow, StoreError, StoreFuture};
use crate::capture::CapturedBody;

/// Where the writer thread writes: a backend's audit table, captures and roll-ups. Each
/// call is one transaction; a failed one changes nothing (the batch is tried again, then
/// spilled).
pub(super) trait Sink: Send + 'static {
    /// Writes `rows`; a row whose key is already in the table is skipped (a replay of the
    /// spill file after a partial success).
    fn write_audit(&mut self, rows: &[Keyed]) -> Result<(), StoreError>;
    /// Writes captured bodies (tracecode, time, bodies); a body taken again replaces the
    /// one stored.
    fn write_captures(
        &mut self,
        captures: &[(String, i64, Vec<CapturedBody>)],
    ) -> Result<(), StoreError>;
    /// One step of the audit retention ([`super::rollup`]): rolls up and deletes the raw
    /// rows of the oldest local day(s) before `cutoff` after `after`.
    fn retention_step(
        &mut self,
        cutoff: time::Date,
        after: Option<time::Date>,
    ) -> Result<Step, StoreError>;
}

/// Rows written per transaction at most.
const BATCH: usize = 1000;

/// How often the writer takes the queue.
const TICK: Duration = Duration::from_millis(5);

/// The waits before each attempt at writing a batch: three attempts, then the spill file.
const ATTEMPTS: [Duration; 3] = [
    Duration::ZERO,
    Duration::from_millis(50),
    Duration::from_millis(250),
];

/// How long the writer waits on a lock held by the admin connection before an attempt
/// fails (SQLite's busy timeout): short, since a failed attempt is retried and then spilled.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(1);

/// How often rows held in memory, or waiting in the spill file, are tried again while the
/// table cannot be written.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// Work for the writer.
pub(super) enum Msg {
    /// An audit row; the writer gives it its key.
    Audit(AuditRow),
    /// The captured bodies of one request: tracecode, time, bodies.
    Capture(String, i64, Vec<CapturedBody>),
    /// Answered once everything queued before it is durable.
    Flush(mpsc::Sender<Result<(), StoreError>>),
}

/// The statement that takes the store's next boot number (1 for a new store): the high bits
/// of every row key this process makes, so keys never repeat across restarts, nor across
/// the nodes sharing one database. The same SQL on SQLite and PostgreSQL.
pub(super) const NEXT_BOOT_SQL: &str = "INSERT INTO store_meta (name, value) VALUES ('boot', 1)
     ON CONFLICT (name) DO UPDATE SET value = store_meta.value + 1 RETURNING value";

/// Makes the rows' idempotency keys: this open's boot number in the high bits, a sequence
/// in the low 40. Used by the writer thread (so no request contends on it), and by a caller
/// only when the writer is gone.
#[derive(Debug)]
pub(super) struct Keys {
    boot: i64,
    seq: AtomicU64,
}

impl Keys {
    pub(super) fn new(boot: i64) -> Self {
        Self {
            boot,
            seq: AtomicU64::new(0),
        }
    }

    /// A key no other row of this store has.
    pub(super) fn next(&self) -> i64 {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        (self.boot << 40) | (seq & ((1 << 40) - 1)) as i64
    }

    /// `row` with the next key.
    pub(super) fn key(&self, row: AuditRow) -> Keyed {
        Keyed {
            rid: self.next(),
            row,
        }
    }
}

/// The writer thread's state.
pub(super) struct Writer<S: Sink> {
    pub(super) sink: S,
    pub(super) rx: mpsc::Receiver<Msg>,
    pub(super) audit: Arc<AuditState>,
    pub(super) spill: Arc<Mutex<Spill>>,
    pub(super) retention: Retention,
    pub(super) keys: Arc<Keys>,
    /// Rows neither written nor spilled: first in the next batch.
    held: Vec<Keyed>,
    /// When to try the table again while it fails (held rows, the spill file's replay).
    retry_at: Option<std::time::Instant>,
}

impl<S: Sink> Writer<S> {
    pub(super) fn new(
        sink: S,
        rx: mpsc::Receiver<Msg>,
        audit: Arc<AuditState>,
        spill: Arc<Mutex<Spill>>,
        retention: Retention,
        keys: Arc<Keys>,
    ) -> Self {
        Self {
            sink,
            rx,
            audit,
            spill,
            retention,
            keys,
            held: Vec::new(),
            retry_at: None,
        }
    }

    /// Every [`TICK`] it takes whatever is queued (up to [`BATCH`] rows per transaction) and
    /// writes it. It polls rather than waking on each row: a wake-up per proxied request
    /// costs the request path more (context switches) than the rows cost to write. A flush
    /// is answered at the next tick. Ends when every sender is gone and the queue is empty.
    pub(super) fn run(mut self) {
        let _stopped = StoppedOnDrop(self.audit.clone());
        loop {
            std::thread::sleep(TICK);
            let closed = self.drain();
            if self.audit.spilled() > 0 && self.due() {
                self.replay();
            }
            self.retention.tick(&mut self.sink);
            if closed {
                if !self.held.is_empty() {
                    tracing::error!(
                        rows = self.held.len(),
                        "the store is closing and neither the table nor the spill file took these audit rows: they are lost"
                    );
                }
                return;
            }
        }
    }

    /// Whether the table may be tried again (not before [`RETRY_EVERY`] after a failure).
    fn due(&self) -> bool {
        self.retry_at
            .is_none_or(|at| crate::clock::real_now() >= at)
    }

    fn failed(&mut self) {
        self.audit.set_failing(true);
        self.retry_at = Some(crate::clock::real_now() + RETRY_EVERY);
    }

    fn succeeded(&mut self) {
        self.audit.set_failing(false);
        self.retry_at = None;
    }

    /// Writes what is queued, batch by batch; whether the queue is closed.
    fn drain(&mut self) -> bool {
        loop {
            if !self.held.is_empty() && !self.due() {
                // Rows wait in memory for the table: new ones wait in the channel meanwhile
                // (their room is already counted), flushes too.
                return false;
            }
            let mut rows = std::mem::take(&mut self.held);
            let held = rows.len();
            let mut captures = Vec::new();
            let mut waiters = Vec::new();
            let mut closed = false;
            while rows.len() < held + BATCH {
                match self.rx.try_recv() {
                    Ok(Msg::Audit(r)) => rows.push(self.keys.key(r)),
                    Ok(Msg::Capture(tc, t, bodies)) => captures.push((tc, t, bodies)),
                    Ok(Msg::Flush(w)) => waiters.push(w),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        closed = true;
                        break;
                    }
                }
            }
            if rows.is_empty() && captures.is_empty() && waiters.is_empty() {
                return closed;
            }
            let full = rows.len() >= held + BATCH;
            let mut durable = self.write_or_spill(rows);
            if let Err(e) = self.sink.write_captures(&captures) {
                tracing::error!(error = %e, requests = captures.len(), "captured bodies could not be written");
                durable = durable.and(Err(e));
            }
            for w in waiters {
                let _ = w.send(durable.clone());
            }
            if closed || !full || !self.held.is_empty() {
                return closed;
            }
        }
    }

    /// Writes `rows`, trying again with backoff; spills them when the table keeps failing,
    /// holds them when the spill file fails too. `Ok` once they are durable.
    fn write_or_spill(&mut self, rows: Vec<Keyed>) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let n = rows.len();
        let mut error = None;
        // While the table is known to fail, rows go to the spill file at once: a batch tried
        // with every attempt at most once per [`RETRY_EVERY`], so a dead table slows the
        // writer to the spill file's pace, not to the attempts'.
        let attempts: &[Duration] = if self.due() { &ATTEMPTS } else { &[] };
        for &wait in attempts {
            std::thread::sleep(wait);
            match self.sink.write_audit(&rows) {
                Ok(()) => {
                    crate::metrics::audit_written(n as u64);
                    self.audit.done(n);
                    self.succeeded();
                    return Ok(());
                }
                Err(e) => error = Some(e),
            }
        }
        let error = error.map_or_else(
            || "the table failed moments ago".to_owned(),
            |e| e.to_string(),
        );
        if !attempts.is_empty() {
            self.failed();
        }
        let spilled = self.spill.lock().append(&rows);
        match spilled {
            Ok(()) => {
                // Logged once per attempt at the table (once a second at most), not per batch.
                if !attempts.is_empty() {
                    tracing::error!(
                        error = %error, rows = n, file = %self.spill.lock().path().display(),
                        "audit rows could not be written after {} attempts; spilled, to be replayed",
                        attempts.len()
                    );
                }
                crate::metrics::audit_spilled(n as u64);
                self.audit.add_spilled(n as u64);
                self.audit.done(n);
                Ok(())
            }
            Err(e) => {
                tracing::error!(
                    error = %error, spill_error = %e, rows = n,
                    "audit rows could neither be written nor spilled; held in memory and tried again"
                );
                self.held = rows;
                Err(e)
            }
        }
    }

    /// Writes the spill file's rows into the table (rows already there are skipped by
    /// their key), then empties the file.
    fn replay(&mut self) {
        let spill = self.spill.clone();
        let spill = spill.lock();
        let replay = match spill.read() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "the audit spill file cannot be read");
                self.failed();
                return;
            }
        };
        for line in &replay.bad_lines {
            tracing::error!(line = %line, file = %spill.path().display(), "a line of the audit spill file does not parse (cut short by a crash?); it is dropped");
        }
        crate::metrics::audit_lost(replay.bad_lines.len() as u64);
        for chunk in replay.rows.chunks(BATCH) {
            if let Err(e) = self.sink.write_audit(chunk) {
                tracing::error!(error = %e, "the audit spill file's rows could not be replayed yet");
                self.failed();
                return;
            }
        }
        if let Err(e) = spill.clear() {
            // Its rows are in the table: a later replay skips them by their keys.
            tracing::error!(error = %e, "the replayed audit spill file cannot be removed");
            self.failed();
            return;
        }
        tracing::info!(
            rows = replay.rows.len(),
            "audit rows replayed from the spill file"
        );
        crate::metrics::audit_written(replay.rows.len() as u64);
        self.audit.set_spilled(0);
        self.succeeded();
    }
}

/// The requests' side of the audit queue, the same for every backend: room in the bounded
/// queue, rows and captures handed to the writer thread, flushes, and the spill file when
/// the writer is gone.
#[derive(Debug)]
pub(super) struct Pipe {
    tx: mpsc::Sender<Msg>,
    /// The audit queue's bound and the writer's health.
    audit: Arc<AuditState>,
    /// Where rows go when the table fails (by the writer), or when the writer is gone (by
    /// the caller).
    spill: Arc<Mutex<Spill>>,
    /// The rows' keys, for a row spilled here when the writer is gone.
    keys: Arc<Keys>,
}

impl Pipe {
    /// Starts the writer thread `name` on `sink`, with a queue of `queue` rows at most and
    /// the keys of boot number `boot`. Rows left in `spill` by an earlier run are counted
    /// now (so `/health` tells of them at once) and replayed by the writer as it starts.
    pub(super) fn start<S: Sink>(
        name: &str,
        sink: S,
        queue: usize,
        spill: Spill,
        retention: Retention,
        boot: i64,
    ) -> Result<Self, StoreError> {
        let audit = AuditState::new(queue);
        audit.set_spilled(spill.count()?);
        let spill = Arc::new(Mutex::new(spill));
        let keys = Arc::new(Keys::new(boot));
        let (tx, rx) = mpsc::channel();
        let run = Writer::new(
            sink,
            rx,
            audit.clone(),
            spill.clone(),
            retention,
            keys.clone(),
        );
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || run.run())
            .map_err(|e| StoreError::Backend(format!("cannot start the writer: {e}")))?;
        Ok(Self {
            tx,
            audit,
            spill,
            keys,
        })
    }

    /// [`super::AuditSink::record_audit`].
    pub(super) fn record_audit(&self, row: AuditRow) {
        self.audit.add_unreserved();
        self.enqueue(row);
    }

    /// [`super::AuditSink::reserve_audit`].
    pub(super) fn reserve(&self) -> Option<AuditSlot> {
        self.audit.reserve()
    }

    /// [`super::AuditSink::record_reserved`].
    pub(super) fn record_reserved(&self, slot: AuditSlot, row: AuditRow) {
        slot.hand_over();
        self.enqueue(row);
    }

    /// [`super::AuditSink::audit_health`].
    pub(super) fn health(&self) -> AuditHealth {
        self.audit.health()
    }

    /// Hands a row, whose room in the queue is counted, to the writer.
    fn enqueue(&self, row: AuditRow) {
        crate::metrics::audit_queued();
        let Err(mpsc::SendError(msg)) = self.tx.send(Msg::Audit(row)) else {
            return;
        };
        // The writer is gone: the row goes to the spill file from here, replayed at the next
        // start; `/health` fails meanwhile.
        if let Msg::Audit(row) = msg {
            let k = self.keys.key(row);
            match self.spill.lock().append(std::slice::from_ref(&k)) {
                Ok(()) => {
                    crate::metrics::audit_spilled(1);
                    self.audit.add_spilled(1);
                }
                Err(e) => {
                    crate::metrics::audit_lost(1);
                    tracing::error!(error = %e, tracecode = %k.row.tracecode, "the audit writer has stopped and the spill file failed: an audit row was lost");
                }
            }
        }
        self.audit.done(1);
    }

    /// [`super::Captures::record_capture`].
    pub(super) fn record_capture(
        &self,
        tracecode: String,
        time_ms: i64,
        bodies: Vec<CapturedBody>,
    ) {
        crate::metrics::capture_queued();
        if self
            .tx
            .send(Msg::Capture(tracecode, time_ms, bodies))
            .is_err()
        {
            tracing::error!("the store writer has stopped; a capture was dropped");
        }
    }

    /// [`super::AuditSink::flush`].
    pub(super) fn flush(&self) -> StoreFuture<'_, ()> {
        let (tx, rx) = mpsc::channel();
        let sent = self.tx.send(Msg::Flush(tx));
        Box::pin(async move {
            if sent.is_err() {
                return Err(StoreError::Backend("the audit writer has stopped".into()));
            }
            tokio::task::spawn_blocking(move || {
                rx.recv().unwrap_or_else(|_| {
                    Err(StoreError::Backend("the audit writer has stopped".into()))
                })
            })
            .await
            .map_err(|e| StoreError::Backend(format!("flush task failed: {e}")))?
        })
    }
}
