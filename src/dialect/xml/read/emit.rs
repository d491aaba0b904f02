//! The converter: XML events in, JSON text out. It owns the open elements' frames and the
//! output, and decides when each piece of a value is written (a key when its element
//! starts, `{` at the first child, a scalar or `}` at the end). The helpers in the other
//! files write what they are asked to; when is decided here, in event order, which is what
//! keeps the output well-formed.

use std::io::Write;

use quick_xml::events::{BytesStart, Event};

use super::Fail;
use super::attrs::has_attributes;
use super::doc::{block, utf8, within};
use super::frame::{Frame, clash, field};
use super::json::{json_str, key_hash, needs_escape};
use super::trie::{Info, NO_NODE, Node, TOP, Trie};
use crate::dialect::xml::Namespaces;
use crate::dialect::xml::rules::{Typing, XmlRules};

/// The conversion of one document.
pub(super) struct Conv<'r, 'i, W> {
    pub(super) rules: &'r XmlRules,
    out: W,
    /// The whole document when it is in memory and valid UTF-8: names and text are sliced
    /// from it instead of being validated and copied piece by piece.
    pub(super) doc: Option<&'i str>,
    /// The document has a `\r` somewhere, so text must be checked for line ends to
    /// normalize (looked for once, not in every piece of text).
    cr: bool,
    /// `frames[..depth]` are the open elements; the rest are spent frames kept for reuse
    /// (frames are updated in place: moving one costs more than the work done on it).
    pub(super) frames: Vec<Frame<'i>>,
    depth: usize,
    roots: usize,
    pub(super) nodes: Vec<Node>,
    /// What the trie was built under, for when it is given back (with the text key).
    settings: (String, String, Namespaces),
    text_key: Box<[u8]>,
    text_hash: u64,
    /// Output collected here and handed to `out` in large blocks: the converter writes
    /// many tiny pieces (`,`, `:`, quotes) that a `Write` call each would dominate.
    pub(super) buf: Vec<u8>,
    flush_at: usize,
}

/// Whitespace may stand between the prolog and the root; text may not.
fn outside_root(s: &str) -> Result<(), Fail> {
    if s.trim().is_empty() {
        Ok(())
    } else {
        Err("text outside the root element".to_owned())
    }
}

/// The character a reference stands for: a character reference, or one of the five
/// predefined entities (no DOCTYPE is read, so no other entity can be declared).
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
    pub(super) fn new(rules: &'r XmlRules, out: W, buf: Vec<u8>, flush_at: usize) -> Self {
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
    pub(super) fn set_doc(&mut self, doc: &'i str) {
        self.doc = Some(doc);
        self.cr = memchr::memchr(b'\r', doc.as_bytes()).is_some();
    }

    /// Opens the virtual top frame: the output is always an object.
    pub(super) fn begin(&mut self) -> Result<(), Fail> {
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
    pub(super) fn event(&mut self, event: &Event<'_>) -> Result<bool, Fail> {
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
    pub(super) fn path(&self, i: usize) -> &str {
        let f = &self.frames[i];
        if f.node == NO_NODE {
            &f.own_path
        } else {
            &self.nodes[f.node as usize].path
        }
    }

    fn flush_buf(&mut self) -> Result<(), Fail> {
        self.out
            .write_all(&self.buf)
            .map_err(|e| format!("write failed: {e}"))?;
        self.buf.clear();
        Ok(())
    }

    /// Writes into frame `i` the key of `node`.
    pub(super) fn key_node(&mut self, i: usize, node: u32, array: bool) -> Result<(), Fail> {
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
    pub(super) fn key_raw(
        &mut self,
        i: usize,
        key: &[u8],
        array: bool,
        of: usize,
    ) -> Result<(), Fail> {
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
    pub(super) fn open(&mut self, i: usize) {
        let f = &mut self.frames[i];
        if !f.opened {
            f.opened = true;
            self.buf.push(b'{');
        }
    }

    /// Writes `text` typed; `of` is the frame it belongs to, for messages.
    pub(super) fn scalar(&mut self, text: &str, typing: Typing, of: usize) -> Result<(), Fail> {
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

    pub(super) fn finish(&mut self) -> Result<(), Fail> {
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
    use serde_json::json;

    use crate::dialect::xml::read::tests::conv;
    use crate::dialect::xml::read::xml_to_value;
    use crate::dialect::xml::{Namespaces, Typing, XmlRules};

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
        let strip = XmlRules::default().namespaces(Namespaces::Strip);
        let v = conv(r#"<lj:r xmlns:lj="urn:x"><lj:a>1</lj:a></lj:r>"#, &strip);
        assert_eq!(v, json!({"r": {"a": "1"}}));
    }
}
