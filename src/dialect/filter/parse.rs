//! Lexing and parsing the filter language into an [`Expr`]: a recursive-descent parser
//! over tokens, `AND` binding tighter than `OR`, nesting bounded by [`MAX_NESTING`],
//! conditions by [`MAX_CONDITIONS`] and length by [`MAX_CHARS`].

use std::fmt;

use super::{Expr, FilterError, Literal, MAX_CHARS, MAX_CONDITIONS, MAX_NESTING, Op, quote};

/// Parses a filter expression.
pub fn parse(text: &str) -> Result<Expr, FilterError> {
    let chars = text.chars().count();
    if chars > MAX_CHARS {
        return Err(FilterError {
            position: MAX_CHARS + 1,
            message: format!("the filter is {chars} characters, over the limit of {MAX_CHARS}"),
        });
    }
    let tokens = lex(text)?;
    let mut p = Parser {
        tokens: &tokens,
        pos: 0,
        end: chars + 1,
        conditions: 0,
    };
    let expr = p.or(0)?;
    match p.peek() {
        None => Ok(expr),
        Some(t) => Err(t.error(format!("unexpected {} after a complete filter", t.kind))),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Open,
    Close,
    Word(String),
    Str(String),
    Num(String),
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Open => f.write_str("`(`"),
            Kind::Close => f.write_str("`)`"),
            Kind::Word(w) => write!(f, "`{w}`"),
            Kind::Str(s) => write!(f, "string {}", quote(s)),
            Kind::Num(n) => write!(f, "number {n}"),
        }
    }
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    /// 1-based character position.
    at: usize,
}

impl Token {
    fn error(&self, message: String) -> FilterError {
        FilterError {
            position: self.at,
            message,
        }
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(&self.kind, Kind::Word(x) if x.eq_ignore_ascii_case(w))
    }
}

