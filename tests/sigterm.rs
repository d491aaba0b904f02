//! The real binary under load, stopped with SIGTERM: every answered request has its audit
//! row on disk afterwards (the drain finishes in-flight requests, then the store flushes).

#![cfg(unix)]

mod process;

use std::time::Duration;

use process::{get, root_audit_rows, serve};

#[tokio::test]
async fn sigterm_under_load_loses_no_audit_row() {
    let appdirect = rosetta::demo::start_appdirect().await.unwrap();
    appdirect.faults().push(rosetta::demo::Fault {
        method: None,
        path_prefix: "/api".into(),
        kind: rosetta::demo::FaultKind::Delay(Duration::from_millis(200)),
        times: None,
    });
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rosetta.db");
    let served = serve(&appdirect.url(), &db);
    let base = served.base.clone();
    let path = format!("/companies/{}", rosetta::demo::PARTNER_ID);
    // Warm the password check so the load is pure proxying.
    assert_eq!(get(&base, &path).await, Some(200));
    let warm_calls = appdirect.log().requests().len();
    let tasks: Vec<_> = (0..30)
        .map(|_| {
            let (b, p) = (base.clone(), path.clone());
            tokio::spawn(async move { get(&b, &p).await })
        })
        .collect();
    while appdirect.log().requests().len() == warm_calls {
        tokio::task::yield_now().await;
    }
    let stopping = tokio::spawn(served.stop("TERM"));
    let mut answered = 1u64; // the warm-up request
    for t in tasks {
        if let Some(status) = t.await.unwrap() {
            assert_eq!(status, 200);
            answered += 1;
        }
    }
    assert!(stopping.await.unwrap(), "a clean exit after the drain");
    assert!(answered > 1, "requests were in flight when SIGTERM came");
    assert_eq!(
        root_audit_rows(&db).await,
        answered,
        "one audit row per answered request"
    );
}
