//! XML → JSON, streaming: events in, JSON text out, one frame of state per open element.
//!
//! A value is written as soon as its shape is known: an element's key when it starts, its
//! `{` when its first child starts, its scalar or attribute object when it ends. Nothing of
//! a finished element is kept, which is what bounds memory by depth.

use std::io::{BufRead, Write};

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use serde_json::Value;

use super::XmlError;
use super::rules::{Typing, XmlRules};

/// Converts an XML document (held in memory: errors give line and column) to JSON text.
pub fn xml_to_json<W: Write>(input: &[u8], rules: &XmlRules, out: W) -> Result<(), XmlError> {
    // Events borrow from the input: no copy of names or text into a read buffer.
    let mut reader = Reader::from_reader(input);
    reader.config_mut().check_end_names = true;
    let mut conv = Conv {
        rules,
        out,
        frames: Vec::new(),
        spare: Vec::new(),
        path: String::new(),
        roots: 0,
        memo: Default::default(),
    };
    let fail = |reader: &Reader<&[u8]>, msg: String| {
        XmlError::at(input, reader.buffer_position() as usize, msg)
    };
    conv.begin().map_err(|m| fail(&reader, m))?;
    loop {
        let event = match reader.read_event() {
            Ok(e) => e,
            Err(e) => {
                return Err(XmlError::at(
                    input,
                    reader.error_position() as usize,
                    format!("malformed XML: {e}"),
                ));
            }
        };
        match conv.event(event) {
            Ok(true) => break,
            Ok(false) => {}
            Err(m) => return Err(fail(&reader, m)),
        }
    }
    conv.finish().map_err(|m| fail(&reader, m))
}

/// Converts an XML document to a JSON value.
pub fn xml_to_value(input: &[u8], rules: &XmlRules) -> Result<Value, XmlError> {
    let mut out = Vec::with_capacity(input.len());
    xml_to_json(input, rules, &mut out)?;
    serde_json::from_slice(&out).map_err(|e| XmlError {
        line: 0,
        column: 0,
        message: format!("internal: {e}"),
    })
}

/// Converts from any reader (a file, a socket): memory stays bounded by nesting depth.
/// Errors carry the byte offset as their column, on line 0.
pub fn xml_reader_to_json<R: BufRead, W: Write>(
    input: R,
    rules: &XmlRules,
    out: W,
) -> Result<(), XmlError> {
    convert(input, None, rules, out)
}

struct Frame {
    /// Length of the path string before this element was appended.
    path_len: usize,
    attrs: Vec<(String, String)>,
    text: String,
    /// This element's children are written into this frame's object (`{` emitted).
    opened: bool,
    /// Unwrapped: its children belong to the nearest ancestor that is not.
    transparent: bool,
    fields: usize,
    open_array: Option<String>,
    /// FNV-1a hashes of the child names seen so far: repeat detection without string
    /// compares (a 64-bit collision among one element's children is not a practical risk).
    seen: Vec<u64>,
}

impl Frame {
    fn new(path_len: usize, transparent: bool) -> Self {
        Self {
            path_len,
            attrs: Vec::new(),
            text: String::new(),
            opened: false,
            transparent,
            fields: 0,
            open_array: None,
            seen: Vec::new(),
        }
    }

    /// Makes a spent frame new again, keeping its buffers' capacity.
    fn reset(&mut self, path_len: usize, transparent: bool) {
        self.path_len = path_len;
        self.attrs.clear();
        self.text.clear();
        self.opened = false;
        self.transparent = transparent;
        self.fields = 0;
        self.open_array = None;
        self.seen.clear();
    }

    fn has_seen(&self, hash: u64) -> bool {
        self.seen.contains(&hash)
    }
}

/// What the rules say about one path, memoized: documents repeat the same paths.
#[derive(Clone, Copy)]
struct PathInfo {
    array: bool,
    unwrap: bool,
    typing: Typing,
}

struct Conv<'r, W> {
    rules: &'r XmlRules,
    out: W,
    frames: Vec<Frame>,
    spare: Vec<Frame>,
    path: String,
    roots: usize,
    memo: std::collections::HashMap<String, PathInfo, foldhash::fast::FixedState>,
}

/// Distinct paths remembered at most (a hostile document cannot grow the memo unboundedly).
const MEMO_LIMIT: usize = 4096;

