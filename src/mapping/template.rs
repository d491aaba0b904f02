//! Templates: `{name}` placeholders in paths and query values, resolved against the request
//! context, and the route match patterns (`/companies/{companyId}`).
//!
//! A placeholder is either a bare name, which must be a variable the route's match pattern
//! binds, or a dotted path into the execution context rooted at one of [`ROOTS`]. Both are
//! checked when the pack loads, so a typo is a load error, not a runtime 500. Substituted
//! values are percent-encoded as one path segment, so a client value can never add a path
//! segment or a query parameter to an upstream URL.

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde_json::Value;

use crate::dialect::filter::quote;

/// Context roots a dotted placeholder may start with.
pub const ROOTS: &[&str] = &[
    "path",
    "query",
    "body",
    "principal",
    "page",
    "steps",
    "item",
    "node",
    "search",
    "request",
    "reach",
    "vars",
];

/// Characters encoded in a substituted path segment: everything but RFC 3986 unreserved
/// characters and `:`/`@` (kept because AppDirect ids read `externalId:acme`).
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}')
    .add(b'&')
    .add(b'=')
    .add(b'+')
    .add(b'$')
    .add(b',')
    .add(b';')
    .add(b'\'')
    .add(b'!')
    .add(b'*')
    .add(b'(')
    .add(b')');

/// A template problem found at load time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// A `{` without its `}`; holds the template.
    #[error("unclosed `{{` in template `{0}`")]
    Unclosed(String),
    /// A `{}` naming nothing; holds the template.
    #[error("empty placeholder `{{}}` in template `{0}`")]
    Empty(String),
    /// A `}` without its `{`; holds the template.
    #[error("stray `}}` in template `{0}`")]
    Stray(String),
    /// A `|modifier` other than `|quote`; holds the modifier.
    #[error("unknown template modifier `|{0}` (the one modifier is `|quote`)")]
    Modifier(String),
    /// A placeholder neither a path variable nor rooted at a context root.
    #[error(
        "placeholder `{{{name}}}` is neither a path variable of the match pattern nor rooted at one of {roots}"
    )]
    Unbound {
        /// The placeholder.
        name: String,
        /// The context roots it could have started with.
        roots: String,
    },
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Text copied as is.
    Lit(String),
    /// A context path, already split: `companyId` is stored as `["path", "companyId"]`.
    Var(Vec<String>),
    /// `{query.search|quote}`: the value as a LongJump filter string literal, quotes doubled,
    /// so a client value placed in a filter stays one value (see `dialect::filter::quote`).
    Quoted(Vec<String>),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses `text`; bare names must be in `path_vars`.
    pub fn parse(text: &str, path_vars: &[String]) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let open = rest.find('{');
            let close = rest.find('}');
            match open {
                Some(open) if close.is_none_or(|c| c > open) => {
                    if open > 0 {
                        parts.push(Part::Lit(rest[..open].to_owned()));
                    }
                    let after = &rest[open + 1..];
                    let end = after
                        .find('}')
                        .ok_or_else(|| TemplateError::Unclosed(text.to_owned()))?;
                    let name = after[..end].trim();
                    if name.is_empty() {
                        return Err(TemplateError::Empty(text.to_owned()));
                    }
                    match name.split_once('|') {
                        None => parts.push(Part::Var(resolve_name(name, path_vars)?)),
                        Some((var, "quote")) => {
                            parts.push(Part::Quoted(resolve_name(var.trim(), path_vars)?));
                        }
                        Some((_, modifier)) => {
                            return Err(TemplateError::Modifier(modifier.to_owned()));
                        }
                    }
                    rest = &after[end + 1..];
                }
                Some(_) | None if close.is_some() => {
                    return Err(TemplateError::Stray(text.to_owned()));
                }
                Some(_) | None => {
                    parts.push(Part::Lit(rest.to_owned()));
                    rest = "";
                }
            }
        }
        Ok(Self { parts })
    }

    /// The placeholders, as context paths.
    pub fn vars(&self) -> impl Iterator<Item = &[String]> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(v) | Part::Quoted(v) => Some(v.as_slice()),
            Part::Lit(_) => None,
        })
    }

    /// Replaces the placeholders rooted at `root` with their values in `consts` (bound once
    /// at load: the upstreams' `vars`); those with no value stay placeholders, for the
    /// caller to refuse. Values are written as they are: the config checked them.
    pub fn bind(&mut self, root: &str, consts: &Value) {
        for part in &mut self.parts {
            let value = match part {
                Part::Var(path) | Part::Quoted(path) if path[0] == root => {
                    match lookup(consts, &path[1..]) {
                        Some(Value::String(s)) => s.clone(),
                        Some(_) | None => continue,
                    }
                }
                Part::Var(_) | Part::Quoted(_) | Part::Lit(_) => continue,
            };
            *part = match part {
                Part::Quoted(_) => Part::Lit(quote(&value)),
                Part::Var(_) | Part::Lit(_) => Part::Lit(value),
            };
        }
    }

    /// Whether the template is a single placeholder (its value may then be absent/null).
    pub fn is_single_var(&self) -> bool {
        matches!(self.parts.as_slice(), [Part::Var(_)])
    }

    /// Renders with each substituted value percent-encoded as a path segment.
    /// `None` when a placeholder resolves to nothing (missing or null).
    pub fn render_path(&self, ctx: &Value) -> Option<String> {
        self.render(ctx, |s, out| match s {
            // Dots are unreserved, so encoding leaves them; as a whole segment they would
            // climb the upstream path, so they are written encoded.
            "." => out.push_str("%2E"),
            ".." => out.push_str("%2E%2E"),
            s => out.extend(utf8_percent_encode(s, SEGMENT)),
        })
    }

    /// Renders without encoding (query values are form-encoded later, as a whole).
    pub fn render_raw(&self, ctx: &Value) -> Option<String> {
        self.render(ctx, |s, out| out.push_str(s))
    }

    fn render(&self, ctx: &Value, mut push: impl FnMut(&str, &mut String)) -> Option<String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(l) => out.push_str(l),
                Part::Var(path) => match lookup(ctx, path)? {
                    Value::String(s) => push(s, &mut out),
                    Value::Null => return None,
                    v @ (Value::Bool(_) | Value::Number(_)) => push(&v.to_string(), &mut out),
                    v @ (Value::Array(_) | Value::Object(_)) => push(&v.to_string(), &mut out),
                },
                Part::Quoted(path) => match lookup(ctx, path)? {
                    Value::Null => return None,
                    Value::String(s) => push(&quote(s), &mut out),
                    v
                    @ (Value::Bool(_) | Value::Number(_) | Value::Array(_) | Value::Object(_)) => {
                        push(&quote(&v.to_string()), &mut out)
                    }
                },
            }
        }
        Some(out)
    }
}

