//! Lowering: a parsed jq filter (and its pack's prelude) to a [`Program`], or the reason it
//! has none.
//!
//! This is where a filter's engine is chosen, once, when its pack loads: a filter whose every
//! term lowers runs on the plan for every input, and one with any term the plan has no
//! operation for runs on jaq for every input. Nothing is left to find out at run time, so
//! the lowering refuses by construct (folds, updates, formats, float literals, recursion…),
//! never by what an input might hold: every operation the plan has answers every input as
//! jaq would ([`super::eval`]).

use std::rc::Rc;

use jaq_core::load::lex::StrPart;
use jaq_core::load::parse::{BinaryOp, Def, Pattern, Term};
use jaq_core::ops::Math;
use jaq_core::path::{Opt, Part};
use serde_json::Value;

use super::demand::scan;
use super::plan::{BUILTINS, Node, Piece, Program, Step};

/// How deep definitions may be inlined into each other (recursion is not lowered).
const MAX_INLINE: usize = 24;

/// How many terms a lowering may build: inlining copies a definition's body at each call,
/// so definitions calling each other twice over could otherwise grow without bound.
const MAX_TERMS: usize = 20_000;

/// Whether lowering went through; `Err` says what has no plan.
type Built = Result<Node, String>;

/// What a term being lowered can see.
#[derive(Clone)]
struct Scope<'s> {
    /// Variables by stack slot; `None` is a slot the scope cannot see (its caller's).
    vars: Vec<Option<&'s str>>,
    /// The prelude's definitions; the first `visible` of them can be called from here.
    defs: Rc<Vec<&'s Def<&'s str>>>,
    visible: usize,
    /// Definitions inlined around this point.
    depth: usize,
    /// Terms still allowed to be built (shared by the whole lowering).
    budget: Rc<std::cell::Cell<usize>>,
}

/// What one parse of a route's filter gives besides jaq's own compilation.
#[derive(Debug)]
pub struct Translation {
    /// The filter's plan, or why it has none (it then runs on jaq).
    pub plan: Result<Program, String>,
    /// The top-level keys of its input the filter can read, or `None` when it may read the
    /// input whole (a bare `.`, a function applied to it, an update, a fold…). Over-
    /// approximates: a key read from a deeper value counts too. Lets a route build only the
    /// parts of its context its filters look at.
    pub roots: Option<Vec<String>>,
}

/// Parses `code` (after the `prelude` definitions) once for both questions.
pub fn translate(prelude: &str, code: &str) -> Translation {
    let Some(term) = jaq_core::load::parse(code, |p| p.term()) else {
        return Translation {
            plan: Err("the filter does not parse".to_owned()),
            roots: None,
        };
    };
    let mut roots = Vec::new();
    let roots = scan(&term, true, &mut roots).ok().map(|()| {
        roots.sort();
        roots.dedup();
        roots
    });
    Translation {
        plan: lower(prelude, &term),
        roots,
    }
}

fn lower(prelude: &str, term: &Term<&str>) -> Result<Program, String> {
    let defs: Vec<Def<&str>> = if prelude.trim().is_empty() {
        Vec::new()
    } else {
        jaq_core::load::parse(prelude, |p| p.defs())
            .ok_or_else(|| "the prelude does not parse".to_owned())?
    };
    let scope = Scope {
        vars: Vec::new(),
        visible: defs.len(),
        defs: Rc::new(defs.iter().collect()),
        depth: 0,
        budget: Rc::new(std::cell::Cell::new(MAX_TERMS)),
    };
    let root = build(term, &scope)?;
    Ok(Program { root })
}

fn no(what: &str) -> String {
    what.to_owned()
}

/// An integer literal (jaq reads any other number literal as a decimal it keeps as text).
fn int(n: &str) -> Result<i64, String> {
    n.parse::<i64>()
        .map_err(|_| format!("the number literal `{n}` is not an integer"))
}

