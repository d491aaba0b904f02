//! `[store]`: where state is kept. The SQLite file at `path` (the default, one node), or the
//! PostgreSQL database at `url` that several replicas share (DESIGN §7, issue 27).
//!
//! The URL may carry a password (`postgres://rosetta:secret@db/rosetta`), so `Debug` shows
//! it redacted: a config dumped into a log never carries the credential.

use std::path::PathBuf;

use serde::Deserialize;

use super::cluster::redact;

/// `[store]`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// The SQLite file; relative paths are resolved against the config file's folder. With
    /// `url` set, the audit spill file is kept beside this path.
    #[serde(default = "defaults::store_path")]
    pub path: PathBuf,
    /// `postgres://USER:PASS@HOST:PORT/DB`: the store is this PostgreSQL database instead of
    /// the SQLite file. Unset: SQLite.
    #[serde(default)]
    pub url: Option<String>,
    /// Connections to PostgreSQL at most for the lookups and the admin API (the audit
    /// writer has its own); default 8.
    #[serde(default = "defaults::pool")]
    pub pool: usize,
    /// Audit rows not yet written at most (reserved by requests under way, queued, being
    /// retried); beyond, requests are refused 503 until the writer catches up.
    #[serde(default = "defaults::audit_queue")]
    pub audit_queue: usize,
    /// Days raw audit rows are kept; older ones are rolled up into daily totals (which the
    /// statistics read) and deleted. 0 keeps them forever.
    #[serde(default = "defaults::audit_days")]
    pub audit_days: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            path: defaults::store_path(),
            url: None,
            pool: defaults::pool(),
            audit_queue: defaults::audit_queue(),
            audit_days: defaults::audit_days(),
        }
    }
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("path", &self.path)
            .field("url", &self.url.as_deref().map(redact))
            .field("pool", &self.pool)
            .field("audit_queue", &self.audit_queue)
            .field("audit_days", &self.audit_days)
            .finish()
    }
}

impl StoreConfig {
    /// Checks the section; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(url) = &self.url {
            let scheme = url.split_once("://").map(|(s, _)| s);
            if !matches!(scheme, Some("postgres" | "postgresql")) {
                return Err(format!(
                    "store.url `{}` must be a postgres:// URL",
                    redact(url)
                ));
            }
            if let Err(e) = url.parse::<tokio_postgres::Config>() {
                return Err(format!(
                    "store.url `{}` is not a PostgreSQL URL: {e}",
                    redact(url)
                ));
            }
        }
        if self.pool == 0 || self.pool > 1000 {
            return Err("store.pool must be between 1 and 1000 connections".into());
        }
        if self.audit_queue == 0 {
            return Err(
                "store.audit_queue must be at least 1 (every request would be refused)".into(),
            );
        }
        Ok(())
    }
}

mod defaults {
    use std::path::PathBuf;

    pub(super) fn store_path() -> PathBuf {
        PathBuf::from("rosetta.db")
    }
    pub(super) fn pool() -> usize {
        8
    }
    pub(super) fn audit_queue() -> usize {
        100_000
    }
    pub(super) fn audit_days() -> u32 {
        90
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml: &str) -> Result<StoreConfig, String> {
        let c: StoreConfig = toml::from_str(toml).map_err(|e| e.to_string())?;
        c.validate().map(|()| c)
    }

    #[test]
    fn defaults_are_sqlite_and_a_pool_of_8() {
        let c = parse("").unwrap();
        assert!(c.url.is_none());
        assert_eq!(c.path, PathBuf::from("rosetta.db"));
        assert_eq!(c.pool, 8);
        let c = parse("url = 'postgresql://u@db.internal:5433/r?connect_timeout=3'").unwrap();
        assert_eq!(c.pool, 8);
    }

    #[test]
    fn each_bad_value_is_named() {
        for (toml, names) in [
            ("url = 'mysql://x/y'", "store.url"),
            ("url = 'postgres://u:p@h:notaport/db'", "store.url"),
            ("url = 'postgres://h/db?sslmode=sometimes'", "store.url"),
            ("url = 3", "url"),
            ("pool = 0", "store.pool"),
            ("pool = 5000", "store.pool"),
            ("pool = -1", "pool"),
            ("audit_queue = 0", "store.audit_queue"),
            ("shards = 2", "shards"),
        ] {
            let e = parse(toml).unwrap_err();
            assert!(e.contains(names), "{toml}: {e}");
        }
    }

    #[test]
    fn the_password_never_reaches_debug_or_an_error() {
        let c = parse("url = 'postgres://rosetta:hunter2@127.0.0.1:5432/rosetta'").unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("rosetta:***@127.0.0.1:5432/rosetta"),
            "{shown}"
        );
        let e = parse("url = 'postgres://rosetta:hunter2@h:port/db'").unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
    }
}
