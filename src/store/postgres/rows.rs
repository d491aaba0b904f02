//! Reading rows into the store's types, the errors PostgreSQL reports mapped to the
//! store's (as SQLite's are), and the SQL helpers the queries share (`ORDER BY` from a
//! listed field, parameters built as a query grows).

use super::*;

/// The store's failure, with PostgreSQL's message (never the URL, so never a password).
pub(super) fn pg(e: tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) => StoreError::Backend(format!("{}: {}", db.code().code(), db.message())),
        None => StoreError::Backend(e.to_string()),
    }
}

/// Whether `e` is a constraint violation (SQLSTATE class 23: unique, foreign key, not null,
/// check), what SQLite reports as `SQLITE_CONSTRAINT`.
pub(super) fn is_constraint(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| c.code().starts_with("23"))
}

/// A constraint violation is `what` (the caller's conflict, invalid data…); anything else
/// is the store's failure.
pub(super) fn constraint_or_backend(
    e: tokio_postgres::Error,
    what: impl FnOnce() -> StoreError,
) -> StoreError {
    if is_constraint(&e) { what() } else { pg(e) }
}

/// A query's parameters as it is built: `push` gives the `$n` to write.
#[derive(Default)]
pub(super) struct Params(Vec<Box<dyn ToSql + Sync + Send>>);

impl Params {
    /// Adds `v`; its placeholder (`$1`, `$2`…).
    pub(super) fn push(&mut self, v: impl ToSql + Sync + Send + 'static) -> String {
        self.0.push(Box::new(v));
        format!("${}", self.0.len())
    }

    /// The parameters as the client takes them.
    pub(super) fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.0.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect()
    }
}

/// `ORDER BY` the listed column of `field` (else `default`), with SQLite's order of NULLs
/// (first ascending, last descending) and `tie` (insertion order, SQLite's `rowid`) last.
pub(super) fn order(
    field: Option<&str>,
    allowed: &[(&str, &str)],
    default: &str,
    desc: bool,
    tie: &str,
) -> String {
    let col = field
        .and_then(|f| allowed.iter().find(|(name, _)| *name == f).map(|(_, c)| *c))
        .unwrap_or(default);
    let dir = if desc {
        "DESC NULLS LAST"
    } else {
        "ASC NULLS FIRST"
    };
    format!(" ORDER BY {col} {dir}, {tie}")
}

pub(super) fn company_row(r: &Row) -> Company {
    Company {
        key: r.get(0),
        detail: r.get(1),
        enabled: r.get(2),
    }
}

pub(super) const USER_COLS: &str =
    "username, name, email, phone, company_key, enabled, roles, timezone";

/// A user read from `USER_COLS` starting at column `at`.
pub(super) fn user_row_at(r: &Row, at: usize) -> User {
    let roles: String = r.get(at + 6);
    User {
        username: r.get(at),
        name: r.get(at + 1),
        email: r.get(at + 2),
        phone: r.get(at + 3),
        company_key: r.get(at + 4),
        enabled: r.get(at + 5),
        roles: roles
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        timezone: r.get(at + 7),
    }
}

pub(super) fn key_row(r: &Row) -> ApiKeyInfo {
    ApiKeyInfo {
        id: r.get(0),
        username: r.get(1),
        prefix: r.get(2),
        created_ms: r.get(3),
        expires_ms: r.get(4),
        revoked: r.get(5),
    }
}

/// `Invalid` unless the company `key` exists (users always belong to one).
pub(super) async fn require_company(client: &Client, key: &str) -> Result<(), StoreError> {
    let found = client
        .query_opt("SELECT 1 FROM companies WHERE key = $1", &[&key])
        .await
        .map_err(pg)?;
    match found {
        Some(_) => Ok(()),
        None => Err(StoreError::Invalid(format!(
            "company `{key}` does not exist"
        ))),
    }
}

/// Seed 003's user statistics over the users matching `cond`.
pub(super) async fn user_stats(
    client: &Client,
    cond: &str,
    params: &Params,
) -> Result<UserStats, StoreError> {
    let sql = format!(
        "SELECT COUNT(*), COUNT(*) FILTER (WHERE enabled), COUNT(*) FILTER (WHERE NOT enabled),
                COUNT(*) FILTER (WHERE (',' || roles || ',') LIKE '%,ADMIN,%')
         FROM users WHERE {cond}"
    );
    let r = client.query_one(&sql, &params.refs()).await.map_err(pg)?;
    let n = |i: usize| r.get::<_, i64>(i) as u64;
    Ok(UserStats {
        total: n(0),
        active: n(1),
        blocked: n(2),
        admins: n(3),
    })
}
