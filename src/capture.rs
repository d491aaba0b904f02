//! Captures: the bodies of a proxied request, kept by tracecode for `/v1/tracecode`.
//!
//! Four flows per request (seed 003's `data_flow_type` × `data_flow_stage`): INPUT 0 the
//! client's request as received, INPUT 1 the request(s) as translated for the upstreams,
//! OUTPUT 0 the upstream answer(s) as received, OUTPUT 1 the answer as sent to the client.
//! A route may call several upstreams, so stage-1 inputs and stage-0 outputs are JSON lists
//! of the calls. Secrets never reach the store: values of fields named like a password or a
//! token are replaced before anything is written ([`redact`]), in JSON and in XML bodies.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde_json::{Value, json};

/// Field names whose values are never captured (compared case-insensitively, `_`/`-` ignored).
const SECRET_FIELDS: &[&str] = &[
    "password",
    "newpassword",
    "oldpassword",
    "secret",
    "clientsecret",
    "token",
    "accesstoken",
    "refreshtoken",
    "apikey",
];

const MASK: &str = "***";

fn is_secret(name: &str) -> bool {
    let n: String = name
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect();
    SECRET_FIELDS.contains(&n.as_str())
}

fn redact_value(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, v) in m.iter_mut() {
                if is_secret(k) {
                    *v = Value::String(MASK.into());
                } else {
                    redact_value(v);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact_value),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {}
    }
}

/// The body with secret fields masked. JSON is parsed and re-written; XML elements named
/// like a secret have their text replaced; anything else is kept as is.
pub fn redact(body: &[u8]) -> Vec<u8> {
    let trimmed = body.trim_ascii_start();
    if trimmed.starts_with(b"{") || trimmed.starts_with(b"[") {
        if let Ok(mut v) = serde_json::from_slice::<Value>(body) {
            redact_value(&mut v);
            return serde_json::to_vec(&v).unwrap_or_default();
        }
        return body.to_vec();
    }
    if trimmed.starts_with(b"<") {
        return redact_xml(body);
    }
    body.to_vec()
}

/// Masks the text of `<password>…</password>`-like elements (any namespace prefix).
fn redact_xml(body: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(body);
    let mut out = String::with_capacity(text.len());
    let mut rest: &str = &text;
    while let Some(open) = rest.find('<') {
        out.push_str(&rest[..open]);
        rest = &rest[open..];
        let Some(end) = rest.find('>') else { break };
        let tag = &rest[..=end];
        out.push_str(tag);
        rest = &rest[end + 1..];
        let name = tag
            .trim_start_matches('<')
            .trim_end_matches('>')
            .split(|c: char| c.is_whitespace() || c == '/')
            .next()
            .unwrap_or("");
        let local = name.rsplit(':').next().unwrap_or(name);
        if !tag.ends_with("/>") && !name.starts_with(['/', '?', '!']) && is_secret(local) {
            let close = format!("</{name}");
            if let Some(c) = rest.find(&close) {
                out.push_str(MASK);
                rest = &rest[c..];
            }
        }
    }
    out.push_str(rest);
    out.into_bytes()
}

/// One kept body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedBody {
    pub flow: Flow,
    pub stage: u8,
    pub content_type: String,
    pub body: Bytes,
    /// The body was longer than the cap and was cut.
    pub truncated: bool,
}

/// Seed 003's `data_flow_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Input,
    Output,
}

impl Flow {
    pub fn as_str(self) -> &'static str {
        match self {
            Flow::Input => "INPUT",
            Flow::Output => "OUTPUT",
        }
    }
}

/// One upstream call as a capture keeps it.
#[derive(Debug, Clone, Copy)]
pub struct Exchange<'a> {
    pub method: &'a str,
    pub upstream: &'a str,
    pub path: &'a str,
    pub request: &'a [u8],
    /// 0 when no answer came (connect failure, timeout).
    pub status: u16,
    pub response: &'a [u8],
}

/// The upstream calls of one request, collected while its route runs.
#[derive(Debug, Clone, Default)]
pub struct CallLog(Arc<Mutex<Vec<(Value, Value)>>>);

impl CallLog {
    /// Records one upstream exchange (bodies redacted, each cut at `cap` bytes).
    pub fn record(&self, x: Exchange<'_>, cap: usize) {
        let Exchange {
            method,
            upstream,
            path,
            request,
            status,
            response,
        } = x;
        let show = |b: &[u8]| -> Value {
            let red = redact(b);
            let cut = &red[..red.len().min(cap)];
            match serde_json::from_slice::<Value>(cut) {
                Ok(v) => v,
                Err(_) => Value::String(String::from_utf8_lossy(cut).into_owned()),
            }
        };
        let req =
            json!({"method": method, "upstream": upstream, "path": path, "body": show(request)});
        let resp =
            json!({"upstream": upstream, "path": path, "status": status, "body": show(response)});
        if let Ok(mut v) = self.0.lock() {
            v.push((req, resp));
        }
    }

    /// `(INPUT stage 1, OUTPUT stage 0)`: the calls' requests and answers as JSON lists.
    pub fn documents(&self) -> (Vec<u8>, Vec<u8>) {
        let calls = self.0.lock().map(|v| v.clone()).unwrap_or_default();
        let (reqs, resps): (Vec<Value>, Vec<Value>) = calls.into_iter().unzip();
        (
            serde_json::to_vec(&reqs).unwrap_or_default(),
            serde_json::to_vec(&resps).unwrap_or_default(),
        )
    }
}

/// A body cut to `cap` bytes, redacted first.
pub fn keep(flow: Flow, stage: u8, content_type: &str, body: &[u8], cap: usize) -> CapturedBody {
    let red = redact(body);
    let truncated = red.len() > cap;
    CapturedBody {
        flow,
        stage,
        content_type: content_type.to_owned(),
        body: Bytes::from(red[..red.len().min(cap)].to_vec()),
        truncated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_secrets_are_masked_at_any_depth() {
        let out = redact(br#"{"user":{"Password":"hunter2","name":"a"},"list":[{"client_secret":"s"}],"api-key":"k"}"#);
        let s = String::from_utf8(out).unwrap();
        assert!(
            !s.contains("hunter2") && !s.contains("\"s\"") && !s.contains("\"k\""),
            "{s}"
        );
        assert!(s.contains("\"name\":\"a\""));
    }

    #[test]
    fn xml_secrets_are_masked() {
        let out = redact(b"<platform><tenant><company>A</company><password>hunter2</password><ns:Password x=\"1\">p2</ns:Password><empty/></tenant></platform>");
        let s = String::from_utf8(out).unwrap();
        assert!(!s.contains("hunter2") && !s.contains("p2"), "{s}");
        assert!(
            s.contains("<company>A</company>") && s.contains("<password>***</password>"),
            "{s}"
        );
    }

    #[test]
    fn other_bodies_pass_unchanged_and_caps_cut() {
        assert_eq!(
            redact(b"plain text password=x"),
            b"plain text password=x".to_vec()
        );
        let c = keep(Flow::Input, 0, "text/plain", b"0123456789", 4);
        assert_eq!((c.body.as_ref(), c.truncated), (&b"0123"[..], true));
    }
}
