//! The `rosetta` binary.
#![forbid(unsafe_code)]
fn main() {}
