//! Users and API keys of the store, as an [`Authenticate`] provider.
//!
//! API keys are looked up by the SHA-256 of the secret (the store never holds the secret);
//! Basic credentials are checked against the user's argon2 hash. Both answers are cached
//! for a few seconds: argon2 is deliberately slow and a key lookup is a disk read, and
//! neither belongs on every proxied request. The admin API clears the cache on every change
//! to users, keys or companies, so a revocation takes effect at once on this node (and, in
//! cluster mode, within a second on the others: `cluster::bus`).
//!
//! A successful check is kept longer than it is reused ([`STALE_TTL`]): when the store cannot
//! be asked (PostgreSQL down, or not answering within its timeout), a caller it accepted in
//! that time is still accepted, so an outage of the database does not refuse the callers the
//! node already knows (their requests need nothing else from it: audit rows are spilled).
//!
//! Failures are cached too (`identity.negative_ttl`, apart from the successes so a flood of
//! wrong guesses cannot evict the callers who got it right): the same wrong password or
//! unknown key again is answered from memory. What a check costs is bounded: lookups and
//! hashes each pass a [`Gate`] (so many at once, a short bounded wait, then 503), the hash
//! runs on the blocking pool only while it holds a permit, and an unknown user is checked
//! against a dummy hash, so it costs what a known one costs.

use std::sync::Arc;
use std::time::Duration;

// The synchronous cache: a cached check is answered inside the authentication layer's
// `call` (see `Authenticate::known`), which cannot wait on the future cache's locks.
use moka::sync::Cache;

use super::gate::Gate;
use super::limits::AuthSettings;
use super::passwords::{dummy_hash, verify_password};
use super::{AuthError, AuthFuture, Authenticate, Credentials, Principal, sha256_hex};
use crate::metrics::AuthWork;
use crate::store::{self, User};

/// How long a successful check is reused.
const CACHE_TTL: Duration = Duration::from_secs(5);

/// How long a successful check still answers when the store cannot be asked. The admin API
/// clears it with the rest (a revocation while the store is up takes effect as before).
const STALE_TTL: Duration = Duration::from_secs(60);

/// A successful check and when it was made (fresh for [`CACHE_TTL`], kept for [`STALE_TTL`]).
#[derive(Clone)]
struct Checked {
    principal: Principal,
    at: std::time::Instant,
}

/// Checks kept at most: the recently active callers. A cached check costs about 450 bytes
/// (moka's node and timers are most of it), so this bounds the cache near 4 MiB however
/// many users there are; callers past it are checked against the store (an indexed read,
/// on the order of 10 µs). With 100,000 users the cache was 56 MiB.
pub const CACHE_ENTRIES: u64 = 8_192;

/// Failed checks kept at most (their own cache, of the same bound and cost).
pub const NEGATIVE_ENTRIES: u64 = 8_192;

/// A credential's SHA-256: the cache never holds a secret, and 32 bytes in place are
/// cheaper than its hex string behind a pointer.
type CacheKey = [u8; 32];

/// A failed check as remembered: `None` when the credentials are not the store's (an
/// unknown key or user: the next provider would be asked), else why they were refused.
type Failed = Option<AuthError>;

/// The store-backed provider.
#[derive(Clone)]
pub struct StoreAuth {
    store: Arc<dyn store::Credentials>,
    /// `sha256(kind, user, secret)` → the principal it authenticated, and when.
    cache: Cache<CacheKey, Checked, foldhash::fast::RandomState>,
    /// `sha256(kind, user, secret)` → why it failed, for `identity.negative_ttl`.
    failed: Cache<CacheKey, Failed, foldhash::fast::RandomState>,
    /// Password hashes at once.
    hashing: Gate,
    /// Store lookups at once.
    lookups: Gate,
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
    /// A provider checking keys and passwords against `store`, with the default bounds.
    pub fn new(store: Arc<dyn store::Credentials>) -> Self {
        Self::with_settings(store, &AuthSettings::default())
    }

