//! The compiled forms a request runs on: a pack's shared settings, its routes with their
//! steps, calls and response, the catalog and its router. Built once at load, immutable
//! afterwards, shared through `Arc`s.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::Method;

use crate::dialect::Dialect;
use crate::dialect::paging::PageDefaults;
use crate::dialect::search::SearchSpec;
use crate::dialect::xml::XmlRules;
use crate::limits::rate::Policy;
use crate::mapping::jq::JqFilter;
use crate::mapping::router::Router;
use crate::mapping::template::{PathPattern, Template};

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

/// Which client query parameters a call forwards verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardQuery {
    /// Forwards none.
    None,
    /// Forwards every client parameter (`forward_query = true`).
    All,
    /// Forwards only these parameters.
    Only(Vec<String>),
}

/// One upstream call, templated.
#[derive(Debug)]
pub struct Call {
    /// The HTTP method of the upstream request.
    pub method: Method,
    /// The upstream's name in `[upstreams]`.
    pub upstream: String,
    /// The upstream path, with placeholders.
    pub path: Template,
    /// Query parameters added to the call, with templated values.
    pub query: Vec<(String, Template)>,
    /// Which client query parameters are passed on as well.
    pub forward_query: ForwardQuery,
    /// jq building the request body from the context; `None`: no body.
    pub body: Option<JqFilter>,
}

/// How many times a call step runs.
#[derive(Debug)]
pub enum Fan {
    /// Once.
    One,
    /// Once per element of the array `items` yields; `{item…}` names the element.
    ForEach {
        /// jq yielding the array to fan out over.
        items: JqFilter,
        /// How many calls run at once.
        concurrency: usize,
        /// The most elements accepted; a longer array fails the step.
        max_items: usize,
    },
    /// Breadth-first from `start`'s ids, following `children` of each answer; `{node}` is
    /// the id being visited. Cycle-safe and bounded.
    Walk {
        /// jq yielding the ids to start from.
        start: JqFilter,
        /// jq over one answer yielding the ids of its children.
        children: JqFilter,
        /// How many levels below the start are visited.
        max_depth: usize,
        /// The most nodes visited in all.
        max_nodes: usize,
        /// How many calls run at once.
        concurrency: usize,
    },
}

/// What a step does.
#[derive(Debug)]
pub enum StepKind {
    /// Calls an upstream, once or fanned out.
    Call {
        /// The call to make.
        call: Box<Call>,
        /// How many times it is made.
        fan: Fan,
    },
    /// Computes a value from the context without calling anyone.
    Compute(JqFilter),
}

/// One step of a route.
#[derive(Debug)]
pub struct Step {
    /// The step's name: its result is `steps.<name>` in the context.
    pub name: String,
    /// What the step does.
    pub kind: StepKind,
    /// jq deciding whether the step runs (false skips it); `None`: always.
    pub when: Option<JqFilter>,
    /// Upstream statuses accepted as results (their body, or null, becomes the result).
    pub allow_status: Vec<u16>,
    /// Undo call run when a later step fails.
    pub compensate: Option<Call>,
    /// Upstream refusal statuses answered to the client as another status (`refusals`
    /// of the step, over its pack's), the upstream's message kept.
    pub refusals: Vec<(u16, http::StatusCode)>,
}

/// How the client's answer is built.
#[derive(Debug)]
pub struct ResponseSpec {
    /// jq building the client's body from the context; `None`: an empty body.
    pub jq: Option<JqFilter>,
    /// jq saying whether the record answered with is there: null or false → 404 in the
    /// client's dialect, never a 200 of nulls.
    pub found: Option<JqFilter>,
    /// The HTTP status answered, when `status_from` is not set.
    pub status: u16,
    /// A step whose upstream status is passed on instead of `status`.
    pub status_from: Option<String>,
}

/// Which optional parts of a route's context (`path`, `query`, `principal`, `request`)
/// its templates and filters can read: the others are not built per request. A filter
/// that may read its input whole (see [`JqFilter::reads`]) needs them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextUse {
    /// Whether `path` (the matched path variables) is read.
    pub path: bool,
    /// Whether `query` (the client's query parameters) is read.
    pub query: bool,
    /// Whether `principal` (the caller) is read.
    pub principal: bool,
    /// Whether `request` (`base_url`) is read.
    pub request: bool,
}

impl ContextUse {
    /// Everything: what a route whose uses are unknown gets.
    pub const ALL: Self = Self {
        path: true,
        query: true,
        principal: true,
        request: true,
    };

