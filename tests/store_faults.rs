//! The real binary on a PostgreSQL store (`ROSETTA__STORE__URL`) under load, with the
//! database stopped for 10 s, and with the node stopped by SIGTERM: requests already
//! authenticated keep being answered while PostgreSQL is away (from the node's credential
//! cache), the node never crashes, and afterwards the audit table holds exactly one row per
//! answered request (the rows spilled during the outage are replayed once, none is lost).
//! Prints the counts.

// A load test reads the machine's real clock for its phases, not the gateway's.
#![allow(clippy::disallowed_methods)]
#![cfg(unix)]

mod postgres;
mod process;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use postgres::PgServer;
use process::{Served, get, serve_with};

/// The phases of a run, as the clients tag their answers: PostgreSQL up; down, for the first
/// 5 s (the credential cache's freshness) and after; back.
const UP: u8 = 0;
const DOWN: u8 = 1;
const DOWN_LATE: u8 = 2;
const BACK: u8 = 3;

/// Answers counted by (phase, status; `None`: no answer).
type Tally = BTreeMap<(u8, Option<u16>), u64>;

/// Clients sending at once.
const CLIENTS: usize = 8;

/// Eight clients sending GETs as `root` in a loop, each answer counted by phase and status
/// (`None`: no answer, a connection refused or cut).
struct Load {
    phase: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(base: &str, path: &str) -> Self {
        let phase = Arc::new(AtomicU8::new(UP));
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Mutex::new(BTreeMap::new()));
        let tasks = (0..CLIENTS)
            .map(|_| {
                let (b, p) = (base.to_owned(), path.to_owned());
                let (phase, stop, tally) = (phase.clone(), stop.clone(), tally.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let status = get(&b, &p).await;
                        // The phase the answer came in (not the one it was sent in: an
                        // answer during the outage is what counts).
                        let now = phase.load(Ordering::Relaxed);
                        *tally.lock().entry((now, status)).or_default() += 1;
                        if status.is_none() {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                })
            })
            .collect();
        Self {
            phase,
            stop,
            tally,
            tasks,
        }
    }

    fn answered_in(&self, phase: u8, status: u16) -> u64 {
        self.tally
            .lock()
            .get(&(phase, Some(status)))
            .copied()
            .unwrap_or(0)
    }

    async fn until_answered(&self, phase: u8, n: u64) {
        while self.answered_in(phase, 200) < n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the clients; every (phase, status) counted.
    async fn finish(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        self.tally.lock().clone()
    }
}

/// Answered requests (any status) in `tally`.
fn answered(tally: &Tally) -> u64 {
    tally
        .iter()
        .filter(|((_, s), _)| s.is_some())
        .map(|(_, n)| n)
        .sum()
}

/// `root`'s audit rows in PostgreSQL and how many distinct keys they have.
fn root_rows(pg: &PgServer) -> (u64, u64) {
    let out = pg.psql("SELECT COUNT(*), COUNT(DISTINCT id) FROM audit WHERE username = 'root'");
    let (rows, distinct) = out.split_once('|').expect("two columns");
    (rows.parse().unwrap(), distinct.parse().unwrap())
}

/// Runs `f` on the server on a blocking thread (its stop and start wait on processes) and
/// gives the server back.
async fn blocking(mut pg: PgServer, f: fn(&mut PgServer)) -> PgServer {
    tokio::task::spawn_blocking(move || {
        f(&mut pg);
        pg
    })
    .await
    .unwrap()
}

/// A node on `pg` in folder `dir` (its spill file lands there) and
/// limits high enough that nothing is refused, `root`'s password already checked once
/// against PostgreSQL (from then on the node knows it); the node, the path it serves and
/// where its spill file is named from.
async fn node(appdirect: &str, dir: &Path, pg: &PgServer) -> (Served, String, PathBuf) {
    let db = dir.join("rosetta.db");
    let served = serve_with(
        appdirect,
        &db,
        &[
            ("ROSETTA__STORE__URL", &pg.url()),
            ("ROSETTA__RATE_LIMITS__DEFAULT__BURST", "1000000"),
        ],
    );
    let path = format!("/companies/{}", rosetta::demo::PARTNER_ID);
    assert_eq!(get(&served.base, &path).await, Some(200));
    (served, path, db)
}

/// One GET with an API key the node has never seen: its status and `Retry-After`.
async fn unknown_key(base: &str, path: &str) -> (u16, Option<String>) {
    use http_body_util::{BodyExt, Empty};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<bytes::Bytes>>();
    let req = http::Request::get(format!("{base}{path}"))
        .header("authorization", "Bearer rk-never-seen-by-this-node")
        .body(Empty::new())
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    resp.into_body().collect().await.unwrap();
    (status, retry_after)
}

