//! Users and API keys of the store, as an [`Authenticate`] provider.
//!
//! API keys are looked up by the SHA-256 of the secret (the store never holds the secret);
//! Basic credentials are checked against the user's argon2 hash. Both answers are cached
//! for a few seconds: argon2 is deliberately slow and a key lookup is a disk read, and
//! neither belongs on every proxied request. The admin API clears the cache on every change
//! to users, keys or companies, so a revocation takes effect at once on this node.

use std::sync::Arc;
use std::time::Duration;

// The synchronous cache: a cached check is answered inside the authentication layer's
// `call` (see `Authenticate::known`), which cannot wait on the future cache's locks.
use moka::sync::Cache;

use super::passwords::verify_password;
use super::{AuthError, AuthFuture, Authenticate, Credentials, Principal, sha256_hex};
use crate::store::{Store, User};

/// How long a successful check is reused.
const CACHE_TTL: Duration = Duration::from_secs(5);

/// Checks kept at most: the recently active callers. A cached check costs about 450 bytes
/// (moka's node and timers are most of it), so this bounds the cache near 4 MiB however
/// many users there are; callers past it are checked against the store (an indexed read,
/// on the order of 10 µs). With 100,000 users the cache was 56 MiB.
pub const CACHE_ENTRIES: u64 = 8_192;

/// A credential's SHA-256: the cache never holds a secret, and 32 bytes in place are
/// cheaper than its hex string behind a pointer.
type CacheKey = [u8; 32];

/// The store-backed provider.
#[derive(Clone)]
pub struct StoreAuth {
    store: Arc<dyn Store>,
    /// `sha256(kind, user, secret)` → the principal it authenticated.
    cache: Cache<CacheKey, Principal, foldhash::fast::RandomState>,
}

impl std::fmt::Debug for StoreAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreAuth").finish_non_exhaustive()
    }
}

fn principal(user: &User, key_id: Option<&str>) -> Principal {
    Principal {
        user: Arc::from(user.username.as_str()),
        company: Arc::from(user.company_key.as_str()),
        roles: Arc::from(user.roles.clone()),
        key_id: key_id.map(Arc::from),
    }
}

fn now_ms() -> i64 {
    crate::clock::system_ms()
}

impl StoreAuth {
    /// A provider checking keys and passwords against `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            cache: Cache::builder()
                .max_capacity(CACHE_ENTRIES)
                .time_to_live(CACHE_TTL)
                .build_with_hasher(foldhash::fast::RandomState::default()),
        }
    }

    /// Forgets every cached check (called after any change to users, keys or companies).
    pub fn invalidate(&self) {
        self.cache.invalidate_all();
    }

    async fn check(&self, credentials: &Credentials) -> Result<Option<Principal>, AuthError> {
        match credentials {
            Credentials::ApiKey(secret) => {
                let found = self
                    .store
                    .find_key(sha256_hex(secret))
                    .await
                    .map_err(|_| AuthError::Unavailable)?;
                let Some(m) = found else { return Ok(None) };
                if m.key.revoked || m.key.expires_ms.is_some_and(|e| e <= now_ms()) {
                    return Err(AuthError::Invalid);
                }
                if !m.user.enabled || !m.company_enabled {
                    return Err(AuthError::Disabled);
                }
                Ok(Some(principal(&m.user, Some(&m.key.id))))
            }
            Credentials::Basic { user, password } => {
                let found = self
                    .store
                    .user_secret(user.clone())
                    .await
                    .map_err(|_| AuthError::Unavailable)?;
                let Some(s) = found else { return Ok(None) };
                let Some(hash) = s.password_hash else {
                    return Err(AuthError::Invalid);
                };
                let password = password.clone();
                let ok = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
                    .await
                    .map_err(|_| AuthError::Unavailable)?;
                if !ok {
                    return Err(AuthError::Invalid);
                }
                if !s.user.enabled || !s.company_enabled {
                    return Err(AuthError::Disabled);
                }
                Ok(Some(principal(&s.user, None)))
            }
        }
    }
}

fn cache_key(credentials: &Credentials) -> CacheKey {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    match credentials {
        Credentials::ApiKey(k) => {
            h.update(b"key\0");
            h.update(k.as_bytes());
        }
        Credentials::Basic { user, password } => {
            // Length-prefixed: no (user, password) pair reads as another.
            h.update(b"basic\0");
            h.update((user.len() as u64).to_le_bytes());
            h.update(user.as_bytes());
            h.update(password.as_bytes());
        }
    }
    h.finalize().into()
}

