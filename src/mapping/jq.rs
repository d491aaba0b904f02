//! jq filters, compiled once at load and run per request.
//!
//! Packs write their field renames and reshaping as jq so that a route's translation is data,
//! not code. Filters are compiled when the pack loads (a filter that does not compile is a
//! load error naming the route) and shared read-only between requests. Each runs on one
//! engine, chosen then ([`Engine`]): the filter plan ([`super::filter`]) when every term of
//! it lowers, else jaq (the `jaq` crates), which runs any filter.

use std::collections::HashSet;
use std::sync::LazyLock;

use jaq_core::load::parse::{BinaryOp, Def, Pattern, Term};
use jaq_core::load::{Arena, File, Loader, lex::StrPart};
use jaq_core::{Compiler, Ctx, Vars, data, unwrap_valr};
use jaq_json::{Map, Num, Val};
use serde_json::Value;

use super::filter::Program;

type Data = data::JustLut<Val>;

/// A compiled jq filter.
pub struct JqFilter {
    /// jaq's compilation: what runs the filter when it has no plan, and what tests and
    /// benchmarks compare the plan with.
    filter: jaq_core::Filter<Data>,
    source: String,
    /// Set when the filter is a path of keys and indices (`.steps.up`, `.steps.t.tenant[0]`):
    /// such a filter is answered by walking the input ([`JqFilter::take_path`],
    /// [`JqFilter::peek_path`]), with no conversion to jaq values and back and nothing copied.
    path: Option<Box<[Seg]>>,
    /// The filter's plan (`Ok`: it runs there for every input), or what it uses that the
    /// plan has no operation for (it runs on jaq for every input).
    plan: Result<Box<Program>, String>,
    /// The top-level keys of its input the filter can read (`None`: any).
    reads: Option<Vec<String>>,
}

/// Which engine runs a filter, for every input: chosen once, when the filter is compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// The direct evaluator, over the route context's own values ([`super::filter`]).
    Plan,
    /// jaq: the filter uses something the plan has no operation for.
    Jaq,
}

impl std::fmt::Debug for JqFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("JqFilter").field(&self.source).finish()
    }
}

/// A filter that did not compile, or failed on an input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JqError {
    /// The filter's text is not jq (a load error, never a request's).
    #[error("jq filter does not compile: {0}")]
    Compile(String),
    /// The filter raised an error on its input.
    #[error("jq filter failed: {0}")]
    Runtime(String),
    /// The filter yielded nothing where one value was needed.
    #[error("jq filter produced no output")]
    NoOutput,
}

impl JqFilter {
    /// Compiles `code` after `prelude` (a pack's shared `def`s, from its `defs.jq`).
    pub fn compile_with_prelude(prelude: &str, code: &str) -> Result<Self, JqError> {
        if prelude.trim().is_empty() {
            return Self::compile(code);
        }
        let filter = compile_jaq(&format!("{prelude}\n{code}"))?;
        Ok(Self::new(filter, prelude, code))
    }

    /// Parses and compiles `code` with the part of jq's standard library it can reach.
    pub fn compile(code: &str) -> Result<Self, JqError> {
        Ok(Self::new(compile_jaq(code)?, "", code))
    }

    fn new(filter: jaq_core::Filter<Data>, prelude: &str, code: &str) -> Self {
        let t = super::filter::translate(prelude, code);
        Self {
            filter,
            source: code.to_owned(),
            // Key lookups are syntax a prelude cannot redefine: the route's own code decides.
            path: lookup_path(code).map(Vec::into_boxed_slice),
            plan: t.plan.map(Box::new),
            reads: t.roots,
        }
    }

    /// The filter's answer for a path filter, moved out of `input`; `None` when the filter
    /// is not a path or jq itself must answer (indexing the wrong type is an error whose
    /// text jq gives).
    pub fn take_path(&self, input: &mut Value) -> Option<Value> {
        let mut cur = input;
        for seg in self.path.as_deref()? {
            let next = match (seg, cur) {
                (_, Value::Null) => return Some(Value::Null),
                (Seg::Key(k), Value::Object(m)) => m.get_mut(k.as_str()),
                (Seg::Index(i), Value::Array(a)) => a.get_mut(*i),
                (Seg::Key(_) | Seg::Index(_), _) => return None,
            };
            match next {
                Some(v) => cur = v,
                None => return Some(Value::Null),
            }
        }
        Some(cur.take())
    }

