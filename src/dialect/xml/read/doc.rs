//! Names and text as slices of the in-memory document. The reader checks the whole
//! document as UTF-8 once, so any part of it an event borrows is valid text: slicing it
//! here replaces validating and copying each name and text piece.

use super::Fail;

/// Where `part` starts in `doc`, when it lies inside it (events of an in-memory document
/// borrow from it).
fn offset(doc: &str, part: &[u8]) -> Option<usize> {
    let at = (part.as_ptr() as usize).checked_sub(doc.as_ptr() as usize)?;
    (at.checked_add(part.len())? <= doc.len()).then_some(at)
}

/// The `N` bytes of `doc` from where `part` starts, when there are that many: a fixed-size
/// read that the compiler turns into plain loads.
pub(super) fn block<'i, const N: usize>(doc: Option<&'i str>, part: &[u8]) -> Option<&'i [u8; N]> {
    let doc = doc?;
    let at = offset(doc, part)?;
    doc.as_bytes().get(at..at.checked_add(N)?)?.try_into().ok()
}

/// `part` as a slice of `doc` when it lies inside it: no validation needed, and the result
/// lives as long as the document.
pub(super) fn within<'i>(doc: Option<&'i str>, part: &[u8]) -> Option<&'i str> {
    let doc = doc?;
    let at = offset(doc, part)?;
    doc.get(at..at + part.len())
}

/// `part` as text: sliced from the document, or validated.
pub(super) fn utf8<'a>(doc: Option<&'a str>, part: &'a [u8], what: &str) -> Result<&'a str, Fail> {
    match within(doc, part) {
        Some(s) => Ok(s),
        None => std::str::from_utf8(part).map_err(|e| format!("{what} is not valid UTF-8: {e}")),
    }
}
