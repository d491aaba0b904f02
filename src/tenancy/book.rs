//! [`PackReach`]: how a pack resolves a caller's reach (a program of upstream calls compiled
//! from its `[reach]` declaration) and the reaches it resolved, cached per root company.
//!
//! A reach is resolved once per miss however many requests wait for it (moka's coalesced
//! `try_get_with`), kept for `tenancy.reach_ttl`, bounded in bytes, and dropped at once by a
//! write on this node that changes the company tree (and, in cluster mode, by such a write
//! on another node: `cluster::bus`). A resolution that fails is not kept: the request fails
//! in its client's dialect (502/504) and the next one asks again.

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use moka::future::Cache;
use serde_json::{Value, json};

use super::reach::ReachSet;
use crate::context::RequestMeta;
use crate::error::{GatewayError, Internal, UpstreamError};
use crate::identity::Principal;
use crate::mapping::exec::{CallUpstream, ExecEnv, OutBody, execute};
use crate::mapping::pack::Route;

type ReachCache = Cache<Arc<str>, Arc<ReachSet>, foldhash::fast::RandomState>;

/// A pack's reach resolver and its cache.
pub struct PackReach {
    /// The pack's name (logs).
    pub pack: Arc<str>,
    /// Steps `root` then `tree` (a walk from the root); its answer is `{root, companies}`.
    program: Route,
    /// The walk's node bound: a reach of this many companies may have been cut short.
    max_nodes: usize,
    cache: ReachCache,
}

impl std::fmt::Debug for PackReach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackReach")
            .field("pack", &self.pack)
            .field("max_nodes", &self.max_nodes)
            .finish_non_exhaustive()
    }
}

impl PackReach {
    /// The steps and answer that resolve a reach (their filters are the pack's too).
    pub fn program(&self) -> &Route {
        &self.program
    }

    /// `program` answers `{root, companies}` for a context holding `principal`.
    pub fn new(
        pack: Arc<str>,
        program: Route,
        max_nodes: usize,
        ttl: Duration,
        max_bytes: u64,
    ) -> Self {
        Self {
            pack,
            program,
            max_nodes,
            cache: Cache::builder()
                .time_to_live(ttl)
                .max_capacity(max_bytes)
                .weigher(|k: &Arc<str>, v: &Arc<ReachSet>| {
                    v.weight()
                        .saturating_add(u32::try_from(k.len()).unwrap_or(u32::MAX))
                })
                .support_invalidation_closures()
                .build_with_hasher(foldhash::fast::RandomState::default()),
        }
    }

    /// The reach of `company`'s root when it is cached and the lookup answers at once (the
    /// warm check: no future, no copy).
    pub fn cached(&self, company: &str) -> Option<Arc<ReachSet>> {
        self.cache.get(company).now_or_never().flatten()
    }

    /// The reach of the caller's root: cached, or resolved (once, however many callers ask
    /// together) from the upstream.
    pub async fn resolve(
        &self,
        principal: &Principal,
        upstreams: &dyn CallUpstream,
        meta: &RequestMeta,
    ) -> Result<Arc<ReachSet>, GatewayError> {
        self.cache
            .try_get_with(
                principal.company.clone(),
                self.run(principal, upstreams, meta),
            )
            .await
            .map_err(|shared| match Arc::try_unwrap(shared) {
                Ok(e) => e,
                Err(shared) => again(shared),
            })
    }

    async fn run(
        &self,
        principal: &Principal,
        upstreams: &dyn CallUpstream,
        meta: &RequestMeta,
    ) -> Result<Arc<ReachSet>, GatewayError> {
        let ctx = json!({"principal": {
            "user": &*principal.user, "company": &*principal.company, "roles": &*principal.roles,
        }});
        let env = ExecEnv {
            upstreams,
            meta,
            query_pairs: &[],
            calls: None,
            capture_cap: 0,
            directive: Default::default(),
            budget: crate::mapping::exec::CallBudget::for_route(&self.program),
        };
        let outcome = execute(&self.program, ctx, &env).await?;
        let answer = match outcome.body {
            OutBody::Json(v) => v,
            OutBody::Empty | OutBody::Raw(_) | OutBody::Page { .. } => Value::Null,
        };
        let set = reach_of(&answer).ok_or_else(|| Internal::ReachShape {
            pack: self.pack.to_string(),
        })?;
        let mut set = set;
        if set.len() >= self.max_nodes {
            set.truncated = true;
            tracing::warn!(pack = %self.pack, company = %principal.company, companies = set.len(),
                "the reach walk stopped at its node bound: companies past it are out of reach");
        }
        Ok(Arc::new(set))
    }

    /// Drops every cached reach holding one of `ids` (a write moved, created or removed a
    /// company under them). A later lookup resolves again; none returns a dropped entry.
    pub fn forget_holding(&self, ids: &[Arc<str>]) {
        if ids.is_empty() {
            return;
        }
        let ids = ids.to_vec();
        let _ = self
            .cache
            .invalidate_entries_if(move |_, set| ids.iter().any(|id| set.contains(id)));
    }

    /// Drops every cached reach (tests, reload).
    pub fn forget_all(&self) {
        self.cache.invalidate_all();
    }
}