    /// The filter's answer borrowed from `input`, for a path of keys and indices; `None` when
    /// the filter is not such a path or jq itself must answer (indexing the wrong type is an
    /// error whose text jq gives).
    pub fn peek_path<'a>(&self, input: &'a Value) -> Option<&'a Value> {
        static NULL: Value = Value::Null;
        let mut cur = input;
        for seg in self.path.as_deref()? {
            cur = match (seg, cur) {
                (_, Value::Null) => return Some(&NULL),
                (Seg::Key(k), Value::Object(m)) => m.get(k.as_str()).unwrap_or(&NULL),
                (Seg::Index(i), Value::Array(a)) => a.get(*i).unwrap_or(&NULL),
                (Seg::Key(_) | Seg::Index(_), _) => return None,
            };
        }
        Some(cur)
    }

    /// Whether the filter's answer is a value: neither `null` nor `false` (jq's truth), read
    /// in place when the filter is a path, run otherwise.
    pub fn holds(&self, input: &Value) -> Result<bool, JqError> {
        let truthy = |v: &Value| !matches!(v, Value::Null | Value::Bool(false));
        match self.peek_path(input) {
            Some(v) => Ok(truthy(v)),
            None => self.run(input).map(|v| truthy(&v)),
        }
    }

    /// The steps of a path filter (`.steps.up` → `[Key("steps"), Key("up")]`).
    pub fn path(&self) -> Option<&[Seg]> {
        self.path.as_deref()
    }

    /// The filter's source text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The engine that runs this filter.
    pub fn engine(&self) -> Engine {
        match self.plan {
            Ok(_) => Engine::Plan,
            Err(_) => Engine::Jaq,
        }
    }

    /// What the filter uses that the plan has no operation for, when it runs on jaq.
    pub fn why_jaq(&self) -> Option<&str> {
        self.plan.as_ref().err().map(String::as_str)
    }

    /// Runs the filter on `input` and returns its first output.
    pub fn run(&self, input: &Value) -> Result<Value, JqError> {
        match &self.plan {
            Ok(p) => p.run(input),
            Err(_) => self.run_jaq_val(to_val(input)),
        }
    }

    /// The plan's answer on `input`; `None` when the filter runs on jaq (the caller may
    /// hold the input already converted for it).
    pub fn run_native(&self, input: &Value) -> Option<Result<Value, JqError>> {
        self.plan.as_ref().ok().map(|p| p.run(input))
    }

    /// What the filter can read of its input, when it has a plan (`None`: anything).
    pub fn demand(&self) -> Option<super::project::Demand> {
        self.plan.as_ref().ok().map(|p| p.demand())
    }

    /// The top-level keys of its input the filter can read; `None` when it may read any
    /// (the caller must then give it the whole input).
    pub fn reads(&self) -> Option<&[String]> {
        self.reads.as_deref()
    }

    /// Whether the filter runs on the plan (tests and benchmarks).
    pub fn is_native(&self) -> bool {
        self.engine() == Engine::Plan
    }

    /// jaq's answer, whichever engine runs the filter (tests and benchmarks compare the two).
    pub fn run_jaq(&self, input: &Value) -> Result<Value, JqError> {
        self.run_jaq_val(to_val(input))
    }

    /// Runs the filter on an input already converted for jaq (a caller that built it once
    /// for several filters). A filter on the plan takes it back as JSON, only the top-level
    /// keys it reads when those are known.
    pub fn run_val(&self, input: Val) -> Result<Value, JqError> {
        match &self.plan {
            Ok(p) => p.run(&self.input_of(&input)),
            Err(_) => self.run_jaq_val(input),
        }
    }

    fn input_of(&self, input: &Val) -> Value {
        match (&self.reads, input) {
            (Some(keys), Val::Obj(m)) => {
                let mut out = serde_json::Map::with_capacity(keys.len());
                for k in keys {
                    if let Some(v) = m.get(&Val::utf8_str(k.as_bytes().to_vec())) {
                        out.insert(k.clone(), from_val(v));
                    }
                }
                Value::Object(out)
            }
            _ => from_val(input),
        }
    }

    fn run_jaq_val(&self, input: Val) -> Result<Value, JqError> {
        let ctx = Ctx::<Data>::new(&self.filter.lut, Vars::new([]));
        let mut out = self.filter.id.run((ctx, input)).map(unwrap_valr);
        match out.next() {
            Some(Ok(v)) => Ok(from_val(&v)),
            Some(Err(e)) => Err(JqError::Runtime(e.to_string())),
            None => Err(JqError::NoOutput),
        }
    }
}