    /// A provider checking keys and passwords against `store` within `settings`' bounds.
    pub fn with_settings(store: Arc<dyn store::Credentials>, settings: &AuthSettings) -> Self {
        Self {
            store,
            cache: Cache::builder()
                .max_capacity(CACHE_ENTRIES)
                .time_to_live(STALE_TTL)
                .build_with_hasher(foldhash::fast::RandomState::default()),
            failed: Cache::builder()
                .max_capacity(NEGATIVE_ENTRIES)
                .time_to_live(settings.negative_ttl)
                .build_with_hasher(foldhash::fast::RandomState::default()),
            hashing: Gate::new(AuthWork::Hashing, settings.hashing),
            lookups: Gate::new(AuthWork::Lookups, settings.lookups),
        }
    }

    /// Forgets every cached check, failures included (called after any change to users,
    /// keys or companies: a key just made or a password just reset works at once).
    pub fn invalidate(&self) {
        self.cache.invalidate_all();
        self.failed.invalidate_all();
    }

    async fn check(&self, credentials: &Credentials) -> Result<Option<Principal>, AuthError> {
        match credentials {
            Credentials::ApiKey(secret) => {
                let found = {
                    let _turn = self.lookups.enter().await?;
                    self.store
                        .find_key(sha256_hex(secret))
                        .await
                        .map_err(|_| AuthError::Unavailable)?
                };
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
                let found = {
                    let _turn = self.lookups.enter().await?;
                    self.store
                        .user_secret(user.clone())
                        .await
                        .map_err(|_| AuthError::Unavailable)?
                };
                let hash = found.as_ref().and_then(|s| s.password_hash.clone());
                // The permit goes with the hash onto the blocking pool and is freed when the
                // hash is done, not when this request is (a client that hangs up does not
                // free a core its hash still uses).
                let permit = self.hashing.enter().await?;
                let password = password.clone();
                let ok = tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    match hash {
                        Some(hash) => verify_password(&password, &hash),
                        None => {
                            // The same work as a real check, and never a match.
                            let _ = verify_password(&password, dummy_hash());
                            false
                        }
                    }
                })
                .await
                .map_err(|_| AuthError::Unavailable)?;
                let Some(s) = found else { return Ok(None) };
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

impl StoreAuth {
    /// The cached answer for the credentials of `key`, success or failure.
    fn cached(&self, key: &CacheKey) -> Option<Result<Option<Principal>, AuthError>> {
        if let Some(c) = self.cache.get(key)
            && crate::clock::real_now().saturating_duration_since(c.at) < CACHE_TTL
        {
            return Some(Ok(Some(c.principal)));
        }
        self.failed.get(key).map(|f| f.map_or(Ok(None), Err))
    }
}

impl Authenticate for StoreAuth {
    fn authenticate<'a>(&'a self, credentials: &'a Credentials) -> AuthFuture<'a> {
        Box::pin(async move {
            let key = cache_key(credentials);
            if let Some(answer) = self.cached(&key) {
                return answer;
            }
            let found = self.check(credentials).await;
            // The store cannot be asked: what it accepted within STALE_TTL still stands.
            if matches!(found, Err(AuthError::Unavailable))
                && let Some(c) = self.cache.get(&key)
            {
                return Ok(Some(c.principal));
            }
            match &found {
                Ok(Some(p)) => self.cache.insert(
                    key,
                    Checked {
                        principal: p.clone(),
                        at: crate::clock::real_now(),
                    },
                ),
                Ok(None) => self.failed.insert(key, None),
                Err(e) if e.is_failure() => self.failed.insert(key, Some(e.clone())),
                // No room, or no store: the next attempt checks again.
                Err(_) => {}
            }
            found
        })
    }

    fn known(&self, credentials: &Credentials) -> Option<Result<Option<Principal>, AuthError>> {
        self.cached(&cache_key(credentials))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{SqliteStore, Store};

    #[tokio::test]
    async fn the_cache_holds_at_most_its_bound_however_many_callers() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("s.db")).unwrap());
        let auth = StoreAuth::new(store);
        for i in 0..CACHE_ENTRIES * 2 {
            let key = cache_key(&Credentials::ApiKey(format!("key-{i}")));
            auth.cache.insert(
                key,
                Checked {
                    principal: Principal::anonymous(),
                    at: crate::clock::real_now(),
                },
            );
        }
        auth.cache.run_pending_tasks();
        let held = auth.cache.entry_count();
        assert!(held <= CACHE_ENTRIES, "{held} entries");
        assert!(held > 0);
    }

