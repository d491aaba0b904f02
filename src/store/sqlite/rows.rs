//! Reading rows into the store's types, and the small SQL helpers the queries share
//! (`LIKE` patterns, `ORDER BY` from a listed field, constraint errors).

use super::*;

pub(super) fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// `%text%` for LIKE, with the caller's `%`, `_` and `\` taken literally.
pub(super) fn like(text: &str) -> String {
    let mut s = String::with_capacity(text.len() + 2);
    s.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('%');
    s
}

pub(super) fn order(
    field: Option<&str>,
    allowed: &[(&str, &str)],
    default: &str,
    desc: bool,
) -> String {
    let col = field
        .and_then(|f| allowed.iter().find(|(name, _)| *name == f).map(|(_, c)| *c))
        .unwrap_or(default);
    format!(
        " ORDER BY {col} {} , rowid",
        if desc { "DESC" } else { "ASC" }
    )
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
        roles: roles
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
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

/// A unique-key violation is the caller's conflict; anything else is the store's failure.
pub(super) fn conflict_or_backend(e: rusqlite::Error, what: impl FnOnce() -> String) -> StoreError {
    if is_constraint(&e) {
        StoreError::Conflict(what())
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
        None => Err(StoreError::Invalid(format!(
            "company `{key}` does not exist"
        ))),
    }
}

pub(super) fn is_constraint(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation)
}

pub(super) fn user_stats(
    conn: &Connection,
    cond: &str,
    args: &[String],
) -> Result<UserStats, StoreError> {
    let sql = format!(
        "SELECT COUNT(*), COALESCE(SUM(enabled), 0), COALESCE(SUM(1 - enabled), 0),
                COALESCE(SUM(CASE WHEN (',' || roles || ',') LIKE '%,ADMIN,%' THEN 1 ELSE 0 END), 0)
         FROM users WHERE {cond}"
    );
    conn.query_row(&sql, params_from_iter(args.iter()), |r| {
        Ok(UserStats {
            total: r.get::<_, i64>(0)? as u64,
            active: r.get::<_, i64>(1)? as u64,
            blocked: r.get::<_, i64>(2)? as u64,
            admins: r.get::<_, i64>(3)? as u64,
        })
    })
    .map_err(backend)
}