/// Filters that compiled only with the whole library (see [`JqFilter::compile`]).
static PRUNING_MISSED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// jaq's compilation of `code`. Every definition handed to jaq is compiled into the filter's
/// own table: the whole library made each filter about 100 KiB, 12 MiB for the shipped packs.
/// Only the definitions the code names (and what those name) are given; the names are an
/// over-approximation, so a filter compiles to the same program either way. If anything
/// still does not resolve, the whole library decides (and words the error).
fn compile_jaq(code: &str) -> Result<jaq_core::Filter<Data>, JqError> {
    match compile_pruned(code) {
        Ok(f) => Ok(f),
        Err(_) => {
            let f = compile_whole(code)?;
            // The whole library resolved what the reachable part did not: a name jaq calls
            // that `called` does not see. Correct, just larger; counted for tests.
            PRUNING_MISSED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(f)
        }
    }
}

fn compile_pruned(code: &str) -> Result<jaq_core::Filter<Data>, JqError> {
    let (defs, wanted) = reachable(code);
    compile_with(code, defs, |name| wanted.contains(name))
}

fn compile_whole(code: &str) -> Result<jaq_core::Filter<Data>, JqError> {
    let defs = STD_DEFS.iter().map(|(d, _)| d.clone()).collect();
    compile_with(code, defs, |_| true)
}

/// Compiles `code` with `defs` and the native filters whose names `native` accepts.
fn compile_with(
    code: &str,
    defs: Vec<Def<&'static str>>,
    native: impl Fn(&str) -> bool,
) -> Result<jaq_core::Filter<Data>, JqError> {
    let funs = jaq_core::funs()
        .chain(jaq_std::funs())
        .chain(jaq_json::funs())
        .filter(|(name, _, _)| native(name));
    let loader = Loader::new(defs);
    let arena = Arena::default();
    let modules = loader
        .load(&arena, File { code, path: () })
        .map_err(|errs| JqError::Compile(describe_load_errors(code, &errs)))?;
    Compiler::default()
        .with_funs(funs)
        .compile(modules)
        .map_err(|errs| JqError::Compile(describe_compile_errors(code, &errs)))
}

/// jq's standard definitions, parsed once, each with the names its body calls.
static STD_DEFS: LazyLock<Vec<(Def<&'static str>, Vec<&'static str>)>> = LazyLock::new(|| {
    jaq_core::defs()
        .chain(jaq_std::defs())
        .chain(jaq_json::defs())
        .map(|d| {
            let mut names = Vec::new();
            called(&d.body, &mut names);
            (d, names)
        })
        .collect()
});

/// The standard definitions `code` can reach, in library order (a definition sees only
/// those before it), and every name it or they call. A name counts whatever its arity,
/// and any word of the code counts as a name (a key or a string's text too): more is
/// compiled than is called, never less.
fn reachable(code: &str) -> (Vec<Def<&'static str>>, HashSet<&str>) {
    let mut wanted: HashSet<&str> = words(code).collect();
    let mut keep = vec![false; STD_DEFS.len()];
    loop {
        let mut grew = false;
        for ((def, names), kept) in STD_DEFS.iter().zip(keep.iter_mut()) {
            if !*kept && wanted.contains(def.name) {
                *kept = true;
                wanted.extend(names.iter().copied());
                grew = true;
            }
        }
        if !grew {
            break;
        }
    }
    let defs = STD_DEFS
        .iter()
        .zip(keep)
        .filter(|(_, kept)| *kept)
        .map(|((d, _), _)| d.clone())
        .collect();
    (defs, wanted)
}

