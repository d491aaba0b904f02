//! The store's contract, in the parts its callers use: each layer, the credential check and
//! each group of admin handlers holds the one part it needs (`Arc<dyn Credentials>`…), so
//! what a caller may do to the store is read off its type, and a test double of a part
//! need not answer for the others. [`Store`] is their sum, for wiring only: the gateway
//! opens one backend and hands each caller its part (trait upcasting).
//!
//! Errors follow one set of rules on every backend (tests/store_conformance.rs holds both
//! to them): `Conflict` for a key taken (a company's, a user's, a key's id or secret),
//! `NotFound` for a named thing missing where the call must find it, `Invalid` for a rule
//! of the data broken (a user in an unknown company, a company deleted under its users),
//! `Backend` for the storage itself failing, never for the caller's input.

use std::future::Future;
use std::pin::Pin;

use super::audit_queue::{AuditHealth, AuditSlot};
use super::{
    ApiKeyInfo, AuditQuery, AuditRow, Company, KeyMatch, ListQuery, Page, Quotas, StatRow,
    StatsQuery, StoreError, User, UserQuery, UserSecret, UserStats,
};
use crate::capture::{CapturedBody, Flow};

/// A boxed store future.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Companies, users and their API keys, as the admin API manages them (and the bootstrap
/// user at start, the quota layer for a user's timezone).
///
/// Promises: keys (company key, username, key id) are unique (`Conflict`, naming the thing);
/// a user belongs to a company that exists (`Invalid`); a company with users is not deleted
/// (`Invalid`); reading, replacing or deleting something missing is `NotFound`, as is
/// revoking another user's key. Renaming a company moves its users; deleting a user deletes
/// their keys and quotas. Lists page, filter (case-insensitive substrings, `%` and `_`
/// literal) and sort (byte order, NULLs first ascending) alike on every backend.
pub trait Directory: Send + Sync + 'static {
    /// Adds a company; `Conflict` if its key is taken.
    fn create_company(&self, company: Company) -> StoreFuture<'_, ()>;
    /// The company `key`; `NotFound` if there is none.
    fn get_company(&self, key: String) -> StoreFuture<'_, Company>;
    /// Replaces the company `key` (which may be renamed to `company.key`, its users moved
    /// along); `NotFound` if there is none, `Conflict` if the new key is taken.
    fn update_company(&self, key: String, company: Company) -> StoreFuture<'_, ()>;
    /// Deletes the company; `Invalid` while it has users, `NotFound` if there is none.
    fn delete_company(&self, key: String) -> StoreFuture<'_, ()>;
    /// A page of companies.
    fn list_companies(&self, q: ListQuery) -> StoreFuture<'_, Page<Company, u64>>;

    /// Adds a user, with an argon2 PHC password hash or none (keys only); `Invalid` if the
    /// company does not exist, `Conflict` if the username is taken.
    fn create_user(&self, user: User, password_hash: Option<String>) -> StoreFuture<'_, ()>;
    /// The user `username`; `NotFound` if there is none.
    fn get_user(&self, username: String) -> StoreFuture<'_, User>;
    /// Replaces the user; `password_hash: None` keeps the current password. `NotFound` if
    /// there is no such user, `Invalid` if the company does not exist.
    fn update_user(&self, user: User, password_hash: Option<String>) -> StoreFuture<'_, ()>;
    /// Deletes the user, their keys and quotas; `NotFound` if there is none.
    fn delete_user(&self, username: String) -> StoreFuture<'_, ()>;
    /// A page of users, with seed 003's statistics.
    fn list_users(&self, q: UserQuery) -> StoreFuture<'_, Page<User, UserStats>>;
    /// How many users there are.
    fn user_count(&self) -> StoreFuture<'_, u64>;

    /// Stores a key by the SHA-256 of its secret; `Invalid` if the user does not exist,
    /// `Conflict` if the key's id or its secret is taken.
    fn create_key(&self, key: ApiKeyInfo, secret_sha256: String) -> StoreFuture<'_, ()>;
    /// The user's keys, revoked ones included, by creation then id (none for an unknown
    /// user).
    fn list_keys(&self, username: String) -> StoreFuture<'_, Vec<ApiKeyInfo>>;
    /// Revokes the user's key `id`; `NotFound` unless that user has that key.
    fn revoke_key(&self, username: String, id: String) -> StoreFuture<'_, ()>;
}

/// Looking credentials up, for the store's credential check (`identity::store_auth`) on
/// every request its cache has not seen. Read only, and on the fast path: an unknown user
/// or key is `Ok(None)`, not an error; only the storage failing is `Err` (`Backend`).
pub trait Credentials: Send + Sync + 'static {
    /// The user with what checking their credentials needs; `None` if unknown.
    fn user_secret(&self, username: String) -> StoreFuture<'_, Option<UserSecret>>;
    /// The key with this secret hash and its owner; `None` if no key has it.
    fn find_key(&self, secret_sha256: String) -> StoreFuture<'_, Option<KeyMatch>>;
}

