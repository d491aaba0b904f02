//! The apply path without Redis: each kind drops what it names and nothing else, a message
//! off the channel is applied only when it is another node's invalidation, and the bus
//! starts (or says why not) from its config.

use std::sync::Arc;

use super::tasks::receive;
use super::wire::encode;
use super::*;
use crate::identity::{Authenticate, Credentials};
use crate::store::{SqliteStore, Store};

struct Node {
    _dir: tempfile::TempDir,
    caches: Caches,
    auth: StoreAuth,
    quotas: QuotaBook,
}

/// A node's credential and quota caches over an empty store.
fn node() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("s.db")).unwrap());
    let auth = StoreAuth::new(store.clone());
    let quotas = QuotaBook::new(
        store.clone(),
        store,
        Arc::new(crate::limits::quota::LocalQuotas::default()),
    );
    Node {
        _dir: dir,
        caches: Caches {
            reads: None,
            reaches: Arc::new([]),
            credentials: Some(auth.clone()),
            quotas: Some(quotas.clone()),
        },
        auth,
        quotas,
    }
}

impl Node {
    /// Fills both caches: an unknown key remembered as refused, two users without quotas.
    async fn warm(&self) {
        assert!(
            self.auth
                .authenticate(&key())
                .await
                .is_ok_and(|p| p.is_none())
        );
        for user in ["ann", "bob"] {
            self.quotas.of(user).await.unwrap();
        }
        assert!(self.credentials_cached());
        assert!(self.quotas_cached("ann") && self.quotas_cached("bob"));
    }

    fn credentials_cached(&self) -> bool {
        self.auth.known(&key()).is_some()
    }

    fn quotas_cached(&self, user: &str) -> bool {
        self.quotas.cached(user).is_some()
    }
}

fn key() -> Credentials {
    Credentials::ApiKey("rk_nobody".into())
}

#[tokio::test]
async fn credentials_drop_the_remembered_checks_only() {
    let n = node();
    n.warm().await;
    n.caches.apply(&Invalidation::Credentials);
    assert!(!n.credentials_cached());
    assert!(n.quotas_cached("ann") && n.quotas_cached("bob"));
}

#[tokio::test]
async fn quotas_drop_that_user_only() {
    let n = node();
    n.warm().await;
    n.caches.apply(&Invalidation::Quotas { user: "ann".into() });
    assert!(!n.quotas_cached("ann"));
    assert!(n.quotas_cached("bob"));
    assert!(n.credentials_cached());
}

#[tokio::test]
async fn everything_drops_every_cache() {
    let n = node();
    n.warm().await;
    n.caches.apply(&Invalidation::Everything);
    assert!(!n.credentials_cached());
    assert!(!n.quotas_cached("ann") && !n.quotas_cached("bob"));
}

#[tokio::test]
async fn reads_and_reaches_without_those_caches_touch_nothing_else() {
    let n = node();
    n.warm().await;
    for inv in [
        Invalidation::Reads {
            routes: vec![Arc::from("p:r")],
            values: vec!["1".into()],
        },
        Invalidation::Purge { route: None },
        Invalidation::Reach {
            ids: vec![Arc::from("c")],
        },
        Invalidation::ReachAll,
    ] {
        n.caches.apply(&inv);
    }
    assert!(n.credentials_cached());
    assert!(n.quotas_cached("ann"));
}

#[tokio::test]
async fn a_received_message_is_applied_only_when_another_node_sent_it() {
    let n = node();
    n.warm().await;
    // Its own: already applied when sent.
    receive(
        encode("me", &Invalidation::Everything).as_bytes(),
        "me",
        &n.caches,
    );
    // Not an invalidation: logged and ignored, never a panic.
    for junk in [&b"\x00\xff"[..], b"{\"node\":\"x\"}", b"null"] {
        receive(junk, "me", &n.caches);
    }
    assert!(n.credentials_cached() && n.quotas_cached("ann"));
    receive(
        encode("other", &Invalidation::Quotas { user: "bob".into() }).as_bytes(),
        "me",
        &n.caches,
    );
    assert!(!n.quotas_cached("bob"));
    assert!(n.credentials_cached() && n.quotas_cached("ann"));
    // A peer's invalidation this build cannot read: everything goes.
    receive(
        br#"{"node":"newer","inv":{"kind":"sessions","user":"ann"}}"#,
        "me",
        &n.caches,
    );
    assert!(!n.credentials_cached() && !n.quotas_cached("ann"));
}

#[tokio::test]
async fn a_local_invalidator_applies_at_once_and_reports_local() {
    let n = node();
    n.warm().await;
    let bus = Invalidator::start(n.caches.clone(), &ClusterConfig::default()).unwrap();
    assert_eq!(bus.state(), BusState::Local);
    bus.apply(Invalidation::Credentials);
    assert!(!n.credentials_cached());
}

#[test]
fn cluster_mode_needs_a_runtime_and_a_usable_url() {
    let cfg = ClusterConfig {
        redis_url: Some("redis://127.0.0.1:1/0".into()),
        ..ClusterConfig::default()
    };
    assert!(matches!(
        Invalidator::start(Caches::default(), &cfg),
        Err(BusError::NoRuntime(_))
    ));
    let bad = ClusterConfig {
        redis_url: Some("redis://:secret@[::1/0".into()),
        ..ClusterConfig::default()
    };
    let e = Invalidator::start(Caches::default(), &bad).unwrap_err();
    assert!(matches!(e, BusError::Url { .. }), "{e}");
    assert!(!e.to_string().contains("secret"), "{e}");
}

#[tokio::test]
async fn with_redis_down_the_node_starts_reconnecting_and_applies_locally() {
    // Nothing listens on port 1: the tasks retry in the background.
    let cfg = ClusterConfig {
        redis_url: Some("redis://127.0.0.1:1/0".into()),
        ..ClusterConfig::default()
    };
    let n = node();
    n.warm().await;
    let bus = Invalidator::start(n.caches.clone(), &cfg).unwrap();
    assert!(matches!(bus.state(), BusState::Reconnecting { .. }));
    bus.apply(Invalidation::Quotas { user: "ann".into() });
    assert!(!n.quotas_cached("ann"));
    assert!(n.quotas_cached("bob"));
}
