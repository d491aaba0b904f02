//! The admin API's wire format, shared by every handler: JSON bodies in (bounded) and out,
//! RFC 3339 times, and the store's errors as the HTTP errors they mean.

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Response, StatusCode, header};
use http_body::Body as _;
use http_body_util::BodyExt;
use serde_json::Value;

use crate::body::{Body, empty, full};
use crate::dialect::decode_json;
use crate::error::{BadRequest, GatewayError};
use crate::store::StoreError;

/// Largest admin request body.
const BODY_LIMIT: usize = 1024 * 1024;

/// Deepest nesting of an admin request body.
const MAX_DEPTH: usize = 64;

pub(super) fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    let mut r = Response::new(full(Bytes::from(serde_json::to_vec(v).unwrap_or_default())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

pub(super) fn no_content() -> Response<Body> {
    let mut r = Response::new(empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

/// The request body as JSON (`null` when empty): 413 past the limit (or when the body
/// breaks off), 400 when malformed.
///
/// Read frame by frame rather than through `http_body_util::Limited`, whose error bound on
/// a boxed body keeps the handlers' futures from being provably `Send`.
pub(super) async fn read_json(mut body: Body) -> Result<Value, GatewayError> {
    let too_large = || GatewayError::PayloadTooLarge { limit: BODY_LIMIT };
    if body.size_hint().lower() > BODY_LIMIT as u64 {
        return Err(too_large());
    }
    let mut bytes = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(|_| too_large())?.into_data() else {
            continue; // trailers
        };
        if bytes.len() + data.len() > BODY_LIMIT {
            return Err(too_large());
        }
        bytes.extend_from_slice(&data);
    }
    Ok(decode_json(&bytes, MAX_DEPTH)?)
}

pub(super) fn store_err(e: StoreError) -> GatewayError {
    match e {
        StoreError::Conflict(what) => GatewayError::Conflict(what),
        StoreError::NotFound(what) => GatewayError::NotFound(what),
        StoreError::Invalid(msg) => GatewayError::BadRequest(BadRequest::new(msg)),
        e @ StoreError::Backend(_) => crate::error::Internal::Store {
            doing: "answering an admin request",
            source: e,
        }
        .into(),
    }
}

pub(super) fn rfc3339_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

pub(super) fn now_ms() -> i64 {
    crate::clock::system_ms()
}
