//! One conformance suite for every `Store` backend: each case is written once over
//! `&dyn Store` and run against SQLite (a temporary file) and PostgreSQL (a real server per
//! test, tests/postgres), so the two cannot drift. Organised by the store's parts, one
//! section each: `Directory` (companies, users, keys), `Credentials`, `AuditSink` and
//! `AuditLog` (the audit trail, written then read), `Statistics`, `QuotaSettings`,
//! `Captures`. Every method and every error of every part (conflict, not found, invalid),
//! the lists' paging, filters and order, the audit trail's columns and filters and its
//! queue's bound, statistics in the users' timezones; then the same data in both, every list
//! and report compared for equality.
#![cfg(unix)]

mod postgres;

use std::net::IpAddr;
use std::sync::Arc;

use postgres::PgServer;
use rosetta::capture::{CapturedBody, Flow};
use rosetta::store::{
    ApiKeyInfo, AuditOptions, AuditQuery, AuditRow, Company, ListQuery, PgStore, SqliteStore,
    StatsQuery, Store, StoreError, User, UserGroup, UserQuery, UserStats,
};
use serde_json::json;

/// A store and what keeps it alive (its folder, its server).
struct Backend {
    store: Box<dyn Store>,
    _dir: tempfile::TempDir,
    _server: Option<PgServer>,
}

fn sqlite() -> Backend {
    sqlite_with(AuditOptions::default())
}

fn sqlite_with(audit: AuditOptions) -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_with(&dir.path().join("conformance.db"), audit).unwrap();
    Backend {
        store: Box::new(store),
        _dir: dir,
        _server: None,
    }
}

fn postgres() -> Backend {
    postgres_with(AuditOptions::default())
}

fn postgres_with(audit: AuditOptions) -> Backend {
    let server = PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let spill = dir.path().join("conformance.db");
    let store = PgStore::open_with(&server.url(), 4, &spill, audit).unwrap();
    Backend {
        store: Box::new(store),
        _dir: dir,
        _server: Some(server),
    }
}

/// Each case, run once per backend: `sqlite::case` and `postgres::case`.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod on_sqlite {
            $(#[tokio::test]
            async fn $case() {
                let b = super::sqlite();
                super::$case(&*b.store).await;
            })*
        }
        mod on_postgres {
            $(#[tokio::test]
            async fn $case() {
                let b = super::postgres();
                super::$case(&*b.store).await;
            })*
        }
    };
}

conformance!(
    // Directory
    companies,
    users,
    keys,
    // Credentials
    credentials,
    // AuditSink and AuditLog
    audit_trail,
    // Statistics (and QuotaSettings::points_used, over the same rows)
    statistics_and_usage,
    // QuotaSettings
    quotas,
    // Captures
    captures,
);

fn company(key: &str, detail: Option<&str>) -> Company {
    Company {
        key: key.into(),
        detail: detail.map(str::to_owned),
        enabled: true,
    }
}

fn user(name: &str, company: &str, roles: &[&str], enabled: bool, tz: i32) -> User {
    User {
        username: name.into(),
        name: Some(format!("{name} name")),
        email: (name.len() % 2 == 0).then(|| format!("{name}@example.com")),
        phone: None,
        company_key: company.into(),
        enabled,
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        timezone: tz,
    }
}

fn list(filter: Option<&str>, sort: Option<&str>, desc: bool) -> ListQuery {
    ListQuery {
        offset: 0,
        limit: 100,
        filter: filter.map(str::to_owned),
        sort_field: sort.map(str::to_owned),
        descending: desc,
    }
}

fn audit_query() -> AuditQuery {
    AuditQuery {
        offset: 0,
        limit: 1000,
        from_ms: 0,
        to_ms: i64::MAX,
        company_key: None,
        username: None,
        service: None,
        operation: None,
        method_group: None,
        target: None,
        sort_field: None,
        descending: false,
    }
}

fn row(user: &str, t: i64, points: u32, status: u16, fingerprint: u64) -> AuditRow {
    AuditRow {
        time_ms: t,
        username: user.into(),
        company_key: "acme".into(),
        tracecode: format!("tc-{user}-{t}").into(),
        server: "node-a".into(),
        service: "SVC".into(),
        operation: if fingerprint % 2 == 0 {
            "a.get"
        } else {
            "b.get"
        }
        .into(),
        method_group: "READ".into(),
        points,
        duration_ms: 10 + t as u64 % 7,
        status,
        fingerprint,
        targets: Arc::from([]),
        ip: None,
    }
}

fn targets(ids: &[&str]) -> Arc<[Arc<str>]> {
    ids.iter().map(|id| Arc::from(*id)).collect()
}

fn keys_of(items: &[Company]) -> Vec<&str> {
    items.iter().map(|c| c.key.as_str()).collect()
}

