//! A route's plan as compiled: its steps (calls, fan-outs, compensations), its response,
//! how the upstream pages it, and which parts of the request context they read. The stage
//! loop (`mapping::exec`) runs it; the route (`model.rs`) carries it.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::Method;

use super::WorkLimits;
use crate::mapping::jq::JqFilter;
use crate::mapping::template::Template;

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
    /// The key a page's records go under in a client dialect whose lists name them
    /// (Fusion); `None`: the scheme's own key.
    pub list: Option<Arc<str>>,
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
