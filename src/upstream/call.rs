//! One call to an upstream: the breaker's leave, a slot among `max_in_flight`, then the
//! request under one deadline, retried only when no connection could be made.
//!
//! The order is the cheap refusals first: an open breaker answers before the call queues,
//! and a call that found no slot never touched the network. A call's verdict (healthy,
//! failed, neither) goes back to the breaker when it ends, and when it is cancelled.

use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use tokio::sync::{SemaphorePermit, TryAcquireError};

use super::breaker::Verdict;
use super::{Upstream, UpstreamRequest, UpstreamResponse};
use crate::error::UpstreamError;

/// Extra attempts for idempotent calls whose connection could not be established.
const CONNECT_RETRIES: usize = 2;

impl Upstream {
    /// Performs one call; with OAuth2, a 401 refreshes the token and retries once.
    pub async fn call(&self, req: UpstreamRequest) -> Result<UpstreamResponse, UpstreamError> {
        let start = crate::clock::now();
        let deadline = start + self.timeout;
        let pass = match &self.breaker {
            None => None,
            Some(b) => Some(
                b.admit()
                    .map_err(|retry_after| UpstreamError::CircuitOpen {
                        upstream: self.name.to_string(),
                        retry_after,
                    })?,
            ),
        };
        let work = async {
            let _slot = self.slot(start, deadline).await?;
            let credential = self.auth.credential().await?;
            let resp = self.attempt(&req, credential.as_ref()).await?;
            if resp.status == StatusCode::UNAUTHORIZED && self.auth.refreshes() {
                let fresh = self
                    .auth
                    .refresh_after_rejection(credential.as_ref())
                    .await?;
                return self.attempt(&req, fresh.as_ref()).await;
            }
            Ok(resp)
        };
        let result = match tokio::time::timeout_at(deadline, work).await {
            Ok(r) => r,
            Err(_) => Err(UpstreamError::Timeout {
                upstream: self.name.to_string(),
                timeout: self.timeout,
            }),
        };
        if let Some(pass) = pass {
            pass.settle(verdict(&result));
        }
        result
    }

    /// One of the upstream's `max_in_flight` slots, waited for until the `queue_timeout`
    /// (or the call's deadline, if sooner) has passed since the call began.
    async fn slot(
        &self,
        start: tokio::time::Instant,
        deadline: tokio::time::Instant,
    ) -> Result<SemaphorePermit<'_>, UpstreamError> {
        let busy = || UpstreamError::Busy {
            upstream: self.name.to_string(),
            max_in_flight: self.max_in_flight,
            waited: crate::clock::now().saturating_duration_since(start),
        };
        match self.slots.try_acquire() {
            Ok(p) => return Ok(p),
            // The semaphore is never closed; were it, no call could go.
            Err(TryAcquireError::Closed) => return Err(busy()),
            Err(TryAcquireError::NoPermits) => {}
        }
        let until = deadline.min(start + self.queue_timeout);
        match tokio::time::timeout_at(until, self.slots.acquire()).await {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(_)) | Err(_) => Err(busy()),
        }
    }

    async fn attempt(
        &self,
        req: &UpstreamRequest,
        credential: Option<&http::HeaderValue>,
    ) -> Result<UpstreamResponse, UpstreamError> {
        let uri = self.uri(&req.path_and_query)?;
        let mut tries = 0;
        let resp = loop {
            let mut builder = Request::builder()
                .method(req.method.clone())
                .uri(uri.clone());
            if let Some(h) = builder.headers_mut() {
                // The builder's map is empty: the request's headers replace it whole (extending
                // it inserted each one again into a second map).
                *h = req.headers.clone();
                if let Some(c) = credential {
                    h.insert(http::header::AUTHORIZATION, c.clone());
                }
                if let Some((n, v)) = self.auth.extra_header() {
                    h.insert(n.clone(), v.clone());
                }
            }
            let request = builder.body(Full::new(req.body.clone())).map_err(|e| {
                UpstreamError::InvalidResponse {
                    upstream: self.name.to_string(),
                    detail: format!("cannot build the upstream request: {e}"),
                }
            })?;
            match self.client.request(request).await {
                Ok(resp) => break resp,
                // Only a connection that never opened is safe to retry: nothing was sent.
                Err(e) if retryable(&req.method, e.is_connect(), tries) => {
                    tries += 1;
                    tracing::debug!(upstream = %self.name, attempt = tries, "connect failed; retrying");
                }
                // The connector failed (TCP or TLS): the request never left.
                Err(e) if e.is_connect() => {
                    return Err(UpstreamError::Connect {
                        upstream: self.name.to_string(),
                        source: Box::new(e),
                    });
                }
                Err(e) => {
                    return Err(UpstreamError::Broken {
                        upstream: self.name.to_string(),
                        source: Box::new(e),
                    });
                }
            }
        };
        let (parts, body) = resp.into_parts();
        let body = Limited::new(body, self.body_limit)
            .collect()
            .await
            .map_err(|e| UpstreamError::InvalidResponse {
                upstream: self.name.to_string(),
                detail: format!("reading the body failed: {e}"),
            })?;
        Ok(UpstreamResponse {
            status: parts.status,
            headers: parts.headers,
            body: body.to_bytes(),
        })
    }

    /// The upstream URI of a call: the base's scheme and authority, parsed once when the
    /// upstream was configured, and the base's path followed by the call's.
    pub(super) fn uri(&self, path_and_query: &str) -> Result<Uri, UpstreamError> {
        let invalid = |e: &dyn std::fmt::Display| UpstreamError::InvalidResponse {
            upstream: self.name.to_string(),
            detail: format!("cannot build the upstream URI: {e}"),
        };
        let pq = if self.base_path.is_empty() {
            http::uri::PathAndQuery::try_from(path_and_query)
        } else {
            http::uri::PathAndQuery::try_from(format!("{}{path_and_query}", self.base_path))
        }
        .map_err(|e| invalid(&e))?;
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(pq);
        Uri::from_parts(parts).map_err(|e| invalid(&e))
    }
}

