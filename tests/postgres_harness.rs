//! The PostgreSQL test harness itself (tests/postgres/mod.rs): a real server on a free port,
//! its own data directory, a restart that keeps the data on the same port, two servers side
//! by side, and nothing left after its test.
#![cfg(unix)]

mod postgres;

use postgres::PgServer;

#[test]
fn a_server_answers_on_its_own_port_with_durability_off() {
    let server = PgServer::start();
    assert!(server.ready());
    assert_eq!(
        server.url(),
        format!("postgres://postgres@127.0.0.1:{}/rosetta", server.port())
    );
    assert_ne!(server.port(), 5432, "never the default port");
    assert_eq!(server.psql("SELECT current_database()"), "rosetta");
    assert_eq!(server.psql("SHOW fsync"), "off");
    assert_eq!(server.psql("SHOW full_page_writes"), "off");
    assert_eq!(server.psql("SHOW listen_addresses"), "127.0.0.1");
    let dir = server.psql("SHOW data_directory");
    assert!(
        std::path::Path::new(&dir).starts_with(server.dir()),
        "{dir} is the harness's own folder"
    );
    server.psql("CREATE TABLE t (n INTEGER); INSERT INTO t VALUES (1), (2)");
    assert_eq!(server.psql("SELECT SUM(n) FROM t"), "3");
    assert!(server.try_psql("SELECT * FROM missing").is_err());
}

#[test]
fn a_restart_keeps_the_data_and_the_port() {
    let mut server = PgServer::start();
    let (port, pid) = (server.port(), server.pid().unwrap());
    server.psql("CREATE TABLE kept (s TEXT); INSERT INTO kept VALUES ('before')");
    server.stop();
    assert!(!server.ready(), "stopped means refused");
    assert!(!server.is_running());
    server.restart();
    assert_eq!(server.port(), port);
    assert_ne!(server.pid(), Some(pid), "a new process");
    assert_eq!(server.psql("SELECT s FROM kept"), "before");
    // A crash (immediate shutdown) keeps committed data too.
    server.kill();
    server.restart();
    assert_eq!(server.psql("SELECT COUNT(*) FROM kept"), "1");
}

#[test]
fn two_servers_run_side_by_side_apart() {
    let a = PgServer::start();
    let b = PgServer::start();
    assert_ne!(a.port(), b.port());
    a.psql("CREATE TABLE only_a (n INTEGER)");
    assert!(b.try_psql("SELECT * FROM only_a").is_err());
    assert!(a.ready() && b.ready());
}

#[test]
fn dropping_the_harness_ends_the_server_and_removes_its_folder() {
    let server = PgServer::start();
    let (port, pid) = (server.port(), server.pid().unwrap());
    let dir = server.dir().to_owned();
    drop(server);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "postgres {pid} outlived its harness"
    );
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    assert!(!dir.exists(), "its folder is removed");
}
