//! The directory (companies, users, keys) and the credential lookups on SQLite: the admin
//! API's writes and the lookups of authentication run on the lookup connection, its lists
//! on the read connection.

use super::*;

impl Directory for SqliteStore {
    fn create_company(&self, c: Company) -> StoreFuture<'_, ()> {
        self.with(move |conn| {
            conn.execute(
                "INSERT INTO companies (key, detail, enabled) VALUES (?1, ?2, ?3)",
                params![c.key, c.detail, c.enabled],
            )
            .map(|_| ())
            .map_err(|e| constraint_or_backend(e, || errors::company_taken(&c.key)))
        })
    }

    fn get_company(&self, key: String) -> StoreFuture<'_, Company> {
        self.with(move |conn| {
            conn.query_row(
                "SELECT key, detail, enabled FROM companies WHERE key = ?1",
                [&key],
                company_row,
            )
            .optional()
            .map_err(backend)?
            .ok_or_else(|| errors::no_company(&key))
        })
    }

    fn update_company(&self, key: String, c: Company) -> StoreFuture<'_, ()> {
        self.with(move |conn| {
            let n = conn
                .execute(
                    "UPDATE companies SET key = ?1, detail = ?2, enabled = ?3 WHERE key = ?4",
                    params![c.key, c.detail, c.enabled, key],
                )
                .map_err(|e| constraint_or_backend(e, || errors::company_taken(&c.key)))?;
            if n == 0 {
                return Err(errors::no_company(&key));
            }
            Ok(())
        })
    }

    fn delete_company(&self, key: String) -> StoreFuture<'_, ()> {
        self.with(move |conn| {
            let users: i64 = conn
                .query_row(
                    "SELECT COUNT(*) FROM users WHERE company_key = ?1",
                    [&key],
                    |r| r.get(0),
                )
                .map_err(backend)?;
            if users > 0 {
                return Err(errors::company_has_users(&key, users));
            }
            let n = conn
                .execute("DELETE FROM companies WHERE key = ?1", [&key])
                .map_err(backend)?;
            if n == 0 {
                return Err(errors::no_company(&key));
            }
            Ok(())
        })
    }

    fn list_companies(&self, q: ListQuery) -> StoreFuture<'_, Page<Company, u64>> {
        self.with_read(move |conn| lists::list_companies(conn, q))
    }

    fn create_user(&self, u: User, password_hash: Option<String>) -> StoreFuture<'_, ()> {
        self.with(move |conn| {
            require_company(conn, &u.company_key)?;
            conn.execute(
                &format!("INSERT INTO users ({USER_COLS}, password_hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
                params![u.username, u.name, u.email, u.phone, u.company_key, u.enabled, u.roles.join(","), u.timezone, password_hash],
            )
            .map(|_| ())
            .map_err(|e| constraint_or_backend(e, || errors::user_taken(&u.username)))
        })
    }

    fn get_user(&self, username: String) -> StoreFuture<'_, User> {
        self.with(move |conn| {
            conn.query_row(
                &format!("SELECT {USER_COLS} FROM users WHERE username = ?1"),
                [&username],
                user_row,
            )
            .optional()
            .map_err(backend)?
            .ok_or_else(|| errors::no_user(&username))
        })
    }

    fn update_user(&self, u: User, password_hash: Option<String>) -> StoreFuture<'_, ()> {
        self.with(move |conn| {
            require_company(conn, &u.company_key)?;
            let n = conn
                .execute(
                    "UPDATE users SET name = ?2, email = ?3, phone = ?4, company_key = ?5, enabled = ?6,
                     roles = ?7, timezone = ?8, password_hash = COALESCE(?9, password_hash)
                     WHERE username = ?1",
                    params![u.username, u.name, u.email, u.phone, u.company_key, u.enabled, u.roles.join(","), u.timezone, password_hash],
                )
                .map_err(backend)?;
            if n == 0 {
                return Err(errors::no_user(&u.username));
            }
            Ok(())
        })
    }

    fn delete_user(&self, username: String) -> StoreFuture<'_, ()> {
        self.with(move |conn| {
            let n = conn
                .execute("DELETE FROM users WHERE username = ?1", [&username])
                .map_err(backend)?;
            if n == 0 {
                return Err(errors::no_user(&username));
            }
            Ok(())
        })
    }

    fn list_users(&self, q: UserQuery) -> StoreFuture<'_, Page<User, UserStats>> {
        self.with_read(move |conn| lists::list_users(conn, q))
    }

    fn user_count(&self) -> StoreFuture<'_, u64> {
        self.with(|conn| {
            conn.query_row("SELECT COUNT(*) FROM users", [], |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
                .map_err(backend)
        })
    }

    fn create_key(&self, key: ApiKeyInfo, secret_sha256: String) -> StoreFuture<'_, ()> {
        self.with(move |conn| {
            conn.execute(
                "INSERT INTO api_keys (id, username, prefix, hash, created_ms, expires_ms, revoked)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0)",
                params![
                    key.id,
                    key.username,
                    key.prefix,
                    secret_sha256,
                    key.created_ms,
                    key.expires_ms
                ],
            )
            .map(|_| ())
            .map_err(|e| match key_clash(&e) {
                Some(clash) => errors::key_refused(clash, &key.id, &key.username),
                None => backend(e),
            })
        })
    }

    fn list_keys(&self, username: String) -> StoreFuture<'_, Vec<ApiKeyInfo>> {
        self.with_read(move |conn| {
            let mut st = conn
                .prepare(
                    "SELECT id, username, prefix, created_ms, expires_ms, revoked FROM api_keys
                     WHERE username = ?1 ORDER BY created_ms, id",
                )
                .map_err(backend)?;
            st.query_map([&username], key_row)
                .map_err(backend)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(backend)
        })
    }

    fn revoke_key(&self, username: String, id: String) -> StoreFuture<'_, ()> {
        self.with(move |conn| {
            let n = conn
                .execute(
                    "UPDATE api_keys SET revoked = 1 WHERE username = ?1 AND id = ?2",
                    params![username, id],
                )
                .map_err(backend)?;
            if n == 0 {
                return Err(errors::no_key(&username, &id));
            }
            Ok(())
        })
    }
}

