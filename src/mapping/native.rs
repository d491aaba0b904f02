//! A direct evaluator for the part of jq that route filters are mostly written in.
//!
//! jaq runs a filter over its own values, so every run converts the route context in
//! (`to_val`) and the answer out (`from_val`), and jq's standard library is itself jq
//! (`true` is `0 == 0`, `tostring` is `"\(.)"`, `select` and `map` are definitions): a
//! five-field object built from a LongJump tenant took ~18 µs, more than the XML parse.
//! This evaluator walks the parsed filter over `serde_json` values by reference instead.
//!
//! It is only ever a shortcut. A filter it cannot translate whole (folds, updates, formats,
//! floats in arithmetic, …) has no native program; a run that meets anything whose meaning
//! it does not reproduce exactly (an error whose text jq words, several outputs where jaq's
//! order would matter) gives up and jaq runs the filter from the start. Filters are pure, so
//! running again is safe. Tests compare both evaluators on every shipped filter.
//!
//! [`translate`] also answers a related question from the same parse: which top-level keys of its
//! input a filter can read, so that a route builds only those parts of its context.

use std::borrow::Cow;
use std::rc::Rc;

use jaq_core::load::lex::StrPart;
use jaq_core::load::parse::{BinaryOp, Def, Pattern, Term};
use jaq_core::ops::{Cmp, Math};
use jaq_core::path::{Opt, Part};
use serde_json::{Map, Value};

use super::project::{Demand, Seg};

/// How deep definitions may be inlined into each other (recursion is not translated).
const MAX_INLINE: usize = 24;

/// The most values one `range` gives (a route's fan-out sources and item indices stay far
/// below it; a filter that reaches it is refused with an error instead of run to the end).
pub const MAX_RANGE: i64 = 1 << 20;

/// How many terms a translation may build: inlining copies a definition's body at each
/// call, so definitions calling each other twice over could otherwise grow without bound.
const MAX_TERMS: usize = 20_000;

static NULL: Value = Value::Null;
static TRUE: Value = Value::Bool(true);
static FALSE: Value = Value::Bool(false);

/// A filter translated for direct evaluation.
#[derive(Debug)]
pub struct Program {
    root: Node,
}

/// Why a native run stopped without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// A jq error: `?`, `try` and `//` may absorb it; otherwise jaq words it.
    Fail,
    /// Something this evaluator does not reproduce: jaq must run the filter.
    Unsupported,
    /// The first output was found (internal: ends the run early, as jaq's lazy run does).
    Found,
    /// A `range` longer than [`MAX_RANGE`], or not between numbers: refused here, never
    /// handed to jaq (which would count it out, an upstream's page count of 10^12 taking the
    /// process's memory).
    TooLong,
}

#[derive(Debug)]
enum Node {
    Id,
    Lit(Value),
    /// String interpolation: literal text and terms.
    Interp(Vec<Piece>),
    Arr(Option<Box<Node>>),
    Obj(Vec<(Node, Node)>),
    Pipe(Box<Node>, Box<Node>),
    /// `l as $x | r`: each output of `l` bound in the next slot while `r` runs.
    Bind(Box<Node>, Box<Node>),
    Comma(Box<Node>, Box<Node>),
    Alt(Box<Node>, Box<Node>),
    /// `and` (stop = false) and `or` (stop = true).
    Logic(Box<Node>, bool, Box<Node>),
    Cmp(Box<Node>, Cmp, Box<Node>),
    Add(Box<Node>, Box<Node>),
    /// `l / r` over numbers: jaq divides as floats, whole or not.
    Div(Box<Node>, Box<Node>),
    /// `range(from; upto)` over integers.
    Range(Box<Node>, Box<Node>),
    /// `join(sep)`, `contains(x)`: the argument runs on the call's input.
    Join(Box<Node>),
    Contains(Box<Node>),
    /// `sort_by(f)`: `f` runs on each element.
    SortBy(Box<Node>),
    If(Box<Node>, Box<Node>, Box<Node>),
    Try(Box<Node>),
    Var(usize),
    Path(Box<Node>, Vec<(Step, bool)>),
    Empty,
    Builtin(Builtin),
    Select(Box<Node>),
    Map(Box<Node>),
}

#[derive(Debug)]
enum Piece {
    Text(String),
    Term(Node),
}

#[derive(Debug)]
enum Step {
    Key(String),
    Index(i64),
    Iter,
    /// `.[f]`: `f` runs on the path's own input.
    Dyn(Box<Node>),
    /// `.[from:upto]` on an array; the bounds run on the path's own input.
    Slice(Option<Box<Node>>, Option<Box<Node>>),
}

#[derive(Debug, Clone, Copy)]
enum Builtin {
    Not,
    Type,
    Length,
    ToString,
    AsciiDowncase,
    AsciiUpcase,
    Floor,
    ToDate,
    ToNumber,
    Reverse,
    Max,
    /// `add` of an array's or object's values.
    Sum,
    Keys,
    ToEntries,
    FromEntries,
}

/// Whether translation went through (`Err` = not translated; jaq runs the filter).
type Built = Result<Node, ()>;

/// What a term being translated can see.
#[derive(Clone)]
struct Scope<'s> {
    /// Variables by stack slot; `None` is a slot the scope cannot see (its caller's).
    vars: Vec<Option<&'s str>>,
    /// The prelude's definitions; the first `visible` of them can be called from here.
    defs: Rc<Vec<&'s Def<&'s str>>>,
    visible: usize,
    /// Definitions inlined around this point.
    depth: usize,
    /// Terms still allowed to be built (shared by the whole translation).
    budget: Rc<std::cell::Cell<usize>>,
}

/// What one parse of a route's filter gives besides jaq's own compilation.
#[derive(Debug, Default)]
pub struct Translation {
    /// The filter for the direct evaluator; `None` when any part of it is outside what this
    /// evaluator reproduces.
    pub program: Option<Program>,
    /// The top-level keys of its input the filter can read, or `None` when it may read the
    /// input whole (a bare `.`, a function applied to it, an update, a fold…). Over-
    /// approximates: a key read from a deeper value counts too. Lets a route build only the
    /// parts of its context its filters look at.
    pub roots: Option<Vec<String>>,
}

/// Parses `code` (after the `prelude` definitions) once for both questions.
pub fn translate(prelude: &str, code: &str) -> Translation {
    let Some(term) = jaq_core::load::parse(code, |p| p.term()) else {
        return Translation::default();
    };
    let mut roots = Vec::new();
    let roots = scan(&term, true, &mut roots).ok().map(|()| {
        roots.sort();
        roots.dedup();
        roots
    });
    Translation {
        program: Program::compile(prelude, &term),
        roots,
    }
}

impl Program {
    fn compile(prelude: &str, term: &Term<&str>) -> Option<Self> {
        let defs: Vec<Def<&str>> = if prelude.trim().is_empty() {
            Vec::new()
        } else {
            jaq_core::load::parse(prelude, |p| p.defs())?
        };
        let scope = Scope {
            vars: Vec::new(),
            visible: defs.len(),
            defs: Rc::new(defs.iter().collect()),
            depth: 0,
            budget: Rc::new(std::cell::Cell::new(MAX_TERMS)),
        };
        let root = build(term, &scope).ok()?;
        Some(Self { root })
    }

    /// The filter's first output on `input`, as jaq gives it; `Err(NoOutput)` is exact
    /// (the filter ran to its end without an output or an error).
    pub fn run(&self, input: &Value) -> Result<Value, Outcome> {
        let kept = Kept::default();
        let mut env = Env {
            vars: Vec::new(),
            kept: &kept,
        };
        let mut first = None;
        match eval(&self.root, input, &mut env, &mut |v, _| {
            first = Some(v.into_owned());
            Err(Stop::Found)
        }) {
            Ok(()) => Err(Outcome::NoOutput),
            Err(Stop::Found) => first.ok_or(Outcome::Defer),
            Err(Stop::Fail | Stop::Unsupported) => Err(Outcome::Defer),
            Err(Stop::TooLong) => Err(Outcome::TooLong),
        }
    }
}

impl Program {
    /// What the filter can read of its input ([`super::project`]): every value it outputs,
    /// compares, adds, measures or prints is read whole; a value it only walks into, tests
    /// for truth or asks the type of is read in part.
    pub fn demand(&self) -> Demand {
        let mut d = Demand::default();
        let outs = reads(&self.root, &vec![Vec::new()], &mut Vec::new(), &mut d);
        whole_all(&outs, &mut d);
        d
    }
}

/// Paths into the filter's input that a term's outputs may be (none: values it makes).
type Origins = Vec<Vec<Seg>>;

fn whole_all(o: &Origins, d: &mut Demand) {
    o.iter().for_each(|p| d.whole(p));
}

fn touch_all(o: &Origins, d: &mut Demand) {
    o.iter().for_each(|p| d.touch(p));
}

fn extend(o: &Origins, seg: &Seg, d: &mut Demand) -> Origins {
    o.iter()
        .map(|p| {
            let mut q = p.clone();
            q.push(seg.clone());
            // Walking into a value reads its kind (a key of an array fails) even when what
            // is found there is never used.
            d.touch(&q);
            q
        })
        .collect()
}

