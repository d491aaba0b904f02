//! API keys declared in the config file (`identity.static_keys`).
//!
//! The file holds only the SHA-256 of each key, so a leaked config does not leak keys. Lookup
//! hashes the presented key once and probes a map: constant work per request whatever the
//! number of keys.

use std::collections::HashMap;
use std::sync::Arc;

use super::{AuthError, AuthFuture, Authenticate, Credentials, Principal, sha256};
use crate::config::StaticKeyConfig;

/// The `identity.static_keys` provider.
#[derive(Debug, Default)]
pub struct StaticKeys {
    /// By the key's SHA-256 digest (raw bytes: no hex text made per request). A presented
    /// key reaches the map only as its digest, which no caller can steer into collisions:
    /// a fast seeded hash is enough.
    by_hash: HashMap<[u8; 32], Principal, foldhash::fast::RandomState>,
}

impl StaticKeys {
    /// A provider for the keys of `[[identity.static_keys]]`.
    pub fn new(keys: &[StaticKeyConfig]) -> Self {
        let by_hash = keys
            .iter()
            .filter_map(|k| {
                let hash = k.sha256.to_ascii_lowercase();
                // A digest that is not 64 hex digits matches no key (as its text never did).
                let digest = <[u8; 32]>::try_from(hex::decode(&hash).ok()?).ok()?;
                let principal = Principal {
                    user: Arc::from(k.user.as_str()),
                    company: Arc::from(k.company.as_str()),
                    roles: Arc::from(k.roles.clone()),
                    key_id: Some(Arc::from(&hash[..12])),
                };
                Some((digest, principal))
            })
            .collect();
        Self { by_hash }
    }

    fn find(&self, credentials: &Credentials) -> Option<Principal> {
        match credentials {
            Credentials::ApiKey(key) => self.by_hash.get(&sha256(key)).cloned(),
            Credentials::Basic { .. } => None,
        }
    }
}

impl Authenticate for StaticKeys {
    fn authenticate<'a>(&'a self, credentials: &'a Credentials) -> AuthFuture<'a> {
        Box::pin(std::future::ready(Ok(self.find(credentials))))
    }

    fn known(&self, credentials: &Credentials) -> Option<Result<Option<Principal>, AuthError>> {
        Some(Ok(self.find(credentials)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::sha256_hex;

    /// The principal `keys` finds for `credentials`, if any.
    async fn who(keys: &StaticKeys, credentials: Credentials) -> Option<Principal> {
        keys.authenticate(&credentials).await.unwrap()
    }

    fn declared(sha256: String, user: &str) -> StaticKeys {
        StaticKeys::new(&[StaticKeyConfig {
            sha256,
            user: user.into(),
            company: "acme".into(),
            roles: vec!["USER".into()],
        }])
    }

    #[tokio::test]
    async fn finds_a_declared_key_by_its_hash_only() {
        let keys = declared(sha256_hex("demo-key"), "alice");
        let p = who(&keys, Credentials::ApiKey("demo-key".into()))
            .await
            .unwrap();
        assert_eq!(&*p.user, "alice");
        assert_eq!(&*p.company, "acme");
        assert_eq!(p.key_id.as_deref(), Some(&sha256_hex("demo-key")[..12]));
        assert!(
            who(&keys, Credentials::ApiKey("other".into()))
                .await
                .is_none()
        );
        // Upper-case hex in the config is the same digest; a digest that is not hex is none.
        let upper = declared(sha256_hex("demo-key").to_ascii_uppercase(), "bob");
        let p = who(&upper, Credentials::ApiKey("demo-key".into()))
            .await
            .unwrap();
        assert_eq!(&*p.user, "bob");
        let garbled = declared("zz".repeat(32), "eve");
        assert!(
            who(&garbled, Credentials::ApiKey("demo-key".into()))
                .await
                .is_none()
        );
        let basic = Credentials::Basic {
            user: "alice".into(),
            password: "demo-key".into(),
        };
        assert!(who(&keys, basic).await.is_none());
    }
}