type Fail = String;

fn convert<R: BufRead, W: Write>(
    input: R,
    whole: Option<&[u8]>,
    rules: &XmlRules,
    out: W,
) -> Result<(), XmlError> {
    let mut reader = Reader::from_reader(input);
    reader.config_mut().check_end_names = true;
    let mut conv = Conv {
        rules,
        out,
        frames: Vec::new(),
        spare: Vec::new(),
        path: String::new(),
        roots: 0,
        memo: Default::default(),
    };
    let fail = |reader: &Reader<R>, msg: String| match whole {
        Some(bytes) => XmlError::at(bytes, reader.buffer_position() as usize, msg),
        None => XmlError {
            line: 0,
            column: reader.buffer_position() as usize,
            message: msg,
        },
    };
    conv.begin().map_err(|m| fail(&reader, m))?;
    let mut buf = Vec::new();
    loop {
        let event = match reader.read_event_into(&mut buf) {
            Ok(e) => e,
            Err(e) => {
                let pos = reader.error_position() as usize;
                let msg = format!("malformed XML: {e}");
                return Err(match whole {
                    Some(bytes) => XmlError::at(bytes, pos, msg),
                    None => XmlError {
                        line: 0,
                        column: pos,
                        message: msg,
                    },
                });
            }
        };
        match conv.event(event) {
            Ok(true) => break,
            Ok(false) => {}
            Err(m) => return Err(fail(&reader, m)),
        }
        buf.clear();
    }
    conv.finish().map_err(|m| fail(&reader, m))
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn resolve_ref(r: &quick_xml::events::BytesRef<'_>) -> Result<char, Fail> {
    if r.is_char_ref() {
        return match r.resolve_char_ref() {
            Ok(Some(c)) => Ok(c),
            Ok(None) | Err(_) => Err("invalid character reference".to_owned()),
        };
    }
    let name: &[u8] = r;
    match name {
        b"lt" => Ok('<'),
        b"gt" => Ok('>'),
        b"amp" => Ok('&'),
        b"apos" => Ok('\''),
        b"quot" => Ok('"'),
        other => Err(format!(
            "unknown entity &{};",
            String::from_utf8_lossy(other)
        )),
    }
}

impl<W: Write> Conv<'_, W> {
    /// Opens the virtual top frame: the output is always an object.
    fn begin(&mut self) -> Result<(), Fail> {
        let mut top = Frame::new(0, false);
        top.opened = true;
        self.frames.push(top);
        self.raw(b"{")
    }

    /// Handles one event; `true` at the end of the document.
    fn event(&mut self, event: Event<'_>) -> Result<bool, Fail> {
        match event {
            Event::Start(e) => self.start(&e)?,
            Event::Empty(e) => {
                self.start(&e)?;
                self.end()?;
            }
            Event::End(_) => self.end()?,
            Event::Text(t) => match t.decode() {
                Ok(s) => self.text(&s)?,
                Err(e) => return Err(format!("text is not valid UTF-8: {e}")),
            },
            Event::CData(c) => match std::str::from_utf8(&c) {
                Ok(s) => self.text(s)?,
                Err(e) => return Err(format!("CDATA is not valid UTF-8: {e}")),
            },
            Event::GeneralRef(r) => {
                let c = resolve_ref(&r)?;
                self.text(c.encode_utf8(&mut [0; 4]))?;
            }
            Event::DocType(_) => {
                return Err(
                    "DOCTYPE is not allowed (entity declarations are never expanded)".to_owned(),
                );
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => return Ok(true),
        }
        Ok(false)
    }

    /// The rules for the current path, memoized.
    fn info(&mut self) -> PathInfo {
        if let Some(i) = self.memo.get(self.path.as_str()) {
            return *i;
        }
        let i = PathInfo {
            array: self.rules.is_array(&self.path),
            unwrap: self.rules.is_unwrapped(&self.path),
            typing: self.rules.typing(&self.path),
        };
        if self.memo.len() < MEMO_LIMIT {
            self.memo.insert(self.path.clone(), i);
        }
        i
    }

    fn new_frame(&mut self, path_len: usize, transparent: bool) -> Frame {
        match self.spare.pop() {
            Some(mut f) => {
                f.reset(path_len, transparent);
                f
            }
            None => Frame::new(path_len, transparent),
        }
    }

    fn raw(&mut self, b: &[u8]) -> Result<(), Fail> {
        self.out
            .write_all(b)
            .map_err(|e| format!("write failed: {e}"))
    }

    fn string(&mut self, s: &str) -> Result<(), Fail> {
        serde_json::to_writer(&mut self.out, s).map_err(|e| format!("write failed: {e}"))
    }

    /// Index of the frame whose object receives children of the innermost frame.
    fn owner(&self) -> usize {
        self.frames
            .iter()
            .rposition(|f| !f.transparent)
            .unwrap_or(0)
    }

    /// Writes `{` and pending attributes of frame `i` if not yet done.
    fn open(&mut self, i: usize) -> Result<(), Fail> {
        if self.frames[i].opened {
            return Ok(());
        }
        self.frames[i].opened = true;
        self.raw(b"{")?;
        let attrs = std::mem::take(&mut self.frames[i].attrs);
        for (k, v) in attrs {
            let typed_path = format!(
                "{}/{}{}",
                self.path_of(i),
                "@",
                k.trim_start_matches(self.rules.attr_prefix.as_str())
            );
            self.field(i, &k, false)?;
            self.scalar(&v, self.rules.typing(&typed_path))?;
        }
        Ok(())
    }

    fn path_of(&self, i: usize) -> String {
        // A frame's path is the path string up to the next frame's start.
        let end = self
            .frames
            .get(i + 1)
            .map(|f| f.path_len)
            .unwrap_or(self.path.len());
        self.path[..end].to_owned()
    }

    /// Writes the key of a field of owner `i` (and `[` or `,` for arrays).
    fn field(&mut self, i: usize, name: &str, array: bool) -> Result<(), Fail> {
        let f = &mut self.frames[i];
        if array && f.open_array.as_deref() == Some(name) {
            return self.raw(b",");
        }
        let close = f.open_array.take().is_some();
        let hash = fnv1a(name);
        if f.has_seen(hash) {
            return Err(if array {
                format!(
                    "array element `{name}` is interrupted by other elements at `{}`",
                    self.path
                )
            } else {
                format!(
                    "element `{name}` repeats at `{}`; declare it an array",
                    self.path
                )
            });
        }
        f.seen.push(hash);
        let comma = f.fields > 0;
        f.fields += 1;
        if array {
            f.open_array = Some(name.to_owned());
        }
        if close {
            self.raw(b"]")?;
        }
        if comma {
            self.raw(b",")?;
        }
        self.string(name)?;
        self.raw(if array { b":[" } else { b":" })
    }

    fn scalar(&mut self, text: &str, typing: Typing) -> Result<(), Fail> {
        match typing {
            Typing::String => self.string(text),
            Typing::NullIfEmpty if text.trim().is_empty() => self.raw(b"null"),
            Typing::NullIfEmpty => self.string(text),
            Typing::Boolean => match text.trim() {
                t if t == "1" || t.eq_ignore_ascii_case("true") => self.raw(b"true"),
                t if t == "0" || t.eq_ignore_ascii_case("false") => self.raw(b"false"),
                "" => self.raw(b"null"),
                t => Err(format!("`{t}` at `{}` is not a boolean", self.path)),
            },
            Typing::Number => {
                let t = text.trim();
                if t.is_empty() {
                    return self.raw(b"null");
                }
                if let Ok(i) = t.parse::<i64>() {
                    return self.raw(i.to_string().as_bytes());
                }
                match t.parse::<f64>() {
                    Ok(f) if f.is_finite() => {
                        let v = serde_json::Number::from_f64(f)
                            .map(|n| n.to_string())
                            .unwrap_or_default();
                        self.raw(v.as_bytes())
                    }
                    Ok(_) | Err(_) => Err(format!("`{t}` at `{}` is not a number", self.path)),
                }
            }
        }
    }

    fn start(&mut self, e: &BytesStart<'_>) -> Result<(), Fail> {
        if self.frames.len() > self.rules.max_depth {
            return Err(format!(
                "nesting deeper than the limit of {}",
                self.rules.max_depth
            ));
        }
        let raw_name = std::str::from_utf8(e.name().as_ref())
            .map_err(|_| "element name is not valid UTF-8".to_owned())?
            .to_owned();
        let name = self.rules.map_name(&raw_name).into_owned();
        if self.frames.len() == 1 {
            self.roots += 1;
            if self.roots > 1 {
                return Err("more than one root element".to_owned());
            }
        }
        let path_len = self.path.len();
        if !self.path.is_empty() {
            self.path.push('/');
        }
        self.path.push_str(&name);
        let PathInfo {
            array,
            unwrap: transparent,
            ..
        } = self.info();
        let owner = self.owner();
        self.open(owner)?;
        let mut frame = self.new_frame(path_len, transparent);
        for a in e.attributes() {
            let a = a.map_err(|err| format!("malformed attribute: {err}"))?;
            let key = std::str::from_utf8(a.key.as_ref())
                .map_err(|_| "attribute name is not valid UTF-8".to_owned())?;
            if matches!(self.rules.namespaces, super::Namespaces::Strip)
                && (key == "xmlns" || key.starts_with("xmlns:"))
            {
                continue;
            }
            let value = a
                .unescape_value()
                .map_err(|err| format!("attribute `{key}`: {err}"))?;
            frame.attrs.push((
                format!("{}{}", self.rules.attr_prefix, self.rules.map_name(key)),
                value.into_owned(),
            ));
        }
        if transparent {
            // An unwrapped level's attributes become fields of the object it merges into.
            let attrs = std::mem::take(&mut frame.attrs);
            self.frames.push(frame);
            for (k, v) in attrs {
                self.field(owner, &k, false)?;
                self.string(&v)?;
            }
            return Ok(());
        }
        self.field(owner, &name, array)?;
        self.frames.push(frame);
        Ok(())
    }

    fn text(&mut self, s: &str) -> Result<(), Fail> {
        if self.frames.len() == 1 {
            return if s.trim().is_empty() {
                Ok(())
            } else {
                Err("text outside the root element".to_owned())
            };
        }
        if let Some(f) = self.frames.last_mut() {
            f.text.push_str(s);
        }
        Ok(())
    }

    fn end(&mut self) -> Result<(), Fail> {
        if self.frames.len() <= 1 {
            return Err("unbalanced end tag".to_owned());
        }
        let idx = self.frames.len() - 1;
        let typing = self.info().typing;
        let rules = self.rules;
        let text_key = rules.text_key.as_str();
        let (transparent, opened, has_attrs) = {
            let f = &self.frames[idx];
            (f.transparent, f.opened, !f.attrs.is_empty())
        };
        let mut text = std::mem::take(&mut self.frames[idx].text);
        if transparent {
            // Its owner is an ancestor: `owner()` skips transparent frames.
            if !text.trim().is_empty() {
                let owner = self.owner();
                self.field(owner, text_key, false)?;
                self.string(text.trim())?;
            }
        } else if opened {
            // Mixed content keeps its text under the text key, trimmed of layout whitespace.
            let t = text.trim();
            if !t.is_empty() {
                self.field(idx, text_key, false)?;
                self.scalar(t, typing)?;
            }
            if self.frames[idx].open_array.is_some() {
                self.raw(b"]")?;
            }
            self.raw(b"}")?;
        } else if has_attrs {
            self.open(idx)?;
            if !text.is_empty() {
                self.field(idx, text_key, false)?;
                self.scalar(&text, typing)?;
            }
            self.raw(b"}")?;
        } else {
            self.scalar(&text, typing)?;
        }
        text.clear();
        if let Some(mut f) = self.frames.pop() {
            self.path.truncate(f.path_len);
            f.text = text;
            self.spare.push(f);
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), Fail> {
        if self.frames.len() > 1 {
            return Err(format!(
                "unclosed element `{}` at end of document",
                self.path
            ));
        }
        if self.roots == 0 {
            return Err("the document has no root element".to_owned());
        }
        if self.frames[0].open_array.is_some() {
            self.raw(b"]")?;
        }
        self.raw(b"}")?;
        self.out.flush().map_err(|e| format!("write failed: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conv(xml: &str, rules: &XmlRules) -> Value {
        xml_to_value(xml.as_bytes(), rules).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn nothing_is_guessed() {
        let v = conv("<r><id>007</id><n>1</n></r>", &XmlRules::default());
        assert_eq!(v, json!({"r": {"id": "007", "n": "1"}}));
    }

    #[test]
    fn typing_rules_apply_by_path() {
        let rules = XmlRules::default()
            .typed("count", Typing::Number)
            .typed("active", Typing::Boolean)
            .typed("phone", Typing::NullIfEmpty);
        let v = conv(
            "<r><count>007</count><active>1</active><phone/></r>",
            &rules,
        );
        assert_eq!(v, json!({"r": {"count": 7, "active": true, "phone": null}}));
        let e = xml_to_value(b"<r><count>x</count></r>", &rules).unwrap_err();
        assert!(e.message.contains("not a number"), "{e}");
    }

    #[test]
    fn arrays_only_when_declared() {
        let once = conv(
            "<p><record><id>1</id></record></p>",
            &XmlRules::default().array("record"),
        );
        assert_eq!(once, json!({"p": {"record": [{"id": "1"}]}}));
        let twice = conv(
            "<p><record>a</record><record>b</record><total>2</total></p>",
            &XmlRules::default().array("record"),
        );
        assert_eq!(twice, json!({"p": {"record": ["a", "b"], "total": "2"}}));
        let e = xml_to_value(
            b"<p><record>a</record><record>b</record></p>",
            &XmlRules::default(),
        )
        .unwrap_err();
        assert!(e.message.contains("declare it an array"), "{e}");
    }

    #[test]
    fn attributes_text_and_lookups() {
        let xml = r#"<tenant><partner type="Tenant" uri="/t/9" displayValue="Acme &amp; Co">9</partner></tenant>"#;
        let v = conv(xml, &XmlRules::default());
        assert_eq!(
            v,
            json!({"tenant": {"partner": {"@type": "Tenant", "@uri": "/t/9", "@displayValue": "Acme & Co", "#text": "9"}}})
        );
    }

    #[test]
    fn unwrap_removes_a_level() {
        let rules = XmlRules::default().unwrap("/platform").array("record");
        let v = conv(
            "<platform><record><a>1</a></record><record><a>2</a></record><totalRecordCount>2</totalRecordCount></platform>",
            &rules,
        );
        assert_eq!(
            v,
            json!({"record": [{"a": "1"}, {"a": "2"}], "totalRecordCount": "2"})
        );
    }

    #[test]
    fn entities_cdata_and_namespaces() {
        let v = conv(
            "<r><a>&lt;b&gt; &#65;&#x42;</a><c><![CDATA[<raw> & ]]></c></r>",
            &XmlRules::default(),
        );
        assert_eq!(v, json!({"r": {"a": "<b> AB", "c": "<raw> & "}}));
        let strip = XmlRules::default().namespaces(super::super::Namespaces::Strip);
        let v = conv(r#"<lj:r xmlns:lj="urn:x"><lj:a>1</lj:a></lj:r>"#, &strip);
        assert_eq!(v, json!({"r": {"a": "1"}}));
    }

    #[test]
    fn hostile_documents_are_refused_with_positions() {
        let laughs = "<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;\">]>\n<lolz>&lol2;</lolz>";
        let e = xml_to_value(laughs.as_bytes(), &XmlRules::default()).unwrap_err();
        assert!(e.message.contains("DOCTYPE"), "{e}");
        assert_eq!(e.line, 2);
        let xxe = "<!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><r>&x;</r>";
        assert!(
            xml_to_value(xxe.as_bytes(), &XmlRules::default())
                .unwrap_err()
                .message
                .contains("DOCTYPE")
        );
        let e = xml_to_value(b"<r>&x;</r>", &XmlRules::default()).unwrap_err();
        assert!(e.message.contains("unknown entity"), "{e}");
        let e = xml_to_value(b"<r>\n  <a>1</b>\n</r>", &XmlRules::default()).unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(e.column > 1, "{e}");
        let deep = format!("{}{}", "<a>".repeat(100), "</a>".repeat(100));
        assert!(
            xml_to_value(deep.as_bytes(), &XmlRules::default())
                .unwrap_err()
                .message
                .contains("deeper")
        );
        assert!(xml_to_value(b"<r>\xff</r>", &XmlRules::default()).is_err());
        assert!(xml_to_value(b"<r></r><r></r>", &XmlRules::default()).is_err());
        assert!(xml_to_value(b"<r>", &XmlRules::default()).is_err());
        assert!(xml_to_value(b"", &XmlRules::default()).is_err());
    }
}
