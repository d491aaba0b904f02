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

use std::cmp::Ordering;
use std::fmt;

use serde_json::{Map, Value};

/// Deepest parenthesis nesting accepted; the parser recurses once per level.
pub const MAX_NESTING: usize = 32;

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

/// Parses a filter expression.
pub fn parse(text: &str) -> Result<Expr, FilterError> {
    let tokens = lex(text)?;
    let mut p = Parser {
        tokens: &tokens,
        pos: 0,
        end: text.chars().count() + 1,
    };
    let expr = p.or(0)?;
    match p.peek() {
        None => Ok(expr),
        Some(t) => Err(t.error(format!("unexpected {} after a complete filter", t.kind))),
    }
}

// ---------------------------------------------------------------------------------------
// Lexing

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

fn is_keyword(w: &str) -> bool {
    ["AND", "OR", "BLANK"]
        .iter()
        .any(|k| w.eq_ignore_ascii_case(k))
}

#[derive(Clone, Copy)]
enum Join {
    And,
    Or,
}

/// One part stays itself; several become an `And`/`Or`, flattening nested same-kind nodes.
fn join(mut parts: Vec<Expr>, kind: Join) -> Expr {
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

// ---------------------------------------------------------------------------------------
// Printing

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

impl Expr {
    /// Every field the filter names, in order of appearance.
    pub fn fields(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.collect_fields(&mut out);
        out
    }

    fn collect_fields<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Expr::Cmp { field, .. } => out.push(field),
            Expr::And(parts) | Expr::Or(parts) => {
                for p in parts {
                    p.collect_fields(out);
                }
            }
        }
    }

    /// Whether `record` satisfies the filter. String comparisons ignore case, as LongJump's
    /// do; a lookup field (`{"#text": id, "@displayValue": …}`) compares by its id.
    pub fn matches(&self, record: &Map<String, Value>) -> bool {
        match self {
            Expr::Cmp { field, op, value } => compare(field_text(record.get(field)), *op, value),
            Expr::And(parts) => parts.iter().all(|p| p.matches(record)),
            Expr::Or(parts) => parts.iter().any(|p| p.matches(record)),
        }
    }

    /// A substring every record matching the filter has in `field` (case-insensitively),
    /// if the filter implies one: what an upstream with a "name contains" parameter can
    /// filter for Rosetta. The upstream's answer is a superset; Rosetta still applies the
    /// whole filter to it.
    pub fn implied_substring(&self, field: &str) -> Option<&str> {
        match self {
            Expr::Cmp {
                field: f,
                op: Op::Equals | Op::Contains | Op::StartsWith | Op::EndsWith,
                value: Literal::Str(s),
            } if f == field && !s.is_empty() => Some(s),
            Expr::Cmp { .. } | Expr::Or(_) => None,
            Expr::And(parts) => parts.iter().find_map(|p| p.implied_substring(field)),
        }
    }
}

/// The comparable text of a record field; `None` for a blank one.
fn field_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(if *b { "1" } else { "0" }.to_owned()),
        Value::Number(n) => Some(n.to_string()),
        Value::Object(m) => field_text(m.get("#text")),
        Value::Array(a) if a.is_empty() => None,
        v @ Value::Array(_) => Some(v.to_string()),
    }
}

fn compare(text: Option<String>, op: Op, lit: &Literal) -> bool {
    let rhs = match lit {
        Literal::Blank => {
            return match op {
                Op::Equals => text.is_none(),
                Op::NotEqualTo => text.is_some(),
                // The parser refuses BLANK with any other operator.
                Op::LessThan
                | Op::LessThanEquals
                | Op::GreaterThan
                | Op::GreaterThanEquals
                | Op::Contains
                | Op::NotContains
                | Op::StartsWith
                | Op::EndsWith => false,
            };
        }
        Literal::Str(s) | Literal::Num(s) => s,
    };
    let Some(lhs) = text else {
        // A blank field equals no value and contains nothing.
        return matches!(op, Op::NotEqualTo | Op::NotContains);
    };
    let (l, r) = (lhs.to_lowercase(), rhs.to_lowercase());
    match op {
        Op::Equals => ordering(&l, &r, lit) == Ordering::Equal,
        Op::NotEqualTo => ordering(&l, &r, lit) != Ordering::Equal,
        Op::LessThan => ordering(&l, &r, lit) == Ordering::Less,
        Op::LessThanEquals => ordering(&l, &r, lit) != Ordering::Greater,
        Op::GreaterThan => ordering(&l, &r, lit) == Ordering::Greater,
        Op::GreaterThanEquals => ordering(&l, &r, lit) != Ordering::Less,
        Op::Contains => l.contains(&r),
        Op::NotContains => !l.contains(&r),
        Op::StartsWith => l.starts_with(&r),
        Op::EndsWith => l.ends_with(&r),
    }
}

