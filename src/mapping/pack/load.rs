//! Loading: each enabled pack's folder read, its files parsed and compiled, and the
//! catalog checked as a whole (cache invalidation targets, route collisions). Every problem
//! is collected with its file and line, never only the first.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::*;
use crate::config::Config;
use crate::dialect::Dialect;
use crate::dialect::paging::PageDefaults;
use crate::dialect::xml::XmlRules;
use crate::limits::rate::Policies;
use crate::mapping::router::Router;

/// Every shipped pack, as `config/bench.toml` enables them (tests over the real filters).
#[cfg(test)]
pub(crate) fn shipped_catalog() -> Catalog {
    let cfg = Config::load_with_env(std::path::Path::new("config/bench.toml"), Vec::new())
        .expect("config/bench.toml loads");
    load_catalog(&cfg).expect("the shipped packs load")
}

/// Loads and validates every pack the configuration enables, with the configuration's
/// rate-limit policies compiled here ([`load_catalog_with`] takes them compiled).
pub fn load_catalog(cfg: &Config) -> Result<Catalog, LoadErrors> {
    let policies = crate::limits::rate::policies(&cfg.rate_limits).map_err(|message| {
        LoadErrors(vec![LoadError {
            file: PathBuf::from("[rate_limits]"),
            route: None,
            line: None,
            message,
        }])
    })?;
    load_catalog_with(cfg, &policies)
}

/// Loads and validates every pack the configuration enables; each route's policy is
/// resolved from `policies` once, here.
pub fn load_catalog_with(cfg: &Config, policies: &Policies) -> Result<Catalog, LoadErrors> {
    let dir = cfg.mappings_path();
    let mut errors = Vec::new();
    let mut packs = Vec::new();
    let mut reaches = Vec::new();
    let mut routes: Vec<Arc<Route>> = Vec::new();
    for name in &cfg.packs {
        match load_pack(cfg, policies, &dir.join(name), name) {
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
    let names: HashSet<&str> = routes.iter().map(|r| &*r.cache.name).collect();
    for r in &routes {
        for target in &r.cache.invalidates {
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
        for u in super::engines::engines(&routes, &reaches).on_jaq {
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

pub(super) fn load_pack(
    cfg: &Config,
    policies: &Policies,
    dir: &Path,
    name: &str,
) -> Result<LoadedPack, Vec<LoadError>> {
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
    let mut problems = Vec::new();
    let limits = WorkLimits::DEFAULT.with(def.deadline.as_deref(), def.max_calls, &mut problems);
    errors.extend(
        problems
            .into_iter()
            .map(|m| err(&pack_path, None, format!("[pack] {m}"))),
    );
    let vars: serde_json::Map<String, serde_json::Value> = def
        .upstreams
        .iter()
        .filter_map(|u| cfg.upstreams.get(u).map(|c| (u, &c.vars)))
        .filter(|(_, v)| !v.is_empty())
        .map(|(u, v)| (u.clone(), serde_json::json!(v)))
        .collect();
    let mut prelude = std::fs::read_to_string(dir.join("defs.jq")).unwrap_or_default();
    if !vars.is_empty() {
        // JSON is a jq literal: the values reach the pack's filters as one constant.
        prelude = format!(
            "def vars: {};\n{prelude}",
            serde_json::Value::Object(vars.clone())
        );
    }
    let refusals = crate::mapping::pack::refusal_map(&def.refusals).unwrap_or_else(|e| {
        errors.push(err(&pack_path, None, format!("[pack] {e}")));
        Vec::new()
    });
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
        prelude,
        vars: serde_json::Value::Object(vars),
        upstream_format,
        limits,
        refusals,
    });
    let reach = file.reach.and_then(|r| {
        match crate::mapping::tenancy::compile_reach(cfg, &meta, r, &pack_path, cfg.packs.len()) {
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
            match compile_route(cfg, policies, &meta, reach.as_ref(), def, &file, line) {
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
pub(super) type LoadedPack = (
    Arc<PackMeta>,
    Option<Arc<crate::tenancy::PackReach>>,
    Vec<Arc<Route>>,
);

pub(super) fn toml_error(file: &Path, text: &str, e: &toml::de::Error) -> LoadError {
    LoadError {
        file: file.to_owned(),
        route: None,
        line: e.span().map(|s| line_of(text, s.start)),
        message: e.message().to_owned(),
    }
}

pub(super) fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}
