//! XML → JSON, streaming: events in, JSON text out, one frame of state per open element.
//!
//! A value is written as soon as its shape is known: an element's key when it starts, its
//! `{` when its first child starts, its scalar or attribute object when it ends. Nothing of
//! a finished element is kept, which is what bounds memory by depth.
//!
//! Speed comes from doing per path what is usually done per element: each distinct path
//! becomes a node of a small trie holding what the rules say about it and its key already
//! encoded as JSON. Siblings come in the same order record after record, so finding the next
//! node is one comparison with the sibling after the last one matched; the trie is kept
//! between documents converted under the same rules. An in-memory document is checked as
//! UTF-8 once, and its names and text are then sliced from it rather than validated and
//! copied piece by piece.

use std::io::{BufRead, Write};

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use serde_json::Value;

use super::XmlError;
use super::rules::{Typing, XmlRules};

/// Converts an XML document (held in memory: errors give line and column) to JSON text.
pub fn xml_to_json<W: Write>(input: &[u8], rules: &XmlRules, out: W) -> Result<(), XmlError> {
    let buf = Vec::with_capacity(input.len().min(FLUSH_AT) + 256);
    convert(input, rules, out, buf, FLUSH_AT).0
}

/// Converts an XML document held in memory to JSON text appended to `out` (on error, what
/// was appended is unspecified). Written in place: no copy through a writer.
pub fn xml_to_json_vec(input: &[u8], rules: &XmlRules, out: &mut Vec<u8>) -> Result<(), XmlError> {
    let mut buf = std::mem::take(out);
    buf.reserve(input.len() + 256);
    let (result, buf) = convert(input, rules, std::io::sink(), buf, usize::MAX);
    *out = buf;
    result
}

/// The conversion of an in-memory document; output collects in `buf`, handed to `out` when
/// it reaches `flush_at`. Gives `buf` back.
fn convert<W: Write>(
    input: &[u8],
    rules: &XmlRules,
    out: W,
    buf: Vec<u8>,
    flush_at: usize,
) -> (Result<(), XmlError>, Vec<u8>) {
    let mut conv = Conv::new(rules, out, buf, flush_at);
    let result = run(input, &mut conv);
    (result, std::mem::take(&mut conv.buf))
}

