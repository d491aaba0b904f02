//! Operations on values, as jaq defines them, over `serde_json` values.
//!
//! Each operation answers the operands route filters meet (integers, strings, objects
//! looked up by key…) directly. Rarer operands (floats in a comparison, integers past `i64`,
//! a string split by `/`, an index that is an array) are answered by jaq_json's own operation
//! on its value type: one operation on converted operands, never a filter re-run, so the
//! plan answers every input the way jaq does. Errors carry jaq's wording: they are built with
//! jaq's error constructors over the offending values, converted only when an error happens.
//!
//! Where jaq makes a value JSON cannot hold, the plan holds what jaq's answer would become
//! when converted back to JSON: a number that is not finite is null, an integer past `u64`
//! a float. An object key that is not a string (`{(1): 2}`, `from_entries` over numbers) is
//! kept as its jaq text behind [`ODD_KEY`]: looking the object up with that value finds it,
//! converting it for jaq gives the value back, and the run's answer is left with the text
//! alone, as jaq's conversion leaves it.

use std::borrow::Cow;
use std::cmp::Ordering;

use jaq_core::ValT as _;
use jaq_core::ops::Cmp;
use jaq_json::{Num, Val};
use serde_json::{Map, Value};

use super::MAX_RANGE;
use super::eval::Stop;
use crate::mapping::jq::from_val;

pub(super) static NULL: Value = Value::Null;
pub(super) static TRUE: Value = Value::Bool(true);
pub(super) static FALSE: Value = Value::Bool(false);

/// Marks an object key that jaq holds as a value other than a string (a Unicode
/// noncharacter: no text an upstream sends starts with it in practice).
pub(super) const ODD_KEY: char = '\u{FDD0}';

/// A jaq error as the plan's stop.
pub(super) fn fail(e: jaq_json::Error) -> Stop {
    Stop::Fail(Box::new(e))
}

/// The answer of one of jaq's own operations, back in the plan's values.
fn via<'i>(r: jaq_json::ValR) -> Result<Cow<'i, Value>, Stop> {
    r.map(|v| Cow::Owned(json(&v))).map_err(fail)
}

/// A value as jaq holds it (marked keys as the values they stand for).
pub(super) fn jaq(v: &Value) -> Val {
    match v {
        Value::Array(a) => a.iter().map(jaq).collect(),
        Value::Object(o) => {
            let mut m = jaq_json::Map::with_capacity_and_hasher(o.len(), Default::default());
            for (k, v) in o {
                m.insert(jaq_key(k), jaq(v));
            }
            Val::obj(m)
        }
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {
            crate::mapping::jq::to_val(v)
        }
    }
}

/// An object key as jaq holds it.
pub(super) fn jaq_key(k: &str) -> Val {
    k.strip_prefix(ODD_KEY)
        .and_then(|text| jaq_json::read::parse_single(text.as_bytes()).ok())
        .unwrap_or_else(|| Val::utf8_str(k.as_bytes().to_vec()))
}

/// A jaq value in the plan's values (keys that are not strings marked).
pub(super) fn json(v: &Val) -> Value {
    match v {
        Val::Arr(a) => Value::Array(a.iter().map(json).collect()),
        Val::Obj(o) => Value::Object(o.iter().map(|(k, v)| (key_text(k), json(v))).collect()),
        Val::Null | Val::Bool(_) | Val::Num(_) | Val::TStr(_) | Val::BStr(_) => from_val(v),
    }
}

fn key_text(k: &Val) -> String {
    match k {
        Val::TStr(b) | Val::BStr(b) => String::from_utf8_lossy(b).into_owned(),
        Val::Null | Val::Bool(_) | Val::Num(_) | Val::Arr(_) | Val::Obj(_) => {
            format!("{ODD_KEY}{k}")
        }
    }
}

/// The key a value makes in an object: a string as it is, anything else marked (`true`).
pub(super) fn object_key(k: Cow<'_, Value>) -> (String, bool) {
    match k {
        Cow::Owned(Value::String(s)) => (s, false),
        Cow::Borrowed(Value::String(s)) => (s.clone(), false),
        other => (format!("{ODD_KEY}{}", jaq(&other)), true),
    }
}

