//! The store's data: what its methods take and answer (companies, users, keys, audit rows,
//! quotas, statistics, list queries and pages) and [`StoreError`], plain values with no SQL
//! type in them, the same for every backend.

use std::sync::Arc;

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
    /// The user, as [`super::Directory::get_user`] returns it.
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

#[cfg(test)]
impl Company {
    /// An enabled company with no detail: the fixture unit tests share.
    pub(crate) fn fixture(key: &str) -> Self {
        Self {
            key: key.into(),
            detail: None,
            enabled: true,
        }
    }
}

#[cfg(test)]
impl User {
    /// An enabled USER of `company` with no contact details, in UTC: the fixture unit tests
    /// share.
    pub(crate) fn fixture(username: &str, company: &str) -> Self {
        Self {
            username: username.into(),
            name: None,
            email: None,
            phone: None,
            company_key: company.into(),
            enabled: true,
            roles: vec!["USER".into()],
            timezone: 0,
        }
    }
}