fn resolve_name(name: &str, path_vars: &[String]) -> Result<Vec<String>, TemplateError> {
    let segments: Vec<String> = name.split('.').map(str::to_owned).collect();
    if segments.len() == 1 {
        if path_vars.iter().any(|v| v == name) {
            return Ok(vec!["path".to_owned(), name.to_owned()]);
        }
        // `{item}` and `{node}` name a whole fan-out element or walked id.
        if name == "item" || name == "node" {
            return Ok(segments);
        }
    } else if ROOTS.contains(&segments[0].as_str()) && segments.iter().all(|s| !s.is_empty()) {
        return Ok(segments);
    }
    Err(TemplateError::Unbound {
        name: name.to_owned(),
        roots: ROOTS.join(", "),
    })
}

/// Follows a context path; numeric segments index arrays.
pub fn lookup<'a>(ctx: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = ctx;
    for seg in path {
        cur = match cur {
            Value::Object(m) => m.get(seg)?,
            Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
            Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => return None,
        };
    }
    Some(cur)
}

/// One segment of a route match pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    /// A literal segment, matched exactly.
    Lit(String),
    /// A `{name}` segment capturing one path segment.
    Var(String),
}

/// A route match pattern such as `/companies/{companyId}/customers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    /// The pattern's segments, the pack's mount included.
    pub segments: Vec<Segment>,
}

/// A match pattern problem found at load time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// The pattern does not start with `/`; holds the pattern.
    #[error("pattern `{0}` must start with `/`")]
    NotAbsolute(String),
    /// A segment mixes text and a variable; holds the pattern.
    #[error("pattern `{0}`: a segment is either literal or one whole `{{name}}`")]
    MixedSegment(String),
    /// A variable is bound twice; holds the pattern and the name.
    #[error("pattern `{0}` binds `{1}` twice")]
    Duplicate(String, String),
}

