//! The SQLite store's tests: every statement size, the audit trail's columns and queries,
//! the admin reads beside the lookups.

use super::schema::MIGRATIONS;
use super::*;
use crate::store::UserGroup;

fn company(key: &str) -> Company {
    Company {
        key: key.into(),
        detail: None,
        enabled: true,
    }
}

fn user(name: &str, company: &str, roles: &[&str], enabled: bool) -> User {
    User {
        username: name.into(),
        name: Some(format!("{name} name")),
        email: None,
        phone: None,
        company_key: company.into(),
        enabled,
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        timezone: 0,
    }
}

fn row(user: &str, t: i64) -> AuditRow {
    AuditRow {
        time_ms: t,
        username: user.into(),
        company_key: "acme".into(),
        tracecode: format!("tc-{t}").into(),
        server: "test".into(),
        service: "REDAPI_V1".into(),
        operation: "companies.get".into(),
        method_group: "READ".into(),
        points: 1,
        duration_ms: 3,
        status: 200,
        fingerprint: (t % 3) as u64,
        targets: Arc::from([]),
        ip: None,
    }
}

fn targets(ids: &[&str]) -> Arc<[Arc<str>]> {
    ids.iter().map(|id| Arc::from(*id)).collect()
}

#[test]
fn a_batch_of_every_statement_size_writes_each_row_into_its_own_columns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.db");
    let mut conn = open_conn(&path).unwrap();
    migrate(&mut conn).unwrap();
    // 64 + 8 + 8 + 3: each statement size, the smaller ones more than once.
    let rows: Vec<AuditRow> = (0..83)
        .map(|i| AuditRow {
            time_ms: 1_000 + i,
            username: format!("user{i}").into(),
            company_key: format!("co{i}").into(),
            tracecode: format!("tc{i}").into(),
            server: format!("srv{i}").into(),
            service: format!("svc{i}").into(),
            operation: format!("op{i}").into(),
            method_group: format!("grp{i}").into(),
            points: i as u32 * 2,
            duration_ms: i as u64 * 3,
            status: 200 + i as u16,
            fingerprint: 0xabc0 + i as u64,
            // None, one, and two with characters JSON escapes.
            targets: match i % 3 {
                0 => targets(&[]),
                1 => targets(&[&format!("co{i}")]),
                _ => targets(&[&format!("id-{i}"), "q\"uote\\é"]),
            },
            // None, IPv4 and IPv6.
            ip: match i % 3 {
                0 => None,
                1 => Some(std::net::IpAddr::from([10, 0, 0, i as u8])),
                _ => Some(std::net::IpAddr::from([
                    0x2001, 0xdb8, 0, 0, 0, 0, 0, i as u16,
                ])),
            },
        })
        .collect();
    let keyed: Vec<Keyed> = rows
        .into_iter()
        .enumerate()
        .map(|(i, row)| Keyed {
            rid: i as i64 + 1,
            row,
        })
        .collect();
    write_audit(&mut conn, &keyed).unwrap();
    // Written again (a replay after a partial success): every row is there already.
    write_audit(&mut conn, &keyed).unwrap();
    let mut st = conn
        .prepare(
            "SELECT time_ms, username, company_key, tracecode, client, server, service,
             operation, method_group, points, duration_ms, status, fingerprint, targets, ip,
             id
             FROM audit ORDER BY id",
        )
        .unwrap();
    let read: Vec<Vec<String>> = st
        .query_map([], |r| {
            (0..AUDIT_COLUMNS)
                .map(|k| {
                    Ok(match r.get_ref(k)? {
                        rusqlite::types::ValueRef::Integer(n) => n.to_string(),
                        rusqlite::types::ValueRef::Null => "NULL".to_owned(),
                        v => v.as_str()?.to_owned(),
                    })
                })
                .collect()
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let want: Vec<Vec<String>> = (0..83i64)
        .map(|i| {
            vec![
                (1_000 + i).to_string(),
                format!("user{i}"),
                format!("co{i}"),
                format!("tc{i}"),
                format!("co{i}_|_user{i}"),
                format!("srv{i}"),
                format!("svc{i}"),
                format!("op{i}"),
                format!("grp{i}"),
                (i * 2).to_string(),
                (i * 3).to_string(),
                (200 + i).to_string(),
                format!("{:016x}", 0xabc0 + i),
                match i % 3 {
                    0 => "[]".to_owned(),
                    1 => format!("[\"co{i}\"]"),
                    _ => format!("[\"id-{i}\",\"q\\\"uote\\\\é\"]"),
                },
                match i % 3 {
                    0 => "NULL".to_owned(),
                    1 => format!("10.0.0.{i}"),
                    _ => format!("2001:db8::{i:x}"),
                },
                (i + 1).to_string(),
            ]
        })
        .collect();
    assert_eq!(read, want);
    drop(st);
    // Nothing to write is not an error and writes nothing.
    write_audit(&mut conn, &[]).unwrap();
    let n: i64 = conn
        .query_row("SELECT COUNT(*) FROM audit", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 83);
}

#[tokio::test]
async fn a_panicking_call_fails_alone_and_the_store_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("r.db")).unwrap();
    let failed = s
        .with(|_conn| -> Result<(), StoreError> { panic!("a bug in one call") })
        .await;
    assert!(matches!(failed, Err(StoreError::Backend(_))), "{failed:?}");
    s.create_company(company("after")).await.unwrap();
    assert_eq!(s.user_count().await.unwrap(), 0);
}

