//! The compiled forms a request runs on: a pack's shared settings, its routes with their
//! steps, calls and response, the catalog and its router. Built once at load, immutable
//! afterwards, shared through `Arc`s.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::Method;

use super::{ContextUse, Fan, Plan, StepKind};
use crate::dialect::Dialect;
use crate::dialect::paging::PageDefaults;
use crate::dialect::search::SearchSpec;
use crate::dialect::xml::XmlRules;
use crate::limits::rate::Policy;
use crate::mapping::jq::JqFilter;
use crate::mapping::router::Router;
use crate::mapping::template::PathPattern;

/// What every route of a pack shares.
#[derive(Debug)]
pub struct PackMeta {
    /// The pack's folder name under `mappings/`.
    pub name: String,
    /// The API dialect the pack's clients speak.
    pub client_dialect: Dialect,
    /// The service name used in audit and quotas (e.g. `REDAPI_V1`).
    pub service: Arc<str>,
    /// The path prefix the pack's routes are matched under (`/` by default).
    pub mount: String,
    /// Names of the `[upstreams]` the pack's calls may use.
    pub upstreams: Vec<String>,
    /// The rate-limit policy of the pack's routes, by name; `None`: no policy.
    pub rate_limit: Option<String>,
    /// The page size and largest page size for the pack's paged routes.
    pub page_defaults: PageDefaults,
    /// Free text from `pack.toml`, for listings.
    pub description: Option<String>,
    /// The pack's `defs.jq`, prepended to each of its filters (after `def vars:` when the
    /// pack's upstreams have `vars`).
    pub prelude: String,
    /// The `vars` of the pack's upstreams, `{upstream: {key: value}}`: bound into call
    /// templates (`{vars.fusion.group}`) and jq (`vars.fusion.group`) at load.
    pub vars: serde_json::Value,
    /// How upstream bodies are written and read.
    pub upstream_format: UpstreamFormat,
    /// The work bounds of the pack's routes, unless a route sets its own.
    pub limits: WorkLimits,
    /// Upstream refusal statuses answered as another status by every step (`refusals`).
    pub refusals: Vec<(u16, http::StatusCode)>,
}

/// How much work one request to a route may cause: a deadline over all of its calls and a
/// budget of calls. A pack sets them for its routes (`deadline`, `max_calls` in
/// `pack.toml`); a route may set its own. Decided at load, carried in the route's plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkLimits {
    /// The deadline over all of a request's calls.
    pub deadline: std::time::Duration,
    /// The most upstream calls one request may make (compensations not counted).
    pub max_calls: u32,
}

impl WorkLimits {
    /// Without a pack's or a route's own: 30 seconds, 100 calls.
    pub const DEFAULT: WorkLimits = WorkLimits {
        deadline: std::time::Duration::from_secs(30),
        max_calls: 100,
    };

    /// These limits with `deadline` and `max_calls` as written in a pack or route file
    /// replacing them where given; a problem is pushed to `errs`.
    pub(super) fn with(
        self,
        deadline: Option<&str>,
        max_calls: Option<u32>,
        errs: &mut Vec<String>,
    ) -> WorkLimits {
        let deadline = match deadline.map(humantime::parse_duration) {
            None => self.deadline,
            Some(Ok(d)) if !d.is_zero() => d,
            Some(Ok(_)) => {
                errs.push("deadline must be longer than zero".into());
                self.deadline
            }
            Some(Err(e)) => {
                errs.push(format!("deadline `{}`: {e}", deadline.unwrap_or_default()));
                self.deadline
            }
        };
        let max_calls = match max_calls {
            None => self.max_calls,
            Some(0) => {
                errs.push("max_calls must be at least 1".into());
                self.max_calls
            }
            Some(n) => n,
        };
        WorkLimits {
            deadline,
            max_calls,
        }
    }
}

