//! Captures: the bodies of a proxied request, kept by tracecode for `/v1/tracecode`.
//!
//! Four flows per request (seed 003's `data_flow_type` × `data_flow_stage`): INPUT 0 the
//! client's request as received, INPUT 1 the request(s) as translated for the upstreams,
//! OUTPUT 0 the upstream answer(s) as received, OUTPUT 1 the answer as sent to the client.
//! A route may call several upstreams, so stage-1 inputs and stage-0 outputs are JSON lists
//! of the calls. Secrets never reach the store: values of fields named like a password or a
//! token are replaced before anything is written ([`redact`]), in JSON and in XML bodies.

use std::sync::Arc;

use parking_lot::Mutex;

use bytes::Bytes;
use serde_json::{Value, json};

/// A field is a secret when its name, lower-cased with `_` and `-` left out, contains one of
/// these (`userPassword`, `client_secret`, `x-api-key`, `private_key`, `db_credentials`)…
const SECRET_PARTS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "apikey",
    "privatekey",
    "credential",
];

/// …or ends in `token` (`access_token`, `id_token`) but is no page token (`nextPageToken` is
/// a paging position, kept so a capture shows where a client was), or is one of these.
const SECRET_NAMES: &[&str] = &["pwd", "auth", "authorization", "cookie", "sessionid"];

const MASK: &str = "***";

fn is_secret(name: &str) -> bool {
    let n: String = name
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect();
    SECRET_PARTS.iter().any(|p| n.contains(p))
        || (n.ends_with("token") && !n.ends_with("pagetoken"))
        || SECRET_NAMES.contains(&n.as_str())
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

/// The body with secret fields masked: JSON values, XML elements' content and attributes,
/// and form fields (`a=1&password=x`) named like a secret. A body that does not parse is
/// still masked (by a scan of its text), since the default capture mode keeps exactly the
/// requests that failed, malformed bodies among them. Anything else is kept as is.
pub fn redact(body: &[u8]) -> Vec<u8> {
    let trimmed = body.trim_ascii_start();
    if trimmed.starts_with(b"{") || trimmed.starts_with(b"[") {
        if let Ok(mut v) = serde_json::from_slice::<Value>(body) {
            redact_value(&mut v);
            return serde_json::to_vec(&v).unwrap_or_default();
        }
        return redact_json_text(body);
    }
    if trimmed.starts_with(b"<") {
        return redact_xml(body);
    }
    if !body.is_empty() && body.contains(&b'=') && !body.iter().any(u8::is_ascii_whitespace) {
        return redact_form(body);
    }
    body.to_vec()
}

/// JSON text that does not parse (cut short, malformed): the value after each key named like
/// a secret becomes `"***"`, up to where that value ends or the text does.
fn redact_json_text(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        if body[i] != b'"' {
            out.push(body[i]);
            i += 1;
            continue;
        }
        let end = string_end(body, i);
        let key = &body[i + 1..end.saturating_sub(1).max(i + 1)];
        out.extend_from_slice(&body[i..end]);
        i = end;
        let colon = skip_space(body, i);
        if body.get(colon) == Some(&b':') && is_secret(&String::from_utf8_lossy(key)) {
            let value = skip_space(body, colon + 1);
            out.extend_from_slice(&body[i..value]);
            out.extend_from_slice(b"\"***\"");
            i = value_end(body, value);
        }
    }
    out
}