impl Authenticate for StoreAuth {
    fn authenticate<'a>(&'a self, credentials: &'a Credentials) -> AuthFuture<'a> {
        Box::pin(async move {
            let key = cache_key(credentials);
            if let Some(p) = self.cache.get(&key) {
                return Ok(Some(p));
            }
            let found = self.check(credentials).await?;
            if let Some(p) = &found {
                self.cache.insert(key, p.clone());
            }
            Ok(found)
        })
    }

    fn known(&self, credentials: &Credentials) -> Option<Result<Option<Principal>, AuthError>> {
        self.cache.get(&cache_key(credentials)).map(|p| Ok(Some(p)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    #[tokio::test]
    async fn the_cache_holds_at_most_its_bound_however_many_callers() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("s.db")).unwrap());
        let auth = StoreAuth::new(store);
        for i in 0..CACHE_ENTRIES * 2 {
            let key = cache_key(&Credentials::ApiKey(format!("key-{i}")));
            auth.cache.insert(key, Principal::anonymous());
        }
        auth.cache.run_pending_tasks();
        let held = auth.cache.entry_count();
        assert!(held <= CACHE_ENTRIES, "{held} entries");
        assert!(held > 0);
    }

    #[tokio::test]
    async fn a_chain_answers_at_once_only_what_it_already_knows() {
        use crate::config::StaticKeyConfig;
        use crate::identity::{AuthChain, StaticKeys};
        use crate::store::{ApiKeyInfo, Company};
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("s.db")).unwrap());
        store
            .create_company(Company {
                key: "acme".into(),
                detail: None,
                enabled: true,
            })
            .await
            .unwrap();
        store
            .create_user(
                User {
                    username: "ann".into(),
                    name: None,
                    email: None,
                    phone: None,
                    company_key: "acme".into(),
                    enabled: true,
                    roles: vec!["USER".into()],
                    timezone: 0,
                },
                None,
            )
            .await
            .unwrap();
        let info = ApiKeyInfo {
            id: "k1".into(),
            username: "ann".into(),
            prefix: "rk_sto".into(),
            created_ms: 1,
            expires_ms: None,
            revoked: false,
        };
        store
            .create_key(info, sha256_hex("rk_stored"))
            .await
            .unwrap();
        let declared = Arc::new(StaticKeys::new(&[StaticKeyConfig {
            sha256: sha256_hex("rk_declared"),
            user: "sam".into(),
            company: "acme".into(),
            roles: vec!["PARTNER".into()],
        }]));
        let auth = StoreAuth::new(store.clone());
        let chain = AuthChain::new(vec![declared.clone(), Arc::new(auth.clone())]);
        let key = |k: &str| Credentials::ApiKey(k.into());

        let sam = chain.known(&key("rk_declared")).unwrap().unwrap();
        assert_eq!(&*sam.user, "sam");
        // A stored key is looked up once, then known until the admin API changes something.
        assert_eq!(chain.known(&key("rk_stored")), None);
        let ann = chain.authenticate(&key("rk_stored")).await.unwrap();
        assert_eq!(&*ann.user, "ann");
        assert_eq!(chain.known(&key("rk_stored")), Some(Ok(ann)));
        auth.invalidate();
        assert_eq!(chain.known(&key("rk_stored")), None);
        // An unknown key is never known at once while the store may hold it…
        assert_eq!(chain.known(&key("rk_nobody")), None);
        assert_eq!(
            chain.authenticate(&key("rk_nobody")).await,
            Err(AuthError::Invalid)
        );
        assert_eq!(chain.known(&key("rk_nobody")), None);
        // …and refused at once when only declared keys are asked.
        let only_declared = AuthChain::new(vec![declared]);
        assert_eq!(
            only_declared.known(&key("rk_nobody")),
            Some(Err(AuthError::Invalid))
        );
    }

    #[test]
    fn cache_keys_tell_kinds_and_credential_splits_apart() {
        let basic = |u: &str, p: &str| {
            cache_key(&Credentials::Basic {
                user: u.into(),
                password: p.into(),
            })
        };
        assert_ne!(basic("ab", "c"), basic("a", "bc"));
        assert_ne!(basic("a\0", "b"), basic("a", "\0b"));
        assert_ne!(cache_key(&Credentials::ApiKey("x".into())), basic("x", ""));
        assert_eq!(basic("a", "b"), basic("a", "b"));
    }
}
