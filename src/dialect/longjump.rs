//! The LongJump dialect (seed 002): `<platform>` documents in and out.
//!
//! Every answer is a `<platform>` envelope ending in `<message><code>…</code>
//! <description>…</description></message>`: code 0 on success, the documented negative codes
//! on failure (DESIGN §5), and for refusals LongJump never had, codes of Rosetta's own in the
//! −9xxx range. Search results are the records followed by the message and, when asked,
//! `<totalRecordCount>`. Request bodies go through the rule-based converter, so a DOCTYPE,
//! an entity, bad UTF-8 or too deep a nesting is a −4601 naming line and column.

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::xml::{XmlRules, json_to_xml_vec, xml_to_value};
use crate::context::RequestMeta;
use crate::error::{BadRequest, GatewayError};

/// LongJump result code for a Rosetta error.
pub fn longjump_code(err: &GatewayError) -> i32 {
    match err {
        GatewayError::NoRoute { .. } => -200,
        GatewayError::MethodNotAllowed { .. } => -300,
        GatewayError::Unauthenticated { .. } => -101,
        GatewayError::Forbidden { .. } => -850,
        // A bad query parameter (filter, fieldList, page) is a bad request; a body that cannot
        // be read or is refused by the route's validation is an invalid payload.
        GatewayError::BadRequest(b) if b.parameter.is_some() => -300,
        GatewayError::PayloadTooLarge { .. }
        | GatewayError::UnsupportedMediaType { .. }
        | GatewayError::BadRequest(_) => -4601,
        GatewayError::RequestTimeout { .. } => -9408,
        GatewayError::AnswerTimeout { .. } => -9504,
        GatewayError::RateLimited { .. } => -9429,
        GatewayError::QuotaExceeded { .. } => -9430,
        GatewayError::Overloaded { .. } | GatewayError::LimitsUnavailable { .. } => -9503,
        GatewayError::Upstream(e) => match e.status().as_u16() {
            400 | 409 | 422 => -300,
            404 | 410 => -200,
            503 => -9503,
            504 => -9504,
            _ => -9502,
        },
        GatewayError::RouteLimit(e) => match e.status().as_u16() {
            504 => -9504,
            _ => -9502,
        },
        GatewayError::NotFound(_) => -200,
        GatewayError::Conflict(_) => -300,
        GatewayError::NotSupported(_) => -9501,
        GatewayError::Internal(_) => -1,
    }
}

/// The error document for `err`.
pub fn longjump_error(err: &GatewayError, meta: &RequestMeta) -> Bytes {
    let doc = json!({"message": {"code": longjump_code(err), "description": err.client_detail(&meta.tracecode), "traceCode": &*meta.tracecode}});
    write(&doc)
}

/// A successful answer: the route's value inside `<platform>`, records flattened, the
/// success message added when the route did not write one.
pub fn longjump_document(value: &Value) -> Bytes {
    let mut fields = match value {
        Value::Object(m) => m.clone(),
        other @ (Value::Null
        | Value::Bool(_)
        | Value::Number(_)
        | Value::String(_)
        | Value::Array(_)) => {
            let mut m = Map::new();
            m.insert("value".into(), other.clone());
            m
        }
    };
    let mut out = Map::new();
    // `records: [{tenant: …}, …]` becomes repeated `<tenant>` elements, in order.
    if let Some(Value::Array(records)) = fields.remove("records") {
        for record in records {
            match record {
                Value::Object(r) => {
                    for (k, v) in r {
                        match out.get_mut(&k) {
                            Some(Value::Array(list)) => list.push(v),
                            Some(_) | None => {
                                out.insert(k, Value::Array(vec![v]));
                            }
                        }
                    }
                }
                other @ (Value::Null
                | Value::Bool(_)
                | Value::Number(_)
                | Value::String(_)
                | Value::Array(_)) => {
                    if let Some(Value::Array(list)) = out.get_mut("record") {
                        list.push(other);
                    } else {
                        out.insert("record".into(), Value::Array(vec![other]));
                    }
                }
            }
        }
    }
    let total = fields.remove("totalRecordCount");
    let message = fields
        .remove("message")
        .unwrap_or_else(|| json!({"code": 0, "description": "Success"}));
    out.extend(fields);
    out.insert("message".into(), message);
    if let Some(t) = total {
        out.insert("totalRecordCount".into(), t);
    }
    write(&Value::Object(out))
}

