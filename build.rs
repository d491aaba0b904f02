//! Build metadata for `/v1/version`: the commit the binary was built from, when the source is
//! a git checkout with git on the PATH (a source tarball builds without it).

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    let hash = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit()));
    if let Some(h) = hash {
        println!("cargo:rustc-env=ROSETTA_GIT_HASH={h}");
    }
}