fn run<'i, W: Write>(input: &'i [u8], conv: &mut Conv<'_, 'i, W>) -> Result<(), XmlError> {
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
    conv.set_doc(doc);
    let mut reader = Reader::from_reader(input);
    reader.config_mut().check_end_names = true;
    let fail = |reader: &Reader<&[u8]>, msg: String| {
        XmlError::at(input, reader.buffer_position() as usize, msg)
    };
    conv.begin().map_err(|m| fail(&reader, m))?;
    loop {
        // The event is read where quick-xml wrote it, never moved: copying it out with wide
        // loads right after narrower stores defeats store forwarding, and that stall was
        // measured at over a tenth of the conversion's time.
        let result = reader.read_event();
        let event = match &result {
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
    let mut out = Vec::new();
    xml_to_json_vec(input, rules, &mut out)?;
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
    let mut conv = Conv::new(rules, out, Vec::with_capacity(FLUSH_AT + 256), FLUSH_AT);
    let fail = |reader: &Reader<R>, msg: String| XmlError {
        line: 0,
        column: reader.buffer_position() as usize,
        message: msg,
    };
    conv.begin().map_err(|m| fail(&reader, m))?;
    let mut buf = Vec::new();
    loop {
        let result = reader.read_event_into(&mut buf);
        let event = match &result {
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

/// Path tries kept between conversions under one set of rules. A route converts documents
/// of one shape again and again; keeping the trie means that after the first document no
/// node is built, no path matched against the rules and nothing allocated for them (for a
/// one-record document that was over half the conversion).
#[derive(Default, Clone)]
pub(crate) struct Tries(std::sync::Arc<std::sync::Mutex<Vec<Trie>>>);

/// A trie and the settings its keys were built under (public fields of the rules that can
/// change without a builder method).
struct Trie {
    nodes: Vec<Node>,
    /// Spent frames, for their buffers.
    frames: Vec<Frame<'static>>,
    settings: (String, String, super::Namespaces),
    /// The text key as written, and its hash (they depend on the settings only).
    text_key: Box<[u8]>,
    text_hash: u64,
}

/// Tries kept at most per rule set (about one per converting thread is enough).
const POOLED: usize = 16;
/// A trie grown past this many nodes (a document of unusual shape, or a hostile one) is
/// dropped rather than kept.
const POOLED_NODES: usize = 1024;

impl std::fmt::Debug for Tries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tries")
    }
}

impl Tries {
    fn pool(&self) -> std::sync::MutexGuard<'_, Vec<Trie>> {
        // A conversion never panics holding the lock; if one did, the tries are still
        // sound (they are only ever pushed and popped whole).
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn take(&self, rules: &XmlRules) -> Trie {
        let trie = self.pool().pop();
        match trie {
            Some(t)
                if t.settings.0 == rules.attr_prefix
                    && t.settings.1 == rules.text_key
                    && t.settings.2 == rules.namespaces =>
            {
                t
            }
            Some(_) | None => Trie {
                nodes: vec![Node {
                    array: false,
                    unwrap: false,
                    typing: Typing::String,
                    key: Box::default(),
                    padded: None,
                    hash: 0,
                    path: Box::default(),
                    children: Names::default(),
                    attrs: Names::default(),
                }],
                frames: Vec::new(),
                settings: (
                    rules.attr_prefix.clone(),
                    rules.text_key.clone(),
                    rules.namespaces.clone(),
                ),
                text_key: json_key(&rules.text_key, false).into(),
                text_hash: key_hash(&json_key(&rules.text_key, false)),
            },
        }
    }

    fn give(&self, trie: Trie) {
        if trie.nodes.is_empty() || trie.nodes.len() > POOLED_NODES {
            return;
        }
        let mut pool = self.pool();
        if pool.len() < POOLED {
            pool.push(trie);
        }
    }
}

/// Room for a padded key (see `Node::padded`).
const PAD: usize = 32;

/// `,` and `key` padded to `PAD` bytes, when it fits.
fn padded(key: &[u8]) -> Option<[u8; PAD]> {
    let mut p = [0; PAD];
    p[0] = b',';
    p.get_mut(1..=key.len())?.copy_from_slice(key);
    Some(p)
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
    /// The JSON field name, quoted and escaped, with its `:` (`:[` for an array), ready to
    /// write.
    key: Box<[u8]>,
    /// `,` and the key, zero-padded, when it fits: written with a fixed-size copy and a
    /// truncate instead of a `memcpy` call (keys are written once per element).
    padded: Option<[u8; PAD]>,
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
    list: Vec<Name>,
    last: usize,
}

struct Name {
    /// The first eight bytes, zero-padded (see `head`): most names are decided by it.
    head: u64,
    raw: Box<[u8]>,
    id: u32,
}

impl Name {
    #[inline(always)]
    fn is(&self, raw: &[u8], head: u64) -> bool {
        self.head == head
            && self.raw.len() == raw.len()
            && (raw.len() <= 8 || self.raw[8..] == raw[8..])
    }
}

impl Names {
    /// `head` is `head(…, raw)`.
    #[inline]
    fn find(&mut self, raw: &[u8], head: u64) -> Option<u32> {
        let n = self.list.len();
        if n == 0 {
            return None;
        }
        let guess = if self.last + 1 == n { 0 } else { self.last + 1 };
        let i = if self.list[guess].is(raw, head) {
            guess
        } else {
            self.list.iter().position(|name| name.is(raw, head))?
        };
        self.last = i;
        Some(self.list[i].id)
    }

    fn add(&mut self, raw: &[u8], id: u32) {
        self.list.push(Name {
            head: head(None, raw),
            raw: raw.into(),
            id,
        });
        self.last = self.list.len() - 1;
    }
}

/// The first eight bytes of a name as a word, zero-padded: one comparison tells most names
/// apart. A name inside the in-memory document is read as one eight-byte load from it
/// (masked to the name's length) rather than copied byte by byte.
#[inline(always)]
fn head(doc: Option<&str>, raw: &[u8]) -> u64 {
    let n = raw.len().min(8);
    let mask = if n == 8 {
        u64::MAX
    } else {
        (1u64 << (8 * n)) - 1
    };
    match block::<8>(doc, raw) {
        Some(w) => u64::from_le_bytes(*w) & mask,
        None => {
            let mut w = [0; 8];
            w[..n].copy_from_slice(&raw[..n]);
            u64::from_le_bytes(w)
        }
    }
}

/// The path and written key of a name past the node limit (it has no node to hold them).
struct Own {
    path: String,
    key: Vec<u8>,
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

struct Frame<'i> {
    node: u32,
    typing: Typing,
    /// Unwrapped: its children belong to the nearest ancestor that is not.
    transparent: bool,
    /// Index of the frame whose object receives this element's children (itself unless
    /// unwrapped): kept here so no element start searches the stack for it.
    owner: usize,
    /// This element is an object (`{` written): it has attributes or child elements.
    opened: bool,
    /// It has child elements: its own text is then mixed content, trimmed.
    children: bool,
    fields: usize,
    /// Hash of the name of the array field left open (its `]` not yet written).
    open_array: Option<u64>,
    /// Hashes of the field names written so far: repeat detection without string compares
    /// (a 64-bit collision among one element's fields is not a practical risk).
    seen: Vec<u64>,
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
            children: false,
            fields: 0,
            open_array: None,
            seen: Vec::new(),
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
        self.children = false;
        self.fields = 0;
        self.open_array = None;
        self.seen.clear();
        self.piece = None;
        self.text.clear();
    }

    /// The frame without its borrowed text, to be kept beyond the document.
    fn detach(self) -> Frame<'static> {
        Frame {
            node: self.node,
            typing: self.typing,
            transparent: self.transparent,
            owner: self.owner,
            opened: self.opened,
            children: self.children,
            fields: self.fields,
            open_array: self.open_array,
            seen: self.seen,
            piece: None,
            text: self.text,
            own_path: self.own_path,
            own_key: self.own_key,
        }
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
    /// The document has a `\r` somewhere, so text must be checked for line ends to
    /// normalize (looked for once, not in every piece of text).
    cr: bool,
    /// `frames[..depth]` are the open elements; the rest are spent frames kept for reuse
    /// (frames are updated in place: moving one costs more than the work done on it).
    frames: Vec<Frame<'i>>,
    depth: usize,
    roots: usize,
    nodes: Vec<Node>,
    /// What the trie was built under, for when it is given back (with the text key).
    settings: (String, String, super::Namespaces),
    text_key: Box<[u8]>,
    text_hash: u64,
    /// Output collected here and handed to `out` in large blocks: the converter writes
    /// many tiny pieces (`,`, `:`, quotes) that a `Write` call each would dominate.
    buf: Vec<u8>,
    flush_at: usize,
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
    let word = |c: &[u8]| {
        let mut w = [0; 8];
        w.copy_from_slice(c);
        let x = u64::from_le_bytes(w);
        // Bytes below 0x20: `x - 0x20` borrows into the high bit for those (and ASCII
        // bytes only; bytes ≥ 0x80 are masked out by `!x`).
        let control = x.wrapping_sub(0x20 * ONES) & !x & HIGH;
        control | zero(x ^ (u64::from(b'"') * ONES)) | zero(x ^ (u64::from(b'\\') * ONES)) != 0
    };
    if s.len() < 8 {
        return s.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\');
    }
    let mut chunks = s.chunks_exact(8);
    if chunks.any(word) {
        return true;
    }
    // The last eight bytes, overlapping the chunks already tested: no byte-by-byte tail.
    !chunks.remainder().is_empty() && word(&s[s.len() - 8..])
}

/// Writes `s` as a JSON string. Most text needs no escaping: then it is one copy.
#[inline]
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

/// A field name as written: quoted, escaped, with its `:` (`:[` opening an array).
fn json_key(name: &str, array: bool) -> Vec<u8> {
    let mut key = Vec::with_capacity(name.len() + 4);
    json_str(&mut key, name);
    key.extend_from_slice(if array { b":[" } else { b":" });
    key
}

/// The hash of a key by its name alone (without the `:`/`:[` after it): an array and a
/// plain field of the same name are the same field.
fn key_hash(key: &[u8]) -> u64 {
    let end = key
        .iter()
        .rposition(|&b| b == b'"')
        .map_or(key.len(), |i| i + 1);
    fnv1a(&key[..end])
}

/// Where `part` starts in `doc`, when it lies inside it (events of an in-memory document
/// borrow from it).
fn offset(doc: &str, part: &[u8]) -> Option<usize> {
    let at = (part.as_ptr() as usize).checked_sub(doc.as_ptr() as usize)?;
    (at.checked_add(part.len())? <= doc.len()).then_some(at)
}

/// The `N` bytes of `doc` from where `part` starts, when there are that many: a fixed-size
/// read that the compiler turns into plain loads.
fn block<'i, const N: usize>(doc: Option<&'i str>, part: &[u8]) -> Option<&'i [u8; N]> {
    let doc = doc?;
    let at = offset(doc, part)?;
    doc.as_bytes().get(at..at.checked_add(N)?)?.try_into().ok()
}

