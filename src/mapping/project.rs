//! Reading an upstream's JSON answer only as far as the route's filter looks into it.
//!
//! A V1 company read takes an AppDirect company (twelve fields and an address of six) and an
//! association page, and its filter reads four fields of the one and one id of the other.
//! Parsing both whole (every key and string value allocated, every map grown) was 54 of the
//! request's 206 allocations and a fifth of its in-process time (`benches/allocs.rs`,
//! `benches/stack.rs`). The filter is known when the pack loads, so which parts of each step's
//! answer it can read is known too ([`Demand`], found by
//! [`super::filter::Program::demand`] over the translated filter); the answer is then parsed
//! into a value that has those parts and the shape around them, the rest skipped unbuilt
//! ([`Projection`]).
//!
//! What is kept is chosen so that the filter cannot tell: every value the filter reads whole
//! (outputs, comparisons, `length`, string conversion…) is kept whole; a container it only
//! walks into keeps the keys it walks to (an object) or all its elements (an array, so that
//! indices and negative indices still count from the same ends); a container whose truth or
//! type is all the filter asks stays a container of the same kind, emptied. Where a step would
//! fail on a value of the wrong kind (a key looked up in an array), that value is kept whole,
//! so the failure, and jaq's wording of it, are the same.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// One step of a path into a value, as far as the demand analysis tells them apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// `.k`
    Key(String),
    /// `.[i]` (any integer)
    Index,
    /// `.[]`
    Iter,
}

/// What a filter can read of a value: all of it, or a shape of named parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Demand {
    /// Everything below, whatever it is.
    Whole,
    /// Only the named parts.
    Shape(Shape),
}

/// The parts of a value read below it. An empty shape is a value whose kind and truth are
/// read and nothing else.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shape {
    keys: BTreeMap<String, Demand>,
    index: Option<Box<Demand>>,
    iter: Option<Box<Demand>>,
}

impl Default for Demand {
    fn default() -> Self {
        Demand::Shape(Shape::default())
    }
}

impl Demand {
    /// The node at `path`, made (as empty shapes) on the way; `None` when a value on the way
    /// is already read whole, so everything below it is too.
    fn at(&mut self, path: &[Seg]) -> Option<&mut Demand> {
        let Some((first, rest)) = path.split_first() else {
            return Some(self);
        };
        let shape = match self {
            Demand::Whole => return None,
            Demand::Shape(s) => s,
        };
        let child = match first {
            Seg::Key(k) => shape.keys.entry(k.clone()).or_default(),
            Seg::Index => shape.index.get_or_insert_with(Default::default),
            Seg::Iter => shape.iter.get_or_insert_with(Default::default),
        };
        child.at(rest)
    }

    /// What `other` reads too.
    pub fn include(&mut self, other: &Demand) {
        *self = merge(self, other);
    }

    /// The value at `path` is looked at (its kind, its truth).
    pub fn touch(&mut self, path: &[Seg]) {
        self.at(path);
    }

    /// The value at `path` is read whole.
    pub fn whole(&mut self, path: &[Seg]) {
        if let Some(d) = self.at(path) {
            *d = Demand::Whole;
        }
    }

    /// The demand on the value at key `k` of an object (`None`: the object is read whole or
    /// iterated, so no part of it can be left out; `Some(None)`: `k` is not read).
    pub fn key(&self, k: &str) -> Option<Option<&Demand>> {
        match self {
            Demand::Whole => None,
            Demand::Shape(s) if s.iter.is_some() || s.index.is_some() => None,
            Demand::Shape(s) => Some(s.keys.get(k)),
        }
    }

    /// Hands `visit` the path of every named key read below the top-level key `root` (keys
    /// from `root`, positions skipped) and answers whether some part of it is read whole, so
    /// that not every key read can be named (tenancy's check that id-like inputs are declared).
    pub fn keys_under(&self, root: &str, visit: &mut dyn FnMut(&[String])) -> bool {
        fn walk(d: &Demand, path: &mut Vec<String>, visit: &mut dyn FnMut(&[String])) -> bool {
            match d {
                Demand::Whole => true,
                Demand::Shape(s) => {
                    let mut opaque = false;
                    for (k, sub) in &s.keys {
                        path.push(k.clone());
                        visit(path);
                        opaque |= walk(sub, path, visit);
                        path.pop();
                    }
                    for sub in [&s.index, &s.iter].into_iter().flatten() {
                        opaque |= walk(sub, path, visit);
                    }
                    opaque
                }
            }
        }
        match self.key(root) {
            None => true,
            Some(None) => false,
            Some(Some(d)) => walk(d, &mut Vec::new(), visit),
        }
    }

