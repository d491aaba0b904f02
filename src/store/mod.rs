//! The store: companies, users, API keys and the audit trail, behind the [`Store`] trait.
//!
//! The trait speaks plain data (no SQLite types), so the embedded implementation
//! ([`SqliteStore`]) can be joined by a shared one (Redis) for multi-node deployments without
//! the admin API or the identity provider changing. Writes made on behalf of proxied requests
//! (audit rows) are queued and written in batches by a writer off the request path;
//! [`Store::flush`] waits until everything queued is on disk, which a graceful stop calls.

mod sqlite;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use sqlite::SqliteStore;

use crate::capture::{CapturedBody, Flow};

/// A company (seed 003): `key` `\w+` 3..256, `detail` ≤ 1024. `enabled` is Rosetta's
/// addition: a blocked company's users and keys are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Company {
    pub key: String,
    pub detail: Option<String>,
    pub enabled: bool,
}

/// A user (seed 003), without the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub username: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub company_key: String,
    pub enabled: bool,
    /// `ADMIN`, `PARTNER`, `USER`, `AUDITOR`.
    pub roles: Vec<String>,
    pub timezone: i32,
}

/// What checking a password or a key needs to know about a user.
#[derive(Debug, Clone)]
pub struct UserSecret {
    pub user: User,
    /// An argon2 PHC string; `None` for users that sign in with keys only.
    pub password_hash: Option<String>,
    pub company_enabled: bool,
}

/// An API key as listed: never the secret, never its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyInfo {
    pub id: String,
    pub username: String,
    /// The first characters of the secret, so a user can tell their keys apart.
    pub prefix: String,
    pub created_ms: i64,
    pub expires_ms: Option<i64>,
    pub revoked: bool,
}

/// A key found by its hash, with its owner.
#[derive(Debug, Clone)]
pub struct KeyMatch {
    pub key: ApiKeyInfo,
    pub user: User,
    pub company_enabled: bool,
}

/// Paging, text filter and sorting of a list (seed 003's parameters, already validated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub offset: u32,
    pub limit: u32,
    /// Case-insensitive substring of the text fields.
    pub filter: Option<String>,
    /// A field name the caller validated against the list's sortable fields.
    pub sort_field: Option<String>,
    pub descending: bool,
}

/// Seed 003's `user_group`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserGroup {
    Total,
    Active,
    Blocked,
    Admins,
}

/// A user list request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserQuery {
    pub list: ListQuery,
    pub company_key: Option<String>,
    pub group: UserGroup,
}

/// Seed 003's user list statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UserStats {
    pub total: u64,
    pub active: u64,
    pub blocked: u64,
    pub admins: u64,
}

/// One proxied request, as the audit trail keeps it. A row is made on every proxied request,
/// so it holds only what the request already has (shared strings, numbers): what derives
/// from them (the client label, the fingerprint's text) is made by the writer, off the
/// request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub time_ms: i64,
    pub username: Arc<str>,
    pub company_key: Arc<str>,
    pub tracecode: Arc<str>,
    pub server: Arc<str>,
    /// The pack's service name.
    pub service: Arc<str>,
    /// The route id.
    pub operation: Arc<str>,
    pub method_group: Arc<str>,
    pub points: u32,
    pub duration_ms: u64,
    pub status: u16,
    /// Identifies "the same request" for unique points: a hash of method, path and query
    /// (stored as 16 hex digits).
    pub fingerprint: u64,
    /// The upstream company ids the request acted on (those its route checked), usually 0
    /// to 2, in the route's order. Shared, like the strings above: the row is made on the
    /// request path.
    pub targets: Arc<[Arc<str>]>,
}

impl AuditRow {
    /// `company_|_user`, as `tracedata.client` reads.
    pub fn client(&self) -> String {
        crate::identity::client_label(&self.company_key, &self.username)
    }
}

/// A user's quotas as stored: base and dated windows, each seed 003's `services` list.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Quotas {
    pub base: Option<serde_json::Value>,
    /// `(from, to, services)`, ordered by `from`.
    pub windows: Vec<(String, String, serde_json::Value)>,
}

/// A statistics request: local days `from_day..=to_day` (`YYYY-MM-DD`, in each user's
/// timezone), optionally one user or one company.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsQuery {
    pub from_day: String,
    pub to_day: String,
    pub username: Option<String>,
    pub company_key: Option<String>,
}

/// Points of one user, day, service and method group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatRow {
    pub username: String,
    pub day: String,
    pub service: String,
    pub method_group: String,
    pub points: u64,
    /// Points counted once per distinct request fingerprint that day.
    pub unique_points: u64,
}