/// The origins of `n`'s outputs when its input is one of `input`, the variable slots'
/// origins in `env`; what `n` reads on the way is added to `d`. Mirrors [`eval`].
fn reads(n: &Node, input: &Origins, env: &mut Vec<Origins>, d: &mut Demand) -> Origins {
    match n {
        Node::Id => input.clone(),
        Node::Lit(_) | Node::Empty | Node::Arr(None) => Vec::new(),
        Node::Var(i) => match env.get(*i) {
            Some(o) => o.clone(),
            // A slot the program cannot see is one eval gives up on (jaq then runs the
            // filter over everything): nothing can be left out.
            None => {
                d.whole(&[]);
                Vec::new()
            }
        },
        Node::Interp(pieces) => {
            for piece in pieces {
                match piece {
                    Piece::Text(_) => {}
                    Piece::Term(t) => {
                        let o = reads(t, input, env, d);
                        whole_all(&o, d);
                    }
                }
            }
            Vec::new()
        }
        Node::Arr(Some(t)) => {
            let o = reads(t, input, env, d);
            whole_all(&o, d);
            Vec::new()
        }
        Node::Obj(entries) => {
            for (k, v) in entries {
                let ko = reads(k, input, env, d);
                whole_all(&ko, d);
                let vo = reads(v, input, env, d);
                whole_all(&vo, d);
            }
            Vec::new()
        }
        Node::Pipe(l, r) => {
            let lo = reads(l, input, env, d);
            reads(r, &lo, env, d)
        }
        Node::Bind(l, r) => {
            let lo = reads(l, input, env, d);
            env.push(lo);
            let out = reads(r, input, env, d);
            env.pop();
            out
        }
        Node::Comma(l, r) => {
            let mut out = reads(l, input, env, d);
            out.extend(reads(r, input, env, d));
            out
        }
        Node::Alt(l, r) => {
            let mut out = reads(l, input, env, d);
            touch_all(&out, d);
            out.extend(reads(r, input, env, d));
            out
        }
        Node::Logic(l, _, r) => {
            let lo = reads(l, input, env, d);
            touch_all(&lo, d);
            let ro = reads(r, input, env, d);
            touch_all(&ro, d);
            Vec::new()
        }
        Node::Cmp(l, _, r) | Node::Add(l, r) | Node::Div(l, r) | Node::Range(l, r) => {
            let lo = reads(l, input, env, d);
            whole_all(&lo, d);
            let ro = reads(r, input, env, d);
            whole_all(&ro, d);
            Vec::new()
        }
        Node::If(c, t, e) => {
            let co = reads(c, input, env, d);
            touch_all(&co, d);
            let mut out = reads(t, input, env, d);
            out.extend(reads(e, input, env, d));
            out
        }
        Node::Try(t) => reads(t, input, env, d),
        Node::Path(base, steps) => {
            let mut at = reads(base, input, env, d);
            touch_all(&at, d);
            for (step, _) in steps {
                at = match step {
                    Step::Key(k) => extend(&at, &Seg::Key(k.clone()), d),
                    Step::Index(_) => extend(&at, &Seg::Index, d),
                    Step::Iter => extend(&at, &Seg::Iter, d),
                    // A key or index computed from the path's input: any part may be read.
                    Step::Dyn(f) => {
                        let fo = reads(f, input, env, d);
                        whole_all(&fo, d);
                        whole_all(&at, d);
                        Vec::new()
                    }
                    Step::Slice(from, upto) => {
                        for f in from.iter().chain(upto) {
                            let fo = reads(f, input, env, d);
                            whole_all(&fo, d);
                        }
                        whole_all(&at, d);
                        Vec::new()
                    }
                };
            }
            at
        }
        Node::Builtin(b) => {
            match b {
                Builtin::Not | Builtin::Type => touch_all(input, d),
                Builtin::Length
                | Builtin::ToString
                | Builtin::AsciiDowncase
                | Builtin::AsciiUpcase
                | Builtin::Floor
                | Builtin::ToDate
                | Builtin::ToNumber
                | Builtin::Reverse
                | Builtin::Max
                | Builtin::Sum
                | Builtin::Keys
                | Builtin::ToEntries
                | Builtin::FromEntries => whole_all(input, d),
            }
            Vec::new()
        }
        Node::Select(f) => {
            let fo = reads(f, input, env, d);
            touch_all(&fo, d);
            input.clone()
        }
        // What these output is made of their input, read whole.
        Node::Join(f) | Node::Contains(f) => {
            whole_all(input, d);
            let fo = reads(f, input, env, d);
            whole_all(&fo, d);
            Vec::new()
        }
        // An order outputs the elements themselves; `map` only walks into them.
        Node::SortBy(f) => {
            whole_all(input, d);
            reads_each(f, input, env, d)
        }
        Node::Map(f) => {
            touch_all(input, d);
            reads_each(f, input, env, d)
        }
    }
}

/// What `f`, run on each element of an `input`, reads; its outputs are kept, so read whole.
fn reads_each(f: &Node, input: &Origins, env: &mut Vec<Origins>, d: &mut Demand) -> Origins {
    let items = extend(input, &Seg::Iter, d);
    let fo = reads(f, &items, env, d);
    whole_all(&fo, d);
    Vec::new()
}

/// Collects the root keys `t` reads; `root` says whether `t`'s input is the filter's input.
fn scan(t: &Term<&str>, root: bool, out: &mut Vec<String>) -> Result<(), ()> {
    let whole = |root: bool| if root { Err(()) } else { Ok(()) };
    match t {
        Term::Id | Term::Recurse => whole(root),
        Term::Num(_) | Term::Var(_) | Term::Break(_) => Ok(()),
        // `@json` and the like format their input.
        Term::Str(Some(_), _) => whole(root),
        Term::Str(None, parts) => {
            for part in parts {
                match part {
                    StrPart::Term(t) => scan(t, root, out)?,
                    StrPart::Str(_) | StrPart::Char(_) => {}
                }
            }
            Ok(())
        }
        Term::Arr(t) => t.iter().try_for_each(|t| scan(t, root, out)),
        Term::Obj(entries) => {
            for (k, v) in entries {
                match (k, v) {
                    (k, Some(v)) => {
                        scan(k, root, out)?;
                        scan(v, root, out)?;
                    }
                    (Term::Var(_), None) => {}
                    // `{a}` reads `.a`.
                    (Term::Str(None, parts), None) => match parts.as_slice() {
                        [StrPart::Str(key)] if root => out.push((*key).to_owned()),
                        _ => whole(root)?,
                    },
                    (_, None) => whole(root)?,
                }
            }
            Ok(())
        }
        Term::Neg(t) | Term::Label(_, t) => scan(t, root, out),
        Term::BinOp(l, op, r) => match op {
            // The right side reads what the left gives: the input only if the left is `.`.
            BinaryOp::Pipe(None) => {
                scan(l, root, out)?;
                scan(r, root && matches!(**l, Term::Id), out)
            }
            BinaryOp::Pipe(Some(Pattern::Var(_)))
            | BinaryOp::Comma
            | BinaryOp::Alt
            | BinaryOp::Or
            | BinaryOp::And
            | BinaryOp::Math(_)
            | BinaryOp::Cmp(_) => {
                scan(l, root, out)?;
                scan(r, root, out)
            }
            BinaryOp::Pipe(Some(Pattern::Arr(_) | Pattern::Obj(_)))
            | BinaryOp::Assign
            | BinaryOp::Update
            | BinaryOp::UpdateMath(_)
            | BinaryOp::UpdateAlt => whole(root),
        },
        Term::TryCatch(t, c) => {
            scan(t, root, out)?;
            // The handler's input is the error.
            c.iter().try_for_each(|c| scan(c, false, out))
        }
        Term::IfThenElse(branches, otherwise) => {
            for (cond, then) in branches {
                scan(cond, root, out)?;
                scan(then, root, out)?;
            }
            otherwise.iter().try_for_each(|e| scan(e, root, out))
        }
        Term::Fold(..) | Term::Def(..) => whole(root),
        // Constants ignore their input; any other call may read it whole (its arguments
        // run on the same input, so they are covered by that).
        Term::Call(name, args) => {
            if args.is_empty() && matches!(*name, "null" | "true" | "false" | "empty") {
                Ok(())
            } else {
                whole(root)
            }
        }
        Term::Path(base, path) => {
            let mut parts = path.0.iter();
            if matches!(**base, Term::Id) && root {
                // `.k…`: only the first key is read of the input itself.
                match parts.next() {
                    Some((Part::Index(Term::Str(None, key)), _)) => match key.as_slice() {
                        [StrPart::Str(k)] => out.push((*k).to_owned()),
                        _ => return Err(()),
                    },
                    Some(_) | None => return Err(()),
                }
            } else {
                scan(base, root, out)?;
            }
            // Index expressions run on the path's input, not on the value being indexed.
            for (part, _) in parts {
                match part {
                    Part::Index(i) => scan(i, root, out)?,
                    Part::Range(from, to) => {
                        from.iter().chain(to).try_for_each(|t| scan(t, root, out))?;
                    }
                }
            }
            Ok(())
        }
    }
}

/// A native run that gave no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The filter has no output on this input (jq would say the same).
    NoOutput,
    /// jaq must run it (an error to word, or something not reproduced here).
    Defer,
    /// A `range` past [`MAX_RANGE`]: an error, not run by jaq either.
    TooLong,
}

/// Translates one term; `Err` when any part of it is outside the subset.
fn build<'s>(t: &'s Term<&'s str>, s: &Scope<'s>) -> Built {
    let left = s.budget.get().checked_sub(1).ok_or(())?;
    s.budget.set(left);
    match t {
        Term::Id => Ok(Node::Id),
        Term::Num(n) => n
            .parse::<i64>()
            .map(|i| Node::Lit(Value::from(i)))
            .map_err(|_| ()),
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
        Term::Str(Some(_), _) => Err(()),
        Term::Arr(None) => Ok(Node::Lit(Value::Array(Vec::new()))),
        Term::Arr(Some(t)) => Ok(Node::Arr(Some(Box::new(build(t, s)?)))),
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
                            ),
                        ),
                        _ => return Err(()),
                    },
                    (_, None) => return Err(()),
                };
                out.push(entry);
            }
            Ok(Node::Obj(out))
        }
        Term::BinOp(l, op, r) => {
            let l2 = build(l, s);
            match op {
                BinaryOp::Pipe(None) => Ok(Node::Pipe(Box::new(l2?), Box::new(build(r, s)?))),
                BinaryOp::Pipe(Some(Pattern::Var(name))) => {
                    let mut inner = s.clone();
                    inner.vars.push(Some(name));
                    Ok(Node::Bind(Box::new(l2?), Box::new(build(r, &inner)?)))
                }
                BinaryOp::Pipe(Some(Pattern::Arr(_) | Pattern::Obj(_))) => Err(()),
                BinaryOp::Comma => Ok(Node::Comma(Box::new(l2?), Box::new(build(r, s)?))),
                BinaryOp::Alt => Ok(Node::Alt(Box::new(l2?), Box::new(build(r, s)?))),
                BinaryOp::And => Ok(Node::Logic(Box::new(l2?), false, Box::new(build(r, s)?))),
                BinaryOp::Or => Ok(Node::Logic(Box::new(l2?), true, Box::new(build(r, s)?))),
                BinaryOp::Cmp(c) => Ok(Node::Cmp(Box::new(l2?), *c, Box::new(build(r, s)?))),
                BinaryOp::Math(Math::Add) => Ok(Node::Add(Box::new(l2?), Box::new(build(r, s)?))),
                BinaryOp::Math(Math::Div) => Ok(Node::Div(Box::new(l2?), Box::new(build(r, s)?))),
                BinaryOp::Math(Math::Sub | Math::Mul | Math::Rem)
                | BinaryOp::Assign
                | BinaryOp::Update
                | BinaryOp::UpdateMath(_)
                | BinaryOp::UpdateAlt => Err(()),
            }
        }
        Term::TryCatch(t, None) => Ok(Node::Try(Box::new(build(t, s)?))),
        Term::TryCatch(_, Some(_)) => Err(()),
        Term::IfThenElse(branches, otherwise) => {
            let mut node = match otherwise {
                Some(e) => build(e, s)?,
                None => Node::Id,
            };
            for (cond, then) in branches.iter().rev() {
                node = Node::If(
                    Box::new(build(cond, s)?),
                    Box::new(build(then, s)?),
                    Box::new(node),
                );
            }
            Ok(node)
        }
        Term::Var(name) => var(name, s),
        Term::Path(base, path) => {
            let base = build(base, s)?;
            let mut steps = Vec::with_capacity(path.0.len());
            for (part, opt) in &path.0 {
                let step = match part {
                    Part::Index(Term::Str(None, parts))
                        if matches!(parts.as_slice(), [StrPart::Str(_)]) =>
                    {
                        match &parts[0] {
                            StrPart::Str(key) => Step::Key((*key).to_owned()),
                            StrPart::Char(_) | StrPart::Term(_) => return Err(()),
                        }
                    }
                    Part::Index(Term::Num(n)) => Step::Index(n.parse::<i64>().map_err(|_| ())?),
                    Part::Index(t) => Step::Dyn(Box::new(build(t, s)?)),
                    Part::Range(None, None) => Step::Iter,
                    Part::Range(from, upto) => {
                        let bound = |t: &'s Option<Term<&'s str>>| -> Result<_, ()> {
                            t.as_ref().map(|t| build(t, s).map(Box::new)).transpose()
                        };
                        Step::Slice(bound(from)?, bound(upto)?)
                    }
                };
                steps.push((step, matches!(opt, Opt::Optional)));
            }
            Ok(Node::Path(Box::new(base), steps))
        }
        // Local definitions are rare in route filters: left to jaq.
        Term::Def(..) => Err(()),
        Term::Call(name, args) => call(name, args, s),
        // `-1`: a negative literal (an index from the end, a slice bound).
        Term::Neg(t) => match &**t {
            Term::Num(n) => n
                .parse::<i64>()
                .map(|i| Node::Lit(Value::from(-i)))
                .map_err(|_| ()),
            _ => Err(()),
        },
        Term::Recurse | Term::Label(..) | Term::Break(_) | Term::Fold(..) => Err(()),
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
        .ok_or(())
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
        _ => Err(()),
    }
}

