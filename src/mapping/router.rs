//! Route matching: a segment trie over every pack's match patterns.
//!
//! Literal segments win over variables (`/companies/search` before `/companies/{id}`), with
//! backtracking so a literal dead end still falls back to the variable branch. Matching
//! allocates only the captured values. Captured values are percent-decoded and refused when
//! they could change an upstream path (`.`, `..`, a decoded `/` or `\`, control characters):
//! the templates encode them anyway, but a clear 400 beats a confusing upstream 404.

use std::collections::HashMap;

use http::Method;
use percent_encoding::percent_decode_str;

use super::template::{PathPattern, Segment};

/// Paths with more segments than this are not matched (bounded backtracking).
const MAX_SEGMENTS: usize = 32;

/// Why a request did not match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatchError<T> {
    /// No pattern matches; `nearest` is a route from the deepest part of the trie the path
    /// reached, so the error can be answered in the dialect the client most likely speaks.
    NotFound {
        /// A route near where the path stopped matching, if any.
        nearest: Option<T>,
    },
    /// The path matches, but not for this method.
    MethodNotAllowed {
        /// The methods the path takes, for `Allow`.
        allow: Vec<Method>,
        /// One of the path's routes.
        nearest: T,
    },
    /// A captured value is unsafe or not valid UTF-8.
    BadParam {
        /// The variable's name.
        name: String,
        /// What is wrong with its value.
        detail: String,
        /// The route matched.
        nearest: T,
    },
}

/// A successful match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match<'r, T> {
    /// The value inserted with the matching pattern.
    pub value: &'r T,
    /// Captured variables, in pattern order, decoded.
    pub params: Vec<(String, String)>,
}

struct Entry<T> {
    method: Method,
    value: T,
    vars: Vec<String>,
}

struct Node<T> {
    /// Built once at load and only read after: an attacker choosing path segments picks
    /// lookups, never insertions, so a fast seeded hash is enough (SipHash was ~300
    /// instructions of every routed request under callgrind).
    lits: HashMap<String, Node<T>, foldhash::fast::RandomState>,
    var: Option<Box<Node<T>>>,
    entries: Vec<Entry<T>>,
    /// Some route at or below this node.
    sample: Option<T>,
}

impl<T> Default for Node<T> {
    fn default() -> Self {
        Self {
            lits: HashMap::default(),
            var: None,
            entries: Vec::new(),
            sample: None,
        }
    }
}

/// The route table.
pub struct Router<T> {
    root: Node<T>,
}

impl<T> Default for Router<T> {
    fn default() -> Self {
        Self {
            root: Node::default(),
        }
    }
}

impl<T: Clone> Router<T> {
    /// An empty router.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a route; on a collision (same method, same shape) returns the route already there.
    pub fn insert(&mut self, method: Method, pattern: &PathPattern, value: T) -> Result<(), T> {
        let mut node = &mut self.root;
        node.sample.get_or_insert_with(|| value.clone());
        for seg in &pattern.segments {
            node = match seg {
                Segment::Lit(l) => node.lits.entry(l.clone()).or_default(),
                Segment::Var(_) => node.var.get_or_insert_with(Default::default),
            };
            node.sample.get_or_insert_with(|| value.clone());
        }
        if let Some(existing) = node.entries.iter().find(|e| e.method == method) {
            return Err(existing.value.clone());
        }
        node.entries.push(Entry {
            method,
            value,
            vars: pattern.vars(),
        });
        Ok(())
    }