    /// The projection of a value this demand is on.
    pub fn projection(&self) -> Projection {
        match self {
            Demand::Whole => Projection::Whole,
            Demand::Shape(s) => {
                let keys_from_iter = s.iter.as_deref();
                let keys = s
                    .keys
                    .iter()
                    .map(|(k, d)| {
                        let merged = match keys_from_iter {
                            Some(i) => merge(d, i),
                            None => d.clone(),
                        };
                        (k.clone(), merged.projection())
                    })
                    .collect();
                let items = match (s.index.as_deref(), s.iter.as_deref()) {
                    (Some(a), Some(b)) => Some(merge(a, b).projection()),
                    (Some(a), None) | (None, Some(a)) => Some(a.projection()),
                    (None, None) => None,
                };
                Projection::Part(Box::new(Part {
                    object_whole: s.index.is_some(),
                    keys,
                    other: keys_from_iter.map(Demand::projection),
                    array_whole: !s.keys.is_empty(),
                    items,
                }))
            }
        }
    }
}

/// Both demands at once.
fn merge(a: &Demand, b: &Demand) -> Demand {
    match (a, b) {
        (Demand::Whole, _) | (_, Demand::Whole) => Demand::Whole,
        (Demand::Shape(x), Demand::Shape(y)) => {
            let mut keys = x.keys.clone();
            for (k, d) in &y.keys {
                let m = match keys.get(k) {
                    Some(e) => merge(e, d),
                    None => d.clone(),
                };
                keys.insert(k.clone(), m);
            }
            let both = |p: &Option<Box<Demand>>, q: &Option<Box<Demand>>| match (p, q) {
                (Some(p), Some(q)) => Some(Box::new(merge(p, q))),
                (Some(p), None) | (None, Some(p)) => Some(p.clone()),
                (None, None) => None,
            };
            Demand::Shape(Shape {
                keys,
                index: both(&x.index, &y.index),
                iter: both(&x.iter, &y.iter),
            })
        }
    }
}

/// How a value is read: whole, or in part ([`Part`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Projection {
    /// Made into values whole.
    Whole,
    /// Only the parts [`Part`] names are made into values.
    Part(Box<Part>),
}

/// What of a value is kept when it is read in part. Scalars are always kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    /// An object is kept whole (it is indexed by number, which jaq answers for objects).
    object_whole: bool,
    /// An object's keys that are kept, and how.
    keys: Vec<(String, Projection)>,
    /// How an object's other keys are kept (`None`: they are left out).
    other: Option<Projection>,
    /// An array is kept whole (a key is looked up in it, which fails naming it).
    array_whole: bool,
    /// How an array's elements are kept (`None`: the array is kept empty).
    items: Option<Projection>,
}

impl Projection {
    /// Parses JSON `text` into the value this projection keeps of it. Malformed JSON is
    /// refused as `serde_json::from_slice` refuses it (the skipped parts are checked too).
    pub fn parse(&self, text: &[u8]) -> serde_json::Result<Value> {
        let mut de = serde_json::Deserializer::from_slice(text);
        let v = self.deserialize(&mut de)?;
        de.end()?;
        Ok(v)
    }
}

impl<'de> DeserializeSeed<'de> for &Projection {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        match self {
            Projection::Whole => serde::Deserialize::deserialize(d),
            Projection::Part(p) => d.deserialize_any(PartVisitor(p)),
        }
    }
}

struct PartVisitor<'p>(&'p Part);

/// An object key, borrowed from the text when it has no escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(KeySeed)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