impl Credentials for SqliteStore {
    fn user_secret(&self, username: String) -> StoreFuture<'_, Option<UserSecret>> {
        self.with(move |conn| {
            conn.query_row(
                "SELECT u.username, u.name, u.email, u.phone, u.company_key, u.enabled, u.roles,
                        u.timezone, u.password_hash, c.enabled
                 FROM users u JOIN companies c ON c.key = u.company_key WHERE u.username = ?1",
                [&username],
                |r| {
                    Ok(UserSecret {
                        user: user_row(r)?,
                        password_hash: r.get(8)?,
                        company_enabled: r.get(9)?,
                    })
                },
            )
            .optional()
            .map_err(backend)
        })
    }

    fn find_key(&self, secret_sha256: String) -> StoreFuture<'_, Option<KeyMatch>> {
        self.with(move |conn| {
            conn.query_row(
                "SELECT k.id, k.username, k.prefix, k.created_ms, k.expires_ms, k.revoked,
                        u.username, u.name, u.email, u.phone, u.company_key, u.enabled, u.roles, u.timezone,
                        c.enabled
                 FROM api_keys k JOIN users u ON u.username = k.username
                 JOIN companies c ON c.key = u.company_key WHERE k.hash = ?1",
                [&secret_sha256],
                |r| {
                    Ok(KeyMatch {
                        key: key_row(r)?,
                        user: user_row_at(r, 6)?,
                        company_enabled: r.get(14)?,
                    })
                },
            )
            .optional()
            .map_err(backend)
        })
    }
}
