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
    // One pass of UTF-8 validation over the whole document (vectorized, far faster than a
    // check per name and text) makes every slice between markup characters a valid `str`.
    let doc = std::str::from_utf8(input).map_err(|e| {
        XmlError::at(
            input,
            e.valid_up_to(),
            "the document is not valid UTF-8".to_owned(),
        )
    })?;
    // Events borrow from the input: no copy of names or text into a read buffer.
    let mut reader = Reader::from_reader(input);
    reader.config_mut().check_end_names = true;
    let mut conv = Conv::new(rules, out, input.len(), Some(doc));
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
    let mut conv = Conv::new(rules, out, FLUSH_AT, None);
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

/// One distinct element (or attribute) path and everything the rules say about it, worked
/// out once: the per-element work is then a name comparison and a few copies.
struct Node {
    array: bool,
    unwrap: bool,
    typing: Typing,
    /// The JSON field name, quoted and escaped, ready to write.
    key: Box<[u8]>,
    /// Hash of the field name, for repeat detection among an object's fields.
    hash: u64,
    /// The path the rules matched (mapped names joined by `/`), for children and messages.
    path: Box<str>,
    /// Raw XML element name → node; attributes apart, so no name needs an `@` glued on.
    children: Names,
    attrs: Names,
}

/// A node's children by raw name. Siblings come in the same order record after record, so
/// the one after the last match is tried first.
#[derive(Default)]
struct Names {
    list: Vec<(Box<[u8]>, u32)>,
    last: usize,
}

impl Names {
    fn find(&mut self, raw: &[u8]) -> Option<u32> {
        let n = self.list.len();
        if n == 0 {
            return None;
        }
        let guess = if self.last + 1 == n { 0 } else { self.last + 1 };
        let i = if *self.list[guess].0 == *raw {
            guess
        } else {
            self.list.iter().position(|(name, _)| **name == *raw)?
        };
        self.last = i;
        Some(self.list[i].1)
    }

    fn add(&mut self, raw: &[u8], id: u32) {
        self.list.push((raw.into(), id));
        self.last = self.list.len() - 1;
    }
}

/// What one element needs to know about itself, cached or computed.
#[derive(Clone, Copy)]
struct Info {
    node: u32,
    array: bool,
    unwrap: bool,
    typing: Typing,
}

impl Info {
    fn of(rules: &XmlRules, path: &str, node: u32) -> Self {
        Self {
            node,
            array: rules.is_array(path),
            unwrap: rules.is_unwrapped(path),
            typing: rules.typing(path),
        }
    }
}

/// An attribute waiting for its element's `{`.
struct Attr {
    node: u32,
    /// Ranges in the frame's `attr_buf`: the JSON-encoded key (only without a node) and
    /// the value.
    key: (usize, usize),
    value: (usize, usize),
}

struct Frame<'i> {
    node: u32,
    typing: Typing,
    /// Unwrapped: its children belong to the nearest ancestor that is not.
    transparent: bool,
    /// Index of the frame whose object receives this element's children (itself unless
    /// unwrapped): kept here so no element start searches the stack for it.
    owner: usize,
    /// This element's children are written into this frame's object (`{` emitted).
    opened: bool,
    fields: usize,
    /// Hash of the name of the array field left open (its `]` not yet written).
    open_array: Option<u64>,
    /// Hashes of the field names written so far: repeat detection without string compares
    /// (a 64-bit collision among one element's fields is not a practical risk).
    seen: Vec<u64>,
    attrs: Vec<Attr>,
    attr_buf: String,
    /// The element's text when it came as one piece of the in-memory document (the usual
    /// case): borrowed, not copied. More pieces (entities, CDATA, comments between) or a
    /// streamed document collect in `text`.
    piece: Option<&'i str>,
    text: String,
    /// Only for an element past the node limit: its path and JSON-encoded key.
    own_path: String,
    own_key: Vec<u8>,
}

impl<'i> Frame<'i> {
    fn new() -> Self {
        Self {
            node: TOP,
            typing: Typing::String,
            transparent: false,
            owner: 0,
            opened: false,
            fields: 0,
            open_array: None,
            seen: Vec::new(),
            attrs: Vec::new(),
            attr_buf: String::new(),
            piece: None,
            text: String::new(),
            own_path: String::new(),
            own_key: Vec::new(),
        }
    }

