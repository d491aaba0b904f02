//! Terms whose outputs combine several others' outputs, in jaq's order.
//!
//! jaq builds `{a: f, b: g}` as `{a: f} + {b: g}`, `"\(f)-\(g)"` as a sum of strings, and
//! runs a path's computed indices before its steps; each of these pairs every output of one
//! part with every combination of the later parts' outputs. The plan does the same, with the
//! common case (every part has one output and no error) built as it comes, without the
//! combinations.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::eval::{Env, Sink, Stop, eval};
use super::ops;
use super::plan::{Node, Piece, Step};

/// A term's outputs, in order, up to its first stop.
pub(super) struct Outs<'i> {
    vals: Many<'i>,
    stop: Option<Stop>,
}

/// Values without an allocation for the common one.
enum Many<'i> {
    Zero,
    One(Cow<'i, Value>),
    More(Vec<Cow<'i, Value>>),
}

impl<'i> Many<'i> {
    fn push(&mut self, v: Cow<'i, Value>) {
        *self = match std::mem::replace(self, Many::Zero) {
            Many::Zero => Many::One(v),
            Many::One(a) => Many::More(vec![a, v]),
            Many::More(mut vs) => {
                vs.push(v);
                Many::More(vs)
            }
        };
    }

    fn as_slice(&self) -> &[Cow<'i, Value>] {
        match self {
            Many::Zero => &[],
            Many::One(v) => std::slice::from_ref(v),
            Many::More(vs) => vs,
        }
    }
}

impl<'i> Outs<'i> {
    /// The one value, when that is all there is; else the outputs back.
    fn one(self) -> Result<Cow<'i, Value>, Self> {
        match self {
            Outs {
                vals: Many::One(v),
                stop: None,
            } => Ok(v),
            other => Err(other),
        }
    }

    fn of(v: Cow<'i, Value>) -> Self {
        Outs {
            vals: Many::One(v),
            stop: None,
        }
    }

    /// Some output, a value or an error.
    fn live(&self) -> bool {
        !self.vals.as_slice().is_empty() || self.stop.is_some()
    }
}

pub(super) fn gather<'i>(n: &'i Node, input: &'i Value, env: &mut Env<'i>) -> Outs<'i> {
    let mut vals = Many::Zero;
    let stop = eval(n, input, env, &mut |v, _| {
        vals.push(v);
        Ok(())
    })
    .err();
    Outs { vals, stop }
}

/// Takes one combination of outputs, one per part.
type Each<'a, 'i> = dyn FnMut(&[&Cow<'i, Value>]) -> Result<(), Stop> + 'a;

/// Every combination of the outputs of `parts`, in jaq's order (the first part's outputs
/// outermost). An error among a part's outputs stands at its place in that order, and is
/// reached only if every later part has an output: jaq pairs each output with the later
/// parts' combinations, and the error of a pair is its first part's (`{a: error, b: empty}`
/// has no output and no error).
fn product<'i>(parts: &[Outs<'i>], each: &mut Each<'_, 'i>) -> Result<(), Stop> {
    let mut live = vec![true; parts.len() + 1];
    for i in (0..parts.len()).rev() {
        live[i] = live[i + 1] && parts[i].live();
    }
    let mut acc = Vec::with_capacity(parts.len());
    combine(parts, &live, &mut acc, each)
}

fn combine<'p, 'i>(
    parts: &'p [Outs<'i>],
    live: &[bool],
    acc: &mut Vec<&'p Cow<'i, Value>>,
    each: &mut Each<'_, 'i>,
) -> Result<(), Stop> {
    let i = acc.len();
    let Some(part) = parts.get(i) else {
        return each(acc);
    };
    if !live[i + 1] {
        return Ok(());
    }
    for v in part.vals.as_slice() {
        acc.push(v);
        combine(parts, live, acc, each)?;
        acc.pop();
    }
    part.stop.clone().map_or(Ok(()), Err)
}

