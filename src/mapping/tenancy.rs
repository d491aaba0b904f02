//! Loading tenancy: a pack's `[reach]` (how a caller's reach is resolved) compiled into a
//! program of the engine's own steps, and each route's `tenancy` and `roles` checked against
//! what the route really reads, so that no route takes a company id without saying so.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use http::Method;
use serde::Deserialize;

use super::jq::JqFilter;
use super::pack::{
    CachePolicy, CacheScope, ContextUse, ForwardQuery, PackMeta, Paging, Plan, Points, Pricing,
    Reader, RequestSpec, ResponseSpec, Route, Scope, Step, StepDef, StepKind, WalkDef, WorkLimits,
    compile_step, context_readers,
};
use super::template::PathPattern;
use crate::config::Config;
use crate::tenancy::roles::is_safe;
use crate::tenancy::spec::id_like;
use crate::tenancy::{IdInput, PackReach, Role, RoleSet, Tenancy};

/// `[reach]` in `pack.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReachDef {
    /// The call giving the caller's root company, and `id`: jq over its answer giving the
    /// root's id (null: no such company; `$ctx.principal.company` is the caller's company
    /// key). A 404 answer is no root.
    root: CallDef,
    /// The call giving a company's children (`{node}` is the company's id), and `ids`: jq
    /// over its answer giving their ids. Walked breadth-first from the root.
    children: CallDef,
    #[serde(default = "default_depth")]
    max_depth: usize,
    #[serde(default = "default_nodes")]
    max_nodes: usize,
    #[serde(default)]
    concurrency: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallDef {
    call: String,
    #[serde(default)]
    query: BTreeMap<String, String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    ids: Option<String>,
}

fn default_depth() -> usize {
    16
}
fn default_nodes() -> usize {
    10_000
}

/// A route's `tenancy`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TenancyDef {
    #[serde(default)]
    ids: Vec<String>,
    #[serde(default)]
    other: Vec<String>,
    #[serde(default)]
    items: Option<String>,
    #[serde(default)]
    changes_tree: bool,
    #[serde(default)]
    partner_flag: Option<String>,
    /// What the route reads or lists belongs to no company (a product catalogue): there is
    /// nothing to confine, and saying so is what a paged route without company ids needs.
    #[serde(default)]
    catalog: bool,
}