// ---- Directory: companies, users, keys ----

async fn companies(s: &dyn Store) {
    s.create_company(company("acme", Some("Acme 100% Corp")))
        .await
        .unwrap();
    assert_eq!(
        s.create_company(company("acme", None)).await,
        Err(StoreError::Conflict("company `acme`".into()))
    );
    assert_eq!(
        s.get_company("acme".into()).await.unwrap(),
        company("acme", Some("Acme 100% Corp"))
    );
    assert_eq!(
        s.get_company("nope".into()).await,
        Err(StoreError::NotFound("company `nope`".into()))
    );
    for (k, d) in [
        ("beta", None),
        ("Zeta", Some("zed")),
        ("_x", Some("ACME two")),
    ] {
        s.create_company(company(k, d)).await.unwrap();
    }
    // Filters are case-insensitive substrings; `%` and `_` are literal.
    let p = s
        .list_companies(list(Some("acme"), None, false))
        .await
        .unwrap();
    assert_eq!((p.overall, p.filtered), (4, 2));
    assert_eq!(
        keys_of(&p.items),
        ["_x", "acme"],
        "byte order: `_` before `a`"
    );
    let p = s
        .list_companies(list(Some("100%"), None, false))
        .await
        .unwrap();
    assert_eq!(keys_of(&p.items), ["acme"]);
    assert!(
        s.list_companies(list(Some("_"), None, false))
            .await
            .unwrap()
            .items
            .iter()
            .all(|c| c.key.contains('_'))
    );
    // Sorting: byte order (upper case first), NULLs first ascending, last descending.
    let p = s
        .list_companies(list(None, Some("key"), false))
        .await
        .unwrap();
    assert_eq!(keys_of(&p.items), ["Zeta", "_x", "acme", "beta"]);
    let p = s
        .list_companies(list(None, Some("detail"), false))
        .await
        .unwrap();
    assert_eq!(keys_of(&p.items), ["beta", "_x", "acme", "Zeta"]);
    let p = s
        .list_companies(list(None, Some("detail"), true))
        .await
        .unwrap();
    assert_eq!(keys_of(&p.items), ["Zeta", "acme", "_x", "beta"]);
    // An unknown sort field sorts by key; paging.
    let mut q = list(None, Some("nonsense"), false);
    (q.offset, q.limit) = (1, 2);
    let p = s.list_companies(q).await.unwrap();
    assert_eq!(keys_of(&p.items), ["_x", "acme"]);
    assert_eq!((p.overall, p.filtered), (4, 4));
    // Update: in place, renamed, onto a taken key, unknown.
    let blocked = Company {
        enabled: false,
        ..company("beta", Some("b"))
    };
    s.update_company("beta".into(), blocked.clone())
        .await
        .unwrap();
    assert_eq!(s.get_company("beta".into()).await.unwrap(), blocked);
    assert_eq!(
        s.update_company("beta".into(), company("acme", None)).await,
        Err(StoreError::Conflict("company `acme`".into()))
    );
    assert_eq!(
        s.update_company("ghost".into(), company("ghost2", None))
            .await,
        Err(StoreError::NotFound("company `ghost`".into()))
    );
    s.create_user(user("ann", "beta", &["USER"], true, 0), None)
        .await
        .unwrap();
    s.update_company("beta".into(), company("gamma", None))
        .await
        .unwrap();
    assert_eq!(
        s.get_user("ann".into()).await.unwrap().company_key,
        "gamma",
        "a rename moves the company's users along"
    );
    assert_eq!(
        s.delete_company("gamma".into()).await,
        Err(StoreError::Invalid(
            "company `gamma` still has 1 user(s); delete or move them first".into()
        ))
    );
    s.delete_user("ann".into()).await.unwrap();
    s.delete_company("gamma".into()).await.unwrap();
    assert_eq!(
        s.delete_company("gamma".into()).await,
        Err(StoreError::NotFound("company `gamma`".into()))
    );
    let p = s.list_companies(list(None, None, false)).await.unwrap();
    assert_eq!(keys_of(&p.items), ["Zeta", "_x", "acme"]);
}

fn users_query(company: Option<&str>, group: UserGroup, filter: Option<&str>) -> UserQuery {
    UserQuery {
        list: list(filter, Some("username"), false),
        company_key: company.map(str::to_owned),
        group,
    }
}

