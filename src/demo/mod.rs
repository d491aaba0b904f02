//! Sample backends for `rosetta demo` and the end-to-end tests.
//!
//! STUB: to be filled in.