    /// Makes a spent frame new again, keeping its buffers' capacity. Buffers only some
    /// elements use are cleared by those elements when they are used.
    fn reset(&mut self, info: Info, owner: usize) {
        self.node = info.node;
        self.typing = info.typing;
        self.transparent = info.unwrap;
        self.owner = owner;
        self.opened = false;
        self.fields = 0;
        self.open_array = None;
        self.seen.clear();
        self.attrs.clear();
        self.piece = None;
        self.text.clear();
    }

    fn push_text(&mut self, s: &str) {
        if let Some(p) = self.piece.take() {
            self.text.push_str(p);
        }
        self.text.push_str(s);
    }
}

struct Conv<'r, 'i, W> {
    rules: &'r XmlRules,
    out: W,
    /// The whole document when it is in memory and valid UTF-8: names and text are sliced
    /// from it instead of being validated and copied piece by piece.
    doc: Option<&'i str>,
    /// `frames[..depth]` are the open elements; the rest are spent frames kept for reuse
    /// (frames are updated in place: moving one costs more than the work done on it).
    frames: Vec<Frame<'i>>,
    depth: usize,
    roots: usize,
    nodes: Vec<Node>,
    text_key: Box<[u8]>,
    text_hash: u64,
    /// Output collected here and handed to `out` in large blocks: the converter writes
    /// many tiny pieces (`,`, `:`, quotes) that a `Write` call each would dominate.
    buf: Vec<u8>,
}

/// Output handed to the writer once this much has collected.
const FLUSH_AT: usize = 64 * 1024;

type Fail = String;

/// Whitespace may stand between the prolog and the root; text may not.
fn outside_root(s: &str) -> Result<(), Fail> {
    if s.trim().is_empty() {
        Ok(())
    } else {
        Err("text outside the root element".to_owned())
    }
}

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

/// Whether any byte of `s` must be escaped in a JSON string (a control character, `"` or
/// `\\`), eight bytes at a time: element text is short, too short for SIMD to pay.
fn needs_escape(s: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // A byte of `x` is zero ⇔ its high bit is set in `zero(x)` (the classic bit trick;
    // false positives only ever occur above a true zero byte, so the test is exact).
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let mut chunks = s.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0; 8];
        w.copy_from_slice(c);
        let x = u64::from_le_bytes(w);
        // Bytes below 0x20: `x - 0x20` borrows into the high bit for those (and ASCII
        // bytes only; bytes ≥ 0x80 are masked out by `!x`).
        let control = x.wrapping_sub(0x20 * ONES) & !x & HIGH;
        if control | zero(x ^ (u64::from(b'"') * ONES)) | zero(x ^ (u64::from(b'\\') * ONES)) != 0 {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

/// Writes `s` as a JSON string. Most text needs no escaping: then it is one copy.
fn json_str(out: &mut Vec<u8>, s: &str) {
    if !needs_escape(s.as_bytes()) {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Writing to a Vec cannot fail.
        let _ = serde_json::to_writer(out, s);
    }
}

fn json_key(name: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(name.len() + 2);
    json_str(&mut key, name);
    key
}

/// `part` as a slice of `doc` when it lies inside it (events of an in-memory document
/// borrow from it): no validation needed, and the result lives as long as the document.
fn within<'i>(doc: Option<&'i str>, part: &[u8]) -> Option<&'i str> {
    let doc = doc?;
    let start = (part.as_ptr() as usize).checked_sub(doc.as_ptr() as usize)?;
    doc.get(start..start.checked_add(part.len())?)
}

/// `part` as text: sliced from the document, or validated.
fn utf8<'a>(doc: Option<&'a str>, part: &'a [u8], what: &str) -> Result<&'a str, Fail> {
    match within(doc, part) {
        Some(s) => Ok(s),
        None => std::str::from_utf8(part).map_err(|e| format!("{what} is not valid UTF-8: {e}")),
    }
}

