//! A route's steps compiled: calls (method, upstream, path, query, body), fan-out, walks,
//! compute steps, each template and filter checked against what the step may read, and the
//! projections that cut each single call's answer to what the route reads of it.

use std::collections::BTreeMap;

use http::Method;

use super::*;
use crate::config::Config;
use crate::mapping::jq::JqFilter;
use crate::mapping::template::Template;

/// [`Route::projections`]: for each step that calls once, what the route can read of its
/// answer: the union of what every filter over the context reads (response, validation,
/// `when`, compute steps, bodies, fan-out sources; each must translate, or not read the steps
/// at all) and the values every template names (read whole). A search route, whose records
/// Rosetta filters itself, cuts nothing.
pub(in crate::mapping) fn projections(
    stages: &[Vec<Step>],
    validate: Option<&JqFilter>,
    response: &ResponseSpec,
    searched: bool,
) -> BTreeMap<String, crate::mapping::project::Projection> {
    use crate::mapping::project::{Demand, Seg};
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
    let Some(mut by_step) = crate::mapping::project::step_demands(&demand) else {
        return none;
    };
    let single_calls: Vec<&str> = stages
        .iter()
        .flatten()
        .filter(|s| matches!(&s.kind, StepKind::Call { fan: Fan::One, .. }))
        .map(|s| s.name.as_str())
        .collect();
    by_step.retain(|name, p| {
        single_calls.contains(&name.as_str())
            && !matches!(p, crate::mapping::project::Projection::Whole)
    });
    by_step
}

/// `refusals = { "400" = 409 }` checked: error statuses (400–599) both sides.
pub(in crate::mapping) fn refusal_map(
    map: &BTreeMap<String, u16>,
) -> Result<Vec<(u16, http::StatusCode)>, String> {
    map.iter()
        .map(|(from, to)| {
            let from_code = from.parse::<u16>().ok().filter(|c| (400..600).contains(c));
            let to_code = http::StatusCode::from_u16(*to)
                .ok()
                .filter(|c| c.is_client_error() || c.is_server_error());
            match (from_code, to_code) {
                (Some(f), Some(t)) => Ok((f, t)),
                (Some(_) | None, _) => Err(format!(
                    "refusals `{from} = {to}`: both must be error statuses (400-599)"
                )),
            }
        })
        .collect()
}

pub(in crate::mapping) fn compile_step(
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
    let (mut refusals, refusal_err) = match refusal_map(&s.refusals) {
        Ok(r) => (r, None),
        Err(e) => (Vec::new(), Some(format!("step `{name}` {e}"))),
    };
    // The pack's apply where the step says nothing of that status.
    for (from, to) in &pack.refusals {
        if !refusals.iter().any(|(f, _)| f == from) {
            refusals.push((*from, *to));
        }
    }
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
    // A compensation runs after its own step succeeded, so it may use that step's answer; a
    // `for_each` step's runs once per item that went through, seeing that `item`.
    let mut with_self = scope.earlier_steps.to_vec();
    with_self.push(name.clone());
    let fanned = s.for_each.is_some();
    let compensate = s.compensate.and_then(|c| {
        let comp_scope = Scope {
            item: fanned,
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
    errs.extend(refusal_err);
    match kind {
        Some(kind) if errs.is_empty() => Ok(Step {
            name,
            kind,
            when,
            allow_status: s.allow_status,
            compensate,
            refusals,
        }),
        Some(_) | None => Err(errs),
    }
}

pub(super) fn compile_call(
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
        Ok(mut t) => {
            t.bind("vars", &pack.vars);
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
            Ok(mut t) => {
                t.bind("vars", &pack.vars);
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

pub(super) fn check_scope(var: &[String], scope: &Scope<'_>) -> Result<(), String> {
    let shown = var.join(".");
    match var[0].as_str() {
        "steps" => match var.get(1) {
            Some(step) if scope.earlier_steps.contains(step) => Ok(()),
            Some(step) => Err(format!(
                "`{{{shown}}}` refers to step `{step}`, which does not run before this one"
            )),
            None => Err(format!("`{{{shown}}}` must name a step")),
        },
        // Bound at load (`Template::bind`): one left is a value the config does not give.
        "vars" => Err(format!(
            "`{{{shown}}}` is not set: the upstream's `vars` in [upstreams] must give it"
        )),
        "page" if !scope.paged => Err(format!("`{{{shown}}}` is only available in paged routes")),
        "item" if !scope.item => Err(format!(
            "`{{{shown}}}` is only available in a `for_each` step"
        )),
        "node" if !scope.node => Err(format!("`{{{shown}}}` is only available in a `walk` step")),
        _ => Ok(()),
    }
}