/// An audit query (seed 003's filters; `from_ms`/`to_ms` already defaulted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    pub offset: u32,
    pub limit: u32,
    pub from_ms: i64,
    pub to_ms: i64,
    pub company_key: Option<String>,
    pub username: Option<String>,
    pub service: Option<String>,
    pub operation: Option<String>,
    pub method_group: Option<String>,
    /// Only rows whose targets hold exactly this upstream company id.
    pub target: Option<String>,
    pub sort_field: Option<String>,
    pub descending: bool,
}

/// A list page with seed 003's totals: `overall` (everything) and `filter` (matching).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T, S> {
    pub items: Vec<T>,
    pub overall: S,
    pub filtered: S,
}

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("{0} already exists")]
    Conflict(String),
    #[error("{0} not found")]
    NotFound(String),
    /// The operation breaks a rule of the data (a user in an unknown company).
    #[error("{0}")]
    Invalid(String),
    #[error("the store failed: {0}")]
    Backend(String),
}

/// A boxed store future.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Persistent state. Every method is safe to call concurrently.
pub trait Store: Send + Sync + 'static {
    fn create_company(&self, company: Company) -> StoreFuture<'_, ()>;
    fn get_company(&self, key: String) -> StoreFuture<'_, Company>;
    /// Replaces the company `key` (which may be renamed to `company.key`).
    fn update_company(&self, key: String, company: Company) -> StoreFuture<'_, ()>;
    /// Refused (`Invalid`) while the company has users.
    fn delete_company(&self, key: String) -> StoreFuture<'_, ()>;
    fn list_companies(&self, q: ListQuery) -> StoreFuture<'_, Page<Company, u64>>;

    fn create_user(&self, user: User, password_hash: Option<String>) -> StoreFuture<'_, ()>;
    fn get_user(&self, username: String) -> StoreFuture<'_, User>;
    /// Replaces the user; `password_hash: None` keeps the current password.
    fn update_user(&self, user: User, password_hash: Option<String>) -> StoreFuture<'_, ()>;
    /// Deletes the user and their keys.
    fn delete_user(&self, username: String) -> StoreFuture<'_, ()>;
    fn list_users(&self, q: UserQuery) -> StoreFuture<'_, Page<User, UserStats>>;
    fn user_count(&self) -> StoreFuture<'_, u64>;
    fn user_secret(&self, username: String) -> StoreFuture<'_, Option<UserSecret>>;

    /// Stores a key by the SHA-256 of its secret.
    fn create_key(&self, key: ApiKeyInfo, secret_sha256: String) -> StoreFuture<'_, ()>;
    fn list_keys(&self, username: String) -> StoreFuture<'_, Vec<ApiKeyInfo>>;
    fn revoke_key(&self, username: String, id: String) -> StoreFuture<'_, ()>;
    fn find_key(&self, secret_sha256: String) -> StoreFuture<'_, Option<KeyMatch>>;

    /// Queues an audit row; it is written by the batch writer.
    fn record_audit(&self, row: AuditRow);
    fn list_audit(&self, q: AuditQuery) -> StoreFuture<'_, Page<AuditRow, u64>>;
    /// Daily points per user, service and method group, ordered by user, day, service, group.
    fn statistics(&self, q: StatsQuery) -> StoreFuture<'_, Vec<StatRow>>;
    /// Sets the user's quotas (seed 003's `{services: […]}`): the base quotas, or those of
    /// the dated window `from..=to` (`YYYY-MM-DD`).
    fn put_quotas(
        &self,
        username: String,
        window: Option<(String, String)>,
        services: serde_json::Value,
    ) -> StoreFuture<'_, ()>;
    /// The user's base quotas and dated windows.
    fn get_quotas(&self, username: String) -> StoreFuture<'_, Quotas>;
    /// Removes the base quotas and every window (`None`) or one window; how many went.
    fn delete_quotas(
        &self,
        username: String,
        window: Option<(String, String)>,
    ) -> StoreFuture<'_, u64>;
    /// Points of `username`'s answered requests to `service`/`method_group` in
    /// `[from_ms, to_ms)` (audit rows; 429 refusals excluded, server errors too unless
    /// `with_server_errors`, as under `count = "all"`): where a quota counter starts after a
    /// restart or after forgetting an idle user.
    fn points_used(
        &self,
        username: String,
        service: String,
        method_group: String,
        from_ms: i64,
        to_ms: i64,
        with_server_errors: bool,
    ) -> StoreFuture<'_, u64>;
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
    /// Resolves once every write queued before the call is durable.
    fn flush(&self) -> StoreFuture<'_, ()>;
}
