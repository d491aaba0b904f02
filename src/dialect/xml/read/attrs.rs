//! Start-tag attributes: telling whether a tag has any, reading them straight from the
//! tag's text, and writing them as fields of the element's object. Most elements have
//! none, so none of this runs for them; for those that do, one pass finds each value's end
//! and whether it needs unescaping.

use std::io::Write;

use quick_xml::events::BytesStart;

use super::Fail;
use super::doc::utf8;
use super::emit::Conv;
use crate::dialect::xml::Namespaces;

/// An element's attributes are more than layout whitespace (most elements have none, and
/// then the attribute parser is not started at all).
pub(super) fn has_attributes(e: &BytesStart<'_>) -> bool {
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

/// Attributes as fields of the element's object.
impl<W: Write> Conv<'_, '_, W> {
    /// Writes the attributes of element `e` (frame `d`) as fields of frame `into`, opening
    /// it: an element with attributes is an object.
    pub(super) fn attributes(
        &mut self,
        e: &BytesStart<'_>,
        d: usize,
        into: usize,
    ) -> Result<(), Fail> {
        let strip = matches!(self.rules.namespaces, Namespaces::Strip);
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
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::dialect::xml::XmlRules;
    use crate::dialect::xml::read::tests::conv;
    use crate::dialect::xml::read::xml_to_value;

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
    fn attributes_text_and_lookups() {
        let xml = r#"<tenant><partner type="Tenant" uri="/t/9" displayValue="Acme &amp; Co">9</partner></tenant>"#;
        let v = conv(xml, &XmlRules::default());
        assert_eq!(
            v,
            json!({"tenant": {"partner": {"@type": "Tenant", "@uri": "/t/9", "@displayValue": "Acme & Co", "#text": "9"}}})
        );
    }
}
