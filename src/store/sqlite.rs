//! [`SqliteStore`]: the embedded store, one SQLite file in WAL mode (rusqlite, bundled).
//!
//! Three connections, each owned by a thread: one runs the admin API's writes and the
//! lookups of authentication and quotas, one by turn; one the admin API's lists, the audit
//! trail, statistics and captures, so a long admin query never stalls a login (WAL lets it
//! read beside the others); the third is the writer thread ([`super::writer`]) that drains
//! the bounded audit queue in batches, so a proxied request never waits on the disk, and
//! spills what it cannot write. The schema is versioned (`PRAGMA user_version`); pending
//! migrations run in one transaction at open.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use crate::capture::{CapturedBody, Flow};

use super::audit_queue::{AuditHealth, AuditOptions, AuditSlot, AuditState};
use super::rollup::Retention;
use super::spill::{Keyed, Spill};
use super::writer::{self, Msg, Writer};
use super::{
    ApiKeyInfo, AuditQuery, AuditRow, Company, KeyMatch, ListQuery, Page, Quotas, StatRow,
    StatsQuery, Store, StoreError, StoreFuture, User, UserGroup, UserQuery, UserSecret, UserStats,
};

/// Schema migrations, in order; `user_version` is how many have run.
const MIGRATIONS: &[&str] = &[
    // 1: companies, users, keys, audit.
    "CREATE TABLE companies (
        key TEXT PRIMARY KEY,
        detail TEXT,
        enabled INTEGER NOT NULL DEFAULT 1
     );
     CREATE TABLE users (
        username TEXT PRIMARY KEY,
        name TEXT, email TEXT, phone TEXT,
        company_key TEXT NOT NULL REFERENCES companies(key) ON UPDATE CASCADE,
        enabled INTEGER NOT NULL,
        roles TEXT NOT NULL,
        timezone INTEGER NOT NULL,
        password_hash TEXT
     );
     CREATE INDEX users_company ON users(company_key);
     CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        username TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE ON UPDATE CASCADE,
        prefix TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        created_ms INTEGER NOT NULL,
        expires_ms INTEGER,
        revoked INTEGER NOT NULL DEFAULT 0
     );
     CREATE INDEX api_keys_user ON api_keys(username);
     CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        time_ms INTEGER NOT NULL,
        username TEXT NOT NULL, company_key TEXT NOT NULL,
        tracecode TEXT NOT NULL, client TEXT NOT NULL, server TEXT NOT NULL,
        service TEXT NOT NULL, operation TEXT NOT NULL, method_group TEXT NOT NULL,
        points INTEGER NOT NULL, duration_ms INTEGER NOT NULL, status INTEGER NOT NULL
     );
     CREATE INDEX audit_time ON audit(time_ms);",
    // 2: request fingerprints for unique points; per-user time index for statistics.
    "ALTER TABLE audit ADD COLUMN fingerprint TEXT NOT NULL DEFAULT '';
     CREATE INDEX audit_user_time ON audit(username, time_ms);",
    // 3: captured bodies by tracecode.
    "CREATE TABLE captures (
        tracecode TEXT NOT NULL,
        flow TEXT NOT NULL,
        stage INTEGER NOT NULL,
        time_ms INTEGER NOT NULL,
        content_type TEXT NOT NULL,
        truncated INTEGER NOT NULL,
        body BLOB NOT NULL,
        PRIMARY KEY (tracecode, flow, stage)
     );
     CREATE INDEX captures_time ON captures(time_ms);",
    // 4: quotas per user: the base row has empty dates.
    "CREATE TABLE quotas (
        username TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE ON UPDATE CASCADE,
        from_day TEXT NOT NULL,
        to_day TEXT NOT NULL,
        services TEXT NOT NULL,
        PRIMARY KEY (username, from_day, to_day)
     );",
    // 5: the upstream company ids each audited request acted on, as a JSON array of strings
    // (read with json_each); rows written before have none.
    "ALTER TABLE audit ADD COLUMN targets TEXT NOT NULL DEFAULT '[]';",
    // 6: the client's address (refused authentications are audited by it); rows written
    // before have none.
    "ALTER TABLE audit ADD COLUMN ip TEXT;",
    // 7: the store's boot counter. A row's idempotency key is its `id` from here on (the
    // boot number in the bits above 2^40, above every id written before): a replay of the
    // spill file skips rows already written, at no cost of an index of its own.
    "CREATE TABLE store_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);",
    // 8: daily roll-ups of the audit rows past their retention (see `rollup`).
    "CREATE TABLE audit_daily (
        day TEXT NOT NULL,
        day_ms INTEGER NOT NULL,
        username TEXT NOT NULL, company_key TEXT NOT NULL,
        service TEXT NOT NULL, operation TEXT NOT NULL, method_group TEXT NOT NULL,
        status_class INTEGER NOT NULL,
        requests INTEGER NOT NULL, points INTEGER NOT NULL, unique_points INTEGER NOT NULL,
        duration_ms INTEGER NOT NULL,
        PRIMARY KEY (day, username, company_key, service, operation, method_group, status_class)
     );
     CREATE INDEX audit_daily_user ON audit_daily(username, day_ms);",
];

/// The embedded store.
pub struct SqliteStore {
    /// Work for the connection thread (the admin API's reads and writes, authentication and
    /// quota lookups).
    jobs: mpsc::Sender<Job>,
    /// Work for the read thread (lists, audit, statistics, captures).
    reads: mpsc::Sender<Job>,
    writer: mpsc::Sender<Msg>,
    /// The audit queue's bound and the writer's health.
    audit: Arc<AuditState>,
    /// Where rows go when the table fails (by the writer), or when the writer is gone (by
    /// the caller).
    spill: Arc<Mutex<Spill>>,
    /// The rows' keys, for a row spilled here when the writer is gone.
    keys: Arc<writer::Keys>,
}

/// One piece of work on the shared connection; it sends its own answer.
type Job = Box<dyn FnOnce(&mut Connection) + Send>;

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

pub(super) fn open_conn(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(backend)?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(backend)?;
    // A 512 KiB page cache per connection instead of SQLite's 2 MB: the writer appends at
    // the right edge of its B-trees and the lookups are point reads whose inner pages fit,
    // while the 64 MiB memory bound (benches/memory.sh) was 64.2-65.7 MiB with the default
    // and is 61.5-62.3 with this; CPU per request unchanged (the OS keeps the file cached).
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;
         PRAGMA cache_size = -512;",
    )
    .map_err(backend)?;
    Ok(conn)
}

pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(backend)?;
    let version = usize::try_from(version).unwrap_or(usize::MAX);
    if version > MIGRATIONS.len() {
        return Err(StoreError::Backend(format!(
            "the store's schema version {version} is newer than this build knows ({})",
            MIGRATIONS.len()
        )));
    }
    let tx = conn.transaction().map_err(backend)?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        tx.execute_batch(sql).map_err(backend)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(backend)?;
    }
    tx.commit().map_err(backend)
}

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
        let keys = Arc::new(writer::Keys::new(writer::next_boot(&conn)?));
        let writer_conn = open_conn(path)?;
        writer_conn
            .busy_timeout(writer::BUSY_TIMEOUT)
            .map_err(backend)?;
        let state = AuditState::new(audit.queue);
        let spill = Spill::next_to(path);
        // Counted now, so `/health` tells of rows waiting from an earlier run at once.
        state.set_spilled(spill.count()?);
        let spill = Arc::new(Mutex::new(spill));
        let (tx, rx) = mpsc::channel();
        let run = Writer::new(
            writer_conn,
            rx,
            state.clone(),
            spill.clone(),
            Retention::new(audit.days, audit.wall),
            keys.clone(),
        );
        std::thread::Builder::new()
            .name("rosetta-store-writer".into())
            .spawn(move || run.run())
            .map_err(|e| StoreError::Backend(format!("cannot start the writer: {e}")))?;
        let jobs = connection_thread("rosetta-store", conn)?;
        let reads = connection_thread("rosetta-store-reads", open_conn(path)?)?;
        Ok(Self {
            jobs,
            reads,
            writer: tx,
            audit: state,
            spill,
            keys,
        })
    }

    /// Runs `f` on the shared connection, on the store's own thread. Not the blocking pool:
    /// with one connection the calls run one at a time anyway, and a burst of new callers
    /// (100,000 users authenticating) parked a blocking thread per call, each keeping its
    /// stack and allocator pages: 160 threads and 400 MiB of RSS in benches/memory.sh.
    pub(super) fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<'_, T> {
        run_on(&self.jobs, f)
    }

    /// Runs `f` on the read connection's thread: the admin API's lists and reports, which
    /// may take long and must not hold up the lookups behind [`SqliteStore::with`].
    fn with_read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<'_, T> {
        run_on(&self.reads, f)
    }

    /// Hands a row, whose room in the queue is counted, to the writer.
    fn enqueue(&self, row: AuditRow) {
        crate::metrics::audit_queued();
        let Err(mpsc::SendError(msg)) = self.writer.send(Msg::Audit(row)) else {
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
}

/// A thread owning `conn` that runs the jobs sent to it, one at a time. It ends when the
/// store is dropped (every sender gone). A job that panics drops its answer (its caller gets
/// an error), not the thread: the next call still has a connection.
fn connection_thread(name: &str, mut conn: Connection) -> Result<mpsc::Sender<Job>, StoreError> {
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
fn run_on<'a, T: Send + 'static>(
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

pub(super) fn write_captures(
    conn: &mut Connection,
    captures: &[(String, i64, Vec<CapturedBody>)],
) -> Result<(), StoreError> {
    if captures.is_empty() {
        return Ok(());
    }
    let tx = conn.transaction().map_err(backend)?;
    {
        let mut st = tx
            .prepare_cached(
                "INSERT OR REPLACE INTO captures (tracecode, flow, stage, time_ms, content_type, truncated, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .map_err(backend)?;
        for (tc, t, bodies) in captures {
            for b in bodies {
                st.execute(params![
                    tc,
                    b.flow.as_str(),
                    b.stage,
                    t,
                    b.content_type,
                    b.truncated,
                    b.body.as_ref()
                ])
                .map_err(backend)?;
            }
        }
    }
    tx.commit().map_err(backend)
}

/// Rows per `INSERT` statement, largest first: a batch is written as statements of 64 rows,
/// then of 8, then single rows. One statement per row spent a sixth of the writer's time
/// starting and halting the statement rather than inserting (`sqlite3VdbeHalt`, resets).
const INSERT_SIZES: [usize; 3] = [64, 8, 1];

/// The audit table's columns, in the order [`write_audit`] binds them.
const AUDIT_COLUMNS: usize = 16;

/// `INSERT INTO audit … VALUES (…), (…)` for the `i`-th of [`INSERT_SIZES`].
fn audit_insert_sql(i: usize) -> &'static str {
    static SQL: std::sync::LazyLock<[String; 3]> = std::sync::LazyLock::new(|| {
        INSERT_SIZES.map(|n| {
            let one = format!("({})", vec!["?"; AUDIT_COLUMNS].join(","));
            format!(
                "INSERT OR IGNORE INTO audit (time_ms, username, company_key, tracecode, client,
                 server, service, operation, method_group, points, duration_ms, status,
                 fingerprint, targets, ip, id)
                 VALUES {}",
                vec![one; n].join(",")
            )
        })
    });
    &SQL[i]
}

/// Writes `rows` in one transaction; a row whose key is already in the table is skipped
/// (a replay of the spill file after a partial success).
pub(super) fn write_audit(conn: &mut Connection, rows: &[Keyed]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let tx = conn.transaction().map_err(backend)?;
    // The derived texts are written into buffers reused for every row, not `format!`
    // allocations per row (~3% of the writer's time in-process); binding copies them, so
    // one set serves every row of a statement.
    let (mut client, mut fingerprint, mut ip) = (String::new(), String::new(), String::new());
    let mut targets = Vec::new();
    let mut rest = rows;
    for (i, size) in INSERT_SIZES.into_iter().enumerate() {
        if rest.len() < size {
            continue;
        }
        let mut st = tx.prepare_cached(audit_insert_sql(i)).map_err(backend)?;
        while rest.len() >= size {
            let (chunk, after) = rest.split_at(size);
            for (j, k) in chunk.iter().enumerate() {
                let r = &k.row;
                client.clear();
                crate::identity::push_client_label(&mut client, &r.company_key, &r.username);
                fingerprint.clear();
                let _ = write!(fingerprint, "{:016x}", r.fingerprint);
                targets.clear();
                push_targets(&mut targets, &r.targets)?;
                // serde_json writes UTF-8 only; a failure here would be a bug, not data.
                let targets_text = std::str::from_utf8(&targets)
                    .map_err(|e| StoreError::Backend(format!("targets are not UTF-8: {e}")))?;
                let duration_ms = r.duration_ms as i64;
                ip.clear();
                if let Some(addr) = r.ip {
                    let _ = write!(ip, "{addr}");
                }
                let ip = r.ip.map(|_| ip.as_str());
                let values: [&dyn rusqlite::ToSql; AUDIT_COLUMNS] = [
                    &r.time_ms,
                    &&*r.username,
                    &&*r.company_key,
                    &&*r.tracecode,
                    &client.as_str(),
                    &&*r.server,
                    &&*r.service,
                    &&*r.operation,
                    &&*r.method_group,
                    &r.points,
                    &duration_ms,
                    &r.status,
                    &fingerprint.as_str(),
                    &targets_text,
                    &ip,
                    &k.rid,
                ];
                for (k, v) in values.into_iter().enumerate() {
                    st.raw_bind_parameter(j * AUDIT_COLUMNS + k + 1, v)
                        .map_err(backend)?;
                }
            }
            st.raw_execute().map_err(backend)?;
            rest = after;
        }
    }
    tx.commit().map_err(backend)
}

/// `targets` as the JSON array of strings the `targets` column keeps, appended to `out`.
fn push_targets(out: &mut Vec<u8>, targets: &[Arc<str>]) -> Result<(), StoreError> {
    out.push(b'[');
    for (i, t) in targets.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, &**t)
            .map_err(|e| StoreError::Backend(format!("targets do not serialize: {e}")))?;
    }
    out.push(b']');
    Ok(())
}

