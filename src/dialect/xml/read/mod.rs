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
//!
//! The entry points are here. The converter that handles events is in `emit`; the pieces it
//! relies on have a file each, so each one's shortcuts sit with the data they depend on: the
//! path trie (`trie`), the open element's frame (`frame`), start-tag attributes (`attrs`),
//! JSON text (`json`) and slices of the in-memory document (`doc`).

mod attrs;
mod doc;
mod emit;
mod frame;
mod json;
mod trie;

use std::io::{BufRead, Write};

use quick_xml::Reader;
use serde_json::Value;

use super::XmlError;
use super::rules::XmlRules;
use emit::Conv;

pub(crate) use trie::Tries;

/// Output handed to the writer once this much has collected.
const FLUSH_AT: usize = 64 * 1024;

/// Why a conversion failed, without its position (the reader loop adds that).
type Fail = String;

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

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::xml_to_value;
    use crate::dialect::xml::XmlRules;

    /// A document that must convert, as a value.
    pub(super) fn conv(xml: &str, rules: &XmlRules) -> Value {
        xml_to_value(xml.as_bytes(), rules).unwrap_or_else(|e| panic!("{e}"))
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