/// `l op r` over every combination of their outputs.
pub(super) fn binary<'i>(
    (l, r): (&'i Node, &'i Node),
    input: &'i Value,
    env: &mut Env<'i>,
    out: &mut Sink<'_, 'i>,
    op: impl Fn(Cow<'i, Value>, Cow<'i, Value>) -> Result<Cow<'i, Value>, Stop>,
) -> Result<(), Stop> {
    let (a, b) = (gather(l, input, env), gather(r, input, env));
    match (a.one(), b.one()) {
        (Ok(a), Ok(b)) => out(op(a, b)?, env),
        (a, b) => {
            let parts = [
                a.map_or_else(|o| o, Outs::of),
                b.map_or_else(|o| o, Outs::of),
            ];
            product(&parts, &mut |xs| {
                out(op(xs[0].clone(), xs[1].clone())?, env)
            })
        }
    }
}

/// `{k: v, …}`: one object per combination of every key's and value's outputs.
pub(super) fn object<'i>(
    entries: &'i [(Node, Node)],
    input: &'i Value,
    env: &mut Env<'i>,
    out: &mut Sink<'_, 'i>,
) -> Result<(), Stop> {
    let kept = env.kept;
    let odd = &kept.odd;
    let insert = |map: &mut Map<String, Value>, k: Cow<'i, Value>, v: Value| {
        let (k, marked) = ops::object_key(k);
        odd.set(odd.get() | marked);
        map.insert(k, v);
    };
    // Most objects have one key and one value per entry: built as they come.
    let mut map = Map::with_capacity(entries.len());
    let mut single = true;
    for (k, v) in entries {
        match (gather(k, input, env).one(), gather(v, input, env).one()) {
            (Ok(k), Ok(v)) => insert(&mut map, k, v.into_owned()),
            (Ok(_) | Err(_), _) => {
                single = false;
                break;
            }
        }
    }
    if single {
        return out(Cow::Owned(Value::Object(map)), env);
    }
    let mut parts = Vec::with_capacity(entries.len() * 2);
    for (k, v) in entries {
        parts.push(gather(k, input, env));
        parts.push(gather(v, input, env));
    }
    product(&parts, &mut |xs| {
        let mut map = Map::with_capacity(entries.len());
        for kv in xs.chunks(2) {
            insert(&mut map, kv[0].clone(), kv[1].clone().into_owned());
        }
        out(Cow::Owned(Value::Object(map)), env)
    })
}

/// `"a\(f)b\(g)"`: one string per combination of the terms' outputs, each as its text.
pub(super) fn interp<'i>(
    pieces: &'i [Piece],
    input: &'i Value,
    env: &mut Env<'i>,
    out: &mut Sink<'_, 'i>,
) -> Result<(), Stop> {
    // Most terms have one output: the text is built as they come.
    let mut text = String::new();
    let mut single = true;
    for piece in pieces {
        match piece {
            Piece::Text(t) => text.push_str(t),
            Piece::Term(t) => match gather(t, input, env).one() {
                Ok(v) => ops::to_text(&v, &mut text),
                Err(_) => {
                    single = false;
                    break;
                }
            },
        }
    }
    if single {
        return out(Cow::Owned(Value::String(text)), env);
    }
    // Some term has other than one output: every term's outputs, and the text rebuilt for
    // each combination.
    let terms: Vec<Outs<'i>> = pieces
        .iter()
        .filter_map(|p| match p {
            Piece::Text(_) => None,
            Piece::Term(t) => Some(gather(t, input, env)),
        })
        .collect();
    product(&terms, &mut |xs| {
        let mut text = String::new();
        let mut xs = xs.iter();
        for piece in pieces {
            match piece {
                Piece::Text(t) => text.push_str(t),
                Piece::Term(_) => {
                    if let Some(v) = xs.next() {
                        ops::to_text(v, &mut text);
                    }
                }
            }
        }
        out(Cow::Owned(Value::String(text)), env)
    })
}