fn lex(text: &str) -> Result<Vec<Token>, FilterError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let at = i + 1;
        if c.is_whitespace() {
            i += 1;
        } else if c == '(' || c == ')' {
            out.push(Token {
                kind: if c == '(' { Kind::Open } else { Kind::Close },
                at,
            });
            i += 1;
        } else if c == '\'' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => {
                        return Err(FilterError {
                            position: at,
                            message: "string is not closed with `'`".into(),
                        });
                    }
                    Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                        s.push('\'');
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(&ch) => {
                        s.push(ch);
                        i += 1;
                    }
                }
            }
            out.push(Token {
                kind: Kind::Str(s),
                at,
            });
        } else if c.is_ascii_digit()
            || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            let start = i;
            i += 1;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            if chars.get(i) == Some(&'.') && chars.get(i + 1).is_some_and(char::is_ascii_digit) {
                i += 1;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
            if chars
                .get(i)
                .is_some_and(|c| c.is_alphanumeric() || *c == '_')
            {
                return Err(FilterError {
                    position: i + 1,
                    message: "a number must be followed by a space, `)` or the end".into(),
                });
            }
            out.push(Token {
                kind: Kind::Num(chars[start..i].iter().collect()),
                at,
            });
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '.')) {
                i += 1;
            }
            out.push(Token {
                kind: Kind::Word(chars[start..i].iter().collect()),
                at,
            });
        } else {
            return Err(FilterError {
                position: at,
                message: format!("unexpected character `{c}`"),
            });
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Parsing

struct Parser<'t> {
    tokens: &'t [Token],
    pos: usize,
    /// Position reported for "ended too early".
    end: usize,
    /// Conditions read so far, bounded by [`MAX_CONDITIONS`].
    conditions: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self, expected: &str) -> Result<Token, FilterError> {
        match self.tokens.get(self.pos) {
            Some(t) => {
                self.pos += 1;
                Ok(t.clone())
            }
            None => Err(FilterError {
                position: self.end,
                message: format!("filter ends where {expected} was expected"),
            }),
        }
    }

    fn eat_word(&mut self, w: &str) -> bool {
        if self.peek().is_some_and(|t| t.is_word(w)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn or(&mut self, depth: usize) -> Result<Expr, FilterError> {
        let mut parts = vec![self.and(depth)?];
        while self.eat_word("OR") {
            parts.push(self.and(depth)?);
        }
        Ok(join(parts, Join::Or))
    }

    fn and(&mut self, depth: usize) -> Result<Expr, FilterError> {
        let mut parts = vec![self.primary(depth)?];
        while self.eat_word("AND") {
            parts.push(self.primary(depth)?);
        }
        Ok(join(parts, Join::And))
    }

    fn primary(&mut self, depth: usize) -> Result<Expr, FilterError> {
        let t = self.next("a condition or `(`")?;
        match &t.kind {
            Kind::Open => {
                if depth >= MAX_NESTING {
                    return Err(t.error(format!(
                        "parentheses nest deeper than the limit of {MAX_NESTING}"
                    )));
                }
                let inner = self.or(depth + 1)?;
                let close = self.next("`)`")?;
                match close.kind {
                    Kind::Close => Ok(inner),
                    Kind::Open | Kind::Word(_) | Kind::Str(_) | Kind::Num(_) => {
                        Err(close.error(format!("expected `)`, found {}", close.kind)))
                    }
                }
            }
            Kind::Word(w) if is_keyword(w) => {
                Err(t.error(format!("expected a field name, found the keyword `{w}`")))
            }
            Kind::Word(field) => {
                self.conditions += 1;
                if self.conditions > MAX_CONDITIONS {
                    return Err(t.error(format!(
                        "the filter has more conditions than the limit of {MAX_CONDITIONS}"
                    )));
                }
                let op = self.op()?;
                let v = self.next("a value")?;
                let at = v.at;
                let value = match v.kind {
                    Kind::Str(s) => Literal::Str(s),
                    Kind::Num(n) => Literal::Num(n),
                    Kind::Word(w) if w.eq_ignore_ascii_case("BLANK") => Literal::Blank,
                    Kind::Word(_) | Kind::Open | Kind::Close => {
                        return Err(v.error(format!(
                            "expected a value ('quoted string', number or BLANK), found {}",
                            v.kind
                        )));
                    }
                };
                if value == Literal::Blank && !matches!(op, Op::Equals | Op::NotEqualTo) {
                    return Err(FilterError {
                        position: at,
                        message: format!(
                            "BLANK can only follow `equals` or `not equal to`, not `{}`",
                            op.as_str()
                        ),
                    });
                }
                Ok(Expr::Cmp {
                    field: field.clone(),
                    op,
                    value,
                })
            }
            Kind::Close | Kind::Str(_) | Kind::Num(_) => {
                Err(t.error(format!("expected a field name or `(`, found {}", t.kind)))
            }
        }
    }

    fn op(&mut self) -> Result<Op, FilterError> {
        let t = self.next("an operator")?;
        let bad = |t: &Token| {
            t.error(format!(
                "unknown operator {}; operators are {}",
                t.kind,
                Op::ALL
                    .iter()
                    .map(|o| o.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        };
        let Kind::Word(w) = &t.kind else {
            return Err(bad(&t));
        };
        let w = w.to_ascii_lowercase();
        let op = match w.as_str() {
            "equals" => Op::Equals,
            "contains" => Op::Contains,
            "not" => {
                if self.eat_word("contains") {
                    Op::NotContains
                } else if self.eat_word("equal") && self.eat_word("to") {
                    Op::NotEqualTo
                } else {
                    return Err(bad(&t));
                }
            }
            "less" | "greater" => {
                if !self.eat_word("than") {
                    return Err(bad(&t));
                }
                let eq = self.eat_word("equals");
                match (w.as_str(), eq) {
                    ("less", false) => Op::LessThan,
                    ("less", true) => Op::LessThanEquals,
                    (_, false) => Op::GreaterThan,
                    (_, true) => Op::GreaterThanEquals,
                }
            }
            "starts" if self.eat_word("with") => Op::StartsWith,
            "ends" if self.eat_word("with") => Op::EndsWith,
            _ => return Err(bad(&t)),
        };
        Ok(op)
    }
}

pub(super) fn is_keyword(w: &str) -> bool {
    ["AND", "OR", "BLANK"]
        .iter()
        .any(|k| w.eq_ignore_ascii_case(k))
}

#[derive(Clone, Copy)]
pub(super) enum Join {
    And,
    Or,
}

/// One part stays itself; several become an `And`/`Or`, flattening nested same-kind nodes.
pub(super) fn join(mut parts: Vec<Expr>, kind: Join) -> Expr {
    if parts.len() == 1 {
        return parts.remove(0);
    }
    let and = matches!(kind, Join::And);
    let mut flat = Vec::with_capacity(parts.len());
    for p in parts {
        match p {
            Expr::And(inner) if and => flat.extend(inner),
            Expr::Or(inner) if !and => flat.extend(inner),
            other @ (Expr::Cmp { .. } | Expr::And(_) | Expr::Or(_)) => flat.push(other),
        }
    }
    match kind {
        Join::And => Expr::And(flat),
        Join::Or => Expr::Or(flat),
    }
}
