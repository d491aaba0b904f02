//! A real PostgreSQL server per test: `initdb` in its own temporary folder, `postgres` on its
//! own free port on 127.0.0.1, durability off (fsync, full-page writes), stopped when the
//! test ends (even by a panic). Every PostgreSQL test starts one with `PgServer::start()`;
//! none shares an instance or uses a fixed port.
//!
//! A test file declares `mod postgres;` and `use postgres::PgServer;`.
//!
//! PostgreSQL refuses to run as root: when the tests run as root (CI), `initdb` and the
//! server run as the `postgres` user (created when missing) on a folder it owns; otherwise
//! as the current user. The port is chosen by binding `127.0.0.1:0` and releasing it before
//! the server binds it, so another process can take it in between: the server is then
//! started again on a new port. A server answering on our port is only accepted when its
//! data directory is ours.
//!
//! When the server binaries are missing and the tests run as root, the Debian `postgresql`
//! package is installed once (serialized across test binaries by `flock`) and the cluster
//! the package starts (port 5432, never used here) is stopped again.
#![allow(dead_code)]
// The harness waits on real processes, so it reads the real clock for its deadlines.
#![allow(clippy::disallowed_methods)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

// A test file may hold both harnesses, so both load this module; it keeps no state.
#[allow(clippy::duplicate_mod)]
#[path = "../servers/mod.rs"]
mod servers;

use servers::{free_port, is_root};

/// How long a server may take to accept its first connection.
const READY_WITHIN: Duration = Duration::from_secs(20);
/// How long a fast shutdown may take before the server is killed.
const STOP_WITHIN: Duration = Duration::from_secs(10);
/// Serializes the apt-get install (and the user's creation) across test binaries.
const INSTALL_LOCK: &str = "/tmp/rosetta-postgres-install.lock";
/// The database every test's store lives in.
pub const DATABASE: &str = "rosetta";

/// A `postgres` child process on 127.0.0.1 with its own data directory.
pub struct PgServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// The user and group the server runs as when we are root.
    owner: Option<(u32, u32)>,
}

/// Why a start attempt failed.
enum Startup {
    /// Another process bound the port first: try again on another.
    PortTaken,
    /// Anything else: the message says what, with the server's log.
    Failed(String),
}

impl PgServer {
    /// Runs `initdb`, starts a server on a free port, waits until it accepts connections
    /// (at most 20 s) and creates the database `rosetta`. Panics, with the server's log,
    /// when it cannot.
    pub fn start() -> Self {
        let bin = pg_bin_dir();
        let owner = if is_root() {
            Some(postgres_user())
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("rosetta-pg-")
            .tempdir()
            .expect("a temporary folder for postgres");
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .expect("chown the server's folder to postgres");
        }
        let mut server = Self {
            child: None,
            port: 0,
            dir,
            bin,
            owner,
        };
        server.initdb();
        for _ in 0..10 {
            server.port = free_port();
            match server.launch() {
                Ok(()) => {
                    server.psql_in("postgres", &format!("CREATE DATABASE {DATABASE}"));
                    return server;
                }
                Err(Startup::PortTaken) => continue,
                Err(Startup::Failed(why)) => panic!("{why}"),
            }
        }
        panic!("postgres: 10 free ports were taken by others before it could bind one");
    }

