//! Pack loading: TOML files under `mappings/<pack>/` compiled into routes.
//!
//! Loading is strict and exhaustive: every problem in every file is collected and reported
//! with the file, the route id and the line, so `rosetta check` shows a pack author all their
//! mistakes at once. Nothing is interpreted lazily: templates are parsed, jq filters compiled
//! and references resolved here, and the request path only runs what loaded.
//!
//! The files: [`format`] (the TOML as written), [`model`] (the compiled forms), [`load`]
//! (folders and the catalog), [`compile`] (a route), [`steps`] (a route's steps).

mod compile;
mod engines;
mod format;
mod load;
mod model;
mod plan;
mod steps;

use std::fmt;
use std::path::PathBuf;

pub(in crate::mapping) use compile::*;
pub use engines::{JqEngines, OnJaq};
pub(in crate::mapping) use format::*;
pub use load::*;
pub use model::*;
pub use plan::*;
pub(in crate::mapping) use steps::*;

/// One load problem, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    /// The file at fault.
    pub file: PathBuf,
    /// The route's id, when the problem is in one route.
    pub route: Option<String>,
    /// The 1-based line in the file, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(route) = &self.route {
            write!(f, ": route `{route}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for LoadError {}

/// All load problems of a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadErrors(pub Vec<LoadError>);

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadErrors {}
