//! Issue 24's smaller items end to end: what the gateway keeps to itself (the store file's
//! mode, `/metrics`, internal error text) and what it refuses (oversized admin lists and
//! ranges), each refusal in the client's dialect with nothing changed.

mod common;

use common::start;

#[cfg(unix)]
#[tokio::test]
async fn the_store_and_its_journal_files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let env = start().await;
    // A write, so the journal files exist and hold something.
    env.get("/companies").await;
    env.gw.store.flush().await.expect("flushed");
    let db = env.dir.path().join("rosetta.db");
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db.clone().into_os_string();
        p.push(suffix);
        let mode = std::fs::metadata(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.to_string_lossy()))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{}: {:o}", p.to_string_lossy(), mode);
    }
}