/// `v` with its marked keys left as their text, as jaq's answer is converted.
pub(super) fn plain(v: Value) -> Value {
    match v {
        Value::Array(a) => Value::Array(a.into_iter().map(plain).collect()),
        Value::Object(o) => {
            let mut m = Map::with_capacity(o.len());
            for (k, v) in o {
                let k = match k.strip_prefix(ODD_KEY) {
                    Some(text) => text.to_owned(),
                    None => k,
                };
                m.insert(k, plain(v));
            }
            Value::Object(m)
        }
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => v,
    }
}

pub(super) fn truthy(v: &Value) -> bool {
    !matches!(v, Value::Null | Value::Bool(false))
}

pub(super) fn boolean<'i>(b: bool) -> Cow<'i, Value> {
    Cow::Borrowed(if b { &TRUE } else { &FALSE })
}

/// `.[k]` with a string: objects and null give the value or null; anything else fails.
pub(super) fn key<'i>(v: Cow<'i, Value>, k: &str) -> Result<Cow<'i, Value>, Stop> {
    match v {
        Cow::Borrowed(Value::Object(m)) => Ok(Cow::Borrowed(m.get(k).unwrap_or(&NULL))),
        Cow::Owned(Value::Object(mut m)) => Ok(Cow::Owned(m.remove(k).unwrap_or(Value::Null))),
        Cow::Borrowed(Value::Null) | Cow::Owned(Value::Null) => Ok(Cow::Borrowed(&NULL)),
        Cow::Borrowed(Value::Bool(_) | Value::Number(_) | Value::String(_) | Value::Array(_))
        | Cow::Owned(Value::Bool(_) | Value::Number(_) | Value::String(_) | Value::Array(_)) => {
            Err(fail(jaq_core::Error::index(
                jaq(&v),
                Val::utf8_str(k.as_bytes().to_vec()),
            )))
        }
    }
}

/// `.[i]` with an integer: arrays count negatives from the end, null gives null, an object
/// looks the number up as a key; anything else fails.
pub(super) fn index<'i>(v: Cow<'i, Value>, i: i64) -> Result<Cow<'i, Value>, Stop> {
    let at = |len: usize| -> Option<usize> {
        let i = if i < 0 { i + len as i64 } else { i };
        (0..len as i64).contains(&i).then_some(i as usize)
    };
    match v {
        Cow::Borrowed(Value::Array(a)) => Ok(Cow::Borrowed(at(a.len()).map_or(&NULL, |i| &a[i]))),
        Cow::Owned(Value::Array(mut a)) => Ok(match at(a.len()) {
            Some(i) => Cow::Owned(a.swap_remove(i)),
            None => Cow::Borrowed(&NULL),
        }),
        Cow::Borrowed(Value::Null) | Cow::Owned(Value::Null) => Ok(Cow::Borrowed(&NULL)),
        Cow::Borrowed(Value::Object(_)) | Cow::Owned(Value::Object(_)) => {
            key(v, &format!("{ODD_KEY}{i}"))
        }
        Cow::Borrowed(Value::Bool(_) | Value::Number(_) | Value::String(_))
        | Cow::Owned(Value::Bool(_) | Value::Number(_) | Value::String(_)) => Err(fail(
            jaq_core::Error::index(jaq(&v), Val::Num(Num::from_integral(i))),
        )),
    }
}

/// `.[k]` with a computed index of any kind.
pub(super) fn index_by<'i>(v: Cow<'i, Value>, k: &Value) -> Result<Cow<'i, Value>, Stop> {
    match (v.as_ref(), k) {
        (_, Value::String(k)) => key(v, k),
        (Value::Array(_) | Value::Null | Value::Object(_), Value::Number(n)) if n.is_i64() => {
            index(v, n.as_i64().unwrap_or_default())
        }
        (Value::Null, _) => Ok(Cow::Borrowed(&NULL)),
        (Value::Object(_), _) => key(v, &format!("{ODD_KEY}{}", jaq(k))),
        _ => via(jaq(&v).index(&jaq(k))),
    }
}

