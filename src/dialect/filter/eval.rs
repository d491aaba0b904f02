//! Evaluating a filter on records: [`Expr::matches`], the fields it names, what an
//! upstream can pre-filter for it, and the sort order LongJump lists use.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use super::{Expr, Literal, Op};

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
