//! RFC 9457 problem details, as RedAPI V1 clients receive every error.

use serde_json::{Value, json};

use crate::context::RequestMeta;
use crate::error::GatewayError;

/// The problem-details document for `err`.
///
/// `type` points at the RFC 9110 section of the status, as ASP.NET (the V1 API's original
/// server) does, so existing client error handling keeps matching.
pub fn problem_details(err: &GatewayError, meta: &RequestMeta, path: &str) -> Value {
    let status = err.status();
    let section = match status.as_u16() {
        400 => "15.5.1",
        401 => "15.5.2",
        403 => "15.5.4",
        404 => "15.5.5",
        405 => "15.5.6",
        408 => "15.5.9",
        409 => "15.5.10",
        413 => "15.5.14",
        415 => "15.5.16",
        422 => "15.5.21",
        429 => "6.1",
        500 => "15.6.1",
        502 => "15.6.3",
        503 => "15.6.4",
        504 => "15.6.5",
        _ => "15",
    };
    let type_uri = if status.as_u16() == 429 {
        "https://www.rfc-editor.org/rfc/rfc6585#section-4".to_owned()
    } else {
        format!("https://tools.ietf.org/html/rfc9110#section-{section}")
    };
    let mut doc = json!({
        "type": type_uri,
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": err.client_detail(&meta.tracecode),
        "instance": path,
        "traceId": &*meta.tracecode,
        "requestId": &*meta.request_id,
    });
    if let GatewayError::BadRequest(b) = err
        && let Some(p) = &b.parameter
    {
        doc["errors"] = json!({ p: [b.detail.clone()] });
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_request_names_the_parameter() {
        let meta = RequestMeta::new(None);
        let doc = problem_details(
            &GatewayError::bad_param("maxResults", "must be ≥ 0"),
            &meta,
            "/x",
        );
        assert_eq!(doc["status"], 400);
        assert_eq!(doc["title"], "Bad Request");
        assert_eq!(doc["errors"]["maxResults"][0], "must be ≥ 0");
        assert_eq!(doc["traceId"], &*meta.tracecode);
    }

    #[test]
    fn an_unsupported_media_type_is_a_415_problem() {
        let meta = RequestMeta::new(None);
        let err = GatewayError::UnsupportedMediaType {
            detail: "send application/json".into(),
        };
        let doc = problem_details(&err, &meta, "/x");
        assert_eq!(doc["status"], 415);
        assert_eq!(doc["title"], "Unsupported Media Type");
        assert_eq!(
            doc["type"],
            "https://tools.ietf.org/html/rfc9110#section-15.5.16"
        );
        assert!(doc["detail"].as_str().unwrap().contains("application/json"));
    }
}