/// The `targets` column read back.
fn targets_of(text: &str) -> Result<Arc<[Arc<str>]>, serde_json::Error> {
    // Most rows have none: no parse, no allocation.
    if text == "[]" {
        return Ok(Arc::from([]));
    }
    let ids: Vec<String> = serde_json::from_str(text)?;
    Ok(ids.into_iter().map(Arc::from).collect())
}

/// `%text%` for LIKE, with the caller's `%`, `_` and `\` taken literally.
fn like(text: &str) -> String {
    let mut s = String::with_capacity(text.len() + 2);
    s.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('%');
    s
}

fn order(field: Option<&str>, allowed: &[(&str, &str)], default: &str, desc: bool) -> String {
    let col = field
        .and_then(|f| allowed.iter().find(|(name, _)| *name == f).map(|(_, c)| *c))
        .unwrap_or(default);
    format!(
        " ORDER BY {col} {} , rowid",
        if desc { "DESC" } else { "ASC" }
    )
}

fn company_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Company> {
    Ok(Company {
        key: r.get(0)?,
        detail: r.get(1)?,
        enabled: r.get(2)?,
    })
}

const USER_COLS: &str = "username, name, email, phone, company_key, enabled, roles, timezone";

fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    user_row_at(r, 0)
}

/// A user read from `USER_COLS` starting at column `at`.
fn user_row_at(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<User> {
    let roles: String = r.get(at + 6)?;
    Ok(User {
        username: r.get(at)?,
        name: r.get(at + 1)?,
        email: r.get(at + 2)?,
        phone: r.get(at + 3)?,
        company_key: r.get(at + 4)?,
        enabled: r.get(at + 5)?,
        roles: roles
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        timezone: r.get(at + 7)?,
    })
}

fn key_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApiKeyInfo> {
    Ok(ApiKeyInfo {
        id: r.get(0)?,
        username: r.get(1)?,
        prefix: r.get(2)?,
        created_ms: r.get(3)?,
        expires_ms: r.get(4)?,
        revoked: r.get(5)?,
    })
}

/// A unique-key violation is the caller's conflict; anything else is the store's failure.
fn conflict_or_backend(e: rusqlite::Error, what: impl FnOnce() -> String) -> StoreError {
    if is_constraint(&e) {
        StoreError::Conflict(what())
    } else {
        backend(e)
    }
}

/// `Invalid` unless the company `key` exists (users always belong to one).
fn require_company(conn: &Connection, key: &str) -> Result<(), StoreError> {
    let found: Option<String> = conn
        .query_row("SELECT key FROM companies WHERE key = ?1", [key], |r| {
            r.get(0)
        })
        .optional()
        .map_err(backend)?;
    match found {
        Some(_) => Ok(()),
        None => Err(StoreError::Invalid(format!(
            "company `{key}` does not exist"
        ))),
    }
}

fn is_constraint(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation)
}

fn user_stats(conn: &Connection, cond: &str, args: &[String]) -> Result<UserStats, StoreError> {
    let sql = format!(
        "SELECT COUNT(*), COALESCE(SUM(enabled), 0), COALESCE(SUM(1 - enabled), 0),
                COALESCE(SUM(CASE WHEN (',' || roles || ',') LIKE '%,ADMIN,%' THEN 1 ELSE 0 END), 0)
         FROM users WHERE {cond}"
    );
    conn.query_row(&sql, params_from_iter(args.iter()), |r| {
        Ok(UserStats {
            total: r.get::<_, i64>(0)? as u64,
            active: r.get::<_, i64>(1)? as u64,
            blocked: r.get::<_, i64>(2)? as u64,
            admins: r.get::<_, i64>(3)? as u64,
        })
    })
    .map_err(backend)
}

