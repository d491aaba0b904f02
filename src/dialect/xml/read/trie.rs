//! The path trie: each distinct element or attribute path becomes a node holding what the
//! rules say about it and its JSON key already written out, so the per-element work is a
//! name comparison and a few copies. Tries are pooled per rule set, which is what makes
//! every document after the first of a shape build nothing and match no rules.

use std::io::Write;

use super::Fail;
use super::doc::{block, utf8};
use super::emit::Conv;
use super::frame::Frame;
use super::json::{json_key, key_hash};
use crate::dialect::xml::Namespaces;
use crate::dialect::xml::rules::{Typing, XmlRules};

/// Path tries kept between conversions under one set of rules. A route converts documents
/// of one shape again and again; keeping the trie means that after the first document no
/// node is built, no path matched against the rules and nothing allocated for them (for a
/// one-record document that was over half the conversion).
#[derive(Default, Clone)]
pub(crate) struct Tries(std::sync::Arc<parking_lot::Mutex<Vec<Trie>>>);

/// A trie and the settings its keys were built under (public fields of the rules that can
/// change without a builder method).
pub(super) struct Trie {
    pub(super) nodes: Vec<Node>,
    /// Spent frames, for their buffers.
    pub(super) frames: Vec<Frame<'static>>,
    pub(super) settings: (String, String, Namespaces),
    /// The text key as written, and its hash (they depend on the settings only).
    pub(super) text_key: Box<[u8]>,
    pub(super) text_hash: u64,
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
    fn pool(&self) -> parking_lot::MutexGuard<'_, Vec<Trie>> {
        // parking_lot's lock does not poison: a conversion that panicked holding it left
        // the tries sound (they are only ever pushed and popped whole).
        self.0.lock()
    }

    /// A pooled trie built under the rules' current settings, or a new one.
    pub(super) fn take(&self, rules: &XmlRules) -> Trie {
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

    /// Keeps a conversion's trie for the next one, unless the pool is full or it grew too big.
    pub(super) fn give(&self, trie: Trie) {
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
pub(super) const PAD: usize = 32;

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
/// The node of a path past the limit: the frame holds its path and key itself (`Own`).
pub(super) const NO_NODE: u32 = u32::MAX;
/// The virtual top frame's node, the root of every path.
pub(super) const TOP: u32 = 0;

/// One distinct element (or attribute) path and everything the rules say about it, worked
/// out once: the per-element work is then a name comparison and a few copies.
pub(super) struct Node {
    array: bool,
    unwrap: bool,
    typing: Typing,
    /// The JSON field name, quoted and escaped, with its `:` (`:[` for an array), ready to
    /// write.
    pub(super) key: Box<[u8]>,
    /// `,` and the key, zero-padded, when it fits: written with a fixed-size copy and a
    /// truncate instead of a `memcpy` call (keys are written once per element).
    pub(super) padded: Option<[u8; PAD]>,
    /// Hash of the field name, for repeat detection among an object's fields.
    pub(super) hash: u64,
    /// The path the rules matched (mapped names joined by `/`), for children and messages.
    pub(super) path: Box<str>,
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
pub(super) struct Own {
    pub(super) path: String,
    pub(super) key: Vec<u8>,
}

/// What one element needs to know about itself, cached or computed.
#[derive(Clone, Copy)]
pub(super) struct Info {
    pub(super) node: u32,
    pub(super) array: bool,
    pub(super) unwrap: bool,
    pub(super) typing: Typing,
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

/// Finding and growing the trie as elements start.
impl<W: Write> Conv<'_, '_, W> {
    /// Finds the node of element (or attribute, `attr`) `raw` under frame `parent` among
    /// those seen before: the path every element after the first few takes.
    #[inline]
    pub(super) fn find(&mut self, parent: usize, raw: &[u8], attr: bool) -> Option<Info> {
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
    pub(super) fn new_node(
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
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::dialect::xml::read::tests::conv;
    use crate::dialect::xml::read::xml_to_json_vec;
    use crate::dialect::xml::{Typing, XmlRules};

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
}
