//! [`PgStore`]: the store several replicas share, one PostgreSQL database, through
//! tokio-postgres and a deadpool-postgres pool (`[store] url`, `pool`).
//!
//! The same behaviour as [`super::SqliteStore`] for every method and every error: the
//! shared conformance suite (tests/store_conformance.rs) runs on both. Lookups and admin
//! calls take a pooled connection each, bounded in time (a PostgreSQL that stops answering
//! fails the call instead of hanging a request). Audit rows take the same path as on SQLite
//! (the bounded queue, the writer thread, the spill file: [`super::writer`]), the writer
//! with its own connection and runtime. The schema is versioned (`schema_migrations`) and
//! migrated at open under an advisory lock.
//!
//! This file holds the store and its audit, report, quota and capture parts; by job:
//! `directory` (the directory and credential parts), `schema` (migrations),
//! `connection` (opening, the pool, the writer's sink), `lists` (the admin API's lists and
//! reports), `audit_sql` (the writer's batched writes and roll-ups), `rows` (row readers,
//! errors, SQL helpers).

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use time::Date;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row};

use crate::capture::{CapturedBody, Flow};

use super::audit_queue::{AuditHealth, AuditOptions, AuditSlot};
use super::query::{self, AUDIT_SORT, Arg, COMPANY_SORT, Sql, USER_SORT, Where, errors};
use super::rollup::{self, Retention, Step};
use super::spill::{Keyed, Spill};
use super::sqlite::{push_targets, targets_of};
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

use connection::PgSink;
use rows::*;

/// The shared store.
pub struct PgStore {
    /// Connections for the lookups and the admin API.
    pool: Pool,
    /// The audit queue and the writer thread.
    pipe: Pipe,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

impl AuditSink for PgStore {
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

impl AuditLog for PgStore {
    fn list_audit(&self, q: AuditQuery) -> StoreFuture<'_, Page<AuditRow, u64>> {
        self.call(async move { lists::list_audit(&*self.client().await?, q).await })
    }
}

impl Statistics for PgStore {
    fn statistics(&self, q: StatsQuery) -> StoreFuture<'_, Vec<StatRow>> {
        self.call(async move { lists::statistics(&*self.client().await?, q).await })
    }
}

impl QuotaSettings for PgStore {
    fn put_quotas(
        &self,
        username: String,
        window: Option<(String, String)>,
        services: serde_json::Value,
    ) -> StoreFuture<'_, ()> {
        self.call(async move {
            let (from, to) = window.unwrap_or_default();
            self.client()
                .await?
                .execute(
                    "INSERT INTO quotas (username, from_day, to_day, services)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (username, from_day, to_day)
                     DO UPDATE SET services = EXCLUDED.services",
                    &[&username, &from, &to, &services.to_string()],
                )
                .await
                .map(|_| ())
                .map_err(|e| constraint_or_backend(e, || errors::no_user(&username)))
        })
    }

    fn get_quotas(&self, username: String) -> StoreFuture<'_, Quotas> {
        self.call(async move {
            let rows = self
                .client()
                .await?
                .query(
                    "SELECT from_day, to_day, services FROM quotas WHERE username = $1
                     ORDER BY from_day, to_day",
                    &[&username],
                )
                .await
                .map_err(pg)?;
            query::quotas_of(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))))
        })
    }

    fn delete_quotas(
        &self,
        username: String,
        window: Option<(String, String)>,
    ) -> StoreFuture<'_, u64> {
        self.call(async move {
            let client = self.client().await?;
            match window {
                None => {
                    client
                        .execute("DELETE FROM quotas WHERE username = $1", &[&username])
                        .await
                }
                Some((from, to)) => {
                    client
                        .execute(
                            "DELETE FROM quotas WHERE username = $1 AND from_day = $2
                             AND to_day = $3",
                            &[&username, &from, &to],
                        )
                        .await
                }
            }
            .map_err(pg)
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
        self.call(async move {
            let client = self.client().await?;
            let st = client
                .prepare_cached(
                    "SELECT ((SELECT COALESCE(SUM(points), 0) FROM audit
                              WHERE username = $1 AND service = $2 AND method_group = $3
                                AND time_ms >= $4 AND time_ms < $5 AND status <> 429)
                           + (SELECT COALESCE(SUM(points), 0) FROM audit_daily
                              WHERE username = $1 AND service = $2 AND method_group = $3
                                AND day_ms >= $4 AND day_ms < $5 AND status_class <> 429)
                            )::BIGINT",
                )
                .await
                .map_err(pg)?;
            let n: i64 = client
                .query_one(&st, &[&username, &service, &method_group, &from_ms, &to_ms])
                .await
                .map_err(pg)?
                .get(0);
            Ok(n as u64)
        })
    }
}

impl Captures for PgStore {
    fn record_capture(&self, tracecode: String, time_ms: i64, bodies: Vec<CapturedBody>) {
        self.pipe.record_capture(tracecode, time_ms, bodies);
    }

    fn get_capture(
        &self,
        tracecode: String,
        flow: Flow,
        stage: u8,
    ) -> StoreFuture<'_, Option<CapturedBody>> {
        self.call(async move {
            Ok(self
                .client()
                .await?
                .query_opt(
                    "SELECT content_type, truncated, body FROM captures
                     WHERE tracecode = $1 AND flow = $2 AND stage = $3",
                    &[&tracecode, &flow.as_str(), &i16::from(stage)],
                )
                .await
                .map_err(pg)?
                .map(|r| CapturedBody {
                    flow,
                    stage,
                    content_type: r.get(0),
                    truncated: r.get(1),
                    body: bytes::Bytes::from(r.get::<_, Vec<u8>>(2)),
                }))
        })
    }

    fn purge_captures(&self, before_ms: i64) -> StoreFuture<'_, u64> {
        self.call(async move {
            self.client()
                .await?
                .execute("DELETE FROM captures WHERE time_ms < $1", &[&before_ms])
                .await
                .map_err(pg)
        })
    }
}
