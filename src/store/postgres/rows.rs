//! Reading rows into the store's types, the errors PostgreSQL reports mapped to the
//! store's (as SQLite's are), and the parameters the queries bind (built as a query grows,
//! or from the shared builders of `super::super::query`).

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

/// Which rule of `api_keys` an insert broke, if it broke one: the foreign key (its user),
/// the primary key (its id) or the unique hash (its secret).
pub(super) fn key_clash(e: &tokio_postgres::Error) -> Option<KeyClash> {
    let db = e.as_db_error()?;
    if *db.code() == SqlState::FOREIGN_KEY_VIOLATION {
        Some(KeyClash::NoUser)
    } else if *db.code() == SqlState::UNIQUE_VIOLATION {
        Some(match db.constraint() {
            Some("api_keys_pkey") => KeyClash::Id,
            _ => KeyClash::Secret,
        })
    } else {
        None
    }
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
    /// The shared builders' arguments, each boxed as the client takes it.
    pub(super) fn of(args: &[Arg]) -> Self {
        let mut p = Self::default();
        for a in args {
            match a {
                Arg::Text(t) => p.push(t.clone()),
                Arg::Int(n) => p.push(*n),
            };
        }
        p
    }

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
        roles: query::roles_of(&roles),
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
        None => Err(errors::unknown_company(key)),
    }
}

/// Seed 003's user statistics over the users `w` matches.
pub(super) async fn user_stats(client: &Client, w: &Where) -> Result<UserStats, StoreError> {
    let r = client
        .query_one(
            &query::user_stats_sql(&w.clause()),
            &Params::of(w.args()).refs(),
        )
        .await
        .map_err(pg)?;
    let n = |i: usize| r.get::<_, i64>(i) as u64;
    Ok(UserStats {
        total: n(0),
        active: n(1),
        blocked: n(2),
        admins: n(3),
    })
}
