//! Which engine each jq filter of the catalog runs on: the filter plan, or jaq for what the
//! plan has no operation for (decided when the filter compiles). `rosetta check` lists the
//! filters on jaq; `strict_jq` refuses them.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use super::{Catalog, Route};

/// A filter that runs on jaq rather than the filter plan, and where it is.
#[derive(Debug, Clone)]
pub struct OnJaq {
    /// The route file (or `pack.toml`) the filter is written in.
    pub file: PathBuf,
    /// The route's line (none for a pack's `[reach]`).
    pub line: Option<usize>,
    /// The route's id (`reach` for a pack's `[reach]`).
    pub route: String,
    /// Which filter of the route (`response.jq`, ``step `page` jq``…).
    pub what: String,
    /// What it uses that the plan has no operation for.
    pub why: String,
}

impl fmt::Display for OnJaq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(
            f,
            ": route `{}`: {} runs on jaq ({})",
            self.route, self.what, self.why
        )
    }
}

/// How many filters of `routes` and `reaches` run on the plan, and those that run on jaq.
pub(super) fn engines(
    routes: &[Arc<Route>],
    reaches: &[Arc<crate::tenancy::PackReach>],
) -> JqEngines {
    let mut out = JqEngines::default();
    let programs = routes
        .iter()
        .map(|r| &**r)
        .chain(reaches.iter().map(|r| r.program()));
    for route in programs {
        route.each_filter(&mut |what, f| match f.engine() {
            crate::mapping::jq::Engine::Plan => out.planned += 1,
            crate::mapping::jq::Engine::Jaq => out.on_jaq.push(OnJaq {
                file: route.file.clone(),
                line: (route.line > 0).then_some(route.line),
                route: route.id.to_string(),
                what,
                why: f.why_jaq().unwrap_or_default().to_owned(),
            }),
        });
    }
    out
}

/// Which engine the catalog's filters run on.
#[derive(Debug, Default)]
pub struct JqEngines {
    /// Filters on the plan.
    pub planned: usize,
    /// Filters on jaq.
    pub on_jaq: Vec<OnJaq>,
}

impl Catalog {
    /// Which engine each filter of every route and reach runs on.
    pub fn jq_engines(&self) -> JqEngines {
        engines(&self.routes, &self.reaches)
    }
}