    #[tokio::test]
    async fn a_known_caller_is_still_accepted_while_the_store_cannot_be_asked() {
        use crate::store::{ApiKeyInfo, Company};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
        let company = Company::fixture("acme");
        store.create_company(company).await.unwrap();
        let ann = User::fixture("ann", "acme");
        store.create_user(ann, None).await.unwrap();
        let info = ApiKeyInfo {
            id: "k1".into(),
            username: "ann".into(),
            prefix: "rk_kno".into(),
            created_ms: 1,
            expires_ms: None,
            revoked: false,
        };
        store
            .create_key(info, sha256_hex("rk_known"))
            .await
            .unwrap();
        let auth = StoreAuth::new(store);
        let known = Credentials::ApiKey("rk_known".into());
        assert_eq!(
            &*auth.authenticate(&known).await.unwrap().unwrap().user,
            "ann"
        );
        // The store can no longer be asked, and the check is past its 5 s of reuse.
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch("DROP TABLE api_keys")
            .unwrap();
        let key = cache_key(&known);
        let mut checked = auth.cache.get(&key).unwrap();
        checked.at = checked.at.checked_sub(CACHE_TTL * 2).unwrap();
        auth.cache.insert(key, checked);
        assert_eq!(auth.known(&known), None, "no longer fresh");
        let still = auth.authenticate(&known).await.unwrap().unwrap();
        assert_eq!(&*still.user, "ann", "accepted from the stale check");
        // A caller never checked cannot be, and is not refused as if its key were wrong.
        let other = Credentials::ApiKey("rk_other".into());
        assert_eq!(
            auth.authenticate(&other).await.map(|p| p.is_some()),
            Err(AuthError::Unavailable)
        );
        // What the admin API clears is gone, stale checks included.
        auth.invalidate();
        assert_eq!(
            auth.authenticate(&known).await.map(|p| p.is_some()),
            Err(AuthError::Unavailable)
        );
    }