fn skip_space(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

/// Just past the string opening at `start`, or the end of the text.
fn string_end(b: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

/// Just past the value starting at `start` (a string, an object or array with what it
/// holds, a scalar), or the end of the text.
fn value_end(b: &[u8], start: usize) -> usize {
    match b.get(start) {
        None => start,
        Some(b'"') => string_end(b, start),
        Some(b'{' | b'[') => {
            let (mut depth, mut i) = (0usize, start);
            while i < b.len() {
                match b[i] {
                    b'"' => {
                        i = string_end(b, i);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return i + 1;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            b.len()
        }
        Some(_) => (start..b.len())
            .find(|&i| matches!(b[i], b',' | b'}' | b']') || b[i].is_ascii_whitespace())
            .unwrap_or(b.len()),
    }
}

/// `a=1&password=x`: the values of fields named like a secret become `***`.
fn redact_form(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    for (n, pair) in body.split(|b| *b == b'&').enumerate() {
        if n > 0 {
            out.push(b'&');
        }
        match pair.iter().position(|b| *b == b'=') {
            Some(eq) => {
                // The name as the form's reader decodes it (`pass%77ord`, `api+key`).
                let name = form_urlencoded::parse(&pair[..eq]).next().map(|(k, _)| k);
                out.extend_from_slice(&pair[..=eq]);
                if name.is_some_and(|k| is_secret(&k)) {
                    out.extend_from_slice(MASK.as_bytes());
                } else {
                    out.extend_from_slice(&pair[eq + 1..]);
                }
            }
            None => out.extend_from_slice(pair),
        }
    }
    out
}

/// XML through quick-xml: everything inside an element named like a secret (text, CDATA,
/// child elements) becomes `***`, as do attributes named like one; the rest is copied byte
/// for byte. Where the document stops parsing, the rest is masked by [`redact_xml_scan`],
/// and an element named like a secret that is never closed masks everything after it.
fn redact_xml(body: &[u8]) -> Vec<u8> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(body);
    // A capture keeps what was sent, well-formed or not: mismatched end tags are read on.
    reader.config_mut().check_end_names = false;
    let mut out = Vec::with_capacity(body.len());
    let (mut depth, mut secret) = (0usize, None::<usize>);
    loop {
        let from = position(&reader);
        let event = reader.read_event();
        let raw = &body[from..position(&reader).max(from)];
        match event {
            Ok(Event::Eof) => break,
            Ok(Event::Start(e)) => {
                depth += 1;
                if secret.is_none() {
                    push_tag(&mut out, raw, &e);
                    if is_secret(&local(e.local_name())) {
                        secret = Some(depth);
                        out.extend_from_slice(MASK.as_bytes());
                    }
                }
            }
            Ok(Event::End(_)) => {
                if secret == Some(depth) {
                    secret = None;
                }
                if secret.is_none() {
                    out.extend_from_slice(raw);
                }
                depth = depth.saturating_sub(1);
            }
            Ok(Event::Empty(e)) => {
                if secret.is_none() {
                    push_tag(&mut out, raw, &e);
                }
            }
            Ok(
                Event::Text(_)
                | Event::CData(_)
                | Event::Comment(_)
                | Event::Decl(_)
                | Event::PI(_)
                | Event::DocType(_)
                | Event::GeneralRef(_),
            ) => {
                if secret.is_none() {
                    out.extend_from_slice(raw);
                }
            }
            Err(_) => {
                if secret.is_none() {
                    out.extend_from_slice(&redact_xml_scan(&body[from.min(body.len())..]));
                }
                break;
            }
        }
    }
    out
}

/// An element's or attribute's name without its namespace prefix, as text.
fn local(name: quick_xml::name::LocalName<'_>) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(name.into_inner())
}

fn position(r: &quick_xml::Reader<&[u8]>) -> usize {
    usize::try_from(r.buffer_position()).unwrap_or(usize::MAX)
}

/// A start or empty tag as it came, or rebuilt with the values of attributes named like a
/// secret masked (and any it cannot read left out).
fn push_tag(out: &mut Vec<u8>, raw: &[u8], e: &quick_xml::events::BytesStart<'_>) {
    let secret =
        |a: &quick_xml::events::attributes::Attribute<'_>| is_secret(&local(a.key.local_name()));
    let secret_attr = e.html_attributes().any(|a| a.map_or(true, |a| secret(&a)));
    if !secret_attr {
        out.extend_from_slice(raw);
        return;
    }
    out.push(b'<');
    out.extend_from_slice(e.name().as_ref());
    for a in e.html_attributes().flatten() {
        out.push(b' ');
        out.extend_from_slice(a.key.as_ref());
        out.extend_from_slice(b"=\"");
        if secret(&a) {
            out.extend_from_slice(MASK.as_bytes());
        } else {
            for &c in a.value.iter() {
                match c {
                    b'"' => out.extend_from_slice(b"&quot;"),
                    c => out.push(c),
                }
            }
        }
        out.push(b'"');
    }
    out.extend_from_slice(if raw.ends_with(b"/>") { b"/>" } else { b">" });
}

/// What follows the point where an XML document stops parsing: the text of
/// `<password>…</password>`-like elements (any namespace prefix) is masked, and one that is
/// never closed masks the rest.
fn redact_xml_scan(body: &[u8]) -> Vec<u8> {
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
            out.push_str(MASK);
            let close = format!("</{name}");
            rest = rest.find(&close).map_or("", |c| &rest[c..]);
        }
    }
    // The text after the last tag, or a tag cut short (its attributes may hold a secret):
    // kept only if no word in it is named like a secret.
    let named = rest
        .split(|c: char| !(c.is_alphanumeric() || matches!(c, '_' | '-' | ':')))
        .any(|w| is_secret(w.rsplit(':').next().unwrap_or(w)));
    out.push_str(if named { MASK } else { rest });
    out.into_bytes()
}

/// One kept body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedBody {
    /// Which way the body went.
    pub flow: Flow,
    /// 0 or 1: before or after Rosetta's translation (see the module's flows).
    pub stage: u8,
    /// The body's `Content-Type`.
    pub content_type: String,
    /// The body, redacted and at most the cap long.
    pub body: Bytes,
    /// The body was longer than the cap and was cut.
    pub truncated: bool,
}

/// Seed 003's `data_flow_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Towards the upstream: the client's request, or the upstream requests.
    Input,
    /// Towards the client: the upstream answers, or the client's answer.
    Output,
}