/// The audit trail's write side: the audit layer (a reservation before any work, the row
/// when the answer is known), authentication refusals, `/health` and a graceful stop.
///
/// Promises: rows are written off the request path in batches, never lost while the
/// process lives (queued, then spilled to a local file when the storage is away) and never
/// written twice; the queue is bounded and a request that finds no room is refused before
/// any work is done for it. Nothing here fails the caller but `flush`.
pub trait AuditSink: Send + Sync + 'static {
    /// Queues an audit row without room taken first (a refused authentication); it is
    /// written by the batch writer, and counts against the queue's bound.
    fn record_audit(&self, row: AuditRow);
    /// Room for one audit row in the bounded queue; `None` when it is full (the request is
    /// then refused before any work is done for it).
    fn reserve_audit(&self) -> Option<AuditSlot>;
    /// Queues an audit row in the room `slot` took; it is written by the batch writer.
    fn record_reserved(&self, slot: AuditSlot, row: AuditRow);
    /// The audit queue's depth and the writer's health.
    fn audit_health(&self) -> AuditHealth;
    /// Resolves once every write queued before the call (audit rows and captures: they
    /// share the writer) is durable.
    fn flush(&self) -> StoreFuture<'_, ()>;
}

/// The audit trail's read side, for the admin API's `/v1/audit`: a page of rows as written,
/// filtered by time, company, user, service, route, method group and target, sorted by a
/// listed field (else time). Never an error for the caller's filters.
pub trait AuditLog: Send + Sync + 'static {
    /// A page of the audit trail.
    fn list_audit(&self, q: AuditQuery) -> StoreFuture<'_, Page<AuditRow, u64>>;
}

/// Points per user and local day, for the admin API's statistics and the XLSX report.
/// Apart from [`AuditLog`] because it is an aggregate, not the rows: a backend computes it
/// where the data is (SQL on PostgreSQL) and answers it from roll-ups once the rows are
/// past their retention. `Invalid` for a day that is not `YYYY-MM-DD`.
pub trait Statistics: Send + Sync + 'static {
    /// Daily points per user, service and method group, ordered by user, day, service, group;
    /// days past the audit retention are read from their roll-ups.
    fn statistics(&self, q: StatsQuery) -> StoreFuture<'_, Vec<StatRow>>;
}

/// Users' quotas, for the admin API (which sets them) and the quota layer (which reads them
/// and, after a restart, the points already used). Putting quotas for an unknown user is
/// `NotFound`; deleting what is not there deletes nothing (`Ok(0)`); a user's quotas go
/// with the user.
pub trait QuotaSettings: Send + Sync + 'static {
    /// Sets the user's quotas (seed 003's `{services: […]}`): the base quotas, or those of
    /// the dated window `from..=to` (`YYYY-MM-DD`), replacing what was there.
    fn put_quotas(
        &self,
        username: String,
        window: Option<(String, String)>,
        services: serde_json::Value,
    ) -> StoreFuture<'_, ()>;
    /// The user's base quotas and dated windows (empty for an unknown user).
    fn get_quotas(&self, username: String) -> StoreFuture<'_, Quotas>;
    /// Removes the base quotas and every window (`None`) or one window; how many went.
    fn delete_quotas(
        &self,
        username: String,
        window: Option<(String, String)>,
    ) -> StoreFuture<'_, u64>;
    /// Points of `username`'s answered requests to `service`/`method_group` in
    /// `[from_ms, to_ms)` (audit rows, 429 refusals excluded; a row given back under
    /// `count = "success"` holds 0 points; the daily roll-ups of rows past their retention
    /// by the local days that start in the range): where a quota counter starts after a
    /// restart or after forgetting an idle user.
    fn points_used(
        &self,
        username: String,
        service: String,
        method_group: String,
        from_ms: i64,
        to_ms: i64,
    ) -> StoreFuture<'_, u64>;
}

/// Captured request and answer bodies: the translate layer records them (queued to the
/// audit writer, off the request path), the admin API reads one back by tracecode, flow and
/// stage, and the retention task purges the old ones. A body not captured is `Ok(None)`.
pub trait Captures: Send + Sync + 'static {
    /// Queues the captured bodies of one request.
    fn record_capture(&self, tracecode: String, time_ms: i64, bodies: Vec<CapturedBody>);
    /// One captured body of a request.
    fn get_capture(
        &self,
        tracecode: String,
        flow: Flow,
        stage: u8,
    ) -> StoreFuture<'_, Option<CapturedBody>>;
    /// Deletes captures older than `before_ms`; returns how many bodies went.
    fn purge_captures(&self, before_ms: i64) -> StoreFuture<'_, u64>;
}

/// Every part of the store: what a backend implements, and what the gateway opens from
/// config and hands out in parts. No caller holds it but the wiring (the gateway, the CLI's
/// graceful stop and retention task, tests).
pub trait Store:
    Directory + Credentials + AuditSink + AuditLog + Statistics + QuotaSettings + Captures
{
}

impl<T> Store for T where
    T: Directory
        + Credentials
        + AuditSink
        + AuditLog
        + Statistics
        + QuotaSettings
        + Captures
        + ?Sized
{
}
