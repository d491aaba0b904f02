//! Pack loading: TOML files under `mappings/<pack>/` compiled into routes.
//!
//! Loading is strict and exhaustive: every problem in every file is collected and reported
//! with the file, the route id and the line, so `rosetta check` shows a pack author all their
//! mistakes at once. Nothing is interpreted lazily: templates are parsed, jq filters compiled
//! and references resolved here, and the request path only runs what loaded.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use serde::Deserialize;
use toml::Spanned;

use super::jq::JqFilter;
use super::router::Router;
use super::template::{PathPattern, Template};
use crate::config::Config;
use crate::dialect::Dialect;
use crate::dialect::paging::PageDefaults;
use crate::dialect::search::SearchSpec;
use crate::dialect::xml::XmlRules;

/// One load problem, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub file: PathBuf,
    pub route: Option<String>,
    pub line: Option<usize>,
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

// ---------------------------------------------------------------------------------------
// File formats

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PackFile {
    pack: PackDef,
    /// How a caller's reach is resolved on this pack's upstreams (tenancy).
    #[serde(default)]
    reach: Option<super::tenancy::ReachDef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PackDef {
    client_dialect: String,
    service: String,
    upstreams: Vec<String>,
    #[serde(default = "root_mount")]
    mount: String,
    #[serde(default)]
    rate_limit: Option<String>,
    #[serde(default)]
    page_size: Option<u64>,
    #[serde(default)]
    max_page_size: Option<u64>,
    #[serde(default)]
    description: Option<String>,
    /// Dialect of the bodies sent to and read from the upstreams (default: JSON).
    #[serde(default)]
    upstream_dialect: Option<String>,
    /// For an XML upstream: element paths that are always arrays (`/platform/tenant`).
    #[serde(default)]
    upstream_xml_arrays: Vec<String>,
}

fn root_mount() -> String {
    "/".to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoutesFile {
    #[serde(default)]
    route: Vec<Spanned<RouteDef>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteDef {
    id: String,
    #[serde(rename = "match")]
    matches: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    method_group: Option<String>,
    #[serde(default)]
    points: Option<PointsDef>,
    #[serde(default)]
    points_settle: Option<String>,
    #[serde(default)]
    cache_ttl: Option<String>,
    #[serde(default)]
    cache_scope: Option<String>,
    #[serde(default)]
    cache_hit_points: Option<u32>,
    #[serde(default)]
    rate_limit: Option<String>,
    #[serde(default)]
    anonymous: bool,
    #[serde(default)]
    paged: bool,
    #[serde(default)]
    check_paging: bool,
    #[serde(default)]
    validate: Option<String>,
    #[serde(default)]
    params: BTreeMap<String, ParamDef>,
    #[serde(default)]
    step: Vec<StepDef>,
    #[serde(default)]
    response: Option<ResponseDef>,
    #[serde(default)]
    invalidates: Vec<String>,
    #[serde(default)]
    search: Option<SearchDef>,
    /// Which inputs are company ids, what a list holds (see [`crate::tenancy::Tenancy`]).
    #[serde(default)]
    tenancy: Option<super::tenancy::TenancyDef>,
    /// The roles admitted, when not the method group's.
    #[serde(default)]
    roles: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchDef {
    record: String,
    fields: Vec<String>,
    #[serde(default)]
    pushdown: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum PointsDef {
    Const(u32),
    Jq(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ParamDef {
    #[serde(default)]
    required: bool,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    values: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StepDef {
    #[serde(default)]
    pub(super) name: Option<String>,
    #[serde(default)]
    call: Option<String>,
    #[serde(default)]
    jq: Option<String>,
    #[serde(default)]
    query: BTreeMap<String, String>,
    #[serde(default)]
    forward_query: Option<ForwardDef>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    parallel: bool,
    #[serde(default)]
    for_each: Option<String>,
    #[serde(default)]
    pub(super) concurrency: Option<usize>,
    #[serde(default)]
    max_items: Option<usize>,
    #[serde(default)]
    pub(super) walk: Option<WalkDef>,
    #[serde(default)]
    when: Option<String>,
    #[serde(default)]
    allow_status: Vec<u16>,
    #[serde(default)]
    compensate: Option<CallDef>,
}

impl StepDef {
    /// A step making one call (the reach program's steps are written this way).
    pub(super) fn call(
        name: &str,
        call: String,
        query: BTreeMap<String, String>,
        allow_status: Vec<u16>,
    ) -> Self {
        Self {
            name: Some(name.to_owned()),
            call: Some(call),
            jq: None,
            query,
            forward_query: None,
            body: None,
            parallel: false,
            for_each: None,
            concurrency: None,
            max_items: None,
            walk: None,
            when: None,
            allow_status,
            compensate: None,
        }
    }

    /// The same call made for each node of a breadth-first walk.
    pub(super) fn walking(self, walk: WalkDef, concurrency: Option<usize>) -> Self {
        Self {
            walk: Some(walk),
            concurrency,
            ..self
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ForwardDef {
    All(bool),
    Only(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallDef {
    call: String,
    #[serde(default)]
    query: BTreeMap<String, String>,
    #[serde(default)]
    body: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WalkDef {
    pub(super) start: String,
    pub(super) children: String,
    #[serde(default = "default_walk_depth")]
    pub(super) max_depth: usize,
    #[serde(default = "default_walk_nodes")]
    pub(super) max_nodes: usize,
}

fn default_walk_depth() -> usize {
    8
}
fn default_walk_nodes() -> usize {
    2000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResponseDef {
    #[serde(default)]
    jq: Option<String>,
    #[serde(default)]
    status: Option<u16>,
    #[serde(default)]
    status_from: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Compiled forms

/// What every route of a pack shares.
#[derive(Debug)]
pub struct PackMeta {
    pub name: String,
    pub client_dialect: Dialect,
    /// The service name used in audit and quotas (e.g. `REDAPI_V1`).
    pub service: Arc<str>,
    pub mount: String,
    pub upstreams: Vec<String>,
    pub rate_limit: Option<String>,
    pub page_defaults: PageDefaults,
    pub description: Option<String>,
    /// The pack's `defs.jq`, prepended to each of its filters.
    pub prelude: String,
    /// How upstream bodies are written and read.
    pub upstream_format: UpstreamFormat,
}

/// The body format of a pack's upstreams.
#[derive(Debug, Clone)]
pub enum UpstreamFormat {
    Json,
    /// LongJump `<platform>` documents; responses read with these rules (envelope unwrapped,
    /// the declared arrays forced).
    LongJumpXml(Box<XmlRules>),
}

/// A route's cost in quota points.
#[derive(Debug)]
pub enum Points {
    Const(u32),
    Jq(JqFilter),
}

/// A typed query parameter check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    String,
    Int32,
    Int64,
    Bool,
    DateTime,
}

/// A declared query parameter.
#[derive(Debug, Clone)]
pub struct ParamSpec {
    pub name: String,
    pub required: bool,
    pub kind: ParamType,
    /// Accepted values (case-insensitive); empty means any.
    pub values: Vec<String>,
}

/// Which client query parameters a call forwards verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardQuery {
    None,
    All,
    Only(Vec<String>),
}

/// One upstream call, templated.
#[derive(Debug)]
pub struct Call {
    pub method: Method,
    pub upstream: String,
    pub path: Template,
    pub query: Vec<(String, Template)>,
    pub forward_query: ForwardQuery,
    pub body: Option<JqFilter>,
}

/// How many times a call step runs.
#[derive(Debug)]
pub enum Fan {
    /// Once.
    One,
    /// Once per element of the array `items` yields; `{item…}` names the element.
    ForEach {
        items: JqFilter,
        concurrency: usize,
        max_items: usize,
    },
    /// Breadth-first from `start`'s ids, following `children` of each answer; `{node}` is
    /// the id being visited. Cycle-safe and bounded.
    Walk {
        start: JqFilter,
        children: JqFilter,
        max_depth: usize,
        max_nodes: usize,
        concurrency: usize,
    },
}

/// What a step does.
#[derive(Debug)]
pub enum StepKind {
    Call {
        call: Box<Call>,
        fan: Fan,
    },
    /// Computes a value from the context without calling anyone.
    Compute(JqFilter),
}

/// One step of a route.
#[derive(Debug)]
pub struct Step {
    pub name: String,
    pub kind: StepKind,
    pub when: Option<JqFilter>,
    /// Upstream statuses accepted as results (their body, or null, becomes the result).
    pub allow_status: Vec<u16>,
    /// Undo call run when a later step fails.
    pub compensate: Option<Call>,
}

/// How the client's answer is built.
#[derive(Debug)]
pub struct ResponseSpec {
    pub jq: Option<JqFilter>,
    pub status: u16,
    pub status_from: Option<String>,
}

/// Which optional parts of a route's context (`path`, `query`, `principal`, `request`)
/// its templates and filters can read: the others are not built per request. A filter
/// that may read its input whole (see [`JqFilter::reads`]) needs them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextUse {
    pub path: bool,
    pub query: bool,
    pub principal: bool,
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
    pub(super) fn of(
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
pub(super) fn context_readers<'a>(
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

/// A compiled route.
#[derive(Debug)]
pub struct Route {
    pub id: Arc<str>,
    pub pack: Arc<PackMeta>,
    pub method: Method,
    pub pattern: PathPattern,
    pub method_group: Arc<str>,
    pub points: Points,
    /// jq over `{response, request}` giving the points a request finally costs (reserved
    /// as `points` first, settled when the answer is known).
    pub points_settle: Option<JqFilter>,
    pub cache_ttl: Option<Duration>,
    /// Whose answers a cached entry may serve (default `company`).
    pub cache_scope: crate::gateway::cache::Scope,
    /// What a cache hit costs, when not the route's `points`.
    pub cache_hit_points: Option<u32>,
    pub rate_limit: Option<String>,
    pub anonymous: bool,
    /// Rosetta pages the answer: `response.jq` yields `{items, total}`.
    pub paged: bool,
    /// The client's paging parameters are checked (and exposed as `page`) but the upstream
    /// speaks the same scheme and pages itself.
    pub check_paging: bool,
    /// Yields null when the request is acceptable, else a message (400).
    pub validate: Option<JqFilter>,
    pub params: Vec<ParamSpec>,
    /// Steps grouped into stages: stages run in order, steps of a stage concurrently.
    pub stages: Vec<Vec<Step>>,
    pub response: ResponseSpec,
    /// Reads a successful write drops from the cache, as `pack:route` (a bare route id in the
    /// pack file names a route of the same pack).
    pub invalidates: Vec<Arc<str>>,
    /// `pack:route`: this route's name in the cache.
    pub cache_name: Arc<str>,
    /// LongJump search parameters applied by Rosetta to the route's records.
    pub search: Option<SearchSpec>,
    /// Roles admitted, company ids checked, lists kept to the caller's reach.
    pub tenancy: crate::tenancy::Tenancy,
    /// The parts of the request context the route's templates and filters can read.
    pub context: ContextUse,
    /// How much of each single call step's answer is made into values: only what the route
    /// can read of it (see [`super::project`]; a LongJump answer is converted whole and its
    /// JSON cut). Steps not named here are parsed whole.
    pub projections: BTreeMap<String, super::project::Projection>,
    pub description: Option<String>,
    pub file: PathBuf,
    pub line: usize,
}

impl Route {
    /// Hands `visit` each jq filter of the route, named as its load errors name it.
    pub fn each_filter<'a>(&'a self, visit: &mut dyn FnMut(String, &'a JqFilter)) {
        if let Some(f) = &self.validate {
            visit("validate".into(), f);
        }
        match &self.points {
            Points::Jq(f) => visit("points".into(), f),
            Points::Const(_) => {}
        }
        if let Some(f) = &self.points_settle {
            visit("points_settle".into(), f);
        }
        for step in self.stages.iter().flatten() {
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
        if let Some(f) = &self.response.jq {
            visit("response.jq".into(), f);
        }
    }
}

/// A filter that runs on jaq rather than the filter plan, and where it is.
#[derive(Debug, Clone)]
pub struct OnJaq {
    pub file: PathBuf,
    /// The route's line (none for a pack's `[reach]`).
    pub line: Option<usize>,
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
fn engines(routes: &[Arc<Route>], reaches: &[Arc<crate::tenancy::PackReach>]) -> JqEngines {
    let mut out = JqEngines::default();
    let programs = routes
        .iter()
        .map(|r| &**r)
        .chain(reaches.iter().map(|r| r.program()));
    for route in programs {
        route.each_filter(&mut |what, f| match f.engine() {
            super::jq::Engine::Plan => out.planned += 1,
            super::jq::Engine::Jaq => out.on_jaq.push(OnJaq {
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

/// Every enabled pack and the router over their routes.
pub struct Catalog {
    pub packs: Vec<Arc<PackMeta>>,
    /// Every pack's reach resolver (a write that changes the company tree drops the cached
    /// reaches of all of them: two packs may sit on the same upstream).
    pub reaches: Vec<Arc<crate::tenancy::PackReach>>,
    pub routes: Vec<Arc<Route>>,
    pub router: Router<Arc<Route>>,
}

impl Catalog {
    /// Which engine each filter of every route and reach runs on.
    pub fn jq_engines(&self) -> JqEngines {
        engines(&self.routes, &self.reaches)
    }
}

impl fmt::Debug for Catalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Catalog")
            .field("packs", &self.packs.len())
            .field("routes", &self.routes.len())
            .finish()
    }
}

// ---------------------------------------------------------------------------------------
// Loading

/// Every shipped pack, as `config/bench.toml` enables them (tests over the real filters).
#[cfg(test)]
pub(crate) fn shipped_catalog() -> Catalog {
    let cfg = Config::load_with_env(std::path::Path::new("config/bench.toml"), Vec::new())
        .expect("config/bench.toml loads");
    load_catalog(&cfg).expect("the shipped packs load")
}

/// Loads and validates every pack the configuration enables.
pub fn load_catalog(cfg: &Config) -> Result<Catalog, LoadErrors> {
    let dir = cfg.mappings_path();
    let mut errors = Vec::new();
    let mut packs = Vec::new();
    let mut reaches = Vec::new();
    let mut routes: Vec<Arc<Route>> = Vec::new();
    for name in &cfg.packs {
        match load_pack(cfg, &dir.join(name), name) {
            Ok((meta, reach, mut rs)) => {
                packs.push(meta);
                reaches.extend(reach);
                routes.append(&mut rs);
            }
            Err(mut es) => errors.append(&mut es),
        }
    }
    // `invalidates` names routes as `pack:route` (resolved at load), possibly of another
    // pack: checked once every enabled pack is known. A pack that is not enabled caches
    // nothing, so naming its routes is harmless (packs are enabled independently).
    let names: HashSet<&str> = routes.iter().map(|r| &*r.cache_name).collect();
    for r in &routes {
        for target in &r.invalidates {
            let pack_enabled = target
                .split_once(':')
                .is_some_and(|(pack, _)| cfg.packs.iter().any(|p| p == pack));
            if pack_enabled && !names.contains(&**target) {
                errors.push(LoadError {
                    file: r.file.clone(),
                    route: Some(r.id.to_string()),
                    line: Some(r.line),
                    message: format!("invalidates unknown route `{target}`"),
                });
            }
        }
    }
    // A filter on jaq costs its route several times the plan's run: refused when asked.
    if cfg.strict_jq {
        for u in engines(&routes, &reaches).on_jaq {
            errors.push(LoadError {
                file: u.file,
                route: Some(u.route),
                line: u.line,
                message: format!(
                    "{} runs on jaq ({}), which strict_jq refuses",
                    u.what, u.why
                ),
            });
        }
    }
    let mut router = Router::new();
    for r in &routes {
        if let Err(existing) = router.insert(r.method.clone(), &r.pattern, r.clone()) {
            errors.push(LoadError {
                file: r.file.clone(),
                route: Some(r.id.to_string()),
                line: Some(r.line),
                message: format!(
                    "{} {} collides with route `{}` ({}:{})",
                    r.method,
                    r.pattern.shape(),
                    existing.id,
                    existing.file.display(),
                    existing.line
                ),
            });
        }
    }
    if errors.is_empty() {
        Ok(Catalog {
            packs,
            reaches,
            routes,
            router,
        })
    } else {
        Err(LoadErrors(errors))
    }
}

fn load_pack(cfg: &Config, dir: &Path, name: &str) -> Result<LoadedPack, Vec<LoadError>> {
    let pack_path = dir.join("pack.toml");
    let err = |file: &Path, line: Option<usize>, message: String| LoadError {
        file: file.to_owned(),
        route: None,
        line,
        message,
    };
    let text = std::fs::read_to_string(&pack_path)
        .map_err(|e| vec![err(&pack_path, None, format!("cannot read pack: {e}"))])?;
    let file: PackFile =
        toml::from_str(&text).map_err(|e| vec![toml_error(&pack_path, &text, &e)])?;
    let def = file.pack;
    let mut errors = Vec::new();
    let client_dialect = Dialect::from_name(&def.client_dialect).unwrap_or_else(|| {
        errors.push(err(
            &pack_path,
            None,
            format!(
                "unknown client_dialect `{}` (one of {})",
                def.client_dialect,
                Dialect::ALL.map(Dialect::name).join(", ")
            ),
        ));
        Dialect::RedapiV1
    });
    for up in &def.upstreams {
        if !cfg.upstreams.contains_key(up) {
            errors.push(err(
                &pack_path,
                None,
                format!("upstream `{up}` is not defined in [upstreams]"),
            ));
        }
    }
    if let Some(policy) = &def.rate_limit
        && !cfg.rate_limits.contains_key(policy)
    {
        errors.push(err(
            &pack_path,
            None,
            format!("rate limit policy `{policy}` is not defined in [rate_limits]"),
        ));
    }
    if !def.mount.starts_with('/') {
        errors.push(err(
            &pack_path,
            None,
            format!("mount `{}` must start with `/`", def.mount),
        ));
    }
    let upstream_format = match def.upstream_dialect.as_deref().map(Dialect::from_name) {
        None => UpstreamFormat::Json,
        Some(Some(Dialect::LongJump)) => {
            let mut rules = XmlRules::default().unwrap("/platform");
            for path in &def.upstream_xml_arrays {
                rules = rules.array(path);
            }
            UpstreamFormat::LongJumpXml(Box::new(rules))
        }
        Some(Some(Dialect::RedapiV1 | Dialect::AppDirect | Dialect::Fusion | Dialect::Admin)) => {
            UpstreamFormat::Json
        }
        Some(None) => {
            errors.push(err(
                &pack_path,
                None,
                format!(
                    "unknown upstream_dialect `{}` (one of {})",
                    def.upstream_dialect.as_deref().unwrap_or_default(),
                    Dialect::ALL.map(Dialect::name).join(", ")
                ),
            ));
            UpstreamFormat::Json
        }
    };
    let defaults = PageDefaults::default();
    let meta = Arc::new(PackMeta {
        name: name.to_owned(),
        client_dialect,
        service: def.service.into(),
        mount: def.mount,
        upstreams: def.upstreams,
        rate_limit: def.rate_limit,
        page_defaults: PageDefaults {
            size: def.page_size.unwrap_or(defaults.size),
            max_size: def.max_page_size.unwrap_or(defaults.max_size),
        },
        description: def.description,
        prelude: std::fs::read_to_string(dir.join("defs.jq")).unwrap_or_default(),
        upstream_format,
    });
    let reach = file.reach.and_then(|r| {
        match super::tenancy::compile_reach(cfg, &meta, r, &pack_path, cfg.packs.len()) {
            Ok(r) => Some(r),
            Err(es) => {
                let line = text.find("[reach]").map(|at| line_of(&text, at));
                errors.extend(es.into_iter().map(|m| err(&pack_path, line, m)));
                None
            }
        }
    });

    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().is_some_and(|x| x == "toml")
                    && p.file_name().is_some_and(|n| n != "pack.toml")
            })
            .collect(),
        Err(e) => {
            errors.push(err(dir, None, format!("cannot list pack folder: {e}")));
            Vec::new()
        }
    };
    files.sort();
    let mut routes = Vec::new();
    let mut ids: HashSet<String> = HashSet::new();
    for file in files {
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                errors.push(err(&file, None, format!("cannot read: {e}")));
                continue;
            }
        };
        let parsed: RoutesFile = match toml::from_str(&text) {
            Ok(p) => p,
            Err(e) => {
                errors.push(toml_error(&file, &text, &e));
                continue;
            }
        };
        for spanned in parsed.route {
            let line = line_of(&text, spanned.span().start);
            let def = spanned.into_inner();
            if !ids.insert(def.id.clone()) {
                errors.push(LoadError {
                    file: file.clone(),
                    route: Some(def.id.clone()),
                    line: Some(line),
                    message: "route id is used twice in this pack".into(),
                });
                continue;
            }
            let id = def.id.clone();
            match compile_route(cfg, &meta, reach.as_ref(), def, &file, line) {
                Ok(r) => routes.push(Arc::new(r)),
                Err(messages) => errors.extend(messages.into_iter().map(|message| LoadError {
                    file: file.clone(),
                    route: Some(id.clone()),
                    line: Some(line),
                    message,
                })),
            }
        }
    }
    if errors.is_empty() {
        Ok((meta, reach, routes))
    } else {
        Err(errors)
    }
}

/// A loaded pack, its reach resolver and its routes.
type LoadedPack = (
    Arc<PackMeta>,
    Option<Arc<crate::tenancy::PackReach>>,
    Vec<Arc<Route>>,
);

fn toml_error(file: &Path, text: &str, e: &toml::de::Error) -> LoadError {
    LoadError {
        file: file.to_owned(),
        route: None,
        line: e.span().map(|s| line_of(text, s.start)),
        message: e.message().to_owned(),
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// What a step may refer to when its templates and filters are checked.
pub(super) struct Scope<'a> {
    pub(super) path_vars: &'a [String],
    pub(super) earlier_steps: &'a [String],
    pub(super) paged: bool,
    pub(super) item: bool,
    pub(super) node: bool,
}

fn compile_route(
    cfg: &Config,
    pack: &Arc<PackMeta>,
    reach: Option<&Arc<crate::tenancy::PackReach>>,
    def: RouteDef,
    file: &Path,
    line: usize,
) -> Result<Route, Vec<String>> {
    let mut errs = Vec::new();
    let (method, pattern) = match def.matches.split_once(' ') {
        Some((m, p)) => {
            let method = Method::from_bytes(m.trim().as_bytes()).unwrap_or_else(|_| {
                errs.push(format!("`{m}` is not an HTTP method"));
                Method::GET
            });
            match PathPattern::parse(p.trim(), &pack.mount) {
                Ok(pat) => (method, pat),
                Err(e) => {
                    errs.push(e.to_string());
                    (
                        method,
                        PathPattern {
                            segments: Vec::new(),
                        },
                    )
                }
            }
        }
        None => {
            errs.push(format!("match `{}` must read `METHOD /path`", def.matches));
            (
                Method::GET,
                PathPattern {
                    segments: Vec::new(),
                },
            )
        }
    };
    let path_vars = pattern.vars();
    let method_group = def.method_group.unwrap_or_else(|| {
        if method == Method::GET || method == Method::HEAD {
            "READ".into()
        } else {
            "WRITE".into()
        }
    });
    if method_group.is_empty()
        || !method_group
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b == b'_')
    {
        errs.push(format!(
            "method_group `{method_group}` must be an upper-case name such as READ"
        ));
    }
    let cache_scope = match def.cache_scope.as_deref() {
        None => crate::gateway::cache::Scope::Company,
        Some(s) => crate::gateway::cache::Scope::parse(s).unwrap_or_else(|| {
            errs.push(format!("cache_scope `{s}` must be company, user or public"));
            crate::gateway::cache::Scope::Company
        }),
    };
    let points_settle = def.points_settle.as_deref().and_then(|code| {
        match JqFilter::compile_with_prelude(&pack.prelude, code) {
            Ok(f) => Some(f),
            Err(e) => {
                errs.push(format!("points_settle: {e}"));
                None
            }
        }
    });
    let points = match def.points {
        None => Points::Const(1),
        Some(PointsDef::Const(n)) => Points::Const(n),
        Some(PointsDef::Jq(code)) => match JqFilter::compile_with_prelude(&pack.prelude, &code) {
            Ok(f) => Points::Jq(f),
            Err(e) => {
                errs.push(format!("points: {e}"));
                Points::Const(1)
            }
        },
    };
    let cache_ttl = def
        .cache_ttl
        .and_then(|s| match humantime::parse_duration(&s) {
            Ok(d) => Some(d),
            Err(e) => {
                errs.push(format!("cache_ttl `{s}`: {e}"));
                None
            }
        });
    if let Some(policy) = &def.rate_limit
        && !cfg.rate_limits.contains_key(policy)
    {
        errs.push(format!(
            "rate limit policy `{policy}` is not defined in [rate_limits]"
        ));
    }
    let validate = def.validate.as_deref().and_then(|code| {
        match JqFilter::compile_with_prelude(&pack.prelude, code) {
            Ok(f) => Some(f),
            Err(e) => {
                errs.push(format!("validate: {e}"));
                None
            }
        }
    });
    let mut params = Vec::new();
    for (name, p) in def.params {
        let kind = match p.kind.as_deref() {
            None | Some("string") => ParamType::String,
            Some("int32") => ParamType::Int32,
            Some("int64") => ParamType::Int64,
            Some("bool") => ParamType::Bool,
            Some("date-time") => ParamType::DateTime,
            Some(other) => {
                errs.push(format!(
                    "param `{name}`: unknown type `{other}` (string, int32, int64, bool, date-time)"
                ));
                ParamType::String
            }
        };
        params.push(ParamSpec {
            name,
            required: p.required,
            kind,
            values: p.values,
        });
    }

    let mut stages: Vec<Vec<Step>> = Vec::new();
    let mut done_steps: Vec<String> = Vec::new();
    let mut stage_names: Vec<String> = Vec::new();
    for (i, s) in def.step.into_iter().enumerate() {
        let name = s.name.clone().unwrap_or_else(|| format!("step{i}"));
        if done_steps.contains(&name) || stage_names.contains(&name) {
            errs.push(format!("step name `{name}` is used twice"));
        }
        let parallel = s.parallel && i > 0;
        if !parallel {
            done_steps.append(&mut stage_names);
        }
        let scope = Scope {
            path_vars: &path_vars,
            earlier_steps: &done_steps,
            paged: def.paged || def.check_paging,
            item: s.for_each.is_some(),
            node: s.walk.is_some(),
        };
        match compile_step(cfg, pack, s, name.clone(), &scope) {
            Ok(step) => {
                if parallel {
                    if let Some(st) = stages.last_mut() {
                        st.push(step);
                    }
                } else {
                    stages.push(vec![step]);
                }
            }
            Err(mut e) => errs.append(&mut e),
        }
        stage_names.push(name);
    }
    done_steps.append(&mut stage_names);

    let response = match def.response {
        None => ResponseSpec {
            jq: None,
            status: 200,
            status_from: None,
        },
        Some(r) => {
            let jq =
                r.jq.and_then(
                    |code| match JqFilter::compile_with_prelude(&pack.prelude, &code) {
                        Ok(f) => Some(f),
                        Err(e) => {
                            errs.push(format!("response.jq: {e}"));
                            None
                        }
                    },
                );
            if let Some(sf) = &r.status_from
                && !done_steps.contains(sf)
            {
                errs.push(format!("response.status_from names unknown step `{sf}`"));
            }
            let status = r.status.unwrap_or(200);
            if !(200..=299).contains(&status) {
                errs.push(format!("response.status {status} must be a 2xx status"));
            }
            ResponseSpec {
                jq,
                status,
                status_from: r.status_from,
            }
        }
    };
    let search = def.search.map(|sd| {
        if !def.paged {
            errs.push("a route with `search` must be `paged`".into());
        }
        if sd.fields.is_empty() {
            errs.push("search.fields must list the record's fields".into());
        }
        for field in sd.pushdown.keys() {
            if !sd.fields.contains(field) {
                errs.push(format!("search.pushdown names unknown field `{field}`"));
            }
        }
        SearchSpec {
            record: sd.record,
            fields: sd.fields,
            pushdown: sd.pushdown.into_iter().collect(),
        }
    });
    if def.paged && response.jq.is_none() {
        errs.push("a paged route needs response.jq yielding {items, total}".into());
    }
    if stages.is_empty() && response.jq.is_none() {
        errs.push("a route needs at least one step or a response".into());
    }
    let context = ContextUse::of(
        &stages,
        validate.as_ref(),
        &response,
        points_settle.is_some(),
    );
    let tenancy = super::tenancy::compile_tenancy(
        def.tenancy,
        def.roles,
        &super::tenancy::RouteShape {
            method: &method,
            method_group: &method_group,
            path_vars: &path_vars,
            params: &params,
            anonymous: def.anonymous,
            paged: def.paged,
            check_paging: def.check_paging,
            stages: &stages,
            validate: validate.as_ref(),
            response: &response,
            points: &points,
        },
        reach,
    )
    .map_err(|mut e| errs.append(&mut e))
    .ok();
    let (Some(tenancy), true) = (tenancy, errs.is_empty()) else {
        return Err(errs);
    };
    let id = def.id;
    let projections = projections(&stages, validate.as_ref(), &response, search.is_some());
    Ok(Route {
        context,
        projections,
        id: Arc::from(id.as_str()),
        pack: pack.clone(),
        method,
        pattern,
        method_group: method_group.into(),
        points,
        points_settle,
        cache_ttl,
        cache_scope,
        cache_hit_points: def.cache_hit_points,
        rate_limit: def.rate_limit.or_else(|| pack.rate_limit.clone()),
        anonymous: def.anonymous,
        paged: def.paged,
        check_paging: def.check_paging,
        validate,
        params,
        stages,
        response,
        invalidates: def
            .invalidates
            .iter()
            .map(|r| {
                if r.contains(':') {
                    Arc::from(r.as_str())
                } else {
                    Arc::from(format!("{}:{r}", pack.name))
                }
            })
            .collect(),
        cache_name: Arc::from(format!("{}:{id}", pack.name)),
        search,
        tenancy,
        description: def.description,
        file: file.to_owned(),
        line,
    })
}

#[cfg(test)]
impl Route {
    /// Every filter and template of the route that reads the request's context.
    pub(crate) fn context_readers<'a>(&'a self, visit: impl FnMut(Reader<'a>)) {
        context_readers(&self.stages, self.validate.as_ref(), &self.response, visit);
    }
}

/// [`Route::projections`]: for each step that calls once, what the route can read of its
/// answer: the union of what every filter over the context reads (response, validation,
/// `when`, compute steps, bodies, fan-out sources; each must translate, or not read the steps
/// at all) and the values every template names (read whole). A search route, whose records
/// Rosetta filters itself, cuts nothing.
pub(super) fn projections(
    stages: &[Vec<Step>],
    validate: Option<&JqFilter>,
    response: &ResponseSpec,
    searched: bool,
) -> BTreeMap<String, super::project::Projection> {
    use super::project::{Demand, Seg};
    let none = BTreeMap::new();
    if searched {
        return none;
    }
    let mut demand = Demand::default();
    let mut whole = false;
    context_readers(stages, validate, response, |r| match r {
        Reader::Filter(f) => match f.demand() {
            Some(d) => demand.include(&d),
            None => {
                whole |= f
                    .reads()
                    .is_none_or(|keys| keys.iter().any(|k| k == "steps"));
            }
        },
        Reader::Template(t) => {
            for v in t.vars() {
                let path: Vec<Seg> = v.iter().map(|k| Seg::Key(k.clone())).collect();
                demand.whole(&path);
            }
        }
    });
    if whole {
        return none;
    }
    let Some(mut by_step) = super::project::step_demands(&demand) else {
        return none;
    };
    let single_calls: Vec<&str> = stages
        .iter()
        .flatten()
        .filter(|s| matches!(&s.kind, StepKind::Call { fan: Fan::One, .. }))
        .map(|s| s.name.as_str())
        .collect();
    by_step.retain(|name, p| {
        single_calls.contains(&name.as_str()) && !matches!(p, super::project::Projection::Whole)
    });
    by_step
}

pub(super) fn compile_step(
    cfg: &Config,
    pack: &PackMeta,
    s: StepDef,
    name: String,
    scope: &Scope<'_>,
) -> Result<Step, Vec<String>> {
    let mut errs = Vec::new();
    let mut jq = |what: &str, code: &str| match JqFilter::compile_with_prelude(&pack.prelude, code)
    {
        Ok(f) => Some(f),
        Err(e) => {
            errs.push(format!("step `{name}` {what}: {e}"));
            None
        }
    };
    let when = s.when.as_deref().and_then(|c| jq("when", c));
    let kind = match (&s.call, &s.jq) {
        (Some(_), Some(_)) => {
            errs.push(format!(
                "step `{name}` has both `call` and `jq`; a step does one"
            ));
            None
        }
        (None, None) => {
            errs.push(format!("step `{name}` needs `call` or `jq`"));
            None
        }
        (None, Some(code)) => jq("jq", code).map(StepKind::Compute),
        (Some(call), None) => {
            let fan = match (&s.for_each, &s.walk) {
                (Some(_), Some(_)) => {
                    errs.push(format!("step `{name}` has both `for_each` and `walk`"));
                    Fan::One
                }
                (Some(items), None) => match jq("for_each", items) {
                    Some(items) => Fan::ForEach {
                        items,
                        concurrency: s.concurrency.unwrap_or(8).max(1),
                        max_items: s.max_items.unwrap_or(1000),
                    },
                    None => Fan::One,
                },
                (None, Some(w)) => {
                    match (jq("walk.start", &w.start), jq("walk.children", &w.children)) {
                        (Some(start), Some(children)) => Fan::Walk {
                            start,
                            children,
                            max_depth: w.max_depth,
                            max_nodes: w.max_nodes,
                            concurrency: s.concurrency.unwrap_or(8).max(1),
                        },
                        _ => Fan::One,
                    }
                }
                (None, None) => Fan::One,
            };
            let forward = match s.forward_query {
                None | Some(ForwardDef::All(false)) => ForwardQuery::None,
                Some(ForwardDef::All(true)) => ForwardQuery::All,
                Some(ForwardDef::Only(list)) => ForwardQuery::Only(list),
            };
            match compile_call(cfg, pack, call, &s.query, s.body.as_deref(), forward, scope) {
                Ok(call) => Some(StepKind::Call {
                    call: Box::new(call),
                    fan,
                }),
                Err(e) => {
                    errs.extend(e.into_iter().map(|m| format!("step `{name}`: {m}")));
                    None
                }
            }
        }
    };
    // A compensation runs after its own step succeeded, so it may use that step's answer.
    let mut with_self = scope.earlier_steps.to_vec();
    with_self.push(name.clone());
    let compensate = s.compensate.and_then(|c| {
        let comp_scope = Scope {
            item: false,
            node: false,
            earlier_steps: &with_self,
            ..*scope
        };
        match compile_call(
            cfg,
            pack,
            &c.call,
            &c.query,
            c.body.as_deref(),
            ForwardQuery::None,
            &comp_scope,
        ) {
            Ok(call) => Some(call),
            Err(e) => {
                errs.extend(
                    e.into_iter()
                        .map(|m| format!("step `{name}` compensate: {m}")),
                );
                None
            }
        }
    });
    match kind {
        Some(kind) if errs.is_empty() => Ok(Step {
            name,
            kind,
            when,
            allow_status: s.allow_status,
            compensate,
        }),
        Some(_) | None => Err(errs),
    }
}

fn compile_call(
    cfg: &Config,
    pack: &PackMeta,
    text: &str,
    query: &BTreeMap<String, String>,
    body: Option<&str>,
    forward_query: ForwardQuery,
    scope: &Scope<'_>,
) -> Result<Call, Vec<String>> {
    let mut errs = Vec::new();
    let mut parts = text.split_whitespace();
    let (Some(m), Some(upstream), Some(path), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(vec![format!(
            "call `{text}` must read `METHOD upstream /path`"
        )]);
    };
    let method = Method::from_bytes(m.as_bytes())
        .map_err(|_| vec![format!("`{m}` is not an HTTP method")])?;
    if !pack.upstreams.iter().any(|u| u == upstream) {
        errs.push(format!(
            "upstream `{upstream}` is not listed in the pack's upstreams"
        ));
    } else if !cfg.upstreams.contains_key(upstream) {
        errs.push(format!(
            "upstream `{upstream}` is not defined in [upstreams]"
        ));
    }
    if !path.starts_with('/') {
        errs.push(format!("call path `{path}` must start with `/`"));
    }
    let check = |t: &Template, errs: &mut Vec<String>| {
        for var in t.vars() {
            if let Err(e) = check_scope(var, scope) {
                errs.push(e);
            }
        }
    };
    let path = match Template::parse(path, scope.path_vars) {
        Ok(t) => {
            check(&t, &mut errs);
            Some(t)
        }
        Err(e) => {
            errs.push(e.to_string());
            None
        }
    };
    let mut q = Vec::new();
    for (k, v) in query {
        match Template::parse(v, scope.path_vars) {
            Ok(t) => {
                check(&t, &mut errs);
                q.push((k.clone(), t));
            }
            Err(e) => errs.push(format!("query `{k}`: {e}")),
        }
    }
    let body = body.and_then(
        |code| match JqFilter::compile_with_prelude(&pack.prelude, code) {
            Ok(f) => Some(f),
            Err(e) => {
                errs.push(format!("body: {e}"));
                None
            }
        },
    );
    match path {
        Some(path) if errs.is_empty() => Ok(Call {
            method,
            upstream: upstream.to_owned(),
            path,
            query: q,
            forward_query,
            body,
        }),
        Some(_) | None => Err(errs),
    }
}

fn check_scope(var: &[String], scope: &Scope<'_>) -> Result<(), String> {
    let shown = var.join(".");
    match var[0].as_str() {
        "steps" => match var.get(1) {
            Some(step) if scope.earlier_steps.contains(step) => Ok(()),
            Some(step) => Err(format!(
                "`{{{shown}}}` refers to step `{step}`, which does not run before this one"
            )),
            None => Err(format!("`{{{shown}}}` must name a step")),
        },
        "page" if !scope.paged => Err(format!("`{{{shown}}}` is only available in paged routes")),
        "item" if !scope.item => Err(format!(
            "`{{{shown}}}` is only available in a `for_each` step"
        )),
        "node" if !scope.node => Err(format!("`{{{shown}}}` is only available in a `walk` step")),
        _ => Ok(()),
    }
}