/// Identifier-like words of jq source, `@format` names included.
fn words(code: &str) -> impl Iterator<Item = &str> {
    code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '@'))
        .filter(|w| !w.is_empty())
}

/// The names a parsed term calls, `@format` strings included (they compile to a call).
fn called(t: &Term<&'static str>, out: &mut Vec<&'static str>) {
    match t {
        Term::Id | Term::Recurse | Term::Num(_) | Term::Break(_) | Term::Var(_) => {}
        Term::Str(fmt, parts) => {
            out.extend(fmt.iter().copied());
            for part in parts {
                match part {
                    StrPart::Term(t) => called(t, out),
                    StrPart::Str(_) | StrPart::Char(_) => {}
                }
            }
        }
        Term::Arr(t) => t.iter().for_each(|t| called(t, out)),
        Term::Obj(kvs) => kvs.iter().for_each(|(k, v)| {
            called(k, out);
            v.iter().for_each(|v| called(v, out));
        }),
        Term::Neg(t) | Term::Label(_, t) => called(t, out),
        Term::BinOp(l, op, r) => {
            called(l, out);
            if let BinaryOp::Pipe(Some(p)) = op {
                pattern_calls(p, out);
            }
            called(r, out);
        }
        Term::Fold(_, xs, pat, args) => {
            called(xs, out);
            pattern_calls(pat, out);
            args.iter().for_each(|a| called(a, out));
        }
        Term::TryCatch(t, c) => {
            called(t, out);
            c.iter().for_each(|c| called(c, out));
        }
        Term::IfThenElse(branches, else_) => {
            for (i, t) in branches {
                called(i, out);
                called(t, out);
            }
            else_.iter().for_each(|e| called(e, out));
        }
        Term::Def(defs, t) => {
            defs.iter().for_each(|d| called(&d.body, out));
            called(t, out);
        }
        Term::Call(name, args) => {
            out.push(name);
            args.iter().for_each(|a| called(a, out));
        }
        Term::Path(t, path) => {
            called(t, out);
            for (part, _) in &path.0 {
                match part {
                    jaq_core::path::Part::Index(i) => called(i, out),
                    jaq_core::path::Part::Range(from, to) => {
                        from.iter().chain(to).for_each(|t| called(t, out));
                    }
                }
            }
        }
    }
}

fn pattern_calls(p: &Pattern<&'static str>, out: &mut Vec<&'static str>) {
    match p {
        Pattern::Var(_) => {}
        Pattern::Arr(ps) => ps.iter().for_each(|p| pattern_calls(p, out)),
        Pattern::Obj(kvs) => kvs.iter().for_each(|(k, p)| {
            called(k, out);
            pattern_calls(p, out);
        }),
    }
}

/// A key `.key` reads without quoting: `b_c`, not `1a` or `a b`.
fn is_ident(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// One step of a path filter, read in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// An object's key.
    Key(String),
    /// An array's element, counted from the start.
    Index(usize),
}

/// `.a.b[0].c` (keys that need no quoting, indices of digits) → its steps; `.` → none;
/// anything else `None`.
fn lookup_path(code: &str) -> Option<Vec<Seg>> {
    let code = code.trim();
    if code == "." {
        return Some(Vec::new());
    }
    let mut out = Vec::new();
    for seg in code.strip_prefix('.')?.split('.') {
        let (key, mut rest) = seg.split_at(seg.find('[').unwrap_or(seg.len()));
        if !is_ident(key) {
            return None;
        }
        out.push(Seg::Key(key.to_owned()));
        while let Some(inner) = rest.strip_prefix('[') {
            let (digits, after) = inner.split_once(']')?;
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            out.push(Seg::Index(digits.parse().ok()?));
            rest = after;
        }
        if !rest.is_empty() {
            return None;
        }
    }
    Some(out)
}

fn describe_load_errors<E: std::fmt::Debug>(code: &str, errs: &E) -> String {
    format!("{errs:?} in `{}`", shorten(code))
}

fn describe_compile_errors<E: std::fmt::Debug>(code: &str, errs: &E) -> String {
    format!("{errs:?} in `{}`", shorten(code))
}