async fn users(s: &dyn Store) {
    s.create_company(company("acme", None)).await.unwrap();
    s.create_company(company("beta", None)).await.unwrap();
    assert_eq!(
        s.create_user(user("cy", "nope", &[], true, 0), None).await,
        Err(StoreError::Invalid("company `nope` does not exist".into()))
    );
    s.create_user(
        user("ann", "acme", &["ADMIN", "USER"], true, 5),
        Some("hash-1".into()),
    )
    .await
    .unwrap();
    assert_eq!(
        s.create_user(user("ann", "beta", &[], true, 0), None).await,
        Err(StoreError::Conflict("user `ann`".into()))
    );
    s.create_user(user("bob", "acme", &["USER"], false, -8), None)
        .await
        .unwrap();
    s.create_user(user("Cleo", "beta", &["AUDITOR", "ADMIN"], true, 12), None)
        .await
        .unwrap();
    s.create_user(user("dan", "beta", &["NOTADMIN"], true, -12), None)
        .await
        .unwrap();
    assert_eq!(s.user_count().await.unwrap(), 4);
    assert_eq!(
        s.get_user("ann".into()).await.unwrap(),
        user("ann", "acme", &["ADMIN", "USER"], true, 5)
    );
    assert_eq!(
        s.get_user("zed".into()).await,
        Err(StoreError::NotFound("user `zed`".into()))
    );
    // Statistics: overall within the company scope, filtered after text and group.
    let p = s
        .list_users(users_query(None, UserGroup::Total, None))
        .await
        .unwrap();
    let all = UserStats {
        total: 4,
        active: 3,
        blocked: 1,
        admins: 2,
    };
    assert_eq!((p.overall, p.filtered), (all, all));
    let names: Vec<_> = p.items.iter().map(|u| u.username.as_str()).collect();
    assert_eq!(names, ["Cleo", "ann", "bob", "dan"]);
    let p = s
        .list_users(users_query(Some("acme"), UserGroup::Blocked, None))
        .await
        .unwrap();
    assert_eq!(p.overall.total, 2);
    assert_eq!(p.filtered.total, 1);
    assert_eq!(p.items[0].username, "bob");
    let p = s
        .list_users(users_query(None, UserGroup::Admins, None))
        .await
        .unwrap();
    let names: Vec<_> = p.items.iter().map(|u| u.username.as_str()).collect();
    assert_eq!(names, ["Cleo", "ann"], "NOTADMIN is not ADMIN");
    let p = s
        .list_users(users_query(None, UserGroup::Active, Some("BETA")))
        .await
        .unwrap();
    let names: Vec<_> = p.items.iter().map(|u| u.username.as_str()).collect();
    assert_eq!(names, ["Cleo", "dan"], "the filter reads the company too");
    let p = s
        .list_users(users_query(None, UserGroup::Total, Some("@EXAMPLE")))
        .await
        .unwrap();
    assert_eq!(p.filtered.total, 1, "and the e-mail");
    let mut q = users_query(None, UserGroup::Total, None);
    q.list.sort_field = Some("timezone".into());
    q.list.descending = true;
    let p = s.list_users(q).await.unwrap();
    let tz: Vec<_> = p.items.iter().map(|u| u.timezone).collect();
    assert_eq!(tz, [12, 5, -8, -12]);
    let mut q = users_query(None, UserGroup::Total, None);
    q.list.sort_field = Some("email".into());
    let p = s.list_users(q).await.unwrap();
    let names: Vec<_> = p.items.iter().map(|u| u.username.as_str()).collect();
    assert_eq!(
        names,
        ["ann", "bob", "dan", "Cleo"],
        "no e-mail first, in the order created"
    );
    // Secrets: the password kept when not given, replaced when given; the company's state.
    let secret = s.user_secret("ann".into()).await.unwrap().unwrap();
    assert_eq!(secret.password_hash.as_deref(), Some("hash-1"));
    assert!(secret.company_enabled);
    assert!(s.user_secret("zed".into()).await.unwrap().is_none());
    let mut ann = user("ann", "beta", &["USER"], false, -3);
    ann.phone = Some("+1 555".into());
    s.update_user(ann.clone(), None).await.unwrap();
    assert_eq!(s.get_user("ann".into()).await.unwrap(), ann);
    assert_eq!(
        s.user_secret("ann".into())
            .await
            .unwrap()
            .unwrap()
            .password_hash
            .as_deref(),
        Some("hash-1")
    );
    s.update_user(ann.clone(), Some("hash-2".into()))
        .await
        .unwrap();
    s.update_company(
        "beta".into(),
        Company {
            enabled: false,
            ..company("beta", None)
        },
    )
    .await
    .unwrap();
    let secret = s.user_secret("ann".into()).await.unwrap().unwrap();
    assert_eq!(secret.password_hash.as_deref(), Some("hash-2"));
    assert!(!secret.company_enabled);
    assert_eq!(
        s.update_user(user("zed", "acme", &[], true, 0), None).await,
        Err(StoreError::NotFound("user `zed`".into()))
    );
    assert_eq!(
        s.update_user(user("ann", "nope", &[], true, 0), None).await,
        Err(StoreError::Invalid("company `nope` does not exist".into()))
    );
    s.delete_user("ann".into()).await.unwrap();
    assert_eq!(
        s.delete_user("ann".into()).await,
        Err(StoreError::NotFound("user `ann`".into()))
    );
    assert_eq!(s.user_count().await.unwrap(), 3);
}

