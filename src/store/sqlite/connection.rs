//! Opening the store and its connection threads: one for the lookups and admin writes, one
//! for the admin lists and reports, and the audit writer; a call is a job sent to a thread.

use super::*;

impl SqliteStore {
    /// Opens (creating if needed) the store at `path` and runs pending migrations, with
    /// the default audit queue bound and no retention ([`AuditOptions::default`]).
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, AuditOptions::default())
    }

    /// As [`SqliteStore::open`], with the audit queue's bound and retention of `audit`. Rows
    /// left in the spill file by an earlier run are replayed by the writer as it starts.
    pub fn open_with(path: &Path, audit: AuditOptions) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Backend(format!("{}: {e}", dir.display())))?;
        }
        // Owner-only from its first byte (password and key hashes, captured bodies live
        // here), whatever the umask; SQLite gives the -wal and -shm files the database
        // file's mode. An existing file keeps the mode its operator gave it.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false),
            0o600,
        )
        .open(path)
        .map_err(|e| StoreError::Backend(format!("{}: {e}", path.display())))?;
        let mut conn = open_conn(path)?;
        migrate(&mut conn)?;
        let boot = conn
            .query_row(writer::NEXT_BOOT_SQL, [], |r| r.get(0))
            .map_err(backend)?;
        let writer_conn = open_conn(path)?;
        writer_conn
            .busy_timeout(writer::BUSY_TIMEOUT)
            .map_err(backend)?;
        let pipe = Pipe::start(
            "rosetta-store-writer",
            writer_conn,
            audit.queue,
            Spill::next_to(path),
            Retention::new(audit.days, audit.wall),
            boot,
        )?;
        let jobs = connection_thread("rosetta-store", conn)?;
        let reads = connection_thread("rosetta-store-reads", open_conn(path)?)?;
        Ok(Self { jobs, reads, pipe })
    }

    /// Runs `f` on the shared connection, on the store's own thread. Not the blocking pool:
    /// with one connection the calls run one at a time anyway, and a burst of new callers
    /// (100,000 users authenticating) parked a blocking thread per call, each keeping its
    /// stack and allocator pages: 160 threads and 400 MiB of RSS in benches/memory.sh.
    pub(in crate::store) fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<'_, T> {
        run_on(&self.jobs, f)
    }

    /// Runs `f` on the read connection's thread: the admin API's lists and reports, which
    /// may take long and must not hold up the lookups behind [`SqliteStore::with`].
    pub(super) fn with_read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<'_, T> {
        run_on(&self.reads, f)
    }
}

/// A thread owning `conn` that runs the jobs sent to it, one at a time. It ends when the
/// store is dropped (every sender gone). A job that panics drops its answer (its caller gets
/// an error), not the thread: the next call still has a connection.
pub(super) fn connection_thread(
    name: &str,
    mut conn: Connection,
) -> Result<mpsc::Sender<Job>, StoreError> {
    let (jobs, queue) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            while let Ok(job) = queue.recv() {
                let run = std::panic::AssertUnwindSafe(|| job(&mut conn));
                if std::panic::catch_unwind(run).is_err() {
                    tracing::error!("a store call panicked; its caller gets an error");
                }
            }
        })
        .map_err(|e| StoreError::Backend(format!("cannot start {name}: {e}")))?;
    Ok(jobs)
}

/// Sends `f` to a connection thread and waits for its answer.
pub(super) fn run_on<'a, T: Send + 'static>(
    jobs: &mpsc::Sender<Job>,
    f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
) -> StoreFuture<'a, T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let sent = jobs.send(Box::new(move |conn: &mut Connection| {
        // The caller may have gone (a cancelled request): nothing to answer.
        let _ = tx.send(f(conn));
    }));
    Box::pin(async move {
        sent.map_err(|_| StoreError::Backend("the store thread has stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Backend("the store call did not answer".into()))?
    })
}
