//! A real `redis-server` per test: its own free port on 127.0.0.1 and its own temporary
//! folder, nothing saved to disk, killed when the test ends (even by a panic). Every Redis
//! test starts one with `RedisServer::start()`; none shares an instance or uses a fixed port.
//!
//! A test file declares `mod redis;` and `use redis::RedisServer;`. The module shadows the
//! `redis` crate in that file: name the crate `::redis` there (the helpers here cover
//! inspecting keys without it).
//!
//! The port is chosen by binding `127.0.0.1:0` and releasing it before Redis binds it, so
//! another process can take it in between: the server is then started again on a new port.
//! A server answering on our port is only accepted when its `process_id` is our child's.
//!
//! When `redis-server` is missing and the tests run as root, it is installed once with
//! apt-get (the Debian package), serialized across test binaries by `flock`, and the
//! package's own service (port 6379, never used here) is stopped again.
#![allow(dead_code)]
// The harness waits on real processes, so it reads the real clock for its deadlines.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

// A test file may hold both harnesses, so both load this module; it keeps no state.
#[allow(clippy::duplicate_mod)]
#[path = "../servers/mod.rs"]
mod servers;

use ::redis::{Client, Connection, FromRedisValue, RedisResult};
use servers::free_port;

/// How long a server may take to answer its first PING.
const READY_WITHIN: Duration = Duration::from_secs(10);
/// Read and write timeout of the helpers' connections: a frozen server fails a call, it does
/// not hang the test.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Serializes the apt-get install across test binaries started at once.
const INSTALL_LOCK: &str = "/tmp/rosetta-redis-install.lock";

/// A `redis-server` child process on 127.0.0.1.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
}

/// Why a start attempt failed.
enum Startup {
    /// Another process bound the port first: try again on another.
    PortTaken,
    /// Anything else: the message says what, with the server's log.
    Failed(String),
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers PING (at most 10 s).
    /// Panics, with the server's log, when it cannot.
    pub fn start() -> Self {
        let bin = redis_server_binary();
        let dir = tempfile::Builder::new()
            .prefix("rosetta-redis-")
            .tempdir()
            .expect("a temporary folder for redis-server");
        let mut server = Self {
            child: None,
            port: 0,
            dir,
            bin,
        };
        for _ in 0..10 {
            server.port = free_port();
            match server.launch() {
                Ok(()) => return server,
                Err(Startup::PortTaken) => continue,
                Err(Startup::Failed(why)) => panic!("{why}"),
            }
        }
        panic!("redis-server: 10 free ports were taken by others before it could bind one");
    }