/// `.[from:upto]` (absent or null bounds: the ends).
pub(super) fn slice<'i>(
    v: Cow<'i, Value>,
    from: Option<&Value>,
    upto: Option<&Value>,
) -> Result<Cow<'i, Value>, Stop> {
    let plain = |b: Option<&Value>| match b {
        None | Some(Value::Null) => Some(None),
        Some(Value::Number(n)) => n.as_i64().map(Some),
        Some(Value::Bool(_) | Value::String(_) | Value::Array(_) | Value::Object(_)) => None,
    };
    if let (Value::Array(a), Some(from), Some(upto)) = (v.as_ref(), plain(from), plain(upto)) {
        // A negative bound counts from the end; both are clamped to the array.
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
        return Ok(Cow::Owned(Value::Array(a[start..end.max(start)].to_vec())));
    }
    let (from, upto) = (from.map(jaq), upto.map(jaq));
    via(jaq(&v).range(from.as_ref()..upto.as_ref()))
}

/// What `.[]` walks: an array's elements or an object's values.
pub(super) fn values(v: &Value) -> Result<Box<dyn Iterator<Item = &Value> + '_>, Stop> {
    match v {
        Value::Array(a) => Ok(Box::new(a.iter())),
        Value::Object(m) => Ok(Box::new(m.values())),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => Err(not_iterable(v)),
    }
}

pub(super) fn not_iterable(v: &Value) -> Stop {
    fail(jaq_core::Error::typ(jaq(v), "iterable (array or object)"))
}

/// jaq's error for a value an operation needs to be of `kind` (`array`, `string`…).
pub(super) fn not_a(v: &Value, kind: &'static str) -> Stop {
    fail(jaq_core::Error::typ(jaq(v), kind))
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

/// jaq's total order of values (the one `sort_by`, `max` and `<` use).
pub(super) fn order(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => jaq(a).cmp(&jaq(b)),
        },
        (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Value::Array(x), Value::Array(y)) => x
            .iter()
            .zip(y)
            .map(|(x, y)| order(x, y))
            .find(|o| o.is_ne())
            .unwrap_or_else(|| x.len().cmp(&y.len())),
        (Value::Object(_), Value::Object(_)) => jaq(a).cmp(&jaq(b)),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// jq equality: numbers by value (1 == 1.0), objects whatever their key order.
pub(super) fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => jaq(a) == jaq(b),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| equal(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, x)| y.get(k).is_some_and(|y| equal(x, y)))
        }
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::String(x), Value::String(y)) => x == y,
        _ => false,
    }
}

pub(super) fn compare(a: &Value, op: Cmp, b: &Value) -> bool {
    match op {
        Cmp::Eq => equal(a, b),
        Cmp::Ne => !equal(a, b),
        Cmp::Lt => order(a, b).is_lt(),
        Cmp::Le => order(a, b).is_le(),
        Cmp::Gt => order(a, b).is_gt(),
        Cmp::Ge => order(a, b).is_ge(),
    }
}

pub(super) fn add<'i>(a: Cow<'i, Value>, b: Cow<'i, Value>) -> Result<Cow<'i, Value>, Stop> {
    Ok(match (a, b) {
        // `null` is neutral.
        (Cow::Borrowed(Value::Null) | Cow::Owned(Value::Null), x)
        | (x, Cow::Borrowed(Value::Null) | Cow::Owned(Value::Null)) => x,
        (a, b) => match (a.into_owned(), b.into_owned()) {
            (Value::Number(x), Value::Number(y)) => {
                match x
                    .as_i64()
                    .zip(y.as_i64())
                    .and_then(|(x, y)| x.checked_add(y))
                {
                    Some(sum) => Cow::Owned(Value::from(sum)),
                    None => return via(jaq(&Value::Number(x)) + jaq(&Value::Number(y))),
                }
            }
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
            (a, b) => return via(jaq(&a) + jaq(&b)),
        },
    })
}

/// `a / b`: numbers divide as floats (the answer a float even when whole: `4 / 2` is
/// `2.0`), strings split; anything else is jaq's error.
pub(super) fn divide<'i>(a: &Value, b: &Value) -> Result<Cow<'i, Value>, Stop> {
    let float = |n: &serde_json::Number| {
        n.as_i64()
            .map(|i| i as f64)
            .or(n.as_f64().filter(|_| n.is_f64()))
    };
    if let (Value::Number(x), Value::Number(y)) = (a, b)
        && let (Some(x), Some(y)) = (float(x), float(y))
    {
        return Ok(Cow::Owned(number(x / y)));
    }
    via(jaq(a) / jaq(b))
}

