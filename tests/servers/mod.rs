//! What the real-server harnesses (`tests/redis`, `tests/postgres`) share: a free port, whether
//! the tests run as root, and a Debian package installed once when its binary is missing,
//! serialized across test binaries by `flock` on a lock file.
#![allow(dead_code)]

use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::Command;

/// A port the OS considers free now (another process may take it before the server binds
/// it: the harnesses start again on a new one when that happens).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

/// Whether this process runs as root (the owner of `/proc/self` is the effective user).
pub fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// What `locate` finds, after installing Debian's `package` with `script` (run by `sh` under
/// `flock lock`; it should look again first, since another test binary may have installed
/// it meanwhile) when it finds nothing and the tests run as root. `what` names the binaries
/// in the messages.
pub fn locate_or_install(
    locate: impl Fn() -> Option<PathBuf>,
    lock: &str,
    script: &str,
    what: &str,
    package: &str,
) -> Result<PathBuf, String> {
    if let Some(p) = locate() {
        return Ok(p);
    }
    if !is_root() {
        return Err(format!(
            "{what} not found: install it to run these tests \
             (Debian/Ubuntu: `sudo apt-get install {package}`; .ci/run does this as root)"
        ));
    }
    let ok = Command::new("flock")
        .args([lock, "sh", "-c", script])
        .status()
        .is_ok_and(|s| s.success());
    match locate() {
        Some(p) if ok => Ok(p),
        _ => Err(format!(
            "{what} not found and `apt-get install {package}` failed: install it to run these tests"
        )),
    }
}
