//! The scripted fake upstream the executor's tests run against, and the one-pack catalog
//! they load their routes from. Every file's tests drive the whole executor through these,
//! so they live once, here, rather than in any one file's tests.

use parking_lot::Mutex;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::Value;

use super::{CallFuture, CallUpstream, ExecEnv, Outcome, execute};
use crate::config::Config;
use crate::context::RequestMeta;
use crate::error::GatewayError;
use crate::mapping::pack::{Catalog, load_catalog};
use crate::upstream::{UpstreamRequest, UpstreamResponse};

/// Answers by `METHOD path` prefix; records every call.
pub(super) struct Fake {
    answers: Vec<(String, u16, Bytes)>,
    pub(super) calls: Mutex<Vec<(String, Value)>>,
}

impl Fake {
    pub(super) fn new(answers: &[(&str, u16, Value)]) -> Self {
        Self {
            answers: answers
                .iter()
                .map(|(k, s, v)| ((*k).to_owned(), *s, serde_json::to_vec(v).unwrap().into()))
                .collect(),
            calls: Mutex::new(Vec::new()),
        }
    }

    /// Answers bodies as written (spacing, spelling, broken documents).
    pub(super) fn text(answers: &[(&str, u16, &str)]) -> Self {
        Self {
            answers: answers
                .iter()
                .map(|(k, s, t)| ((*k).to_owned(), *s, Bytes::copy_from_slice(t.as_bytes())))
                .collect(),
            calls: Mutex::new(Vec::new()),
        }
    }
    pub(super) fn calls(&self) -> Vec<String> {
        self.calls.lock().iter().map(|(c, _)| c.clone()).collect()
    }
}

impl CallUpstream for Fake {
    fn call<'a>(&'a self, _upstream: &'a str, req: UpstreamRequest) -> CallFuture<'a> {
        let line = format!("{} {}", req.method, req.path_and_query);
        let body: Value = if req.body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&req.body).unwrap()
        };
        self.calls.lock().push((line.clone(), body));
        let (status, body) = self
            .answers
            .iter()
            .find(|(k, _, _)| line.starts_with(k.as_str()))
            .map(|(_, s, b)| (*s, b.clone()))
            .unwrap_or((404, Bytes::from_static(br#"{"message":"no such thing"}"#)));
        Box::pin(async move {
            Ok(UpstreamResponse {
                status: StatusCode::from_u16(status).unwrap(),
                headers: HeaderMap::new(),
                body,
            })
        })
    }
}

/// A catalog of one pack with upstream `up` and these routes (keep the directory alive).
pub(super) fn catalog(routes: &str) -> (tempfile::TempDir, Catalog) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("mappings/p");
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(
        p.join("pack.toml"),
        "[pack]\nclient_dialect = \"redapi-v1\"\nservice = \"T\"\nupstreams = [\"up\"]\n",
    )
    .unwrap();
    std::fs::write(p.join("r.toml"), routes).unwrap();
    let cfg = Config::from_toml("mappings_dir = \"mappings\"\npacks = [\"p\"]\n[upstreams.up]\nurl = \"http://127.0.0.1:1\"\n", dir.path()).unwrap();
    let cat = load_catalog(&cfg).unwrap_or_else(|e| panic!("{e}"));
    (dir, cat)
}

/// A catalog whose one route `r` answers `GET /x` with `steps` (step and response tables).
pub(super) fn get_x(steps: &str) -> (tempfile::TempDir, Catalog) {
    catalog(&format!(
        "[[route]]\nid = \"r\"\nmatch = \"GET /x\"\n{steps}"
    ))
}

/// Executes the catalog's first route against `fake`.
pub(super) async fn run(cat: &Catalog, fake: &Fake, ctx: Value) -> Result<Outcome, GatewayError> {
    let meta = RequestMeta::new(None);
    let env = ExecEnv {
        upstreams: fake,
        meta: &meta,
        query_pairs: &[],
        calls: None,
        capture_cap: 0,
        directive: Default::default(),
        budget: crate::mapping::exec::CallBudget::for_route(&cat.routes[0]),
    };
    execute(&cat.routes[0], ctx, &env).await
}
