//! The filter plan: what a route filter is lowered to, and what the direct evaluator walks.
//!
//! jaq's own compilation inlines jq's standard library into the filter (`select` and `map`
//! are definitions, `true` is `0 == 0`) and runs it over its own values. A plan names the
//! operations route filters are written in instead, so that each runs as one Rust function
//! over `serde_json` values; [`super::lower`] builds it, [`super::eval`] runs it and
//! [`super::demand`] reads what it can look at.

use jaq_core::ops::Cmp;
use serde_json::Value;

/// A filter lowered for the direct evaluator: it runs here for every input.
#[derive(Debug)]
pub struct Program {
    pub(super) root: Node,
}

#[derive(Debug)]
pub(super) enum Node {
    Id,
    Lit(Value),
    /// String interpolation: literal text and terms.
    Interp(Vec<Piece>),
    /// `[f]`.
    Arr(Box<Node>),
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
    /// `l / r`: numbers divide as floats, strings split.
    Div(Box<Node>, Box<Node>),
    /// `range(from; upto)`.
    Range(Box<Node>, Box<Node>),
    /// `join(sep)`, `contains(x)`: the argument runs on the call's input.
    Join(Box<Node>),
    Contains(Box<Node>),
    /// `sort_by(f)`: `f` runs on each element.
    SortBy(Box<Node>),
    If(Box<Node>, Box<Node>, Box<Node>),
    Try(Box<Node>),
    Var(usize),
    /// A path: its base, its steps (each with whether it is optional), and the terms its
    /// computed indices come from, in the order jaq runs them (all of them on the path's
    /// own input, before any step is taken).
    Path(Box<Node>, Vec<(Step, bool)>, Vec<Node>),
    Empty,
    Builtin(Builtin),
    Select(Box<Node>),
    Map(Box<Node>),
}

#[derive(Debug)]
pub(super) enum Piece {
    Text(String),
    Term(Node),
}

#[derive(Debug)]
pub(super) enum Step {
    Key(String),
    Index(i64),
    Iter,
    /// `.[f]`: the index is the path's computed index in this slot.
    Dyn(usize),
    /// `.[from:upto]`: the bounds are the computed indices in these slots (none: the end).
    Slice(Option<usize>, Option<usize>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Builtin {
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

/// jq's builtins without arguments that the plan has an operation for, by name.
pub(super) const BUILTINS: &[(&str, Builtin)] = &[
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