/// Compiles a pack's `[reach]` into its resolver: steps `root` and `tree` (the walk) and an
/// answer `{root, companies}` run by the route executor, so reach calls get the upstreams'
/// pools, auth, timeouts and XML handling like any route's.
pub(super) fn compile_reach(
    cfg: &Config,
    pack: &Arc<PackMeta>,
    def: ReachDef,
    file: &Path,
    packs_with_reach: usize,
) -> Result<Arc<PackReach>, Vec<String>> {
    let mut errs = Vec::new();
    if def.root.ids.is_some() || def.root.id.is_none() {
        errs.push("reach.root takes `id` (jq giving the root company's id)".into());
    }
    if def.children.id.is_some() || def.children.ids.is_none() {
        errs.push("reach.children takes `ids` (jq giving the children's ids)".into());
    }
    if def.max_nodes == 0 || def.max_depth == 0 {
        errs.push("reach.max_depth and reach.max_nodes must be at least 1".into());
    }
    let id = def.root.id.unwrap_or_else(|| "null".into());
    let children = def.children.ids.unwrap_or_else(|| "[]".into());
    // `$ctx`: the root's answer alone may not say which record is the caller's (a search
    // that matches more than the key, as Fusion's); `$ctx.principal.company` is the key.
    let root_id = format!("(. as $ctx | .steps.root | ({id}))");
    let steps = [
        StepDef::call("root", def.root.call, def.root.query, vec![404]),
        StepDef::call("tree", def.children.call, def.children.query, vec![404]).walking(
            WalkDef {
                start: format!("[{root_id}]"),
                children,
                max_depth: def.max_depth,
                max_nodes: def.max_nodes,
            },
            def.concurrency,
        ),
    ];
    let mut stages: Vec<Vec<Step>> = Vec::new();
    let mut done: Vec<String> = Vec::new();
    for s in steps {
        let name = s.name.clone().unwrap_or_default();
        let scope = Scope {
            path_vars: &[],
            earlier_steps: &done,
            paged: false,
            item: false,
            node: s.walk.is_some(),
        };
        match compile_step(cfg, pack, s, name.clone(), &scope) {
            Ok(step) => stages.push(vec![step]),
            Err(e) => errs.extend(e.into_iter().map(|m| format!("reach: {m}"))),
        }
        done.push(name);
    }
    let answer = format!("{{root: {root_id}, companies: [.steps.tree[]?.node]}}");
    let jq = JqFilter::compile_with_prelude(&pack.prelude, &answer)
        .map_err(|e| errs.push(format!("reach.root.id: {e}")))
        .ok();
    if !errs.is_empty() {
        return Err(errs);
    }
    let response = ResponseSpec {
        jq,
        found: None,
        status: 200,
        status_from: None,
        list: None,
    };
    let program = Route {
        id: Arc::from("reach"),
        pack: pack.clone(),
        method: Method::GET,
        pattern: PathPattern {
            segments: Vec::new(),
        },
        method_group: Arc::from("READ"),
        anonymous: false,
        paging: Paging::Off,
        pricing: Pricing {
            points: Points::Const(0),
            settle: None,
            on_hit: None,
            rate_limit: None,
            count_success: true,
        },
        cache: CachePolicy {
            ttl: None,
            scope: CacheScope::User,
            invalidates: Vec::new(),
            name: Arc::from(format!("{}:reach", pack.name)),
        },
        request: RequestSpec {
            params: Vec::new(),
            validate: None,
            search: None,
            context: ContextUse::of(&stages, None, &response, false),
        },
        plan: Plan {
            projections: super::pack::projections(&stages, None, &response, false),
            stages,
            response,
            // A reach is resolved by walking the tree: one call per company at most, and
            // the root's lookup.
            limits: WorkLimits {
                deadline: pack.limits.deadline,
                max_calls: u32::try_from(def.max_nodes)
                    .unwrap_or(u32::MAX)
                    .saturating_add(2),
            },
            saga: false,
            upstream_pages: None,
            unsupported: None,
        },
        tenancy: Tenancy::open(RoleSet::EMPTY),
        description: None,
        file: file.to_owned(),
        line: 0,
    };
    Ok(Arc::new(PackReach::new(
        Arc::from(pack.name.as_str()),
        program,
        def.max_nodes,
        cfg.tenancy.reach_ttl,
        cfg.tenancy.reach_max_bytes / packs_with_reach.max(1) as u64,
    )))
}

/// What of a route the tenancy check needs, once its steps and filters are compiled.
pub(super) struct RouteShape<'a> {
    pub method: &'a Method,
    pub method_group: &'a str,
    pub path_vars: &'a [String],
    pub params: &'a [super::pack::ParamSpec],
    pub anonymous: bool,
    pub paged: bool,
    pub check_paging: bool,
    pub stages: &'a [Vec<Step>],
    pub validate: Option<&'a JqFilter>,
    pub response: &'a ResponseSpec,
    pub points: &'a Points,
}