#[tokio::test]
async fn companies_users_keys_audit_and_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/r.db");
    {
        let s = SqliteStore::open(&path).unwrap();
        s.create_company(company("acme")).await.unwrap();
        assert!(matches!(
            s.create_company(company("acme")).await,
            Err(StoreError::Conflict(_))
        ));
        s.create_user(user("ann", "acme", &["ADMIN"], true), Some("h".into()))
            .await
            .unwrap();
        s.create_user(user("bob", "acme", &["USER"], false), None)
            .await
            .unwrap();
        assert!(matches!(
            s.create_user(user("cy", "nope", &[], true), None).await,
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            s.delete_company("acme".into()).await,
            Err(StoreError::Invalid(_))
        ));
        let page = s
            .list_users(UserQuery {
                list: ListQuery {
                    offset: 0,
                    limit: 10,
                    filter: Some("b".into()),
                    sort_field: Some("username".into()),
                    descending: false,
                },
                company_key: None,
                group: UserGroup::Total,
            })
            .await
            .unwrap();
        assert_eq!(
            page.overall,
            UserStats {
                total: 2,
                active: 1,
                blocked: 1,
                admins: 1
            }
        );
        assert_eq!(page.filtered.total, 1);
        assert_eq!(page.items[0].username, "bob");
        let key = ApiKeyInfo {
            id: "k1".into(),
            username: "ann".into(),
            prefix: "rk_abc".into(),
            created_ms: 1,
            expires_ms: None,
            revoked: false,
        };
        s.create_key(key.clone(), "sha".into()).await.unwrap();
        let found = s.find_key("sha".into()).await.unwrap().unwrap();
        assert_eq!(found.user.username, "ann");
        for t in 0..2500 {
            s.record_audit(row("ann", t));
        }
        s.flush().await.unwrap();
    }
    // Everything survives a reopen; migrations do not run twice.
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.user_count().await.unwrap(), 2);
    assert_eq!(s.list_keys("ann".into()).await.unwrap().len(), 1);
    s.revoke_key("ann".into(), "k1".into()).await.unwrap();
    assert!(s.find_key("sha".into()).await.unwrap().unwrap().key.revoked);
    let audit = s
        .list_audit(AuditQuery {
            offset: 0,
            limit: 5,
            from_ms: 100,
            to_ms: 200,
            company_key: Some("acme".into()),
            username: None,
            service: None,
            operation: None,
            method_group: None,
            target: None,
            sort_field: Some("time".into()),
            descending: true,
        })
        .await
        .unwrap();
    assert_eq!(audit.overall, 2500);
    assert_eq!(audit.filtered, 100);
    assert_eq!(audit.items[0].time_ms, 199);
    let stats = s
        .statistics(StatsQuery {
            from_day: "1970-01-01".into(),
            to_day: "1970-01-01".into(),
            username: Some("ann".into()),
            company_key: None,
        })
        .await
        .unwrap();
    assert_eq!(stats.len(), 1);
    assert_eq!((stats[0].points, stats[0].unique_points), (2500, 3));
    assert!(
        s.statistics(StatsQuery {
            from_day: "1970-01-02".into(),
            to_day: "1970-01-05".into(),
            username: None,
            company_key: None,
        })
        .await
        .unwrap()
        .is_empty()
    );
    s.delete_user("bob".into()).await.unwrap();
    s.delete_user("ann".into()).await.unwrap();
    assert!(
        s.list_keys("ann".into()).await.unwrap().is_empty(),
        "keys go with their user"
    );
    s.delete_company("acme".into()).await.unwrap();
}

