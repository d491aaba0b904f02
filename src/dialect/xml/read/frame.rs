//! The state of one open element, and writing a field into it: whether the element has
//! become an object, which fields it has written (so a repeat is caught without keeping
//! their names) and which array is still open. Frames are reused across elements and
//! documents, since moving or reallocating one costs more than the work done with it.

use super::Fail;
use super::trie::{Info, PAD, TOP};
use crate::dialect::xml::rules::Typing;

/// One open element (or a spent frame kept for its buffers).
pub(super) struct Frame<'i> {
    pub(super) node: u32,
    pub(super) typing: Typing,
    /// Unwrapped: its children belong to the nearest ancestor that is not.
    pub(super) transparent: bool,
    /// Index of the frame whose object receives this element's children (itself unless
    /// unwrapped): kept here so no element start searches the stack for it.
    pub(super) owner: usize,
    /// This element is an object (`{` written): it has attributes or child elements.
    pub(super) opened: bool,
    /// It has child elements: its own text is then mixed content, trimmed.
    pub(super) children: bool,
    fields: usize,
    /// Hash of the name of the array field left open (its `]` not yet written).
    pub(super) open_array: Option<u64>,
    /// Hashes of the field names written so far: repeat detection without string compares
    /// (a 64-bit collision among one element's fields is not a practical risk).
    seen: Vec<u64>,
    /// The element's text when it came as one piece of the in-memory document (the usual
    /// case): borrowed, not copied. More pieces (entities, CDATA, comments between) or a
    /// streamed document collect in `text`.
    pub(super) piece: Option<&'i str>,
    pub(super) text: String,
    /// Only for an element past the node limit: its path and JSON-encoded key.
    pub(super) own_path: String,
    pub(super) own_key: Vec<u8>,
}

impl<'i> Frame<'i> {
    pub(super) fn new() -> Self {
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
    pub(super) fn reset(&mut self, info: Info, owner: usize) {
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
    pub(super) fn detach(self) -> Frame<'static> {
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

    pub(super) fn push_text(&mut self, s: &str) {
        if let Some(p) = self.piece.take() {
            self.text.push_str(p);
        }
        self.text.push_str(s);
    }
}

/// Why a field cannot be written.
#[derive(Debug, Clone, Copy)]
pub(super) enum Clash {
    /// A field of that name was written already and the name is not an array.
    Repeats,
    /// An array's items are not consecutive.
    Interrupted,
}

/// The message for a clash of field `key` in the element at `path`.
pub(super) fn clash(c: Clash, key: &[u8], path: &str) -> Fail {
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
pub(super) fn field(
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::dialect::xml::XmlRules;
    use crate::dialect::xml::read::tests::conv;
    use crate::dialect::xml::read::xml_to_value;

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
}
