//! The store: companies, users, API keys and the audit trail, behind the [`Store`] trait.
//!
//! The trait speaks plain data (no SQL types): the embedded implementation ([`SqliteStore`],
//! one node) and the shared one ([`PgStore`], several replicas on one PostgreSQL) behave
//! alike, so the admin API and the identity provider do not know which one runs. Writes made on behalf of proxied requests
//! (audit rows) are queued and written in batches by a writer off the request path;
//! [`Store::flush`] waits until everything queued is on disk, which a graceful stop calls.
//! The audit queue is bounded: a request takes room for its row ([`Store::reserve_audit`])
//! before any work is done for it, and is refused when there is none.

mod audit_queue;
mod postgres;
mod rollup;
mod spill;
mod sqlite;
mod writer;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use audit_queue::{AuditHealth, AuditOptions, AuditSlot, WriterState};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use crate::capture::{CapturedBody, Flow};

/// A company (seed 003): `key` `\w+` 3..256, `detail` ≤ 1024. `enabled` is Rosetta's
/// addition: a blocked company's users and keys are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Company {
    /// The company's identifier, unique; users name it in `company_key`.
    pub key: String,
    /// A free-text description; `None` when not given.
    pub detail: Option<String>,
    /// `false` for a blocked company.
    pub enabled: bool,
}

/// A user (seed 003), without the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The sign-in name, unique across companies.
    pub username: String,
    /// The person's display name, if given.
    pub name: Option<String>,
    /// Contact e-mail, if given.
    pub email: Option<String>,
    /// Contact phone number, if given.
    pub phone: Option<String>,
    /// The key of the company the user belongs to.
    pub company_key: String,
    /// `false` for a blocked user: their password and keys are refused.
    pub enabled: bool,
    /// `ADMIN`, `PARTNER`, `USER`, `AUDITOR`.
    pub roles: Vec<String>,
    /// Offset from UTC in whole hours (-12..=12): sets the user's local day for quotas.
    pub timezone: i32,
}

/// What checking a password or a key needs to know about a user.
#[derive(Debug, Clone)]
pub struct UserSecret {
    /// The user, as [`Store::get_user`] returns it.
    pub user: User,
    /// An argon2 PHC string; `None` for users that sign in with keys only.
    pub password_hash: Option<String>,
    /// Whether the user's company is enabled.
    pub company_enabled: bool,
}

/// An API key as listed: never the secret, never its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyInfo {
    /// The key's identifier, shown to its owner and used to revoke it.
    pub id: String,
    /// The user who owns the key.
    pub username: String,
    /// The first characters of the secret, so a user can tell their keys apart.
    pub prefix: String,
    /// When the key was made, in Unix milliseconds.
    pub created_ms: i64,
    /// When the key stops working, in Unix milliseconds; `None` never expires.
    pub expires_ms: Option<i64>,
    /// Whether the key was revoked (it is kept, listed, and refused).
    pub revoked: bool,
}

/// A key found by its hash, with its owner.
#[derive(Debug, Clone)]
pub struct KeyMatch {
    /// The key, as listed.
    pub key: ApiKeyInfo,
    /// The key's owner.
    pub user: User,
    /// Whether the owner's company is enabled.
    pub company_enabled: bool,
}

/// Paging, text filter and sorting of a list (seed 003's parameters, already validated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// How many items to skip.
    pub offset: u32,
    /// The most items to return.
    pub limit: u32,
    /// Case-insensitive substring of the text fields.
    pub filter: Option<String>,
    /// A field name the caller validated against the list's sortable fields.
    pub sort_field: Option<String>,
    /// Sort in descending order (ascending when `false`).
    pub descending: bool,
}

/// Seed 003's `user_group`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserGroup {
    /// Every user.
    Total,
    /// Enabled users.
    Active,
    /// Blocked (disabled) users.
    Blocked,
    /// Users with the `ADMIN` role.
    Admins,
}

/// A user list request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserQuery {
    /// Paging, filter and sorting.
    pub list: ListQuery,
    /// Only users of this company; `None` for every company.
    pub company_key: Option<String>,
    /// Which users to list.
    pub group: UserGroup,
}

/// Seed 003's user list statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UserStats {
    /// Every user.
    pub total: u64,
    /// Enabled users.
    pub active: u64,
    /// Blocked users.
    pub blocked: u64,
    /// Users with the `ADMIN` role.
    pub admins: u64,
}

/// One proxied request, as the audit trail keeps it. A row is made on every proxied request,
/// so it holds only what the request already has (shared strings, numbers): what derives
/// from them (the client label, the fingerprint's text) is made by the writer, off the
/// request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    /// When the request arrived, in Unix milliseconds.
    pub time_ms: i64,
    /// The authenticated user.
    pub username: Arc<str>,
    /// The user's company.
    pub company_key: Arc<str>,
    /// The request's tracecode, as the client saw it.
    pub tracecode: Arc<str>,
    /// The name of the node that served the request.
    pub server: Arc<str>,
    /// The pack's service name.
    pub service: Arc<str>,
    /// The route id.
    pub operation: Arc<str>,
    /// The route's method group (`READ`, `WRITE`…), as quotas count it.
    pub method_group: Arc<str>,
    /// Points the request was charged.
    pub points: u32,
    /// Time from arrival to answer, in milliseconds.
    pub duration_ms: u64,
    /// The HTTP status answered to the client.
    pub status: u16,
    /// Identifies "the same request" for unique points: a hash of method, path and query
    /// (stored as 16 hex digits).
    pub fingerprint: u64,
    /// The upstream company ids the request acted on (those its route checked), usually 0
    /// to 2, in the route's order. Shared, like the strings above: the row is made on the
    /// request path.
    pub targets: Arc<[Arc<str>]>,
    /// The client's address (the connection's peer), when known.
    pub ip: Option<std::net::IpAddr>,
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
    /// Seed 003's `services` list of the base quotas; `None` when unset.
    pub base: Option<serde_json::Value>,
    /// `(from, to, services)`, ordered by `from`.
    pub windows: Vec<(String, String, serde_json::Value)>,
}