/// The reach an answer `{root, companies}` describes; `None` when it is not one.
fn reach_of(answer: &Value) -> Option<ReachSet> {
    let id = |v: &Value| match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(_) | Value::Null | Value::Bool(_) | Value::Array(_) | Value::Object(_) => {
            None
        }
    };
    let root = match answer.get("root")? {
        Value::Null => None,
        v => Some(Arc::from(id(v)?)),
    };
    let companies = answer.get("companies")?.as_array()?;
    // Without a root there is nothing below it: a stray list is not a reach.
    let companies: Vec<String> = match root {
        Some(_) => companies.iter().filter_map(id).collect(),
        None => Vec::new(),
    };
    Some(ReachSet::new(root, companies))
}

/// An upstream failure made again (see [`again`]).
fn upstream_again(u: &UpstreamError) -> UpstreamError {
    match u {
        UpstreamError::Unknown { upstream } => UpstreamError::Unknown {
            upstream: upstream.clone(),
        },
        UpstreamError::Connect { upstream, source } => UpstreamError::Connect {
            upstream: upstream.clone(),
            source: source.to_string().into(),
        },
        UpstreamError::Broken { upstream, source } => UpstreamError::Broken {
            upstream: upstream.clone(),
            source: source.to_string().into(),
        },
        UpstreamError::CircuitOpen {
            upstream,
            retry_after,
        } => UpstreamError::CircuitOpen {
            upstream: upstream.clone(),
            retry_after: *retry_after,
        },
        UpstreamError::Busy {
            upstream,
            max_in_flight,
            waited,
        } => UpstreamError::Busy {
            upstream: upstream.clone(),
            max_in_flight: *max_in_flight,
            waited: *waited,
        },
        UpstreamError::Timeout { upstream, timeout } => UpstreamError::Timeout {
            upstream: upstream.clone(),
            timeout: *timeout,
        },
        UpstreamError::InvalidResponse { upstream, detail } => UpstreamError::InvalidResponse {
            upstream: upstream.clone(),
            detail: detail.clone(),
        },
        UpstreamError::Status {
            upstream,
            status,
            message,
            answer,
        } => UpstreamError::Status {
            upstream: upstream.clone(),
            status: *status,
            message: message.clone(),
            answer: *answer,
        },
        UpstreamError::Auth { upstream, detail } => UpstreamError::Auth {
            upstream: upstream.clone(),
            detail: detail.clone(),
        },
        UpstreamError::AfterCalls { sent, inner } => UpstreamError::AfterCalls {
            sent: *sent,
            inner: Box::new(upstream_again(inner)),
        },
    }
}

/// A failure shared by callers waiting on one resolution, made again for each of them (the
/// same status and message; a connection's underlying cause becomes its text).
fn again(shared: Arc<GatewayError>) -> GatewayError {
    match &*shared {
        GatewayError::Upstream(u) => GatewayError::Upstream(upstream_again(u)),
        GatewayError::RouteLimit(e) => GatewayError::RouteLimit(e.clone()),
        GatewayError::NoRoute { .. }
        | GatewayError::MethodNotAllowed { .. }
        | GatewayError::Unauthenticated { .. }
        | GatewayError::Forbidden { .. }
        | GatewayError::PayloadTooLarge { .. }
        | GatewayError::UnsupportedMediaType { .. }
        | GatewayError::RequestTimeout { .. }
        | GatewayError::AnswerTimeout { .. }
        | GatewayError::BadRequest(_)
        | GatewayError::RateLimited { .. }
        | GatewayError::QuotaExceeded { .. }
        | GatewayError::Overloaded { .. }
        | GatewayError::LimitsUnavailable { .. }
        | GatewayError::NotFound(_)
        | GatewayError::Conflict(_)
        | GatewayError::NotSupported(_)
        | GatewayError::Internal(_) => Internal::Reach { source: shared }.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_becomes_a_reach() {
        let set = reach_of(&json!({"root": "r", "companies": ["r", "a", 7, null, ""]})).unwrap();
        assert_eq!(set.root.as_deref(), Some("r"));
        assert!(set.contains("r") && set.contains("a") && set.contains("7"));
        assert_eq!(set.len(), 3);
        // No root company: nothing is reached, whatever the list says.
        let none = reach_of(&json!({"root": null, "companies": ["a"]})).unwrap();
        assert!(none.root.is_none() && none.is_empty());
        for bad in [
            json!(null),
            json!({"companies": []}),
            json!({"root": "r"}),
            json!({"root": "r", "companies": "a"}),
            json!({"root": {"id": "r"}, "companies": []}),
        ] {
            assert!(reach_of(&bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_shared_failure_keeps_its_status() {
        let cases = [
            GatewayError::Upstream(UpstreamError::Timeout {
                upstream: "a".into(),
                timeout: Duration::from_secs(1),
            }),
            GatewayError::Upstream(UpstreamError::Connect {
                upstream: "a".into(),
                source: "refused".into(),
            }),
            GatewayError::Upstream(UpstreamError::CircuitOpen {
                upstream: "a".into(),
                retry_after: Duration::from_secs(3),
            }),
            GatewayError::Upstream(UpstreamError::Status {
                upstream: "a".into(),
                status: http::StatusCode::SERVICE_UNAVAILABLE,
                message: Some("down".into()),
                answer: None,
            }),
            Internal::LostInCache.into(),
        ];
        for e in cases {
            let status = e.status();
            let copy = again(Arc::new(e));
            assert_eq!(copy.status(), status, "{copy}");
        }
    }
}