/// The body format of a pack's upstreams.
#[derive(Debug, Clone)]
pub enum UpstreamFormat {
    /// JSON bodies, as they are.
    Json,
    /// LongJump `<platform>` documents; responses read with these rules (envelope unwrapped,
    /// the declared arrays forced).
    LongJumpXml(Box<XmlRules>),
}

/// A route's cost in quota points.
#[derive(Debug)]
pub enum Points {
    /// A fixed number of points.
    Const(u32),
    /// A jq expression over the request's `path`, `query` and `principal`.
    Jq(JqFilter),
}

/// A typed query parameter check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    /// Any text.
    String,
    /// A 32-bit signed integer.
    Int32,
    /// A 64-bit signed integer.
    Int64,
    /// `true` or `false`.
    Bool,
    /// An RFC 3339 date-time or a date.
    DateTime,
}

/// A declared query parameter.
#[derive(Debug, Clone)]
pub struct ParamSpec {
    /// The query parameter's name.
    pub name: String,
    /// Whether a request without it is refused (400).
    pub required: bool,
    /// The type its value must parse as.
    pub kind: ParamType,
    /// Accepted values (case-insensitive); empty means any.
    pub values: Vec<String>,
}

/// A compiled route: what matches it, and its parts grouped by the layer that reads them,
/// so each layer takes only its own.
#[derive(Debug)]
pub struct Route {
    /// The route's `id`, unique within its pack.
    pub id: Arc<str>,
    /// The pack the route belongs to.
    pub pack: Arc<PackMeta>,
    /// The HTTP method it matches.
    pub method: Method,
    /// The path it matches, under the pack's mount.
    pub pattern: PathPattern,
    /// Its method group for quotas (default `READ` for GET, else `WRITE`).
    pub method_group: Arc<str>,
    /// No credentials asked for (authentication lets the request through as anonymous).
    pub anonymous: bool,
    /// Who pages the answer (translate reads the client's paging parameters, the executor
    /// shapes a page).
    pub paging: Paging,
    /// Points, settlement, rate-limit policy: the price, quota and rate-limit layers.
    pub pricing: Pricing,
    /// The read cache's part.
    pub cache: CachePolicy,
    /// What the client's request must be, and what the route reads of it: translate.
    pub request: RequestSpec,
    /// The steps and the answer: the executor.
    pub plan: Plan,
    /// Roles admitted, company ids checked, lists kept to the caller's reach.
    pub tenancy: crate::tenancy::Tenancy,
    /// Free text from the route file, for listings.
    pub description: Option<String>,
    /// The route file it was declared in, for messages.
    pub file: PathBuf,
    /// The line of its `[[route]]` in that file.
    pub line: usize,
}

impl Route {
    /// Hands `visit` each jq filter of the route, named as its load errors name it.
    pub fn each_filter<'a>(&'a self, visit: &mut dyn FnMut(String, &'a JqFilter)) {
        if let Some(f) = &self.request.validate {
            visit("validate".into(), f);
        }
        match &self.pricing.points {
            Points::Jq(f) => visit("points".into(), f),
            Points::Const(_) => {}
        }
        if let Some(f) = &self.pricing.settle {
            visit("points_settle".into(), f);
        }
        for step in self.plan.stages.iter().flatten() {
            let name = &step.name;
            if let Some(f) = &step.when {
                visit(format!("step `{name}` when"), f);
            }
            match &step.kind {
                StepKind::Compute(f) => visit(format!("step `{name}` jq"), f),
                StepKind::Call { call, fan } => {
                    if let Some(f) = &call.body {
                        visit(format!("step `{name}` body"), f);
                    }
                    match fan {
                        Fan::One => {}
                        Fan::ForEach { items, .. } => {
                            visit(format!("step `{name}` for_each"), items)
                        }
                        Fan::Walk {
                            start, children, ..
                        } => {
                            visit(format!("step `{name}` walk.start"), start);
                            visit(format!("step `{name}` walk.children"), children);
                        }
                    }
                }
            }
            if let Some(f) = step.compensate.as_ref().and_then(|c| c.body.as_ref()) {
                visit(format!("step `{name}` compensate body"), f);
            }
        }
        if let Some(f) = &self.plan.response.found {
            visit("response.found".into(), f);
        }
        if let Some(f) = &self.plan.response.jq {
            visit("response.jq".into(), f);
        }
    }
}

