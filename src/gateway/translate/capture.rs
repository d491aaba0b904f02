//! [`CaptureSink`]: the four flows of a request (what the client sent, what went upstream,
//! what came back, what the client got) kept by tracecode when `[capture]` wants them, so an
//! operator can see a failed translation as it happened.

use std::sync::Arc;

use bytes::Bytes;
use http::{Response, header};

use crate::body::Body;
use crate::capture::{CallLog, Flow, keep};
use crate::config::CaptureMode;
use crate::context::RequestMeta;
use crate::error::GatewayError;
use crate::mapping::pack::Route;
use crate::store::Captures;

/// Where and how much of each request's bodies are kept (`[capture]`).
#[derive(Clone)]
pub struct CaptureSink {
    /// Where captures are written.
    pub captures: Arc<dyn Captures>,
    /// Which requests keep their bodies.
    pub mode: CaptureMode,
    /// Bytes kept per body; longer ones are cut.
    pub max_body_bytes: usize,
}

impl std::fmt::Debug for CaptureSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureSink")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl CaptureSink {
    /// Hands the four flows of one request to the store when the mode wants them.
    pub(super) fn keep(
        &self,
        meta: &RequestMeta,
        route: &Route,
        parts: &http::request::Parts,
        input: &[u8],
        calls: Option<&CallLog>,
        result: &Result<(Response<Body>, Bytes), GatewayError>,
    ) {
        let dialect = route.pack.client_dialect;
        let (status, content_type, output) = match result {
            Ok((resp, bytes)) => (
                resp.status(),
                dialect.content_type().to_owned(),
                bytes.clone(),
            ),
            Err(e) => {
                let (ct, body) = dialect.error_body(e, meta, parts.uri.path());
                (e.status(), ct.to_owned(), body)
            }
        };
        let wanted = match self.mode {
            CaptureMode::Off => false,
            CaptureMode::Errors => status.as_u16() >= 400,
            CaptureMode::All => true,
        };
        if !wanted {
            return;
        }
        let cap = self.max_body_bytes;
        let in_ct = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream");
        let (sent, received) = calls.map(CallLog::documents).unwrap_or_default();
        let bodies = vec![
            keep(Flow::Input, 0, in_ct, input, cap),
            keep(Flow::Input, 1, "application/json", &sent, cap),
            keep(Flow::Output, 0, "application/json", &received, cap),
            keep(Flow::Output, 1, &content_type, &output, cap),
        ];
        let now = crate::clock::system_ms();
        self.captures
            .record_capture(meta.tracecode.to_string(), now, bodies);
    }
}
