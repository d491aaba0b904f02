//! The admin API's own upkeep: liveness, the version, the OpenAPI document (anonymous, for
//! probes without credentials), the Prometheus counters (for ADMIN and AUDITOR, or a
//! scraper without credentials when `[metrics] public = true`) and the purge of the proxy's
//! read cache.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::json;

use super::routes::OPENAPI;
use super::service::{Answer, Call};
use super::wire::{json_response, no_content, rfc3339_ms, store_err};
use crate::body::full;
use crate::cluster::bus::{BusState, Invalidation};

/// `GET /health`: ok when the store answers and the audit writer keeps up (no rows waiting
/// in the spill file, its last write succeeded, its thread runs); 503 otherwise, so a load
/// balancer takes the node out while its audit trail is not being written. In cluster mode
/// `cluster.invalidations` says whether the other nodes' invalidations reach this one
/// (informative: while it reconnects the node serves, and drops its caches once back).
pub(super) async fn health(c: Call) -> Answer {
    c.admin.directory.user_count().await.map_err(store_err)?;
    let audit = c.admin.audit.audit_health();
    let (status, word) = if audit.healthy() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "failing")
    };
    let mut body = json!({
        "status": word,
        "audit": {
            "writer": audit.writer.as_str(),
            "queued": audit.queued,
            "capacity": audit.capacity,
            "spilled": audit.spilled,
        },
    });
    // Reported, not failed on: every node shares the one Redis, so taking nodes out of a
    // balancer for it would take them all; `on_redis_error` says what requests get.
    let mut cluster = serde_json::Map::new();
    if let Some(link) = &c.admin.redis {
        let answered = link.ping().await.is_ok();
        let seen = link.health();
        cluster.insert("redis".into(), json!(if answered { "up" } else { "down" }));
        cluster.insert("since".into(), json!(rfc3339_ms(seen.since_ms)));
        cluster.insert("failures".into(), json!(seen.failures));
    }
    if let Some(bus) = bus_health(&c.admin.invalidator.state()) {
        cluster.insert("invalidations".into(), bus);
    }
    if !cluster.is_empty() {
        body["cluster"] = serde_json::Value::Object(cluster);
    }
    Ok(json_response(status, &body))
}

/// The bus's part of `/health`; `None` on one node.
fn bus_health(state: &BusState) -> Option<serde_json::Value> {
    match state {
        BusState::Local => None,
        BusState::Subscribed { since_ms } => Some(json!({
            "state": state.word(),
            "since": rfc3339_ms(*since_ms),
        })),
        BusState::Reconnecting { since_ms, error } => Some(json!({
            "state": state.word(),
            "since": rfc3339_ms(*since_ms),
            "error": error,
        })),
    }
}

/// `GET /v1/version`: the crate's version (seed 003: `major` is the compatibility line,
/// `minor` new features), and as `build` the full version with the commit it was built
/// from when the build knew it (`1.0.0+3f2e8e41a2b4`).
pub(super) async fn version(_c: Call) -> Answer {
    Ok(json_response(StatusCode::OK, &version_body()))
}

fn version_body() -> serde_json::Value {
    let number = |s: &str| s.parse::<u32>().unwrap_or(0);
    let build = match option_env!("ROSETTA_GIT_HASH") {
        Some(hash) => format!("{}+{hash}", env!("CARGO_PKG_VERSION")),
        None => env!("CARGO_PKG_VERSION").to_owned(),
    };
    json!({"major": number(env!("CARGO_PKG_VERSION_MAJOR")),
           "minor": number(env!("CARGO_PKG_VERSION_MINOR")),
           "build": build})
}

/// `GET /metrics`: the process's counters, the cache's size read now.
pub(super) async fn metrics(c: Call) -> Answer {
    if let Some(cache) = &c.admin.cache {
        crate::metrics::cache_bytes(cache.bytes().await);
    }
    let mut text = crate::metrics::render();
    if let Some(pool) = &c.admin.upstreams {
        text.push_str(&crate::metrics::render_in_flight(
            pool.each().map(|(name, u)| (name, u.in_flight())),
        ));
    }
    let mut r = Response::new(full(Bytes::from(text)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    Ok(r)
}

/// `GET /v1/docs/openapi.json`.
pub(super) async fn openapi(_c: Call) -> Answer {
    let mut r = Response::new(full(Bytes::from_static(OPENAPI.as_bytes())));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

/// The OpenAPI document as a readable page, rendered from the same source at build time
/// (`build.rs`).
const OPENAPI_HTML: &str = include_str!(concat!(env!("OUT_DIR"), "/openapi.html"));

/// `GET /v1/docs/openapi.html`: seed 003's documentation file, in HTML.
pub(super) async fn openapi_html(_c: Call) -> Answer {
    let mut r = Response::new(full(Bytes::from_static(OPENAPI_HTML.as_bytes())));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    Ok(r)
}

/// `DELETE /v1/cache`: every cached read, or one route's (`route`).
pub(super) async fn purge_cache(c: Call) -> Answer {
    let route = c
        .query
        .iter()
        .find(|(k, _)| k == "route")
        .map(|(_, v)| v.as_str());
    c.admin.invalidator.apply(Invalidation::Purge {
        route: route.map(str::to_owned),
    });
    Ok(no_content())
}