fn shorten(code: &str) -> String {
    let one_line: String = code.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 80 {
        format!("{}…", one_line.chars().take(80).collect::<String>())
    } else {
        one_line
    }
}

/// `base` with `key` set to `value`. Cheap: jaq objects share their children, so only the
/// top-level map is copied. Used to give each fan-out item its own context.
pub fn with_key(base: &Val, key: &str, value: Val) -> Val {
    let mut map = match base {
        Val::Obj(m) => (**m).clone(),
        Val::Null | Val::Bool(_) | Val::Num(_) | Val::TStr(_) | Val::BStr(_) | Val::Arr(_) => {
            Map::default()
        }
    };
    map.insert(Val::utf8_str(key.as_bytes().to_vec()), value);
    Val::obj(map)
}

/// serde_json → jaq value.
pub fn to_val(v: &Value) -> Val {
    match v {
        Value::Null => Val::Null,
        Value::Bool(b) => Val::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Val::Num(Num::from_integral(i))
            } else if let Some(u) = n.as_u64() {
                Val::Num(Num::from_integral(u))
            } else {
                Val::Num(Num::Float(n.as_f64().unwrap_or(0.0)))
            }
        }
        Value::String(s) => Val::utf8_str(s.clone().into_bytes()),
        Value::Array(a) => a.iter().map(to_val).collect(),
        Value::Object(o) => {
            let mut m = Map::with_capacity_and_hasher(o.len(), Default::default());
            for (k, v) in o {
                m.insert(Val::utf8_str(k.clone().into_bytes()), to_val(v));
            }
            Val::obj(m)
        }
    }
}

/// jaq value → serde_json. Non-finite numbers become null (JSON has no NaN).
pub fn from_val(v: &Val) -> Value {
    match v {
        Val::Null => Value::Null,
        Val::Bool(b) => Value::Bool(*b),
        Val::Num(n) => num_to_json(n),
        Val::TStr(b) | Val::BStr(b) => Value::String(String::from_utf8_lossy(b).into_owned()),
        Val::Arr(a) => Value::Array(a.iter().map(from_val).collect()),
        Val::Obj(o) => {
            let mut m = serde_json::Map::with_capacity(o.len());
            for (k, v) in o.iter() {
                let key = match k {
                    Val::TStr(b) | Val::BStr(b) => String::from_utf8_lossy(b).into_owned(),
                    other => other.to_string(),
                };
                m.insert(key, from_val(v));
            }
            Value::Object(m)
        }
    }
}

