//! The rules a pack gives for one document shape.

use std::collections::{HashMap, HashSet};

/// How a text value is typed in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Typing {
    /// The text as is (the default: no guessing).
    String,
    /// A JSON number; text that is not one is an error.
    Number,
    /// `1`/`true` and `0`/`false` (LongJump writes booleans as 0/1).
    Boolean,
    /// A string, or null when the element is empty.
    NullIfEmpty,
}

/// What happens to namespace prefixes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Namespaces {
    /// `ns:name` stays `ns:name`.
    #[default]
    Keep,
    /// `ns:name` becomes `name`; `xmlns` attributes are dropped.
    Strip,
    /// Prefixes renamed (`from` → `to`, empty `to` strips); unlisted prefixes are kept.
    Map(HashMap<String, String>),
}

/// Conversion rules. Paths are element names joined by `/` (`platform/record/id`; an
/// attribute is `…/@name`). A rule path starting with `/` is anchored at the root; one
/// without matches any path ending with it at a segment boundary.
#[derive(Debug, Clone)]
pub struct XmlRules {
    /// Prefix marking attributes among an element's JSON keys (default `@`).
    pub attr_prefix: String,
    /// The JSON key of an element's text beside attributes or children (default `#text`).
    pub text_key: String,
    arrays: PathSet,
    unwrap: PathSet,
    types: Vec<(PathRule, Typing)>,
    /// JSON→XML: the element name of an array's items, by the array's path.
    item_names: Vec<(PathRule, String)>,
    /// What happens to namespace prefixes (default: kept).
    pub namespaces: Namespaces,
    /// JSON→XML root element.
    pub root: String,
    /// JSON→XML: write `<?xml version="1.0" encoding="UTF-8"?>`.
    pub declaration: bool,
    /// Deepest element nesting accepted (default 64).
    pub max_depth: usize,
    /// JSON→XML: booleans written as `1`/`0` everywhere (LongJump's convention).
    pub bool_digits: bool,
    /// XML→JSON path tries kept between conversions under these rules (emptied by every
    /// builder method, so a trie never outlives the rules it was built under).
    pub(super) tries: super::read::Tries,
}

impl Default for XmlRules {
    fn default() -> Self {
        Self {
            attr_prefix: "@".into(),
            text_key: "#text".into(),
            arrays: PathSet::default(),
            unwrap: PathSet::default(),
            types: Vec::new(),
            item_names: Vec::new(),
            namespaces: Namespaces::Keep,
            root: "root".into(),
            declaration: true,
            max_depth: 64,
            bool_digits: false,
            tries: super::read::Tries::default(),
        }
    }
}

impl XmlRules {
    /// Forces the element at `path` to be an array.
    pub fn array(mut self, path: &str) -> Self {
        self.tries = super::read::Tries::default();
        self.arrays.add(path);
        self
    }

    /// Removes the level at `path`: its children belong to its parent.
    pub fn unwrap(mut self, path: &str) -> Self {
        self.tries = super::read::Tries::default();
        self.unwrap.add(path);
        self
    }

    /// Types the text at `path`.
    pub fn typed(mut self, path: &str, typing: Typing) -> Self {
        self.tries = super::read::Tries::default();
        self.types.push((PathRule::new(path), typing));
        self
    }

    /// Names the items of the array at `path` (JSON→XML).
    pub fn item_name(mut self, path: &str, name: &str) -> Self {
        self.tries = super::read::Tries::default();
        self.item_names.push((PathRule::new(path), name.to_owned()));
        self
    }

    /// Sets the JSON→XML root element.
    pub fn root(mut self, name: &str) -> Self {
        self.tries = super::read::Tries::default();
        self.root = name.to_owned();
        self
    }

    /// Sets what happens to namespace prefixes.
    pub fn namespaces(mut self, ns: Namespaces) -> Self {
        self.tries = super::read::Tries::default();
        self.namespaces = ns;
        self
    }

    /// Sets whether JSON→XML writes the XML declaration.
    pub fn declaration(mut self, yes: bool) -> Self {
        self.tries = super::read::Tries::default();
        self.declaration = yes;
        self
    }

