//! The pack files as written: `pack.toml` and the route files, deserialized strictly
//! (unknown fields refused) and with spans kept for line numbers. Nothing here is checked
//! beyond TOML and types: the compiler ([`super::compile`]) does that.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PackFile {
    pub(super) pack: PackDef,
    /// How a caller's reach is resolved on this pack's upstreams (tenancy).
    #[serde(default)]
    pub(super) reach: Option<crate::mapping::tenancy::ReachDef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PackDef {
    /// `{ "403" = 403 }`: upstream refusals every step answers as another status.
    #[serde(default)]
    pub(super) refusals: BTreeMap<String, u16>,
    pub(super) client_dialect: String,
    pub(super) service: String,
    pub(super) upstreams: Vec<String>,
    #[serde(default = "root_mount")]
    pub(super) mount: String,
    #[serde(default)]
    pub(super) rate_limit: Option<String>,
    #[serde(default)]
    pub(super) page_size: Option<u64>,
    #[serde(default)]
    pub(super) max_page_size: Option<u64>,
    #[serde(default)]
    pub(super) description: Option<String>,
    /// Dialect of the bodies sent to and read from the upstreams (default: JSON).
    #[serde(default)]
    pub(super) upstream_dialect: Option<String>,
    /// For an XML upstream: element paths that are always arrays (`/platform/tenant`).
    #[serde(default)]
    pub(super) upstream_xml_arrays: Vec<String>,
    /// The deadline over all of a request's calls, for the pack's routes (`30s`).
    #[serde(default)]
    pub(super) deadline: Option<String>,
    /// The most upstream calls one request may make, for the pack's routes.
    #[serde(default)]
    pub(super) max_calls: Option<u32>,
}

pub(super) fn root_mount() -> String {
    "/".to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RoutesFile {
    #[serde(default)]
    pub(super) route: Vec<Spanned<RouteDef>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RouteDef {
    pub(super) id: String,
    #[serde(rename = "match")]
    pub(super) matches: String,
    #[serde(default)]
    pub(super) description: Option<String>,
    #[serde(default)]
    pub(super) method_group: Option<String>,
    #[serde(default)]
    pub(super) points: Option<PointsDef>,
    #[serde(default)]
    pub(super) points_settle: Option<String>,
    #[serde(default)]
    pub(super) cache_ttl: Option<String>,
    #[serde(default)]
    pub(super) cache_scope: Option<String>,
    #[serde(default)]
    pub(super) cache_hit_points: Option<u32>,
    #[serde(default)]
    pub(super) rate_limit: Option<String>,
    #[serde(default)]
    pub(super) anonymous: bool,
    #[serde(default)]
    pub(super) paged: bool,
    #[serde(default)]
    pub(super) check_paging: bool,
    /// `{ step = "list", scheme = "fusion", list = "resellers" }`: the upstream pages this
    /// route by token (see [`super::model::UpstreamPages`]).
    #[serde(default)]
    pub(super) upstream_pages: Option<UpstreamPagesDef>,
    /// The route cannot be served on its upstream: 501 with this message, no call made.
    #[serde(default)]
    pub(super) unsupported: Option<String>,
    #[serde(default)]
    pub(super) validate: Option<String>,
    #[serde(default)]
    pub(super) params: BTreeMap<String, ParamDef>,
    #[serde(default)]
    pub(super) step: Vec<StepDef>,
    #[serde(default)]
    pub(super) response: Option<ResponseDef>,
    #[serde(default)]
    pub(super) invalidates: Vec<String>,
    #[serde(default)]
    pub(super) search: Option<SearchDef>,
    /// Which inputs are company ids, what a list holds (see [`crate::tenancy::Tenancy`]).
    #[serde(default)]
    pub(super) tenancy: Option<crate::mapping::tenancy::TenancyDef>,
    /// The roles admitted, when not the method group's.
    #[serde(default)]
    pub(super) roles: Option<Vec<String>>,
    /// This route's own deadline over all of its calls (the pack's otherwise).
    #[serde(default)]
    pub(super) deadline: Option<String>,
    /// This route's own call budget (the pack's otherwise).
    #[serde(default)]
    pub(super) max_calls: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SearchDef {
    pub(super) record: String,
    pub(super) fields: Vec<String>,
    #[serde(default)]
    pub(super) pushdown: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum PointsDef {
    Const(u32),
    Jq(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ParamDef {
    #[serde(default)]
    pub(super) required: bool,
    #[serde(default, rename = "type")]
    pub(super) kind: Option<String>,
    #[serde(default)]
    pub(super) values: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::mapping) struct StepDef {
    #[serde(default)]
    pub(in crate::mapping) name: Option<String>,
    #[serde(default)]
    pub(super) call: Option<String>,
    #[serde(default)]
    pub(super) jq: Option<String>,
    #[serde(default)]
    pub(super) query: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) forward_query: Option<ForwardDef>,
    #[serde(default)]
    pub(super) body: Option<String>,
    #[serde(default)]
    pub(super) parallel: bool,
    #[serde(default)]
    pub(super) for_each: Option<String>,
    #[serde(default)]
    pub(in crate::mapping) concurrency: Option<usize>,
    #[serde(default)]
    pub(super) max_items: Option<usize>,
    #[serde(default)]
    pub(in crate::mapping) walk: Option<WalkDef>,
    #[serde(default)]
    pub(super) when: Option<String>,
    #[serde(default)]
    pub(super) allow_status: Vec<u16>,
    #[serde(default)]
    pub(super) compensate: Option<CallDef>,
    /// `{ "400" = 409 }`: an upstream refusal with the key's status answered with the value.
    #[serde(default)]
    pub(super) refusals: BTreeMap<String, u16>,
}

impl StepDef {
    /// A step making one call (the reach program's steps are written this way).
    pub(in crate::mapping) fn call(
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
            refusals: BTreeMap::new(),
        }
    }

    /// The same call made for each node of a breadth-first walk.
    pub(in crate::mapping) fn walking(self, walk: WalkDef, concurrency: Option<usize>) -> Self {
        Self {
            walk: Some(walk),
            concurrency,
            ..self
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum ForwardDef {
    All(bool),
    Only(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CallDef {
    pub(super) call: String,
    #[serde(default)]
    pub(super) query: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) body: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::mapping) struct WalkDef {
    pub(in crate::mapping) start: String,
    pub(in crate::mapping) children: String,
    #[serde(default = "default_walk_depth")]
    pub(in crate::mapping) max_depth: usize,
    #[serde(default = "default_walk_nodes")]
    pub(in crate::mapping) max_nodes: usize,
}

pub(super) fn default_walk_depth() -> usize {
    8
}
pub(super) fn default_walk_nodes() -> usize {
    2000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ResponseDef {
    #[serde(default)]
    pub(super) jq: Option<String>,
    /// jq over the context: null or false means the record the route answers with is not
    /// there (an upstream that answers success with no record) → 404.
    #[serde(default)]
    pub(super) found: Option<String>,
    #[serde(default)]
    pub(super) status: Option<u16>,
    #[serde(default)]
    pub(super) status_from: Option<String>,
    /// The key a paged answer's records go under, for client dialects whose lists name
    /// their records (Fusion: `resellers`, `pstnUsages`).
    #[serde(default)]
    pub(super) list: Option<String>,
}

/// `upstream_pages = { step, scheme, list }` of a route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UpstreamPagesDef {
    pub(super) step: String,
    pub(super) scheme: String,
    pub(super) list: String,
}