/// jq's builtins without arguments that the evaluator reproduces, by name.
const BUILTINS: &[(&str, Builtin)] = &[
    ("not", Builtin::Not),
    ("type", Builtin::Type),
    ("length", Builtin::Length),
    ("tostring", Builtin::ToString),
    ("ascii_downcase", Builtin::AsciiDowncase),
    ("ascii_upcase", Builtin::AsciiUpcase),
    ("floor", Builtin::Floor),
    ("todate", Builtin::ToDate),
    ("todateiso8601", Builtin::ToDate),
    ("tonumber", Builtin::ToNumber),
    ("reverse", Builtin::Reverse),
    ("max", Builtin::Max),
    ("add", Builtin::Sum),
    ("keys", Builtin::Keys),
    ("to_entries", Builtin::ToEntries),
    ("from_entries", Builtin::FromEntries),
];

/// A call to a prelude definition, inlined: `def f($a; $b): body` called as `f(x; y)` is
/// `x as $a | y as $b | body`, the arguments running on the call's input and seeing only
/// the caller's variables, the body seeing only its parameters. Definitions taking filters
/// (`def f(g)`) are left to jaq, and so is recursion (past [`MAX_INLINE`]).
fn inline<'s>(at: usize, args: &'s [Term<&'s str>], s: &Scope<'s>) -> Built {
    let def = s.defs[at];
    if s.depth + 1 > MAX_INLINE || def.args.iter().any(|a| !a.starts_with('$')) {
        return Err(());
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

/// Where a term's outputs go, one by one, with the variable slots; an `Err` stops the term.
type Sink<'a, 'i> = dyn FnMut(Cow<'i, Value>, &mut Env<'i>) -> Result<(), Stop> + 'a;

/// The variables in scope, by slot, borrowed for the whole run: a variable is read by
/// reference however often a filter reads it (`. as $c | … $c.steps.list[$i] …` in a loop
/// copied the whole context at every read while variables held their own values).
struct Env<'i> {
    vars: Vec<&'i Value>,
    kept: &'i Kept,
}

/// Values made during a run that a later term borrows (a variable bound to a computed value,
/// the input of the right side of a pipe), kept until the run ends. Made on first use: most
/// runs of a route filter bind only what they were given.
#[derive(Default)]
struct Kept(std::cell::OnceCell<typed_arena::Arena<Value>>);

impl Kept {
    fn keep(&self, v: Value) -> &Value {
        self.0
            .get_or_init(|| typed_arena::Arena::with_capacity(8))
            .alloc(v)
    }
}

impl<'i> Env<'i> {
    /// The same slots, for a term run on a value that lives shorter than the run.
    fn local(&self) -> Self {
        Env {
            vars: self.vars.clone(),
            kept: self.kept,
        }
    }

    fn hold(&self, v: Cow<'i, Value>) -> &'i Value {
        match v {
            Cow::Borrowed(v) => v,
            Cow::Owned(v) => self.kept.keep(v),
        }
    }
}

/// Runs `n` on `input`, handing each output to `out` until it or `n` stops.
fn eval<'i>(
    n: &'i Node,
    input: &'i Value,
    env: &mut Env<'i>,
    out: &mut Sink<'_, 'i>,
) -> Result<(), Stop> {
    match n {
        Node::Id => out(Cow::Borrowed(input), env),
        Node::Lit(v) => out(Cow::Borrowed(v), env),
        Node::Empty => Ok(()),
        Node::Var(i) => {
            let v = *env.vars.get(*i).ok_or(Stop::Unsupported)?;
            out(Cow::Borrowed(v), env)
        }
        Node::Interp(pieces) => {
            let mut text = String::new();
            for piece in pieces {
                match piece {
                    Piece::Text(t) => text.push_str(t),
                    Piece::Term(t) => {
                        let v = single(t, input, env)?;
                        to_text(&v, &mut text)?;
                    }
                }
            }
            out(Cow::Owned(Value::String(text)), env)
        }
        Node::Arr(None) => out(Cow::Owned(Value::Array(Vec::new())), env),
        Node::Arr(Some(t)) => {
            let mut items = Vec::new();
            eval(t, input, env, &mut |v, _| {
                items.push(v.into_owned());
                Ok(())
            })?;
            out(Cow::Owned(Value::Array(items)), env)
        }
        Node::Obj(entries) => {
            let mut map = Map::with_capacity(entries.len());
            for (k, v) in entries {
                let key = match single(k, input, env)? {
                    Cow::Borrowed(Value::String(s)) => s.clone(),
                    Cow::Owned(Value::String(s)) => s,
                    // jaq words the error (an object key must be a string).
                    _ => return Err(Stop::Fail),
                };
                let value = match singles(v, input, env)? {
                    Some(v) => v.into_owned(),
                    // One entry with no value: the object has no output.
                    None => return Ok(()),
                };
                map.insert(key, value);
            }
            out(Cow::Owned(Value::Object(map)), env)
        }
        Node::Pipe(l, r) => eval(l, input, env, &mut |v, env| pipe(r, v, env, out)),
        Node::Bind(l, r) => eval(l, input, env, &mut |v, env| {
            let v = env.hold(v);
            env.vars.push(v);
            let result = eval(r, input, env, &mut |w, env| {
                // An output leaves the variable's scope: what receives it sees the slots
                // as they were before the binding (`(f as $x | g) as $y` reads `$y` from
                // the slot `$x` had, which the translation gave to `$y`).
                let own = env.vars.pop();
                let result = out(w, env);
                env.vars.extend(own);
                result
            });
            env.vars.pop();
            result
        }),
        Node::Comma(l, r) => {
            eval(l, input, env, out)?;
            eval(r, input, env, out)
        }
        Node::Alt(l, r) => {
            // jaq: the left's outputs that are true, or errors, in order; if none, the right.
            let mut kept = Vec::new();
            let failed = match eval(l, input, env, &mut |v, _| {
                if truthy(&v) {
                    kept.push(v);
                }
                Ok(())
            }) {
                Ok(()) => false,
                Err(Stop::Fail) => true,
                Err(e @ (Stop::Unsupported | Stop::Found | Stop::TooLong)) => return Err(e),
            };
            if kept.is_empty() && !failed {
                return eval(r, input, env, out);
            }
            for v in kept {
                out(v, env)?;
            }
            if failed { Err(Stop::Fail) } else { Ok(()) }
        }
        Node::Logic(l, stop, r) => eval(l, input, env, &mut |a, env| {
            if truthy(&a) == *stop {
                out(Cow::Borrowed(if *stop { &TRUE } else { &FALSE }), env)
            } else {
                eval(r, input, env, &mut |b, env| {
                    out(Cow::Borrowed(if truthy(&b) { &TRUE } else { &FALSE }), env)
                })
            }
        }),
        Node::Cmp(l, op, r) => {
            let (a, b) = (single(l, input, env)?, single(r, input, env)?);
            let yes = compare(&a, *op, &b)?;
            out(Cow::Borrowed(if yes { &TRUE } else { &FALSE }), env)
        }
        Node::Add(l, r) => {
            let (a, b) = (single(l, input, env)?, single(r, input, env)?);
            out(add(a, b)?, env)
        }
        Node::Div(l, r) => {
            let (a, b) = (single(l, input, env)?, single(r, input, env)?);
            out(Cow::Owned(divide(&a, &b)?), env)
        }
        Node::Range(from, upto) => {
            let (a, b) = (single(from, input, env)?, single(upto, input, env)?);
            let (Some(a), Some(b)) = (int(&a), int(&b)) else {
                return Err(if endless(&a, &b) {
                    Stop::TooLong
                } else {
                    Stop::Unsupported
                });
            };
            if b.saturating_sub(a) > MAX_RANGE {
                return Err(Stop::TooLong);
            }
            for i in a..b {
                out(Cow::Owned(Value::from(i)), env)?;
            }
            Ok(())
        }
        Node::Join(sep) => {
            let sep = single(sep, input, env)?;
            let (Value::Array(items), Value::String(sep)) = (input, sep.as_ref()) else {
                return Err(Stop::Unsupported);
            };
            let mut text = String::new();
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    text.push_str(sep);
                }
                to_text(item, &mut text)?;
            }
            out(Cow::Owned(Value::String(text)), env)
        }
        Node::Contains(x) => {
            let x = single(x, input, env)?;
            let (Value::String(a), Value::String(b)) = (input, x.as_ref()) else {
                return Err(Stop::Unsupported);
            };
            out(
                Cow::Borrowed(if a.contains(b.as_str()) {
                    &TRUE
                } else {
                    &FALSE
                }),
                env,
            )
        }
        Node::SortBy(f) => {
            let Value::Array(items) = input else {
                return Err(Stop::Unsupported);
            };
            let sorted = sort_order(items, f, env)?
                .into_iter()
                .map(|i| items[i].clone())
                .collect();
            out(Cow::Owned(Value::Array(sorted)), env)
        }
        Node::If(c, t, e) => eval(c, input, env, &mut |v, env| {
            if truthy(&v) {
                eval(t, input, env, out)
            } else {
                eval(e, input, env, out)
            }
        }),
        Node::Try(t) => {
            // Only the body's own errors are absorbed, never those of what follows it.
            let mut downstream = None;
            match eval(t, input, env, &mut |v, env| {
                out(v, env).inspect_err(|e| {
                    downstream = Some(*e);
                })
            }) {
                Ok(()) => Ok(()),
                Err(e) => match downstream {
                    Some(d) => Err(d),
                    None if e == Stop::Fail => Ok(()),
                    None => Err(e),
                },
            }
        }
        Node::Path(base, steps) => eval(base, input, env, &mut |v, env| {
            path(v, steps, input, env, out)
        }),
        Node::Builtin(b) => out(builtin(*b, input)?, env),
        Node::Select(f) => eval(f, input, env, &mut |v, env| {
            if truthy(&v) {
                out(Cow::Borrowed(input), env)
            } else {
                Ok(())
            }
        }),
        Node::Map(f) => {
            let items = values(input).ok_or(Stop::Fail)?;
            let mut outs = Vec::new();
            for item in items {
                eval(f, item, env, &mut |v, _| {
                    outs.push(v.into_owned());
                    Ok(())
                })?;
            }
            out(Cow::Owned(Value::Array(outs)), env)
        }
    }
}

