//! Generators shared by property tests in several modules.

use proptest::prelude::*;
use serde_json::{Value, json};

/// JSON documents of any shape: integers across `i64`, strings with escapes and non-ASCII
/// text, objects of up to five keys, nested four deep.
pub(crate) fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[^\u{0}-\u{8}]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 40, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