/// Compiles a route's `tenancy` and `roles`, refusing a route that reads an id-like client
/// input it does not declare, lists without saying what, or needs a reach its pack lacks.
pub(super) fn compile_tenancy(
    def: Option<TenancyDef>,
    roles: Option<Vec<String>>,
    shape: &RouteShape<'_>,
    reach: Option<&Arc<PackReach>>,
) -> Result<Tenancy, Vec<String>> {
    let mut errs = Vec::new();
    let declared = def.is_some();
    let def = def.unwrap_or_default();
    let parse_all = |list: &[String], what: &str, errs: &mut Vec<String>| -> Vec<IdInput> {
        list.iter()
            .filter_map(|t| match IdInput::parse(t) {
                Ok(i) => Some(i),
                Err(e) => {
                    errs.push(format!("tenancy.{what}: {e}"));
                    None
                }
            })
            .collect()
    };
    let ids = parse_all(&def.ids, "ids", &mut errs);
    let other = parse_all(&def.other, "other", &mut errs);
    for input in ids.iter().chain(&other) {
        if let IdInput::Path(n) = input
            && !shape.path_vars.contains(n)
        {
            errs.push(format!(
                "tenancy names `{input}`, but `{n}` is not a variable of the route's match"
            ));
        }
    }
    for input in &ids {
        if let IdInput::Query(n) = input
            && !shape.params.iter().any(|p| p.name == *n && p.required)
        {
            errs.push(format!(
                "tenancy.ids names `{input}`: declare it in `params` with required = true, so \
                 a request without it cannot reach every company"
            ));
        }
    }
    let roles = match roles {
        None => RoleSet::by_group(shape.method_group, shape.method),
        Some(names) => {
            let mut set = Vec::new();
            for n in &names {
                match Role::parse(n) {
                    Some(r) if r.name() == n => set.push(r),
                    Some(_) | None => errs.push(format!(
                        "roles: `{n}` is not one of ADMIN, PARTNER, USER, AUDITOR"
                    )),
                }
            }
            if names.is_empty() {
                errs.push("roles must name at least one role".into());
            }
            RoleSet::of(set)
        }
    };
    if roles.contains(Role::Auditor) && !is_safe(shape.method) {
        errs.push(format!(
            "roles: AUDITOR never writes, and this route is {}",
            shape.method
        ));
    }
    let items = def.items.as_deref().map(|f| {
        if f.is_empty() || f.split('.').any(str::is_empty) {
            errs.push(format!(
                "tenancy.items `{f}` must be a field path such as companyId"
            ));
        }
        if !shape.paged {
            errs.push("tenancy.items is for a `paged` route".into());
        }
        if reads_page(shape) {
            errs.push(
                "a route with tenancy.items yields every candidate and Rosetta pages what is \
                 in reach: it must not read `page` (a page cut before the reach would be short)"
                    .into(),
            );
        }
        f.split('.').map(str::to_owned).collect::<Vec<_>>()
    });
    let partner_flag = def
        .partner_flag
        .as_deref()
        .and_then(|t| match IdInput::parse(t) {
            Ok(i @ IdInput::Body(_)) if !ids.is_empty() => Some(i),
            Ok(_) => {
                errs.push(
                    "tenancy.partner_flag must be a body field, on a route with company ids".into(),
                );
                None
            }
            Err(e) => {
                errs.push(format!("tenancy.partner_flag: {e}"));
                None
            }
        });
    if def.changes_tree && (is_safe(shape.method) || ids.is_empty()) {
        errs.push("tenancy.changes_tree is for a write that names the companies it changes".into());
    }
    // Every id-like input the route reads is declared one way or the other.
    let (read, opaque) = inputs_read(shape);
    for input in read {
        let named = match &input {
            IdInput::Path(n) | IdInput::Query(n) => id_like(n),
            IdInput::Body(keys) => keys.iter().any(|k| id_like(k)),
        };
        let covered = ids.iter().chain(&other).any(|d| covers(d, &input));
        if (named || matches!(input, IdInput::Path(_))) && !covered {
            errs.push(format!(
                "reads `{input}`, an id-like input, without declaring it: list it in \
                 tenancy.ids (a company id, checked against the caller's reach) or \
                 tenancy.other (not a company id)"
            ));
        }
    }
    if !opaque.is_empty() && !declared {
        errs.push(format!(
            "reads the request's {} whole, so its id-like inputs cannot be listed: declare \
             `tenancy` (its company ids, or `other`)",
            opaque.join(" and ")
        ));
    }
    if def.catalog && (!ids.is_empty() || items.is_some()) {
        errs.push("tenancy.catalog is for a route without company ids or company lists".into());
    }
    if (shape.paged || shape.check_paging) && ids.is_empty() && items.is_none() && !def.catalog {
        errs.push(
            "a paged route lists something: say whose (tenancy.ids: the company it belongs to), \
             what (tenancy.items: the field holding each item's company id), or that it belongs \
             to no company (tenancy.catalog = true)"
                .into(),
        );
    }
    let tenancy = Tenancy {
        roles,
        ids,
        items,
        changes_tree: def.changes_tree,
        partner_flag,
        reads_root: reads_root(shape, reach.is_some()),
        reach: None,
    };
    if tenancy.needs_reach() && shape.anonymous {
        errs.push("an anonymous route has no caller to confine: it cannot take company ids".into());
    }
    let reach = match (tenancy.needs_reach(), reach) {
        (true, None) => {
            errs.push(
                "the route takes company ids (or lists companies, or reads `reach`), but its \
                 pack declares no [reach]"
                    .into(),
            );
            None
        }
        (true, Some(r)) => Some(r.clone()),
        (false, _) => None,
    };
    if errs.is_empty() {
        Ok(Tenancy { reach, ..tenancy })
    } else {
        Err(errs)
    }
}

/// Whether a declared input covers one the route reads: the same, or a body field at or
/// above it (declaring `body.tenant.partner` covers a read of `body.tenant.partner.id`).
fn covers(declared: &IdInput, read: &IdInput) -> bool {
    match (declared, read) {
        (IdInput::Body(d), IdInput::Body(r)) => r.starts_with(d),
        (IdInput::Path(_) | IdInput::Query(_) | IdInput::Body(_), _) => declared == read,
    }
}

