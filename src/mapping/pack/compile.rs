//! A route's definition compiled into a [`Route`]: match, method group, points, cache,
//! policy, parameters, paging, search, tenancy and steps, each checked, every name resolved.

use std::path::Path;
use std::sync::Arc;

use http::Method;

use super::*;
use crate::config::Config;
use crate::dialect::paging::Scheme;
use crate::dialect::search::SearchSpec;
use crate::limits::rate::Policies;
use crate::mapping::jq::JqFilter;
use crate::mapping::template::PathPattern;

/// What a step may refer to when its templates and filters are checked.
pub(in crate::mapping) struct Scope<'a> {
    pub(in crate::mapping) path_vars: &'a [String],
    pub(in crate::mapping) earlier_steps: &'a [String],
    pub(in crate::mapping) paged: bool,
    pub(in crate::mapping) item: bool,
    pub(in crate::mapping) node: bool,
}

pub(super) fn compile_route(
    cfg: &Config,
    policies: &Policies,
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
        None => CacheScope::Company,
        Some(s) => CacheScope::parse(s).unwrap_or_else(|| {
            errs.push(format!("cache_scope `{s}` must be company, user or public"));
            CacheScope::Company
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
    let limits = pack
        .limits
        .with(def.deadline.as_deref(), def.max_calls, &mut errs);
    let cache_ttl = def
        .cache_ttl
        .and_then(|s| match humantime::parse_duration(&s) {
            Ok(d) => Some(d),
            Err(e) => {
                errs.push(format!("cache_ttl `{s}`: {e}"));
                None
            }
        });
    let rate_limit = match def.rate_limit.as_ref().or(pack.rate_limit.as_ref()) {
        None => None,
        Some(name) => match policies.get(name) {
            Some(p) => Some(p.clone()),
            None => {
                errs.push(format!(
                    "rate limit policy `{name}` is not defined in [rate_limits]"
                ));
                None
            }
        },
    };
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
            found: None,
            status: 200,
            status_from: None,
            list: None,
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
            let found = r.found.and_then(|code| {
                match JqFilter::compile_with_prelude(&pack.prelude, &code) {
                    Ok(f) => Some(f),
                    Err(e) => {
                        errs.push(format!("response.found: {e}"));
                        None
                    }
                }
            });
            if let Some(sf) = &r.status_from
                && !done_steps.contains(sf)
            {
                errs.push(format!("response.status_from names unknown step `{sf}`"));
            }
            let status = r.status.unwrap_or(200);
            if !(200..=299).contains(&status) {
                errs.push(format!("response.status {status} must be a 2xx status"));
            }
            // Only a client dialect whose lists name their records reads it: anywhere else
            // it would be a key silently ignored.
            let list = match (&r.list, pack.client_dialect.paging()) {
                (None, _) => None,
                (Some(k), Scheme::Fusion) if def.paged && !k.is_empty() => {
                    Some(Arc::from(k.as_str()))
                }
                (Some(_), Scheme::Fusion) => {
                    errs.push("response.list needs a `paged` route and a non-empty key".into());
                    None
                }
                (
                    Some(_),
                    Scheme::RedapiV1 | Scheme::AppDirect | Scheme::LongJump | Scheme::Admin,
                ) => {
                    errs.push(format!(
                        "response.list is for a client dialect whose lists name their records (fusion), not {}",
                        pack.client_dialect.name()
                    ));
                    None
                }
            };
            ResponseSpec {
                jq,
                found,
                status,
                status_from: r.status_from,
                list,
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
    if stages.is_empty() && response.jq.is_none() && def.unsupported.is_none() {
        errs.push("a route needs at least one step or a response".into());
    }
    let context = ContextUse::of(
        &stages,
        validate.as_ref(),
        &response,
        points_settle.is_some(),
    );
    let tenancy = crate::mapping::tenancy::compile_tenancy(
        def.tenancy,
        def.roles,
        &crate::mapping::tenancy::RouteShape {
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
    let unsupported = def.unsupported;
    if unsupported.is_some() && (!stages.is_empty() || response.jq.is_some()) {
        return Err(vec![
            "an `unsupported` route makes no calls and has no response: it answers 501".into(),
        ]);
    }
    let id = def.id;
    let mut projections = projections(&stages, validate.as_ref(), &response, search.is_some());
    let upstream_pages = match def.upstream_pages {
        None => None,
        Some(up) => {
            let checked = upstream_pages(up, pack, &stages, def.paged, &tenancy, search.is_some())?;
            // Its answer is rewritten to `{items, total, next}` before the route reads it,
            // so the route's paths are not paths into the upstream's answer: parsed whole.
            projections.remove(&*checked.step);
            Some(checked)
        }
    };
    let paging = match (def.paged, def.check_paging) {
        (false, false) => Paging::Off,
        (true, false) => Paging::Rosetta,
        (false, true) => Paging::Upstream,
        (true, true) => {
            return Err(vec![
                "`paged` (Rosetta pages) and `check_paging` (the upstream pages) exclude each other"
                    .into(),
            ]);
        }
    };
    Ok(Route {
        id: Arc::from(id.as_str()),
        pack: pack.clone(),
        method,
        pattern,
        method_group: method_group.into(),
        anonymous: def.anonymous,
        paging,
        pricing: Pricing {
            points,
            settle: points_settle,
            on_hit: def.cache_hit_points,
            count_success: rate_limit.as_ref().is_none_or(|p| p.count_success),
            rate_limit,
        },
        cache: CachePolicy {
            ttl: cache_ttl,
            scope: cache_scope,
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
            name: Arc::from(format!("{}:{id}", pack.name)),
        },
        request: RequestSpec {
            params,
            validate,
            search,
            context,
        },
        plan: Plan {
            saga: stages.iter().flatten().any(|s| s.compensate.is_some()),
            stages,
            response,
            projections,
            limits,
            upstream_pages,
            unsupported,
        },
        tenancy,
        description: def.description,
        file: file.to_owned(),
        line,
    })
}

/// Checks `upstream_pages`: a `paged` route of a V1 pack (whose page token can carry the
/// upstream's), a token scheme, a step that makes one call, and nothing Rosetta would page
/// again over the upstream's page (a reach-kept list, Rosetta's own search).
fn upstream_pages(
    def: UpstreamPagesDef,
    pack: &PackMeta,
    stages: &[Vec<Step>],
    paged: bool,
    tenancy: &crate::tenancy::Tenancy,
    search: bool,
) -> Result<UpstreamPages, Vec<String>> {
    use crate::dialect::paging::Scheme;
    let mut errs = Vec::new();
    if !paged {
        errs.push("`upstream_pages` is for a `paged` route".into());
    }
    if pack.client_dialect != crate::dialect::Dialect::RedapiV1 {
        errs.push("`upstream_pages` needs a client dialect whose page token carries the upstream's (redapi-v1)".into());
    }
    if tenancy.items.is_some() || search {
        errs.push(
            "`upstream_pages` excludes `tenancy.items` and `search`: the upstream's page is the client's"
                .into(),
        );
    }
    let scheme = match def.scheme.as_str() {
        "fusion" => Some(Scheme::Fusion),
        other => {
            errs.push(format!(
                "upstream_pages.scheme `{other}` is not a scheme that pages by token (fusion)"
            ));
            None
        }
    };
    let one_call = stages
        .iter()
        .flatten()
        .any(|s| s.name == def.step && matches!(&s.kind, StepKind::Call { fan: Fan::One, .. }));
    if !one_call {
        errs.push(format!(
            "upstream_pages.step `{}` must be a step making one call",
            def.step
        ));
    }
    match scheme {
        Some(scheme) if errs.is_empty() => Ok(UpstreamPages {
            step: Arc::from(def.step.as_str()),
            scheme,
            list: def.list,
        }),
        Some(_) | None => Err(errs),
    }
}

#[cfg(test)]
impl Route {
    /// Every filter and template of the route that reads the request's context.
    pub(crate) fn context_readers<'a>(&'a self, visit: impl FnMut(Reader<'a>)) {
        context_readers(
            &self.plan.stages,
            self.request.validate.as_ref(),
            &self.plan.response,
            visit,
        );
    }
}