    /// Matches `method` and the raw (still percent-encoded) `path`.
    pub fn at(&self, method: &Method, path: &str) -> Result<Match<'_, T>, MatchError<T>> {
        // Segments and captures live on the stack: matching allocates only the answer.
        let mut segs = [""; MAX_SEGMENTS];
        let mut len = 0;
        for seg in path.split('/').filter(|s| !s.is_empty()) {
            let Some(slot) = segs.get_mut(len) else {
                return Err(MatchError::NotFound {
                    nearest: self.root.sample.clone(),
                });
            };
            *slot = seg;
            len += 1;
        }
        let mut captured = Captured {
            vals: [""; MAX_SEGMENTS],
            len: 0,
        };
        let mut deepest: (usize, Option<&T>) = (0, self.root.sample.as_ref());
        let Some(node) = find(&self.root, &segs[..len], 0, &mut captured, &mut deepest) else {
            return Err(MatchError::NotFound {
                nearest: deepest.1.cloned(),
            });
        };
        let Some(entry) = node.entries.iter().find(|e| e.method == *method) else {
            let allow = node.entries.iter().map(|e| e.method.clone()).collect();
            let nearest = node.entries[0].value.clone();
            return Err(MatchError::MethodNotAllowed { allow, nearest });
        };
        let mut params = Vec::with_capacity(captured.len);
        for (name, raw) in entry.vars.iter().zip(&captured.vals[..captured.len]) {
            match check_param(raw) {
                Ok(v) => params.push((name.clone(), v)),
                Err(detail) => {
                    return Err(MatchError::BadParam {
                        name: name.clone(),
                        detail,
                        nearest: entry.value.clone(),
                    });
                }
            }
        }
        Ok(Match {
            value: &entry.value,
            params,
        })
    }
}

/// The variable segments met on the way down (at most one per segment).
struct Captured<'s> {
    vals: [&'s str; MAX_SEGMENTS],
    len: usize,
}

fn find<'n, 's, T>(
    node: &'n Node<T>,
    segs: &[&'s str],
    depth: usize,
    captured: &mut Captured<'s>,
    deepest: &mut (usize, Option<&'n T>),
) -> Option<&'n Node<T>> {
    if depth > deepest.0 && node.sample.is_some() {
        *deepest = (depth, node.sample.as_ref());
    }
    let Some((first, rest)) = segs.split_first() else {
        return (!node.entries.is_empty()).then_some(node);
    };
    if let Some(child) = node.lits.get(*first)
        && let Some(found) = find(child, rest, depth + 1, captured, deepest)
    {
        return Some(found);
    }
    if let Some(child) = &node.var {
        // `segs` holds at most MAX_SEGMENTS, so there is always a slot.
        captured.vals[captured.len] = first;
        captured.len += 1;
        if let Some(found) = find(child, rest, depth + 1, captured, deepest) {
            return Some(found);
        }
        captured.len -= 1;
    }
    None
}

/// Decodes a captured segment and refuses values that could steer an upstream path.
pub fn check_param(raw: &str) -> Result<String, String> {
    // The common case (an id, a name): plain ASCII with nothing to decode, checked in one
    // pass over the bytes. It answers as `decode_and_check` would: no `%`, so decoding is
    // the identity; no `/`, backslash or control character; `.`/`..` left to the full check.
    if raw.len() > 2
        && raw.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b':' | b'@')
        })
    {
        return Ok(raw.to_owned());
    }
    decode_and_check(raw)
}