    /// Sets whether JSON→XML writes booleans as `1`/`0`.
    pub fn bool_digits(mut self, yes: bool) -> Self {
        self.tries = super::read::Tries::default();
        self.bool_digits = yes;
        self
    }

    /// Sets the deepest element nesting accepted.
    pub fn max_depth(mut self, depth: usize) -> Self {
        self.tries = super::read::Tries::default();
        self.max_depth = depth;
        self
    }

    pub(crate) fn is_array(&self, path: &str) -> bool {
        self.arrays.matches(path)
    }

    pub(crate) fn is_unwrapped(&self, path: &str) -> bool {
        self.unwrap.matches(path)
    }

    pub(crate) fn typing(&self, path: &str) -> Typing {
        self.types
            .iter()
            .find(|(r, _)| r.matches(path))
            .map(|(_, t)| *t)
            .unwrap_or(Typing::String)
    }

    pub(crate) fn item_name_of(&self, path: &str) -> Option<&str> {
        self.item_names
            .iter()
            .find(|(r, _)| r.matches(path))
            .map(|(_, n)| n.as_str())
    }

    /// The JSON name of an XML element or attribute name, per the namespace rule.
    pub(crate) fn map_name<'a>(&self, name: &'a str) -> std::borrow::Cow<'a, str> {
        if self.namespaces == Namespaces::Keep {
            return name.into();
        }
        let Some((prefix, local)) = name.split_once(':') else {
            return name.into();
        };
        match &self.namespaces {
            Namespaces::Keep => name.into(),
            Namespaces::Strip => local.into(),
            Namespaces::Map(m) => match m.get(prefix) {
                Some(to) if to.is_empty() => local.into(),
                Some(to) => format!("{to}:{local}").into(),
                None => name.into(),
            },
        }
    }
}

#[derive(Debug, Clone, Default)]
struct PathSet {
    exact: HashSet<String>,
    suffixes: Vec<String>,
}

impl PathSet {
    fn add(&mut self, path: &str) {
        match path.strip_prefix('/') {
            Some(abs) => {
                self.exact.insert(abs.to_owned());
            }
            None => self.suffixes.push(path.to_owned()),
        }
    }

    fn matches(&self, path: &str) -> bool {
        self.exact.contains(path) || self.suffixes.iter().any(|s| ends_at_segment(path, s))
    }
}

#[derive(Debug, Clone)]
struct PathRule {
    anchored: bool,
    path: String,
}

impl PathRule {
    fn new(path: &str) -> Self {
        match path.strip_prefix('/') {
            Some(p) => Self {
                anchored: true,
                path: p.to_owned(),
            },
            None => Self {
                anchored: false,
                path: path.to_owned(),
            },
        }
    }

    fn matches(&self, path: &str) -> bool {
        if self.anchored {
            path == self.path
        } else {
            ends_at_segment(path, &self.path)
        }
    }
}

fn ends_at_segment(path: &str, suffix: &str) -> bool {
    path == suffix
        || (path.ends_with(suffix)
            && path.as_bytes().get(path.len() - suffix.len() - 1) == Some(&b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchored_and_suffix_paths() {
        let r = XmlRules::default()
            .array("record")
            .typed("/platform/count", Typing::Number);
        assert!(r.is_array("platform/record"));
        assert!(r.is_array("record"));
        assert!(!r.is_array("platform/xrecord"));
        assert_eq!(r.typing("platform/count"), Typing::Number);
        assert_eq!(r.typing("other/platform/count"), Typing::String);
    }

    #[test]
    fn namespace_rules() {
        let keep = XmlRules::default();
        assert_eq!(keep.map_name("lj:tenant"), "lj:tenant");
        let strip = XmlRules::default().namespaces(Namespaces::Strip);
        assert_eq!(strip.map_name("lj:tenant"), "tenant");
        let map = XmlRules::default().namespaces(Namespaces::Map(HashMap::from([
            ("a".to_owned(), "b".to_owned()),
            ("x".to_owned(), String::new()),
        ])));
        assert_eq!(map.map_name("a:n"), "b:n");
        assert_eq!(map.map_name("x:n"), "n");
        assert_eq!(map.map_name("z:n"), "z:n");
    }
}
