//! Dialects: how one API family writes bodies, errors and pages.
//!
//! A dialect is a closed set (the enum below), so every place that depends on the dialect
//! is an exhaustive match: adding a dialect is a compile error everywhere it must be handled.

pub mod filter;
pub mod longjump;
pub mod paging;
mod problem;
pub mod search;

use bytes::Bytes;
use http::{HeaderValue, Response, header};
use serde_json::Value;

use crate::body::{Body, full};
use crate::context::RequestMeta;
use crate::error::{BadRequest, GatewayError};

pub use longjump::{longjump_code, longjump_document, longjump_error};
pub use problem::problem_details;

/// The API dialects Rosetta speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// Legacy RedAPI V1 (seed 000): JSON, problem details, `maxResults`/`pageToken`.
    RedapiV1,
    /// AppDirect (seed 001): JSON, `page`/`size`, `{content, page}`.
    AppDirect,
    /// Fusion DRaaS (seed 004): JSON, `page`/`page_size`/`next`.
    Fusion,
    /// LongJump (seed 002): XML `<platform>` envelope.
    LongJump,
    /// Rosetta's admin API (seed 003 style): JSON with `tracedata` errors.
    Admin,
}

impl Dialect {
    /// All dialects, for validation messages.
    pub const ALL: [Dialect; 5] = [
        Dialect::RedapiV1,
        Dialect::AppDirect,
        Dialect::Fusion,
        Dialect::LongJump,
        Dialect::Admin,
    ];

    /// The name used in pack files.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::RedapiV1 => "redapi-v1",
            Dialect::AppDirect => "appdirect",
            Dialect::Fusion => "fusion",
            Dialect::LongJump => "longjump",
            Dialect::Admin => "admin",
        }
    }

    /// Parses a pack's `client_dialect`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name() == name)
    }

    /// The paging scheme of this dialect.
    pub fn paging(self) -> paging::Scheme {
        match self {
            Dialect::RedapiV1 => paging::Scheme::RedapiV1,
            Dialect::AppDirect => paging::Scheme::AppDirect,
            Dialect::Fusion => paging::Scheme::Fusion,
            Dialect::LongJump => paging::Scheme::LongJump,
            Dialect::Admin => paging::Scheme::Admin,
        }
    }

    /// Media type of successful bodies.
    pub fn content_type(self) -> &'static str {
        match self {
            Dialect::RedapiV1 | Dialect::AppDirect | Dialect::Fusion | Dialect::Admin => {
                "application/json; charset=utf-8"
            }
            Dialect::LongJump => "application/xml; charset=utf-8",
        }
    }

    /// Decodes a request body into a JSON value, enforcing the nesting limit.
    pub fn decode_body(self, bytes: &[u8], max_depth: usize) -> Result<Value, BadRequest> {
        match self {
            Dialect::RedapiV1 | Dialect::AppDirect | Dialect::Fusion | Dialect::Admin => {
                decode_json(bytes, max_depth)
            }
            // The XML codec arrives with the LongJump issue; until then XML bodies are refused
            // rather than guessed at.
            Dialect::LongJump => longjump::decode(bytes, max_depth),
        }
    }

    /// Encodes a successful body.
    pub fn encode_body(self, value: &Value) -> Bytes {
        match self {
            Dialect::RedapiV1 | Dialect::AppDirect | Dialect::Fusion | Dialect::Admin => {
                Bytes::from(serde_json::to_vec(value).unwrap_or_default())
            }
            Dialect::LongJump => longjump_document(value),
        }
    }

    /// A JSON document (checked, as an upstream sent it) in this dialect: as it is for JSON
    /// clients; LongJump's converts it.
    pub fn encode_json_text(self, json: Bytes) -> Bytes {
        match self {
            Dialect::RedapiV1 | Dialect::AppDirect | Dialect::Fusion | Dialect::Admin => json,
            Dialect::LongJump => {
                longjump_document(&serde_json::from_slice(&json).unwrap_or(Value::Null))
            }
        }
    }

    /// Renders `err` the way this dialect's clients expect, with the tracecode.
    pub fn render_error(
        self,
        err: &GatewayError,
        meta: &RequestMeta,
        path: &str,
    ) -> Response<Body> {
        let status = err.status();
        let (content_type, body) = self.error_body(err, meta, path);
        let mut resp = Response::new(full(body));
        *resp.status_mut() = status;
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        self.error_headers(err, resp)
    }

    /// The media type and bytes of `err` in this dialect (what `render_error` sends).
    pub fn error_body(
        self,
        err: &GatewayError,
        meta: &RequestMeta,
        path: &str,
    ) -> (&'static str, Bytes) {
        let status = err.status();
        match self {
            Dialect::RedapiV1 => (
                "application/problem+json",
                json_bytes(&problem_details(err, meta, path)),
            ),
            Dialect::AppDirect | Dialect::Fusion => (
                "application/json",
                json_bytes(&serde_json::json!({
                    "code": status.canonical_reason().unwrap_or("Error").to_uppercase().replace(' ', "_"),
                    "message": err.client_detail(&meta.tracecode),
                    "traceCode": &*meta.tracecode,
                })),
            ),
            Dialect::Admin => (
                "application/json",
                json_bytes(&serde_json::json!({
                    "tracedata": {
                        "code": &*meta.tracecode,
                        "client": Value::Null,
                        "server": Value::Null,
                        "service": "ROSETTA_ADMIN",
                        "operation": path,
                        "time": crate::clock::utc_now()
                            .format(&time::format_description::well_known::Rfc3339)
                            .unwrap_or_default(),
                    },
                    "message": err.client_detail(&meta.tracecode),
                })),
            ),
            Dialect::LongJump => ("application/xml", longjump_error(err, meta)),
        }
    }

    fn error_headers(self, err: &GatewayError, mut resp: Response<Body>) -> Response<Body> {
        if let GatewayError::RateLimited {
            limit, retry_after, ..
        } = err
        {
            let h = resp.headers_mut();
            h.insert(
                crate::header_names::RATELIMIT_LIMIT,
                HeaderValue::from(*limit),
            );
            h.insert(
                crate::header_names::RATELIMIT_REMAINING,
                HeaderValue::from(0u32),
            );
            h.insert(
                crate::header_names::RATELIMIT_RESET,
                HeaderValue::from(crate::limits::rate::ceil_secs(*retry_after)),
            );
        }
        if let Some(secs) = err.retry_after_secs() {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let GatewayError::MethodNotAllowed { allow, .. } = err {
            let allow = allow
                .iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            if let Ok(v) = HeaderValue::from_str(&allow) {
                resp.headers_mut().insert(header::ALLOW, v);
            }
        }
        if let GatewayError::Unauthenticated { .. } = err {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(self.challenge()),
            );
        }
        resp
    }

    /// `WWW-Authenticate` of a 401. The admin API offers Basic first, so a browser can sign
    /// in with its own password prompt (and why its writes are guarded against CSRF).
    fn challenge(self) -> &'static str {
        match self {
            Dialect::Admin => "Basic realm=\"rosetta-admin\", Bearer",
            Dialect::RedapiV1 | Dialect::AppDirect | Dialect::Fusion | Dialect::LongJump => {
                "Bearer realm=\"rosetta\""
            }
        }
    }
}

