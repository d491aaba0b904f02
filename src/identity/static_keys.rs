//! API keys declared in the config file (`identity.static_keys`).
//!
//! The file holds only the SHA-256 of each key, so a leaked config does not leak keys. Lookup
//! hashes the presented key once and probes a map: constant work per request whatever the
//! number of keys.

use std::collections::HashMap;
use std::sync::Arc;

use super::{AuthFuture, Authenticate, Credentials, Principal};
use crate::config::StaticKeyConfig;

/// The `identity.static_keys` provider.
#[derive(Debug, Default)]
pub struct StaticKeys {
    /// By the key's SHA-256 digest (raw bytes: no hex text made per request).
    by_hash: HashMap<[u8; 32], Principal>,
}

impl StaticKeys {
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
}

impl Authenticate for StaticKeys {
    fn authenticate<'a>(&'a self, credentials: &'a Credentials) -> AuthFuture<'a> {
        let found = match credentials {
            Credentials::ApiKey(key) => {
                use sha2::Digest;
                let digest: [u8; 32] = sha2::Sha256::digest(key.as_bytes()).into();
                self.by_hash.get(&digest).cloned()
            }
            Credentials::Basic { .. } => None,
        };
        Box::pin(std::future::ready(Ok(found)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::sha256_hex;

    #[tokio::test]
    async fn finds_a_declared_key_by_its_hash_only() {
        let keys = StaticKeys::new(&[StaticKeyConfig {
            sha256: sha256_hex("demo-key"),
            user: "alice".into(),
            company: "acme".into(),
            roles: vec!["USER".into()],
        }]);
        let p = keys
            .authenticate(&Credentials::ApiKey("demo-key".into()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&*p.user, "alice");
        assert_eq!(&*p.company, "acme");
        assert!(
            keys.authenticate(&Credentials::ApiKey("other".into()))
                .await
                .unwrap()
                .is_none()
        );
        // Upper-case hex in the config is the same digest.
        let upper = StaticKeys::new(&[StaticKeyConfig {
            sha256: sha256_hex("demo-key").to_ascii_uppercase(),
            user: "bob".into(),
            company: "acme".into(),
            roles: vec![],
        }]);
        let p = upper
            .authenticate(&Credentials::ApiKey("demo-key".into()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&*p.user, "bob");
        assert_eq!(p.key_id.as_deref(), Some(&sha256_hex("demo-key")[..12]));
        let basic = Credentials::Basic {
            user: "alice".into(),
            password: "demo-key".into(),
        };
        assert!(keys.authenticate(&basic).await.unwrap().is_none());
    }
}
