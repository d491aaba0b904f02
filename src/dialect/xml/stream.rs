//! JSON → XML from a reader, in bounded memory.
//!
//! [`json_to_xml`](super::json_to_xml) needs the whole value; a 100 MB document would need it
//! all in memory, several times over. Here serde_json's deserializer drives a visitor that
//! writes each element as soon as its key is read: nothing is kept but the open elements'
//! names and the path, so memory is bounded by nesting depth, not by document size.
//!
//! One constraint follows from never looking back: an element's attribute keys (`@…`) must
//! come before its child keys, because the start tag is written when the first child is.
//! That is the order [`xml_to_json`](super::xml_to_json) writes them in; an attribute after a
//! child is an error naming its path, never a silently different document.

use std::fmt;
use std::io::{BufRead, Write};

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::XmlError;
use super::rules::{Typing, XmlRules};
use super::write::{escape, sanitize_name};

/// Converts the JSON document read from `input` into XML written to `out`.
pub fn json_reader_to_xml<R: BufRead, W: Write>(
    input: R,
    rules: &XmlRules,
    out: W,
) -> Result<(), XmlError> {
    let mut w = Stream {
        rules,
        out,
        path: String::new(),
        depth: 0,
    };
    let fail = |message: String| XmlError {
        line: 0,
        column: 0,
        message,
    };
    if rules.declaration {
        w.raw("<?xml version=\"1.0\" encoding=\"UTF-8\"?>")
            .map_err(fail)?;
    }
    let mut de = serde_json::Deserializer::from_reader(input);
    let root = rules.root.clone();
    Elem {
        w: &mut w,
        name: &root,
        repeat: false,
    }
    .deserialize(&mut de)
    .map_err(|e| XmlError {
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    de.end().map_err(|e| XmlError {
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    w.out
        .flush()
        .map_err(|e| fail(format!("write failed: {e}")))
}

struct Stream<'r, W> {
    rules: &'r XmlRules,
    out: W,
    path: String,
    depth: usize,
}

impl<W: Write> Stream<'_, W> {
    fn raw(&mut self, s: &str) -> Result<(), String> {
        self.out
            .write_all(s.as_bytes())
            .map_err(|e| format!("write failed: {e}"))
    }

    fn enter(&mut self, name: &str) -> Result<usize, String> {
        self.depth += 1;
        if self.depth > self.rules.max_depth {
            return Err(format!(
                "nesting deeper than the limit of {}",
                self.rules.max_depth
            ));
        }
        let len = self.path.len();
        if !self.path.is_empty() {
            self.path.push('/');
        }
        self.path.push_str(name);
        Ok(len)
    }

    fn leave(&mut self, len: usize) {
        self.path.truncate(len);
        self.depth -= 1;
    }

    fn bool_text(&self, b: bool) -> &'static str {
        if self.rules.bool_digits || self.rules.typing(&self.path) == Typing::Boolean {
            if b { "1" } else { "0" }
        } else if b {
            "true"
        } else {
            "false"
        }
    }

    /// `<name>text</name>` at the current path.
    fn leaf(&mut self, name: &str, text: &str) -> Result<(), String> {
        self.raw("<")?;
        self.raw(name)?;
        self.raw(">")?;
        self.raw(&escape(text))?;
        self.raw("</")?;
        self.raw(name)?;
        self.raw(">")
    }
}

/// One JSON value written as the element `name`. `repeat`: the value of an object key,
/// where an array means the element repeats (unless a rule names its items).
struct Elem<'a, 'r, W> {
    w: &'a mut Stream<'r, W>,
    name: &'a str,
    repeat: bool,
}

impl<'de, W: Write> DeserializeSeed<'de> for Elem<'_, '_, W> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

fn err<E: de::Error>(m: String) -> E {
    E::custom(m)
}

impl<'de, W: Write> Visitor<'de> for Elem<'_, '_, W> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        let name = sanitize_name(self.name);
        let len = self.w.enter(&name).map_err(err)?;
        let text = self.w.bool_text(v);
        self.w.leaf(&name, text).map_err(err)?;
        self.w.leave(len);
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.visit_str(&v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.visit_str(&v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        let text = serde_json::Number::from_f64(v)
            .map(|n| n.to_string())
            .unwrap_or_default();
        self.visit_str(&text)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        let name = sanitize_name(self.name);
        let len = self.w.enter(&name).map_err(err)?;
        self.w.leaf(&name, v).map_err(err)?;
        self.w.leave(len);
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        let name = sanitize_name(self.name);
        self.w.raw(&format!("<{name}/>")).map_err(err)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let name = sanitize_name(self.name);
        let len = self.w.enter(&name).map_err(err)?;
        let item = self.w.rules.item_name_of(&self.w.path).map(str::to_owned);
        self.w.leave(len);
        match (self.repeat, item) {
            // `{"tag": ["x", "y"]}` → `<tag>x</tag><tag>y</tag>`.
            (true, None) => {
                while seq
                    .next_element_seed(Elem {
                        w: &mut *self.w,
                        name: &name,
                        repeat: false,
                    })?
                    .is_some()
                {}
                Ok(())
            }
            // A named item, or an array that is itself an element: `<k><item/>…</k>`.
            (true, Some(item)) | (false, Some(item)) => wrapped(self.w, &name, &item, seq),
            (false, None) => wrapped(self.w, &name, "item", seq),
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let name = sanitize_name(self.name);
        let len = self.w.enter(&name).map_err(err)?;
        let prefix = self.w.rules.attr_prefix.clone();
        let text_key = self.w.rules.text_key.clone();
        self.w.raw("<").map_err(err)?;
        self.w.raw(&name).map_err(err)?;
        let mut open = false;
        while let Some(key) = map.next_key::<String>()? {
            if key == text_key {
                let v: Value = map.next_value()?;
                if !open {
                    self.w.raw(">").map_err(err)?;
                    open = true;
                }
                let text = scalar_text(self.w, &v);
                self.w.raw(&escape(&text)).map_err(err)?;
            } else if let Some(attr) = key.strip_prefix(prefix.as_str()) {
                if open {
                    return Err(err(format!(
                        "attribute `{key}` of {} comes after its child elements; a streamed \
                         document must give attributes first",
                        self.w.path
                    )));
                }
                let v: Value = map.next_value()?;
                if v.is_null() {
                    continue;
                }
                let text = scalar_text(self.w, &v);
                let attr = sanitize_name(attr);
                self.w
                    .raw(&format!(" {attr}=\"{}\"", escape(&text)))
                    .map_err(err)?;
            } else {
                if !open {
                    self.w.raw(">").map_err(err)?;
                    open = true;
                }
                map.next_value_seed(Elem {
                    w: &mut *self.w,
                    name: &key,
                    repeat: true,
                })?;
            }
        }
        if open {
            self.w.raw(&format!("</{name}>")).map_err(err)?;
        } else {
            self.w.raw("/>").map_err(err)?;
        }
        self.w.leave(len);
        Ok(())
    }
}

fn wrapped<'de, W: Write, A: SeqAccess<'de>>(
    w: &mut Stream<'_, W>,
    name: &str,
    item: &str,
    mut seq: A,
) -> Result<(), A::Error> {
    let len = w.enter(name).map_err(err)?;
    w.raw(&format!("<{name}>")).map_err(err)?;
    while seq
        .next_element_seed(Elem {
            w: &mut *w,
            name: item,
            repeat: false,
        })?
        .is_some()
    {}
    w.raw(&format!("</{name}>")).map_err(err)?;
    w.leave(len);
    Ok(())
}

fn scalar_text<W: Write>(w: &Stream<'_, W>, v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => w.bool_text(*b).to_owned(),
        Value::Number(n) => n.to_string(),
        Value::Null => String::new(),
        Value::Array(_) | Value::Object(_) => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{json_to_xml, xml_to_value};
    use super::*;
    use crate::test_support::arb_json;
    use proptest::prelude::*;
    use serde_json::json;

    fn both(v: &Value, rules: &XmlRules) -> (String, String) {
        let mut a = Vec::new();
        json_to_xml(v, rules, &mut a).unwrap();
        let mut b = Vec::new();
        json_reader_to_xml(serde_json::to_vec(v).unwrap().as_slice(), rules, &mut b).unwrap();
        (String::from_utf8(a).unwrap(), String::from_utf8(b).unwrap())
    }

    #[test]
    fn streams_what_the_value_writer_writes() {
        let rules = XmlRules::default()
            .root("platform")
            .bool_digits(true)
            .item_name("platform/list", "entry");
        let v = json!({"tenant": [{"id": "1", "company": "A & B", "active": true,
                        "partner": {"@type": "", "@uri": "u<", "#text": "9"}, "phone": null,
                        "n": 1.5, "big": 18446744073709551615u64, "neg": -3}, {"id": "2"}],
                       "list": [1, [2, 3]], "empty": {}, "attrs": {"@a": "1"},
                       "1bad name": "x", "message": {"code": 0}});
        let (a, b) = both(&v, &rules);
        assert_eq!(a, b);
        assert!(!b.contains("<1bad") && b.contains("<_1bad_name>x</_1bad_name>"));
    }

    #[test]
    fn attributes_after_children_are_refused() {
        let doc = br#"{"p": {"child": 1, "@late": "x"}}"#;
        let e = json_reader_to_xml(&doc[..], &XmlRules::default(), Vec::new()).unwrap_err();
        assert!(e.message.contains("attributes first"), "{e}");
    }

    #[test]
    fn malformed_json_and_depth_are_errors() {
        let e = json_reader_to_xml(&b"{\"a\": [1,\n 2"[..], &XmlRules::default(), Vec::new())
            .unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        let deep = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        let e = json_reader_to_xml(
            deep.as_bytes(),
            &XmlRules::default().max_depth(64),
            Vec::new(),
        )
        .unwrap_err();
        assert!(e.message.contains("deeper"), "{e}");
        let e = json_reader_to_xml(&b"{} {}"[..], &XmlRules::default(), Vec::new()).unwrap_err();
        assert!(e.message.contains("trailing"), "{e}");
    }

    proptest! {
        /// Streaming and in-memory conversion agree on every document whose attributes come
        /// first (all documents without attributes, here).
        #[test]
        fn stream_equals_value_writer(v in arb_json()) {
            let (a, b) = both(&v, &XmlRules::default());
            prop_assert_eq!(a, b);
        }

        /// XML → JSON → XML through the streaming writer gives the same document back.
        /// Names starting with `xml` are reserved by XML: the writer repairs them (to `_xml…`,
        /// see `forbidden_names_are_repaired`), so they cannot come back unchanged.
        #[test]
        fn round_trip_through_the_stream(names in prop::collection::btree_set("[a-z]{1,5}".prop_filter("reserved", |n| !n.starts_with("xml")), 1..6), texts in prop::collection::vec("[a-zA-Z0-9 &<>]{0,8}", 1..6)) {
            let mut xml = String::from("<root>");
            for (n, t) in names.iter().zip(texts.iter().cycle()) {
                let t = t.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
                xml.push_str(&format!("<{n} k=\"v\">{t}</{n}>"));
            }
            xml.push_str("</root>");
            let mut rules = XmlRules::default().declaration(false).unwrap("/root");
            for n in &names {
                rules = rules.array(&format!("/root/{n}"));
            }
            let json = xml_to_value(xml.as_bytes(), &rules).unwrap();
            let mut out = Vec::new();
            json_reader_to_xml(serde_json::to_vec(&json).unwrap().as_slice(), &rules, &mut out).unwrap();
            let back = xml_to_value(&out, &rules).unwrap();
            prop_assert_eq!(back, json);
        }
    }
}