/// Whether the route reads `reach` (the caller's root company). A filter that may read
/// anything is taken to, when the pack has a reach to read: a route that cannot say what it
/// reads gets the caller's root rather than a null it might act on.
fn reads_root(shape: &RouteShape<'_>, pack_has_reach: bool) -> bool {
    let mut reads = false;
    context_readers(shape.stages, shape.validate, shape.response, |r| match r {
        Reader::Filter(f) => reads |= filter_reads(f, "reach", pack_has_reach),
        Reader::Template(t) => reads |= t.vars().any(|v| v[0] == "reach"),
    });
    reads
}

/// Whether a filter can read the context's top-level `key`: by its demand when it has a direct
/// translation (which follows `. as $c | $c.steps…`), else by the keys it names; `unknown`
/// when it may read anything.
fn filter_reads(f: &JqFilter, key: &str, unknown: bool) -> bool {
    match f.demand() {
        Some(d) => d.key(key) != Some(None),
        None => f
            .reads()
            .map_or(unknown, |keys| keys.iter().any(|k| k == key)),
    }
}

/// Whether any of the route's templates or filters can read `page`.
fn reads_page(shape: &RouteShape<'_>) -> bool {
    let mut reads = false;
    context_readers(shape.stages, shape.validate, shape.response, |r| match r {
        Reader::Filter(f) => reads |= filter_reads(f, "page", true),
        Reader::Template(t) => reads |= t.vars().any(|v| v[0] == "page"),
    });
    reads
}

/// The client inputs (path variables, query parameters, body fields) the route can read, and
/// the parts (`query`, `body`) some filter reads whole.
fn inputs_read(shape: &RouteShape<'_>) -> (Vec<IdInput>, Vec<&'static str>) {
    let mut read: Vec<IdInput> = shape
        .path_vars
        .iter()
        .map(|v| IdInput::Path(v.clone()))
        .collect();
    read.extend(shape.params.iter().map(|p| IdInput::Query(p.name.clone())));
    let mut opaque: Vec<&'static str> = Vec::new();
    fn note(part: &'static str, opaque: &mut Vec<&'static str>) {
        if !opaque.contains(&part) {
            opaque.push(part);
        }
    }
    let filter =
        |f: &JqFilter, read: &mut Vec<IdInput>, opaque: &mut Vec<&'static str>| match f.demand() {
            Some(d) => {
                for (part, make) in [
                    (
                        "query",
                        (|k: &[String]| IdInput::Query(k[0].clone())) as fn(&[String]) -> IdInput,
                    ),
                    ("body", |k: &[String]| IdInput::Body(k.to_vec())),
                ] {
                    let whole = d.keys_under(part, &mut |keys| read.push(make(keys)));
                    if whole {
                        note(part, opaque);
                    }
                }
            }
            None => {
                for part in ["query", "body"] {
                    if f.reads().is_none_or(|k| k.iter().any(|k| k == part)) {
                        note(part, opaque);
                    }
                }
            }
        };
    let mut filters: Vec<&JqFilter> = Vec::new();
    context_readers(shape.stages, shape.validate, shape.response, |r| match r {
        Reader::Filter(f) => filters.push(f),
        Reader::Template(t) => {
            for v in t.vars() {
                match (v[0].as_str(), &v[1..]) {
                    ("query", [name, ..]) => read.push(IdInput::Query(name.clone())),
                    ("body", keys) if !keys.is_empty() => read.push(IdInput::Body(keys.to_vec())),
                    _ => {}
                }
            }
        }
    });
    if let Points::Jq(f) = shape.points {
        filters.push(f);
    }
    for f in filters {
        filter(f, &mut read, &mut opaque);
    }
    for step in shape.stages.iter().flatten() {
        if let StepKind::Call { call, .. } = &step.kind {
            match &call.forward_query {
                ForwardQuery::None => {}
                ForwardQuery::All => note("query", &mut opaque),
                ForwardQuery::Only(names) => {
                    read.extend(names.iter().map(|n| IdInput::Query(n.clone())));
                }
            }
        }
    }
    let mut seen = Vec::new();
    read.retain(|i| {
        let new = !seen.contains(i);
        if new {
            seen.push(i.clone());
        }
        new
    });
    (read, opaque)
}
