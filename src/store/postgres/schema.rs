//! The PostgreSQL schema: its migrations, in order, each applied in its own transaction and
//! recorded in `schema_migrations`, all under a session advisory lock, so nodes starting
//! together migrate once (the others wait, then find nothing to do). A database whose
//! schema is newer than this build knows is refused: an older binary must not write to it.
//!
//! Text columns are `COLLATE "C"` (byte order, as SQLite compares), whatever the database's
//! locale, so lists sort the same on both backends. Tables without an integer key carry a
//! `seq` identity, the tie-break SQLite's `rowid` gives.

use tokio_postgres::Client;

use super::{StoreError, pg};

/// The advisory lock migrations run under (`rosetta` in ASCII).
const MIGRATION_LOCK: i64 = 0x0072_6f73_6574_7461;

/// Schema migrations, in order; `schema_migrations` holds the versions applied (1-based).
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: everything SQLite's migrations 1 to 8 made, in PostgreSQL's types.
    r#"CREATE TABLE companies (
        key TEXT COLLATE "C" PRIMARY KEY,
        detail TEXT COLLATE "C",
        enabled BOOLEAN NOT NULL DEFAULT TRUE,
        seq BIGINT GENERATED ALWAYS AS IDENTITY
     );
     CREATE TABLE users (
        username TEXT COLLATE "C" PRIMARY KEY,
        name TEXT COLLATE "C", email TEXT COLLATE "C", phone TEXT COLLATE "C",
        company_key TEXT COLLATE "C" NOT NULL REFERENCES companies(key) ON UPDATE CASCADE,
        enabled BOOLEAN NOT NULL,
        roles TEXT COLLATE "C" NOT NULL,
        timezone INTEGER NOT NULL,
        password_hash TEXT,
        seq BIGINT GENERATED ALWAYS AS IDENTITY
     );
     CREATE INDEX users_company ON users(company_key);
     CREATE TABLE api_keys (
        id TEXT COLLATE "C" PRIMARY KEY,
        username TEXT COLLATE "C" NOT NULL
            REFERENCES users(username) ON DELETE CASCADE ON UPDATE CASCADE,
        prefix TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        created_ms BIGINT NOT NULL,
        expires_ms BIGINT,
        revoked BOOLEAN NOT NULL DEFAULT FALSE
     );
     CREATE INDEX api_keys_user ON api_keys(username);
     CREATE TABLE audit (
        id BIGINT PRIMARY KEY,
        time_ms BIGINT NOT NULL,
        username TEXT COLLATE "C" NOT NULL, company_key TEXT COLLATE "C" NOT NULL,
        tracecode TEXT NOT NULL, client TEXT NOT NULL, server TEXT NOT NULL,
        service TEXT COLLATE "C" NOT NULL, operation TEXT COLLATE "C" NOT NULL,
        method_group TEXT COLLATE "C" NOT NULL,
        points BIGINT NOT NULL, duration_ms BIGINT NOT NULL, status INTEGER NOT NULL,
        fingerprint TEXT NOT NULL,
        targets JSONB NOT NULL DEFAULT '[]',
        ip TEXT
     );
     CREATE INDEX audit_time ON audit(time_ms);
     CREATE INDEX audit_user_time ON audit(username, time_ms);
     CREATE TABLE captures (
        tracecode TEXT NOT NULL,
        flow TEXT NOT NULL,
        stage SMALLINT NOT NULL,
        time_ms BIGINT NOT NULL,
        content_type TEXT NOT NULL,
        truncated BOOLEAN NOT NULL,
        body BYTEA NOT NULL,
        PRIMARY KEY (tracecode, flow, stage)
     );
     CREATE INDEX captures_time ON captures(time_ms);
     CREATE TABLE quotas (
        username TEXT COLLATE "C" NOT NULL
            REFERENCES users(username) ON DELETE CASCADE ON UPDATE CASCADE,
        from_day TEXT COLLATE "C" NOT NULL,
        to_day TEXT COLLATE "C" NOT NULL,
        services TEXT NOT NULL,
        PRIMARY KEY (username, from_day, to_day)
     );
     CREATE TABLE store_meta (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
     CREATE TABLE audit_daily (
        day DATE NOT NULL,
        day_ms BIGINT NOT NULL,
        username TEXT COLLATE "C" NOT NULL, company_key TEXT COLLATE "C" NOT NULL,
        service TEXT COLLATE "C" NOT NULL, operation TEXT COLLATE "C" NOT NULL,
        method_group TEXT COLLATE "C" NOT NULL,
        status_class INTEGER NOT NULL,
        requests BIGINT NOT NULL, points BIGINT NOT NULL, unique_points BIGINT NOT NULL,
        duration_ms BIGINT NOT NULL,
        PRIMARY KEY (day, username, company_key, service, operation, method_group, status_class)
     );
     CREATE INDEX audit_daily_user ON audit_daily(username, day_ms);
     -- A request's local day as SQLite's date(ms / 1000 + tz * 3600, 'unixepoch') gives it:
     -- whole seconds (truncated), shifted by the user's offset, read in UTC.
     CREATE FUNCTION rosetta_local_day(ms BIGINT, tz INTEGER) RETURNS DATE
        LANGUAGE SQL IMMUTABLE PARALLEL SAFE
        AS $$ SELECT (TIMESTAMP '1970-01-01' + (ms / 1000 + tz * 3600) * INTERVAL '1 second')::date $$;"#,
];

/// Applies the pending migrations under the advisory lock; refuses a schema newer than
/// [`MIGRATIONS`]. `client` is a connection of its own: the lock is the session's and goes
/// with it, whatever happens here.
pub(super) async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg)?;
    let done = migrate_locked(client).await;
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    done?;
    unlocked.map(|_| ()).map_err(pg)
}

async fn migrate_locked(client: &mut Client) -> Result<(), StoreError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version INTEGER PRIMARY KEY,
                applied_ms BIGINT NOT NULL
             )",
        )
        .await
        .map_err(pg)?;
    let version: i32 = client
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )
        .await
        .map_err(pg)?
        .get(0);
    let version = usize::try_from(version).unwrap_or(0);
    if version > MIGRATIONS.len() {
        return Err(StoreError::Backend(format!(
            "the store's schema version {version} is newer than this build knows ({}): \
             run the newer build, or restore a database of this version",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = client.transaction().await.map_err(pg)?;
        tx.batch_execute(sql).await.map_err(pg)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_ms)
             VALUES ($1, (extract(epoch FROM now()) * 1000)::BIGINT)",
            &[&(i as i32 + 1)],
        )
        .await
        .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        tracing::info!(version = i + 1, "store schema migrated");
    }
    Ok(())
}