impl<'de> Visitor<'de> for PartVisitor<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    // Scalars as serde_json's own `Value` makes them.
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let p = self.0;
        let keep = if p.array_whole {
            Some(&Projection::Whole)
        } else {
            p.items.as_ref()
        };
        let mut items = Vec::new();
        match keep {
            Some(each) => {
                while let Some(v) = seq.next_element_seed(each)? {
                    items.push(v);
                }
            }
            None => while seq.next_element::<IgnoredAny>()?.is_some() {},
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let p = self.0;
        let mut out = Map::new();
        while let Some(k) = map.next_key_seed(KeySeed)? {
            let keep = if p.object_whole {
                Some(&Projection::Whole)
            } else {
                p.keys
                    .iter()
                    .find(|(name, _)| *name == *k)
                    .map(|(_, how)| how)
                    .or(p.other.as_ref())
            };
            match keep {
                // The last of a repeated key wins, in the first one's place, as in `Value`.
                Some(how) => {
                    let v = map.next_value_seed(how)?;
                    out.insert(k.into_owned(), v);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(out))
    }
}

/// The demand on each step's answer that a route's context demand gives, by step name:
/// `None` when the steps are read whole or iterated (no answer can be cut).
pub fn step_demands(context: &Demand) -> Option<BTreeMap<String, Projection>> {
    match context.key("steps")? {
        None => Some(BTreeMap::new()),
        Some(Demand::Whole) => None,
        Some(Demand::Shape(s)) if s.index.is_some() || s.iter.is_some() => None,
        Some(Demand::Shape(s)) => Some(
            s.keys
                .iter()
                .map(|(name, d)| (name.clone(), d.projection()))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn key(k: &str) -> Seg {
        Seg::Key(k.into())
    }

    fn parse(d: &Demand, text: &str) -> Value {
        d.projection().parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn only_the_keys_walked_to_are_kept_with_the_shape_around_them() {
        let mut d = Demand::default();
        d.whole(&[key("id")]);
        d.whole(&[key("address"), key("city")]);
        d.touch(&[key("enabled")]);
        let got = parse(
            &d,
            r#"{"id":"c1","name":"N","enabled":{"a":1},"address":{"city":"S","zip":"1"},"n":[1,2]}"#,
        );
        assert_eq!(
            got,
            json!({"id":"c1","enabled":{},"address":{"city":"S"}}),
            "a touched object is kept empty"
        );
    }

    #[test]
    fn arrays_keep_every_element_so_indices_count_the_same() {
        let mut d = Demand::default();
        d.whole(&[key("content"), Seg::Index, key("id")]);
        let got = parse(
            &d,
            r#"{"content":[{"id":1,"x":2},{"id":3,"y":4}],"page":{}}"#,
        );
        assert_eq!(got, json!({"content":[{"id":1},{"id":3}]}));
        // A touched array is kept as an array, empty.
        let mut t = Demand::default();
        t.touch(&[key("content")]);
        assert_eq!(parse(&t, r#"{"content":[1,2]}"#), json!({"content":[]}));
    }

    #[test]
    fn a_key_looked_up_in_an_array_keeps_the_array_whole() {
        // jaq's error names the array: it must be the array the upstream sent.
        let mut d = Demand::default();
        d.whole(&[key("a"), key("b")]);
        assert_eq!(
            parse(&d, r#"{"a":[{"b":1,"c":2}],"z":1}"#),
            json!({"a":[{"b":1,"c":2}]})
        );
    }

    #[test]
    fn an_object_indexed_by_number_or_iterated_keeps_every_key() {
        let mut d = Demand::default();
        d.whole(&[Seg::Index]);
        assert_eq!(parse(&d, r#"{"a":{"x":1}}"#), json!({"a":{"x":1}}));
        let mut it = Demand::default();
        it.whole(&[Seg::Iter, key("x")]);
        assert_eq!(
            parse(&it, r#"{"a":{"x":1,"y":2},"b":{"x":3}}"#),
            json!({"a":{"x":1},"b":{"x":3}})
        );
    }

    #[test]
    fn a_whole_read_above_wins_over_parts_below() {
        let mut d = Demand::default();
        d.whole(&[key("a"), key("x")]);
        d.whole(&[key("a")]);
        d.touch(&[key("a"), key("y")]);
        assert_eq!(
            parse(&d, r#"{"a":{"x":1,"y":2,"z":3}}"#),
            json!({"a":{"x":1,"y":2,"z":3}})
        );
    }

    #[test]
    fn a_repeated_key_is_kept_as_serde_json_keeps_it() {
        let mut d = Demand::default();
        d.whole(&[key("a")]);
        d.whole(&[key("b")]);
        let text = r#"{"a":1,"b":2,"a":3}"#;
        let full: Value = serde_json::from_str(text).unwrap();
        assert_eq!(parse(&d, text), full);
        assert_eq!(
            serde_json::to_string(&parse(&d, text)).unwrap(),
            serde_json::to_string(&full).unwrap(),
            "same order"
        );
    }

    #[test]
    fn malformed_json_is_refused_even_in_a_skipped_part() {
        let mut d = Demand::default();
        d.whole(&[key("a")]);
        for bad in [
            r#"{"a":1,"b":[1,}"#,
            r#"{"a":1} x"#,
            r#"{"a":1,"b":"\x"}"#,
            "",
        ] {
            assert!(d.projection().parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn steps_read_whole_or_iterated_are_not_cut() {
        let mut whole = Demand::default();
        whole.whole(&[key("steps")]);
        assert_eq!(step_demands(&whole), None);
        let mut iter = Demand::default();
        iter.whole(&[key("steps"), Seg::Iter]);
        assert_eq!(step_demands(&iter), None);
        let mut root = Demand::default();
        root.whole(&[]);
        assert_eq!(step_demands(&root), None);
        let mut some = Demand::default();
        some.whole(&[key("steps"), key("company"), key("id")]);
        let got = step_demands(&some).unwrap();
        assert_eq!(got.len(), 1);
        assert!(matches!(got["company"], Projection::Part(_)));
        assert_eq!(step_demands(&Demand::default()), Some(BTreeMap::new()));
    }

    /// Any JSON value (small).
    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            (-1e6f64..1e6).prop_map(|f| json!(f)),
            "[a-c]{0,3}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec(("[a-c]", inner), 0..4)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    /// Any demand over keys a–c.
    fn demand() -> impl Strategy<Value = Demand> {
        let seg = prop_oneof![
            "[a-c]".prop_map(Seg::Key),
            Just(Seg::Index),
            Just(Seg::Iter)
        ];
        prop::collection::vec((prop::collection::vec(seg, 0..4), any::<bool>()), 0..5).prop_map(
            |marks| {
                let mut d = Demand::default();
                for (path, whole) in marks {
                    if whole {
                        d.whole(&path);
                    } else {
                        d.touch(&path);
                    }
                }
                d
            },
        )
    }

    /// Reads `path` of `v` as jq would, `None` where jq fails.
    fn read<'v>(v: &'v Value, path: &[Seg]) -> Option<Vec<&'v Value>> {
        let Some((first, rest)) = path.split_first() else {
            return Some(vec![v]);
        };
        let next: Vec<&Value> = match (first, v) {
            (Seg::Key(_), Value::Null) | (Seg::Index, Value::Null | Value::Object(_)) => {
                vec![&Value::Null]
            }
            (Seg::Key(k), Value::Object(m)) => vec![m.get(k).unwrap_or(&Value::Null)],
            (Seg::Index, Value::Array(a)) => a.first().into_iter().chain(a.last()).collect(),
            (Seg::Iter, Value::Array(a)) => a.iter().collect(),
            (Seg::Iter, Value::Object(m)) => m.values().collect(),
            // A step into a scalar, or a key of a list: the filter's answer is not known.
            (
                Seg::Key(_),
                Value::Bool(_) | Value::Number(_) | Value::String(_) | Value::Array(_),
            )
            | (Seg::Index, Value::Bool(_) | Value::Number(_) | Value::String(_))
            | (Seg::Iter, Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_)) => {
                return None;
            }
        };
        let mut out = Vec::new();
        for n in next {
            out.extend(read(n, rest)?);
        }
        Some(out)
    }

    /// Every path a demand names, and whether it is read whole there.
    fn marks(d: &Demand, at: &mut Vec<Seg>, out: &mut Vec<(Vec<Seg>, bool)>) {
        match d {
            Demand::Whole => out.push((at.clone(), true)),
            Demand::Shape(s) => {
                out.push((at.clone(), false));
                for (k, c) in &s.keys {
                    at.push(Seg::Key(k.clone()));
                    marks(c, at, out);
                    at.pop();
                }
                for (seg, c) in [(Seg::Index, &s.index), (Seg::Iter, &s.iter)] {
                    if let Some(c) = c {
                        at.push(seg);
                        marks(c, at, out);
                        at.pop();
                    }
                }
            }
        }
    }

    fn kind(v: &Value) -> u8 {
        match v {
            Value::Null => 0,
            Value::Bool(b) => 1 + u8::from(*b),
            Value::Number(_) => 3,
            Value::String(_) => 4,
            Value::Array(_) => 5,
            Value::Object(_) => 6,
        }
    }

    proptest! {
        /// Whatever a demand says is read, the projected value answers it as the whole one
        /// does: the same failures, the same kinds where touched, the same values where whole.
        #[test]
        fn a_projection_answers_every_read_it_was_made_for(v in value(), d in demand()) {
            // Compared with serde_json's own parse of the text (floats may not round-trip).
            let text = serde_json::to_string(&v).unwrap();
            let v: Value = serde_json::from_str(&text).unwrap();
            let got = d.projection().parse(text.as_bytes()).unwrap();
            let mut all = Vec::new();
            marks(&d, &mut Vec::new(), &mut all);
            for (path, whole) in all {
                let (a, b) = (read(&v, &path), read(&got, &path));
                match (a, b) {
                    (None, None) => {}
                    (Some(a), Some(b)) => {
                        prop_assert_eq!(a.len(), b.len(), "{:?}", path);
                        for (x, y) in a.iter().zip(&b) {
                            if whole {
                                prop_assert_eq!(*x, *y, "{:?}", path);
                            } else {
                                prop_assert_eq!(kind(x), kind(y), "{:?}", path);
                            }
                        }
                    }
                    (a, b) => prop_assert!(false, "{:?}: {:?} vs {:?}", path, a, b),
                }
            }
        }

        /// A whole demand is exactly serde_json's parse.
        #[test]
        fn a_whole_projection_is_the_plain_parse(v in value()) {
            let text = serde_json::to_string(&v).unwrap();
            let full: Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(Projection::Whole.parse(text.as_bytes()).unwrap(), full);
        }
    }
}
