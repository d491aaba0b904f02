//! JSON ⇄ XML conversion with explicit, per-path rules.
//!
//! Converters that guess (an element seen once becomes an object, twice an array; `007`
//! becomes 7) change a document's shape with its data. Here nothing is guessed: text is a
//! string unless a rule types it, an element is an array only when a rule says so, and an
//! element that repeats without such a rule is an error naming its path. Both directions
//! stream: XML→JSON keeps only the open elements' state, so memory is bounded by depth, not
//! by document size.
//!
//! Hostile input is refused, never interpreted: a `DOCTYPE` (and with it every entity
//! declaration, so no billion laughs and no external entities), unknown entity references,
//! invalid UTF-8 and nesting deeper than the limit are errors with line and column.

mod read;
mod rules;
mod stream;
mod write;

pub use read::xml_reader_to_json;
pub use read::{xml_to_json, xml_to_json_vec, xml_to_value};
pub use rules::{Namespaces, Typing, XmlRules};
pub use stream::json_reader_to_xml;
pub use write::{json_to_xml, json_to_xml_vec, sanitize_name};

/// A document that cannot be converted, located.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (line {line}, column {column})")]
pub struct XmlError {
    /// 1-based line of the problem.
    pub line: usize,
    /// 1-based column (in characters) of the problem.
    pub column: usize,
    /// What is wrong there.
    pub message: String,
}

impl XmlError {
    /// An error at byte `offset` of `input`.
    pub(crate) fn at(input: &[u8], offset: usize, message: impl Into<String>) -> Self {
        let before = &input[..offset.min(input.len())];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map(|p| p + 1)
            .unwrap_or(0);
        let column = String::from_utf8_lossy(&before[line_start..])
            .chars()
            .count()
            + 1;
        Self {
            line,
            column,
            message: message.into(),
        }
    }
}
