//! The real binary under load, killed with SIGKILL: at most the last second of usage (audit
//! rows, from which quota usage restarts) is lost. Prints the measured loss.

// A measurement reads the machine's real clock, not the gateway's.
#![allow(clippy::disallowed_methods)]
#![cfg(unix)]

mod process;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use process::{get, root_audit_rows, serve};

#[tokio::test]
async fn kill_9_loses_at_most_the_last_second_of_usage() {
    let appdirect = rosetta::demo::start_appdirect().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rosetta.db");
    let served = serve(&appdirect.url(), &db);
    let base = served.base.clone();
    let path = format!("/companies/{}", rosetta::demo::PARTNER_ID);
    assert_eq!(get(&base, &path).await, Some(200));
    // Steady load from 8 clients; each answer's time is kept.
    let answers = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (b, p, answers, stop) = (base.clone(), path.clone(), answers.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if get(&b, &p).await == Some(200) {
                        answers.lock().push(Instant::now());
                    }
                }
            })
        })
        .collect();
    while answers.lock().len() < 300 {
        tokio::task::yield_now().await;
    }
    let killed_at = Instant::now();
    served.stop("KILL").await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let answers = answers.lock().clone();
    let answered = answers.iter().filter(|t| **t <= killed_at).count() as u64 + 1;
    let last_second = answers
        .iter()
        .filter(|t| **t <= killed_at && killed_at.duration_since(**t) <= Duration::from_secs(1))
        .count() as u64;
    let rows = root_audit_rows(&db).await;
    let lost = answered.saturating_sub(rows);
    eprintln!(
        "kill -9: {answered} answered, {rows} audit rows on disk, {lost} lost; {last_second} answered in the last second"
    );
    assert!(
        lost <= last_second,
        "lost {lost} > answered in the last second ({last_second})"
    );
}
