//! The PostgreSQL store's own behaviour, on a real server per test (tests/postgres):
//! versioned migrations applied once under the advisory lock (two nodes opening together),
//! a schema newer than the build refused, an unreachable database refused at open with a
//! clear error, and the audit trail across an outage: rows spilled while PostgreSQL is down
//! and replayed when it returns, none lost and none written twice (a spill file replayed
//! again writes nothing); nodes started together roll old audit days up once.
#![cfg(unix)]
// The waits below poll the store's health against a real-time deadline.
#![allow(clippy::disallowed_methods)]

mod postgres;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use postgres::PgServer;
use rosetta::store::{
    AuditLog, AuditOptions, AuditQuery, AuditRow, AuditSink, Directory, PgStore, WriterState,
};

/// The bound on every wait for the writer (a failed batch takes its retries first).
const WAIT: Duration = Duration::from_secs(30);

fn row(n: i64) -> AuditRow {
    AuditRow {
        time_ms: 1_700_000_000_000 + n,
        username: "ann".into(),
        company_key: "acme".into(),
        tracecode: format!("tc-{n}").into(),
        server: "node-a".into(),
        service: "SVC".into(),
        operation: "op".into(),
        method_group: "READ".into(),
        points: 1,
        duration_ms: 2,
        status: 200,
        fingerprint: n as u64,
        targets: Arc::from([]),
        ip: None,
    }
}