/// What a call's outcome tells the breaker: see `breaker`'s doc for what counts.
fn verdict(result: &Result<UpstreamResponse, UpstreamError>) -> Verdict {
    match result {
        Ok(r) if r.status.is_server_error() => Verdict::Failed,
        Ok(_) => Verdict::Healthy,
        Err(
            UpstreamError::Connect { .. }
            | UpstreamError::Broken { .. }
            | UpstreamError::Timeout { .. },
        ) => Verdict::Failed,
        Err(
            UpstreamError::Unknown { .. }
            | UpstreamError::CircuitOpen { .. }
            | UpstreamError::Busy { .. }
            | UpstreamError::InvalidResponse { .. }
            | UpstreamError::Status { .. }
            | UpstreamError::Auth { .. }
            | UpstreamError::AfterCalls { .. },
        ) => Verdict::Neutral,
    }
}

/// Whether a failed attempt is tried again: idempotent, never connected, retries left.
pub fn retryable(method: &Method, connect_failed: bool, tries: usize) -> bool {
    let idempotent = matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
    );
    idempotent && connect_failed && tries < CONNECT_RETRIES
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{ConfigError, UpstreamConfig};

    #[test]
    fn only_idempotent_calls_that_never_connected_are_retried() {
        assert!(retryable(&Method::GET, true, 0));
        assert!(retryable(&Method::DELETE, true, 1));
        assert!(!retryable(&Method::GET, true, CONNECT_RETRIES), "bounded");
        assert!(
            !retryable(&Method::GET, false, 0),
            "a failure after connecting may have been processed"
        );
        assert!(!retryable(&Method::POST, true, 0));
        assert!(!retryable(&Method::PATCH, true, 0));
    }

    #[test]
    fn connect_failures_timeouts_and_5xx_count_against_the_upstream() {
        let answer = |status: u16| {
            Ok(UpstreamResponse {
                status: StatusCode::from_u16(status).unwrap(),
                headers: http::HeaderMap::new(),
                body: bytes::Bytes::new(),
            })
        };
        let up = || "up".to_owned();
        assert_eq!(verdict(&answer(200)), Verdict::Healthy);
        assert_eq!(verdict(&answer(404)), Verdict::Healthy);
        assert_eq!(verdict(&answer(429)), Verdict::Healthy);
        assert_eq!(verdict(&answer(500)), Verdict::Failed);
        assert_eq!(verdict(&answer(503)), Verdict::Failed);
        let failed = [
            UpstreamError::Connect {
                upstream: up(),
                source: "refused".into(),
            },
            UpstreamError::Broken {
                upstream: up(),
                source: "reset".into(),
            },
            UpstreamError::Timeout {
                upstream: up(),
                timeout: Duration::from_secs(1),
            },
        ];
        for e in failed {
            assert_eq!(verdict(&Err(e)), Verdict::Failed);
        }
        let neutral = [
            UpstreamError::Busy {
                upstream: up(),
                max_in_flight: 1,
                waited: Duration::from_secs(1),
            },
            UpstreamError::Auth {
                upstream: up(),
                detail: "token endpoint answered 500".into(),
            },
        ];
        for e in neutral {
            assert_eq!(verdict(&Err(e)), Verdict::Neutral);
        }
    }

    fn upstream(url: &str) -> Result<Upstream, ConfigError> {
        let cfg: UpstreamConfig =
            toml::from_str(&format!("url = {url:?}")).expect("a config with only a URL");
        Upstream::new("up", &cfg)
    }

    #[tokio::test]
    async fn a_call_goes_to_the_base_url_followed_by_its_path() {
        let cases = [
            (
                "http://127.0.0.1:7001",
                "/a/b?c=d",
                "http://127.0.0.1:7001/a/b?c=d",
            ),
            ("http://127.0.0.1:7001/", "/a", "http://127.0.0.1:7001/a"),
            (
                "https://api.example.com/v2",
                "/a?x",
                "https://api.example.com/v2/a?x",
            ),
            ("http://h:1/base/path/", "/a", "http://h:1/base/path/a"),
        ];
        for (base, pq, want) in cases {
            let u = upstream(base).unwrap();
            assert_eq!(u.uri(pq).unwrap().to_string(), want, "{base} + {pq}");
        }
        // A path that is not one is refused, not sent.
        assert!(upstream("http://h:1").unwrap().uri("/a b").is_err());
    }

    #[tokio::test]
    async fn a_base_url_must_be_absolute_and_without_a_query() {
        for bad in [
            "127.0.0.1:7001",
            "/just/a/path",
            "http://h:1/p?q=1",
            "not a url",
        ] {
            match upstream(bad) {
                Err(ConfigError::Invalid(msg)) => {
                    assert!(msg.contains("upstreams.up.url"), "{msg}")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}
