//! [`SqliteStore`]: the embedded store, one SQLite file in WAL mode (rusqlite, bundled).
//!
//! Three connections, each owned by a thread: one runs the admin API's writes and the
//! lookups of authentication and quotas, one by turn; one the admin API's lists, the audit
//! trail, statistics and captures, so a long admin query never stalls a login (WAL lets it
//! read beside the others); the third is the writer thread ([`super::writer`]) that drains
//! the bounded audit queue in batches, so a proxied request never waits on the disk, and
//! spills what it cannot write. The schema is versioned (`PRAGMA user_version`); pending
//! migrations run in one transaction at open.
//!
//! This file holds the store and its `Store` methods; by job: `schema` (migrations),
//! `connection` (opening, the threads, running a job), `lists` (the admin API's lists and
//! reports), `audit_sql` (batched audit and capture writes), `rows` (row readers, SQL
//! helpers).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use crate::capture::{CapturedBody, Flow};

use super::audit_queue::{AuditHealth, AuditOptions, AuditSlot};
use super::rollup::Retention;
use super::spill::{Keyed, Spill};
use super::writer::{self, Pipe};
use super::{
    ApiKeyInfo, AuditQuery, AuditRow, Company, KeyMatch, ListQuery, Page, Quotas, StatRow,
    StatsQuery, Store, StoreError, StoreFuture, User, UserGroup, UserQuery, UserSecret, UserStats,
};
mod audit_sql;
mod connection;
mod lists;
mod rows;
mod schema;

#[cfg(test)]
pub(super) use audit_sql::write_audit;
#[cfg(test)]
use audit_sql::*;
pub(super) use audit_sql::{push_targets, targets_of};
use rows::*;
pub(super) use schema::{migrate, open_conn};

/// The embedded store.
pub struct SqliteStore {
    /// Work for the connection thread (the admin API's reads and writes, authentication and
    /// quota lookups).
    jobs: mpsc::Sender<Job>,
    /// Work for the read thread (lists, audit, statistics, captures).
    reads: mpsc::Sender<Job>,
    /// The audit queue and the writer thread.
    pipe: Pipe,
}

/// One piece of work on the shared connection; it sends its own answer.
type Job = Box<dyn FnOnce(&mut Connection) + Send>;

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
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
        self.with_read(move |conn| lists::list_companies(conn, q))
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
        self.with_read(move |conn| lists::list_users(conn, q))
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
        self.pipe.record_audit(row);
    }

    fn reserve_audit(&self) -> Option<AuditSlot> {
        self.pipe.reserve()
    }

    fn record_reserved(&self, slot: AuditSlot, row: AuditRow) {
        self.pipe.record_reserved(slot, row);
    }

    fn audit_health(&self) -> AuditHealth {
        self.pipe.health()
    }

    fn list_audit(&self, q: AuditQuery) -> StoreFuture<'_, Page<AuditRow, u64>> {
        self.with_read(move |conn| lists::list_audit(conn, q))
    }

    fn statistics(&self, q: StatsQuery) -> StoreFuture<'_, Vec<StatRow>> {
        self.with_read(move |conn| lists::statistics(conn, q))
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
        self.pipe.record_capture(tracecode, time_ms, bodies);
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
        self.pipe.flush()
    }
}

#[cfg(test)]
mod tests;