/// `part` as a slice of `doc` when it lies inside it: no validation needed, and the result
/// lives as long as the document.
fn within<'i>(doc: Option<&'i str>, part: &[u8]) -> Option<&'i str> {
    let doc = doc?;
    let at = offset(doc, part)?;
    doc.get(at..at + part.len())
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

/// One attribute as written in its tag.
struct RawAttr<'a> {
    name: &'a [u8],
    /// Still escaped.
    value: &'a [u8],
    /// The value holds a reference (`&…;`) to unescape.
    escaped: bool,
}

/// Reads the next attribute of a start tag's attribute text (what follows the element
/// name), advancing `rest`. A repeated name is refused when the attributes are written.
///
/// quick-xml's attribute iterator walks byte by byte and allocates to find duplicates;
/// on tenant documents it cost more than the rest of the conversion of a lookup element.
fn next_attribute<'a>(rest: &mut &'a [u8]) -> Result<Option<RawAttr<'a>>, Fail> {
    let ws = |b: u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    let s = *rest;
    let mut i = s.iter().position(|&b| !ws(b)).unwrap_or(s.len());
    if i == s.len() {
        *rest = &[];
        return Ok(None);
    }
    if i == 0 {
        return Err("malformed attribute: attributes must be separated by whitespace".to_owned());
    }
    let start = i;
    i += s[i..]
        .iter()
        .position(|&b| b == b'=' || ws(b))
        .unwrap_or(s.len() - i);
    let name = &s[start..i];
    let named = || String::from_utf8_lossy(name).into_owned();
    while i < s.len() && ws(s[i]) {
        i += 1;
    }
    if name.is_empty() || s.get(i) != Some(&b'=') {
        return Err(format!("malformed attribute: `{}` has no value", named()));
    }
    i += 1;
    while i < s.len() && ws(s[i]) {
        i += 1;
    }
    let quote = match s.get(i) {
        Some(&q @ (b'"' | b'\'')) => q,
        Some(_) | None => {
            return Err(format!(
                "malformed attribute: the value of `{}` is not quoted",
                named()
            ));
        }
    };
    // One search finds the closing quote, a stray `<` and any reference.
    let from = i + 1;
    let mut end = from;
    let mut escaped = false;
    loop {
        match memchr::memchr3(quote, b'<', b'&', &s[end..]).map(|at| (end + at, s[end + at])) {
            Some((at, b'&')) => {
                escaped = true;
                end = at + 1;
            }
            Some((_, b'<')) => {
                return Err(format!(
                    "malformed attribute: `<` in the value of `{}`",
                    named()
                ));
            }
            Some((at, _)) => {
                end = at;
                break;
            }
            None => {
                return Err(format!(
                    "malformed attribute: the value of `{}` is not closed",
                    named()
                ));
            }
        }
    }
    *rest = &s[end + 1..];
    Ok(Some(RawAttr {
        name,
        value: &s[from..end],
        escaped,
    }))
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
    let name = name.trim_end_matches([':', '[']).trim_matches('"');
    match c {
        Clash::Repeats => format!("element `{name}` repeats at `{path}`; declare it an array"),
        Clash::Interrupted => {
            format!("array element `{name}` is interrupted by other elements at `{path}`")
        }
    }
}