/// A path: every computed index runs on the path's input first, then the steps are taken
/// from each output of the base, once per combination of the indices' outputs (jaq's order:
/// `.[][(0, 1)]` gives every first element, then every second).
pub(super) fn path<'i>(
    base: &'i Node,
    steps: &'i [(Step, bool)],
    indices: &'i [Node],
    input: &'i Value,
    env: &mut Env<'i>,
    out: &mut Sink<'_, 'i>,
) -> Result<(), Stop> {
    if indices.is_empty() {
        return eval(base, input, env, &mut |v, env| {
            walk(v, steps, &[], env, out)
        });
    }
    // One index with one value (`$c.steps.list[$i]`), the common case: no allocation.
    let first = match indices {
        [only] => match gather(only, input, env).one() {
            Ok(at) => {
                let idx = [at.as_ref()];
                return eval(base, input, env, &mut |v, env| {
                    walk(v, steps, &idx, env, out)
                });
            }
            Err(outs) => Some(outs),
        },
        _ => None,
    };
    let parts: Vec<Outs<'i>> = match first {
        Some(outs) => vec![outs],
        None => indices.iter().map(|n| gather(n, input, env)).collect(),
    };
    if parts
        .iter()
        .all(|p| p.stop.is_none() && p.vals.as_slice().len() == 1)
    {
        let idx: Vec<&Value> = parts
            .iter()
            .map(|p| p.vals.as_slice()[0].as_ref())
            .collect();
        return eval(base, input, env, &mut |v, env| {
            walk(v, steps, &idx, env, out)
        });
    }
    eval(base, input, env, &mut |v, env| {
        product(&parts, &mut |combo| {
            let idx: Vec<&Value> = combo.iter().map(|c| c.as_ref()).collect();
            walk(v.clone(), steps, &idx, env, out)
        })
    })
}

/// Takes `steps` from `v`, the computed indices in `idx`.
fn walk<'i>(
    v: Cow<'i, Value>,
    steps: &'i [(Step, bool)],
    idx: &[&Value],
    env: &mut Env<'i>,
    out: &mut Sink<'_, 'i>,
) -> Result<(), Stop> {
    let Some(((step, optional), rest)) = steps.split_first() else {
        return out(v, env);
    };
    let next = match step {
        Step::Key(k) => ops::key(v, k),
        Step::Index(i) => ops::index(v, *i),
        Step::Dyn(at) => ops::index_by(v, idx[*at]),
        Step::Slice(from, upto) => ops::slice(v, from.map(|i| idx[i]), upto.map(|i| idx[i])),
        Step::Iter => return iterate(v, *optional, rest, idx, env, out),
    };
    match next {
        Ok(x) => walk(x, rest, idx, env, out),
        // `?` drops the step's own error.
        Err(Stop::Fail(_)) if *optional => Ok(()),
        Err(e) => Err(e),
    }
}

fn iterate<'i>(
    v: Cow<'i, Value>,
    optional: bool,
    rest: &'i [(Step, bool)],
    idx: &[&Value],
    env: &mut Env<'i>,
    out: &mut Sink<'_, 'i>,
) -> Result<(), Stop> {
    match v {
        Cow::Borrowed(Value::Array(a)) => {
            for x in a {
                walk(Cow::Borrowed(x), rest, idx, env, out)?;
            }
            Ok(())
        }
        Cow::Borrowed(Value::Object(m)) => {
            for x in m.values() {
                walk(Cow::Borrowed(x), rest, idx, env, out)?;
            }
            Ok(())
        }
        Cow::Owned(Value::Array(a)) => {
            for x in a {
                walk(Cow::Owned(x), rest, idx, env, out)?;
            }
            Ok(())
        }
        Cow::Owned(Value::Object(m)) => {
            for (_, x) in m {
                walk(Cow::Owned(x), rest, idx, env, out)?;
            }
            Ok(())
        }
        Cow::Borrowed(Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_))
        | Cow::Owned(Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_)) => {
            if optional {
                Ok(())
            } else {
                Err(ops::not_iterable(&v))
            }
        }
    }
}