/// Runs `r` on one output of the left side of a pipe.
fn pipe<'i>(
    r: &'i Node,
    v: Cow<'i, Value>,
    env: &mut Env<'i>,
    out: &mut Sink<'_, 'i>,
) -> Result<(), Stop> {
    match v {
        Cow::Borrowed(x) => eval(r, x, env, out),
        Cow::Owned(x) => eval_owned(r, x, env, out),
    }
}

/// Runs `n` on an input made during the run and owned here: an order, a reversal, `.`, a
/// pipe or a branch takes it without copying its elements (a page filtered, ordered and cut
/// from 500 associations copied each kept one twice); any other term borrows it from the
/// run's keep, as [`eval`] would.
fn eval_owned<'i>(
    n: &'i Node,
    input: Value,
    env: &mut Env<'i>,
    out: &mut Sink<'_, 'i>,
) -> Result<(), Stop> {
    let borrowed = |input: Value, env: &mut Env<'i>, out: &mut Sink<'_, 'i>| {
        let x = env.kept.keep(input);
        eval(n, x, env, out)
    };
    match n {
        Node::Id => out(Cow::Owned(input), env),
        Node::Pipe(l, r) => eval_owned(l, input, env, &mut |v, env| pipe(r, v, env, out)),
        Node::SortBy(f) => match array(input) {
            Ok(mut items) => {
                let order = {
                    // The keys borrow the elements only while they are computed.
                    sort_order(&items, f, &mut env.local())?
                };
                let sorted = order
                    .into_iter()
                    .map(|i| std::mem::take(&mut items[i]))
                    .collect();
                out(Cow::Owned(Value::Array(sorted)), env)
            }
            Err(other) => borrowed(other, env, out),
        },
        Node::Builtin(Builtin::Reverse) => match array(input) {
            Ok(mut items) => {
                items.reverse();
                out(Cow::Owned(Value::Array(items)), env)
            }
            Err(other) => borrowed(other, env, out),
        },
        Node::If(c, t, e) => {
            // The condition runs on a borrow of the input. One answer and no error: the
            // branch takes the input. Anything else runs as `eval` runs it (lazily, each
            // answer's branch before the next answer), the condition again: it is pure.
            let (mut first, mut answers) = (false, 0);
            let ran = eval(c, &input, &mut env.local(), &mut |a, _| {
                first |= answers == 0 && truthy(&a);
                answers += 1;
                Ok(())
            });
            match (ran, answers) {
                (Ok(()), 1) => eval_owned(if first { t } else { e }, input, env, out),
                (Ok(()) | Err(_), _) => borrowed(input, env, out),
            }
        }
        // Any other builtin reads its input where it lies: borrowing it is what `eval` does,
        // so it is right for every builtin, and one that could take an owned input whole
        // gets its own arm above (as `reverse` has).
        Node::Builtin(_)
        | Node::Lit(_)
        | Node::Interp(_)
        | Node::Arr(_)
        | Node::Obj(_)
        | Node::Bind(..)
        | Node::Comma(..)
        | Node::Alt(..)
        | Node::Logic(..)
        | Node::Cmp(..)
        | Node::Add(..)
        | Node::Div(..)
        | Node::Range(..)
        | Node::Join(_)
        | Node::Contains(_)
        | Node::Try(_)
        | Node::Var(_)
        | Node::Path(..)
        | Node::Empty
        | Node::Select(_)
        | Node::Map(_) => borrowed(input, env, out),
    }
}

/// What `.[]` walks: an array's elements or an object's values; `None` for anything else.
fn values(v: &Value) -> Option<Box<dyn Iterator<Item = &Value> + '_>> {
    match v {
        Value::Array(a) => Some(Box::new(a.iter())),
        Value::Object(m) => Some(Box::new(m.values())),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => None,
    }
}

/// An array's elements, or the value that is not one.
fn array(v: Value) -> Result<Vec<Value>, Value> {
    match v {
        Value::Array(items) => Ok(items),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) | Value::Object(_) => {
            Err(v)
        }
    }
}

/// The order `sort_by(f)` puts `items` in, as indices; stable, as jaq's (equal keys keep
/// their order).
fn sort_order<'x>(items: &'x [Value], f: &'x Node, env: &mut Env<'x>) -> Result<Vec<usize>, Stop> {
    let mut keyed = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let mut key = Vec::new();
        eval(f, item, env, &mut |v, _| {
            if orderable(&v) {
                key.push(v);
                Ok(())
            } else {
                Err(Stop::Unsupported)
            }
        })?;
        keyed.push((key, i));
    }
    keyed.sort_by(|(a, _), (b, _)| {
        let pairs = a.iter().zip(b.iter());
        pairs
            .map(|(x, y)| order(x, y))
            .find(|o| o.is_ne())
            .unwrap_or_else(|| a.len().cmp(&b.len()))
    });
    Ok(keyed.into_iter().map(|(_, i)| i).collect())
}

/// The one output of `n`; several are refused (jaq's order of combinations is not
/// reproduced), none is refused too (the caller's combination would have no output).
fn single<'i>(n: &'i Node, input: &'i Value, env: &mut Env<'i>) -> Result<Cow<'i, Value>, Stop> {
    singles(n, input, env)?.ok_or(Stop::Unsupported)
}

/// The one output of `n`, or `None` when it has none.
fn singles<'i>(
    n: &'i Node,
    input: &'i Value,
    env: &mut Env<'i>,
) -> Result<Option<Cow<'i, Value>>, Stop> {
    let mut got: Option<Cow<'i, Value>> = None;
    let mut many = false;
    eval(n, input, env, &mut |v, _| {
        if got.is_some() {
            many = true;
            return Err(Stop::Unsupported);
        }
        got = Some(v);
        Ok(())
    })
    .map_err(|e| if many { Stop::Unsupported } else { e })?;
    Ok(got)
}

fn path<'i>(
    v: Cow<'i, Value>,
    steps: &'i [(Step, bool)],
    root: &'i Value,
    env: &mut Env<'i>,
    out: &mut Sink<'_, 'i>,
) -> Result<(), Stop> {
    let Some(((step, optional), rest)) = steps.split_first() else {
        return out(v, env);
    };
    let fail = if *optional { Ok(()) } else { Err(Stop::Fail) };
    match step {
        Step::Key(k) => match key(v, k) {
            Some(x) => path(x, rest, root, env, out),
            None => fail,
        },
        Step::Index(i) => match index(v, *i) {
            Some(x) => path(x, rest, root, env, out),
            None => fail,
        },
        Step::Dyn(f) => {
            let at = single(f, root, env)?;
            let x = match at.as_ref() {
                Value::String(k) => key(v, k),
                Value::Number(n) => match n.as_i64() {
                    Some(i) => index(v, i),
                    None => return Err(Stop::Unsupported),
                },
                Value::Null | Value::Bool(_) | Value::Array(_) | Value::Object(_) => {
                    return Err(Stop::Unsupported);
                }
            };
            match x {
                Some(x) => path(x, rest, root, env, out),
                None => fail,
            }
        }
        Step::Slice(from, upto) => {
            let from = bound(from.as_deref(), root, env)?;
            let upto = bound(upto.as_deref(), root, env)?;
            let Value::Array(a) = v.as_ref() else {
                return Err(Stop::Unsupported);
            };
            // jaq: a negative bound counts from the end; both are clamped to the array.
            let at = |b: Option<i64>, default: usize| -> usize {
                let len = a.len();
                match b {
                    None => default,
                    Some(i) if i >= 0 => usize::try_from(i).unwrap_or(usize::MAX).min(len),
                    Some(i) => usize::try_from(i.unsigned_abs())
                        .ok()
                        .and_then(|back| len.checked_sub(back))
                        .unwrap_or(0),
                }
            };
            let (start, end) = (at(from, 0), at(upto, a.len()));
            let part = a[start..end.max(start)].to_vec();
            path(Cow::Owned(Value::Array(part)), rest, root, env, out)
        }
        Step::Iter => match v {
            Cow::Borrowed(Value::Array(a)) => {
                for x in a {
                    path(Cow::Borrowed(x), rest, root, env, out)?;
                }
                Ok(())
            }
            Cow::Borrowed(Value::Object(m)) => {
                for x in m.values() {
                    path(Cow::Borrowed(x), rest, root, env, out)?;
                }
                Ok(())
            }
            Cow::Owned(Value::Array(a)) => {
                for x in a {
                    path(Cow::Owned(x), rest, root, env, out)?;
                }
                Ok(())
            }
            Cow::Owned(Value::Object(m)) => {
                for (_, x) in m {
                    path(Cow::Owned(x), rest, root, env, out)?;
                }
                Ok(())
            }
            Cow::Borrowed(Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_))
            | Cow::Owned(Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_)) => {
                fail
            }
        },
    }
}

/// A slice bound: absent or null is the array's end; an integer; anything else left to jaq.
fn bound<'i>(b: Option<&'i Node>, root: &'i Value, env: &mut Env<'i>) -> Result<Option<i64>, Stop> {
    let Some(b) = b else { return Ok(None) };
    match single(b, root, env)?.as_ref() {
        Value::Null => Ok(None),
        Value::Number(n) => n.as_i64().map(Some).ok_or(Stop::Unsupported),
        Value::Bool(_) | Value::String(_) | Value::Array(_) | Value::Object(_) => {
            Err(Stop::Unsupported)
        }
    }
}

/// `.[k]` with a string: `None` is jaq's error (indexing what is not an object or null).
fn key<'i>(v: Cow<'i, Value>, k: &str) -> Option<Cow<'i, Value>> {
    match v {
        Cow::Borrowed(Value::Object(m)) => Some(Cow::Borrowed(m.get(k).unwrap_or(&NULL))),
        Cow::Owned(Value::Object(mut m)) => Some(Cow::Owned(m.remove(k).unwrap_or(Value::Null))),
        Cow::Borrowed(Value::Null) | Cow::Owned(Value::Null) => Some(Cow::Borrowed(&NULL)),
        Cow::Borrowed(Value::Bool(_) | Value::Number(_) | Value::String(_) | Value::Array(_))
        | Cow::Owned(Value::Bool(_) | Value::Number(_) | Value::String(_) | Value::Array(_)) => {
            None
        }
    }
}

