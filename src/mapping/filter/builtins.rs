//! jq's builtins that route filters call, as jaq answers them.
//!
//! In jaq most of these are jq definitions (`add` is a `reduce`, `join` an update, `tonumber`
//! a `fromjson` behind type tests, `to_entries` a destructuring): each here is one function
//! that answers what the definition answers, its errors included (whichever operation of the
//! definition fails first, worded by jaq's constructors).

use std::borrow::Cow;
use std::cell::Cell;

use jaq_core::ops::Math;
use jaq_json::Val;
use serde_json::{Map, Value};

use super::eval::Stop;
use super::ops::{
    NULL, ODD_KEY, add, boolean, fail, jaq, jaq_key, json, key, not_a, not_iterable, number,
    object_key, order, to_text, truthy, values,
};
use super::plan::Builtin;

/// Hands each output of `b` on `v` to `out` (one, but for `tonumber` on text holding
/// several numbers); `odd` is set when an object key that is not a string is made.
pub(super) fn apply<'i>(
    b: Builtin,
    v: &'i Value,
    odd: &Cell<bool>,
    out: &mut dyn FnMut(Cow<'i, Value>) -> Result<(), Stop>,
) -> Result<(), Stop> {
    let owned = |x: Value| Ok(Cow::Owned(x));
    let one = match b {
        Builtin::Not => Ok(boolean(!truthy(v))),
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
        Builtin::Length => length(v),
        Builtin::ToString => match v {
            Value::String(_) => Ok(Cow::Borrowed(v)),
            Value::Null
            | Value::Bool(_)
            | Value::Number(_)
            | Value::Array(_)
            | Value::Object(_) => {
                let mut s = String::new();
                to_text(v, &mut s);
                owned(Value::String(s))
            }
        },
        Builtin::AsciiDowncase | Builtin::AsciiUpcase => match v {
            Value::String(s) => owned(Value::String(if b == Builtin::AsciiDowncase {
                s.to_ascii_lowercase()
            } else {
                s.to_ascii_uppercase()
            })),
            Value::Null
            | Value::Bool(_)
            | Value::Number(_)
            | Value::Array(_)
            | Value::Object(_) => Err(not_a(v, "string")),
        },
        Builtin::Floor => floor(v),
        Builtin::ToDate => to_date(v),
        Builtin::ToNumber => return to_number(v, out),
        Builtin::Reverse => match v {
            Value::Array(a) => owned(Value::Array(a.iter().rev().cloned().collect())),
            Value::Null
            | Value::Bool(_)
            | Value::Number(_)
            | Value::String(_)
            | Value::Object(_) => Err(not_a(v, "array")),
        },
        // `max_by(.)`: of equal elements the last; null for none.
        Builtin::Max => match v {
            Value::Array(a) => Ok(Cow::Borrowed(
                a.iter()
                    .reduce(|best, x| if order(x, best).is_ge() { x } else { best })
                    .unwrap_or(&NULL),
            )),
            Value::Null
            | Value::Bool(_)
            | Value::Number(_)
            | Value::String(_)
            | Value::Object(_) => Err(not_a(v, "array")),
        },
        // `reduce .[] as $x (null; . + $x)`.
        Builtin::Sum => {
            values(v)?.try_fold(Cow::Borrowed(&NULL), |acc, x| add(acc, Cow::Borrowed(x)))
        }
        // `keys_unsorted | sort`.
        Builtin::Keys => match v {
            Value::Object(m) if !m.keys().any(|k| k.starts_with(ODD_KEY)) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort_unstable();
                owned(Value::Array(
                    keys.into_iter().map(|k| Value::String(k.clone())).collect(),
                ))
            }
            Value::Object(m) => {
                let mut keys: Vec<Value> = m.keys().map(|k| key_value(k)).collect();
                keys.sort_by(order);
                owned(Value::Array(keys))
            }
            Value::Array(a) => owned(Value::Array((0..a.len()).map(Value::from).collect())),
            Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {
                Err(not_iterable(v))
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
                    m.iter().map(|(k, x)| entry(key_value(k), x)).collect(),
                )),
                Value::Array(a) => owned(Value::Array(
                    a.iter()
                        .enumerate()
                        .map(|(i, x)| entry(Value::from(i), x))
                        .collect(),
                )),
                Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {
                    Err(not_iterable(v))
                }
            }
        }
        Builtin::FromEntries => from_entries(v, odd),
    };
    out(one?)
}

/// An object key as the value it stands for (a marked key is the value it was made from).
fn key_value(k: &str) -> Value {
    if k.starts_with(ODD_KEY) {
        json(&jaq_key(k))
    } else {
        Value::String(k.to_owned())
    }
}

/// 0 for null, the absolute value of a number, the length of a string (in characters), an
/// array or an object; a boolean has none.
fn length(v: &Value) -> Result<Cow<'_, Value>, Stop> {
    Ok(Cow::Owned(match v {
        Value::Null => Value::from(0),
        Value::Bool(_) => {
            return Err(fail(jaq_core::Error::str(format_args!(
                "{} has no length",
                jaq(v)
            ))));
        }
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            // The magnitude of `i64::MIN` is a `u64` (jaq's machine integer overflows there).
            (Some(i), _, _) => Value::from(i.unsigned_abs()),
            (None, Some(u), _) => Value::from(u),
            (None, None, f) => number(f.unwrap_or_default().abs()),
        },
        Value::String(s) => Value::from(s.chars().count()),
        Value::Array(a) => Value::from(a.len()),
        Value::Object(m) => Value::from(m.len()),
    }))
}

