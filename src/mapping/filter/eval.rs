//! Running a plan over `serde_json` values by reference.
//!
//! jaq runs a filter over its own values, so every run converted the route context in and
//! the answer out, and its standard library is itself jq: a five-field object built from a
//! LongJump tenant cost more than the XML parse. Here each term hands its outputs, one by
//! one, to the term that takes them, borrowing the context's own values where it can.
//!
//! Every run gives jaq's answer, errors included (see [`super::ops`] for values jaq has and
//! JSON has not). Where jaq combines several outputs (`{a: f, b: g}`, `"\(f)\(g)"`, `f + g`,
//! the indices of a path), the combinations come in jaq's order and an error stands where
//! jaq meets it; only the first output of a run is its answer, as only the first error is
//! (jaq goes on after an error, but nothing here reads past one).

use std::borrow::Cow;
use std::cell::{Cell, OnceCell};

use serde_json::Value;

use super::MAX_RANGE;
use super::builtins;
use super::combine;
use super::ops::{self, boolean, truthy};
use super::plan::{Builtin, Node, Program};
use crate::mapping::jq::JqError;

/// Why a term stopped before its end.
#[derive(Debug, Clone)]
pub(super) enum Stop {
    /// A jq error: `?`, `try` and `//` may absorb it; otherwise it is the run's answer.
    Fail(Box<jaq_json::Error>),
    /// The first output was found (ends the run early, as jaq's lazy run does).
    Found,
    /// A `range` longer than [`MAX_RANGE`], or not between numbers: the run is refused (jaq
    /// would count it out, an upstream's page count of 10^12 taking the process's memory).
    TooLong,
}

impl Program {
    /// The filter's first output on `input`, as jaq gives it.
    pub fn run(&self, input: &Value) -> Result<Value, JqError> {
        let kept = Kept::default();
        let mut env = Env {
            vars: Vec::new(),
            kept: &kept,
        };
        let mut first = None;
        let end = eval(&self.root, input, &mut env, &mut |v, _| {
            first = Some(v.into_owned());
            Err(Stop::Found)
        });
        match (end, first) {
            (Err(Stop::Found), Some(v)) if kept.odd.get() => Ok(ops::plain(v)),
            (Err(Stop::Found), Some(v)) => Ok(v),
            (Ok(()) | Err(Stop::Found), _) => Err(JqError::NoOutput),
            (Err(Stop::Fail(e)), _) => Err(JqError::Runtime(e.to_string())),
            (Err(Stop::TooLong), _) => Err(JqError::Runtime(format!(
                "range of more than {MAX_RANGE} values, or not between numbers"
            ))),
        }
    }
}

/// Where a term's outputs go, one by one, with the variable slots; an `Err` stops the term.
pub(super) type Sink<'a, 'i> = dyn FnMut(Cow<'i, Value>, &mut Env<'i>) -> Result<(), Stop> + 'a;

/// The variables in scope, by slot, borrowed for the whole run: a variable is read by
/// reference however often a filter reads it (`. as $c | … $c.steps.list[$i] …` in a loop
/// copied the whole context at every read while variables held their own values).
pub(super) struct Env<'i> {
    vars: Vec<&'i Value>,
    pub(super) kept: &'i Kept,
}

/// Values made during a run that a later term borrows (a variable bound to a computed value,
/// the input of the right side of a pipe), kept until the run ends. Made on first use: most
/// runs of a route filter bind only what they were given.
#[derive(Default)]
pub(super) struct Kept {
    arena: OnceCell<typed_arena::Arena<Value>>,
    /// An object key that is not a string was made: the answer is rid of the marks.
    pub(super) odd: Cell<bool>,
}