fn key(id: &str, user: &str, created: i64) -> ApiKeyInfo {
    ApiKeyInfo {
        id: id.into(),
        username: user.into(),
        prefix: format!("rk_{id}"),
        created_ms: created,
        expires_ms: (created % 2 == 0).then_some(created + 1000),
        revoked: false,
    }
}

async fn keys(s: &dyn Store) {
    s.create_company(company("acme", None)).await.unwrap();
    s.create_user(user("ann", "acme", &["USER"], true, 0), None)
        .await
        .unwrap();
    s.create_key(key("k2", "ann", 20), "sha-2".into())
        .await
        .unwrap();
    s.create_key(key("k1", "ann", 20), "sha-1".into())
        .await
        .unwrap();
    s.create_key(key("k0", "ann", 30), "sha-0".into())
        .await
        .unwrap();
    assert_eq!(
        s.create_key(key("k9", "zed", 1), "sha-9".into()).await,
        Err(StoreError::Invalid("user `zed` does not exist".into()))
    );
    assert_eq!(
        s.create_key(key("k3", "ann", 1), "sha-1".into()).await,
        Err(StoreError::Conflict("a key with this secret".into())),
        "a taken secret is a conflict, not an unknown user"
    );
    assert_eq!(
        s.create_key(key("k1", "ann", 1), "sha-7".into()).await,
        Err(StoreError::Conflict("key `k1`".into()))
    );
    let listed = s.list_keys("ann".into()).await.unwrap();
    assert_eq!(
        listed,
        [
            key("k1", "ann", 20),
            key("k2", "ann", 20),
            key("k0", "ann", 30)
        ],
        "by creation, then id"
    );
    assert!(s.list_keys("zed".into()).await.unwrap().is_empty());
    let found = s.find_key("sha-2".into()).await.unwrap().unwrap();
    assert_eq!(found.key, key("k2", "ann", 20));
    assert_eq!(found.user, user("ann", "acme", &["USER"], true, 0));
    assert!(found.company_enabled);
    assert!(s.find_key("sha-x".into()).await.unwrap().is_none());
    s.revoke_key("ann".into(), "k2".into()).await.unwrap();
    assert!(
        s.find_key("sha-2".into())
            .await
            .unwrap()
            .unwrap()
            .key
            .revoked
    );
    assert_eq!(
        s.revoke_key("bob".into(), "k1".into()).await,
        Err(StoreError::NotFound("key `k1` of `bob`".into()))
    );
    assert_eq!(
        s.revoke_key("ann".into(), "k7".into()).await,
        Err(StoreError::NotFound("key `k7` of `ann`".into()))
    );
    s.delete_user("ann".into()).await.unwrap();
    assert!(s.find_key("sha-1".into()).await.unwrap().is_none());
    assert!(s.list_keys("ann".into()).await.unwrap().is_empty());
}

// ---- Credentials ----

/// What a credential check reads: the user's password hash (none for a keys-only user), the
/// user's and the company's state, a key's owner; unknown users and keys are `None`.
async fn credentials(s: &dyn Store) {
    s.create_company(company("acme", None)).await.unwrap();
    s.create_user(user("ann", "acme", &["USER"], true, 2), Some("phc".into()))
        .await
        .unwrap();
    s.create_user(user("bob", "acme", &["PARTNER"], false, 0), None)
        .await
        .unwrap();
    s.create_key(key("kb", "bob", 40), "sha-b".into())
        .await
        .unwrap();
    let ann = s.user_secret("ann".into()).await.unwrap().unwrap();
    assert_eq!(ann.user, user("ann", "acme", &["USER"], true, 2));
    assert_eq!(ann.password_hash.as_deref(), Some("phc"));
    assert!(ann.company_enabled);
    let bob = s.user_secret("bob".into()).await.unwrap().unwrap();
    assert_eq!(bob.password_hash, None, "keys only");
    assert!(!bob.user.enabled);
    assert!(
        s.user_secret("Ann".into()).await.unwrap().is_none(),
        "names are exact"
    );
    let found = s.find_key("sha-b".into()).await.unwrap().unwrap();
    assert_eq!(found.key, key("kb", "bob", 40));
    assert_eq!(found.user, user("bob", "acme", &["PARTNER"], false, 0));
    assert!(found.company_enabled);
    assert!(s.find_key("SHA-B".into()).await.unwrap().is_none());
    // A blocked company shows through both lookups at once.
    s.update_company(
        "acme".into(),
        Company {
            enabled: false,
            ..company("acme", None)
        },
    )
    .await
    .unwrap();
    assert!(
        !s.find_key("sha-b".into())
            .await
            .unwrap()
            .unwrap()
            .company_enabled
    );
    assert!(
        !s.user_secret("ann".into())
            .await
            .unwrap()
            .unwrap()
            .company_enabled
    );
}

