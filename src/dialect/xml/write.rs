//! JSON → XML: a JSON value written out as elements under the rules.
//!
//! Keys under the attribute prefix become attributes, the text key becomes text, arrays
//! become repeated elements (or a wrapper with named items when a rule names them), null an
//! empty element. Names XML forbids are repaired, text is escaped; the writer walks the value
//! once and writes as it goes, into one buffer: names that need no repair and text that needs
//! no escaping (nearly all of them) are copied as they are, never allocated.

use std::borrow::Cow;
use std::io::Write;

use serde_json::{Map, Value};

use super::XmlError;
use super::rules::{Typing, XmlRules};

/// Output handed to the writer once this much has collected.
const FLUSH_AT: usize = 64 * 1024;

/// Writes `value` as an XML document rooted at `rules.root`.
pub fn json_to_xml<W: Write>(value: &Value, rules: &XmlRules, out: W) -> Result<(), XmlError> {
    let mut w = Writer {
        rules,
        out,
        buf: Vec::with_capacity(FLUSH_AT + 256),
        flush_at: FLUSH_AT,
        path: String::new(),
        depth: 0,
    };
    w.document(value).map_err(failed)
}

/// Writes `value` as an XML document appended to `out` (on error, what was appended is
/// unspecified). Written in place: no copy through a writer.
pub fn json_to_xml_vec(value: &Value, rules: &XmlRules, out: &mut Vec<u8>) -> Result<(), XmlError> {
    let mut w = Writer {
        rules,
        out: std::io::sink(),
        buf: std::mem::take(out),
        flush_at: usize::MAX,
        path: String::new(),
        depth: 0,
    };
    let result = w.document(value);
    *out = std::mem::take(&mut w.buf);
    result.map_err(failed)
}

fn failed(message: String) -> XmlError {
    XmlError {
        line: 0,
        column: 0,
        message,
    }
}

struct Writer<'r, W> {
    rules: &'r XmlRules,
    out: W,
    buf: Vec<u8>,
    flush_at: usize,
    path: String,
    depth: usize,
}

impl<W: Write> Writer<'_, W> {
    fn raw(&mut self, s: &str) {
        self.buf.extend_from_slice(s.as_bytes());
    }

    fn flush_buf(&mut self) -> Result<(), String> {
        self.out
            .write_all(&self.buf)
            .map_err(|e| format!("write failed: {e}"))?;
        self.buf.clear();
        Ok(())
    }

    fn document(&mut self, value: &Value) -> Result<(), String> {
        if self.rules.declaration {
            self.raw("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
        }
        let rules = self.rules;
        self.element(&rules.root, value)?;
        if self.flush_at < usize::MAX {
            self.flush_buf()?;
        }
        self.out.flush().map_err(|e| format!("write failed: {e}"))
    }

    fn element(&mut self, name: &str, value: &Value) -> Result<(), String> {
        self.depth += 1;
        if self.depth > self.rules.max_depth {
            return Err(format!(
                "nesting deeper than the limit of {}",
                self.rules.max_depth
            ));
        }
        let name = name_of(name);
        let path_len = self.path.len();
        if !self.path.is_empty() {
            self.path.push('/');
        }
        self.path.push_str(&name);
        match value {
            Value::Array(items) => {
                // An array directly inside an array: each item is wrapped in the item name.
                let rules = self.rules;
                let item = rules.item_name_of(&self.path).unwrap_or("item");
                self.open(&name);
                for v in items {
                    self.element(item, v)?;
                }
                self.close(&name);
            }
            Value::Object(map) => self.object(&name, map)?,
            Value::Null => {
                self.start_tag(&name);
                self.raw("/>");
            }
            scalar @ (Value::Bool(_) | Value::Number(_) | Value::String(_)) => {
                self.open(&name);
                self.text(scalar);
                self.close(&name);
            }
        }
        self.path.truncate(path_len);
        self.depth -= 1;
        if self.buf.len() >= self.flush_at {
            self.flush_buf()?;
        }
        Ok(())
    }

    /// Writes the text of a scalar, escaped.
    fn text(&mut self, v: &Value) {
        match v {
            Value::String(s) => escape_into(&mut self.buf, s),
            // LongJump booleans are 0/1: everywhere with `bool_digits`, or where a rule types them.
            Value::Bool(b)
                if self.rules.bool_digits || self.rules.typing(&self.path) == Typing::Boolean =>
            {
                self.raw(if *b { "1" } else { "0" });
            }
            Value::Bool(b) => self.raw(if *b { "true" } else { "false" }),
            // Writing to a Vec cannot fail; numbers need no escaping.
            Value::Number(n) => {
                let _ = write!(self.buf, "{n}");
            }
            Value::Null => {}
            Value::Array(_) | Value::Object(_) => escape_into(&mut self.buf, &v.to_string()),
        }
    }

    fn object(&mut self, name: &str, map: &Map<String, Value>) -> Result<(), String> {
        let rules = self.rules;
        let (prefix, text_key) = (rules.attr_prefix.as_str(), rules.text_key.as_str());
        let is_attr = |k: &str| k.starts_with(prefix) && k != text_key;
        let is_child = |k: &str| !k.starts_with(prefix) && k != text_key;
        let text = map.get(text_key).filter(|t| !t.is_null());
        let children = map.keys().any(|k| is_child(k));
        self.start_tag(name);
        for (k, v) in map.iter().filter(|(k, _)| is_attr(k)) {
            self.raw(" ");
            self.raw(&name_of(&k[prefix.len()..]));
            self.raw("=\"");
            self.text(v);
            self.raw("\"");
        }
        if !children && text.is_none() {
            self.raw("/>");
            return Ok(());
        }
        self.raw(">");
        if let Some(t) = text {
            self.text(t);
        }
        for (k, v) in map.iter().filter(|(k, _)| is_child(k)) {
            match v {
                Value::Array(items) => {
                    let k = name_of(k);
                    let len = self.path.len();
                    self.path.push('/');
                    self.path.push_str(&k);
                    let item = rules.item_name_of(&self.path);
                    self.path.truncate(len);
                    match item {
                        // A named item: `<k><item/>…</k>`.
                        Some(item) => {
                            self.path.push('/');
                            self.path.push_str(&k);
                            self.open(&k);
                            for v in items {
                                self.element(item, v)?;
                            }
                            self.close(&k);
                            self.path.truncate(len);
                        }
                        // Otherwise the element repeats: `<k/><k/>`.
                        None => {
                            for v in items {
                                self.element(&k, v)?;
                            }
                        }
                    }
                }
                other @ (Value::Null
                | Value::Bool(_)
                | Value::Number(_)
                | Value::String(_)
                | Value::Object(_)) => self.element(k, other)?,
            }
        }
        self.close(name);
        Ok(())
    }

    fn start_tag(&mut self, name: &str) {
        self.raw("<");
        self.raw(name);
    }

    fn open(&mut self, name: &str) {
        self.start_tag(name);
        self.raw(">");
    }

    fn close(&mut self, name: &str) {
        self.raw("</");
        self.raw(name);
        self.raw(">");
    }
}