impl Kept {
    fn keep(&self, v: Value) -> &Value {
        self.arena
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
pub(super) fn eval<'i>(
    n: &'i Node,
    input: &'i Value,
    env: &mut Env<'i>,
    out: &mut Sink<'_, 'i>,
) -> Result<(), Stop> {
    match n {
        Node::Id => out(Cow::Borrowed(input), env),
        Node::Lit(v) => out(Cow::Borrowed(v), env),
        Node::Empty => Ok(()),
        Node::Var(i) => match env.vars.get(*i) {
            Some(v) => out(Cow::Borrowed(*v), env),
            // The lowering binds every slot it reads.
            None => Err(ops::fail(jaq_core::Error::str("unbound variable slot"))),
        },
        Node::Interp(pieces) => combine::interp(pieces, input, env, out),
        Node::Arr(t) => {
            let mut items = Vec::new();
            eval(t, input, env, &mut |v, _| {
                items.push(v.into_owned());
                Ok(())
            })?;
            out(Cow::Owned(Value::Array(items)), env)
        }
        Node::Obj(entries) => combine::object(entries, input, env, out),
        Node::Pipe(l, r) => eval(l, input, env, &mut |v, env| pipe(r, v, env, out)),
        Node::Bind(l, r) => eval(l, input, env, &mut |v, env| {
            let v = env.hold(v);
            env.vars.push(v);
            let result = eval(r, input, env, &mut |w, env| {
                // An output leaves the variable's scope: what receives it sees the slots
                // as they were before the binding (`(f as $x | g) as $y` reads `$y` from
                // the slot `$x` had, which the lowering gave to `$y`).
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
                Ok(()) => None,
                Err(e @ Stop::Fail(_)) => Some(e),
                Err(e @ (Stop::Found | Stop::TooLong)) => return Err(e),
            };
            if kept.is_empty() && failed.is_none() {
                return eval(r, input, env, out);
            }
            for v in kept {
                out(v, env)?;
            }
            failed.map_or(Ok(()), Err)
        }
        Node::Logic(l, stop, r) => eval(l, input, env, &mut |a, env| {
            if truthy(&a) == *stop {
                out(boolean(*stop), env)
            } else {
                eval(r, input, env, &mut |b, env| out(boolean(truthy(&b)), env))
            }
        }),
        Node::Cmp(l, op, r) => combine::binary((l, r), input, env, out, |a, b| {
            Ok(boolean(ops::compare(&a, *op, &b)))
        }),
        Node::Add(l, r) => combine::binary((l, r), input, env, out, ops::add),
        Node::Div(l, r) => combine::binary((l, r), input, env, out, |a, b| ops::divide(&a, &b)),
        // Bound like a definition's arguments: each `from`, then each `upto`, an error at once.
        Node::Range(from, upto) => eval(from, input, env, &mut |a, env| {
            eval(upto, input, env, &mut |b, env| {
                ops::range(&a, &b, &mut |x| out(Cow::Owned(x), env))
            })
        }),
        Node::Join(sep) => eval(sep, input, env, &mut |s, env| {
            out(builtins::join(input, &s)?, env)
        }),
        Node::Contains(x) => eval(x, input, env, &mut |b, env| {
            out(boolean(ops::contains(input, &b)), env)
        }),
        Node::SortBy(f) => {
            let Value::Array(items) = input else {
                return Err(ops::not_a(input, "array"));
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
            let mut downstream = false;
            let ran = eval(t, input, env, &mut |v, env| {
                out(v, env).inspect_err(|_| downstream = true)
            });
            match ran {
                Err(Stop::Fail(_)) if !downstream => Ok(()),
                other => other,
            }
        }
        Node::Path(base, steps, indices) => combine::path(base, steps, indices, input, env, out),
        Node::Builtin(b) => {
            let kept = env.kept;
            builtins::apply(*b, input, &kept.odd, &mut |v| out(v, env))
        }
        Node::Select(f) => eval(f, input, env, &mut |v, env| {
            if truthy(&v) {
                out(Cow::Borrowed(input), env)
            } else {
                Ok(())
            }
        }),
        Node::Map(f) => {
            let mut outs = Vec::new();
            for item in ops::values(input)? {
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
        Node::SortBy(f) => match input {
            Value::Array(mut items) => {
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
            other => borrowed(other, env, out),
        },
        Node::Builtin(Builtin::Reverse) => match input {
            Value::Array(mut items) => {
                items.reverse();
                out(Cow::Owned(Value::Array(items)), env)
            }
            other => borrowed(other, env, out),
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

/// The order `sort_by(f)` puts `items` in, as indices; stable, as jaq's (equal keys keep
/// their order). A key is every output of `f` on the element, compared in jaq's order.
fn sort_order<'x>(items: &'x [Value], f: &'x Node, env: &mut Env<'x>) -> Result<Vec<usize>, Stop> {
    // jaq's sort asks no key of fewer than two elements (nor fails on one).
    if items.len() < 2 {
        return Ok((0..items.len()).collect());
    }
    let mut keyed = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let mut key = Vec::new();
        eval(f, item, env, &mut |v, _| {
            key.push(v);
            Ok(())
        })?;
        keyed.push((key, i));
    }
    keyed.sort_by(|(a, _), (b, _)| {
        a.iter()
            .zip(b.iter())
            .map(|(x, y)| ops::order(x, y))
            .find(|o| o.is_ne())
            .unwrap_or_else(|| a.len().cmp(&b.len()))
    });
    Ok(keyed.into_iter().map(|(_, i)| i).collect())
}

#[cfg(test)]
mod tests {
    use super::super::MAX_RANGE;
    use super::super::fixtures::{
        COMPILED, SHIPPED, agree, arb_input, contexts, filters, mutated_contexts, walk_children,
    };
    use crate::mapping::jq::{JqError, JqFilter};
    use proptest::prelude::*;
    use serde_json::{Value, json};

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

    /// Inputs of every kind an operation may meet, the rare ones included (floats, integers
    /// past `i64`, text that is or is not a number, containers of mixed kinds).
    fn every_kind() -> Vec<Value> {
        [
            "null",
            "true",
            "false",
            "0",
            "-1",
            "1.5",
            "2.0",
            "-0.5",
            "9223372036854775807",
            "18446744073709551615",
            "1e300",
            "1700000000",
            "\"\"",
            "\"a\"",
            "\"1\"",
            "\"1.5\"",
            "\"1e3\"",
            "\" 7\"",
            "\"x\"",
            "\"1 2\"",
            "\"true\"",
            "\"01\"",
            "[]",
            "[1, \"a\"]",
            "[1.5, 2]",
            "[[1], [0]]",
            "[3, \"a\", 1.5, null, [1], {\"a\": 1}, true, 2]",
            "[\"b\", \"a\", \"B\"]",
            "[1, 1.0]",
            "{}",
            "{\"a\": 1}",
            "{\"a\": \"x\", \"b\": \"y\"}",
            "{\"key\": \"k\", \"value\": 1}",
            "[{\"key\": 1, \"value\": 2}]",
            "[{\"key\": null}]",
            "[null]",
            "[{\"key\": true}, {\"key\": \"true\"}]",
            "[{\"k\": \"a\"}]",
            "[\"x\"]",
        ]
        .iter()
        .map(|t| serde_json::from_str(t).unwrap())
        .collect()
    }

    #[test]
    fn every_operation_answers_every_kind_of_input_as_jaq_does() {
        // Each was handed to jaq at run time before the engine was chosen once per filter.
        let filters = [
            ".a",
            ".[0]",
            ".[-1]",
            ".[]",
            ".[]?",
            ".[1:]",
            ".[:-1]",
            ".[.]",
            ".[.[0]]",
            ".[1:.]",
            "length",
            "ascii_downcase",
            "floor",
            "todate",
            "tonumber",
            "[tonumber]",
            "reverse",
            "max",
            "add",
            "keys",
            "to_entries",
            "from_entries",
            "join(\",\")",
            "join(1)",
            "join(null)",
            "join(.)",
            "contains(.)",
            "contains(\"a\")",
            "contains([1])",
            "sort_by(.)",
            "sort_by(.a)",
            "map(.)",
            "tostring",
            "\"<\\(.)>\"",
            ". + 1",
            ". + .",
            ". + \"s\"",
            ". + [1]",
            ". + {b: 2}",
            ". / 2",
            ". / \"a\"",
            "1 / .",
            ". / .",
            ". < 1",
            ". == 1",
            ". == .[0]",
            ". > \"a\"",
            ". >= [1]",
            ". <= {}",
            "[range(.)]",
            "[range(0; .)]",
            "[range(.; 3)]",
            "{(.): 1}",
            "{(.): 1} | keys",
            "{(.): 1} | to_entries",
            "{(.): 1} | tostring",
            "{(.): 1} | .[0]",
            "[{(.): 1}[]]",
            "from_entries | keys",
            "from_entries | to_entries",
            "from_entries | .[true]",
            "from_entries | tostring",
            "(from_entries | .[null]) // 0",
            "[.[] | {key: ., value: 1}] | from_entries | [.[]]",
        ];
        for code in filters {
            let f = JqFilter::compile(code).unwrap();
            assert!(f.is_native(), "{code}");
            for input in every_kind() {
                // Keys 1 and 1.0 are one key to jaq, written as the first was; the plan
                // keeps keys that are not strings as their text, so they are two.
                if code.contains("key: .") && input == json!([1, 1.0]) {
                    continue;
                }
                agree(&f, &input);
            }
        }
    }

    #[test]
    fn outputs_combine_in_jaqs_order_and_errors_stand_where_jaq_meets_them() {
        for code in [
            "[(1, 2) + (10, 20)]",
            "[{a: (1, 2), b: (3, 4)}]",
            "[\"\\(1, 2)-\\(3, 4)\"]",
            "[.[][(0, 1)]?]",
            "[.[]?[.[0]]]",
            "{a: .[0], b: empty}",
            "{a: .[0], b: (1, 2)}",
            "[.a + empty]",
            "[(.a, 1) + (2, .b)]",
            "[.[0] < (.a, 1)]",
            "[(1, .a) == 1]",
            "\"\\(.a)\\(empty)\"",
            "[range(.a, 1; 2, .b)]",
            "[range(1; 3)] | [.[(0, 1)]]",
            "[.[.a:(1, 2)]?]",
            "[.[(0, .a)]?]",
            "[(1, .a) // 3]",
            "[try ((1, .a.b, 2) // 3)]",
            "[.a?, .b]",
            "[(.a, .b) and (true, .c)]",
            "join(\",\", .a)",
            "[contains(1, .)]",
        ] {
            let f = JqFilter::compile(code).unwrap();
            assert!(f.is_native(), "{code}");
            for input in every_kind() {
                agree(&f, &input);
            }
        }
    }

    #[test]
    fn what_jaq_holds_outside_json_becomes_what_its_answer_becomes() {
        // A key that is not a string: looked up by its value, and text in the answer.
        let f = JqFilter::compile("[{key: 1, value: \"x\"}] | from_entries | [.[1], .]").unwrap();
        assert_eq!(f.run(&json!(null)), Ok(json!(["x", {"1": "x"}])));
        assert_eq!(f.run(&json!(null)), f.run_jaq(&json!(null)));
        // A division with no finite answer: null at once (JSON has no such number), where
        // jaq keeps it until its answer is converted.
        let f = JqFilter::compile(".a / .b").unwrap();
        assert_eq!(f.run(&json!({"a": 1, "b": 0})), Ok(json!(null)));
        assert_eq!(f.run_jaq(&json!({"a": 1, "b": 0})), Ok(json!(null)));
        let f = JqFilter::compile(".a / .b | tostring").unwrap();
        assert_eq!(f.run(&json!({"a": 1, "b": 0})), Ok(json!("null")));
        // The magnitude of the least `i64` (jaq's machine integer overflows there).
        let f = JqFilter::compile("length").unwrap();
        assert_eq!(
            f.run(&json!(i64::MIN)),
            Ok(json!(9_223_372_036_854_775_808u64))
        );
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
    fn runs_that_meet_an_error_or_several_combinations_are_answered_by_the_plan() {
        let planned = |code: &str, input: Value| {
            let f = JqFilter::compile(code).unwrap();
            assert_eq!(
                f.run_native(&input),
                Some(f.run_jaq(&input)),
                "{code} on {input}"
            );
            f.run(&input)
        };
        // The error text is jaq's own.
        assert!(matches!(planned(".a", json!(1)), Err(JqError::Runtime(_))));
        assert!(matches!(
            planned(".[]", json!(null)),
            Err(JqError::Runtime(_))
        ));
        assert!(matches!(
            planned(".a | length", json!({"a": true})),
            Err(JqError::Runtime(_))
        ));
        // Several values in one object come in jaq's order.
        assert_eq!(planned("{a: (1, 2)}", json!(null)), Ok(json!({"a": 1})));
        // Floats are written as jaq writes them.
        assert_eq!(
            planned(".a | tostring", json!({"a": 1.5})),
            Ok(json!("1.5"))
        );
        // An empty result is exact: no output.
        let f = JqFilter::compile("empty").unwrap();
        assert_eq!(f.run_native(&json!(1)), Some(Err(JqError::NoOutput)));
        // The first output ends the run, as jaq's lazy one does: the error after it is
        // never reached.
        let f = JqFilter::compile("1, error").unwrap();
        assert!(!f.is_native(), "error is not translated");
        let f = JqFilter::compile(".a, .b.c").unwrap();
        assert_eq!(f.run_native(&json!({"a": 1, "b": 2})), Some(Ok(json!(1))));
    }

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