// ---- AuditSink and AuditLog: the audit trail, written then read ----

async fn audit_trail(s: &dyn Store) {
    let h = s.audit_health();
    assert!(h.healthy());
    assert_eq!((h.queued, h.capacity), (0, 100_000));
    let slot = s.reserve_audit().unwrap();
    assert_eq!(s.audit_health().queued, 1, "a reservation takes room");
    let rows: Vec<AuditRow> = (0..30)
        .map(|i| AuditRow {
            username: if i % 3 == 0 { "bob" } else { "ann" }.into(),
            company_key: if i % 5 == 0 { "beta" } else { "acme" }.into(),
            service: if i % 2 == 0 { "SVC" } else { "OTHER" }.into(),
            method_group: if i % 4 == 0 { "WRITE" } else { "READ" }.into(),
            points: (i % 7) as u32,
            duration_ms: 100 - i as u64,
            status: 200 + (i % 3) as u16 * 100,
            fingerprint: u64::MAX - i as u64,
            targets: match i % 4 {
                0 => targets(&[]),
                1 => targets(&["acme-1"]),
                2 => targets(&["acme-10", "beta"]),
                _ => targets(&["q\"uote\\é", "acme-1"]),
            },
            ip: match i % 3 {
                0 => None,
                1 => Some(IpAddr::from([10, 0, 0, i as u8])),
                _ => Some(IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, i as u16])),
            },
            ..row("x", 1_000 + i as i64, 1, 200, 0)
        })
        .collect();
    let (first, rest) = rows.split_first().unwrap();
    s.record_reserved(slot, first.clone());
    for r in rest {
        s.record_audit(r.clone());
    }
    s.flush().await.unwrap();
    let h = s.audit_health();
    assert!(h.healthy(), "{h:?}");
    assert_eq!(h.queued, 0, "durable rows give their room back");
    // Every column reads back as written.
    let page = s.list_audit(audit_query()).await.unwrap();
    assert_eq!((page.overall, page.filtered), (30, 30));
    assert_eq!(page.items, rows);
    assert_eq!(page.items[4].client(), "acme_|_ann");
    // Filters, each and together; the range's end is excluded.
    let count = |q: AuditQuery| async move {
        let whole = q.offset == 0 && q.limit >= 1000;
        let p = s.list_audit(q).await.unwrap();
        assert_eq!(p.overall, 30);
        if whole {
            assert_eq!(p.filtered as usize, p.items.len());
        }
        p.items
            .iter()
            .map(|r| r.time_ms - 1_000)
            .collect::<Vec<_>>()
    };
    let q = || audit_query();
    assert_eq!(
        count(AuditQuery {
            from_ms: 1_010,
            to_ms: 1_013,
            ..q()
        })
        .await,
        [10, 11, 12]
    );
    assert_eq!(
        count(AuditQuery {
            username: Some("bob".into()),
            company_key: Some("beta".into()),
            ..q()
        })
        .await,
        [0, 15]
    );
    assert_eq!(
        count(AuditQuery {
            service: Some("OTHER".into()),
            method_group: Some("READ".into()),
            ..q()
        })
        .await
        .len(),
        15
    );
    assert_eq!(
        count(AuditQuery {
            operation: Some("b.get".into()),
            ..q()
        })
        .await
        .len(),
        0,
        "fingerprints are all odd-or-even by i"
    );
    let acme1 = count(AuditQuery {
        target: Some("acme-1".into()),
        ..q()
    })
    .await;
    assert_eq!(
        acme1,
        [1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29]
    );
    for none in ["acme", "cme-1", "[]", "%", ""] {
        assert!(
            count(AuditQuery {
                target: Some(none.into()),
                ..q()
            })
            .await
            .is_empty(),
            "{none:?}"
        );
    }
    assert_eq!(
        count(AuditQuery {
            target: Some("q\"uote\\é".into()),
            ..q()
        })
        .await
        .len(),
        7
    );
    // Sorting (ties in insertion order) and paging.
    let sorted = count(AuditQuery {
        sort_field: Some("points".into()),
        descending: true,
        offset: 2,
        limit: 5,
        ..q()
    })
    .await;
    assert_eq!(sorted, [20, 27, 5, 12, 19]);
    let by_duration = count(AuditQuery {
        sort_field: Some("duration".into()),
        limit: 3,
        ..q()
    })
    .await;
    assert_eq!(by_duration, [29, 28, 27]);
}

