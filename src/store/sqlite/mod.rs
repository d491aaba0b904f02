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
//! This file holds the store and its audit, report, quota and capture parts; by job:
//! `directory` (the directory and credential parts), `schema` (migrations),
//! `connection` (opening, the threads, running a job), `lists` (the admin API's lists and
//! reports), `audit_sql` (batched audit and capture writes), `rows` (row readers, SQL
//! helpers).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, ParamsFromIter, params, params_from_iter};

use crate::capture::{CapturedBody, Flow};

use super::audit_queue::{AuditHealth, AuditOptions, AuditSlot};
use super::query::{self, AUDIT_SORT, Arg, COMPANY_SORT, Sql, USER_SORT, Where, errors};
use super::rollup::Retention;
use super::spill::{Keyed, Spill};
use super::writer::{self, Pipe};
use super::{
    ApiKeyInfo, AuditQuery, AuditRow, Company, KeyMatch, ListQuery, Page, Quotas, StatRow,
    StatsQuery, StoreError, StoreFuture, User, UserQuery, UserSecret, UserStats,
};
use super::{AuditLog, AuditSink, Captures, Credentials, Directory, QuotaSettings, Statistics};
use errors::KeyClash;
mod audit_sql;
mod connection;
mod directory;
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

impl AuditSink for SqliteStore {
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

    fn flush(&self) -> StoreFuture<'_, ()> {
        self.pipe.flush()
    }
}

impl AuditLog for SqliteStore {
    fn list_audit(&self, q: AuditQuery) -> StoreFuture<'_, Page<AuditRow, u64>> {
        self.with_read(move |conn| lists::list_audit(conn, q))
    }
}

impl Statistics for SqliteStore {
    fn statistics(&self, q: StatsQuery) -> StoreFuture<'_, Vec<StatRow>> {
        self.with_read(move |conn| lists::statistics(conn, q))
    }
}

impl QuotaSettings for SqliteStore {
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
            .map_err(|e| constraint_or_backend(e, || errors::no_user(&username)))
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
            query::quotas_of(rows)
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
}

impl Captures for SqliteStore {
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
}

#[cfg(test)]
mod tests;