    /// `redis://127.0.0.1:PORT/0`, for `[cluster] redis_url` (`ROSETTA__CLUSTER__REDIS_URL`).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The port it listens on (the same after a restart).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The server's own folder (`--dir`), which also holds its log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What the server logged so far (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// Whether the process is still alive (a frozen one counts as alive).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kills the server (SIGKILL) and waits for it to end: every connection drops at once,
    /// as when Redis crashes. Nothing is saved, so a restart starts empty.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port and folder (empty: nothing was saved), for
    /// "Redis stopped mid-load, then back" tests. Stops it first when it still runs. Panics
    /// when the port stays taken by another process for 10 s.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            match self.launch() {
                Ok(()) => return,
                Err(Startup::PortTaken) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(Startup::PortTaken) => panic!(
                    "redis-server cannot restart: port {} was taken by another process",
                    self.port
                ),
                Err(Startup::Failed(why)) => panic!("{why}"),
            }
        }
    }

    /// Suspends the process (SIGSTOP): connections stay open and the port accepts, but
    /// nothing is answered, which is how a hung or partitioned Redis looks (timeouts, not
    /// refusals).
    pub fn freeze(&self) {
        self.signal("STOP");
    }

    /// Resumes a frozen server (SIGCONT).
    pub fn thaw(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        let pid = self.pid().expect("redis-server is running");
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{name} {pid} failed");
    }

    /// A new connection (2 s read and write timeouts).
    pub fn connection(&self) -> RedisResult<Connection> {
        let conn = Client::open(self.url())?.get_connection_with_timeout(CALL_TIMEOUT)?;
        conn.set_read_timeout(Some(CALL_TIMEOUT))?;
        conn.set_write_timeout(Some(CALL_TIMEOUT))?;
        Ok(conn)
    }

    /// Runs one command on a new connection: `try_cmd::<i64>(&["ZCARD", key])`.
    pub fn try_cmd<T: FromRedisValue>(&self, args: &[&str]) -> RedisResult<T> {
        let (name, rest) = args.split_first().expect("a command");
        ::redis::cmd(name).arg(rest).query(&mut self.connection()?)
    }

    /// As [`RedisServer::try_cmd`], panicking on an error: `cmd::<Option<String>>(&["GET",
    /// key])`.
    pub fn cmd<T: FromRedisValue>(&self, args: &[&str]) -> T {
        self.try_cmd(args)
            .unwrap_or_else(|e| panic!("redis {args:?} on port {}: {e}", self.port))
    }

    /// Whether the server answers PING now.
    pub fn ping(&self) -> bool {
        self.try_cmd::<String>(&["PING"])
            .is_ok_and(|pong| pong == "PONG")
    }

    /// The keys matching `pattern` (`KEYS`), sorted.
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let mut keys: Vec<String> = self.cmd(&["KEYS", pattern]);
        keys.sort();
        keys
    }

    /// Empties every database.
    pub fn flushall(&self) {
        let _: () = self.cmd(&["FLUSHALL"]);
    }

    /// Starts the child on `self.port` and waits for it to answer as itself.
    fn launch(&mut self) -> Result<(), Startup> {
        let log = self.dir.path().join("redis.log");
        let _ = std::fs::remove_file(&log);
        let child = Command::new(&self.bin)
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--protected-mode", "no"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Startup::Failed(format!("cannot run {}: {e}", self.bin.display())))?;
        let pid = child.id();
        self.child = Some(child);
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if !self.is_running() {
                self.child = None;
                let log = self.log();
                return Err(if log.contains("Address already in use") {
                    Startup::PortTaken
                } else {
                    Startup::Failed(format!(
                        "redis-server exited on port {} before answering:\n{log}",
                        self.port
                    ))
                });
            }
            // Another server on our port answers too: only ours counts (ours will then
            // fail to bind and exit, seen above).
            if self.server_pid() == Some(pid) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.stop();
                return Err(Startup::Failed(format!(
                    "redis-server did not answer PING on port {} within {READY_WITHIN:?}:\n{}",
                    self.port,
                    self.log()
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The `process_id` of whatever Redis answers on our port.
    fn server_pid(&self) -> Option<u32> {
        let info: String = self.try_cmd(&["INFO", "server"]).ok()?;
        info.lines()
            .find_map(|l| l.strip_prefix("process_id:"))
            .and_then(|p| p.trim().parse().ok())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // SIGKILL ends a frozen (SIGSTOPped) server too.
        self.stop();
    }
}

/// The `redis-server` binary, installed first when missing and running as root; panics
/// with what to install otherwise. Decided once per test binary.
pub fn redis_server_binary() -> PathBuf {
    static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    FOUND
        .get_or_init(locate_or_install)
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn locate_or_install() -> Result<PathBuf, String> {
    // Under the lock, look again: another test binary may have installed it meanwhile. The
    // package index is refreshed only when the install fails without it.
    let script = "command -v redis-server >/dev/null && exit 0; \
        export DEBIAN_FRONTEND=noninteractive; \
        apt-get install -y -q redis-server >/dev/null \
          || { apt-get update -qq && apt-get install -y -q redis-server >/dev/null; } \
          || exit 1; \
        service redis-server stop >/dev/null 2>&1; exit 0";
    servers::locate_or_install(
        || on_path("redis-server"),
        INSTALL_LOCK,
        script,
        "redis-server",
        "redis-server",
    )
}

/// Stops the Debian package's own `redis-server` service (port 6379), which apt may start
/// on install; errors (no such service, not running, not root) are ignored.
pub fn stop_system_service() {
    let _ = Command::new("service")
        .args(["redis-server", "stop"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/bin".into(), "/usr/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}