    fn root(&mut self, key: &str) {
        match key {
            "path" => self.path = true,
            "query" => self.query = true,
            "principal" => self.principal = true,
            "request" => self.request = true,
            // Always present (body, steps), built when the route has them (page, search,
            // reach: see `Tenancy::reads_root`), bound per call (item, node), or not in the
            // context at all.
            _ => {}
        }
    }

    fn filter(&mut self, f: &JqFilter) {
        match f.reads() {
            Some(keys) => keys.iter().for_each(|k| self.root(k)),
            None => *self = Self::ALL,
        }
    }

    /// What `stages`, `validate`, `response` and `points_settle` (which sees the request's
    /// path and query) read of the context.
    pub(in crate::mapping) fn of(
        stages: &[Vec<Step>],
        validate: Option<&JqFilter>,
        response: &ResponseSpec,
        settles: bool,
    ) -> Self {
        let mut u = Self {
            path: settles,
            query: settles,
            principal: false,
            request: false,
        };
        context_readers(stages, validate, response, |r| match r {
            Reader::Filter(f) => u.filter(f),
            Reader::Template(t) => t.vars().for_each(|v| u.root(&v[0])),
        });
        u
    }
}

/// Something of a route that reads the request's context.
#[derive(Clone, Copy)]
pub(crate) enum Reader<'a> {
    Filter(&'a JqFilter),
    Template(&'a Template),
}

/// Hands `visit` every filter and template of a route that reads its context: validation, the
/// response, each step's `when`, compute steps, calls' (and compensations') path, query and
/// body, fan-out sources. (A walk's `children` reads each answer; `points_settle` and jq
/// points read the quota's own input.)
pub(in crate::mapping) fn context_readers<'a>(
    stages: &'a [Vec<Step>],
    validate: Option<&'a JqFilter>,
    response: &'a ResponseSpec,
    mut visit: impl FnMut(Reader<'a>),
) {
    let call = |c: &'a Call, visit: &mut dyn FnMut(Reader<'a>)| {
        visit(Reader::Template(&c.path));
        c.query.iter().for_each(|(_, t)| visit(Reader::Template(t)));
        c.body.iter().for_each(|f| visit(Reader::Filter(f)));
    };
    validate
        .into_iter()
        .chain(&response.jq)
        .chain(&response.found)
        .for_each(|f| visit(Reader::Filter(f)));
    for step in stages.iter().flatten() {
        step.when.iter().for_each(|f| visit(Reader::Filter(f)));
        if let Some(c) = &step.compensate {
            call(c, &mut visit);
        }
        match &step.kind {
            StepKind::Compute(f) => visit(Reader::Filter(f)),
            StepKind::Call { call: c, fan } => {
                call(c, &mut visit);
                match fan {
                    Fan::One => {}
                    Fan::ForEach { items, .. } => visit(Reader::Filter(items)),
                    Fan::Walk { start, .. } => visit(Reader::Filter(start)),
                }
            }
        }
    }
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

/// A route the upstream pages with a continuation token (`upstream_pages` in a route
/// file): the named single-call step is sent the scheme's paging parameters for the client's
/// page (its size, and the upstream's token carried in the client's page token), and its
/// answer is read as that scheme's page, `{items, total, next}`; `next` goes back to the
/// client inside its own page token.
#[derive(Debug, Clone)]
pub struct UpstreamPages {
    /// The step whose call is paged.
    pub step: Arc<str>,
    /// The upstream's paging scheme.
    pub scheme: crate::dialect::paging::Scheme,
    /// The key of the upstream page's list (Fusion: `resellers`).
    pub list: String,
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

/// The route's steps and answer.
#[derive(Debug)]
pub struct Plan {
    /// Steps grouped into stages: stages run in order, steps of a stage concurrently.
    pub stages: Vec<Vec<Step>>,
    /// How the client's answer is built.
    pub response: ResponseSpec,
    /// How much of each single call step's answer is made into values: only what the route
    /// can read of it (see [`crate::mapping::project`]; a LongJump answer is converted whole
    /// and its JSON cut). Steps not named here are parsed whole.
    pub projections: BTreeMap<String, crate::mapping::project::Projection>,
    /// The request's deadline and call budget.
    pub limits: WorkLimits,
    /// `upstream_pages`: the upstream pages the route by token; Rosetta carries its token.
    pub upstream_pages: Option<UpstreamPages>,
    /// `unsupported`: the route cannot be served on its upstream; answered 501 with this
    /// message before anything is sent.
    pub unsupported: Option<String>,
    /// Whether a step has a `compensate` call: such a route is a saga, run to its end (or
    /// its undoing) on a task of its own even when the client goes away.
    pub saga: bool,
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