/// Writes the key of a field of frame `f` (`key` ends with `:[` for an array; the next item
/// of an open array is only a `,`). `hash` is the `key_hash` of `key`.
fn field(
    f: &mut Frame<'_>,
    out: &mut Vec<u8>,
    key: &[u8],
    padded: Option<&[u8; PAD]>,
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
    let at = out.len();
    match (padded, comma) {
        (Some(p), true) => {
            out.extend_from_slice(p);
            out.truncate(at + 1 + key.len());
        }
        (Some(p), false) => {
            out.extend_from_slice(&p[1..]);
            out.truncate(at + key.len());
        }
        (None, true) => {
            out.push(b',');
            out.extend_from_slice(key);
        }
        (None, false) => out.extend_from_slice(key),
    }
    Ok(())
}

impl<W> Drop for Conv<'_, '_, W> {
    fn drop(&mut self) {
        let frames = std::mem::take(&mut self.frames);
        self.rules.tries.give(Trie {
            frames: frames.into_iter().map(Frame::detach).collect(),
            nodes: std::mem::take(&mut self.nodes),
            settings: std::mem::take(&mut self.settings),
            text_key: std::mem::take(&mut self.text_key),
            text_hash: self.text_hash,
        });
    }
}

impl<'r, 'i, W: Write> Conv<'r, 'i, W> {
    /// `buf`: where output collects (kept, cleared or not); handed to `out` at `flush_at`.
    fn new(rules: &'r XmlRules, out: W, buf: Vec<u8>, flush_at: usize) -> Self {
        let trie = rules.tries.take(rules);
        Self {
            rules,
            out,
            doc: None,
            cr: true,
            frames: trie.frames,
            depth: 0,
            roots: 0,
            nodes: trie.nodes,
            settings: trie.settings,
            text_key: trie.text_key,
            text_hash: trie.text_hash,
            buf,
            flush_at,
        }
    }

