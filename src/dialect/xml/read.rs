//! XML → JSON, streaming: events in, JSON text out, one frame of state per open element.
//!
//! A value is written as soon as its shape is known: an element's key when it starts, its
//! `{` when its first child starts, its scalar or attribute object when it ends. Nothing of
//! a finished element is kept, which is what bounds memory by depth.
//!
//! Speed comes from doing per path what is usually done per element: each distinct path
//! becomes a node of a small trie holding what the rules say about it and its key already
//! encoded as JSON. Siblings come in the same order record after record, so finding the next
//! node is one comparison with the sibling after the last one matched.

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
    let mut conv = Conv::new(rules, out, input.len());
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
    let mut reader = Reader::from_reader(input);
    reader.config_mut().check_end_names = true;
    let mut conv = Conv::new(rules, out, FLUSH_AT);
    let fail = |reader: &Reader<R>, msg: String| XmlError {
        line: 0,
        column: reader.buffer_position() as usize,
        message: msg,
    };
    conv.begin().map_err(|m| fail(&reader, m))?;
    let mut buf = Vec::new();
    loop {
        let event = match reader.read_event_into(&mut buf) {
            Ok(e) => e,
            Err(e) => {
                return Err(XmlError {
                    line: 0,
                    column: reader.error_position() as usize,
                    message: format!("malformed XML: {e}"),
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

/// Distinct paths remembered at most: a hostile document cannot grow the trie without
/// bound. Paths beyond it are still converted correctly, only without the shortcuts.
const NODE_LIMIT: usize = 4096;
const NO_NODE: u32 = u32::MAX;
const TOP: u32 = 0;

/// One distinct element (or `@attribute`) path.
struct Node {
    array: bool,
    unwrap: bool,
    typing: Typing,
    /// The JSON field name, quoted and escaped, ready to write.
    key: Box<[u8]>,
    /// Hash of the field name, for repeat detection among an object's fields.
    hash: u64,
    /// Raw XML name (attributes prefixed with `@`) → node.
    children: Vec<(Box<[u8]>, u32)>,
    last: usize,
}

/// What one element needs to know about itself, cached or computed.
#[derive(Clone, Copy)]
struct Info {
    node: u32,
    array: bool,
    unwrap: bool,
    typing: Typing,
}

struct Attr {
    node: u32,
    /// `key` and `value` ranges in the frame's `attr_buf`; the key is the JSON field name.
    key: (usize, usize),
    value: (usize, usize),
}

struct Frame {
    /// Length of the path string before this element was appended.
    path_len: usize,
    node: u32,
    typing: Typing,
    attrs: Vec<Attr>,
    attr_buf: String,
    text: String,
    /// This element's children are written into this frame's object (`{` emitted).
    opened: bool,
    /// Unwrapped: its children belong to the nearest ancestor that is not.
    transparent: bool,
    fields: usize,
    /// Hash of the name of the array field left open (its `]` not yet written).
    open_array: Option<u64>,
    /// Hashes of the field names written so far: repeat detection without string compares
    /// (a 64-bit collision among one element's fields is not a practical risk).
    seen: Vec<u64>,
}

impl Frame {
    fn new() -> Self {
        Self {
            path_len: 0,
            node: TOP,
            typing: Typing::String,
            attrs: Vec::new(),
            attr_buf: String::new(),
            text: String::new(),
            opened: false,
            transparent: false,
            fields: 0,
            open_array: None,
            seen: Vec::new(),
        }
    }

    /// Makes a spent frame new again, keeping its buffers' capacity.
    fn reset(&mut self, path_len: usize, info: Info) {
        self.path_len = path_len;
        self.node = info.node;
        self.typing = info.typing;
        self.attrs.clear();
        self.attr_buf.clear();
        self.text.clear();
        self.opened = false;
        self.transparent = info.unwrap;
        self.fields = 0;
        self.open_array = None;
        self.seen.clear();
    }
}

struct Conv<'r, W> {
    rules: &'r XmlRules,
    out: W,
    /// `frames[..depth]` are the open elements; the rest are spent frames kept for reuse
    /// (frames are updated in place: moving one costs more than the work done on it).
    frames: Vec<Frame>,
    depth: usize,
    path: String,
    roots: usize,
    nodes: Vec<Node>,
    /// Scratch for names that need mapping or escaping.
    scratch: Vec<u8>,
    /// Output collected here and handed to `out` in large blocks: the converter writes
    /// many tiny pieces (`,`, `:`, quotes) that a `Write` call each would dominate.
    buf: Vec<u8>,
}

/// Output handed to the writer once this much has collected.
const FLUSH_AT: usize = 64 * 1024;

type Fail = String;

fn fnv1a(s: &[u8]) -> u64 {
    s.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
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

/// Writes `s` as a JSON string. Most text needs no escaping: then it is one copy.
fn json_str(out: &mut Vec<u8>, s: &str) -> Result<(), Fail> {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        Ok(())
    } else {
        serde_json::to_writer(out, s).map_err(|e| format!("write failed: {e}"))
    }
}

fn json_key(name: &str) -> Box<[u8]> {
    serde_json::to_vec(name)
        .unwrap_or_default()
        .into_boxed_slice()
}

/// Writes the key of a field of frame `f` (and `[` or `,` for arrays).
fn field(
    f: &mut Frame,
    out: &mut Vec<u8>,
    path: &str,
    key: &[u8],
    hash: u64,
    array: bool,
) -> Result<(), Fail> {
    if array && f.open_array == Some(hash) {
        out.push(b',');
        return Ok(());
    }
    let close = f.open_array.take().is_some();
    if f.seen.contains(&hash) {
        let name = String::from_utf8_lossy(key);
        let name = name.trim_matches('"');
        return Err(if array {
            format!("array element `{name}` is interrupted by other elements at `{path}`")
        } else {
            format!("element `{name}` repeats at `{path}`; declare it an array")
        });
    }
    f.seen.push(hash);
    let comma = f.fields > 0;
    f.fields += 1;
    if array {
        f.open_array = Some(hash);
    }
    if close {
        out.push(b']');
    }
    if comma {
        out.push(b',');
    }
    out.extend_from_slice(key);
    out.extend_from_slice(if array { b":[" } else { b":" });
    Ok(())
}

impl<'r, W: Write> Conv<'r, W> {
    /// `size_hint`: the input's size when known (the output is about as large).
    fn new(rules: &'r XmlRules, out: W, size_hint: usize) -> Self {
        Self {
            rules,
            out,
            frames: Vec::new(),
            depth: 0,
            path: String::new(),
            roots: 0,
            nodes: vec![Node {
                array: false,
                unwrap: false,
                typing: Typing::String,
                key: Box::default(),
                hash: 0,
                children: Vec::new(),
                last: 0,
            }],
            scratch: Vec::new(),
            buf: Vec::with_capacity(size_hint.min(FLUSH_AT) + 256),
        }
    }

    /// Opens the virtual top frame: the output is always an object.
    fn begin(&mut self) -> Result<(), Fail> {
        let mut top = Frame::new();
        top.opened = true;
        self.frames.push(top);
        self.depth = 1;
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
            // XML 1.0 line ends: `\r\n` and `\r` read as `\n` (borrowed when there are none).
            Event::Text(t) => match t.xml10_content() {
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

    /// The node for child `raw` (already appended to `self.path`) of node `parent`.
    /// `json_name` is the field name the child gets.
    fn child(&mut self, parent: u32, raw: &[u8], json_name: &str) -> Info {
        let computed = |rules: &XmlRules, path: &str, node| Info {
            node,
            array: rules.is_array(path),
            unwrap: rules.is_unwrapped(path),
            typing: rules.typing(path),
        };
        if parent == NO_NODE {
            return computed(self.rules, &self.path, NO_NODE);
        }
        let p = &mut self.nodes[parent as usize];
        let n = p.children.len();
        let found = if n > 0 {
            let guess = (p.last + 1) % n;
            if &*p.children[guess].0 == raw {
                Some(guess)
            } else {
                p.children.iter().position(|(name, _)| &**name == raw)
            }
        } else {
            None
        };
        if let Some(i) = found {
            p.last = i;
            let id = p.children[i].1;
            let node = &self.nodes[id as usize];
            return Info {
                node: id,
                array: node.array,
                unwrap: node.unwrap,
                typing: node.typing,
            };
        }
        if self.nodes.len() >= NODE_LIMIT {
            return computed(self.rules, &self.path, NO_NODE);
        }
        let info = computed(self.rules, &self.path, self.nodes.len() as u32);
        self.nodes.push(Node {
            array: info.array,
            unwrap: info.unwrap,
            typing: info.typing,
            key: json_key(json_name),
            hash: fnv1a(json_name.as_bytes()),
            children: Vec::new(),
            last: 0,
        });
        let p = &mut self.nodes[parent as usize];
        p.children.push((raw.into(), info.node));
        p.last = p.children.len() - 1;
        info
    }

    fn raw(&mut self, b: &[u8]) -> Result<(), Fail> {
        self.buf.extend_from_slice(b);
        Ok(())
    }

    fn flush_buf(&mut self) -> Result<(), Fail> {
        self.out
            .write_all(&self.buf)
            .map_err(|e| format!("write failed: {e}"))?;
        self.buf.clear();
        Ok(())
    }

    /// Index of the frame whose object receives children of the innermost frame.
    fn owner(&self) -> usize {
        self.frames[..self.depth]
            .iter()
            .rposition(|f| !f.transparent)
            .unwrap_or(0)
    }

    /// Writes a field key of frame `i`: the node's pre-encoded key, or `name` encoded now.
    fn key(&mut self, i: usize, node: u32, name: &str, array: bool) -> Result<(), Fail> {
        if node != NO_NODE {
            let n = &self.nodes[node as usize];
            return field(
                &mut self.frames[i],
                &mut self.buf,
                &self.path,
                &n.key,
                n.hash,
                array,
            );
        }
        self.scratch.clear();
        serde_json::to_writer(&mut self.scratch, name).map_err(|e| e.to_string())?;
        field(
            &mut self.frames[i],
            &mut self.buf,
            &self.path,
            &self.scratch,
            fnv1a(name.as_bytes()),
            array,
        )
    }

    /// Writes `{` and pending attributes of frame `i` if not yet done.
    fn open(&mut self, i: usize) -> Result<(), Fail> {
        if self.frames[i].opened {
            return Ok(());
        }
        self.frames[i].opened = true;
        self.raw(b"{")?;
        let attrs = std::mem::take(&mut self.frames[i].attrs);
        let buf = std::mem::take(&mut self.frames[i].attr_buf);
        let mut result = Ok(());
        for a in &attrs {
            let typing = if a.node == NO_NODE {
                Typing::String
            } else {
                self.nodes[a.node as usize].typing
            };
            result = self
                .key(i, a.node, &buf[a.key.0..a.key.1], false)
                .and_then(|()| self.scalar(&buf[a.value.0..a.value.1], typing));
            if result.is_err() {
                break;
            }
        }
        let f = &mut self.frames[i];
        f.attrs = attrs;
        f.attrs.clear();
        f.attr_buf = buf;
        f.attr_buf.clear();
        result
    }

    fn scalar(&mut self, text: &str, typing: Typing) -> Result<(), Fail> {
        match typing {
            Typing::String => json_str(&mut self.buf, text),
            Typing::NullIfEmpty if text.trim().is_empty() => self.raw(b"null"),
            Typing::NullIfEmpty => json_str(&mut self.buf, text),
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
        if self.depth > self.rules.max_depth {
            return Err(format!(
                "nesting deeper than the limit of {}",
                self.rules.max_depth
            ));
        }
        let raw = e.name();
        let raw = raw.as_ref();
        let raw_name =
            std::str::from_utf8(raw).map_err(|_| "element name is not valid UTF-8".to_owned())?;
        let name = self.rules.map_name(raw_name);
        if self.depth == 1 {
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
        let parent = self.frames[self.depth - 1].node;
        let info = self.child(parent, raw, &name);
        let owner = self.owner();
        self.open(owner)?;
        let d = self.depth;
        if self.frames.len() == d {
            self.frames.push(Frame::new());
        }
        self.frames[d].reset(path_len, info);
        let mut attrs = std::mem::take(&mut self.frames[d].attrs);
        let mut attr_buf = std::mem::take(&mut self.frames[d].attr_buf);
        let strip = matches!(self.rules.namespaces, super::Namespaces::Strip);
        for a in e.attributes() {
            let a = a.map_err(|err| format!("malformed attribute: {err}"))?;
            let key = std::str::from_utf8(a.key.as_ref())
                .map_err(|_| "attribute name is not valid UTF-8".to_owned())?;
            if strip && (key == "xmlns" || key.starts_with("xmlns:")) {
                continue;
            }
            let value = a
                .unescape_value()
                .map_err(|err| format!("attribute `{key}`: {err}"))?;
            let mapped = self.rules.map_name(key);
            let k0 = attr_buf.len();
            attr_buf.push_str(&self.rules.attr_prefix);
            attr_buf.push_str(&mapped);
            let k1 = attr_buf.len();
            attr_buf.push_str(&value);
            let v1 = attr_buf.len();
            // Attribute paths (`…/@name`) get nodes too, so their typing is looked up once.
            let len = self.path.len();
            self.path.push_str("/@");
            self.path.push_str(&mapped);
            self.scratch.clear();
            self.scratch.push(b'@');
            self.scratch.extend_from_slice(a.key.as_ref());
            let raw_attr = std::mem::take(&mut self.scratch);
            let node = self.child(info.node, &raw_attr, &attr_buf[k0..k1]).node;
            self.scratch = raw_attr;
            self.path.truncate(len);
            attrs.push(Attr {
                node,
                key: (k0, k1),
                value: (k1, v1),
            });
        }
        self.depth += 1;
        if info.unwrap {
            // An unwrapped level's attributes become fields of the object it merges into.
            for a in &attrs {
                self.key(owner, a.node, &attr_buf[a.key.0..a.key.1], false)?;
                json_str(&mut self.buf, &attr_buf[a.value.0..a.value.1])?;
            }
            attrs.clear();
            attr_buf.clear();
        }
        self.frames[d].attrs = attrs;
        self.frames[d].attr_buf = attr_buf;
        if !info.unwrap {
            self.key(owner, info.node, &name, info.array)?;
        }
        Ok(())
    }

    fn text(&mut self, s: &str) -> Result<(), Fail> {
        if self.depth == 1 {
            return if s.trim().is_empty() {
                Ok(())
            } else {
                Err("text outside the root element".to_owned())
            };
        }
        self.frames[self.depth - 1].text.push_str(s);
        Ok(())
    }

    fn end(&mut self) -> Result<(), Fail> {
        if self.depth <= 1 {
            return Err("unbalanced end tag".to_owned());
        }
        let idx = self.depth - 1;
        let text_key = self.rules.text_key.as_str();
        let (transparent, opened, has_attrs, typing) = {
            let f = &self.frames[idx];
            (f.transparent, f.opened, !f.attrs.is_empty(), f.typing)
        };
        let mut text = std::mem::take(&mut self.frames[idx].text);
        if transparent {
            // Its owner is an ancestor: `owner()` skips transparent frames.
            if !text.trim().is_empty() {
                let owner = self.owner();
                self.key(owner, NO_NODE, text_key, false)?;
                json_str(&mut self.buf, text.trim())?;
            }
        } else if opened {
            // Mixed content keeps its text under the text key, trimmed of layout whitespace.
            let t = text.trim();
            if !t.is_empty() {
                self.key(idx, NO_NODE, text_key, false)?;
                self.scalar(t, typing)?;
            }
            if self.frames[idx].open_array.is_some() {
                self.raw(b"]")?;
            }
            self.raw(b"}")?;
        } else if has_attrs {
            self.open(idx)?;
            if !text.is_empty() {
                self.key(idx, NO_NODE, text_key, false)?;
                self.scalar(&text, typing)?;
            }
            self.raw(b"}")?;
        } else {
            self.scalar(&text, typing)?;
        }
        text.clear();
        self.frames[idx].text = text;
        self.path.truncate(self.frames[idx].path_len);
        self.depth -= 1;
        if self.buf.len() >= FLUSH_AT {
            self.flush_buf()?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), Fail> {
        if self.depth > 1 {
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
        self.flush_buf()?;
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