/// Lowers one term; `Err` when any part of it has no plan.
fn build<'s>(t: &'s Term<&'s str>, s: &Scope<'s>) -> Built {
    let left = s
        .budget
        .get()
        .checked_sub(1)
        .ok_or_else(|| format!("more than {MAX_TERMS} terms once definitions are inlined"))?;
    s.budget.set(left);
    let boxed = |t: &'s Term<&'s str>| build(t, s).map(Box::new);
    match t {
        Term::Id => Ok(Node::Id),
        Term::Num(n) => Ok(Node::Lit(Value::from(int(n)?))),
        Term::Str(None, parts) => {
            let mut pieces = Vec::new();
            for part in parts {
                match part {
                    StrPart::Str(text) => push_text(&mut pieces, text),
                    StrPart::Char(c) => push_text(&mut pieces, c.encode_utf8(&mut [0; 4])),
                    StrPart::Term(t) => pieces.push(Piece::Term(build(t, s)?)),
                }
            }
            Ok(match pieces.as_slice() {
                [] => Node::Lit(Value::String(String::new())),
                [Piece::Text(text)] => Node::Lit(Value::String(text.clone())),
                _ => Node::Interp(pieces),
            })
        }
        Term::Str(Some(fmt), _) => Err(format!("the format `{fmt}`")),
        Term::Arr(None) => Ok(Node::Lit(Value::Array(Vec::new()))),
        Term::Arr(Some(t)) => Ok(Node::Arr(boxed(t)?)),
        Term::Obj(entries) => {
            let mut out = Vec::with_capacity(entries.len());
            for (k, v) in entries {
                let entry = match (k, v) {
                    (k, Some(v)) => (build(k, s)?, build(v, s)?),
                    // `{$x}` is `{x: $x}`.
                    (Term::Var(name), None) => (
                        Node::Lit(Value::String(name[1..].to_owned())),
                        var(name, s)?,
                    ),
                    // `{a}` and `{"a"}` are `{a: .a}`.
                    (Term::Str(None, parts), None) => match parts.as_slice() {
                        [StrPart::Str(key)] => (
                            Node::Lit(Value::String((*key).to_owned())),
                            Node::Path(
                                Box::new(Node::Id),
                                vec![(Step::Key((*key).to_owned()), false)],
                                Vec::new(),
                            ),
                        ),
                        _ => return Err(no("an object key with no value that is not plain")),
                    },
                    (_, None) => return Err(no("an object key with no value that is not plain")),
                };
                out.push(entry);
            }
            Ok(Node::Obj(out))
        }
        Term::BinOp(l, op, r) => {
            let two = |f: fn(Box<Node>, Box<Node>) -> Node| Ok(f(boxed(l)?, boxed(r)?));
            match op {
                BinaryOp::Pipe(None) => two(Node::Pipe),
                BinaryOp::Pipe(Some(Pattern::Var(name))) => {
                    let mut inner = s.clone();
                    inner.vars.push(Some(name));
                    Ok(Node::Bind(boxed(l)?, Box::new(build(r, &inner)?)))
                }
                BinaryOp::Pipe(Some(Pattern::Arr(_) | Pattern::Obj(_))) => {
                    Err(no("a destructuring binding (`as [$a]`, `as {$a}`)"))
                }
                BinaryOp::Comma => two(Node::Comma),
                BinaryOp::Alt => two(Node::Alt),
                BinaryOp::And => Ok(Node::Logic(boxed(l)?, false, boxed(r)?)),
                BinaryOp::Or => Ok(Node::Logic(boxed(l)?, true, boxed(r)?)),
                BinaryOp::Cmp(c) => Ok(Node::Cmp(boxed(l)?, *c, boxed(r)?)),
                BinaryOp::Math(Math::Add) => two(Node::Add),
                BinaryOp::Math(Math::Div) => two(Node::Div),
                BinaryOp::Math(m @ (Math::Sub | Math::Mul | Math::Rem)) => {
                    Err(format!("the operator `{}`", m.as_str()))
                }
                BinaryOp::Assign
                | BinaryOp::Update
                | BinaryOp::UpdateMath(_)
                | BinaryOp::UpdateAlt => Err(no("an update (`=`, `|=`, `+=`, `//=`…)")),
            }
        }
        Term::TryCatch(t, None) => Ok(Node::Try(boxed(t)?)),
        Term::TryCatch(_, Some(_)) => Err(no("`try … catch`")),
        Term::IfThenElse(branches, otherwise) => {
            let mut node = match otherwise {
                Some(e) => build(e, s)?,
                None => Node::Id,
            };
            for (cond, then) in branches.iter().rev() {
                node = Node::If(boxed(cond)?, boxed(then)?, Box::new(node));
            }
            Ok(node)
        }
        Term::Var(name) => var(name, s),
        Term::Path(base, path) => {
            let base = build(base, s)?;
            let mut steps = Vec::with_capacity(path.0.len());
            let mut indices = Vec::new();
            let slot = |t: &'s Term<&'s str>, indices: &mut Vec<Node>| -> Result<usize, String> {
                indices.push(build(t, s)?);
                Ok(indices.len() - 1)
            };
            for (part, opt) in &path.0 {
                let step = match part {
                    Part::Index(t) => {
                        let at = slot(t, &mut indices)?;
                        // A constant index is taken as it is (it has one value and no error).
                        let constant = if let Node::Lit(v) = &indices[at] {
                            match v {
                                Value::String(k) => Some(Step::Key(k.clone())),
                                Value::Number(n) => n.as_i64().map(Step::Index),
                                Value::Null
                                | Value::Bool(_)
                                | Value::Array(_)
                                | Value::Object(_) => None,
                            }
                        } else {
                            None
                        };
                        match constant {
                            Some(step) => {
                                indices.pop();
                                step
                            }
                            None => Step::Dyn(at),
                        }
                    }
                    Part::Range(None, None) => Step::Iter,
                    Part::Range(from, upto) => {
                        let from = from.as_ref().map(|t| slot(t, &mut indices)).transpose()?;
                        let upto = upto.as_ref().map(|t| slot(t, &mut indices)).transpose()?;
                        Step::Slice(from, upto)
                    }
                };
                steps.push((step, matches!(opt, Opt::Optional)));
            }
            Ok(Node::Path(Box::new(base), steps, indices))
        }
        Term::Def(..) => Err(no("a local `def`")),
        Term::Call(name, args) => call(name, args, s),
        // `-1`: a negative literal (an index from the end, a slice bound).
        Term::Neg(t) => match &**t {
            Term::Num(n) => Ok(Node::Lit(Value::from(-int(n)?))),
            _ => Err(no("`-` before a term that is not a number")),
        },
        Term::Recurse => Err(no("`..`")),
        Term::Label(..) | Term::Break(_) => Err(no("`label`/`break`")),
        Term::Fold(..) => Err(no("`reduce`/`foreach`")),
    }
}