/// An element's attributes are more than layout whitespace (most elements have none, and
/// then the attribute parser is not started at all).
fn has_attributes(e: &BytesStart<'_>) -> bool {
    e.attributes_raw()
        .iter()
        .any(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

/// Why a field cannot be written.
#[derive(Debug, Clone, Copy)]
enum Clash {
    /// A field of that name was written already and the name is not an array.
    Repeats,
    /// An array's items are not consecutive.
    Interrupted,
}

fn clash(c: Clash, key: &[u8], path: &str) -> Fail {
    let name = String::from_utf8_lossy(key);
    let name = name.trim_matches('"');
    match c {
        Clash::Repeats => format!("element `{name}` repeats at `{path}`; declare it an array"),
        Clash::Interrupted => {
            format!("array element `{name}` is interrupted by other elements at `{path}`")
        }
    }
}

/// Writes the key of a field of frame `f` (and `[` or `,` for arrays). `hash` is the
/// hash of the encoded `key`.
fn field(
    f: &mut Frame<'_>,
    out: &mut Vec<u8>,
    key: &[u8],
    hash: u64,
    array: bool,
) -> Result<(), Clash> {
    if array && f.open_array == Some(hash) {
        out.push(b',');
        return Ok(());
    }
    let close = f.open_array.take().is_some();
    if f.seen.contains(&hash) {
        return Err(if array {
            Clash::Interrupted
        } else {
            Clash::Repeats
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

impl<'r, 'i, W: Write> Conv<'r, 'i, W> {
    /// `size_hint`: the input's size when known (the output is about as large).
    fn new(rules: &'r XmlRules, out: W, size_hint: usize, doc: Option<&'i str>) -> Self {
        Self {
            rules,
            out,
            doc,
            frames: Vec::new(),
            depth: 0,
            roots: 0,
            nodes: vec![Node {
                array: false,
                unwrap: false,
                typing: Typing::String,
                key: Box::default(),
                hash: 0,
                path: Box::default(),
                children: Names::default(),
                attrs: Names::default(),
            }],
            text_key: json_key(&rules.text_key).into(),
            text_hash: fnv1a(&json_key(&rules.text_key)),
            buf: Vec::with_capacity(size_hint.min(FLUSH_AT) + 256),
        }
    }

    /// Opens the virtual top frame: the output is always an object.
    fn begin(&mut self) -> Result<(), Fail> {
        let mut top = Frame::new();
        top.opened = true;
        self.frames.push(top);
        self.depth = 1;
        self.buf.push(b'{');
        Ok(())
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
            Event::Text(t) => {
                if let Some(s) = within(self.doc, &t).filter(|s| !s.contains('\r')) {
                    self.piece(s)?;
                } else {
                    // XML 1.0 line ends: `\r\n` and `\r` read as `\n`.
                    match t.xml10_content() {
                        Ok(s) => self.text(&s)?,
                        Err(e) => return Err(format!("text is not valid UTF-8: {e}")),
                    }
                }
            }
            Event::CData(c) => {
                let s = utf8(self.doc, &c, "CDATA")?;
                self.text(s)?;
            }
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

    /// The path of open frame `i`, for rules and messages.
    fn path(&self, i: usize) -> &str {
        let f = &self.frames[i];
        if f.node == NO_NODE {
            &f.own_path
        } else {
            &self.nodes[f.node as usize].path
        }
    }

    /// Finds the node of element (or attribute, `attr`) `raw` under frame `parent` among
    /// those seen before: the path every element after the first few takes.
    #[inline]
    fn find(&mut self, parent: usize, raw: &[u8], attr: bool) -> Option<Info> {
        let pnode = self.frames[parent].node;
        if pnode == NO_NODE {
            return None;
        }
        let names = if attr {
            &mut self.nodes[pnode as usize].attrs
        } else {
            &mut self.nodes[pnode as usize].children
        };
        let id = names.find(raw)?;
        let n = &self.nodes[id as usize];
        Some(Info {
            node: id,
            array: n.array,
            unwrap: n.unwrap,
            typing: n.typing,
        })
    }

    /// Finds or creates the node of element (or attribute, `attr`) `raw` under frame
    /// `parent`. Only a name seen for the first time at its path is mapped and matched
    /// against the rules. Past the node limit the path and key are written to `own`.
    #[inline]
    fn lookup(
        &mut self,
        parent: usize,
        raw: &[u8],
        attr: bool,
        own: Option<(&mut String, &mut Vec<u8>)>,
    ) -> Result<Info, Fail> {
        match self.find(parent, raw, attr) {
            Some(info) => Ok(info),
            None => self.new_node(parent, raw, attr, own),
        }
    }

    /// A name not seen before at its path: mapped, matched against the rules, remembered.
    #[cold]
    #[inline(never)]
    fn new_node(
        &mut self,
        parent: usize,
        raw: &[u8],
        attr: bool,
        own: Option<(&mut String, &mut Vec<u8>)>,
    ) -> Result<Info, Fail> {
        let pnode = self.frames[parent].node;
        let what = if attr {
            "attribute name"
        } else {
            "element name"
        };
        let raw_name = utf8(self.doc, raw, what)?;
        let name = self.rules.map_name(raw_name);
        let mut path = String::from(self.path(parent));
        if !path.is_empty() {
            path.push('/');
        }
        if attr {
            path.push('@');
        }
        path.push_str(&name);
        let mut key = String::new();
        if attr {
            key.push_str(&self.rules.attr_prefix);
        }
        key.push_str(&name);
        if pnode == NO_NODE || self.nodes.len() >= NODE_LIMIT {
            let info = Info::of(self.rules, &path, NO_NODE);
            if let Some((own_path, own_key)) = own {
                *own_path = path;
                own_key.clear();
                json_str(own_key, &key);
            }
            return Ok(info);
        }
        let id = self.nodes.len() as u32;
        let info = Info::of(self.rules, &path, id);
        let key = json_key(&key);
        self.nodes.push(Node {
            array: info.array,
            unwrap: info.unwrap,
            typing: info.typing,
            hash: fnv1a(&key),
            key: key.into(),
            path: path.into(),
            children: Names::default(),
            attrs: Names::default(),
        });
        let p = &mut self.nodes[pnode as usize];
        if attr {
            p.attrs.add(raw, id);
        } else {
            p.children.add(raw, id);
        }
        Ok(info)
    }

    fn flush_buf(&mut self) -> Result<(), Fail> {
        self.out
            .write_all(&self.buf)
            .map_err(|e| format!("write failed: {e}"))?;
        self.buf.clear();
        Ok(())
    }

    /// Writes into frame `i` the key of `node`.
    fn key_node(&mut self, i: usize, node: u32, array: bool) -> Result<(), Fail> {
        let n = &self.nodes[node as usize];
        field(&mut self.frames[i], &mut self.buf, &n.key, n.hash, array)
            .map_err(|c| clash(c, &n.key, &n.path))
    }

    /// Writes into frame `i` a JSON-encoded key that has no node; `path` names it.
    fn key_raw(&mut self, i: usize, key: &[u8], array: bool, path: &str) -> Result<(), Fail> {
        field(&mut self.frames[i], &mut self.buf, key, fnv1a(key), array)
            .map_err(|c| clash(c, key, path))
    }

    /// Writes into frame `i` the text key (mixed content, text beside attributes).
    fn key_text(&mut self, i: usize, of: usize) -> Result<(), Fail> {
        match field(
            &mut self.frames[i],
            &mut self.buf,
            &self.text_key,
            self.text_hash,
            false,
        ) {
            Ok(()) => Ok(()),
            Err(c) => Err(clash(c, &self.text_key, self.path(of))),
        }
    }

    /// Writes `{` and pending attributes of frame `i` if not yet done.
    fn open(&mut self, i: usize) -> Result<(), Fail> {
        if self.frames[i].opened {
            return Ok(());
        }
        self.frames[i].opened = true;
        self.buf.push(b'{');
        if self.frames[i].attrs.is_empty() {
            return Ok(());
        }
        self.attributes(i, i)
    }

    /// Writes the pending attributes of frame `of` as fields of frame `into`.
    fn attributes(&mut self, of: usize, into: usize) -> Result<(), Fail> {
        let attrs = std::mem::take(&mut self.frames[of].attrs);
        let buf = std::mem::take(&mut self.frames[of].attr_buf);
        let mut result = Ok(());
        for a in &attrs {
            let value = &buf[a.value.0..a.value.1];
            result = if a.node == NO_NODE {
                let path = self.path(of).to_owned();
                self.key_raw(into, &buf.as_bytes()[a.key.0..a.key.1], false, &path)
                    .and_then(|()| self.scalar(value, Typing::String, of))
            } else {
                let typing = self.nodes[a.node as usize].typing;
                self.key_node(into, a.node, false)
                    .and_then(|()| self.scalar(value, typing, of))
            };
            if result.is_err() {
                break;
            }
        }
        let f = &mut self.frames[of];
        f.attrs = attrs;
        f.attrs.clear();
        f.attr_buf = buf;
        result
    }

    /// Writes `text` typed; `of` is the frame it belongs to, for messages.
    fn scalar(&mut self, text: &str, typing: Typing, of: usize) -> Result<(), Fail> {
        match typing {
            Typing::String => json_str(&mut self.buf, text),
            Typing::NullIfEmpty if text.trim().is_empty() => self.buf.extend_from_slice(b"null"),
            Typing::NullIfEmpty => json_str(&mut self.buf, text),
            Typing::Boolean => match text.trim() {
                t if t == "1" || t.eq_ignore_ascii_case("true") => {
                    self.buf.extend_from_slice(b"true");
                }
                t if t == "0" || t.eq_ignore_ascii_case("false") => {
                    self.buf.extend_from_slice(b"false");
                }
                "" => self.buf.extend_from_slice(b"null"),
                t => return Err(format!("`{t}` at `{}` is not a boolean", self.path(of))),
            },
            Typing::Number => {
                let t = text.trim();
                if t.is_empty() {
                    self.buf.extend_from_slice(b"null");
                } else if let Ok(i) = t.parse::<i64>() {
                    // Writing to a Vec cannot fail.
                    let _ = write!(self.buf, "{i}");
                } else {
                    match t.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
                        Some(n) => {
                            let _ = write!(self.buf, "{n}");
                        }
                        None => {
                            return Err(format!("`{t}` at `{}` is not a number", self.path(of)));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn start(&mut self, e: &BytesStart<'_>) -> Result<(), Fail> {
        if self.depth > self.rules.max_depth {
            return Err(format!(
                "nesting deeper than the limit of {}",
                self.rules.max_depth
            ));
        }
        if self.depth == 1 {
            self.roots += 1;
            if self.roots > 1 {
                return Err("more than one root element".to_owned());
            }
        }
        let parent = self.depth - 1;
        let d = self.depth;
        if self.frames.len() == d {
            self.frames.push(Frame::new());
        }
        let name = e.name();
        let info = match self.find(parent, name.as_ref(), false) {
            Some(info) => info,
            None => {
                let (mut own_path, mut own_key) = (
                    std::mem::take(&mut self.frames[d].own_path),
                    std::mem::take(&mut self.frames[d].own_key),
                );
                let info = self.new_node(
                    parent,
                    name.as_ref(),
                    false,
                    Some((&mut own_path, &mut own_key)),
                );
                let f = &mut self.frames[d];
                f.own_path = own_path;
                f.own_key = own_key;
                info?
            }
        };
        let owner = self.frames[parent].owner;
        self.frames[d].reset(info, if info.unwrap { owner } else { d });
        self.open(owner)?;
        // Counted open before its key is written: messages name its path.
        self.depth += 1;
        if has_attributes(e) {
            self.read_attributes(e, d)?;
            if info.unwrap {
                // An unwrapped level's attributes become fields of the object it merges into.
                self.attributes(d, owner)?;
            }
        }
        if info.unwrap {
            return Ok(());
        }
        if info.node == NO_NODE {
            let key = std::mem::take(&mut self.frames[d].own_key);
            let path = self.frames[d].own_path.clone();
            let r = self.key_raw(owner, &key, info.array, &path);
            self.frames[d].own_key = key;
            r
        } else {
            self.key_node(owner, info.node, info.array)
        }
    }

    /// Reads the attributes of element `e` (frame `d`) into the frame, for its `{`.
    fn read_attributes(&mut self, e: &BytesStart<'_>, d: usize) -> Result<(), Fail> {
        let mut attrs = std::mem::take(&mut self.frames[d].attrs);
        let mut buf = std::mem::take(&mut self.frames[d].attr_buf);
        buf.clear();
        let strip = matches!(self.rules.namespaces, super::Namespaces::Strip);
        let mut result = Ok(());
        // quick-xml's duplicate check allocates per element; a repeated attribute is still
        // refused, as a repeated field, when the attributes are written.
        for a in e.attributes().with_checks(false) {
            let step = (|| {
                let a = a.map_err(|err| format!("malformed attribute: {err}"))?;
                let raw = a.key.as_ref();
                if strip && (raw == b"xmlns" || raw.starts_with(b"xmlns:")) {
                    return Ok(());
                }
                let mut own_key = Vec::new();
                let info = self.lookup(d, raw, true, Some((&mut String::new(), &mut own_key)))?;
                let k0 = buf.len();
                if info.node == NO_NODE {
                    buf.push_str(&String::from_utf8_lossy(&own_key));
                }
                let k1 = buf.len();
                let value = utf8(self.doc, &a.value, "attribute value")?;
                let value = quick_xml::escape::unescape(value).map_err(|err| {
                    format!("attribute `{}`: {err}", String::from_utf8_lossy(raw))
                })?;
                buf.push_str(&value);
                attrs.push(Attr {
                    node: info.node,
                    key: (k0, k1),
                    value: (k1, buf.len()),
                });
                Ok(())
            })();
            if step.is_err() {
                result = step;
                break;
            }
        }
        let f = &mut self.frames[d];
        f.attrs = attrs;
        f.attr_buf = buf;
        result
    }

    fn text(&mut self, s: &str) -> Result<(), Fail> {
        if self.depth == 1 {
            return outside_root(s);
        }
        self.frames[self.depth - 1].push_text(s);
        Ok(())
    }

    /// Text borrowed from the document for as long as the conversion runs.
    fn piece(&mut self, s: &'i str) -> Result<(), Fail> {
        if self.depth == 1 {
            return outside_root(s);
        }
        let f = &mut self.frames[self.depth - 1];
        if f.piece.is_none() && f.text.is_empty() {
            f.piece = Some(s);
        } else {
            f.push_text(s);
        }
        Ok(())
    }

    fn end(&mut self) -> Result<(), Fail> {
        if self.depth <= 1 {
            return Err("unbalanced end tag".to_owned());
        }
        let idx = self.depth - 1;
        let f = &mut self.frames[idx];
        let (transparent, opened, has_attrs, typing, owner) = (
            f.transparent,
            f.opened,
            !f.attrs.is_empty(),
            f.typing,
            f.owner,
        );
        let piece = f.piece.take();
        let owned = std::mem::take(&mut f.text);
        let text: &str = piece.unwrap_or(owned.as_str());
        let result = if transparent {
            // Its owner is an ancestor.
            let t = text.trim();
            if t.is_empty() {
                Ok(())
            } else {
                self.key_text(owner, idx)
                    .map(|()| json_str(&mut self.buf, t))
            }
        } else if opened {
            // Mixed content keeps its text under the text key, trimmed of layout whitespace.
            let t = text.trim();
            let r = if t.is_empty() {
                Ok(())
            } else {
                self.key_text(idx, idx)
                    .and_then(|()| self.scalar(t, typing, idx))
            };
            if self.frames[idx].open_array.is_some() {
                self.buf.push(b']');
            }
            self.buf.push(b'}');
            r
        } else if has_attrs {
            let r = self.open(idx).and_then(|()| {
                if text.is_empty() {
                    Ok(())
                } else {
                    self.key_text(idx, idx)
                        .and_then(|()| self.scalar(text, typing, idx))
                }
            });
            self.buf.push(b'}');
            r
        } else {
            self.scalar(text, typing, idx)
        };
        self.frames[idx].text = owned;
        result?;
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
                self.path(self.depth - 1)
            ));
        }
        if self.roots == 0 {
            return Err("the document has no root element".to_owned());
        }
        if self.frames[0].open_array.is_some() {
            self.buf.push(b']');
        }
        self.buf.push(b'}');
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

    proptest::proptest! {
        #[test]
        fn escape_test_is_exact(s in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40)) {
            let slow = s.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\');
            proptest::prop_assert_eq!(needs_escape(&s), slow);
        }
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
