//! The Redis test harness itself (tests/redis/mod.rs): a real server on a free port that
//! answers, restarts on the same port empty, runs beside another, freezes, and is gone
//! after its test.
#![cfg(unix)]

mod redis;

use redis::RedisServer;

#[test]
fn a_server_answers_on_its_own_port_and_keeps_nothing_on_disk() {
    let server = RedisServer::start();
    assert!(server.ping());
    assert_eq!(
        server.url(),
        format!("redis://127.0.0.1:{}/0", server.port())
    );
    assert_ne!(server.port(), 6379, "never the default port");
    let _: () = server.cmd(&["SET", "rosetta:a", "1"]);
    let _: () = server.cmd(&["ZADD", "rosetta:lease", "10", "x", "20", "y"]);
    assert_eq!(
        server.cmd::<Option<String>>(&["GET", "rosetta:a"]),
        Some("1".into())
    );
    assert_eq!(server.cmd::<i64>(&["ZCARD", "rosetta:lease"]), 2);
    assert_eq!(server.keys("rosetta:*"), ["rosetta:a", "rosetta:lease"]);
    // Started as asked: no snapshots, no append-only file, our folder.
    let save: Vec<String> = server.cmd(&["CONFIG", "GET", "save"]);
    assert_eq!(save, ["save", ""]);
    let aof: Vec<String> = server.cmd(&["CONFIG", "GET", "appendonly"]);
    assert_eq!(aof, ["appendonly", "no"]);
    let dir: Vec<String> = server.cmd(&["CONFIG", "GET", "dir"]);
    assert_eq!(
        std::path::Path::new(&dir[1]).canonicalize().unwrap(),
        server.dir().canonicalize().unwrap()
    );
    server.flushall();
    assert!(server.keys("*").is_empty());
}

#[test]
fn a_restart_keeps_the_port_and_starts_empty() {
    let mut server = RedisServer::start();
    let (port, url) = (server.port(), server.url());
    let _: () = server.cmd(&["SET", "k", "v"]);
    let before = server.pid();
    server.stop();
    assert!(!server.ping(), "stopped, yet answering");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the port still accepts after stop"
    );
    server.restart();
    assert!(server.ping());
    assert_eq!((server.port(), server.url()), (port, url));
    assert_ne!(server.pid(), before, "a new process");
    assert_eq!(server.cmd::<Option<String>>(&["GET", "k"]), None);
    // A second restart straight away (no stop first) works too.
    server.restart();
    assert!(server.ping());
}

#[test]
fn two_servers_run_at_once_apart() {
    let a = RedisServer::start();
    let b = RedisServer::start();
    assert_ne!(a.port(), b.port());
    let _: () = a.cmd(&["SET", "only-a", "1"]);
    assert_eq!(a.keys("*"), ["only-a"]);
    assert!(b.keys("*").is_empty());
    assert_ne!(a.dir(), b.dir());
}

#[test]
fn a_frozen_server_times_out_and_answers_again_when_thawed() {
    let mut server = RedisServer::start();
    server.freeze();
    assert!(server.is_running());
    let err = server.try_cmd::<String>(&["PING"]).unwrap_err();
    assert!(err.is_timeout() || err.is_io_error(), "{err}");
    server.thaw();
    assert!(server.ping());
}

#[test]
fn dropping_the_harness_kills_the_server() {
    let server = RedisServer::start();
    let (port, pid) = (server.port(), server.pid().unwrap());
    let dir = server.dir().to_owned();
    drop(server);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "redis-server {pid} outlived its harness"
    );
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    assert!(!dir.exists(), "its folder is removed");
}