fn push_text(pieces: &mut Vec<Piece>, text: &str) {
    match pieces.last_mut() {
        Some(Piece::Text(t)) => t.push_str(text),
        Some(Piece::Term(_)) | None => pieces.push(Piece::Text(text.to_owned())),
    }
}

fn var(name: &str, s: &Scope<'_>) -> Built {
    s.vars
        .iter()
        .rposition(|v| *v == Some(name))
        .map(Node::Var)
        .ok_or_else(|| format!("the variable `{name}` is not bound"))
}

fn call<'s>(name: &'s str, args: &'s [Term<&'s str>], s: &Scope<'s>) -> Built {
    if let Some(at) = s.defs[..s.visible]
        .iter()
        .rposition(|d| d.name == name && d.args.len() == args.len())
    {
        return inline(at, args, s);
    }
    if args.is_empty()
        && let Some((_, b)) = BUILTINS.iter().find(|(n, _)| *n == name)
    {
        return Ok(Node::Builtin(*b));
    }
    let one = |f: fn(Box<Node>) -> Node| -> Built { Ok(f(Box::new(build(&args[0], s)?))) };
    match (name, args.len()) {
        ("empty", 0) => Ok(Node::Empty),
        ("null", 0) => Ok(Node::Lit(Value::Null)),
        ("true", 0) => Ok(Node::Lit(Value::Bool(true))),
        ("false", 0) => Ok(Node::Lit(Value::Bool(false))),
        ("select", 1) => one(Node::Select),
        ("map", 1) => one(Node::Map),
        ("join", 1) => one(Node::Join),
        ("contains", 1) => one(Node::Contains),
        ("sort_by", 1) => one(Node::SortBy),
        ("range", 1) => Ok(Node::Range(
            Box::new(Node::Lit(Value::from(0))),
            Box::new(build(&args[0], s)?),
        )),
        ("range", 2) => Ok(Node::Range(
            Box::new(build(&args[0], s)?),
            Box::new(build(&args[1], s)?),
        )),
        (name, n) => Err(format!("`{name}/{n}`")),
    }
}