/// A statistics request: local days `from_day..=to_day` (`YYYY-MM-DD`, in each user's
/// timezone), optionally one user or one company.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsQuery {
    /// First local day, `YYYY-MM-DD`.
    pub from_day: String,
    /// Last local day, `YYYY-MM-DD`, included.
    pub to_day: String,
    /// Only this user; `None` for every user.
    pub username: Option<String>,
    /// Only this company's users; `None` for every company.
    pub company_key: Option<String>,
}

/// Points of one user, day, service and method group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatRow {
    /// The user who made the requests.
    pub username: String,
    /// The user's local day, `YYYY-MM-DD`.
    pub day: String,
    /// The pack's service name.
    pub service: String,
    /// The routes' method group.
    pub method_group: String,
    /// Points charged that day.
    pub points: u64,
    /// Points counted once per distinct request fingerprint that day.
    pub unique_points: u64,
}

/// An audit query (seed 003's filters; `from_ms`/`to_ms` already defaulted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    /// How many rows to skip.
    pub offset: u32,
    /// The most rows to return.
    pub limit: u32,
    /// Earliest request time, in Unix milliseconds, included.
    pub from_ms: i64,
    /// End of the time range, in Unix milliseconds, excluded.
    pub to_ms: i64,
    /// Only this company's requests; `None` for all.
    pub company_key: Option<String>,
    /// Only this user's requests; `None` for all.
    pub username: Option<String>,
    /// Only this service's requests; `None` for all.
    pub service: Option<String>,
    /// Only this route id's requests; `None` for all.
    pub operation: Option<String>,
    /// Only this method group's requests; `None` for all.
    pub method_group: Option<String>,
    /// Only rows whose targets hold exactly this upstream company id.
    pub target: Option<String>,
    /// A field name the caller validated as sortable; `None` sorts by time.
    pub sort_field: Option<String>,
    /// Sort in descending order (ascending when `false`).
    pub descending: bool,
}

/// A list page with seed 003's totals: `overall` (everything) and `filter` (matching).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T, S> {
    /// The items of this page.
    pub items: Vec<T>,
    /// Totals over everything, ignoring the filters.
    pub overall: S,
    /// Totals over what matches the filters.
    pub filtered: S,
}

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Creating something whose key is taken; holds what.
    #[error("{0} already exists")]
    Conflict(String),
    /// The named thing does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The operation breaks a rule of the data (a user in an unknown company).
    #[error("{0}")]
    Invalid(String),
    /// The storage itself failed (I/O, SQL, a closed writer).
    #[error("the store failed: {0}")]
    Backend(String),
}

/// A boxed store future.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Persistent state. Every method is safe to call concurrently.
pub trait Store: Send + Sync + 'static {
    /// Adds a company; `Conflict` if its key is taken.
    fn create_company(&self, company: Company) -> StoreFuture<'_, ()>;
    /// The company `key`.
    fn get_company(&self, key: String) -> StoreFuture<'_, Company>;
    /// Replaces the company `key` (which may be renamed to `company.key`).
    fn update_company(&self, key: String, company: Company) -> StoreFuture<'_, ()>;
    /// Refused (`Invalid`) while the company has users.
    fn delete_company(&self, key: String) -> StoreFuture<'_, ()>;
    /// A page of companies.
    fn list_companies(&self, q: ListQuery) -> StoreFuture<'_, Page<Company, u64>>;

    /// Adds a user, with an argon2 PHC password hash or none (keys only).
    fn create_user(&self, user: User, password_hash: Option<String>) -> StoreFuture<'_, ()>;
    /// The user `username`.
    fn get_user(&self, username: String) -> StoreFuture<'_, User>;
    /// Replaces the user; `password_hash: None` keeps the current password.
    fn update_user(&self, user: User, password_hash: Option<String>) -> StoreFuture<'_, ()>;
    /// Deletes the user and their keys.
    fn delete_user(&self, username: String) -> StoreFuture<'_, ()>;
    /// A page of users, with seed 003's statistics.
    fn list_users(&self, q: UserQuery) -> StoreFuture<'_, Page<User, UserStats>>;
    /// How many users there are.
    fn user_count(&self) -> StoreFuture<'_, u64>;
    /// The user with what checking their credentials needs; `None` if unknown.
    fn user_secret(&self, username: String) -> StoreFuture<'_, Option<UserSecret>>;

    /// Stores a key by the SHA-256 of its secret.
    fn create_key(&self, key: ApiKeyInfo, secret_sha256: String) -> StoreFuture<'_, ()>;
    /// The user's keys, revoked ones included.
    fn list_keys(&self, username: String) -> StoreFuture<'_, Vec<ApiKeyInfo>>;
    /// Revokes the user's key `id`.
    fn revoke_key(&self, username: String, id: String) -> StoreFuture<'_, ()>;
    /// The key with this secret hash and its owner; `None` if no key has it.
    fn find_key(&self, secret_sha256: String) -> StoreFuture<'_, Option<KeyMatch>>;

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
    /// A page of the audit trail.
    fn list_audit(&self, q: AuditQuery) -> StoreFuture<'_, Page<AuditRow, u64>>;
    /// Daily points per user, service and method group, ordered by user, day, service, group;
    /// days past the audit retention are read from their roll-ups.
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
