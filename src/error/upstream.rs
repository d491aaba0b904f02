//! Failures talking to an upstream ([`UpstreamError`]): what the client sees of each, and
//! whether the call certainly never left (what a refund may rest on).

use std::time::Duration;

use http::StatusCode;

use crate::body::BoxError;

/// Failures talking to an upstream.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The pack names an upstream the config does not define (caught at load; kept for safety).
    #[error("upstream {upstream} is not configured")]
    Unknown {
        /// The upstream's name.
        upstream: String,
    },
    /// No connection could be made (TCP or TLS): nothing was sent.
    #[error("upstream {upstream} is unreachable")]
    Connect {
        /// The upstream's name.
        upstream: String,
        /// The connection's failure.
        #[source]
        source: BoxError,
    },
    /// The connection broke after the request was (perhaps partly) sent, before an answer.
    #[error("the connection to upstream {upstream} broke before an answer")]
    Broken {
        /// The upstream's name.
        upstream: String,
        /// The connection's failure.
        #[source]
        source: BoxError,
    },
    /// The upstream's circuit breaker is open: the call was refused without being sent.
    #[error("upstream {upstream} is failing; calls to it are paused for {retry_after:?}")]
    CircuitOpen {
        /// The upstream's name.
        upstream: String,
        /// Until a call may be tried again, for `Retry-After`.
        retry_after: Duration,
    },
    /// `max_in_flight` calls were already in flight and no slot freed within the
    /// upstream's `queue_timeout`: the call was not sent.
    #[error(
        "upstream {upstream} is busy: {max_in_flight} calls in flight, none ended within {waited:?}"
    )]
    Busy {
        /// The upstream's name.
        upstream: String,
        /// The upstream's `max_in_flight`.
        max_in_flight: usize,
        /// How long the call waited for a slot.
        waited: Duration,
    },
    /// No response within the configured timeout.
    #[error("upstream {upstream} did not answer within {timeout:?}")]
    Timeout {
        /// The upstream's name.
        upstream: String,
        /// The timeout that ran out.
        timeout: Duration,
    },
    /// The upstream answered something we cannot read (not JSON, truncated, too large).
    #[error("upstream {upstream} sent an unreadable response: {detail}")]
    InvalidResponse {
        /// The upstream's name.
        upstream: String,
        /// What is wrong with the response, then after `: ` the parser's or the
        /// connection's own words, which only the log gets.
        detail: String,
    },
    /// The upstream answered with an error status.
    #[error("upstream {upstream} answered {status}{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Status {
        /// The upstream's name.
        upstream: String,
        /// The status it answered.
        status: StatusCode,
        /// The message its error body carried (`message`, `detail`…), if any.
        message: Option<String>,
        /// The status the client is answered instead of the usual one, as the step's
        /// `refusals` say (Fusion's 400 for a reseller with tenants is a 409).
        answer: Option<StatusCode>,
    },
    /// Obtaining upstream credentials (OAuth2 token) failed.
    #[error("could not authenticate to upstream {upstream}: {detail}")]
    Auth {
        /// The upstream's name.
        upstream: String,
        /// Why the credentials could not be obtained, then after `: ` the token endpoint's
        /// or the connection's own words, which only the log gets.
        detail: String,
    },
    /// A call failed after others of the same request had been sent: answered as `inner`,
    /// but the request did upstream work (its cost is not given back).
    #[error("{inner}")]
    AfterCalls {
        /// The calls of the request that had been sent.
        sent: u32,
        /// The failure itself.
        inner: Box<UpstreamError>,
    },
}

impl UpstreamError {
    /// The status the client sees. Client errors the upstream reports are passed on with the
    /// same meaning; anything that means "the upstream is broken" is a 502, a timeout a 504.
    pub fn status(&self) -> StatusCode {
        match self {
            UpstreamError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            UpstreamError::CircuitOpen { .. } | UpstreamError::Busy { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            UpstreamError::Unknown { .. }
            | UpstreamError::Connect { .. }
            | UpstreamError::Broken { .. }
            | UpstreamError::InvalidResponse { .. }
            | UpstreamError::Auth { .. } => StatusCode::BAD_GATEWAY,
            UpstreamError::AfterCalls { inner, .. } => inner.status(),
            UpstreamError::Status {
                answer: Some(a), ..
            } => *a,
            UpstreamError::Status { status, .. } => match status.as_u16() {
                400 | 404 | 409 | 410 | 412 | 422 => *status,
                // The upstream refusing *our* credentials is our failure, not the client's.
                401 | 403 => StatusCode::BAD_GATEWAY,
                429 => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::BAD_GATEWAY,
            },
        }
    }

    /// Whether the call certainly never reached the upstream: no connection was made (TCP
    /// or TLS refused), the circuit breaker refused it, it found no slot within the
    /// `queue_timeout`, or the upstream is not configured. Such a failure cost the upstream
    /// nothing, so what the client paid for it may be given back. `false` whenever a byte
    /// of the request may have been sent: a broken connection, a timeout (it may have run
    /// out after the request went), any answer, and a token endpoint failure (it may come
    /// after a first attempt was answered 401).
    pub fn nothing_sent(&self) -> bool {
        match self {
            UpstreamError::Unknown { .. }
            | UpstreamError::Connect { .. }
            | UpstreamError::CircuitOpen { .. }
            | UpstreamError::Busy { .. } => true,
            UpstreamError::Broken { .. }
            | UpstreamError::Timeout { .. }
            | UpstreamError::InvalidResponse { .. }
            | UpstreamError::Status { .. }
            | UpstreamError::Auth { .. }
            | UpstreamError::AfterCalls { .. } => false,
        }
    }

    /// What the client is told of this failure (see [`GatewayError::client_detail`]): an
    /// upstream's error message only when it is passed on as the client's own 4xx; of an
    /// unreadable answer or a failed token fetch, only what Rosetta says before the first
    /// `: ` (the parser's or the connection's own words after it are for the log).
    pub fn client_detail(&self) -> String {
        let before_cause = |d: &str| d.split(": ").next().unwrap_or_default().to_owned();
        match self {
            UpstreamError::Status {
                upstream, status, ..
            } if self.status().is_server_error() => {
                format!("upstream {upstream} answered {}", status.as_u16())
            }
            UpstreamError::InvalidResponse { upstream, detail } => format!(
                "upstream {upstream} sent an unreadable response: {}",
                before_cause(detail)
            ),
            UpstreamError::Auth { upstream, detail } => format!(
                "could not authenticate to upstream {upstream}: {}",
                before_cause(detail)
            ),
            UpstreamError::AfterCalls { inner, .. } => inner.client_detail(),
            UpstreamError::Unknown { .. }
            | UpstreamError::Connect { .. }
            | UpstreamError::Broken { .. }
            | UpstreamError::CircuitOpen { .. }
            | UpstreamError::Busy { .. }
            | UpstreamError::Timeout { .. }
            | UpstreamError::Status { .. } => self.to_string(),
        }
    }

    /// Until a call may be tried again, when the failure knows (an open circuit).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            UpstreamError::CircuitOpen { retry_after, .. } => Some(*retry_after),
            UpstreamError::AfterCalls { inner, .. } => inner.retry_after(),
            UpstreamError::Unknown { .. }
            | UpstreamError::Connect { .. }
            | UpstreamError::Broken { .. }
            | UpstreamError::Busy { .. }
            | UpstreamError::Timeout { .. }
            | UpstreamError::InvalidResponse { .. }
            | UpstreamError::Status { .. }
            | UpstreamError::Auth { .. } => None,
        }
    }
}