/// A call to a prelude definition, inlined: `def f($a; $b): body` called as `f(x; y)` is
/// `x as $a | y as $b | body`, the arguments running on the call's input and seeing only
/// the caller's variables, the body seeing only its parameters. Definitions taking filters
/// (`def f(g)`) have no plan, and neither has recursion (past [`MAX_INLINE`]).
fn inline<'s>(at: usize, args: &'s [Term<&'s str>], s: &Scope<'s>) -> Built {
    let def = s.defs[at];
    if s.depth + 1 > MAX_INLINE {
        return Err(format!(
            "`{}` calls definitions more than {MAX_INLINE} deep (or itself)",
            def.name
        ));
    }
    if def.args.iter().any(|a| !a.starts_with('$')) {
        return Err(format!("`{}` takes a filter argument", def.name));
    }
    let mut binds = Vec::with_capacity(args.len());
    for arg in args {
        // Earlier parameters are bound (slots above the caller's) but not visible to it.
        let mut vars = s.vars.clone();
        vars.extend(std::iter::repeat_n(None, binds.len()));
        binds.push(build(arg, &Scope { vars, ..s.clone() })?);
    }
    let mut vars = vec![None; s.vars.len()];
    vars.extend(def.args.iter().map(|a| Some(*a)));
    let body = Scope {
        vars,
        defs: s.defs.clone(),
        // The definition sees those before it and itself (so recursion meets the bound).
        visible: at + 1,
        depth: s.depth + 1,
        budget: s.budget.clone(),
    };
    let mut node = build(&def.body, &body)?;
    for b in binds.into_iter().rev() {
        node = Node::Bind(Box::new(b), Box::new(node));
    }
    Ok(node)
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{OUTSIDE, agree};
    use crate::mapping::jq::JqFilter;
    use serde_json::json;

    #[test]
    fn constructs_outside_the_subset_are_left_to_jaq() {
        for code in OUTSIDE {
            assert!(!JqFilter::compile(code).unwrap().is_native(), "{code}");
        }
        for code in [
            ".a",
            "{a: .b} | .a",
            "if .a then 1 else 2 end",
            "[.[]? | tostring]",
        ] {
            assert!(JqFilter::compile(code).unwrap().is_native(), "{code}");
        }
    }

    #[test]
    fn prelude_definitions_are_inlined_with_their_value_parameters() {
        let prelude = "def pair($a; $b): [$a, $b, .x];\ndef twice: pair(.x; .x);";
        let f = JqFilter::compile_with_prelude(prelude, ".y as $x | twice, pair($x; 1)").unwrap();
        assert!(f.is_native());
        let input = json!({"x": 7, "y": 8});
        assert!(agree(&f, &input));
        assert_eq!(f.run(&input), Ok(json!([7, 7, 7])));
        // A parameter does not see the caller's variables of the same name, nor the reverse.
        let f =
            JqFilter::compile_with_prelude("def g($x): $x + 1;", "2 as $x | g(10) + $x").unwrap();
        assert!(agree(&f, &json!(null)));
        assert_eq!(f.run(&json!(null)), Ok(json!(13)));
        // Recursion is not inlined.
        let f = JqFilter::compile_with_prelude("def r: r;", "r").unwrap();
        assert!(!f.is_native());
        // Nor is a program that would double at each of 20 definitions.
        let mut prelude = String::from("def d0: .a;\n");
        for i in 1..20 {
            prelude.push_str(&format!("def d{i}: [d{}, d{}];\n", i - 1, i - 1));
        }
        let f = JqFilter::compile_with_prelude(&prelude, "d19").unwrap();
        assert!(!f.is_native());
    }
}