impl PathPattern {
    /// Parses a pattern, prefixing it with the pack's mount point.
    pub fn parse(text: &str, mount: &str) -> Result<Self, PatternError> {
        if !text.starts_with('/') {
            return Err(PatternError::NotAbsolute(text.to_owned()));
        }
        let mut segments = Vec::new();
        for seg in mount
            .split('/')
            .chain(text.split('/'))
            .filter(|s| !s.is_empty())
        {
            if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                if name.is_empty() || name.contains(['{', '}']) {
                    return Err(PatternError::MixedSegment(text.to_owned()));
                }
                if segments
                    .iter()
                    .any(|s| matches!(s, Segment::Var(n) if n == name))
                {
                    return Err(PatternError::Duplicate(text.to_owned(), name.to_owned()));
                }
                segments.push(Segment::Var(name.to_owned()));
            } else if seg.contains(['{', '}']) {
                return Err(PatternError::MixedSegment(text.to_owned()));
            } else {
                segments.push(Segment::Lit(seg.to_owned()));
            }
        }
        Ok(Self { segments })
    }

    /// Names of the variables the pattern binds.
    pub fn vars(&self) -> Vec<String> {
        self.segments
            .iter()
            .filter_map(|s| match s {
                Segment::Var(n) => Some(n.clone()),
                Segment::Lit(_) => None,
            })
            .collect()
    }

    /// The pattern with variable names erased: two routes with the same shape and method
    /// collide whatever their variables are called.
    pub fn shape(&self) -> String {
        let mut s = String::new();
        for seg in &self.segments {
            s.push('/');
            match seg {
                Segment::Lit(l) => s.push_str(l),
                Segment::Var(_) => s.push_str("{}"),
            }
        }
        if s.is_empty() {
            s.push('/');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn vars(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_and_renders_paths() {
        let t = Template::parse(
            "/api/companies/{companyId}/x/{steps.a.content.0.id}",
            &vars(&["companyId"]),
        )
        .unwrap();
        let ctx =
            json!({"path": {"companyId": "c 1/.."}, "steps": {"a": {"content": [{"id": 7}]}}});
        assert_eq!(
            t.render_path(&ctx).unwrap(),
            "/api/companies/c%201%2F../x/7"
        );
    }

    #[test]
    fn keeps_colon_for_appdirect_ids() {
        let t = Template::parse("/c/externalId:{principal.company}", &[]).unwrap();
        assert_eq!(
            t.render_path(&json!({"principal": {"company": "acme"}}))
                .unwrap(),
            "/c/externalId:acme"
        );
    }

    #[test]
    fn missing_or_null_values_render_nothing() {
        let t = Template::parse("{query.search}", &[]).unwrap();
        assert!(t.is_single_var());
        assert_eq!(t.render_raw(&json!({"query": {}})), None);
        assert_eq!(t.render_raw(&json!({"query": {"search": null}})), None);
        assert_eq!(
            t.render_raw(&json!({"query": {"search": "a&b"}})).unwrap(),
            "a&b"
        );
    }

    #[test]
    fn quote_modifier_builds_filter_literals() {
        let t = Template::parse(
            "partner equals {companyId|quote} AND company contains {query.search|quote}",
            &vars(&["companyId"]),
        )
        .unwrap();
        let ctx =
            json!({"path": {"companyId": "42"}, "query": {"search": "x' OR name contains '"}});
        let text = t.render_raw(&ctx).unwrap();
        assert_eq!(
            text,
            "partner equals '42' AND company contains 'x'' OR name contains '''"
        );
        assert_eq!(
            crate::dialect::filter::parse(&text).unwrap().fields(),
            ["partner", "company"]
        );
        assert!(matches!(
            Template::parse("{query.a|upper}", &[]),
            Err(TemplateError::Modifier(m)) if m == "upper"
        ));
    }

    #[test]
    fn rejects_unbound_and_malformed_placeholders() {
        assert!(matches!(
            Template::parse("/x/{companyId}", &[]),
            Err(TemplateError::Unbound { .. })
        ));
        assert!(matches!(
            Template::parse("/x/{nope.a}", &[]),
            Err(TemplateError::Unbound { .. })
        ));
        assert!(matches!(
            Template::parse("/x/{query.}", &[]),
            Err(TemplateError::Unbound { .. })
        ));
        assert!(matches!(
            Template::parse("/x/{a", &vars(&["a"])),
            Err(TemplateError::Unclosed(_))
        ));
        assert!(matches!(
            Template::parse("/x/}", &[]),
            Err(TemplateError::Stray(_))
        ));
        assert!(matches!(
            Template::parse("/x/{}", &[]),
            Err(TemplateError::Empty(_))
        ));
    }

    #[test]
    fn patterns_parse_with_mount_and_shape() {
        let p = PathPattern::parse("/companies/{companyId}", "/lj").unwrap();
        assert_eq!(p.shape(), "/lj/companies/{}");
        assert_eq!(p.vars(), vars(&["companyId"]));
        assert_eq!(PathPattern::parse("/", "/").unwrap().shape(), "/");
        assert!(PathPattern::parse("companies", "/").is_err());
        assert!(PathPattern::parse("/a{b}", "/").is_err());
        assert!(PathPattern::parse("/{a}/{a}", "/").is_err());
    }

    proptest! {
        // Whatever a client puts in a value, the rendered path keeps exactly the template's
        // segments: no value can add, remove or climb a segment.
        #[test]
        fn substituted_values_never_change_the_path_shape(value in any::<String>()) {
            let t = Template::parse("/api/a/{id}/b", &vars(&["id"])).unwrap();
            let out = t.render_path(&json!({"path": {"id": value}})).unwrap();
            let segs: Vec<&str> = out.split('/').collect();
            prop_assert_eq!(segs.len(), 5);
            prop_assert_eq!(segs[1], "api");
            prop_assert_eq!(segs[4], "b");
            prop_assert!(!out.contains('?') && !out.contains('#'));
            prop_assert!(segs[3] != "." && segs[3] != "..");
            let decoded = percent_encoding::percent_decode_str(segs[3]).decode_utf8().unwrap();
            prop_assert_eq!(decoded, value.as_str());
        }

        #[test]
        fn literal_templates_render_verbatim(lit in "[a-zA-Z0-9/_:.-]{0,40}") {
            let t = Template::parse(&lit, &[]).unwrap();
            prop_assert_eq!(t.render_path(&json!({})).unwrap(), lit);
        }
    }
}