/// Integers stay; a float rounds down, to an integer when one holds it.
fn floor(v: &Value) -> Result<Cow<'_, Value>, Stop> {
    let Value::Number(n) = v else {
        return Err(not_a(v, "number"));
    };
    let Some(f) = n.as_f64().filter(|_| n.is_f64()) else {
        return Ok(Cow::Borrowed(v));
    };
    let f = f.floor();
    if !f.is_finite() {
        return Ok(Cow::Owned(number(f)));
    }
    if isize::MIN as f64 <= f && f <= isize::MAX as f64 {
        return Ok(Cow::Owned(Value::from(f as i64)));
    }
    // jaq writes it without decimals and reads that as an integer.
    <Val as jaq_core::ValT>::from_num(&format!("{f:.0}"))
        .map(|x| Cow::Owned(json(&x)))
        .map_err(fail)
}

/// jaq's `todateiso8601`, through the same date library: whole seconds for an integer,
/// microseconds for anything else numeric.
fn to_date(v: &Value) -> Result<Cow<'_, Value>, Stop> {
    let Value::Number(n) = v else {
        return Err(not_a(v, "number"));
    };
    let at = match n.as_i64() {
        Some(i) => jiff::Timestamp::from_second(i),
        None => jiff::Timestamp::from_microsecond((n.as_f64().unwrap_or_default() * 1e6) as i64),
    };
    at.map(|t| Cow::Owned(Value::String(t.to_string())))
        .map_err(|e| fail(jaq_core::Error::str(e)))
}

/// `if isnumber then . else fromjson | if isnumber then . else error(…) end end`: a string
/// is read as JSON text, each value it holds one output.
fn to_number<'i>(
    v: &'i Value,
    out: &mut dyn FnMut(Cow<'i, Value>) -> Result<(), Stop>,
) -> Result<(), Stop> {
    let s = match v {
        Value::Number(_) => return out(Cow::Borrowed(v)),
        Value::String(s) => s,
        Value::Null | Value::Bool(_) | Value::Array(_) | Value::Object(_) => {
            return Err(not_a(v, "string"));
        }
    };
    // Integers written plainly, the common case, without the reader.
    let digits = s.strip_prefix('-').unwrap_or(s);
    if !digits.is_empty()
        && digits.len() < 19
        && digits.bytes().all(|b| b.is_ascii_digit())
        && let Ok(i) = s.parse::<i64>()
    {
        return out(Cow::Owned(Value::from(i)));
    }
    for parsed in jaq_json::read::parse_many(s.as_bytes()) {
        match parsed {
            Ok(x @ Val::Num(_)) => out(Cow::Owned(json(&x)))?,
            Ok(_) => {
                return Err(fail(jaq_core::Error::new(Val::from(
                    "cannot parse as number".to_owned(),
                ))));
            }
            Err(e) => {
                return Err(fail(jaq_core::Error::str(format_args!(
                    "cannot parse {} as JSON: {e}",
                    jaq(v)
                ))));
            }
        }
    }
    Ok(())
}

/// `reduce (.[] | {(.key): .value}) as $x ({}; . + $x)`.
fn from_entries<'i>(v: &'i Value, odd: &Cell<bool>) -> Result<Cow<'i, Value>, Stop> {
    let mut out = Map::new();
    for item in values(v)? {
        let k = key(Cow::Borrowed(item), "key")?;
        let value = key(Cow::Borrowed(item), "value")?.into_owned();
        let (k, marked) = object_key(k);
        odd.set(odd.get() | marked);
        out.insert(k, value);
    }
    Ok(Cow::Owned(Value::Object(out)))
}

/// `join($s)`: `.[] |= tostring | .[:-1][] += $s | reduce .[] as $x (""; . + $x)`.
pub(super) fn join<'i>(v: &Value, sep: &Value) -> Result<Cow<'i, Value>, Stop> {
    let text = |x: &Value| {
        let mut s = String::new();
        to_text(x, &mut s);
        s
    };
    let texts: Vec<String> = match v {
        Value::Array(a) => a.iter().map(text).collect(),
        // An object's values are converted, then it cannot be cut like an array.
        Value::Object(m) => {
            let converted = m
                .iter()
                .map(|(k, x)| (k.clone(), Value::String(text(x))))
                .collect();
            return Err(not_a(&Value::Object(converted), "array"));
        }
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {
            return Err(not_iterable(v));
        }
    };
    let mut joined = String::new();
    let last = texts.len().saturating_sub(1);
    for (i, t) in texts.into_iter().enumerate() {
        joined.push_str(&t);
        if i < last {
            match sep {
                Value::String(s) => joined.push_str(s),
                Value::Null => {}
                Value::Bool(_) | Value::Number(_) | Value::Array(_) | Value::Object(_) => {
                    return Err(fail(jaq_core::Error::math(
                        Val::from(t),
                        Math::Add,
                        jaq(sep),
                    )));
                }
            }
        }
    }
    Ok(Cow::Owned(Value::String(joined)))
}