fn audit_query(target: Option<&str>) -> AuditQuery {
    AuditQuery {
        offset: 0,
        limit: 100,
        from_ms: 0,
        to_ms: i64::MAX,
        company_key: None,
        username: None,
        service: None,
        operation: None,
        method_group: None,
        target: target.map(str::to_owned),
        sort_field: Some("time".into()),
        descending: false,
    }
}

#[tokio::test]
async fn the_target_filter_matches_exact_ids_and_rows_keep_their_targets() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("t.db")).unwrap();
    let rows: [&[&str]; 7] = [
        &["acme-1"],
        &["acme-10", "beta"],
        &[],
        &["beta", "acme-1"],
        &["xacme-1x"],
        &["ACME-1"],
        &["acme-1\"]"],
    ];
    for (t, ids) in rows.iter().enumerate() {
        s.record_audit(AuditRow {
            targets: targets(ids),
            ..row("ann", t as i64)
        });
    }
    s.flush().await.unwrap();
    let times = |target: &str| {
        let s = &s;
        let target = target.to_owned();
        async move {
            let page = s.list_audit(audit_query(Some(&target))).await.unwrap();
            assert_eq!(page.overall, 7);
            assert_eq!(page.filtered, page.items.len() as u64);
            page.items.iter().map(|r| r.time_ms).collect::<Vec<_>>()
        }
    };
    assert_eq!(times("acme-1").await, [0, 3], "exact ids only");
    assert_eq!(times("beta").await, [1, 3]);
    assert_eq!(times("acme-1\"]").await, [6], "quotes match as text");
    for none in ["acme", "cme-1", "acme-1\"", "[]", "%", ""] {
        assert!(times(none).await.is_empty(), "{none:?}");
    }
    // Every row reads back with its own targets, in order; without a filter, all rows.
    let all = s.list_audit(audit_query(None)).await.unwrap();
    assert_eq!(all.filtered, 7);
    for (r, ids) in all.items.iter().zip(rows) {
        assert_eq!(r.targets, targets(ids), "row {}", r.time_ms);
    }
}

#[tokio::test]
async fn rows_audited_before_the_targets_migration_have_none() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        // A store as the build before targets left it: schema version 4, one row.
        let mut conn = open_conn(&path).unwrap();
        let tx = conn.transaction().unwrap();
        for sql in &MIGRATIONS[..4] {
            tx.execute_batch(sql).unwrap();
        }
        tx.pragma_update(None, "user_version", 4).unwrap();
        tx.execute(
            "INSERT INTO audit (time_ms, username, company_key, tracecode, client, server,
             service, operation, method_group, points, duration_ms, status, fingerprint)
             VALUES (5, 'ann', 'acme', 'tc', 'acme_|_ann', 's', 'SVC', 'op', 'READ', 1, 2,
             200, '0000000000000001')",
            [],
        )
        .unwrap();
        tx.commit().unwrap();
    }
    let s = SqliteStore::open(&path).unwrap();
    let version: i64 = s
        .with(|c| {
            c.query_row("PRAGMA user_version", [], |r| r.get(0))
                .map_err(backend)
        })
        .await
        .unwrap();
    assert_eq!(version, MIGRATIONS.len() as i64);
    let all = s.list_audit(audit_query(None)).await.unwrap();
    assert_eq!(all.items.len(), 1);
    assert!(all.items[0].targets.is_empty());
    assert_eq!(all.items[0].ip, None, "rows before the ip column have none");
    let some = s.list_audit(audit_query(Some("acme"))).await.unwrap();
    assert_eq!(some.filtered, 0);
}

/// An admin query that takes long runs on its own connection: a key lookup behind it
/// is answered at once, not after it.
#[tokio::test]
async fn a_long_admin_read_does_not_hold_up_a_key_lookup() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
    let (started_tx, started) = tokio::sync::oneshot::channel();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let long = store.with_read(move |_conn| {
        let _ = started_tx.send(());
        // Holds the read thread until the lookup below has been answered.
        released
            .recv_timeout(Duration::from_secs(10))
            .map_err(|e| StoreError::Backend(e.to_string()))
    });
    // The job is on the read thread already: it was sent when the call was made.
    started.await.unwrap();
    let found = tokio::time::timeout(Duration::from_secs(5), store.find_key("0".repeat(64)))
        .await
        .expect("the lookup is not queued behind the admin read")
        .unwrap();
    assert!(found.is_none());
    release.send(()).unwrap();
    long.await.unwrap();
}