impl Flow {
    /// `INPUT` or `OUTPUT`, as seed 003 writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Flow::Input => "INPUT",
            Flow::Output => "OUTPUT",
        }
    }
}

/// One upstream call as a capture keeps it.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// The HTTP method of the call.
    pub method: String,
    /// The upstream's name.
    pub upstream: String,
    /// The path called, with its query.
    pub path: String,
    /// The request body sent.
    pub request: Bytes,
    /// 0 when no answer came (connect failure, timeout).
    pub status: u16,
    /// The answer's body, or the failure's text when no answer came.
    pub response: Bytes,
}

/// The raw body bytes one request's call log holds at most, all calls together: a fan-out of
/// a thousand calls keeps the first of them, not a thousand bodies.
pub const REQUEST_CAP: usize = 1 << 20;

/// The upstream calls of one request, collected while its route runs. Bodies are kept as
/// they came (shared bytes, each cut at the body cap, all within [`REQUEST_CAP`]) and
/// redacted only when the capture is kept ([`CallLog::documents`]): under `errors` mode
/// most requests succeed and their calls are never looked at.
#[derive(Debug, Clone, Default)]
pub struct CallLog(Arc<Mutex<Calls>>);

#[derive(Debug, Default)]
struct Calls {
    kept: Vec<Exchange>,
    bytes: usize,
}

impl Calls {
    /// `body` cut at `cap` and within what is left of the request's cap (empty past it).
    fn take(&mut self, body: &Bytes, cap: usize) -> Bytes {
        let n = body.len().min(cap).min(REQUEST_CAP - self.bytes);
        self.bytes += n;
        body.slice(..n)
    }
}

impl CallLog {
    /// Records one upstream exchange, each body cut at `cap` bytes.
    pub fn record(&self, mut x: Exchange, cap: usize) {
        let mut calls = self.0.lock();
        x.request = calls.take(&x.request, cap);
        x.response = calls.take(&x.response, cap);
        calls.kept.push(x);
    }

