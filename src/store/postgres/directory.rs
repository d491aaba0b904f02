//! The directory (companies, users, keys) and the credential lookups on PostgreSQL, each a
//! pooled connection and a statement or two; the lookups of authentication prepared once per
//! connection.

use super::*;

impl Directory for PgStore {
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
                .map_err(|e| constraint_or_backend(e, || errors::company_taken(&c.key)))
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
                .ok_or_else(|| errors::no_company(&key))
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
                .map_err(|e| constraint_or_backend(e, || errors::company_taken(&c.key)))?;
            if n == 0 {
                return Err(errors::no_company(&key));
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
                return Err(errors::company_has_users(&key, users));
            }
            let n = client
                .execute("DELETE FROM companies WHERE key = $1", &[&key])
                .await
                .map_err(pg)?;
            if n == 0 {
                return Err(errors::no_company(&key));
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
                .map_err(|e| constraint_or_backend(e, || errors::user_taken(&u.username)))
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
                .ok_or_else(|| errors::no_user(&username))
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
                return Err(errors::no_user(&u.username));
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
                return Err(errors::no_user(&username));
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
                .map_err(|e| match key_clash(&e) {
                    Some(clash) => errors::key_refused(clash, &key.id, &key.username),
                    None => pg(e),
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
                return Err(errors::no_key(&username, &id));
            }
            Ok(())
        })
    }
}

impl Credentials for PgStore {
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
}