/// `.[i]` with an integer: arrays count negatives from the end; objects and null give
/// null (jaq looks the number up as a key); anything else is jaq's error.
fn index<'i>(v: Cow<'i, Value>, i: i64) -> Option<Cow<'i, Value>> {
    let at = |len: usize| -> Option<usize> {
        let i = if i < 0 { i + len as i64 } else { i };
        (0..len as i64).contains(&i).then_some(i as usize)
    };
    match v {
        Cow::Borrowed(Value::Array(a)) => Some(Cow::Borrowed(at(a.len()).map_or(&NULL, |i| &a[i]))),
        Cow::Owned(Value::Array(mut a)) => Some(match at(a.len()) {
            Some(i) => Cow::Owned(a.swap_remove(i)),
            None => Cow::Borrowed(&NULL),
        }),
        Cow::Borrowed(Value::Null | Value::Object(_))
        | Cow::Owned(Value::Null | Value::Object(_)) => Some(Cow::Borrowed(&NULL)),
        Cow::Borrowed(Value::Bool(_) | Value::Number(_) | Value::String(_))
        | Cow::Owned(Value::Bool(_) | Value::Number(_) | Value::String(_)) => None,
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::Null | Value::Bool(_) | Value::String(_) | Value::Array(_) | Value::Object(_) => {
            None
        }
    }
}

/// Whether jaq's `range(a; b)` (`a | while(. < b; . + 1)`) would count past [`MAX_RANGE`]
/// when its bounds are not both integers: up to a string, array or object it never stops (a
/// number is below every one of them: `range(1; "5")`), and between floats it goes as far as
/// they say (1e300). An upstream's page count sent as text would take the process's memory.
/// Ranges that stop at once (up to null or a boolean, or from a value `+ 1` refuses) are jaq's.
fn endless(a: &Value, b: &Value) -> bool {
    let start = match a {
        Value::Number(n) => n.as_f64(),
        // `null < b` gives null, then `null + 1` counts on from 1.
        Value::Null => Some(1.0),
        Value::Bool(_) | Value::String(_) | Value::Array(_) | Value::Object(_) => None,
    };
    let Some(start) = start else {
        return false;
    };
    match b {
        // NaN and the infinities fail the comparison, and are refused with the rest.
        Value::Number(n) => n.as_f64().is_none_or(|end| {
            !matches!(
                (end - start).partial_cmp(&(MAX_RANGE as f64)),
                Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
            )
        }),
        Value::String(_) | Value::Array(_) | Value::Object(_) => true,
        Value::Null | Value::Bool(_) => false,
    }
}

/// `a / b` as jaq divides numbers: as floats, the answer a float even when whole (`4 / 2`
/// is `2.0`). Anything else (string splitting, errors, a non-finite answer) is jaq's.
fn divide(a: &Value, b: &Value) -> Result<Value, Stop> {
    let (Value::Number(x), Value::Number(y)) = (a, b) else {
        return Err(Stop::Unsupported);
    };
    let (x, y) = (
        num(x).ok_or(Stop::Unsupported)?,
        num(y).ok_or(Stop::Unsupported)?,
    );
    serde_json::Number::from_f64(as_f64(x) / as_f64(y))
        .map(Value::Number)
        .ok_or(Stop::Unsupported)
}

/// Whether [`order`] ranks `v` as jaq does: scalars, numbers within `i64` (mixing floats
/// in would rank through `f64` and lose the total order a sort needs).
fn orderable(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(_) | Value::String(_) => true,
        Value::Number(n) => n.as_i64().is_some(),
        Value::Array(_) | Value::Object(_) => false,
    }
}

/// Where jq ranks a value's kind: null < false < true < numbers < strings < arrays < objects.
fn rank(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Bool(false) => 1,
        Value::Bool(true) => 2,
        Value::Number(_) => 3,
        Value::String(_) => 4,
        Value::Array(_) => 5,
        Value::Object(_) => 6,
    }
}

/// jaq's order of [`orderable`] values (strings by their bytes).
fn order(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_i64().cmp(&y.as_i64()),
        (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        _ => rank(a).cmp(&rank(b)),
    }
}

fn truthy(v: &Value) -> bool {
    !matches!(v, Value::Null | Value::Bool(false))
}

/// A number as jaq holds it: an integer, or a float; `None` for what jaq keeps as a big
/// integer (beyond `i64`), which is not reproduced.
fn num(n: &serde_json::Number) -> Option<Result<i64, f64>> {
    if let Some(i) = n.as_i64() {
        Some(Ok(i))
    } else if n.is_f64() {
        n.as_f64().map(Err)
    } else {
        None
    }
}

fn as_f64(n: Result<i64, f64>) -> f64 {
    match n {
        Ok(i) => i as f64,
        Err(f) => f,
    }
}

fn compare(a: &Value, op: Cmp, b: &Value) -> Result<bool, Stop> {
    use std::cmp::Ordering;
    if matches!(op, Cmp::Eq | Cmp::Ne) {
        let eq = equal(a, b)?;
        return Ok(if matches!(op, Cmp::Eq) { eq } else { !eq });
    }
    let ord = match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            match (
                num(x).ok_or(Stop::Unsupported)?,
                num(y).ok_or(Stop::Unsupported)?,
            ) {
                (Ok(x), Ok(y)) => x.cmp(&y),
                (x, y) => as_f64(x).partial_cmp(&as_f64(y)).ok_or(Stop::Unsupported)?,
            }
        }
        (Value::Array(_) | Value::Object(_), _) | (_, Value::Array(_) | Value::Object(_)) => {
            return Err(Stop::Unsupported);
        }
        // Strings by their bytes, different kinds by rank: as a sort orders them.
        _ => order(a, b),
    };
    Ok(match op {
        Cmp::Lt => ord == Ordering::Less,
        Cmp::Le => ord != Ordering::Greater,
        Cmp::Gt => ord == Ordering::Greater,
        Cmp::Ge => ord != Ordering::Less,
        Cmp::Eq | Cmp::Ne => unreachable_cmp(),
    })
}

/// `compare` answers equality before ordering; kept as a function so the match stays
/// exhaustive without a wildcard.
fn unreachable_cmp() -> bool {
    false
}

/// jq equality: numbers by value (1 == 1.0), objects whatever their key order.
fn equal(a: &Value, b: &Value) -> Result<bool, Stop> {
    Ok(match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            match (
                num(x).ok_or(Stop::Unsupported)?,
                num(y).ok_or(Stop::Unsupported)?,
            ) {
                (Ok(x), Ok(y)) => x == y,
                (x, y) => as_f64(x) == as_f64(y),
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                return Ok(false);
            }
            for (x, y) in x.iter().zip(y) {
                if !equal(x, y)? {
                    return Ok(false);
                }
            }
            true
        }
        (Value::Object(x), Value::Object(y)) => {
            if x.len() != y.len() {
                return Ok(false);
            }
            for (k, x) in x {
                match y.get(k) {
                    Some(y) if equal(x, y)? => {}
                    Some(_) | None => return Ok(false),
                }
            }
            true
        }
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::String(x), Value::String(y)) => x == y,
        _ => false,
    })
}

fn add<'i>(a: Cow<'i, Value>, b: Cow<'i, Value>) -> Result<Cow<'i, Value>, Stop> {
    Ok(match (a, b) {
        (Cow::Borrowed(Value::Null) | Cow::Owned(Value::Null), x)
        | (x, Cow::Borrowed(Value::Null) | Cow::Owned(Value::Null)) => x,
        (a, b) => match (a.into_owned(), b.into_owned()) {
            (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
                (Some(x), Some(y)) => {
                    Cow::Owned(Value::from(x.checked_add(y).ok_or(Stop::Unsupported)?))
                }
                _ => return Err(Stop::Unsupported),
            },
            (Value::String(mut x), Value::String(y)) => {
                x.push_str(&y);
                Cow::Owned(Value::String(x))
            }
            (Value::Array(mut x), Value::Array(y)) => {
                x.extend(y);
                Cow::Owned(Value::Array(x))
            }
            (Value::Object(mut x), Value::Object(y)) => {
                for (k, v) in y {
                    x.insert(k, v);
                }
                Cow::Owned(Value::Object(x))
            }
            _ => return Err(Stop::Fail),
        },
    })
}

/// The text `"\(v)"` gives: a string as it is, other values as JSON. Floats, arrays and
/// objects are left to jaq (its number and string formatting).
fn to_text(v: &Value, out: &mut String) -> Result<(), Stop> {
    match v {
        Value::String(s) => out.push_str(s),
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match n.as_i64() {
            Some(i) => {
                use std::fmt::Write as _;
                let _ = write!(out, "{i}");
            }
            None => return Err(Stop::Unsupported),
        },
        Value::Array(_) | Value::Object(_) => return Err(Stop::Unsupported),
    }
    Ok(())
}