/// Bytes that send text to the careful path: markup characters, CR, control characters
/// XML cannot carry, and 0xEF (the lead byte of U+FFFE and U+FFFF).
const SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = !matches!(b, 0x09 | 0x0A);
        b += 1;
    }
    t[b'&' as usize] = true;
    t[b'<' as usize] = true;
    t[b'>' as usize] = true;
    t[b'"' as usize] = true;
    t[b'\'' as usize] = true;
    t[0xEF] = true;
    t
};

/// Writes `s` escaped: one copy when nothing needs escaping.
fn escape_into(out: &mut Vec<u8>, s: &str) {
    if s.bytes().any(|b| SPECIAL[usize::from(b)]) {
        out.extend_from_slice(escape(s).as_bytes());
    } else {
        out.extend_from_slice(s.as_bytes());
    }
}

/// Escapes text and attribute values.
pub(super) fn escape(s: &str) -> Cow<'_, str> {
    if !s.contains(['&', '<', '>', '"', '\'', '\r']) && !s.chars().any(forbidden_char) {
        return s.into();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // A raw CR would be read back as LF (XML line-end normalization).
            '\r' => out.push_str("&#13;"),
            // XML 1.0 cannot carry these at all, escaped or not.
            c if forbidden_char(c) => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out.into()
}

fn forbidden_char(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{8}' | '\u{B}' | '\u{C}' | '\u{E}'..='\u{1F}' | '\u{FFFE}' | '\u{FFFF}')
}

/// `name` as a valid element name: itself when it already is one (the usual case, checked
/// on its bytes without allocating), else repaired by [`sanitize_name`].
pub(super) fn name_of(name: &str) -> Cow<'_, str> {
    let b = name.as_bytes();
    let ok_byte = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b':');
    let valid = b
        .first()
        .is_some_and(|c| c.is_ascii_alphabetic() || matches!(c, b'_' | b':'))
        && b.iter().all(ok_byte)
        && !b.get(..3).is_some_and(|p| p.eq_ignore_ascii_case(b"xml"));
    if valid {
        Cow::Borrowed(name)
    } else {
        Cow::Owned(sanitize_name(name))
    }
}