    #[tokio::test]
    async fn a_chain_answers_at_once_only_what_it_already_knows() {
        use crate::config::StaticKeyConfig;
        use crate::identity::{AuthChain, StaticKeys};
        use crate::store::{ApiKeyInfo, Company};
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("s.db")).unwrap());
        store
            .create_company(Company::fixture("acme"))
            .await
            .unwrap();
        store
            .create_user(User::fixture("ann", "acme"), None)
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
        // An unknown key is not known at once before the store was asked…
        assert_eq!(chain.known(&key("rk_nobody")), None);
        assert_eq!(
            chain.authenticate(&key("rk_nobody")).await,
            Err(AuthError::Invalid)
        );
        // …then refused from memory for `negative_ttl`, until the admin API changes something
        // (the key may just have been made).
        assert_eq!(
            chain.known(&key("rk_nobody")),
            Some(Err(AuthError::Invalid))
        );
        auth.invalidate();
        assert_eq!(chain.known(&key("rk_nobody")), None);
        // An unknown key is refused at once when only declared keys are asked.
        let only_declared = AuthChain::new(vec![declared]);
        assert_eq!(
            only_declared.known(&key("rk_nobody")),
            Some(Err(AuthError::Invalid))
        );
    }

    /// A store holding `ann` (password `right`) of company `acme`, and `nopass` without one.
    async fn store_with_ann() -> (tempfile::TempDir, Arc<dyn Store>) {
        use crate::store::Company;
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("s.db")).unwrap());
        store
            .create_company(Company::fixture("acme"))
            .await
            .unwrap();
        for (name, password) in [("ann", Some("right")), ("nopass", None)] {
            let user = User::fixture(name, "acme");
            let hash = password.map(|p| crate::identity::passwords::hash_password(p).unwrap());
            store.create_user(user, hash).await.unwrap();
        }
        (dir, store)
    }

    fn basic(user: &str, password: &str) -> Credentials {
        Credentials::Basic {
            user: user.into(),
            password: password.into(),
        }
    }

    /// One hash at once, and a caller waits at most 100 ms for it.
    fn one_hash_at_a_time() -> AuthSettings {
        let mut s = AuthSettings::default();
        s.hashing.concurrency = 1;
        s.hashing.wait = Duration::from_millis(100);
        s
    }

    #[tokio::test]
    async fn a_wrong_password_is_refused_from_memory_without_a_second_hash() {
        let (_dir, store) = store_with_ann().await;
        let auth = StoreAuth::with_settings(store, &one_hash_at_a_time());
        assert_eq!(
            auth.authenticate(&basic("ann", "wrong")).await,
            Err(AuthError::Invalid)
        );
        // With the only hashing permit taken, a check that hashed would be refused Busy:
        // the same wrong password is answered from memory, a new one has to hash.
        let _held = auth.hashing.enter().await.unwrap();
        assert_eq!(
            auth.known(&basic("ann", "wrong")),
            Some(Err(AuthError::Invalid))
        );
        assert_eq!(
            auth.authenticate(&basic("ann", "wrong")).await,
            Err(AuthError::Invalid)
        );
        assert!(matches!(
            auth.authenticate(&basic("ann", "other")).await,
            Err(AuthError::Busy { .. })
        ));
        // Busy is not remembered: once there is room, the password is checked.
        drop(_held);
        let ann = auth.authenticate(&basic("ann", "right")).await.unwrap();
        assert_eq!(ann.map(|p| p.user), Some(Arc::from("ann")));
    }

    #[tokio::test]
    async fn unknown_users_and_users_without_a_password_cost_a_hash_too() {
        let (_dir, store) = store_with_ann().await;
        let auth = StoreAuth::with_settings(store, &one_hash_at_a_time());
        let held = auth.hashing.enter().await.unwrap();
        // Each would hash (against the dummy): with no room, they wait and are shed like a
        // known user's check, rather than answered at once.
        for creds in [
            basic("nobody", "x"),
            basic("nopass", "x"),
            basic("ann", "x"),
        ] {
            assert!(
                matches!(auth.authenticate(&creds).await, Err(AuthError::Busy { .. })),
                "{creds:?}"
            );
        }
        drop(held);
        // With room: an unknown user is not the store's, one without a password is refused.
        assert_eq!(auth.authenticate(&basic("nobody", "x")).await, Ok(None));
        assert_eq!(
            auth.authenticate(&basic("nopass", "x")).await,
            Err(AuthError::Invalid)
        );
        // The dummy's own password matches nobody.
        assert_eq!(
            auth.authenticate(&basic("nobody", "rosetta: no such user"))
                .await,
            Ok(None)
        );
        assert_eq!(auth.hashing.available(), 1, "every permit given back");
    }

    #[tokio::test]
    async fn a_chain_with_limits_refuses_a_spent_user_before_any_check() {
        let (_dir, store) = store_with_ann().await;
        let mut settings = AuthSettings::default();
        settings.failed_per_user.burst = 2;
        let auth = StoreAuth::with_settings(store, &settings);
        let limits = Arc::new(crate::identity::FailureLimits::new(&settings));
        let chain =
            crate::identity::AuthChain::new(vec![Arc::new(auth.clone())]).with_limits(limits);
        let ip = Some("10.9.8.7".parse().unwrap());
        // Successes spend nothing.
        for _ in 0..5 {
            assert!(chain.attempt(Ok(basic("ann", "right")), ip).await.is_ok());
        }
        for _ in 0..2 {
            assert_eq!(
                chain.attempt(Ok(basic("ann", "wrong")), ip).await,
                Err(AuthError::Invalid)
            );
        }
        // Spent: refused before the store or a hash is asked, the right password included
        // (even though its success is cached).
        let _held = auth.hashing.enter().await.unwrap();
        for password in ["wrong", "right", "new guess"] {
            assert!(
                matches!(
                    chain.attempt(Ok(basic("ann", password)), ip).await,
                    Err(AuthError::TooManyFailures { burst: 2, .. })
                ),
                "{password}"
            );
        }
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
