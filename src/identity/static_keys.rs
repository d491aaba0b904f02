//! API keys declared in the config file (`identity.static_keys`).
//!
//! The file holds only the SHA-256 of each key, so a leaked config does not leak keys. Lookup
//! hashes the presented key once and probes a map: constant work per request whatever the
//! number of keys.

use std::collections::HashMap;
use std::sync::Arc;

use super::{AuthFuture, Authenticate, Credentials, Principal, sha256_hex};
use crate::config::StaticKeyConfig;

/// The `identity.static_keys` provider.
#[derive(Debug, Default)]
pub struct StaticKeys {
    by_hash: HashMap<String, Principal>,
}

impl StaticKeys {
    pub fn new(keys: &[StaticKeyConfig]) -> Self {
        let by_hash = keys
            .iter()
            .map(|k| {
                let hash = k.sha256.to_ascii_lowercase();
                let principal = Principal {
                    user: Arc::from(k.user.as_str()),
                    company: Arc::from(k.company.as_str()),
                    roles: Arc::from(k.roles.clone()),
                    key_id: Some(Arc::from(&hash[..12])),
                };
                (hash, principal)
            })
            .collect();
        Self { by_hash }
    }
}

impl Authenticate for StaticKeys {
    fn authenticate<'a>(&'a self, credentials: &'a Credentials) -> AuthFuture<'a> {
        let found = match credentials {
            Credentials::ApiKey(key) => self.by_hash.get(&sha256_hex(key)).cloned(),
            Credentials::Basic { .. } => None,
        };
        Box::pin(std::future::ready(Ok(found)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let basic = Credentials::Basic {
            user: "alice".into(),
            password: "demo-key".into(),
        };
        assert!(keys.authenticate(&basic).await.unwrap().is_none());
    }
}
