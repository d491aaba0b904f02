//! JSON → XML: a JSON value written out as elements under the rules.
//!
//! Keys under the attribute prefix become attributes, the text key becomes text, arrays
//! become repeated elements (or a wrapper with named items when a rule names them), null an
//! empty element. Names XML forbids are repaired, text is escaped; the writer walks the value
//! once and writes as it goes.

use std::io::Write;

use serde_json::{Map, Value};

use super::XmlError;
use super::rules::{Typing, XmlRules};

/// Writes `value` as an XML document rooted at `rules.root`.
pub fn json_to_xml<W: Write>(value: &Value, rules: &XmlRules, out: W) -> Result<(), XmlError> {
    let mut w = Writer {
        rules,
        out,
        path: String::new(),
        depth: 0,
    };
    w.document(value).map_err(|message| XmlError {
        line: 0,
        column: 0,
        message,
    })
}

struct Writer<'r, W> {
    rules: &'r XmlRules,
    out: W,
    path: String,
    depth: usize,
}

impl<W: Write> Writer<'_, W> {
    fn raw(&mut self, s: &str) -> Result<(), String> {
        self.out
            .write_all(s.as_bytes())
            .map_err(|e| format!("write failed: {e}"))
    }

    fn document(&mut self, value: &Value) -> Result<(), String> {
        if self.rules.declaration {
            self.raw("<?xml version=\"1.0\" encoding=\"UTF-8\"?>")?;
        }
        let root = self.rules.root.clone();
        self.element(&root, value)?;
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
        let name = sanitize_name(name);
        let path_len = self.path.len();
        if !self.path.is_empty() {
            self.path.push('/');
        }
        self.path.push_str(&name);
        match value {
            Value::Array(items) => {
                // An array directly inside an array: each item is wrapped in the item name.
                let item = self
                    .rules
                    .item_name_of(&self.path)
                    .unwrap_or("item")
                    .to_owned();
                self.open(&name, None)?;
                for v in items {
                    self.element(&item, v)?;
                }
                self.close(&name)?;
            }
            Value::Object(map) => self.object(&name, map)?,
            Value::Null => self.empty(&name, None)?,
            scalar @ (Value::Bool(_) | Value::Number(_) | Value::String(_)) => {
                self.open(&name, None)?;
                let text = self.text_of(scalar);
                self.raw(&escape(&text))?;
                self.close(&name)?;
            }
        }
        self.path.truncate(path_len);
        self.depth -= 1;
        Ok(())
    }

    fn text_of(&self, v: &Value) -> String {
        match v {
            Value::String(s) => s.clone(),
            // LongJump booleans are 0/1: everywhere with `bool_digits`, or where a rule types them.
            Value::Bool(b)
                if self.rules.bool_digits || self.rules.typing(&self.path) == Typing::Boolean =>
            {
                if *b { "1" } else { "0" }.to_owned()
            }
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            Value::Null => String::new(),
            Value::Array(_) | Value::Object(_) => v.to_string(),
        }
    }

    fn object(&mut self, name: &str, map: &Map<String, Value>) -> Result<(), String> {
        let prefix = self.rules.attr_prefix.clone();
        let text_key = self.rules.text_key.clone();
        let attrs: Vec<(&String, &Value)> = map
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix) && **k != text_key)
            .collect();
        let children: Vec<(&String, &Value)> = map
            .iter()
            .filter(|(k, _)| !k.starts_with(&prefix) && **k != text_key)
            .collect();
        let text = map.get(&text_key);
        if children.is_empty() && text.is_none_or(Value::is_null) {
            return self.empty(name, Some(&attrs));
        }
        self.open(name, Some(&attrs))?;
        if let Some(t) = text.filter(|t| !t.is_null()) {
            let t = self.text_of(t);
            self.raw(&escape(&t))?;
        }
        for (k, v) in children {
            match v {
                Value::Array(items) => {
                    let path = format!("{}/{}", self.path, sanitize_name(k));
                    match self.rules.item_name_of(&path).map(str::to_owned) {
                        // A named item: `<k><item/>…</k>`.
                        Some(item) => {
                            let k = sanitize_name(k);
                            let len = self.path.len();
                            self.path.push('/');
                            self.path.push_str(&k);
                            self.open(&k, None)?;
                            for v in items {
                                self.element(&item, v)?;
                            }
                            self.close(&k)?;
                            self.path.truncate(len);
                        }
                        // Otherwise the element repeats: `<k/><k/>`.
                        None => {
                            for v in items {
                                self.element(k, v)?;
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
        self.close(name)
    }

    fn start_tag(&mut self, name: &str, attrs: Option<&[(&String, &Value)]>) -> Result<(), String> {
        self.raw("<")?;
        self.raw(name)?;
        for (k, v) in attrs.unwrap_or_default() {
            let attr = sanitize_name(&k[self.rules.attr_prefix.len()..]);
            let v = self.text_of(v);
            self.raw(&format!(" {attr}=\"{}\"", escape(&v)))?;
        }
        Ok(())
    }

    fn open(&mut self, name: &str, attrs: Option<&[(&String, &Value)]>) -> Result<(), String> {
        self.start_tag(name, attrs)?;
        self.raw(">")
    }

    fn empty(&mut self, name: &str, attrs: Option<&[(&String, &Value)]>) -> Result<(), String> {
        self.start_tag(name, attrs)?;
        self.raw("/>")
    }

    fn close(&mut self, name: &str) -> Result<(), String> {
        self.raw("</")?;
        self.raw(name)?;
        self.raw(">")
    }
}

/// Escapes text and attribute values.
pub(super) fn escape(s: &str) -> std::borrow::Cow<'_, str> {
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