    /// `postgres://postgres@127.0.0.1:PORT/rosetta`, for `[store] url`
    /// (`ROSETTA__STORE__URL`).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{DATABASE}", self.port)
    }

    /// The port it listens on (the same after a restart).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's (postmaster's) process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The server's own folder: `data/` (the cluster), the socket and the log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// What the server logged so far (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Whether the process is still alive.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Stops the server with a fast shutdown (SIGINT: sessions are ended, the data is
    /// kept) and waits for it to end; killed if it takes longer than 10 s.
    pub fn stop(&mut self) {
        self.end("INT", STOP_WITHIN);
    }

    /// Ends the server at once (SIGQUIT: immediate shutdown, as a crash; the data is
    /// recovered at the next start).
    pub fn kill(&mut self) {
        self.end("QUIT", Duration::from_secs(5));
    }

    /// Starts the server again on the same port and data directory (the data is kept).
    /// Stops it first when it still runs. Panics when the port stays taken by another
    /// process for 20 s.
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
                    "postgres cannot restart: port {} was taken by another process",
                    self.port
                ),
                Err(Startup::Failed(why)) => panic!("{why}"),
            }
        }
    }

    /// Runs `sql` with `psql` in the database `rosetta`; its output, unaligned, tuples only
    /// (one row a line, columns separated by `|`). Panics on an error.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_in(DATABASE, sql)
    }

    /// As [`PgServer::psql`], an error returned rather than panicking.
    pub fn try_psql(&self, sql: &str) -> Result<String, String> {
        self.try_psql_in(DATABASE, sql)
    }

    fn psql_in(&self, db: &str, sql: &str) -> String {
        self.try_psql_in(db, sql)
            .unwrap_or_else(|e| panic!("psql on port {}: {sql}: {e}", self.port))
    }

    fn try_psql_in(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", db, "-AtX", "-v", "ON_ERROR_STOP=1"])
            .args(["-c", sql])
            .env("PGCONNECT_TIMEOUT", "2")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run psql: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim_end().to_owned())
        }
    }

    /// Whether the server accepts a query now.
    pub fn ready(&self) -> bool {
        self.try_psql_in("postgres", "SELECT 1").is_ok()
    }

    /// A command for one of the server's binaries, run as the server's user.
    fn command(&self, name: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(name));
        if let Some((uid, gid)) = self.owner {
            cmd.uid(uid).gid(gid);
        }
        cmd.env("LC_ALL", "C").stdin(Stdio::null());
        cmd
    }

    fn initdb(&self) {
        let out = self
            .command("initdb")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-A", "trust", "-U", "postgres", "--no-sync"])
            .args(["-E", "UTF8", "--locale=C"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run initdb: {e}"));
        assert!(
            out.status.success(),
            "initdb failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts the child on `self.port` and waits until it accepts a query as itself.
    fn launch(&mut self) -> Result<(), Startup> {
        let log = std::fs::File::create(self.log_path())
            .map_err(|e| Startup::Failed(format!("cannot create the server's log: {e}")))?;
        let log2 = log
            .try_clone()
            .map_err(|e| Startup::Failed(e.to_string()))?;
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-p", &self.port.to_string()])
            .arg("-k")
            .arg(self.dir.path())
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off", "-c", "max_connections=200"])
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| Startup::Failed(format!("cannot run postgres: {e}")))?;
        self.child = Some(child);
        let deadline = Instant::now() + READY_WITHIN;
        let ours = self.data_dir();
        loop {
            if !self.is_running() {
                self.child = None;
                let log = self.log();
                return Err(if log.contains("Address already in use") {
                    Startup::PortTaken
                } else {
                    Startup::Failed(format!(
                        "postgres exited on port {} before accepting connections:\n{log}",
                        self.port
                    ))
                });
            }
            // Another server on our port answers too: only ours counts (ours then fails to
            // bind and exits, seen above).
            if let Ok(dir) = self.try_psql_in("postgres", "SHOW data_directory") {
                if Path::new(&dir) == ours {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(Startup::Failed(format!(
                    "postgres did not accept a connection on port {} within {READY_WITHIN:?}:\n{}",
                    self.port,
                    self.log()
                )));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Sends `signal` to the server and waits `within` for it to end, then kills it.
    fn end(&mut self, signal: &str, within: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if !matches!(child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // Immediate shutdown: the postmaster ends its backends and removes its shared
        // memory, which a SIGKILL would leave behind.
        self.kill();
    }
}

/// The folder of `initdb`, `postgres` and `psql`, installed first when missing and
/// running as root; panics with what to install otherwise. Decided once per test binary.
pub fn pg_bin_dir() -> PathBuf {
    static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    FOUND
        .get_or_init(locate_or_install)
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn locate_or_install() -> Result<PathBuf, String> {
    // Under the lock, look again: another test binary may have installed it meanwhile. The
    // package index is refreshed only when the install fails without it. The package's own
    // cluster (port 5432) is stopped: the tests never use it.
    let script = "ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 && exit 0; \
        export DEBIAN_FRONTEND=noninteractive; \
        apt-get install -y -q postgresql >/dev/null \
          || { apt-get update -qq && apt-get install -y -q postgresql >/dev/null; } \
          || exit 1; \
        for c in /etc/postgresql/*/main; do \
          [ -d \"$c\" ] && pg_ctlcluster \"$(basename \"$(dirname \"$c\")\")\" main stop >/dev/null 2>&1; \
        done; \
        service postgresql stop >/dev/null 2>&1; exit 0";
    servers::locate_or_install(
        locate,
        INSTALL_LOCK,
        script,
        "the PostgreSQL server binaries (initdb, postgres)",
        "postgresql",
    )
}

/// `pg_config --bindir` when it has the server, else the newest /usr/lib/postgresql/*/bin.
fn locate() -> Option<PathBuf> {
    let has_server = |d: &Path| d.join("postgres").is_file() && d.join("initdb").is_file();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_server(&dir) {
            return Some(dir);
        }
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            has_server(&bin).then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, p)| p)
}

/// The `postgres` user's uid and gid, the user created when missing (as root).
fn postgres_user() -> (u32, u32) {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, "postgres"]).output().ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    if id("-u").is_none() {
        let _ = Command::new("flock")
            .args([
                INSTALL_LOCK,
                "sh",
                "-c",
                "id -u postgres >/dev/null 2>&1 || useradd --system --user-group --no-create-home postgres",
            ])
            .status();
    }
    match (id("-u"), id("-g")) {
        (Some(uid), Some(gid)) => (uid, gid),
        _ => panic!("the `postgres` user is missing and could not be created"),
    }
}