fn json_bytes(v: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

/// Parses JSON, naming line and column on failure and refusing nesting deeper than
/// `max_depth` before serde builds the value (so a 10 MiB `[[[[…` cannot blow the stack).
pub fn decode_json(bytes: &[u8], max_depth: usize) -> Result<Value, BadRequest> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    std::str::from_utf8(bytes).map_err(|e| {
        BadRequest::new(format!(
            "request body is not valid UTF-8 (byte {})",
            e.valid_up_to()
        ))
    })?;
    check_depth(bytes, max_depth)?;
    serde_json::from_slice(bytes).map_err(|e| {
        BadRequest::new(format!(
            "malformed JSON body at line {} column {}: {}",
            e.line(),
            e.column(),
            e
        ))
    })
}

fn check_depth(bytes: &[u8], max_depth: usize) -> Result<(), BadRequest> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                (false, _) => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max_depth {
                    return Err(BadRequest::new(format!(
                        "request body nests deeper than the limit of {max_depth}"
                    )));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for d in Dialect::ALL {
            assert_eq!(Dialect::from_name(d.name()), Some(d));
        }
        assert_eq!(Dialect::from_name("soap"), None);
    }

    #[test]
    fn malformed_json_names_the_position() {
        let e = decode_json(b"{\n  \"a\": tru }", 64).unwrap_err();
        assert!(e.detail.contains("line 2"), "{}", e.detail);
    }

    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        let doc = "[".repeat(100_000);
        let e = decode_json(doc.as_bytes(), 64).unwrap_err();
        assert!(e.detail.contains("deeper"));
        // Brackets inside strings do not count.
        assert!(decode_json(br#"{"a":"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}"#, 4).is_ok());
    }

    #[test]
    fn invalid_utf8_is_refused() {
        assert!(
            decode_json(b"{\"a\":\"\xff\"}", 64)
                .unwrap_err()
                .detail
                .contains("UTF-8")
        );
    }
}

pub mod xml;
