//! The message on the channel: `{"node": "<sender id>", "inv": {"kind": …, …}}`, JSON.
//!
//! Decoding never fails the subscriber: a message from this node is skipped, a message in
//! the right envelope whose invalidation this build cannot read (a newer node's kind or
//! field) becomes [`Invalidation::Everything`] (fail closed: something changed that this
//! node cannot place), and anything else on the channel is logged and ignored.

use serde::{Deserialize, Serialize};

use super::Invalidation;

#[derive(Serialize)]
struct Outgoing<'a> {
    node: &'a str,
    inv: &'a Invalidation,
}

#[derive(Deserialize)]
struct Incoming {
    node: String,
    inv: serde_json::Value,
}

/// What a message read off the channel asks of this node.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Decoded {
    /// Another node's invalidation, to apply.
    Theirs(Invalidation),
    /// This node's own, already applied when it was sent.
    Mine,
    /// Not a message of ours: why, for the log.
    Malformed(String),
}

/// `inv` as sent by `node`.
pub(super) fn encode(node: &str, inv: &Invalidation) -> String {
    // Serializing a tree of strings into a string cannot fail.
    serde_json::to_string(&Outgoing { node, inv }).unwrap_or_default()
}

/// A message received by the node `me`.
pub(super) fn decode(payload: &[u8], me: &str) -> Decoded {
    let msg: Incoming = match serde_json::from_slice(payload) {
        Ok(m) => m,
        Err(e) => return Decoded::Malformed(e.to_string()),
    };
    if msg.node == me {
        return Decoded::Mine;
    }
    match serde_json::from_value(msg.inv) {
        Ok(inv) => Decoded::Theirs(inv),
        Err(e) => {
            tracing::warn!(from = %msg.node, error = %e,
                "an invalidation this node cannot read: dropping all its caches");
            Decoded::Theirs(Invalidation::Everything)
        }
    }
}

/// `Vec<Arc<str>>` as a list of strings (serde's `rc` feature is not on).
pub(super) mod arcs {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(v: &[Arc<str>], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|a| &**a))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Arc<str>>, D::Error> {
        Ok(Vec::<String>::deserialize(d)?
            .into_iter()
            .map(Arc::from)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn every_kind() -> Vec<Invalidation> {
        vec![
            Invalidation::Reads {
                routes: vec![Arc::from("appdirect-v1:companies.get")],
                values: vec!["c-1".into(), "ü \"quoted\"".into()],
            },
            Invalidation::Purge { route: None },
            Invalidation::Purge {
                route: Some("companies.get".into()),
            },
            Invalidation::Reach {
                ids: vec![Arc::from("c-1"), Arc::from("c-2")],
            },
            Invalidation::ReachAll,
            Invalidation::Credentials,
            Invalidation::Quotas {
                user: "alice".into(),
            },
            Invalidation::Everything,
        ]
    }

    #[test]
    fn every_kind_survives_the_round_trip() {
        for inv in every_kind() {
            let text = encode("node-a", &inv);
            assert_eq!(
                decode(text.as_bytes(), "node-b"),
                Decoded::Theirs(inv.clone()),
                "{text}"
            );
        }
    }

    #[test]
    fn the_wire_form_is_tagged_json() {
        let text = encode("n1", &Invalidation::Quotas { user: "bob".into() });
        assert_eq!(
            text,
            r#"{"node":"n1","inv":{"kind":"quotas","user":"bob"}}"#
        );
    }

    #[test]
    fn a_node_skips_its_own_messages() {
        for inv in every_kind() {
            assert_eq!(decode(encode("me", &inv).as_bytes(), "me"), Decoded::Mine);
        }
    }

    #[test]
    fn what_is_not_our_envelope_is_ignored() {
        for junk in [
            &b""[..],
            b"hello",
            b"{}",
            b"[1,2]",
            b"{\"node\":1,\"inv\":{}}",
            b"{\"inv\":{\"kind\":\"credentials\"}}",
            b"\xff\xfe{",
        ] {
            assert!(
                matches!(decode(junk, "me"), Decoded::Malformed(_)),
                "{}",
                String::from_utf8_lossy(junk)
            );
        }
    }

    #[test]
    fn an_unreadable_invalidation_in_our_envelope_drops_everything() {
        for inv in [
            r#"{"kind":"tomorrow"}"#,
            r#"{"kind":"quotas"}"#,
            r#"{"kind":"quotas","user":"a","extra":1}"#,
            r#"{"kind":"reads","routes":"x","values":[]}"#,
            r#"7"#,
        ] {
            let msg = format!(r#"{{"node":"other","inv":{inv}}}"#);
            assert_eq!(
                decode(msg.as_bytes(), "me"),
                Decoded::Theirs(Invalidation::Everything),
                "{msg}"
            );
        }
    }
}