/// The rules LongJump documents are written under: built once (the XML converter keeps
/// per-rules state between documents).
pub fn platform_rules() -> &'static XmlRules {
    static RULES: std::sync::LazyLock<XmlRules> =
        std::sync::LazyLock::new(|| XmlRules::default().root("platform").bool_digits(true));
    &RULES
}

fn write(doc: &Value) -> Bytes {
    let mut out = Vec::with_capacity(256);
    match json_to_xml_vec(doc, platform_rules(), &mut out) {
        Ok(()) => Bytes::from(out),
        // Only a nesting beyond the writer's limit can fail; answer that as an error document.
        Err(e) => Bytes::from(format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><platform><message><code>-1</code><description>{}</description></message></platform>",
            e.message.replace('<', "&lt;")
        )),
    }
}

/// Reads a `<platform>` request body; the envelope level is removed (`{tenant: {…}}`).
pub fn decode(bytes: &[u8], max_depth: usize) -> Result<Value, BadRequest> {
    // One depth is configured per process: its rules are built once and kept (the converter
    // keeps per-rules state between documents); another depth gets rules of its own.
    static RULES: std::sync::OnceLock<XmlRules> = std::sync::OnceLock::new();
    let kept = RULES.get_or_init(|| XmlRules::default().unwrap("/platform").max_depth(max_depth));
    let own;
    let rules = if kept.max_depth == max_depth {
        kept
    } else {
        own = XmlRules::default().unwrap("/platform").max_depth(max_depth);
        &own
    };
    xml_to_value(bytes, rules).map_err(|e| BadRequest::new(format!("malformed XML body: {e}")))
}

#[cfg(test)]
mod tests {
    //! Golden files under `tests/golden/longjump/`: `ROSETTA_BLESS=1 cargo test` rewrites them.

    use std::path::PathBuf;
    use std::sync::Arc;
    use std::time::Duration;

    use http::{Method, StatusCode};

    use super::*;
    use crate::error::UpstreamError;