    /// The document is in memory and valid UTF-8.
    fn set_doc(&mut self, doc: &'i str) {
        self.doc = Some(doc);
        self.cr = memchr::memchr(b'\r', doc.as_bytes()).is_some();
    }

    /// Opens the virtual top frame: the output is always an object.
    fn begin(&mut self) -> Result<(), Fail> {
        if self.frames.is_empty() {
            self.frames.push(Frame::new());
        }
        let top = Info {
            node: TOP,
            array: false,
            unwrap: false,
            typing: Typing::String,
        };
        self.frames[0].reset(top, 0);
        self.frames[0].opened = true;
        self.depth = 1;
        self.buf.push(b'{');
        Ok(())
    }

    /// Handles one event; `true` at the end of the document.
    fn event(&mut self, event: &Event<'_>) -> Result<bool, Fail> {
        match event {
            Event::Start(e) => self.start(e)?,
            Event::Empty(e) => {
                self.start(e)?;
                self.end()?;
            }
            Event::End(_) => self.end()?,
            Event::Text(t) => {
                if let Some(s) = within(self.doc, t).filter(|s| !self.cr || !s.contains('\r')) {
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
                let s = utf8(self.doc, c, "CDATA")?;
                self.text(s)?;
            }
            Event::GeneralRef(r) => {
                let c = resolve_ref(r)?;
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
        let word = head(self.doc, raw);
        let names = if attr {
            &mut self.nodes[pnode as usize].attrs
        } else {
            &mut self.nodes[pnode as usize].children
        };
        let id = names.find(raw, word)?;
        let n = &self.nodes[id as usize];
        Some(Info {
            node: id,
            array: n.array,
            unwrap: n.unwrap,
            typing: n.typing,
        })
    }

    /// A name not seen before at its path: mapped, matched against the rules, remembered.
    /// Past the node limit nothing is remembered, and the path and key come back instead.
    #[cold]
    #[inline(never)]
    fn new_node(
        &mut self,
        parent: usize,
        raw: &[u8],
        attr: bool,
    ) -> Result<(Info, Option<Own>), Fail> {
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
        let limited = pnode == NO_NODE || self.nodes.len() >= NODE_LIMIT;
        let id = if limited {
            NO_NODE
        } else {
            self.nodes.len() as u32
        };
        let mut info = Info::of(self.rules, &path, id);
        // Attributes are fields of their element, never arrays.
        info.array &= !attr;
        let key = json_key(&key, info.array);
        if limited {
            return Ok((info, Some(Own { path, key })));
        }
        self.nodes.push(Node {
            array: info.array,
            unwrap: info.unwrap,
            typing: info.typing,
            hash: key_hash(&key),
            padded: padded(&key),
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
        Ok((info, None))
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
        field(
            &mut self.frames[i],
            &mut self.buf,
            &n.key,
            n.padded.as_ref(),
            n.hash,
            array,
        )
        .map_err(|c| clash(c, &n.key, &n.path))
    }

    /// Writes into frame `i` a key that has no node (see `json_key`); the path of frame
    /// `of` names it in a message.
    fn key_raw(&mut self, i: usize, key: &[u8], array: bool, of: usize) -> Result<(), Fail> {
        match field(
            &mut self.frames[i],
            &mut self.buf,
            key,
            None,
            key_hash(key),
            array,
        ) {
            Ok(()) => Ok(()),
            Err(c) => Err(clash(c, key, self.path(of))),
        }
    }

    /// Writes into frame `i` the text key (mixed content, text beside attributes).
    fn key_text(&mut self, i: usize, of: usize) -> Result<(), Fail> {
        match field(
            &mut self.frames[i],
            &mut self.buf,
            &self.text_key,
            None,
            self.text_hash,
            false,
        ) {
            Ok(()) => Ok(()),
            Err(c) => Err(clash(c, &self.text_key, self.path(of))),
        }
    }

    /// Writes the `{` of frame `i` if not yet done: it has turned out to be an object.
    #[inline]
    fn open(&mut self, i: usize) {
        let f = &mut self.frames[i];
        if !f.opened {
            f.opened = true;
            self.buf.push(b'{');
        }
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
                let (info, own) = self.new_node(parent, name.as_ref(), false)?;
                if let Some(own) = own {
                    let f = &mut self.frames[d];
                    f.own_path = own.path;
                    f.own_key = own.key;
                }
                info
            }
        };
        let owner = self.frames[parent].owner;
        self.frames[parent].children = true;
        self.frames[d].reset(info, if info.unwrap { owner } else { d });
        self.open(owner);
        // Counted open before its key is written: messages name its path.
        self.depth += 1;
        if !info.unwrap {
            if info.node == NO_NODE {
                let key = std::mem::take(&mut self.frames[d].own_key);
                let r = self.key_raw(owner, &key, info.array, d);
                self.frames[d].own_key = key;
                r?;
            } else {
                self.key_node(owner, info.node, info.array)?;
            }
        }
        if has_attributes(e) {
            // An unwrapped level's attributes become fields of the object it merges into.
            let into = if info.unwrap { owner } else { d };
            self.attributes(e, d, into)?;
        }
        Ok(())
    }

    /// Writes the attributes of element `e` (frame `d`) as fields of frame `into`, opening
    /// it: an element with attributes is an object.
    fn attributes(&mut self, e: &BytesStart<'_>, d: usize, into: usize) -> Result<(), Fail> {
        let strip = matches!(self.rules.namespaces, super::Namespaces::Strip);
        let mut rest = e.attributes_raw();
        while let Some(RawAttr {
            name: raw,
            value,
            escaped,
        }) = next_attribute(&mut rest)?
        {
            if strip && (raw == b"xmlns" || raw.starts_with(b"xmlns:")) {
                continue;
            }
            let value = utf8(self.doc, value, "attribute value")?;
            let value = if escaped {
                quick_xml::escape::unescape(value)
                    .map_err(|err| format!("attribute `{}`: {err}", String::from_utf8_lossy(raw)))?
            } else {
                std::borrow::Cow::Borrowed(value)
            };
            self.open(into);
            let (info, own) = match self.find(d, raw, true) {
                Some(info) => (info, None),
                None => self.new_node(d, raw, true)?,
            };
            let written = match own {
                Some(own) => self.key_raw(into, &own.key, false, d),
                None => self.key_node(into, info.node, false),
            };
            if written.is_err() {
                return Err(format!(
                    "attribute `{}` repeats at `{}`",
                    String::from_utf8_lossy(raw),
                    self.path(d)
                ));
            }
            self.scalar(&value, info.typing, d)?;
        }
        Ok(())
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
        // The usual element: one piece of text, borrowed, written as a string.
        match f.piece.take() {
            Some(piece) if !f.opened && !f.transparent && f.typing == Typing::String => {
                self.doc_str(piece);
            }
            Some(piece) => self.close(idx, piece)?,
            None => {
                let owned = std::mem::take(&mut f.text);
                let result = self.close(idx, &owned);
                self.frames[idx].text = owned;
                result?;
            }
        }
        self.depth -= 1;
        if self.buf.len() >= self.flush_at {
            self.flush_buf()?;
        }
        Ok(())
    }

    /// Writes `s`, a slice of the document, as a JSON string. Short text needing no escape
    /// (most element text) is copied as a fixed-size block read from the document, then cut
    /// to length: no `memcpy` call for a few bytes.
    #[inline]
    fn doc_str(&mut self, s: &str) {
        const BLOCK: usize = 32;
        match block::<BLOCK>(self.doc, s.as_bytes()) {
            Some(b) if s.len() <= BLOCK && !needs_escape(s.as_bytes()) => {
                let at = self.buf.len();
                self.buf.push(b'"');
                self.buf.extend_from_slice(b);
                self.buf.truncate(at + 1 + s.len());
                self.buf.push(b'"');
            }
            Some(_) | None => json_str(&mut self.buf, s),
        }
    }

    /// Writes what is left of element `idx` at its end, given its text.
    fn close(&mut self, idx: usize, text: &str) -> Result<(), Fail> {
        let f = &self.frames[idx];
        let (transparent, opened, children, typing, owner) =
            (f.transparent, f.opened, f.children, f.typing, f.owner);
        if transparent {
            // Its owner is an ancestor.
            let t = text.trim();
            if t.is_empty() {
                Ok(())
            } else {
                self.key_text(owner, idx)
                    .map(|()| json_str(&mut self.buf, t))
            }
        } else if opened {
            // Beside child elements, text is mixed content: trimmed of layout whitespace.
            // Beside attributes only, it is the element's value, kept as it is.
            let t = if children { text.trim() } else { text };
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
        } else {
            self.scalar(text, typing, idx)
        }
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
        if self.flush_at < usize::MAX {
            self.flush_buf()?;
        }
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
    fn malformed_attributes_are_refused() {
        for (doc, says) in [
            (r#"<r a></r>"#, "has no value"),
            (r#"<r a=1></r>"#, "not quoted"),
            (r#"<r a="1></r>"#, "not closed"),
            (r#"<r a="<"></r>"#, "`<`"),
            (r#"<r a="1"b="2"></r>"#, "separated by whitespace"),
            (r#"<r a="1" a="2"></r>"#, "repeats"),
            (r#"<r a="&bogus;"></r>"#, "attribute `a`"),
        ] {
            let e = xml_to_value(doc.as_bytes(), &XmlRules::default()).unwrap_err();
            assert!(e.message.contains(says), "{doc}: {e}");
        }
        let v = conv("<r a = 'x &amp; y'\n\tb=\"2\"/>", &XmlRules::default());
        assert_eq!(v, json!({"r": {"@a": "x & y", "@b": "2"}}));
    }

    #[test]
    fn rules_reused_across_documents_give_the_same_answers() {
        let rules = XmlRules::default().array("r/x").typed("n", Typing::Number);
        let a = "<r><x>1</x><x>2</x><n>3</n></r>";
        let b = r#"<r><n>4</n><y k="v">t</y></r>"#;
        for _ in 0..3 {
            assert_eq!(conv(a, &rules), json!({"r": {"x": ["1", "2"], "n": 3}}));
            assert_eq!(
                conv(b, &rules),
                json!({"r": {"n": 4, "y": {"@k": "v", "#text": "t"}}})
            );
        }
        // A public setting changed after conversions is honoured: kept tries are not reused.
        let mut changed = rules.clone();
        changed.attr_prefix = "-".into();
        assert_eq!(
            conv(b, &changed),
            json!({"r": {"n": 4, "y": {"-k": "v", "#text": "t"}}})
        );
        // Appending to a buffer leaves what was there.
        let mut out = b"[".to_vec();
        xml_to_json_vec(a.as_bytes(), &rules, &mut out).unwrap();
        assert!(
            out.starts_with(b"[{\"r\""),
            "{}",
            String::from_utf8_lossy(&out)
        );
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