/// 2025-03-10T00:00:00Z.
const T0: i64 = 1_741_564_800_000;
const HOUR: i64 = 3_600_000;

/// The queue's bound, on a store with room for two rows (`AuditOptions::queue`): no room,
/// no reservation; a reservation dropped unused, or a row made durable, gives its room back.
async fn a_full_audit_queue_refuses_a_reservation(s: &dyn Store) {
    let (a, c) = (s.reserve_audit().unwrap(), s.reserve_audit().unwrap());
    assert!(s.reserve_audit().is_none(), "full");
    let h = s.audit_health();
    assert_eq!((h.queued, h.capacity), (2, 2));
    drop(a);
    let a = s
        .reserve_audit()
        .expect("a dropped reservation gives its room back");
    s.record_reserved(a, row("ann", 1, 1, 200, 1));
    s.record_reserved(c, row("ann", 2, 1, 200, 2));
    s.flush().await.unwrap();
    assert_eq!(s.audit_health().queued, 0);
    assert!(s.reserve_audit().is_some(), "durable rows give theirs back");
    assert_eq!(s.list_audit(audit_query()).await.unwrap().overall, 2);
}

fn room_for_two() -> AuditOptions {
    AuditOptions {
        queue: 2,
        ..AuditOptions::default()
    }
}

mod audit_queue_bound {
    #[tokio::test]
    async fn on_sqlite() {
        let b = super::sqlite_with(super::room_for_two());
        super::a_full_audit_queue_refuses_a_reservation(&*b.store).await;
    }

    #[tokio::test]
    async fn on_postgres() {
        let b = super::postgres_with(super::room_for_two());
        super::a_full_audit_queue_refuses_a_reservation(&*b.store).await;
    }
}

// ---- Statistics ----