fn spill_file(db: &Path) -> std::path::PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".audit-spill.jsonl");
    name.into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_stopped_10_s_under_load_loses_no_answer_and_no_audit_row() {
    let pg = PgServer::start();
    let appdirect = rosetta::demo::start_appdirect().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (served, path, db) = node(&appdirect.url(), dir.path(), &pg).await;

    let load = Load::start(&served.base, &path);
    load.until_answered(UP, 100).await;
    load.phase.store(DOWN, Ordering::Relaxed);
    let mut pg = blocking(pg, PgServer::stop).await;
    assert!(!pg.ready(), "PostgreSQL is down");
    // A caller the node has not checked yet cannot be checked now: told to retry (503 with
    // Retry-After), not that the key is wrong.
    let (status, retry_after) = unknown_key(&served.base, &path).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Past the 5 s a successful check is reused for: the node can no longer ask the store.
    load.phase.store(DOWN_LATE, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let spilled_during = std::fs::metadata(spill_file(&db)).map_or(0, |m| m.len());
    pg = blocking(pg, PgServer::restart).await;
    load.phase.store(BACK, Ordering::Relaxed);
    load.until_answered(BACK, 200).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let tally = load.finish().await;
    // Still answering after the outage: it did not crash.
    assert_eq!(get(&served.base, &path).await, Some(200));
    assert!(served.stop("TERM").await, "a clean exit after the drain");

    let answered = answered(&tally) + 2; // the warm-up and the last check
    let (rows, distinct) = root_rows(&pg);
    let spill_left = std::fs::metadata(spill_file(&db)).map_or(0, |m| m.len());
    eprintln!(
        "postgres stopped 10 s: answers by (phase 0 up / 1 down, first 5 s / 2 down, last 5 s / 3 back, status): {tally:?}; \
         {answered} answered, {rows} audit rows ({distinct} distinct), spill file {spilled_during} \
         bytes during the outage, {spill_left} left"
    );
    for phase in [DOWN, DOWN_LATE] {
        let ok = tally.get(&(phase, Some(200))).copied().unwrap_or(0);
        assert!(
            ok > 0,
            "requests were answered while PostgreSQL was down (phase {phase})"
        );
    }
    // Every answer, in every phase, was a success: the credential cache answered for the
    // database, and nothing on the proxied path needs it.
    let not_ok: Vec<_> = tally
        .iter()
        .filter(|((_, s), _)| s.is_some_and(|s| s != 200))
        .collect();
    assert!(not_ok.is_empty(), "answers other than 200: {not_ok:?}");
    assert_eq!(
        (status, retry_after.as_deref()),
        (503, Some("1")),
        "an unchecked key while the store is down"
    );
    assert!(
        spilled_during > 0,
        "the rows of the outage went to the spill file"
    );
    assert_eq!(spill_left, 0, "the spill file was replayed and removed");
    assert_eq!(distinct, rows, "no audit row written twice");
    assert_eq!(rows, answered, "one audit row per answered request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_on_postgres_loses_no_audit_row() {
    let pg = PgServer::start();
    let appdirect = rosetta::demo::start_appdirect().await.unwrap();
    // Slow answers: requests are in flight when SIGTERM comes, and must finish and be
    // audited.
    appdirect.faults().push(rosetta::demo::Fault {
        method: None,
        path_prefix: "/api".into(),
        kind: rosetta::demo::FaultKind::Delay(Duration::from_millis(50)),
        times: None,
    });
    let dir = tempfile::tempdir().unwrap();
    let (served, path, _) = node(&appdirect.url(), dir.path(), &pg).await;

    let load = Load::start(&served.base, &path);
    load.until_answered(UP, 300).await;
    let in_flight = appdirect.log().requests().len();
    assert!(served.stop("TERM").await, "a clean exit after the drain");
    let tally = load.finish().await;
    let answered = answered(&tally) + 1; // the warm-up
    let (rows, distinct) = root_rows(&pg);
    eprintln!(
        "SIGTERM under load: answers by status: {tally:?}; {answered} answered \
         ({in_flight} upstream calls when SIGTERM came), {rows} audit rows ({distinct} distinct)"
    );
    let not_ok: Vec<_> = tally
        .iter()
        .filter(|((_, s), _)| s.is_some_and(|s| s != 200))
        .collect();
    assert!(not_ok.is_empty(), "answers other than 200: {not_ok:?}");
    assert_eq!(distinct, rows, "no audit row written twice");
    assert_eq!(rows, answered, "one audit row per answered request, 0 lost");
}