fn all() -> AuditQuery {
    AuditQuery {
        offset: 0,
        limit: 10_000,
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

fn open(server: &PgServer, dir: &Path) -> PgStore {
    PgStore::open(&server.url(), 2, &dir.join("node.db")).unwrap()
}

/// Waits until `done` holds, polling; panics after [`WAIT`] with `what`.
async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn migrations_run_once_even_when_nodes_open_together() {
    let server = PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let url = server.url();
    // Four nodes open at once: one migrates, the others wait on the lock and find it done.
    let opens: Vec<_> = (0..4)
        .map(|i| {
            let (url, path) = (url.clone(), dir.path().join(format!("n{i}.db")));
            std::thread::spawn(move || PgStore::open(&url, 1, &path).map(|_| ()))
        })
        .collect();
    for o in opens {
        o.join().unwrap().unwrap();
    }
    assert_eq!(server.psql("SELECT version FROM schema_migrations"), "1");
    assert_eq!(
        server.psql("SELECT value FROM store_meta WHERE name = 'boot'"),
        "4",
        "each open took its own boot number (the high bits of its rows' keys)"
    );
    // Reopened: nothing to do, the data kept.
    let s = open(&server, dir.path());
    s.create_company(rosetta::store::Company {
        key: "acme".into(),
        detail: None,
        enabled: true,
    })
    .await
    .unwrap();
    drop(s);
    let s = open(&server, dir.path());
    assert!(s.get_company("acme".into()).await.is_ok());
    assert_eq!(server.psql("SELECT COUNT(*) FROM schema_migrations"), "1");
}

#[tokio::test]
async fn a_newer_schema_or_an_unreachable_database_is_refused_at_open() {
    let mut server = PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    drop(open(&server, dir.path()));
    server.psql("INSERT INTO schema_migrations VALUES (99, 0)");
    let e = PgStore::open(&server.url(), 1, &dir.path().join("n.db")).unwrap_err();
    assert!(
        e.to_string()
            .contains("schema version 99 is newer than this build knows (1)"),
        "{e}"
    );
    server.stop();
    let e = PgStore::open(&server.url(), 1, &dir.path().join("n.db")).unwrap_err();
    assert!(e.to_string().contains("connect"), "{e}");
    // The password of a URL never reaches the error.
    let url = format!("postgres://u:hunter2@127.0.0.1:{}/rosetta", server.port());
    let e = PgStore::open(&url, 1, &dir.path().join("n.db")).unwrap_err();
    assert!(!e.to_string().contains("hunter2"), "{e}");
}

#[tokio::test]
async fn audit_rows_survive_an_outage_exactly_once() {
    let mut server = PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let spill = dir.path().join("node.db.audit-spill.jsonl");
    let s = PgStore::open_with(
        &server.url(),
        2,
        &dir.path().join("node.db"),
        AuditOptions {
            queue: 1_000,
            ..AuditOptions::default()
        },
    )
    .unwrap();
    for n in 0..100 {
        s.record_audit(row(n));
    }
    s.flush().await.unwrap();
    assert_eq!(s.list_audit(all()).await.unwrap().overall, 100);

    // Down: the writer retries, then spills; the rows are durable on the node's disk, and
    // `/health` tells of them.
    server.stop();
    for n in 100..250 {
        s.record_audit(row(n));
    }
    s.flush().await.unwrap();
    let h = s.audit_health();
    assert_eq!(h.writer, WriterState::Failing, "{h:?}");
    assert_eq!(h.spilled, 150, "{h:?}");
    assert_eq!(h.queued, 0, "spilled rows give their room back");
    assert!(spill.exists());
    assert!(s.list_audit(all()).await.is_err(), "reads fail while down");

    // Back: the spill file is replayed, the file removed, every row there once.
    server.restart();
    for n in 250..300 {
        s.record_audit(row(n));
    }
    wait_for("the spill file's replay", || {
        let h = s.audit_health();
        h.spilled == 0 && h.writer == WriterState::Ok
    })
    .await;
    s.flush().await.unwrap();
    assert!(!spill.exists());
    let page = s.list_audit(all()).await.unwrap();
    assert_eq!(page.overall, 300);
    let mut codes: Vec<_> = page.items.iter().map(|r| r.tracecode.to_string()).collect();
    codes.sort();
    codes.dedup();
    assert_eq!(codes.len(), 300, "no row twice");
    assert_eq!(
        server.psql("SELECT COUNT(DISTINCT id) FROM audit"),
        "300",
        "each row keyed"
    );
}

#[tokio::test]
async fn a_spill_file_replayed_twice_writes_its_rows_once() {
    let server = PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let spill = dir.path().join("node.db.audit-spill.jsonl");
    // A spill file as a crash between the replay's commit and the file's removal leaves it:
    // replayed at the next open, and again at the one after.
    let lines: String = (1..=3)
        .map(|rid| {
            format!(
                "{{\"rid\":{rid},\"time_ms\":{rid},\"username\":\"ann\",\"company_key\":\"acme\",\
                 \"tracecode\":\"tc-{rid}\",\"server\":\"n\",\"service\":\"SVC\",\"operation\":\"op\",\
                 \"method_group\":\"READ\",\"points\":1,\"duration_ms\":2,\"status\":200,\
                 \"fingerprint\":7,\"targets\":[\"t\"],\"ip\":\"10.0.0.1\"}}\n"
            )
        })
        .collect();
    for _ in 0..2 {
        std::fs::write(&spill, &lines).unwrap();
        let s = open(&server, dir.path());
        assert_eq!(s.audit_health().spilled, 3, "counted at open");
        wait_for("the replay", || s.audit_health().spilled == 0).await;
        assert!(!spill.exists());
        let page = s.list_audit(all()).await.unwrap();
        assert_eq!(page.overall, 3);
        assert_eq!(page.items[2].ip, Some([10, 0, 0, 1].into()));
        assert_eq!(&*page.items[0].targets, [Arc::from("t")]);
    }
}

/// Nodes sharing one database each run the audit retention when they start: four started
/// together roll every old day up exactly once (the totals are the rows', not a multiple).
#[tokio::test]
async fn nodes_starting_together_roll_each_day_up_once() {
    let server = PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (days, per_day) = (30_i64, 100_i64);
    {
        let s = open(&server, dir.path());
        for d in 0..days {
            for n in 0..per_day {
                let mut r = row(d * per_day + n);
                r.time_ms = 1_700_000_000_000 + d * 86_400_000 + n;
                r.points = 3;
                s.record_audit(r);
            }
        }
        s.flush().await.unwrap();
    }
    let total = days * per_day;
    assert_eq!(server.psql("SELECT COUNT(*) FROM audit"), total.to_string());
    let url = server.url();
    let nodes: Vec<_> = (0..4)
        .map(|i| {
            let (url, path) = (url.clone(), dir.path().join(format!("r{i}.db")));
            std::thread::spawn(move || {
                let audit = AuditOptions {
                    days: 90,
                    ..AuditOptions::default()
                };
                PgStore::open_with(&url, 1, &path, audit).unwrap()
            })
        })
        .collect();
    let nodes: Vec<PgStore> = nodes.into_iter().map(|t| t.join().unwrap()).collect();
    wait_for("the old rows rolled up", || {
        server.psql("SELECT COUNT(*) FROM audit") == "0"
    })
    .await;
    // Each node's run is over once it found no day left (its next step reads nothing).
    for n in &nodes {
        n.flush().await.unwrap();
    }
    assert_eq!(
        server
            .psql("SELECT SUM(requests) || ' ' || SUM(points) || ' ' || COUNT(*) FROM audit_daily"),
        format!("{total} {} {days}", total * 3),
        "every request counted once, in one row per day"
    );
}