/// Who pages a route's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paging {
    /// Not a list.
    Off,
    /// Rosetta pages: `response.jq` yields `{items, total}` (`paged = true`).
    Rosetta,
    /// The client's paging parameters are checked (and exposed as `page`) but the upstream
    /// speaks the same scheme and pages itself (`check_paging = true`).
    Upstream,
}

impl Paging {
    /// Whether the client's paging parameters are read.
    pub fn reads_page(self) -> bool {
        match self {
            Paging::Off => false,
            Paging::Rosetta | Paging::Upstream => true,
        }
    }
}

/// What a request to the route costs against the caller's limits.
#[derive(Debug)]
pub struct Pricing {
    /// What a request costs, reserved before it runs.
    pub points: Points,
    /// jq over `{response, request}` giving the points a request finally costs (reserved
    /// as `points` first, settled when the answer is known).
    pub settle: Option<JqFilter>,
    /// What a cache hit costs, when not `points`.
    pub on_hit: Option<u32>,
    /// The route's rate-limit policy (the route's own, else its pack's), resolved at load.
    pub rate_limit: Option<Arc<Policy>>,
    /// `count = "success"` of the route's policy (the default without one): a failed
    /// upstream gives back the request's bucket cell and quota points.
    pub count_success: bool,
}

/// How the read cache treats the route.
#[derive(Debug)]
pub struct CachePolicy {
    /// Reads are cached this long; `None`: not cached.
    pub ttl: Option<Duration>,
    /// Whose answers a cached entry may serve (default `company`).
    pub scope: CacheScope,
    /// Reads a successful write drops from the cache, as `pack:route` (a bare route id in the
    /// pack file names a route of the same pack).
    pub invalidates: Vec<Arc<str>>,
    /// `pack:route`: this route's name in the cache.
    pub name: Arc<str>,
}

/// Whose answers a cached entry may be served to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheScope {
    /// Callers of the same company (the default).
    Company,
    /// The same user only.
    User,
    /// Everybody (answers that do not depend on the caller).
    Public,
}

impl CacheScope {
    /// `company`, `user` or `public`, as a route file writes it.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "company" => Some(CacheScope::Company),
            "user" => Some(CacheScope::User),
            "public" => Some(CacheScope::Public),
            _ => None,
        }
    }
}

/// What the client's request must be, and what the route reads of it.
#[derive(Debug)]
pub struct RequestSpec {
    /// The declared query parameters, checked before any call.
    pub params: Vec<ParamSpec>,
    /// Yields null when the request is acceptable, else a message (400).
    pub validate: Option<JqFilter>,
    /// LongJump search parameters applied by Rosetta to the route's records.
    pub search: Option<SearchSpec>,
    /// The parts of the request context the route's templates and filters can read.
    pub context: ContextUse,
}

/// Every enabled pack and the router over their routes.
pub struct Catalog {
    /// The enabled packs, in load order.
    pub packs: Vec<Arc<PackMeta>>,
    /// Every pack's reach resolver (a write that changes the company tree drops the cached
    /// reaches of all of them: two packs may sit on the same upstream).
    pub reaches: Vec<Arc<crate::tenancy::PackReach>>,
    /// Every route of every pack.
    pub routes: Vec<Arc<Route>>,
    /// Finds a request's route by method and path.
    pub router: Router<Arc<Route>>,
}

impl fmt::Debug for Catalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Catalog")
            .field("packs", &self.packs.len())
            .field("routes", &self.routes.len())
            .finish()
    }
}