fn builtin(b: Builtin, v: &Value) -> Result<Cow<'_, Value>, Stop> {
    let owned = |v: Value| Ok(Cow::Owned(v));
    match b {
        Builtin::Not => Ok(Cow::Borrowed(if truthy(v) { &FALSE } else { &TRUE })),
        Builtin::Type => owned(Value::String(
            match v {
                Value::Null => "null",
                Value::Bool(_) => "boolean",
                Value::Number(_) => "number",
                Value::String(_) => "string",
                Value::Array(_) => "array",
                Value::Object(_) => "object",
            }
            .to_owned(),
        )),
        Builtin::Length => match v {
            Value::Null => owned(Value::from(0)),
            Value::String(s) => owned(Value::from(s.chars().count())),
            Value::Array(a) => owned(Value::from(a.len())),
            Value::Object(m) => owned(Value::from(m.len())),
            Value::Number(n) => match n.as_i64() {
                Some(i) => owned(Value::from(i.checked_abs().ok_or(Stop::Unsupported)?)),
                None => Err(Stop::Unsupported),
            },
            Value::Bool(_) => Err(Stop::Fail),
        },
        Builtin::ToString => match v {
            Value::String(_) => Ok(Cow::Borrowed(v)),
            Value::Null
            | Value::Bool(_)
            | Value::Number(_)
            | Value::Array(_)
            | Value::Object(_) => {
                let mut s = String::new();
                to_text(v, &mut s)?;
                owned(Value::String(s))
            }
        },
        Builtin::Floor => match v {
            Value::Number(n) => match num(n).ok_or(Stop::Unsupported)? {
                Ok(_) => Ok(Cow::Borrowed(v)),
                // jaq: a whole float within the integers becomes an integer.
                Err(f) => {
                    let f = f.floor();
                    if f.is_finite() && i64::MIN as f64 <= f && f <= i64::MAX as f64 {
                        owned(Value::from(f as i64))
                    } else {
                        Err(Stop::Unsupported)
                    }
                }
            },
            Value::Null
            | Value::Bool(_)
            | Value::String(_)
            | Value::Array(_)
            | Value::Object(_) => Err(Stop::Unsupported),
        },
        // jaq's `todateiso8601`, through the same date library.
        Builtin::ToDate => {
            let at = match v {
                Value::Number(n) => match num(n).ok_or(Stop::Unsupported)? {
                    Ok(i) => jiff::Timestamp::from_second(i),
                    Err(f) => jiff::Timestamp::from_microsecond((f * 1e6) as i64),
                },
                Value::Null
                | Value::Bool(_)
                | Value::String(_)
                | Value::Array(_)
                | Value::Object(_) => return Err(Stop::Unsupported),
            };
            owned(Value::String(
                at.map_err(|_| Stop::Unsupported)?.to_string(),
            ))
        }
        // Integers written plainly; any other text is jaq's to parse (or refuse).
        Builtin::ToNumber => match v {
            Value::Number(_) => Ok(Cow::Borrowed(v)),
            Value::String(s) => {
                let digits = s.strip_prefix('-').unwrap_or(s);
                let plain = !digits.is_empty()
                    && digits.bytes().all(|b| b.is_ascii_digit())
                    && (digits == "0" || !digits.starts_with('0'))
                    && s != "-0";
                match s.parse::<i64>() {
                    Ok(i) if plain => owned(Value::from(i)),
                    Ok(_) | Err(_) => Err(Stop::Unsupported),
                }
            }
            Value::Null | Value::Bool(_) | Value::Array(_) | Value::Object(_) => {
                Err(Stop::Unsupported)
            }
        },
        Builtin::Reverse => match v {
            Value::Array(a) => owned(Value::Array(a.iter().rev().cloned().collect())),
            Value::Null
            | Value::Bool(_)
            | Value::Number(_)
            | Value::String(_)
            | Value::Object(_) => Err(Stop::Unsupported),
        },
        // jaq's `max_by(.)`: of equal elements the last; null for none.
        Builtin::Max => match v {
            Value::Array(a) if a.iter().all(orderable) => Ok(Cow::Borrowed(
                a.iter()
                    .reduce(|best, x| if order(x, best).is_ge() { x } else { best })
                    .unwrap_or(&NULL),
            )),
            Value::Array(_)
            | Value::Null
            | Value::Bool(_)
            | Value::Number(_)
            | Value::String(_)
            | Value::Object(_) => Err(Stop::Unsupported),
        },
        // `reduce .[] as $x (null; . + $x)`.
        Builtin::Sum => {
            let mut items = values(v).ok_or(Stop::Unsupported)?;
            items.try_fold(Cow::Borrowed(&NULL), |acc, x| add(acc, Cow::Borrowed(x)))
        }
        Builtin::Keys => match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort_unstable();
                owned(Value::Array(
                    keys.into_iter().map(|k| Value::String(k.clone())).collect(),
                ))
            }
            Value::Array(a) => owned(Value::Array((0..a.len()).map(Value::from).collect())),
            Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {
                Err(Stop::Unsupported)
            }
        },
        Builtin::ToEntries => {
            let entry = |key: Value, value: &Value| {
                let mut m = Map::with_capacity(2);
                m.insert("key".to_owned(), key);
                m.insert("value".to_owned(), value.clone());
                Value::Object(m)
            };
            match v {
                Value::Object(m) => owned(Value::Array(
                    m.iter()
                        .map(|(k, x)| entry(Value::String(k.clone()), x))
                        .collect(),
                )),
                Value::Array(a) => owned(Value::Array(
                    a.iter()
                        .enumerate()
                        .map(|(i, x)| entry(Value::from(i), x))
                        .collect(),
                )),
                Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {
                    Err(Stop::Unsupported)
                }
            }
        }
        // `reduce (.[] | {(.key): .value}) as $x ({}; . + $x)`, string keys only.
        Builtin::FromEntries => {
            let items = values(v).ok_or(Stop::Unsupported)?;
            let mut out = Map::new();
            for item in items {
                let Some(Value::String(k)) = item.get("key") else {
                    return Err(Stop::Unsupported);
                };
                let value = item.get("value").cloned().unwrap_or(Value::Null);
                out.insert(k.clone(), value);
            }
            owned(Value::Object(out))
        }
        Builtin::AsciiDowncase | Builtin::AsciiUpcase => match v {
            Value::String(s) => owned(Value::String(if matches!(b, Builtin::AsciiDowncase) {
                s.to_ascii_lowercase()
            } else {
                s.to_ascii_uppercase()
            })),
            Value::Null
            | Value::Bool(_)
            | Value::Number(_)
            | Value::Array(_)
            | Value::Object(_) => Err(Stop::Fail),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::jq::{JqError, JqFilter};
    use crate::mapping::pack::{Fan, Points, Reader, Route, StepKind};
    use proptest::prelude::*;
    use serde_json::json;

    /// When the direct evaluator answers, jaq answers the same; returns whether it answered.
    fn agree(f: &JqFilter, input: &Value) -> bool {
        match f.run_native(input) {
            None => false,
            // Refused before jaq is handed it: jaq would count it out (or forever).
            Some(Err(JqError::Runtime(m))) if m.starts_with("range of more than") => true,
            Some(native) => {
                assert_eq!(native, f.run_jaq(input), "{f:?} on {input}");
                true
            }
        }
    }

    /// One filter per construct the evaluator translates, and some it must refuse.
    const CONSTRUCTS: &[&str] = &[
        ".",
        ".a",
        ".a.b",
        ".[0]",
        ".[-1]",
        ".a[1]",
        ".[]",
        ".[]?",
        ".a[]?",
        "[.[]?]",
        ".a?",
        ".a.b?",
        ".a?.b",
        ".[\"a\"]",
        ".[.c]",
        "{a: .a, b: .b}",
        "{a, b}",
        "{(.c): 1}",
        "{\"x y\": .a}",
        ".a as $v | {$v}",
        ".a // .b",
        ".a // \"x\"",
        "(.a, .b) // 3",
        "(.a, error) // 1",
        "[.a, .b]",
        "[.a, .b] | .[1]",
        ".a == .b",
        ".a != 1",
        ".a < .b",
        ".a >= \"m\"",
        ".a <= null",
        ".a > false",
        ".a and .b",
        ".a or .b",
        "(.a, .b) and (true, false)",
        "if .a then .b elif .c then 1 else 2 end",
        "if .a then .b end",
        "if (.a, .b) then 1 else 2 end",
        "try .a.b",
        "try (.a, .b.c, 3)",
        "(try .a.b) | .c",
        ".a?, .b",
        ".a as $x | .b | [$x, .]",
        "[.[]? | select(. != null)]",
        "map(type)",
        "[.[]? | tostring]",
        "\"x\\(.a)y\"",
        "\"\\(.a)-\\(.b)\"",
        ".a | length",
        ".a | not",
        ".a | ascii_downcase",
        ".a | ascii_upcase",
        ".a + .b",
        "null + .a",
        "[.a] + [.b]",
        "{a: 1} + .",
        ". + {a: 1}",
        "empty",
        "(.a | select(.)) // \"no\"",
        "[.a, empty, .b]",
        "{a: empty}",
        "{a: (1, 2)}",
        "[.[]?] | length",
        "[.a[]?, .b]",
        ".a | tostring | . == \"1\"",
        "{a: empty, b: .a.b}",
        "[{a: .c, b: empty}]",
        ".a.b | empty",
        "[.a[0][]?.c | empty]",
        ". as $c | [.[]? | $c.a]",
        ". as $c | [range(0; $c | length) as $i | $c[$i]]",
        "[range(0; 3)]",
        "[range(1; [.[]?] | length)]",
        "[range(.a; 3)]?",
        "[range([.[]?] | length)]",
        ".a / 1000",
        ".a / .b",
        "(.a / 2) == (.b / 2)",
        ".a / 1000 | floor",
        ".a | floor",
        "(.a + 1600086400000) / 1000 | floor | todate",
        ".a | todate",
        ".a | tonumber",
        "(.a // \"0\") | tonumber",
        "[.[]? | tostring] | join(\"/\")",
        ".a | join(\", \")",
        ".c as $s | [.a, .b] | join($s)",
        "[.a, .b] | map(select(. != null and . != \"\")) | join(\" \")",
        ".a | contains(\"a\")",
        ".a | contains(.b)?",
        "[.[]?] | sort_by(.a)",
        ".a | sort_by(.)",
        "[.[]?] | sort_by(.a // \"\" | tostring | ascii_downcase)",
        "[.[]?] | sort_by(.a, .b)",
        ".a | reverse",
        "[.[]?] | reverse",
        ".a[1:]",
        ".a[:2]",
        ".a[1:-1]",
        ".a[-2:]",
        ".a[.b:.c]",
        ".a[1:]?",
        "[.[]?] | .[1:] | length",
        "[.[]?] | max",
        ".a | max",
        "[.a, .b, 1] | max",
        ".a | add",
        "[.[]?] | add",
        "add // []",
        ".a | keys",
        "keys",
        "to_entries",
        ".a | to_entries",
        "to_entries[] | .key",
        ".a | from_entries",
        "[.[]? | {key: (.a // \"k\" | tostring), value: .b}] | from_entries",
        "[to_entries[]? | select(.value != null)] | from_entries",
        "[.[]?] | sort_by(.a) | reverse",
        "[.[]?] | if .[0] then sort_by(.a) else . end | reverse",
        "[.[]?] | if (.[0], true) then sort_by(.a) else reverse end",
        "[.[]?] | if .[0].a.b then . else reverse end | .[1:]",
        "try ([.[]?] | if (.[0] | length) > 0 then . else reverse end)",
        "[.[]?] | (if .[0] == null then sort_by(.b) else . end | {n: length, f: .[0]})",
        "[.a, .b] | reverse | reverse",
        "(.a as $x | .b) as $y | $y",
        "(.a as $x | [$x, .b]) as $y | {y: $y, c: .c}",
        "[.[]? | (. as $x | $x) as $y | [$y]]",
    ];

    /// Filters the evaluator must leave to jaq.
    const OUTSIDE: &[&str] = &[
        "first(.a)",
        "reduce .[]? as $x (0; . + 1)",
        ".a - 1",
        ".a * 2",
        "1.5",
        "@json",
        "def f: .a; f",
        "..",
        "-.a",
        "-1.5",
        ".a |= 1",
        ". as [$x] | $x",
        "try .a catch 1",
        "def f(g): g; f(.a)",
    ];

    /// Compiled once: compiling per generated input was most of the property's time.
    static COMPILED: std::sync::LazyLock<Vec<JqFilter>> = std::sync::LazyLock::new(|| {
        CONSTRUCTS
            .iter()
            .chain(OUTSIDE)
            .map(|code| JqFilter::compile(code).unwrap())
            .collect()
    });

    fn arb_input() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-3i64..3).prop_map(|n| json!(n)),
            prop_oneof![Just(1.5), Just(2.0), Just(-0.5)].prop_map(|f| json!(f)),
            prop_oneof![
                Just(""),
                Just("1"),
                Just("0"),
                Just("a"),
                Just("b"),
                Just("É x")
            ]
            .prop_map(|s| Value::String(s.to_owned())),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                prop::collection::vec(
                    (
                        prop_oneof![Just("a"), Just("b"), Just("c"), Just("#text")],
                        inner
                    ),
                    0..4
                )
                .prop_map(|kv| Value::Object(
                    kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
                )),
            ]
        })
    }

    proptest! {
        #[test]
        fn the_direct_evaluator_answers_as_jaq_does(input in arb_input()) {
            for f in COMPILED.iter() {
                agree(f, &input);
            }
        }
    }

    #[test]
    fn a_range_past_the_limit_is_an_error_and_not_counted_out() {
        // The LongJump tenant search's fan-out source, over an upstream's page count.
        let f = JqFilter::compile("[range(1; .steps.first.page.totalPages // 1)]").unwrap();
        let pages = |n: i64| json!({"steps": {"first": {"page": {"totalPages": n}}}});
        assert_eq!(f.run(&pages(3)), Ok(json!([1, 2])));
        let at_limit = f.run(&pages(MAX_RANGE + 1)).unwrap();
        assert_eq!(at_limit.as_array().map(Vec::len), Some(MAX_RANGE as usize));
        for n in [MAX_RANGE + 2, 1_000_000_000_000, i64::MAX] {
            match f.run(&pages(n)) {
                Err(JqError::Runtime(m)) => assert!(m.contains("range"), "{m}"),
                other => panic!("{n}: {other:?}"),
            }
        }
        // Up to a page count sent as text, a float past the limit or not finite: refused, not
        // handed to jaq (which counts `range(1; "3")` forever: a number is below any string).
        let paged = |v: Value| json!({"steps": {"first": {"page": {"totalPages": v}}}});
        for v in [json!("3"), json!([2]), json!({"n": 2}), json!(1e300)] {
            match f.run(&paged(v.clone())) {
                Err(JqError::Runtime(m)) => assert!(m.contains("not between numbers"), "{m}"),
                other => panic!("{v}: {other:?}"),
            }
        }
        // Ranges that stop are jaq's, and answered as jq does.
        assert_eq!(f.run(&paged(json!(2.5))), Ok(json!([1, 2])));
        assert_eq!(f.run(&paged(json!(true))), Ok(json!([])));
        assert_eq!(f.run(&paged(json!(-1e300))), Ok(json!([])));
        // Not absorbed by `try` or `//` either: the run is refused whole.
        let f = JqFilter::compile("try [range(0; .n)] // 1").unwrap();
        assert!(matches!(
            f.run(&json!({"n": i64::MAX})),
            Err(JqError::Runtime(_))
        ));
    }

    #[test]
    fn a_binding_is_out_of_scope_for_what_receives_its_outputs() {
        // `$y` was given the slot the inner `$x` still held while its outputs flowed out.
        let f = JqFilter::compile_with_prelude(
            "def f($p): [$p, .a];",
            "f(.b) as $y | (.c as $x | $x) as $z | [$y, $z]",
        )
        .unwrap();
        let input = json!({"a": 1, "b": 2, "c": 3});
        assert_eq!(f.run_native(&input), Some(Ok(json!([[2, 1], 3]))));
        assert!(agree(&f, &input));
    }

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
    fn runs_that_meet_an_error_or_several_combinations_defer_to_jaq() {
        let defer = |code: &str, input: Value| {
            let f = JqFilter::compile(code).unwrap();
            assert!(f.run_native(&input).is_none(), "{code} on {input}");
            f.run(&input)
        };
        // The error text is jaq's own.
        assert!(matches!(defer(".a", json!(1)), Err(JqError::Runtime(_))));
        assert!(matches!(
            defer(".[]", json!(null)),
            Err(JqError::Runtime(_))
        ));
        assert!(matches!(
            defer(".a | length", json!({"a": true})),
            Err(JqError::Runtime(_))
        ));
        // jaq's order for several values in one object is not reproduced: deferred.
        assert_eq!(defer("{a: (1, 2)}", json!(null)), Ok(json!({"a": 1})));
        // Floats are jaq's to format.
        assert_eq!(defer(".a | tostring", json!({"a": 1.5})), Ok(json!("1.5")));
        // An empty result is exact: no output, no deferral.
        let f = JqFilter::compile("empty").unwrap();
        assert_eq!(f.run_native(&json!(1)), Some(Err(JqError::NoOutput)));
        // The first output ends the run, as jaq's lazy one does: the error after it is
        // never reached.
        let f = JqFilter::compile("1, error").unwrap();
        assert!(!f.is_native(), "error is not translated");
        let f = JqFilter::compile(".a, .b.c").unwrap();
        assert_eq!(f.run_native(&json!({"a": 1, "b": 2})), Some(Ok(json!(1))));
    }

    #[test]
    fn the_root_keys_a_filter_reads_are_known_or_it_reads_the_whole_input() {
        let r = |code: &str| translate("", code).roots;
        let keys = |k: &[&str]| Some(k.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(r(".steps.s"), keys(&["steps"]));
        assert_eq!(
            r("(.steps.assoc.content[0].x // null) as $p | .steps.company | f($p)"),
            keys(&["steps"])
        );
        assert_eq!(r(".steps.t.tenant[0] | v1_company"), keys(&["steps"]));
        assert_eq!(
            r("{a: .path.id, b: .query[.principal.k]}"),
            keys(&["path", "principal", "query"])
        );
        assert_eq!(r("{principal}"), keys(&["principal"]));
        assert_eq!(
            r("if .body then null else \"\\(.page.size)\" end"),
            keys(&["body", "page"])
        );
        assert_eq!(r("try .a catch ."), keys(&["a"]));
        assert_eq!(r("1, true, empty"), keys(&[]));
        for whole in [
            ".",
            "..",
            "f",
            "tojson",
            ". as $c | $c.path",
            ".[0]",
            ".[]",
            ".a |= 1",
            "reduce .x[] as $i (0; .)",
            "def f: .; f",
            "(.a, .) | .b",
            "{(.a): .}",
            "@json",
            "@base64 \"\\(.a)\"",
            ". as [$x] | $x",
            "if . then 1 else 2 end",
            "length",
        ] {
            assert_eq!(r(whole), None, "{whole}");
        }
    }

    #[test]
    fn routes_build_only_the_context_their_templates_and_filters_read() {
        use crate::mapping::pack::ContextUse;
        let catalog = crate::mapping::pack::shipped_catalog();
        let uses = |pack: &str, id: &str| {
            catalog
                .routes
                .iter()
                .find(|r| r.pack.name == pack && &*r.id == id)
                .unwrap()
                .request
                .context
        };
        let none = ContextUse {
            path: false,
            query: false,
            principal: false,
            request: false,
        };
        assert_eq!(uses("bench-passthrough", "pass"), none);
        // `{companyId}` in the call path; filters read only `.steps`.
        assert_eq!(
            uses("redapi-v1-appdirect", "companies.get"),
            ContextUse { path: true, ..none }
        );
        // `{principal.company}` in the call path.
        assert!(uses("redapi-v1-appdirect", "companies.mine").principal);
        // Every route reading the context whole gets all of it; some shipped routes do.
        assert!(
            catalog
                .routes
                .iter()
                .any(|r| r.request.context == ContextUse::ALL)
        );
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

    /// Every filter of `route`: those over the context, and those over the quota's input or
    /// one answer of a walk.
    fn filters(route: &Route) -> Vec<&JqFilter> {
        let mut out = context_filters(route);
        out.extend(route.pricing.settle.as_ref());
        match &route.pricing.points {
            Points::Jq(f) => out.push(f),
            Points::Const(_) => {}
        }
        out.extend(walk_children(route));
        out
    }

    /// The filters that find a walk's next nodes in one step answer.
    fn walk_children(route: &Route) -> Vec<&JqFilter> {
        let mut out = Vec::new();
        for step in route.plan.stages.iter().flatten() {
            match &step.kind {
                StepKind::Call {
                    fan: Fan::Walk { children, .. },
                    ..
                } => out.push(children),
                StepKind::Call {
                    fan: Fan::One | Fan::ForEach { .. },
                    ..
                }
                | StepKind::Compute(_) => {}
            }
        }
        out
    }

    /// Route contexts with the canned upstream answers under the step names packs use.
    fn contexts() -> Vec<Value> {
        let company: Value = serde_json::from_str(crate::demo::canned::COMPANY).unwrap();
        let assoc: Value = serde_json::from_str(crate::demo::canned::ASSOCIATIONS).unwrap();
        let tenant = crate::dialect::xml::xml_to_value(
            crate::demo::canned::TENANT.as_bytes(),
            &crate::dialect::xml::XmlRules::default()
                .unwrap("/platform")
                .array("/platform/tenant"),
        )
        .unwrap();
        let principal = json!({"user": "ann", "company": "northwind", "roles": ["PARTNER"]});
        let page = json!({"index": 0, "number": 1, "size": 2, "offset": 0, "want_total": true});
        let steps = json!({"company": company, "assoc": assoc, "tenant": tenant,
            "find": tenant, "list": tenant, "customers": [company], "page": {"items": assoc["content"], "total": 1}});
        // List routes' steps: several elements, names out of order and of mixed case
        // (search, order and paging), dates, a walk's answers.
        let named = |i: usize, name: &str| {
            let mut a = assoc["content"][0].clone();
            a["customerCompany"]["id"] = json!(format!("c{i}"));
            a["customerCompany"]["name"] = json!(name);
            a
        };
        let assocs: Vec<Value> = ["beta", "Alpha", "gamma", "alpha", "Delta"]
            .iter()
            .enumerate()
            .map(|(i, n)| named(i, n))
            .collect();
        let companies: Vec<Value> = (0..3)
            .map(|i| {
                let mut c = company.clone();
                c["id"] = json!(format!("c{i}"));
                c["name"] = json!(["Zeta", "alpha", "Beta"][i]);
                c
            })
            .collect();
        let tenants: Vec<Value> = (0..3)
            .map(|i| {
                let mut t = tenant["tenant"][0].clone();
                t["id"] = json!(format!("{}", 1000000010 + i));
                t["company"] = json!(["Zeta", "alpha", "Beta"][i]);
                t
            })
            .collect();
        let member = |i: i64| {
            json!({"user": {"id": format!("u{i}"), "firstName": "Ada", "lastName": if i == 1 { Value::Null } else { json!("Lovelace") },
                "email": "ada@example.test", "createdOn": 1600086400123i64 + i * 86_400_000, "activated": i != 2},
                "roles": if i == 0 { json!(["USER"]) } else { json!([]) }, "company": {"id": "c0", "name": "Zeta"}, "enabled": true})
        };
        let listing = json!({"tenant": tenants, "totalRecordCount": "3"});
        let lists = json!({
            "assocs": {"content": assocs, "page": {"totalElements": 5, "totalPages": 1}},
            "members": {"content": [member(0), member(1), member(2)], "page": {"totalElements": 3}},
            "list": listing, "all": listing, "matching": listing,
            "tree": [{"response": {"content": assocs, "tenant": tenants}},
                {"response": {"content": [], "tenant": []}}],
            "first": {"content": companies, "page": {"totalPages": 2}},
            "rest": [{"content": companies}],
            "customers": companies,
            "page": {"items": assocs[..3], "total": 5}});
        // The AppDirect search's steps: a page of companies and one association answer each.
        let search = json!({
            "list": {"content": companies, "page": {"totalElements": 7}},
            "assocs": [{"content": [named(0, "x")]}, {"content": []}, assoc]});
        let list_page =
            json!({"index": 1, "number": 2, "size": 2, "offset": 1, "want_total": true});
        let request = json!({"base_url": "http://gw.test"});
        vec![
            json!({"path": {"companyId": "1000000002"}, "query": {}, "body": null,
                "principal": principal, "page": page, "steps": steps}),
            json!({"path": {"companyId": "x"}, "query": {"search": "Con", "orderBy": "desc"},
                "body": {"tenant": {"company": "A", "active": "1", "is_partner": "true"}},
                "principal": principal, "steps": {}}),
            json!({"path": {}, "query": {}, "body": company, "principal": principal, "steps": steps}),
            json!({"path": {"companyId": "c0"}, "query": {"search": "A", "orderBy": "desc"},
                "principal": principal, "page": list_page, "request": request, "steps": lists}),
            json!({"path": {"companyId": "c0"}, "query": {"orderBy": "asc"},
                "principal": principal, "page": page, "request": request, "steps": lists}),
            json!({"path": {"companyId": "c0"}, "query": {},
                "principal": principal, "page": list_page, "request": request, "steps": lists}),
            json!({"path": {}, "query": {}, "principal": principal, "page": list_page,
                "request": request, "response": {"items": companies}, "steps": search}),
        ]
    }

    /// [`contexts`], each with values swapped by [`mutate`] from one `seed`.
    fn mutated_contexts(seed: u64) -> Vec<Value> {
        let mut seed = seed;
        contexts().iter().map(|c| mutate(c, &mut seed)).collect()
    }

    /// `v` with some of its values replaced (by `seed`'s choice) with values of other kinds:
    /// null, empty or digit strings, numbers, booleans, empty containers.
    fn mutate(v: &Value, seed: &mut u64) -> Value {
        let mut next = || {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            *seed
        };
        if next() % 5 == 0 {
            return match next() % 9 {
                0 => Value::Null,
                1 => json!(""),
                2 => json!("1"),
                3 => json!(0),
                4 => json!(1.5),
                5 => json!(true),
                6 => json!([]),
                7 => json!({}),
                _ => json!("true"),
            };
        }
        match v {
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), mutate(v, seed)))
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(|v| mutate(v, seed)).collect()),
            Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => v.clone(),
        }
    }

    /// `v` as `projection` keeps it, through its JSON text as an upstream would send it.
    fn projected(p: &crate::mapping::project::Projection, v: &Value) -> Value {
        p.parse(serde_json::to_string(v).unwrap().as_bytes())
            .unwrap()
    }

    proptest! {
        /// Every construct the evaluator translates, over its input cut to what its demand
        /// says: the same answer (or the same error) from jaq and from the direct evaluator.
        #[test]
        fn a_filter_answers_the_same_over_what_its_demand_keeps(input in arb_input()) {
            // Through text, as answers arrive (floats are then what serde_json reads).
            let input = projected(&crate::mapping::project::Projection::Whole, &input);
            for f in COMPILED.iter() {
                let Some(d) = f.demand() else { continue };
                let cut = projected(&d.projection(), &input);
                prop_assert_eq!(f.run_jaq(&cut), f.run_jaq(&input), "{:?} on {} cut to {}", f, input, cut);
                prop_assert_eq!(f.run(&cut), f.run(&input), "{:?} on {}", f, input);
            }
        }
    }

    /// The filters of `route` that run over the request's context (not over one answer, the
    /// response or the quota's input).
    fn context_filters(route: &Route) -> Vec<&JqFilter> {
        let mut out = Vec::new();
        route.context_readers(|r| match r {
            Reader::Filter(f) => out.push(f),
            Reader::Template(_) => {}
        });
        out
    }

    /// `ctx` with each step answer `route` cuts replaced by what it keeps of it.
    fn cut_steps(route: &Route, ctx: &Value) -> Value {
        let mut ctx = ctx.clone();
        if let Some(Value::Object(steps)) = ctx.get_mut("steps") {
            for (name, p) in &route.plan.projections {
                if let Some(v) = steps.get_mut(name) {
                    *v = projected(p, v);
                }
            }
        }
        ctx
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Every shipped route that parses its answers in part, on route contexts whose values
        /// were swapped for others of any kind: each of its filters over the context answers
        /// the same as over whole answers.
        #[test]
        fn shipped_responses_are_the_same_over_cut_answers(seed in 1u64..) {
            for ctx in mutated_contexts(seed) {
                let ctx = projected(&crate::mapping::project::Projection::Whole, &ctx);
                for route in SHIPPED.routes.iter().filter(|r| !r.plan.projections.is_empty()) {
                    // Steps the contexts do not name get each canned answer in turn.
                    for filler in ["company", "assoc"] {
                        let mut ctx = ctx.clone();
                        let fill = ctx["steps"].get(filler).cloned().unwrap_or(Value::Null);
                        if let Some(Value::Object(steps)) = ctx.get_mut("steps") {
                            for name in route.plan.projections.keys() {
                                steps.entry(name.clone()).or_insert_with(|| fill.clone());
                            }
                        }
                        let cut = cut_steps(route, &ctx);
                        for f in context_filters(route) {
                            let whole = f.run(&ctx);
                            prop_assert_eq!(f.run(&cut), whole.clone(), "{} {:?}", route.id, f);
                            // A range past the limit is refused before jaq is handed it, as on
                            // the request path (a page count from the upstream, mutated to
                            // 10^12, would have jaq count it out into memory).
                            if whole.as_ref().is_err_and(|e| e.to_string().contains("range of more than")) {
                                continue;
                            }
                            prop_assert_eq!(f.run_jaq(&cut), f.run_jaq(&ctx), "{} {:?} on {}", route.id, f, ctx);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_v1_company_read_parses_only_what_its_answer_needs() {
        let route = SHIPPED
            .routes
            .iter()
            .find(|r| &*r.id == "companies.get" && r.pack.name == "redapi-v1-appdirect")
            .unwrap();
        let company = projected(
            &route.plan.projections["company"],
            &serde_json::from_str(crate::demo::canned::COMPANY).unwrap(),
        );
        assert_eq!(
            company,
            json!({"id": "6e0f3b4a-0000-4000-8000-000000000002", "name": "Contoso Partners",
                   "enabled": true, "reseller": true})
        );
        let assoc = projected(
            &route.plan.projections["assoc"],
            &serde_json::from_str(crate::demo::canned::ASSOCIATIONS).unwrap(),
        );
        assert_eq!(
            assoc,
            json!({"content": [{"resellerCompany": {"id": "6e0f3b4a-0000-4000-8000-000000000001"}}]})
        );
        // A later call's template reads what it names whole, beside what the filter reads.
        let mine = SHIPPED
            .routes
            .iter()
            .find(|r| &*r.id == "companies.mine" && r.pack.name == "redapi-v1-appdirect")
            .unwrap();
        let mut company: Value = serde_json::from_str(crate::demo::canned::COMPANY).unwrap();
        company["id"] = json!({"nested": [1]});
        assert_eq!(
            projected(&mine.plan.projections["company"], &company),
            json!({"id": {"nested": [1]}, "name": "Contoso Partners", "enabled": true,
                   "reseller": true})
        );
        let cutting: Vec<&str> = SHIPPED
            .routes
            .iter()
            .filter(|r| !r.plan.projections.is_empty())
            .map(|r| &*r.id)
            .collect();
        eprintln!(
            "{} of {} shipped routes cut answers: {cutting:?}",
            cutting.len(),
            SHIPPED.routes.len()
        );
    }

    static SHIPPED: std::sync::LazyLock<crate::mapping::pack::Catalog> =
        std::sync::LazyLock::new(crate::mapping::pack::shipped_catalog);

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Every shipped filter, on route contexts whose values were swapped for others of
        /// any kind: whenever the direct evaluator answers, jaq answers the same.
        #[test]
        fn shipped_filters_agree_with_jaq_on_mutated_contexts(seed in 1u64..) {
            for ctx in mutated_contexts(seed) {
                for route in &SHIPPED.routes {
                    for f in filters(route) {
                        agree(f, &ctx);
                    }
                }
            }
        }
    }

    #[test]
    fn shipped_filters_answer_directly_and_as_jaq_does() {
        let catalog = crate::mapping::pack::shipped_catalog();
        let assoc: Value = serde_json::from_str(crate::demo::canned::ASSOCIATIONS).unwrap();
        let (mut total, mut native, mut answered) = (0, 0, 0);
        for route in &catalog.routes {
            for f in filters(route) {
                total += 1;
                native += usize::from(f.is_native());
                let mut n = 0;
                for ctx in contexts() {
                    n += usize::from(agree(f, &ctx));
                }
                answered += n;
                // A walk's children filter runs on one step answer, not on the context.
                let walks = walk_children(route);
                let on_answer = || agree(f, &assoc);
                assert!(
                    n > 0 || (walks.iter().any(|w| std::ptr::eq(*w, f)) && on_answer()),
                    "{}:{} never answered directly: {}",
                    route.pack.name,
                    route.id,
                    f.source()
                );
            }
        }
        eprintln!("{native} of {total} shipped filters translated; {answered} direct answers");
        assert!(total > 60, "{total} filters");
        // Every shipped filter runs without jaq when the values allow: one outside the
        // subset costs its route jaq's conversions (a page of 30 V1 users: ~1 ms).
        assert_eq!(native, total, "shipped filters translated");
        assert!(answered > 0);
        // The translated routes of the load benchmark run with no jaq at all.
        for id in ["companies.get"] {
            for route in catalog.routes.iter().filter(|r| &*r.id == id) {
                let f = route.plan.response.jq.as_ref().unwrap();
                assert!(f.is_native(), "{}: {}", route.pack.name, f.source());
                assert!(
                    f.run_native(&contexts()[0]).is_some(),
                    "{}",
                    route.pack.name
                );
            }
        }
    }
}