async fn statistics_and_usage(s: &dyn Store) {
    s.create_company(company("acme", None)).await.unwrap();
    s.create_user(user("ann", "acme", &["USER"], true, 5), None)
        .await
        .unwrap();
    s.create_user(user("bob", "acme", &["USER"], true, -8), None)
        .await
        .unwrap();
    for (u, t, points, status, fp) in [
        // ann (+5): 2025-03-10T20:00Z is her 2025-03-11 01:00.
        ("ann", T0 + HOUR, 2, 200, 1),
        ("ann", T0 + 2 * HOUR, 3, 200, 1),
        ("ann", T0 + 20 * HOUR, 5, 200, 2),
        ("ann", T0 + 21 * HOUR, 4, 429, 3),
        // bob (-8): 2025-03-10T03:00Z is his 2025-03-09 19:00.
        ("bob", T0 + 3 * HOUR, 4, 200, 4),
        ("bob", T0 + 9 * HOUR, 4, 500, 4),
        // A deleted user's rows are dated in UTC.
        ("gone", T0 + 23 * HOUR, 7, 200, 5),
    ] {
        s.record_audit(row(u, t, points, status, fp));
    }
    s.flush().await.unwrap();
    let stats = |from: &str, to: &str, user: Option<&str>| {
        s.statistics(StatsQuery {
            from_day: from.into(),
            to_day: to.into(),
            username: user.map(str::to_owned),
            company_key: None,
        })
    };
    let all = stats("2025-03-01", "2025-03-31", None).await.unwrap();
    let got: Vec<_> = all
        .iter()
        .map(|r| {
            (
                r.username.as_str(),
                r.day.as_str(),
                r.method_group.as_str(),
                r.points,
                r.unique_points,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("ann", "2025-03-10", "READ", 5, 3),
            ("ann", "2025-03-11", "READ", 9, 9),
            ("bob", "2025-03-09", "READ", 4, 4),
            ("bob", "2025-03-10", "READ", 4, 4),
            ("gone", "2025-03-10", "READ", 7, 7),
        ]
    );
    assert_eq!(
        stats("2025-03-11", "2025-03-11", None).await.unwrap().len(),
        1
    );
    assert_eq!(
        stats("2025-03-01", "2025-03-31", Some("bob"))
            .await
            .unwrap()
            .len(),
        2
    );
    let other = s
        .statistics(StatsQuery {
            from_day: "2025-03-01".into(),
            to_day: "2025-03-31".into(),
            username: None,
            company_key: Some("beta".into()),
        })
        .await
        .unwrap();
    assert!(other.is_empty());
    assert_eq!(
        stats("2025-3-1", "2025-03-31", None).await,
        Err(StoreError::Invalid(
            "`2025-3-1` is not a YYYY-MM-DD date".into()
        ))
    );
    // Quota usage: 429 refusals are not counted; the range's end is excluded.
    let used = |u: &str, from: i64, to: i64| {
        s.points_used(u.into(), "SVC".into(), "READ".into(), from, to)
    };
    assert_eq!(used("ann", T0, T0 + 24 * HOUR).await.unwrap(), 10);
    assert_eq!(used("ann", T0, T0 + 20 * HOUR).await.unwrap(), 5);
    assert_eq!(used("bob", T0, T0 + 24 * HOUR).await.unwrap(), 8);
    assert_eq!(used("zed", T0, T0 + 24 * HOUR).await.unwrap(), 0);
    assert_eq!(
        s.points_used(
            "ann".into(),
            "SVC".into(),
            "WRITE".into(),
            T0,
            T0 + 24 * HOUR
        )
        .await
        .unwrap(),
        0
    );
}

// ---- QuotaSettings ----

async fn quotas(s: &dyn Store) {
    s.create_company(company("acme", None)).await.unwrap();
    s.create_user(user("ann", "acme", &["USER"], true, 0), None)
        .await
        .unwrap();
    let base = json!({"services": [{"service_name": "SVC", "points": 10, "z": 1, "a": 2}]});
    let march = json!({"services": [{"service_name": "SVC", "points": 20}]});
    let feb = json!({"services": []});
    assert_eq!(s.get_quotas("ann".into()).await.unwrap().base, None);
    s.put_quotas("ann".into(), None, json!({"services": []}))
        .await
        .unwrap();
    s.put_quotas("ann".into(), None, base.clone())
        .await
        .unwrap();
    let march_w = ("2025-03-01".to_owned(), "2025-03-31".to_owned());
    let feb_w = ("2025-02-01".to_owned(), "2025-02-28".to_owned());
    s.put_quotas("ann".into(), Some(march_w.clone()), march.clone())
        .await
        .unwrap();
    s.put_quotas("ann".into(), Some(feb_w.clone()), feb.clone())
        .await
        .unwrap();
    let q = s.get_quotas("ann".into()).await.unwrap();
    assert_eq!(q.base, Some(base.clone()), "replaced; key order kept");
    assert_eq!(
        q.windows,
        [
            (feb_w.0.clone(), feb_w.1.clone(), feb),
            (march_w.0.clone(), march_w.1.clone(), march)
        ]
    );
    assert_eq!(
        s.put_quotas("zed".into(), None, base.clone()).await,
        Err(StoreError::NotFound("user `zed`".into()))
    );
    assert_eq!(
        s.delete_quotas("ann".into(), Some(feb_w.clone()))
            .await
            .unwrap(),
        1
    );
    assert_eq!(s.delete_quotas("ann".into(), Some(feb_w)).await.unwrap(), 0);
    assert_eq!(s.delete_quotas("ann".into(), None).await.unwrap(), 2);
    assert_eq!(s.get_quotas("ann".into()).await.unwrap().base, None);
    assert_eq!(s.delete_quotas("zed".into(), None).await.unwrap(), 0);
    s.put_quotas("ann".into(), None, base).await.unwrap();
    s.delete_user("ann".into()).await.unwrap();
    s.create_user(user("ann", "acme", &["USER"], true, 0), None)
        .await
        .unwrap();
    assert_eq!(
        s.get_quotas("ann".into()).await.unwrap().base,
        None,
        "quotas go with their user"
    );
}

// ---- Captures ----

fn body(flow: Flow, stage: u8, text: &str) -> CapturedBody {
    CapturedBody {
        flow,
        stage,
        content_type: "application/json".into(),
        body: bytes::Bytes::copy_from_slice(text.as_bytes()),
        truncated: stage == 1,
    }
}

async fn captures(s: &dyn Store) {
    s.record_capture(
        "tc-1".into(),
        1_000,
        vec![
            body(Flow::Input, 0, "{\"a\":1}"),
            body(Flow::Output, 1, "\u{0}binary\u{ff}"),
        ],
    );
    s.record_capture("tc-2".into(), 5_000, vec![body(Flow::Input, 0, "two")]);
    s.flush().await.unwrap();
    let got = s
        .get_capture("tc-1".into(), Flow::Output, 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.body, "\u{0}binary\u{ff}".as_bytes());
    assert!(got.truncated);
    assert_eq!(got.content_type, "application/json");
    assert_eq!((got.flow, got.stage), (Flow::Output, 1));
    assert!(
        s.get_capture("tc-1".into(), Flow::Output, 0)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.get_capture("tc-9".into(), Flow::Input, 0)
            .await
            .unwrap()
            .is_none()
    );
    // Taken again: replaced.
    s.record_capture("tc-2".into(), 6_000, vec![body(Flow::Input, 0, "again")]);
    s.flush().await.unwrap();
    let again = s
        .get_capture("tc-2".into(), Flow::Input, 0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.body, "again".as_bytes());
    assert_eq!(s.purge_captures(1_001).await.unwrap(), 2);
    assert_eq!(s.purge_captures(1_001).await.unwrap(), 0);
    assert!(
        s.get_capture("tc-2".into(), Flow::Input, 0)
            .await
            .unwrap()
            .is_some()
    );
}

/// The same data written into both backends reads back the same from every list and
/// report: sorting (byte order, NULLs, ties), filters, and day buckets across timezones
/// from -12 to +12 over a month of rows.
#[tokio::test]
async fn both_backends_answer_alike() {
    let (a, b) = (sqlite(), postgres());
    for s in [&*a.store, &*b.store] {
        for (k, d) in [
            ("acme", Some("Acme")),
            ("beta", None),
            ("Zeta", Some("")),
            ("b_x", Some("a%b")),
        ] {
            s.create_company(company(k, d)).await.unwrap();
        }
        for (i, tz) in [-12, -8, -1, 0, 3, 5, 12].into_iter().enumerate() {
            let c = ["acme", "beta", "Zeta", "b_x"][i % 4];
            let roles: &[&str] = if i % 3 == 0 { &["ADMIN"] } else { &["USER"] };
            s.create_user(user(&format!("u{i}"), c, roles, i % 4 != 1, tz), None)
                .await
                .unwrap();
        }
        // A month of rows, one every 97 minutes, spread over users (and one deleted).
        for n in 0..460i64 {
            let u = format!("u{}", n % 8);
            let mut r = row(&u, T0 + n * 97 * 60_000, (n % 5) as u32, 0, (n % 11) as u64);
            r.status = [200, 200, 429, 500, 404][(n % 5) as usize];
            r.company_key = ["acme", "beta", "Zeta", "b_x"][(n % 4) as usize].into();
            r.method_group = ["READ", "WRITE"][(n % 2) as usize].into();
            r.targets = targets(&[["a", "b", "c"][(n % 3) as usize]]);
            s.record_audit(r);
        }
        s.flush().await.unwrap();
    }
    for (filter, sort, desc) in [
        (None, None, false),
        (Some("A"), Some("detail"), false),
        (None, Some("detail"), true),
        (Some("%"), Some("key"), true),
    ] {
        let q = list(filter, sort, desc);
        assert_eq!(
            a.store.list_companies(q.clone()).await.unwrap(),
            b.store.list_companies(q.clone()).await.unwrap(),
            "{q:?}"
        );
    }
    for sort in [
        "username",
        "name",
        "email",
        "company_key",
        "enabled",
        "timezone",
    ] {
        for desc in [false, true] {
            for group in [UserGroup::Total, UserGroup::Admins, UserGroup::Blocked] {
                let q = UserQuery {
                    list: list(Some("U"), Some(sort), desc),
                    company_key: None,
                    group,
                };
                assert_eq!(
                    a.store.list_users(q.clone()).await.unwrap(),
                    b.store.list_users(q.clone()).await.unwrap(),
                    "{q:?}"
                );
            }
        }
    }
    for sort in [
        "time",
        "username",
        "company_key",
        "points",
        "duration",
        "method_group",
    ] {
        let q = AuditQuery {
            sort_field: Some(sort.into()),
            descending: sort.len() % 2 == 0,
            offset: 7,
            limit: 50,
            target: Some("b".into()),
            ..audit_query()
        };
        assert_eq!(
            a.store.list_audit(q.clone()).await.unwrap(),
            b.store.list_audit(q.clone()).await.unwrap(),
            "{q:?}"
        );
    }
    for (from, to, user, company) in [
        ("2025-03-01", "2025-04-30", None, None),
        ("2025-03-12", "2025-03-14", None, None),
        ("2025-03-10", "2025-03-10", Some("u6"), None),
        ("2025-03-09", "2025-04-10", None, Some("beta")),
    ] {
        let q = StatsQuery {
            from_day: from.into(),
            to_day: to.into(),
            username: user.map(str::to_owned),
            company_key: company.map(str::to_owned),
        };
        let (x, y) = (
            a.store.statistics(q.clone()).await.unwrap(),
            b.store.statistics(q.clone()).await.unwrap(),
        );
        assert!(!x.is_empty(), "{q:?}");
        assert_eq!(x, y, "{q:?}");
    }
    for u in ["u0", "u1", "u6", "u7"] {
        for (from, to) in [(T0, T0 + 30 * 24 * HOUR), (T0 + 5 * HOUR, T0 + 29 * HOUR)] {
            for g in ["READ", "WRITE"] {
                assert_eq!(
                    a.store
                        .points_used(u.into(), "SVC".into(), g.into(), from, to)
                        .await
                        .unwrap(),
                    b.store
                        .points_used(u.into(), "SVC".into(), g.into(), from, to)
                        .await
                        .unwrap(),
                    "{u} {g} {from}..{to}"
                );
            }
        }
    }
}