/// Numbers compare as numbers (`10 > 9`), everything else as text (ISO dates sort right).
fn ordering(l: &str, r: &str, lit: &Literal) -> Ordering {
    match (l.parse::<f64>(), r.parse::<f64>()) {
        (Ok(a), Ok(b)) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
        // A number literal against text that is no number: never equal, ordered after.
        (Err(_), Ok(_)) if matches!(lit, Literal::Num(_)) => Ordering::Greater,
        (Err(_) | Ok(_), Err(_) | Ok(_)) => l.cmp(r),
    }
}

/// Compares two field values for sorting: numbers numerically, text case-insensitively,
/// blanks last.
pub fn sort_cmp(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    match (field_text(a), field_text(b)) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => match (x.parse::<f64>(), y.parse::<f64>()) {
            (Ok(p), Ok(q)) => p.partial_cmp(&q).unwrap_or(Ordering::Equal),
            (Err(_) | Ok(_), Err(_) | Ok(_)) => x.to_lowercase().cmp(&y.to_lowercase()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn cmp(field: &str, op: Op, value: Literal) -> Expr {
        Expr::Cmp {
            field: field.into(),
            op,
            value,
        }
    }

    fn s(v: &str) -> Literal {
        Literal::Str(v.into())
    }

    #[test]
    fn every_operator_parses() {
        for op in Op::ALL {
            let text = format!("name {} 'x'", op.as_str());
            assert_eq!(parse(&text).unwrap(), cmp("name", op, s("x")), "{text}");
            // Keywords are case-insensitive.
            let upper = format!("name {} 'x'", op.as_str().to_uppercase());
            assert_eq!(parse(&upper).unwrap(), cmp("name", op, s("x")), "{upper}");
        }
    }

    #[test]
    fn precedence_and_parentheses() {
        let e = parse("a equals 1 OR b equals 2 AND c equals 3").unwrap();
        assert_eq!(
            e,
            Expr::Or(vec![
                cmp("a", Op::Equals, Literal::Num("1".into())),
                Expr::And(vec![
                    cmp("b", Op::Equals, Literal::Num("2".into())),
                    cmp("c", Op::Equals, Literal::Num("3".into())),
                ]),
            ])
        );
        let e = parse("(a equals 1 OR b equals 2) AND c equals BLANK").unwrap();
        assert_eq!(
            e.to_string(),
            "(a equals 1 OR b equals 2) AND c equals BLANK"
        );
        // Nested same-kind groups flatten.
        let e = parse("a equals 'x' AND (b equals 'y' AND c equals 'z')").unwrap();
        assert!(matches!(&e, Expr::And(p) if p.len() == 3));
    }

    #[test]
    fn doubled_quotes_and_numbers() {
        assert_eq!(
            parse("company equals 'O''Brien'").unwrap(),
            cmp("company", Op::Equals, s("O'Brien"))
        );
        assert_eq!(
            parse("n less than -2.5").unwrap(),
            cmp("n", Op::LessThan, Literal::Num("-2.5".into()))
        );
        assert_eq!(
            parse("n greater than equals 10").unwrap(),
            cmp("n", Op::GreaterThanEquals, Literal::Num("10".into()))
        );
    }

    #[test]
    fn errors_name_the_position() {
        let cases = [
            ("name is 'x'", 6, "unknown operator"),
            ("name contains 'x", 15, "not closed"),
            ("name contains 'x' AND", 22, "ends where"),
            ("(name contains 'x'", 19, "`)`"),
            ("name contains x", 15, "expected a value"),
            ("name contains 'x' 'y'", 19, "after a complete filter"),
            ("name less than BLANK", 16, "BLANK can only"),
            ("AND equals 'x'", 1, "keyword"),
            ("name equals 12ab", 15, "number must be followed"),
            ("name equals 'x' ; drop", 17, "unexpected character"),
            ("", 1, "ends where"),
            ("name not like 'x'", 6, "unknown operator"),
        ];
        for (text, pos, msg) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!(e.position, pos, "{text}: {e}");
            assert!(e.message.contains(msg), "{text}: {e}");
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = format!("{}a equals 1{}", "(".repeat(40), ")".repeat(40));
        assert!(parse(&deep).unwrap_err().message.contains("nest deeper"));
        let ok = format!("{}a equals 1{}", "(".repeat(10), ")".repeat(10));
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn evaluation() {
        let rec = json!({"id": "7", "company": "Greene Services", "active": true, "msp": "0",
                         "partner": {"@displayValue": "MSP 15", "#text": "1384998015"},
                         "phone": "", "start_date": "2010-11-12T13:14:15Z", "users": 12});
        let rec = rec.as_object().unwrap();
        let yes = [
            "company contains 'greene'",
            "company starts with 'GREENE'",
            "company ends with 'services'",
            "company equals 'greene services'",
            "company not contains 'acme'",
            "active equals 1",
            "msp equals 0",
            "partner equals '1384998015'",
            "phone equals BLANK",
            "zip equals BLANK",
            "company not equal to BLANK",
            "users greater than 9",
            "users less than equals 12",
            "start_date greater than '2010-01-01'",
            "company contains 'x' OR active equals 1",
            "(company contains 'x' OR active equals 1) AND msp not equal to 1",
            "zip not equal to 'x'",
        ];
        for f in yes {
            assert!(parse(f).unwrap().matches(rec), "{f}");
        }
        let no = [
            "company contains 'acme'",
            "active equals 0",
            "phone not equal to BLANK",
            "users less than 9",
            "zip equals 'x'",
            "zip contains ''",
            "company equals 5",
            "company contains 'greene' AND active equals 0",
        ];
        for f in no {
            assert!(!parse(f).unwrap().matches(rec), "{f}");
        }
    }

    #[test]
    fn implied_substring_only_when_implied() {
        let f = |t: &str| parse(t).unwrap();
        assert_eq!(
            f("company contains 'ab'").implied_substring("company"),
            Some("ab")
        );
        assert_eq!(
            f("active equals 1 AND company starts with 'ab'").implied_substring("company"),
            Some("ab")
        );
        assert_eq!(
            f("company contains 'ab' OR active equals 1").implied_substring("company"),
            None
        );
        assert_eq!(
            f("company not contains 'ab'").implied_substring("company"),
            None
        );
        assert_eq!(f("company equals 5").implied_substring("company"), None);
    }

    #[test]
    fn injection_through_quote_stays_one_value() {
        let evil = "x' OR name contains '";
        let text = format!("company contains {}", quote(evil));
        assert_eq!(text, "company contains 'x'' OR name contains '''");
        assert_eq!(parse(&text).unwrap(), cmp("company", Op::Contains, s(evil)));
    }

    fn arb_field() -> impl Strategy<Value = String> {
        "[a-z_][a-z0-9_]{0,8}".prop_filter("keyword", |f| !is_keyword(f))
    }

    fn arb_literal() -> impl Strategy<Value = Literal> {
        prop_oneof![
            any::<String>().prop_map(Literal::Str),
            (-1_000_000i64..1_000_000).prop_map(|n| Literal::Num(n.to_string())),
            Just(Literal::Blank),
        ]
    }

    fn arb_cmp() -> impl Strategy<Value = Expr> {
        (arb_field(), 0..Op::ALL.len(), arb_literal()).prop_map(|(field, i, value)| {
            let op = if value == Literal::Blank {
                [Op::Equals, Op::NotEqualTo][i % 2]
            } else {
                Op::ALL[i]
            };
            Expr::Cmp { field, op, value }
        })
    }

    fn arb_expr() -> impl Strategy<Value = Expr> {
        arb_cmp().prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 2..4).prop_map(|v| join(v, Join::And)),
                prop::collection::vec(inner, 2..4).prop_map(|v| join(v, Join::Or)),
            ]
        })
    }

    proptest! {
        #[test]
        fn quote_parses_back_to_the_value(v in any::<String>()) {
            let text = format!("company equals {}", quote(&v));
            prop_assert_eq!(parse(&text).unwrap(), cmp("company", Op::Equals, Literal::Str(v)));
        }

        #[test]
        fn quoted_values_never_add_conditions(v in "[ a-zA-Z'()]{0,30}") {
            let text = format!("a contains {} AND b equals 'y'", quote(&v));
            let e = parse(&text).unwrap();
            prop_assert_eq!(e.fields(), vec!["a", "b"]);
        }

        #[test]
        fn print_then_parse_is_identity(e in arb_expr()) {
            let text = e.to_string();
            prop_assert_eq!(parse(&text).unwrap(), e, "{}", text);
        }

        #[test]
        fn parser_never_panics(text in any::<String>()) {
            let _ = parse(&text);
        }
    }
}
