//! The admin API's own upkeep: liveness, the version, the OpenAPI document (anonymous, for
//! probes without credentials), the Prometheus counters (for ADMIN and AUDITOR, or a
//! scraper without credentials when `[metrics] public = true`) and the purge of the proxy's
//! read cache.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::json;

use super::routes::OPENAPI;
use super::service::{Answer, Call};
use super::wire::{json_response, no_content, store_err};
use crate::body::full;

/// `GET /health`: ok when the store answers and the audit writer keeps up (no rows waiting
/// in the spill file, its last write succeeded, its thread runs); 503 otherwise, so a load
/// balancer takes the node out while its audit trail is not being written.
pub(super) async fn health(c: Call) -> Answer {
    c.admin.store.user_count().await.map_err(store_err)?;
    let audit = c.admin.store.audit_health();
    let (status, word) = if audit.healthy() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "failing")
    };
    Ok(json_response(
        status,
        &json!({
            "status": word,
            "audit": {
                "writer": audit.writer.as_str(),
                "queued": audit.queued,
                "capacity": audit.capacity,
                "spilled": audit.spilled,
            },
        }),
    ))
}

/// `GET /v1/version`.
pub(super) async fn version(_c: Call) -> Answer {
    Ok(json_response(
        StatusCode::OK,
        &json!({"major": 1, "minor": env!("CARGO_PKG_VERSION_MINOR").parse::<u32>().unwrap_or(0),
                "build": env!("CARGO_PKG_VERSION")}),
    ))
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

/// `DELETE /v1/cache`: every cached read, or one route's (`route`).
pub(super) async fn purge_cache(c: Call) -> Answer {
    let route = c
        .query
        .iter()
        .find(|(k, _)| k == "route")
        .map(|(_, v)| v.as_str());
    if let Some(cache) = &c.admin.cache {
        cache.purge(route);
    }
    Ok(no_content())
}