    /// `(INPUT stage 1, OUTPUT stage 0)`: the calls' requests and answers as JSON lists,
    /// their bodies redacted.
    pub fn documents(&self) -> (Vec<u8>, Vec<u8>) {
        let show = |b: &[u8]| -> Value {
            let red = redact(b);
            match serde_json::from_slice::<Value>(&red) {
                Ok(v) => v,
                Err(_) => Value::String(String::from_utf8_lossy(&red).into_owned()),
            }
        };
        let calls = self.0.lock();
        let (reqs, resps): (Vec<Value>, Vec<Value>) = calls
            .kept
            .iter()
            .map(|x| {
                (
                    json!({"method": x.method, "upstream": x.upstream, "path": x.path,
                           "body": show(&x.request)}),
                    json!({"upstream": x.upstream, "path": x.path, "status": x.status,
                           "body": show(&x.response)}),
                )
            })
            .unzip();
        (
            serde_json::to_vec(&reqs).unwrap_or_default(),
            serde_json::to_vec(&resps).unwrap_or_default(),
        )
    }
}

/// A body cut to `cap` bytes, then the part kept redacted (the redaction reads a body cut
/// anywhere: a secret cut short is still masked).
pub fn keep(flow: Flow, stage: u8, content_type: &str, body: &[u8], cap: usize) -> CapturedBody {
    let truncated = body.len() > cap;
    CapturedBody {
        flow,
        stage,
        content_type: content_type.to_owned(),
        body: Bytes::from(redact(&body[..body.len().min(cap)])),
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

    fn masked(body: &[u8]) -> String {
        String::from_utf8(redact(body)).unwrap()
    }

    #[test]
    fn names_like_a_secret() {
        for n in [
            "password",
            "userPassword",
            "db_passwd",
            "client-secret",
            "X-API-Key",
            "private_key",
            "credentials",
            "access_token",
            "idToken",
            "Authorization",
            "auth",
            "pwd",
            "Cookie",
        ] {
            assert!(is_secret(n), "{n}");
        }
        for n in [
            "name",
            "nextPageToken",
            "pageToken",
            "author",
            "email",
            "type",
        ] {
            assert!(!is_secret(n), "{n}");
        }
    }

    #[test]
    fn json_that_does_not_parse_is_masked_by_scanning() {
        // Cut short inside the secret, after it, inside a nested secret object.
        for (body, secret) in [
            (&br#"{"user":"a","password":"hunter2"#[..], "hunter2"),
            (br#"{"password": "hunter2", "name": "#, "hunter2"),
            (
                br#"{"auth": {"user": "a", "pass": "hunter2"}, "x": ["#,
                "hunter2",
            ),
            (br#"{"api_key": 12345, oops}"#, "12345"),
            (br#"[{"a": "\"password\":", "token": "t0k\"en"}"#, "t0k"),
        ] {
            let s = masked(body);
            assert!(!s.contains(secret), "{s}");
            assert!(s.contains(r#""***""#), "{s}");
        }
        assert_eq!(
            masked(br#"{"name": "a", "n": [1, 2"#),
            r#"{"name": "a", "n": [1, 2"#,
            "nothing to mask: kept as it came"
        );
    }

    #[test]
    fn xml_attributes_and_what_does_not_parse_are_masked() {
        let s = masked(br#"<platform><tenant api_key="k-123" id='7' x:Token="t-456"><company a="&quot;">A &amp; B</company><password><![CDATA[c-789]]><inner>i-000</inner></password></tenant></platform>"#);
        for secret in ["k-123", "t-456", "c-789", "i-000"] {
            assert!(!s.contains(secret), "{s}");
        }
        assert!(
            s.contains("<company a=\"&quot;\">A &amp; B</company>"),
            "{s}"
        );
        assert!(
            s.contains(r#"id="7""#) && s.contains("<password>***</password>"),
            "{s}"
        );
        // Never closed, cut short, broken after a secret, a secret in a broken tag.
        for (body, secret) in [
            (&b"<platform><tenant><password>hunter2"[..], "hunter2"),
            (b"<platform><tenant><password>hunter2</pass", "hunter2"),
            (b"<a></b></a><password>hunter2</password><c", "hunter2"),
            (b"<a></b></a><tenant secret=\"hunter2", "hunter2"),
            (b"<a>x</a></z><b>y</b><token>hunter2", "hunter2"),
        ] {
            let s = masked(body);
            assert!(!s.contains(secret), "{s}");
        }
        let kept = b"<platform><tenant><company>A</company></tenant></platform>";
        assert_eq!(redact(kept), kept.to_vec(), "copied byte for byte");
    }

    proptest::proptest! {
        /// A body cut at any point (the captures of failed requests are often cut or
        /// malformed) never shows a secret's characters: the secrets are the only upper-case
        /// letters in these documents.
        #[test]
        fn a_secret_never_shows_wherever_the_body_is_cut(
            secret in "[A-Z]{8,16}",
            cut in 0usize..200,
        ) {
            let documents = [
                format!(r#"{{"name": "a", "list": [1, {{"password": "{secret}"}}], "client_secret": "{secret}", "b": [true]}}"#),
                format!(r#"<platform><tenant x="1" api_key="{secret}"><company>a &amp; b</company><password>{secret}</password><e/></tenant></platform>"#),
                format!("<platform><token><![CDATA[{secret}]]><n>{secret}</n></token></platform>"),
                format!("a=1&password={secret}&b=2"),
            ];
            for doc in documents {
                let body = &doc.as_bytes()[..cut.min(doc.len())];
                let out = masked(body);
                proptest::prop_assert!(!out.chars().any(|c| c.is_ascii_uppercase()), "{} -> {}", String::from_utf8_lossy(body), out);
            }
        }

        #[test]
        fn any_bytes_are_redacted_without_a_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = redact(&body);
            let mut xml = b"<a>".to_vec();
            xml.extend_from_slice(&body);
            let _ = redact(&xml);
            let mut json = b"{\"password\":".to_vec();
            json.extend_from_slice(&body);
            let _ = redact(&json);
        }
    }

    #[test]
    fn form_fields_are_masked() {
        assert_eq!(
            masked(b"grant_type=client_credentials&client_id=a&client_secret=s3&pass%77ord=p"),
            "grant_type=client_credentials&client_id=a&client_secret=***&pass%77ord=***"
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

    #[test]
    fn a_call_log_keeps_raw_bodies_within_the_request_cap_and_redacts_what_it_shows() {
        let log = CallLog::default();
        let secret = Bytes::from_static(br#"{"password":"hunter2","n":1}"#);
        let x = |body: Bytes| Exchange {
            method: "POST".into(),
            upstream: "up".into(),
            path: "/p".into(),
            request: body.clone(),
            status: 200,
            response: body,
        };
        log.record(x(secret.clone()), 1 << 20);
        // Held as it came (shared, not copied, not yet redacted)…
        assert_eq!(log.0.lock().kept[0].request, secret);
        // …and shown redacted.
        let (sent, received) = log.documents();
        for doc in [&sent, &received] {
            let text = String::from_utf8_lossy(doc);
            assert!(!text.contains("hunter2"), "{text}");
            assert!(text.contains(MASK), "{text}");
        }
        // Past the request's cap, bodies are kept empty: a big fan-out holds at most the cap.
        let big = Bytes::from(vec![b'a'; 700 * 1024]);
        log.record(x(big.clone()), 1 << 20);
        log.record(x(big), 1 << 20);
        let calls = log.0.lock();
        assert!(calls.bytes <= REQUEST_CAP);
        assert_eq!(
            calls.kept[2].request.len() + calls.kept[2].response.len(),
            0
        );
    }
}