/// A valid XML element name for `name`: forbidden characters become `_`, and a name that
/// cannot start an element (a digit, `-`, `.`, or the reserved `xml`) gets a `_` in front.
pub fn sanitize_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let bad_start = out
        .chars()
        .next()
        .is_none_or(|c| c.is_ascii_digit() || matches!(c, '-' | '.'))
        || out.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("xml"));
    if bad_start {
        out.insert(0, '_');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::{Typing, XmlRules, xml_to_value};
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn xml(v: &Value, rules: &XmlRules) -> String {
        let mut out = Vec::new();
        json_to_xml(v, rules, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn writes_attributes_text_arrays_and_nulls() {
        let rules = XmlRules::default()
            .root("tenant")
            .declaration(false)
            .typed("active", Typing::Boolean);
        let v = json!({"id": 7, "company": "A & B <co>", "active": true, "phone": null,
                       "partner": {"@type": "Tenant", "@displayValue": "P\"1", "#text": "9"}, "tag": ["x", "y"]});
        assert_eq!(
            xml(&v, &rules),
            "<tenant><id>7</id><company>A &amp; B &lt;co&gt;</company><active>1</active><phone/><partner type=\"Tenant\" displayValue=\"P&quot;1\">9</partner><tag>x</tag><tag>y</tag></tenant>"
        );
    }

    #[test]
    fn named_items_and_declaration() {
        let rules = XmlRules::default()
            .root("platform")
            .item_name("platform/records", "record");
        let v = json!({"records": [{"id": "1"}, {"id": "2"}]});
        assert_eq!(
            xml(&v, &rules),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><platform><records><record><id>1</id></record><record><id>2</id></record></records></platform>"
        );
    }

    #[test]
    fn forbidden_names_are_repaired() {
        assert_eq!(sanitize_name("1st"), "_1st");
        assert_eq!(sanitize_name("a b/c"), "a_b_c");
        assert_eq!(sanitize_name("xmlThing"), "_xmlThing");
        assert_eq!(sanitize_name(""), "_");
        let out = xml(
            &json!({"bad key!": "v\u{1}"}),
            &XmlRules::default().declaration(false),
        );
        assert_eq!(out, "<root><bad_key_>v\u{FFFD}</bad_key_></root>");
    }

    /// A random element tree, serialised as XML, with the rules that describe it.
    fn tree() -> impl Strategy<Value = (String, XmlRules)> {
        // Up to three distinct child names, each repeated 1–2 times (declared arrays when
        // repeated), with text and an optional attribute.
        let node = prop::collection::vec(
            (
                "[a-c]",
                "[a-zA-Z0-9 &<>é]{1,8}",
                prop::option::of("[a-z]{1,5}"),
                1usize..3,
            ),
            0..4,
        );
        (node, "[a-zA-Z0-9 &<>é]{0,8}").prop_map(|(children, root_text)| {
            let mut s = String::from("<root>");
            let mut rules = XmlRules::default().declaration(false).root("root");
            let mut used = std::collections::HashSet::new();
            for (name, text, attr, count) in children {
                if !used.insert(name.clone()) {
                    continue;
                }
                if count > 1 {
                    rules = rules.array(&format!("/root/{name}"));
                }
                for _ in 0..count {
                    match &attr {
                        Some(a) => s.push_str(&format!(
                            "<{name} k=\"{}\">{}</{name}>",
                            escape(a),
                            escape(&text)
                        )),
                        None => s.push_str(&format!("<{name}>{}</{name}>", escape(&text))),
                    }
                }
            }
            if used.is_empty() {
                s.push_str(&escape(&root_text));
            }
            s.push_str("</root>");
            (s, rules)
        })
    }

    proptest! {
        // XML → JSON → XML → JSON under the same rules is stable: no shape or value drifts.
        #[test]
        fn xml_json_round_trip_is_stable((doc, rules) in tree()) {
            let first = xml_to_value(doc.as_bytes(), &rules).unwrap();
            let inner = first.get("root").cloned().unwrap();
            let back = xml(&inner, &rules);
            let second = xml_to_value(back.as_bytes(), &rules).unwrap();
            prop_assert_eq!(first, second);
        }

        // Any JSON string survives as text, whatever characters it holds.
        #[test]
        fn any_text_is_escaped_and_read_back(s in "[^\u{0}-\u{8}\u{B}\u{C}\u{E}-\u{1F}\u{FFFE}\u{FFFF}]{0,40}") {
            let rules = XmlRules::default().declaration(false).root("r");
            let out = xml(&json!({"t": s.clone()}), &rules);
            let v = xml_to_value(out.as_bytes(), &rules).unwrap();
            prop_assert_eq!(&v["r"]["t"], &json!(s));
        }
    }
}