/// [`check_param`] for any segment.
fn decode_and_check(raw: &str) -> Result<String, String> {
    let value = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| "is not valid UTF-8 once percent-decoded".to_owned())?;
    if value == "." || value == ".." {
        return Err("may not be `.` or `..`".to_owned());
    }
    if value.contains(['/', '\\']) {
        return Err("may not contain `/` or `\\`".to_owned());
    }
    if value.chars().any(char::is_control) {
        return Err("may not contain control characters".to_owned());
    }
    Ok(value.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The one-pass path answers every segment as the full decode-and-check does.
        #[test]
        fn the_quick_check_agrees_with_the_full_one(raw in "[a-zA-Z0-9._~:@%/\\\\ -]{0,12}|\\PC{0,8}") {
            proptest::prop_assert_eq!(check_param(&raw), decode_and_check(&raw));
        }
    }

    fn router(routes: &[(&str, &str)]) -> Router<String> {
        let mut r = Router::new();
        for (m, p) in routes {
            let pat = PathPattern::parse(p, "/").unwrap();
            r.insert(m.parse().unwrap(), &pat, format!("{m} {p}"))
                .unwrap();
        }
        r
    }

    fn v1() -> Router<String> {
        router(&[
            ("GET", "/companies"),
            ("GET", "/companies/{companyId}"),
            ("DELETE", "/companies/{companyId}"),
            ("GET", "/companies/search"),
            ("GET", "/companies/{companyId}/customers"),
            ("POST", "/companies/{companyId}/customers"),
            ("GET", "/companies/{companyId}/customers/transitive"),
            (
                "PATCH",
                "/companies/{companyId}/customers/{customerId}/reassign",
            ),
        ])
    }

    #[test]
    fn literals_win_and_variables_are_captured() {
        let r = v1();
        let m = r.at(&Method::GET, "/companies/search").unwrap();
        assert_eq!(m.value, "GET /companies/search");
        let m = r.at(&Method::GET, "/companies/abc/customers").unwrap();
        assert_eq!(m.params, vec![("companyId".into(), "abc".into())]);
        let m = r
            .at(&Method::PATCH, "/companies/a/customers/b/reassign")
            .unwrap();
        assert_eq!(m.params.len(), 2);
        assert_eq!(m.params[1], ("customerId".into(), "b".into()));
        // A variable segment that happens to equal a literal elsewhere still matches.
        let m = r.at(&Method::GET, "/companies/search/customers").unwrap();
        assert_eq!(m.params[0].1, "search");
    }

    #[test]
    fn trailing_slashes_and_encoding() {
        let r = v1();
        assert!(r.at(&Method::GET, "/companies/").is_ok());
        let m = r.at(&Method::GET, "/companies/a%20b").unwrap();
        assert_eq!(m.params[0].1, "a b");
    }

    #[test]
    fn unknown_paths_and_methods() {
        let r = v1();
        assert!(matches!(
            r.at(&Method::GET, "/nope"),
            Err(MatchError::NotFound { .. })
        ));
        assert!(matches!(
            r.at(&Method::GET, "/companies/a/b"),
            Err(MatchError::NotFound { .. })
        ));
        match r.at(&Method::PUT, "/companies/x") {
            Err(MatchError::MethodNotAllowed { allow, .. }) => {
                assert_eq!(allow, vec![Method::GET, Method::DELETE])
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unsafe_params_are_refused() {
        let r = v1();
        for bad in [
            "/companies/..",
            "/companies/.",
            "/companies/a%2Fb",
            "/companies/a%5Cb",
            "/companies/%2e%2e",
            "/companies/%0a",
            "/companies/%ff",
        ] {
            assert!(
                matches!(r.at(&Method::GET, bad), Err(MatchError::BadParam { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn collisions_are_detected_whatever_the_variable_names() {
        let mut r = v1();
        let pat = PathPattern::parse("/companies/{id}", "/").unwrap();
        assert_eq!(
            r.insert(Method::GET, &pat, "dup".into()),
            Err("GET /companies/{companyId}".to_owned())
        );
        // Another method on the same shape is fine.
        assert!(r.insert(Method::PUT, &pat, "put".into()).is_ok());
    }

    #[test]
    fn nearest_route_points_at_the_closest_pack() {
        let mut r = v1();
        let pat = PathPattern::parse("/networking/rest/tenant/{id}", "/").unwrap();
        r.insert(Method::GET, &pat, "lj".into()).unwrap();
        match r.at(&Method::GET, "/networking/rest/other") {
            Err(MatchError::NotFound { nearest }) => assert_eq!(nearest.as_deref(), Some("lj")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn very_long_paths_do_not_match() {
        let r = v1();
        let long = "/companies".repeat(100);
        assert!(matches!(
            r.at(&Method::GET, &long),
            Err(MatchError::NotFound { .. })
        ));
    }
}
