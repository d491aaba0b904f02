//! Upstream calls: pooled clients, timeouts, retries and upstream authentication.
//!
//! STUB: interface fixed by the skeleton; implementation to be filled in.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};

use crate::config::{ConfigError, UpstreamConfig};
use crate::error::UpstreamError;

/// One call to an upstream, path relative to the upstream's base URL.
#[derive(Debug, Clone)]
pub struct UpstreamRequest {
    pub method: Method,
    /// Path and query, already encoded, starting with `/`.
    pub path_and_query: String,
    /// Extra headers (content-type, traceparent, accept). Upstream auth is added by the client.
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// What the upstream answered (any status: the caller decides what an error is).
#[derive(Debug, Clone)]
pub struct UpstreamResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// One configured upstream.
pub struct Upstream {
    pub name: Arc<str>,
}

impl Upstream {
    /// Performs one call.
    pub async fn call(&self, _req: UpstreamRequest) -> Result<UpstreamResponse, UpstreamError> {
        todo!()
    }
}

/// All configured upstreams by name.
#[derive(Clone, Default)]
pub struct Upstreams {
    map: BTreeMap<String, Arc<Upstream>>,
}

impl Upstreams {
    /// Builds a client per upstream.
    pub fn from_config(_cfg: &BTreeMap<String, UpstreamConfig>) -> Result<Self, ConfigError> {
        todo!()
    }

    /// The upstream called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Upstream>> {
        self.map.get(name)
    }

    /// Calls upstream `name`.
    pub async fn call(
        &self,
        name: &str,
        req: UpstreamRequest,
    ) -> Result<UpstreamResponse, UpstreamError> {
        match self.map.get(name) {
            Some(u) => u.call(req).await,
            None => Err(UpstreamError::Unknown {
                upstream: name.to_owned(),
            }),
        }
    }
}
