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
//! This file holds the store and its `Store` methods; by job: `schema` (migrations),
//! `connection` (opening, the pool, the writer's sink), `lists` (the admin API's lists and
//! reports), `audit_sql` (the writer's batched writes and roll-ups), `rows` (row readers,
//! errors, SQL helpers).

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use time::Date;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row};

use crate::capture::{CapturedBody, Flow};

use super::audit_queue::{AuditHealth, AuditOptions, AuditSlot};
use super::rollup::{self, Retention, Step};
use super::spill::{Keyed, Spill};
use super::sqlite::{push_targets, targets_of};
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

impl Store for PgStore {
    fn create_company(&self, c: Company) -> StoreFuture<'_, ()> {
        self.call(async move {
            self.client()
                .await?
                .execute(
                    "INSERT INTO companies (key, detail, enabled) VALUES ($1, $2, $3)",
                    &[&c.key, &c.detail, &c.enabled],
                )
                .await
                .map(|_| ())
                .map_err(|e| {
                    constraint_or_backend(e, || {
                        StoreError::Conflict(format!("company `{}`", c.key))
                    })
                })
        })
    }

    fn get_company(&self, key: String) -> StoreFuture<'_, Company> {
        self.call(async move {
            self.client()
                .await?
                .query_opt(
                    "SELECT key, detail, enabled FROM companies WHERE key = $1",
                    &[&key],
                )
                .await
                .map_err(pg)?
                .map(|r| company_row(&r))
                .ok_or_else(|| StoreError::NotFound(format!("company `{key}`")))
        })
    }

    fn update_company(&self, key: String, c: Company) -> StoreFuture<'_, ()> {
        self.call(async move {
            let n = self
                .client()
                .await?
                .execute(
                    "UPDATE companies SET key = $1, detail = $2, enabled = $3 WHERE key = $4",
                    &[&c.key, &c.detail, &c.enabled, &key],
                )
                .await
                .map_err(|e| {
                    constraint_or_backend(e, || {
                        StoreError::Conflict(format!("company `{}`", c.key))
                    })
                })?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("company `{key}`")));
            }
            Ok(())
        })
    }

    fn delete_company(&self, key: String) -> StoreFuture<'_, ()> {
        self.call(async move {
            let client = self.client().await?;
            let users: i64 = client
                .query_one("SELECT COUNT(*) FROM users WHERE company_key = $1", &[&key])
                .await
                .map_err(pg)?
                .get(0);
            if users > 0 {
                return Err(StoreError::Invalid(format!(
                    "company `{key}` still has {users} user(s); delete or move them first"
                )));
            }
            let n = client
                .execute("DELETE FROM companies WHERE key = $1", &[&key])
                .await
                .map_err(pg)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("company `{key}`")));
            }
            Ok(())
        })
    }

    fn list_companies(&self, q: ListQuery) -> StoreFuture<'_, Page<Company, u64>> {
        self.call(async move { lists::list_companies(&*self.client().await?, q).await })
    }

    fn create_user(&self, u: User, password_hash: Option<String>) -> StoreFuture<'_, ()> {
        self.call(async move {
            let client = self.client().await?;
            require_company(&client, &u.company_key).await?;
            client
                .execute(
                    &format!(
                        "INSERT INTO users ({USER_COLS}, password_hash)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                    ),
                    &[
                        &u.username,
                        &u.name,
                        &u.email,
                        &u.phone,
                        &u.company_key,
                        &u.enabled,
                        &u.roles.join(","),
                        &u.timezone,
                        &password_hash,
                    ],
                )
                .await
                .map(|_| ())
                .map_err(|e| {
                    constraint_or_backend(e, || {
                        StoreError::Conflict(format!("user `{}`", u.username))
                    })
                })
        })
    }

    fn get_user(&self, username: String) -> StoreFuture<'_, User> {
        self.call(async move {
            self.client()
                .await?
                .query_opt(
                    &format!("SELECT {USER_COLS} FROM users WHERE username = $1"),
                    &[&username],
                )
                .await
                .map_err(pg)?
                .map(|r| user_row_at(&r, 0))
                .ok_or_else(|| StoreError::NotFound(format!("user `{username}`")))
        })
    }

    fn update_user(&self, u: User, password_hash: Option<String>) -> StoreFuture<'_, ()> {
        self.call(async move {
            let client = self.client().await?;
            require_company(&client, &u.company_key).await?;
            let n = client
                .execute(
                    "UPDATE users SET name = $2, email = $3, phone = $4, company_key = $5,
                     enabled = $6, roles = $7, timezone = $8,
                     password_hash = COALESCE($9, password_hash)
                     WHERE username = $1",
                    &[
                        &u.username,
                        &u.name,
                        &u.email,
                        &u.phone,
                        &u.company_key,
                        &u.enabled,
                        &u.roles.join(","),
                        &u.timezone,
                        &password_hash,
                    ],
                )
                .await
                .map_err(pg)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("user `{}`", u.username)));
            }
            Ok(())
        })
    }

    fn delete_user(&self, username: String) -> StoreFuture<'_, ()> {
        self.call(async move {
            let n = self
                .client()
                .await?
                .execute("DELETE FROM users WHERE username = $1", &[&username])
                .await
                .map_err(pg)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("user `{username}`")));
            }
            Ok(())
        })
    }

    fn list_users(&self, q: UserQuery) -> StoreFuture<'_, Page<User, UserStats>> {
        self.call(async move { lists::list_users(&*self.client().await?, q).await })
    }

    fn user_count(&self) -> StoreFuture<'_, u64> {
        self.call(async move {
            let n: i64 = self
                .client()
                .await?
                .query_one("SELECT COUNT(*) FROM users", &[])
                .await
                .map_err(pg)?
                .get(0);
            Ok(n as u64)
        })
    }

    fn user_secret(&self, username: String) -> StoreFuture<'_, Option<UserSecret>> {
        self.call(async move {
            let client = self.client().await?;
            let st = client
                .prepare_cached(
                    "SELECT u.username, u.name, u.email, u.phone, u.company_key, u.enabled,
                            u.roles, u.timezone, u.password_hash, c.enabled
                     FROM users u JOIN companies c ON c.key = u.company_key
                     WHERE u.username = $1",
                )
                .await
                .map_err(pg)?;
            Ok(client
                .query_opt(&st, &[&username])
                .await
                .map_err(pg)?
                .map(|r| UserSecret {
                    user: user_row_at(&r, 0),
                    password_hash: r.get(8),
                    company_enabled: r.get(9),
                }))
        })
    }

    fn create_key(&self, key: ApiKeyInfo, secret_sha256: String) -> StoreFuture<'_, ()> {
        self.call(async move {
            self.client()
                .await?
                .execute(
                    "INSERT INTO api_keys (id, username, prefix, hash, created_ms, expires_ms,
                                           revoked)
                     VALUES ($1, $2, $3, $4, $5, $6, FALSE)",
                    &[
                        &key.id,
                        &key.username,
                        &key.prefix,
                        &secret_sha256,
                        &key.created_ms,
                        &key.expires_ms,
                    ],
                )
                .await
                .map(|_| ())
                .map_err(|e| {
                    constraint_or_backend(e, || {
                        StoreError::Invalid(format!("user `{}` does not exist", key.username))
                    })
                })
        })
    }

    fn list_keys(&self, username: String) -> StoreFuture<'_, Vec<ApiKeyInfo>> {
        self.call(async move {
            Ok(self
                .client()
                .await?
                .query(
                    "SELECT id, username, prefix, created_ms, expires_ms, revoked FROM api_keys
                     WHERE username = $1 ORDER BY created_ms, id",
                    &[&username],
                )
                .await
                .map_err(pg)?
                .iter()
                .map(key_row)
                .collect())
        })
    }

    fn revoke_key(&self, username: String, id: String) -> StoreFuture<'_, ()> {
        self.call(async move {
            let n = self
                .client()
                .await?
                .execute(
                    "UPDATE api_keys SET revoked = TRUE WHERE username = $1 AND id = $2",
                    &[&username, &id],
                )
                .await
                .map_err(pg)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("key `{id}` of `{username}`")));
            }
            Ok(())
        })
    }

    fn find_key(&self, secret_sha256: String) -> StoreFuture<'_, Option<KeyMatch>> {
        self.call(async move {
            let client = self.client().await?;
            let st = client
                .prepare_cached(
                    "SELECT k.id, k.username, k.prefix, k.created_ms, k.expires_ms, k.revoked,
                            u.username, u.name, u.email, u.phone, u.company_key, u.enabled,
                            u.roles, u.timezone, c.enabled
                     FROM api_keys k JOIN users u ON u.username = k.username
                     JOIN companies c ON c.key = u.company_key WHERE k.hash = $1",
                )
                .await
                .map_err(pg)?;
            Ok(client
                .query_opt(&st, &[&secret_sha256])
                .await
                .map_err(pg)?
                .map(|r| KeyMatch {
                    key: key_row(&r),
                    user: user_row_at(&r, 6),
                    company_enabled: r.get(14),
                }))
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
        self.call(async move { lists::list_audit(&*self.client().await?, q).await })
    }

    fn statistics(&self, q: StatsQuery) -> StoreFuture<'_, Vec<StatRow>> {
        self.call(async move { lists::statistics(&*self.client().await?, q).await })
    }

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
                .map_err(|e| {
                    constraint_or_backend(e, || StoreError::NotFound(format!("user `{username}`")))
                })
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
            let mut q = Quotas::default();
            for r in rows {
                let (from, to, text): (String, String, &str) = (r.get(0), r.get(1), r.get(2));
                let v: serde_json::Value = serde_json::from_str(text)
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

    fn flush(&self) -> StoreFuture<'_, ()> {
        self.pipe.flush()
    }
}
