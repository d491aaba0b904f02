//! Reading rows into the store's types, and the small SQL helpers the queries share
//! (arguments bound from the shared builders of `super::super::query`, constraint errors).

use super::*;

pub(super) fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// `w`'s arguments as SQLite binds them.
pub(super) fn args(w: &Where) -> ParamsFromIter<impl Iterator<Item = Value> + '_> {
    params_from_iter(w.args().iter().map(value))
}

/// An argument as SQLite binds it.
pub(super) fn value(a: &Arg) -> Value {
    match a {
        Arg::Text(t) => Value::Text(t.clone()),
        Arg::Int(n) => Value::Integer(*n),
    }
}

pub(super) fn company_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Company> {
    Ok(Company {
        key: r.get(0)?,
        detail: r.get(1)?,
        enabled: r.get(2)?,
    })
}

pub(super) const USER_COLS: &str =
    "username, name, email, phone, company_key, enabled, roles, timezone";

pub(super) fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    user_row_at(r, 0)
}

/// A user read from `USER_COLS` starting at column `at`.
pub(super) fn user_row_at(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<User> {
    let roles: String = r.get(at + 6)?;
    Ok(User {
        username: r.get(at)?,
        name: r.get(at + 1)?,
        email: r.get(at + 2)?,
        phone: r.get(at + 3)?,
        company_key: r.get(at + 4)?,
        enabled: r.get(at + 5)?,
        roles: query::roles_of(&roles),
        timezone: r.get(at + 7)?,
    })
}

pub(super) fn key_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApiKeyInfo> {
    Ok(ApiKeyInfo {
        id: r.get(0)?,
        username: r.get(1)?,
        prefix: r.get(2)?,
        created_ms: r.get(3)?,
        expires_ms: r.get(4)?,
        revoked: r.get(5)?,
    })
}

/// A constraint violation is `what` (the caller's conflict, invalid data…); anything else
/// is the store's failure.
pub(super) fn constraint_or_backend(
    e: rusqlite::Error,
    what: impl FnOnce() -> StoreError,
) -> StoreError {
    if is_constraint(&e) {
        what()
    } else {
        backend(e)
    }
}

/// `Invalid` unless the company `key` exists (users always belong to one).
pub(super) fn require_company(conn: &Connection, key: &str) -> Result<(), StoreError> {
    let found: Option<String> = conn
        .query_row("SELECT key FROM companies WHERE key = ?1", [key], |r| {
            r.get(0)
        })
        .optional()
        .map_err(backend)?;
    match found {
        Some(_) => Ok(()),
        None => Err(errors::unknown_company(key)),
    }
}

/// Which rule of `api_keys` an insert broke, if it broke one: the foreign key (its user),
/// the primary key (its id) or the unique hash (its secret).
pub(super) fn key_clash(e: &rusqlite::Error) -> Option<KeyClash> {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Some(match f.extended_code {
                rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY => KeyClash::NoUser,
                rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY => KeyClash::Id,
                _ => KeyClash::Secret,
            })
        }
        _ => None,
    }
}

pub(super) fn is_constraint(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation)
}

/// Seed 003's user statistics over the users `w` matches.
pub(super) fn user_stats(conn: &Connection, w: &Where) -> Result<UserStats, StoreError> {
    conn.query_row(&query::user_stats_sql(&w.clause()), args(w), |r| {
        Ok(UserStats {
            total: r.get::<_, i64>(0)? as u64,
            active: r.get::<_, i64>(1)? as u64,
            blocked: r.get::<_, i64>(2)? as u64,
            admins: r.get::<_, i64>(3)? as u64,
        })
    })
    .map_err(backend)
}