    fn golden(name: &str, actual: &[u8]) {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden/longjump")
            .join(name);
        if std::env::var_os("ROSETTA_BLESS").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, actual).unwrap();
        }
        let expected = std::fs::read(&path)
            .unwrap_or_else(|_| panic!("missing golden file {}", path.display()));
        assert_eq!(
            String::from_utf8_lossy(actual),
            String::from_utf8_lossy(&expected),
            "{name}"
        );
    }

    fn meta() -> RequestMeta {
        RequestMeta {
            request_id: Arc::from("req-1"),
            tracecode: Arc::from("00000000000000aa"),
            trace_id: Arc::from("0".repeat(32)),
            started: crate::clock::real_now(),
        }
    }

    fn tenant() -> Value {
        json!({"id": "101", "company": "Greene & Sons", "active": true, "msp": false,
               "partner": {"@type": "Tenant", "@uri": "http://gw/networking/rest/tenant/100", "@displayValue": "MSP 15", "#text": "100"},
               "phone": null, "country": "United States"})
    }

    #[test]
    fn tenant_envelope_and_lookup() {
        golden(
            "tenant.xml",
            &longjump_document(&json!({"tenant": tenant()})),
        );
    }

    #[test]
    fn search_envelope_with_total() {
        let doc = json!({"records": [{"tenant": tenant()}, {"tenant": {"id": "102", "company": "B", "active": false}}], "totalRecordCount": 2});
        golden("search.xml", &longjump_document(&doc));
    }

    #[test]
    fn create_answer_carries_the_id() {
        golden(
            "create.xml",
            &longjump_document(
                &json!({"message": {"code": 0, "description": "Success", "id": "103"}}),
            ),
        );
    }

    #[test]
    fn every_error_code() {
        let up = |status: u16| {
            GatewayError::Upstream(UpstreamError::Status {
                upstream: "appdirect".into(),
                status: StatusCode::from_u16(status).unwrap(),
                message: Some("no".into()),
                answer: None,
            })
        };
        let cases: Vec<(&str, GatewayError, i32)> = vec![
            (
                "error-200-no-route.xml",
                GatewayError::NoRoute {
                    method: Method::GET,
                    path: "/x".into(),
                },
                -200,
            ),
            ("error-200-upstream-404.xml", up(404), -200),
            (
                "error-300-method.xml",
                GatewayError::MethodNotAllowed {
                    method: Method::PATCH,
                    allow: vec![Method::GET],
                },
                -300,
            ),
            ("error-300-upstream-400.xml", up(400), -300),
            (
                "error-101-unauthenticated.xml",
                GatewayError::Unauthenticated {
                    reason: "no credentials were presented".into(),
                },
                -101,
            ),
            (
                "error-850-forbidden.xml",
                GatewayError::Forbidden {
                    reason: "not yours".into(),
                },
                -850,
            ),
            (
                "error-300-bad-filter.xml",
                GatewayError::bad_param("filter", "at position 5: unknown operator <is>"),
                -300,
            ),
            (
                "error-4601-bad-body.xml",
                GatewayError::BadRequest(BadRequest::new(
                    "malformed XML body: unexpected end (line 2, column 7)",
                )),
                -4601,
            ),
            (
                "error-4601-too-large.xml",
                GatewayError::PayloadTooLarge { limit: 1024 },
                -4601,
            ),
            (
                "error-4601-media-type.xml",
                GatewayError::UnsupportedMediaType {
                    detail: "the body must be application/xml, not `text/plain`".into(),
                },
                -4601,
            ),
            (
                "error-9408-request-timeout.xml",
                GatewayError::RequestTimeout {
                    reason: "the body came slower than 1024 bytes/s".into(),
                },
                -9408,
            ),
            (
                "error-9504-answer-timeout.xml",
                GatewayError::AnswerTimeout {
                    timeout: Duration::from_secs(60),
                },
                -9504,
            ),
            (
                "error-9429-rate-limited.xml",
                GatewayError::RateLimited {
                    policy: "default".into(),
                    retry_after: Duration::from_secs(1),
                    limit: 20,
                },
                -9429,
            ),
            (
                "error-9430-quota.xml",
                GatewayError::QuotaExceeded {
                    limit: "points_per_day".into(),
                    retry_after: Duration::from_secs(60),
                },
                -9430,
            ),
            (
                "error-9502-upstream-down.xml",
                GatewayError::Upstream(UpstreamError::InvalidResponse {
                    upstream: "appdirect".into(),
                    detail: "not XML".into(),
                }),
                -9502,
            ),
            (
                "error-9504-upstream-timeout.xml",
                GatewayError::Upstream(UpstreamError::Timeout {
                    upstream: "appdirect".into(),
                    timeout: Duration::from_secs(15),
                }),
                -9504,
            ),
            (
                "error-1-internal.xml",
                GatewayError::from(crate::error::Internal::Failed {
                    doing: "bug",
                    source: "a test's".into(),
                }),
                -1,
            ),
        ];
        for (file, err, code) in cases {
            assert_eq!(longjump_code(&err), code, "{file}");
            golden(file, &longjump_error(&err, &meta()));
        }
    }

    #[test]
    fn request_bodies_decode_without_the_envelope() {
        let v = decode(b"<platform><tenant><company>BSmith Inc</company><is_partner>1</is_partner></tenant></platform>", 64).unwrap();
        assert_eq!(
            v,
            json!({"tenant": {"company": "BSmith Inc", "is_partner": "1"}})
        );
        let e = decode(b"<platform>\n<tenant><company>x</tenant></platform>", 64).unwrap_err();
        assert!(e.detail.contains("line 2"), "{}", e.detail);
        let e = decode(b"<!DOCTYPE x [<!ENTITY a 'b'>]><platform/>", 64).unwrap_err();
        assert!(e.detail.contains("DOCTYPE"), "{}", e.detail);
    }
}
