//! The store's schema: its migrations, in order, applied at open under one transaction
//! (`PRAGMA user_version` counts them), and the settings every connection opens with.

use super::*;

/// Schema migrations, in order; `user_version` is how many have run.
pub(super) const MIGRATIONS: &[&str] = &[
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

pub(in crate::store) fn open_conn(path: &Path) -> Result<Connection, StoreError> {
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

pub(in crate::store) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
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