fn num_to_json(n: &Num) -> Value {
    match n {
        Num::Int(i) => Value::from(*i as i64),
        Num::Float(f) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        Num::BigInt(_) | Num::Dec(_) => {
            let text = n.to_string();
            serde_json::from_str(&text).unwrap_or(Value::Null)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// Filters that reach deep into the library: definitions calling definitions, natives
    /// called only from definitions, `@format` strings, paths, folds, patterns, try/catch.
    const LIBRARY_USERS: &[&str] = &[
        "map(select(.a > 1)) | sort_by(.a) | group_by(.b) | map(length)",
        "to_entries | from_entries | with_entries(.value |= tostring)",
        "[paths] | length",
        "walk(if type == \"string\" then ascii_downcase else . end)",
        "[limit(2; .[]?)], first(.[]?), ([.[]?] | last)",
        "@base64 \"x\\(.)\" | @base64d",
        "tojson | fromjson | @json",
        "[range(0; 3)] | add | tostring | test(\"^3$\")",
        "(\"a-b-c\" | split(\"-\") | join(\"+\")), (\"abc\" | sub(\"b\"; \"x\"))",
        "reduce .[]? as $x (0; . + 1) | [foreach range(3) as $i (0; . + $i)]",
        "try (. as [$a, {b: $c}] | [$a, $c]) catch \"not a pair\"",
        "try error(\"no\") catch ascii_upcase",
        "def twice(f): f | f; [1, 2] | map(twice(. * 2)) | any(. > 7), all(. > 0)",
        "del(.[0]?) | getpath([\"x\"])? // \"none\" | ltrimstr(\"n\") | splits(\"o\")",
        "todate? // now | type",
        "[.[]?] | unique | min, max, (flatten | reverse) | indices(1)",
        "(env | type), ([splits(\", *\")?] | length), ([..] | length), (keys? // 0)",
    ];

    #[test]
    fn a_filter_compiles_with_only_the_library_it_reaches_and_answers_the_same() {
        let inputs = [
            json!([3, 1, 2]),
            json!([{"a": 2, "b": "x"}, {"a": 3, "b": "x"}, {"a": 1, "b": "y"}]),
            json!({"x": "no", "y": ["A", {"z": "B"}]}),
            json!("s"),
            json!(null),
        ];
        for code in LIBRARY_USERS {
            let whole = compile_whole(code).unwrap_or_else(|e| panic!("{code}: {e}"));
            let pruned = compile_pruned(code)
                .unwrap_or_else(|e| panic!("{code} does not compile pruned: {e}"));
            for input in &inputs {
                let run = |f: &jaq_core::Filter<Data>| {
                    let ctx = Ctx::<Data>::new(&f.lut, Vars::new([]));
                    f.id.run((ctx, to_val(input)))
                        .map(|r| {
                            unwrap_valr(r)
                                .map(|v| from_val(&v))
                                .map_err(|e| e.to_string())
                        })
                        .collect::<Vec<_>>()
                };
                assert_eq!(run(&pruned), run(&whole), "{code} on {input}");
            }
        }
    }

    #[test]
    fn every_shipped_filter_compiles_pruned() {
        let catalog = crate::mapping::pack::shipped_catalog();
        assert!(catalog.routes.len() > 40, "{} routes", catalog.routes.len());
        assert_eq!(
            PRUNING_MISSED.load(std::sync::atomic::Ordering::Relaxed),
            0,
            "a filter needed the whole library"
        );
    }

    #[test]
    fn plain_paths_are_recognised_and_nothing_else() {
        assert_eq!(
            lookup_path(" .steps.up "),
            Some(vec![Seg::Key("steps".into()), Seg::Key("up".into())])
        );
        assert_eq!(lookup_path("."), Some(vec![]));
        for not in [
            ".a | .b", ".\"a b\"", "..", ".a.", "a", ".a?", ".1a", ".a,.b", "",
        ] {
            assert_eq!(lookup_path(not), None, "{not}");
        }
    }

    #[test]
    fn paths_of_keys_and_indices_are_read_in_place_as_jq_reads_them() {
        use Seg::{Index, Key};
        assert_eq!(
            lookup_path(".steps.t.tenant[0]"),
            Some(vec![
                Key("steps".into()),
                Key("t".into()),
                Key("tenant".into()),
                Index(0)
            ])
        );
        assert_eq!(
            lookup_path(".a[1][2].b"),
            Some(vec![Key("a".into()), Index(1), Index(2), Key("b".into())])
        );
        for not in [
            ".a[-1]", ".a[]", ".a[x]", ".a[0]b", ".[0]", ".a | .b", ".a?", "a", "",
        ] {
            assert_eq!(lookup_path(not), None, "{not}");
        }
        let input = json!({"s": {"t": [{"id": 1}, null, false]}, "n": null, "x": 3});
        // Read in place where the types fit; the rest (indexing the wrong type) is jq's to
        // answer, and `holds` runs it.
        let in_place = [
            ".s.t[0]",
            ".s.t[1]",
            ".s.t[2]",
            ".s.t[9]",
            ".s.u[0]",
            ".n[4].z",
            ".s.t[0].id",
        ];
        for code in in_place.into_iter().chain([".x.y", ".s.t.y", ".s[0]"]) {
            let f = JqFilter::compile(code).unwrap();
            let jq = f.run_jaq_val(to_val(&input));
            match f.peek_path(&input) {
                Some(v) => assert_eq!(Ok(v), jq.as_ref().map_err(|_| ()), "{code}"),
                None => assert!(!in_place.contains(&code), "{code} not read in place"),
            }
            let truthy = jq
                .as_ref()
                .ok()
                .map(|v| !matches!(v, Value::Null | Value::Bool(false)));
            assert_eq!(f.holds(&input).ok(), truthy, "{code}");
        }
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i32>().prop_map(|n| json!(n)),
            "[a-z]{0,4}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 30, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                prop::collection::btree_map("[a-c]", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// The shortcut answers exactly what jq answers, and leaves the errors to jq.
        #[test]
        fn a_plain_path_answers_as_jq_does(input in arb_json(), path in prop::collection::vec("[a-c]", 0..4)) {
            let code = if path.is_empty() { ".".to_owned() } else { format!(".{}", path.join(".")) };
            let f = JqFilter::compile(&code).unwrap();
            let by_jq = f.run_jaq(&input);
            let mut moved = input.clone();
            match f.take_path(&mut moved) {
                Some(v) => prop_assert_eq!(Ok(v), by_jq),
                None => prop_assert!(by_jq.is_err(), "{:?}", by_jq),
            }
        }

        /// With indices too, what is read in place or moved out is what jq answers.
        #[test]
        fn a_path_with_indices_answers_as_jq_does(input in arb_json(), path in prop::collection::vec("[a-c]|\\[[0-2]\\]", 0..4)) {
            let code = path.iter().fold(String::new(), |mut c, seg| {
                if !seg.starts_with('[') || c.is_empty() {
                    c.push('.');
                }
                c.push_str(seg);
                c
            });
            let code = if code.is_empty() { ".".to_owned() } else { code };
            let Ok(f) = JqFilter::compile(&code) else { return Ok(()) };
            let by_jq = f.run_jaq(&input);
            if let Some(v) = f.peek_path(&input) {
                prop_assert_eq!(Ok(v.clone()), by_jq.clone(), "{}", code);
            }
            let mut moved = input.clone();
            if let Some(v) = f.take_path(&mut moved) {
                prop_assert_eq!(Ok(v), by_jq, "{}", code);
            }
        }
    }

    #[test]
    fn compiles_and_runs_a_company_transform() {
        let f = JqFilter::compile(
            r#"{companyId: .id, companyName: .name, isEnabled: .enabled, type: (if .reseller then "Partner" else "Customer" end)}"#,
        )
        .unwrap();
        let out = f
            .run(&json!({"id": "c1", "name": "Acme", "enabled": true, "reseller": false}))
            .unwrap();
        assert_eq!(
            out,
            json!({"companyId": "c1", "companyName": "Acme", "isEnabled": true, "type": "Customer"})
        );
    }

    #[test]
    fn standard_library_is_available() {
        let f = JqFilter::compile("[.[] | select(. > 1)] | map(. * 2) | length").unwrap();
        assert_eq!(f.run(&json!([1, 2, 3])).unwrap(), json!(2));
        let f = JqFilter::compile(".createdOn / 1000 | todate").unwrap();
        assert_eq!(
            f.run(&json!({"createdOn": 0})).unwrap(),
            json!("1970-01-01T00:00:00Z")
        );
    }

    #[test]
    fn preludes_define_shared_functions() {
        let f = JqFilter::compile_with_prelude("def twice: . * 2;", "twice").unwrap();
        assert_eq!(f.run(&json!(21)).unwrap(), json!(42));
        assert_eq!(f.source(), "twice");
    }

    #[test]
    fn bad_filters_are_compile_errors() {
        assert!(matches!(
            JqFilter::compile("{a: "),
            Err(JqError::Compile(_))
        ));
        assert!(matches!(
            JqFilter::compile("nosuchfunction(1)"),
            Err(JqError::Compile(_))
        ));
    }

    #[test]
    fn runtime_errors_and_empty_output_are_reported() {
        let f = JqFilter::compile(".a + 1").unwrap();
        assert!(matches!(
            f.run(&json!({"a": "x"})),
            Err(JqError::Runtime(_))
        ));
        let f = JqFilter::compile("empty").unwrap();
        assert_eq!(f.run(&json!(1)), Err(JqError::NoOutput));
    }

    #[test]
    fn values_survive_the_round_trip() {
        let v = json!({"a": [1, -2, 3.5, "s", null, true, {"b": {}}], "big": 12345678901234i64});
        assert_eq!(from_val(&to_val(&v)), v);
    }

    #[test]
    fn filters_are_shareable_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<JqFilter>();
    }
}
