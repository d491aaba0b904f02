//! The LongJump filter language (seed 002, DESIGN §5): parse, evaluate, print, quote.
//!
//! `filter=name contains 'smith' AND (msp equals 1 OR partner equals BLANK)`: conditions
//! `{field} {operator} {value}` joined by `AND` (binding tighter) and `OR`, with parentheses.
//! Values are single-quoted strings (a quote inside is doubled, as in SQL), numbers, or
//! `BLANK`. The parser builds an [`Expr`]; Rosetta evaluates it on records ([`Expr::matches`]),
//! derives what an upstream can filter for it ([`Expr::implied_substring`]) and prints it
//! back ([`Expr`]'s `Display`). Filters Rosetta *builds* from client values go through
//! [`quote`], whose output always parses back to exactly the value given: no value can end
//! the string early and add a condition (the property tests below say so for every string).
//!
//! The language's types and printing live here; [`parse`] in `parse.rs` (lexer and
//! recursive-descent parser), evaluation on records in `eval.rs`.

mod eval;
mod parse;

use std::fmt;

pub use eval::sort_cmp;
pub use parse::parse;

/// Deepest parenthesis nesting accepted; the parser recurses once per level.
pub const MAX_NESTING: usize = 32;

/// Most conditions one filter may hold: evaluation costs a condition per record, so a
/// client's filter is bounded in work, not only in depth.
pub const MAX_CONDITIONS: usize = 64;

/// Longest filter accepted, in characters; checked before lexing, so an oversized filter
/// costs nothing more than its length.
pub const MAX_CHARS: usize = 4096;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `equals`.
    Equals,
    /// `not equal to`.
    NotEqualTo,
    /// `less than`.
    LessThan,
    /// `less than equals`.
    LessThanEquals,
    /// `greater than`.
    GreaterThan,
    /// `greater than equals`.
    GreaterThanEquals,
    /// `contains` (a substring).
    Contains,
    /// `not contains`.
    NotContains,
    /// `starts with`.
    StartsWith,
    /// `ends with`.
    EndsWith,
}

impl Op {
    /// Every operator, for messages and property tests.
    pub const ALL: [Op; 10] = [
        Op::Equals,
        Op::NotEqualTo,
        Op::LessThan,
        Op::LessThanEquals,
        Op::GreaterThan,
        Op::GreaterThanEquals,
        Op::Contains,
        Op::NotContains,
        Op::StartsWith,
        Op::EndsWith,
    ];

    /// The operator as written in a filter.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Equals => "equals",
            Op::NotEqualTo => "not equal to",
            Op::LessThan => "less than",
            Op::LessThanEquals => "less than equals",
            Op::GreaterThan => "greater than",
            Op::GreaterThanEquals => "greater than equals",
            Op::Contains => "contains",
            Op::NotContains => "not contains",
            Op::StartsWith => "starts with",
            Op::EndsWith => "ends with",
        }
    }
}

/// The right-hand side of a condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Literal {
    /// A quoted string, unquoted (doubled quotes made single).
    Str(String),
    /// A number, kept as written so printing gives back the same text.
    Num(String),
    /// The field is empty (`equals BLANK`) or not (`not equal to BLANK`).
    Blank,
}

/// A parsed filter. `And`/`Or` hold two or more children and never a child of their own
/// kind (the parser flattens `a AND (b AND c)`), so equal filters have equal trees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// One condition: `{field} {op} {value}`.
    Cmp {
        /// The record field compared.
        field: String,
        /// How it is compared.
        op: Op,
        /// What it is compared with.
        value: Literal,
    },
    /// Every child holds.
    And(Vec<Expr>),
    /// At least one child holds.
    Or(Vec<Expr>),
}

/// A filter that does not parse, with the 1-based character position of the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at position {position}: {message}")]
pub struct FilterError {
    /// The 1-based character position of the problem.
    pub position: usize,
    /// What is wrong there.
    pub message: String,
}

/// `value` as a filter string literal: single-quoted, quotes doubled.
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c == '\'' {
            out.push('\'');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Str(s) => f.write_str(&quote(s)),
            Literal::Num(n) => f.write_str(n),
            Literal::Blank => f.write_str("BLANK"),
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Cmp { field, op, value } => write!(f, "{field} {} {value}", op.as_str()),
            Expr::And(parts) => {
                for (i, p) in parts.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" AND ")?;
                    }
                    match p {
                        Expr::Or(_) => write!(f, "({p})")?,
                        Expr::Cmp { .. } | Expr::And(_) => write!(f, "{p}")?,
                    }
                }
                Ok(())
            }
            Expr::Or(parts) => {
                for (i, p) in parts.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" OR ")?;
                    }
                    match p {
                        // AND binds tighter; an OR child can only come from a hand-built tree.
                        Expr::Or(_) => write!(f, "({p})")?,
                        Expr::Cmp { .. } | Expr::And(_) => write!(f, "{p}")?,
                    }
                }
                Ok(())
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Evaluation

#[cfg(test)]
mod tests;
