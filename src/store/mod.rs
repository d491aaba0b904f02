//! The store: companies, users, API keys, quotas, the audit trail and captures, behind one
//! contract in parts (`parts`): [`Directory`] (the admin API's companies, users, keys),
//! [`Credentials`] (the credential check's lookups), [`AuditSink`] (the audit layer's rows),
//! [`AuditLog`] and [`Statistics`] (the admin reports), [`QuotaSettings`] (the quota layer's
//! and the admin API's) and [`Captures`]. Each caller holds only its part; [`Store`], their
//! sum, is what the gateway opens from config.
//!
//! The parts speak plain data (`types`, no SQL types): the embedded implementation
//! ([`SqliteStore`], one node) and the shared one ([`PgStore`], several replicas on one
//! PostgreSQL) behave alike, so no caller knows which one runs; what does not depend on the
//! backend (validation, paging, sort whitelists, WHERE clauses, rows from plain values) is
//! written once in `query`. Writes made on behalf of proxied requests (audit rows, captures)
//! are queued and written in batches by a writer off the request path;
//! [`AuditSink::flush`] waits until everything queued is on disk, which a graceful stop
//! calls. The audit queue is bounded: a request takes room for its row
//! ([`AuditSink::reserve_audit`]) before any work is done for it, and is refused when there
//! is none.

mod audit_queue;
mod parts;
mod postgres;
mod query;
mod rollup;
mod spill;
mod sqlite;
mod types;
mod writer;

pub use audit_queue::{AuditHealth, AuditOptions, AuditSlot, WriterState};
pub use parts::{
    AuditLog, AuditSink, Captures, Credentials, Directory, QuotaSettings, Statistics, Store,
    StoreFuture,
};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;
pub use types::{
    ApiKeyInfo, AuditQuery, AuditRow, Company, KeyMatch, ListQuery, Page, Quotas, StatRow,
    StatsQuery, StoreError, User, UserGroup, UserQuery, UserSecret, UserStats,
};