/// A float as the plan holds it: not finite is null (as jaq's answer converts it).
pub(super) fn number(f: f64) -> Value {
    serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// The text `"\(v)"` gives: a string as it is, anything else as jaq writes it.
pub(super) fn to_text(v: &Value, out: &mut String) {
    use std::fmt::Write as _;
    match v {
        Value::String(s) => out.push_str(s),
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) if n.is_i64() => {
            let _ = write!(out, "{n}");
        }
        Value::Number(_) | Value::Array(_) | Value::Object(_) => {
            let _ = write!(out, "{}", jaq(v));
        }
    }
}

/// jaq's `contains`: a substring, every element of `b` contained in one of `a`, every entry of
/// `b` contained in `a`'s under its key; anything else is equality.
pub(super) fn contains(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x.contains(y.as_str()),
        (Value::Array(x), Value::Array(y)) => y.iter().all(|y| x.iter().any(|x| contains(x, y))),
        (Value::Object(x), Value::Object(y)) => y
            .iter()
            .all(|(k, y)| x.get(k).is_some_and(|x| contains(x, y))),
        _ => equal(a, b),
    }
}

/// `x + 1` as `range` counts (jaq's `range` steps with `+`).
pub(super) fn succ(x: &Value) -> Result<Value, Stop> {
    add(Cow::Borrowed(x), Cow::Owned(Value::from(1))).map(Cow::into_owned)
}

/// `range(a; b)`: integers counted directly; anything else as jaq's `range/3` counts
/// (`a | while(. < b; . + 1)`), refused past [`MAX_RANGE`] values.
pub(super) fn range(
    a: &Value,
    b: &Value,
    out: &mut dyn FnMut(Value) -> Result<(), Stop>,
) -> Result<(), Stop> {
    if let (Value::Number(x), Value::Number(y)) = (a, b)
        && let (Some(a), Some(b)) = (x.as_i64(), y.as_i64())
    {
        if b.saturating_sub(a) > MAX_RANGE {
            return Err(Stop::TooLong);
        }
        for i in a..b {
            out(Value::from(i))?;
        }
        return Ok(());
    }
    if endless(a, b) {
        return Err(Stop::TooLong);
    }
    let mut x = a.clone();
    let mut counted = 0;
    while order(&x, b).is_lt() {
        counted += 1;
        if counted > MAX_RANGE {
            return Err(Stop::TooLong);
        }
        let next = succ(&x);
        out(x)?;
        x = next?;
    }
    Ok(())
}

/// Whether jaq's `range(a; b)` would count past [`MAX_RANGE`] when its bounds are not both
/// integers: up to a string, array or object it never stops (a number is below every one of
/// them: `range(1; "5")`), and between floats it goes as far as they say (1e300). An
/// upstream's page count sent as text would take the process's memory. Ranges that stop at
/// once (up to null or a boolean, or from a value `+ 1` refuses) are counted.
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_convert_to_jaq_and_back_with_odd_keys_kept() {
        for v in [
            json!({"a": [1, 2.5, "s", null, true, {"b": {}}], "big": 18446744073709551615u64}),
            json!([]),
            json!(-0.5),
        ] {
            assert_eq!(json(&jaq(&v)), v);
        }
        let (odd, marked) = object_key(Cow::Owned(json!(1)));
        assert!(marked);
        let v = Value::Object([(odd, json!("x"))].into_iter().collect());
        assert_eq!(jaq(&v).to_string(), "{1:\"x\"}");
        assert_eq!(json(&jaq(&v)), v);
        assert_eq!(plain(v), json!({"1": "x"}));
    }

    #[test]
    fn orders_and_equalities_are_jaqs_for_every_kind() {
        let values = [
            json!(null),
            json!(false),
            json!(true),
            json!(-1),
            json!(1),
            json!(1.0),
            json!(1.5),
            json!(18446744073709551615u64),
            json!(""),
            json!("a"),
            json!("É"),
            json!([]),
            json!([1, "a"]),
            json!([1.0]),
            json!({}),
            json!({"a": 1}),
            json!({"b": 0, "a": 1}),
        ];
        for a in &values {
            for b in &values {
                assert_eq!(order(a, b), jaq(a).cmp(&jaq(b)), "{a} vs {b}");
                assert_eq!(equal(a, b), jaq(a) == jaq(b), "{a} == {b}");
            }
        }
    }
}