impl Store for SqliteStore {
    fn create_company(&self, c: Company) -> StoreFuture<'_, ()> {
        self.with(move |conn| {
            conn.execute(
                "INSERT INTO companies (key, detail, enabled) VALUES (?1, ?2, ?3)",
                params![c.key, c.detail, c.enabled],
            )
            .map(|_| ())
            .map_err(|e| conflict_or_backend(e, || format!("company `{}`", c.key)))
        })
    }

    fn get_company(&self, key: String) -> StoreFuture<'_, Company> {
        self.with(move |conn| {
            conn.query_row(
                "SELECT key, detail, enabled FROM companies WHERE key = ?1",
                [&key],
                company_row,
            )
            .optional()
            .map_err(backend)?
            .ok_or_else(|| StoreError::NotFound(format!("company `{key}`")))
        })
    }

    fn update_company(&self, key: String, c: Company) -> StoreFuture<'_, ()> {
        self.with(move |conn| {
            let n = conn
                .execute(
                    "UPDATE companies SET key = ?1, detail = ?2, enabled = ?3 WHERE key = ?4",
                    params![c.key, c.detail, c.enabled, key],
                )
                .map_err(|e| conflict_or_backend(e, || format!("company `{}`", c.key)))?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("company `{key}`")));
            }
            Ok(())
        })
    }

    fn delete_company(&self, key: String) -> StoreFuture<'_, ()> {
        self.with(move |conn| {
            let users: i64 = conn
                .query_row(
                    "SELECT COUNT(*) FROM users WHERE company_key = ?1",
                    [&key],
                    |r| r.get(0),
                )
                .map_err(backend)?;
            if users > 0 {
                return Err(StoreError::Invalid(format!(
                    "company `{key}` still has {users} user(s); delete or move them first"
                )));
            }
            let n = conn
                .execute("DELETE FROM companies WHERE key = ?1", [&key])
                .map_err(backend)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("company `{key}`")));
            }
            Ok(())
        })
    }

    fn list_companies(&self, q: ListQuery) -> StoreFuture<'_, Page<Company, u64>> {
        self.with_read(move |conn| {
            let overall: i64 = conn
                .query_row("SELECT COUNT(*) FROM companies", [], |r| r.get(0))
                .map_err(backend)?;
            let (cond, args): (&str, Vec<String>) = match &q.filter {
                Some(f) => (
                    "(key LIKE ?1 ESCAPE '\\' OR COALESCE(detail, '') LIKE ?1 ESCAPE '\\')",
                    vec![like(f)],
                ),
                None => ("1 = 1", Vec::new()),
            };
            let filtered: i64 = conn
                .query_row(
                    &format!("SELECT COUNT(*) FROM companies WHERE {cond}"),
                    params_from_iter(args.iter()),
                    |r| r.get(0),
                )
                .map_err(backend)?;
            let sql = format!(
                "SELECT key, detail, enabled FROM companies WHERE {cond}{} LIMIT {} OFFSET {}",
                order(
                    q.sort_field.as_deref(),
                    &[("key", "key"), ("detail", "detail")],
                    "key",
                    q.descending
                ),
                q.limit,
                q.offset
            );
            let mut st = conn.prepare(&sql).map_err(backend)?;
            let items = st
                .query_map(params_from_iter(args.iter()), company_row)
                .map_err(backend)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(backend)?;
            Ok(Page {
                items,
                overall: overall as u64,
                filtered: filtered as u64,
            })
        })
    }

    fn create_user(&self, u: User, password_hash: Option<String>) -> StoreFuture<'_, ()> {
        self.with(move |conn| {
            require_company(conn, &u.company_key)?;
            conn.execute(
                &format!("INSERT INTO users ({USER_COLS}, password_hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
                params![u.username, u.name, u.email, u.phone, u.company_key, u.enabled, u.roles.join(","), u.timezone, password_hash],
            )
            .map(|_| ())
            .map_err(|e| conflict_or_backend(e, || format!("user `{}`", u.username)))
        })
    }

    fn get_user(&self, username: String) -> StoreFuture<'_, User> {
        self.with(move |conn| {
            conn.query_row(
                &format!("SELECT {USER_COLS} FROM users WHERE username = ?1"),
                [&username],
                user_row,
            )
            .optional()
            .map_err(backend)?
            .ok_or_else(|| StoreError::NotFound(format!("user `{username}`")))
        })
    }

    fn update_user(&self, u: User, password_hash: Option<String>) -> StoreFuture<'_, ()> {
        self.with(move |conn| {
            require_company(conn, &u.company_key)?;
            let n = conn
                .execute(
                    "UPDATE users SET name = ?2, email = ?3, phone = ?4, company_key = ?5, enabled = ?6,
                     roles = ?7, timezone = ?8, password_hash = COALESCE(?9, password_hash)
                     WHERE username = ?1",
                    params![u.username, u.name, u.email, u.phone, u.company_key, u.enabled, u.roles.join(","), u.timezone, password_hash],
                )
                .map_err(backend)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("user `{}`", u.username)));
            }
            Ok(())
        })
    }

    fn delete_user(&self, username: String) -> StoreFuture<'_, ()> {
        self.with(move |conn| {
            let n = conn
                .execute("DELETE FROM users WHERE username = ?1", [&username])
                .map_err(backend)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("user `{username}`")));
            }
            Ok(())
        })
    }

    fn list_users(&self, q: UserQuery) -> StoreFuture<'_, Page<User, UserStats>> {
        self.with_read(move |conn| {
            let mut conds = vec!["1 = 1".to_owned()];
            let mut args: Vec<String> = Vec::new();
            if let Some(c) = &q.company_key {
                args.push(c.clone());
                conds.push(format!("company_key = ?{}", args.len()));
            }
            // `overall` is within the caller's scope (a company), before text and group filters.
            let overall = user_stats(conn, &conds.join(" AND "), &args)?;
            if let Some(f) = &q.list.filter {
                args.push(like(f));
                let n = args.len();
                conds.push(format!(
                    "(username LIKE ?{n} ESCAPE '\\' OR COALESCE(name, '') LIKE ?{n} ESCAPE '\\'
                      OR COALESCE(email, '') LIKE ?{n} ESCAPE '\\' OR company_key LIKE ?{n} ESCAPE '\\')"
                ));
            }
            match q.group {
                UserGroup::Total => {}
                UserGroup::Active => conds.push("enabled = 1".into()),
                UserGroup::Blocked => conds.push("enabled = 0".into()),
                UserGroup::Admins => conds.push("(',' || roles || ',') LIKE '%,ADMIN,%'".into()),
            }
            let cond = conds.join(" AND ");
            let filtered = user_stats(conn, &cond, &args)?;
            let sql = format!(
                "SELECT {USER_COLS} FROM users WHERE {cond}{} LIMIT {} OFFSET {}",
                order(
                    q.list.sort_field.as_deref(),
                    &[
                        ("username", "username"),
                        ("name", "name"),
                        ("email", "email"),
                        ("company_key", "company_key"),
                        ("enabled", "enabled"),
                        ("timezone", "timezone"),
                    ],
                    "username",
                    q.list.descending
                ),
                q.list.limit,
                q.list.offset
            );
            let mut st = conn.prepare(&sql).map_err(backend)?;
            let items = st
                .query_map(params_from_iter(args.iter()), user_row)
                .map_err(backend)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(backend)?;
            Ok(Page {
                items,
                overall,
                filtered,
            })
        })
    }

    fn user_count(&self) -> StoreFuture<'_, u64> {
        self.with(|conn| {
            conn.query_row("SELECT COUNT(*) FROM users", [], |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
                .map_err(backend)
        })
    }

    fn user_secret(&self, username: String) -> StoreFuture<'_, Option<UserSecret>> {
        self.with(move |conn| {
            conn.query_row(
                "SELECT u.username, u.name, u.email, u.phone, u.company_key, u.enabled, u.roles,
                        u.timezone, u.password_hash, c.enabled
                 FROM users u JOIN companies c ON c.key = u.company_key WHERE u.username = ?1",
                [&username],
                |r| {
                    Ok(UserSecret {
                        user: user_row(r)?,
                        password_hash: r.get(8)?,
                        company_enabled: r.get(9)?,
                    })
                },
            )
            .optional()
            .map_err(backend)
        })
    }

    fn create_key(&self, key: ApiKeyInfo, secret_sha256: String) -> StoreFuture<'_, ()> {
        self.with(move |conn| {
            conn.execute(
                "INSERT INTO api_keys (id, username, prefix, hash, created_ms, expires_ms, revoked)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0)",
                params![
                    key.id,
                    key.username,
                    key.prefix,
                    secret_sha256,
                    key.created_ms,
                    key.expires_ms
                ],
            )
            .map(|_| ())
            .map_err(|e| {
                if is_constraint(&e) {
                    StoreError::Invalid(format!("user `{}` does not exist", key.username))
                } else {
                    backend(e)
                }
            })
        })
    }

    fn list_keys(&self, username: String) -> StoreFuture<'_, Vec<ApiKeyInfo>> {
        self.with_read(move |conn| {
            let mut st = conn
                .prepare(
                    "SELECT id, username, prefix, created_ms, expires_ms, revoked FROM api_keys
                     WHERE username = ?1 ORDER BY created_ms, id",
                )
                .map_err(backend)?;
            st.query_map([&username], key_row)
                .map_err(backend)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(backend)
        })
    }

    fn revoke_key(&self, username: String, id: String) -> StoreFuture<'_, ()> {
        self.with(move |conn| {
            let n = conn
                .execute(
                    "UPDATE api_keys SET revoked = 1 WHERE username = ?1 AND id = ?2",
                    params![username, id],
                )
                .map_err(backend)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("key `{id}` of `{username}`")));
            }
            Ok(())
        })
    }

    fn find_key(&self, secret_sha256: String) -> StoreFuture<'_, Option<KeyMatch>> {
        self.with(move |conn| {
            conn.query_row(
                "SELECT k.id, k.username, k.prefix, k.created_ms, k.expires_ms, k.revoked,
                        u.username, u.name, u.email, u.phone, u.company_key, u.enabled, u.roles, u.timezone,
                        c.enabled
                 FROM api_keys k JOIN users u ON u.username = k.username
                 JOIN companies c ON c.key = u.company_key WHERE k.hash = ?1",
                [&secret_sha256],
                |r| {
                    Ok(KeyMatch {
                        key: key_row(r)?,
                        user: user_row_at(r, 6)?,
                        company_enabled: r.get(14)?,
                    })
                },
            )
            .optional()
            .map_err(backend)
        })
    }

    fn record_audit(&self, row: AuditRow) {
        self.audit.add_unreserved();
        self.enqueue(row);
    }

    fn reserve_audit(&self) -> Option<AuditSlot> {
        self.audit.reserve()
    }

    fn record_reserved(&self, slot: AuditSlot, row: AuditRow) {
        slot.hand_over();
        self.enqueue(row);
    }

    fn audit_health(&self) -> AuditHealth {
        self.audit.health()
    }

    fn list_audit(&self, q: AuditQuery) -> StoreFuture<'_, Page<AuditRow, u64>> {
        self.with_read(move |conn| {
            let overall: i64 = conn
                .query_row("SELECT COUNT(*) FROM audit", [], |r| r.get(0))
                .map_err(backend)?;
            let mut conds = vec!["time_ms >= ?1".to_owned(), "time_ms < ?2".to_owned()];
            let mut args: Vec<rusqlite::types::Value> = vec![q.from_ms.into(), q.to_ms.into()];
            for (col, v) in [
                ("company_key", &q.company_key),
                ("username", &q.username),
                ("service", &q.service),
                ("operation", &q.operation),
                ("method_group", &q.method_group),
            ] {
                if let Some(v) = v {
                    args.push(v.clone().into());
                    conds.push(format!("{col} = ?{}", args.len()));
                }
            }
            if let Some(t) = &q.target {
                // An exact element of the array, never a substring of the text.
                args.push(t.clone().into());
                conds.push(format!(
                    "EXISTS (SELECT 1 FROM json_each(audit.targets) WHERE json_each.value = ?{})",
                    args.len()
                ));
            }
            let cond = conds.join(" AND ");
            let filtered: i64 = conn
                .query_row(
                    &format!("SELECT COUNT(*) FROM audit WHERE {cond}"),
                    params_from_iter(args.iter()),
                    |r| r.get(0),
                )
                .map_err(backend)?;
            let sql = format!(
                "SELECT time_ms, username, company_key, tracecode, server, service, operation,
                        method_group, points, duration_ms, status, fingerprint, targets, ip
                 FROM audit WHERE {cond}{} LIMIT {} OFFSET {}",
                order(
                    q.sort_field.as_deref(),
                    &[
                        ("time", "time_ms"),
                        ("username", "username"),
                        ("company_key", "company_key"),
                        ("service_name", "service"),
                        ("operation_id", "operation"),
                        ("method_group", "method_group"),
                        ("points", "points"),
                        ("duration", "duration_ms"),
                    ],
                    "time_ms",
                    q.descending
                ),
                q.limit,
                q.offset
            );
            let mut st = conn.prepare(&sql).map_err(backend)?;
            let items = st
                .query_map(params_from_iter(args.iter()), |r| {
                    Ok(AuditRow {
                        time_ms: r.get(0)?,
                        username: r.get(1)?,
                        company_key: r.get(2)?,
                        tracecode: r.get(3)?,
                        server: r.get(4)?,
                        service: r.get(5)?,
                        operation: r.get(6)?,
                        method_group: r.get(7)?,
                        points: r.get(8)?,
                        duration_ms: r.get::<_, i64>(9)? as u64,
                        status: r.get(10)?,
                        fingerprint: u64::from_str_radix(&r.get::<_, String>(11)?, 16).unwrap_or(0),
                        targets: targets_of(r.get_ref(12)?.as_str()?).map_err(|e| {
                            rusqlite::Error::FromSqlConversionFailure(
                                12,
                                rusqlite::types::Type::Text,
                                Box::new(e),
                            )
                        })?,
                        // Written by us from an address; anything else reads as none.
                        ip: r.get::<_, Option<String>>(13)?.and_then(|t| t.parse().ok()),
                    })
                })
                .map_err(backend)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(backend)?;
            Ok(Page {
                items,
                overall: overall as u64,
                filtered: filtered as u64,
            })
        })
    }

    fn statistics(&self, q: StatsQuery) -> StoreFuture<'_, Vec<StatRow>> {
        self.with_read(move |conn| {
            // Rows are narrowed by UTC time with a day of margin either side (timezones
            // reach ±12 h), then by the local day computed per row.
            let day_ms = |d: &str| -> Result<i64, StoreError> {
                let date = time::Date::parse(d, time::macros::format_description!("[year]-[month]-[day]"))
                    .map_err(|_| StoreError::Invalid(format!("`{d}` is not a YYYY-MM-DD date")))?;
                Ok(date.midnight().assume_utc().unix_timestamp() * 1000)
            };
            let lo = day_ms(&q.from_day)? - 86_400_000;
            let hi = day_ms(&q.to_day)? + 2 * 86_400_000;
            let mut args: Vec<rusqlite::types::Value> = vec![
                lo.into(),
                hi.into(),
                q.from_day.clone().into(),
                q.to_day.clone().into(),
            ];
            let mut extra = String::new();
            if let Some(u) = &q.username {
                args.push(u.clone().into());
                extra.push_str(&format!(" AND a.username = ?{}", args.len()));
            }
            if let Some(c) = &q.company_key {
                args.push(c.clone().into());
                extra.push_str(&format!(" AND a.company_key = ?{}", args.len()));
            }
            // Days past the retention come from their roll-ups: a user's day is all raw or
            // all rolled up (`rollup`), so the two add up without counting a request twice.
            let sql = format!(
                "WITH d AS (
                   SELECT a.username AS u,
                          date(a.time_ms / 1000 + COALESCE(us.timezone, 0) * 3600, 'unixepoch') AS day,
                          a.service AS s, a.method_group AS m, a.fingerprint AS f,
                          SUM(a.points) AS pts, MAX(a.points) AS upts
                   FROM audit a LEFT JOIN users us ON us.username = a.username
                   WHERE a.time_ms >= ?1 AND a.time_ms < ?2{extra}
                   GROUP BY u, day, s, m, f),
                 r AS (
                   SELECT u, day, s, m, pts, upts FROM d WHERE day >= ?3 AND day <= ?4
                   UNION ALL
                   SELECT a.username, a.day, a.service, a.method_group, a.points, a.unique_points
                   FROM audit_daily a WHERE a.day >= ?3 AND a.day <= ?4{extra})
                 SELECT u, day, s, m, SUM(pts), SUM(upts) FROM r
                 GROUP BY u, day, s, m ORDER BY u, day, s, m"
            );
            let mut st = conn.prepare(&sql).map_err(backend)?;
            st.query_map(params_from_iter(args.iter()), |r| {
                Ok(StatRow {
                    username: r.get(0)?,
                    day: r.get(1)?,
                    service: r.get(2)?,
                    method_group: r.get(3)?,
                    points: r.get::<_, i64>(4)? as u64,
                    unique_points: r.get::<_, i64>(5)? as u64,
                })
            })
            .map_err(backend)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend)
        })
    }

    fn put_quotas(
        &self,
        username: String,
        window: Option<(String, String)>,
        services: serde_json::Value,
    ) -> StoreFuture<'_, ()> {
        self.with(move |conn| {
            let (from, to) = window.unwrap_or_default();
            conn.execute(
                "INSERT OR REPLACE INTO quotas (username, from_day, to_day, services) VALUES (?1, ?2, ?3, ?4)",
                params![username, from, to, services.to_string()],
            )
            .map(|_| ())
            .map_err(|e| {
                if is_constraint(&e) {
                    StoreError::NotFound(format!("user `{username}`"))
                } else {
                    backend(e)
                }
            })
        })
    }

    fn get_quotas(&self, username: String) -> StoreFuture<'_, Quotas> {
        self.with(move |conn| {
            let mut st = conn
                .prepare(
                    "SELECT from_day, to_day, services FROM quotas WHERE username = ?1 ORDER BY from_day, to_day",
                )
                .map_err(backend)?;
            let rows = st
                .query_map([&username], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
                })
                .map_err(backend)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(backend)?;
            let mut q = Quotas::default();
            for (from, to, text) in rows {
                let v: serde_json::Value = serde_json::from_str(&text)
                    .map_err(|e| StoreError::Backend(format!("stored quotas are not JSON: {e}")))?;
                if from.is_empty() {
                    q.base = Some(v);
                } else {
                    q.windows.push((from, to, v));
                }
            }
            Ok(q)
        })
    }

    fn delete_quotas(
        &self,
        username: String,
        window: Option<(String, String)>,
    ) -> StoreFuture<'_, u64> {
        self.with(move |conn| {
            let n = match window {
                None => conn.execute("DELETE FROM quotas WHERE username = ?1", [&username]),
                Some((from, to)) => conn.execute(
                    "DELETE FROM quotas WHERE username = ?1 AND from_day = ?2 AND to_day = ?3",
                    params![username, from, to],
                ),
            }
            .map_err(backend)?;
            Ok(n as u64)
        })
    }

    fn points_used(
        &self,
        username: String,
        service: String,
        method_group: String,
        from_ms: i64,
        to_ms: i64,
    ) -> StoreFuture<'_, u64> {
        self.with(move |conn| {
            conn.query_row(
                "SELECT (SELECT COALESCE(SUM(points), 0) FROM audit
                         WHERE username = ?1 AND service = ?2 AND method_group = ?3
                           AND time_ms >= ?4 AND time_ms < ?5 AND status <> 429)
                      + (SELECT COALESCE(SUM(points), 0) FROM audit_daily
                         WHERE username = ?1 AND service = ?2 AND method_group = ?3
                           AND day_ms >= ?4 AND day_ms < ?5 AND status_class <> 429)",
                params![username, service, method_group, from_ms, to_ms],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(backend)
        })
    }

    fn record_capture(&self, tracecode: String, time_ms: i64, bodies: Vec<CapturedBody>) {
        crate::metrics::capture_queued();
        if self
            .writer
            .send(Msg::Capture(tracecode, time_ms, bodies))
            .is_err()
        {
            tracing::error!("the store writer has stopped; a capture was dropped");
        }
    }

    fn get_capture(
        &self,
        tracecode: String,
        flow: Flow,
        stage: u8,
    ) -> StoreFuture<'_, Option<CapturedBody>> {
        self.with_read(move |conn| {
            conn.query_row(
                "SELECT content_type, truncated, body FROM captures
                 WHERE tracecode = ?1 AND flow = ?2 AND stage = ?3",
                params![tracecode, flow.as_str(), stage],
                |r| {
                    Ok(CapturedBody {
                        flow,
                        stage,
                        content_type: r.get(0)?,
                        truncated: r.get(1)?,
                        body: bytes::Bytes::from(r.get::<_, Vec<u8>>(2)?),
                    })
                },
            )
            .optional()
            .map_err(backend)
        })
    }

    fn purge_captures(&self, before_ms: i64) -> StoreFuture<'_, u64> {
        self.with(move |conn| {
            conn.execute("DELETE FROM captures WHERE time_ms < ?1", [before_ms])
                .map(|n| n as u64)
                .map_err(backend)
        })
    }

    fn flush(&self) -> StoreFuture<'_, ()> {
        let (tx, rx) = mpsc::channel();
        let sent = self.writer.send(Msg::Flush(tx));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn company(key: &str) -> Company {
        Company {
            key: key.into(),
            detail: None,
            enabled: true,
        }
    }

    fn user(name: &str, company: &str, roles: &[&str], enabled: bool) -> User {
        User {
            username: name.into(),
            name: Some(format!("{name} name")),
            email: None,
            phone: None,
            company_key: company.into(),
            enabled,
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            timezone: 0,
        }
    }

    fn row(user: &str, t: i64) -> AuditRow {
        AuditRow {
            time_ms: t,
            username: user.into(),
            company_key: "acme".into(),
            tracecode: format!("tc-{t}").into(),
            server: "test".into(),
            service: "REDAPI_V1".into(),
            operation: "companies.get".into(),
            method_group: "READ".into(),
            points: 1,
            duration_ms: 3,
            status: 200,
            fingerprint: (t % 3) as u64,
            targets: Arc::from([]),
            ip: None,
        }
    }

    fn targets(ids: &[&str]) -> Arc<[Arc<str>]> {
        ids.iter().map(|id| Arc::from(*id)).collect()
    }

    #[test]
    fn a_batch_of_every_statement_size_writes_each_row_into_its_own_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let mut conn = open_conn(&path).unwrap();
        migrate(&mut conn).unwrap();
        // 64 + 8 + 8 + 3: each statement size, the smaller ones more than once.
        let rows: Vec<AuditRow> = (0..83)
            .map(|i| AuditRow {
                time_ms: 1_000 + i,
                username: format!("user{i}").into(),
                company_key: format!("co{i}").into(),
                tracecode: format!("tc{i}").into(),
                server: format!("srv{i}").into(),
                service: format!("svc{i}").into(),
                operation: format!("op{i}").into(),
                method_group: format!("grp{i}").into(),
                points: i as u32 * 2,
                duration_ms: i as u64 * 3,
                status: 200 + i as u16,
                fingerprint: 0xabc0 + i as u64,
                // None, one, and two with characters JSON escapes.
                targets: match i % 3 {
                    0 => targets(&[]),
                    1 => targets(&[&format!("co{i}")]),
                    _ => targets(&[&format!("id-{i}"), "q\"uote\\é"]),
                },
                // None, IPv4 and IPv6.
                ip: match i % 3 {
                    0 => None,
                    1 => Some(std::net::IpAddr::from([10, 0, 0, i as u8])),
                    _ => Some(std::net::IpAddr::from([
                        0x2001, 0xdb8, 0, 0, 0, 0, 0, i as u16,
                    ])),
                },
            })
            .collect();
        let keyed: Vec<Keyed> = rows
            .into_iter()
            .enumerate()
            .map(|(i, row)| Keyed {
                rid: i as i64 + 1,
                row,
            })
            .collect();
        write_audit(&mut conn, &keyed).unwrap();
        // Written again (a replay after a partial success): every row is there already.
        write_audit(&mut conn, &keyed).unwrap();
        let mut st = conn
            .prepare(
                "SELECT time_ms, username, company_key, tracecode, client, server, service,
                 operation, method_group, points, duration_ms, status, fingerprint, targets, ip,
                 id
                 FROM audit ORDER BY id",
            )
            .unwrap();
        let read: Vec<Vec<String>> = st
            .query_map([], |r| {
                (0..AUDIT_COLUMNS)
                    .map(|k| {
                        Ok(match r.get_ref(k)? {
                            rusqlite::types::ValueRef::Integer(n) => n.to_string(),
                            rusqlite::types::ValueRef::Null => "NULL".to_owned(),
                            v => v.as_str()?.to_owned(),
                        })
                    })
                    .collect()
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let want: Vec<Vec<String>> = (0..83i64)
            .map(|i| {
                vec![
                    (1_000 + i).to_string(),
                    format!("user{i}"),
                    format!("co{i}"),
                    format!("tc{i}"),
                    format!("co{i}_|_user{i}"),
                    format!("srv{i}"),
                    format!("svc{i}"),
                    format!("op{i}"),
                    format!("grp{i}"),
                    (i * 2).to_string(),
                    (i * 3).to_string(),
                    (200 + i).to_string(),
                    format!("{:016x}", 0xabc0 + i),
                    match i % 3 {
                        0 => "[]".to_owned(),
                        1 => format!("[\"co{i}\"]"),
                        _ => format!("[\"id-{i}\",\"q\\\"uote\\\\é\"]"),
                    },
                    match i % 3 {
                        0 => "NULL".to_owned(),
                        1 => format!("10.0.0.{i}"),
                        _ => format!("2001:db8::{i:x}"),
                    },
                    (i + 1).to_string(),
                ]
            })
            .collect();
        assert_eq!(read, want);
        drop(st);
        // Nothing to write is not an error and writes nothing.
        write_audit(&mut conn, &[]).unwrap();
        let n: i64 = conn
            .query_row("SELECT COUNT(*) FROM audit", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 83);
    }

    #[tokio::test]
    async fn a_panicking_call_fails_alone_and_the_store_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("r.db")).unwrap();
        let failed = s
            .with(|_conn| -> Result<(), StoreError> { panic!("a bug in one call") })
            .await;
        assert!(matches!(failed, Err(StoreError::Backend(_))), "{failed:?}");
        s.create_company(company("after")).await.unwrap();
        assert_eq!(s.user_count().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn companies_users_keys_audit_and_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/r.db");
        {
            let s = SqliteStore::open(&path).unwrap();
            s.create_company(company("acme")).await.unwrap();
            assert!(matches!(
                s.create_company(company("acme")).await,
                Err(StoreError::Conflict(_))
            ));
            s.create_user(user("ann", "acme", &["ADMIN"], true), Some("h".into()))
                .await
                .unwrap();
            s.create_user(user("bob", "acme", &["USER"], false), None)
                .await
                .unwrap();
            assert!(matches!(
                s.create_user(user("cy", "nope", &[], true), None).await,
                Err(StoreError::Invalid(_))
            ));
            assert!(matches!(
                s.delete_company("acme".into()).await,
                Err(StoreError::Invalid(_))
            ));
            let page = s
                .list_users(UserQuery {
                    list: ListQuery {
                        offset: 0,
                        limit: 10,
                        filter: Some("b".into()),
                        sort_field: Some("username".into()),
                        descending: false,
                    },
                    company_key: None,
                    group: UserGroup::Total,
                })
                .await
                .unwrap();
            assert_eq!(
                page.overall,
                UserStats {
                    total: 2,
                    active: 1,
                    blocked: 1,
                    admins: 1
                }
            );
            assert_eq!(page.filtered.total, 1);
            assert_eq!(page.items[0].username, "bob");
            let key = ApiKeyInfo {
                id: "k1".into(),
                username: "ann".into(),
                prefix: "rk_abc".into(),
                created_ms: 1,
                expires_ms: None,
                revoked: false,
            };
            s.create_key(key.clone(), "sha".into()).await.unwrap();
            let found = s.find_key("sha".into()).await.unwrap().unwrap();
            assert_eq!(found.user.username, "ann");
            for t in 0..2500 {
                s.record_audit(row("ann", t));
            }
            s.flush().await.unwrap();
        }
        // Everything survives a reopen; migrations do not run twice.
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.user_count().await.unwrap(), 2);
        assert_eq!(s.list_keys("ann".into()).await.unwrap().len(), 1);
        s.revoke_key("ann".into(), "k1".into()).await.unwrap();
        assert!(s.find_key("sha".into()).await.unwrap().unwrap().key.revoked);
        let audit = s
            .list_audit(AuditQuery {
                offset: 0,
                limit: 5,
                from_ms: 100,
                to_ms: 200,
                company_key: Some("acme".into()),
                username: None,
                service: None,
                operation: None,
                method_group: None,
                target: None,
                sort_field: Some("time".into()),
                descending: true,
            })
            .await
            .unwrap();
        assert_eq!(audit.overall, 2500);
        assert_eq!(audit.filtered, 100);
        assert_eq!(audit.items[0].time_ms, 199);
        let stats = s
            .statistics(StatsQuery {
                from_day: "1970-01-01".into(),
                to_day: "1970-01-01".into(),
                username: Some("ann".into()),
                company_key: None,
            })
            .await
            .unwrap();
        assert_eq!(stats.len(), 1);
        assert_eq!((stats[0].points, stats[0].unique_points), (2500, 3));
        assert!(
            s.statistics(StatsQuery {
                from_day: "1970-01-02".into(),
                to_day: "1970-01-05".into(),
                username: None,
                company_key: None,
            })
            .await
            .unwrap()
            .is_empty()
        );
        s.delete_user("bob".into()).await.unwrap();
        s.delete_user("ann".into()).await.unwrap();
        assert!(
            s.list_keys("ann".into()).await.unwrap().is_empty(),
            "keys go with their user"
        );
        s.delete_company("acme".into()).await.unwrap();
    }

    fn audit_query(target: Option<&str>) -> AuditQuery {
        AuditQuery {
            offset: 0,
            limit: 100,
            from_ms: 0,
            to_ms: i64::MAX,
            company_key: None,
            username: None,
            service: None,
            operation: None,
            method_group: None,
            target: target.map(str::to_owned),
            sort_field: Some("time".into()),
            descending: false,
        }
    }

    #[tokio::test]
    async fn the_target_filter_matches_exact_ids_and_rows_keep_their_targets() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("t.db")).unwrap();
        let rows: [&[&str]; 7] = [
            &["acme-1"],
            &["acme-10", "beta"],
            &[],
            &["beta", "acme-1"],
            &["xacme-1x"],
            &["ACME-1"],
            &["acme-1\"]"],
        ];
        for (t, ids) in rows.iter().enumerate() {
            s.record_audit(AuditRow {
                targets: targets(ids),
                ..row("ann", t as i64)
            });
        }
        s.flush().await.unwrap();
        let times = |target: &str| {
            let s = &s;
            let target = target.to_owned();
            async move {
                let page = s.list_audit(audit_query(Some(&target))).await.unwrap();
                assert_eq!(page.overall, 7);
                assert_eq!(page.filtered, page.items.len() as u64);
                page.items.iter().map(|r| r.time_ms).collect::<Vec<_>>()
            }
        };
        assert_eq!(times("acme-1").await, [0, 3], "exact ids only");
        assert_eq!(times("beta").await, [1, 3]);
        assert_eq!(times("acme-1\"]").await, [6], "quotes match as text");
        for none in ["acme", "cme-1", "acme-1\"", "[]", "%", ""] {
            assert!(times(none).await.is_empty(), "{none:?}");
        }
        // Every row reads back with its own targets, in order; without a filter, all rows.
        let all = s.list_audit(audit_query(None)).await.unwrap();
        assert_eq!(all.filtered, 7);
        for (r, ids) in all.items.iter().zip(rows) {
            assert_eq!(r.targets, targets(ids), "row {}", r.time_ms);
        }
    }

    #[tokio::test]
    async fn rows_audited_before_the_targets_migration_have_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            // A store as the build before targets left it: schema version 4, one row.
            let mut conn = open_conn(&path).unwrap();
            let tx = conn.transaction().unwrap();
            for sql in &MIGRATIONS[..4] {
                tx.execute_batch(sql).unwrap();
            }
            tx.pragma_update(None, "user_version", 4).unwrap();
            tx.execute(
                "INSERT INTO audit (time_ms, username, company_key, tracecode, client, server,
                 service, operation, method_group, points, duration_ms, status, fingerprint)
                 VALUES (5, 'ann', 'acme', 'tc', 'acme_|_ann', 's', 'SVC', 'op', 'READ', 1, 2,
                 200, '0000000000000001')",
                [],
            )
            .unwrap();
            tx.commit().unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        let version: i64 = s
            .with(|c| {
                c.query_row("PRAGMA user_version", [], |r| r.get(0))
                    .map_err(backend)
            })
            .await
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
        let all = s.list_audit(audit_query(None)).await.unwrap();
        assert_eq!(all.items.len(), 1);
        assert!(all.items[0].targets.is_empty());
        assert_eq!(all.items[0].ip, None, "rows before the ip column have none");
        let some = s.list_audit(audit_query(Some("acme"))).await.unwrap();
        assert_eq!(some.filtered, 0);
    }

    #[test]
    fn like_patterns_take_wildcards_literally() {
        assert_eq!(like("a%_\\b"), "%a\\%\\_\\\\b%");
    }

    /// An admin query that takes long runs on its own connection: a key lookup behind it
    /// is answered at once, not after it.
    #[tokio::test]
    async fn a_long_admin_read_does_not_hold_up_a_key_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let long = store.with_read(move |_conn| {
            let _ = started_tx.send(());
            // Holds the read thread until the lookup below has been answered.
            released
                .recv_timeout(Duration::from_secs(10))
                .map_err(|e| StoreError::Backend(e.to_string()))
        });
        // The job is on the read thread already: it was sent when the call was made.
        started.await.unwrap();
        let found = tokio::time::timeout(Duration::from_secs(5), store.find_key("0".repeat(64)))
            .await
            .expect("the lookup is not queued behind the admin read")
            .unwrap();
        assert!(found.is_none());
        release.send(()).unwrap();
        long.await.unwrap();
    }
}
