//! Passwords: argon2id PHC strings, with salts from the operating system's CSPRNG.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use rand::TryRngCore;

/// Hashes `password` (argon2id, default parameters, 16-byte random salt).
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    rand::rngs::OsRng
        .try_fill_bytes(&mut salt)
        .map_err(|e| format!("no randomness for a salt: {e}"))?;
    Argon2::default()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// Whether `password` matches the PHC string `hash` (false for a malformed hash).
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A PHC string of the default parameters, to verify a password against when no user's hash
/// is there: the check costs what a real one costs, so an unknown user (or one without a
/// password) is refused in the time a known one is. Made once, on first use (about one
/// hash's time), from a fixed salt: it only has to cost, never to protect (whatever it
/// matches, the caller is refused).
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        Argon2::default()
            .hash_password_with_salt(b"rosetta: no such user", b"rosetta-dummy-16")
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

/// A new API key secret (`rk_` + 48 hex digits from the OS CSPRNG), shown to its owner once.
pub fn new_api_key() -> Result<String, String> {
    let mut bytes = [0u8; 24];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| format!("no randomness for a key: {e}"))?;
    Ok(format!("rk_{}", hex::encode(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_never_contain_the_password() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(!h.contains("correct horse"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse", &h));
        assert!(!verify_password("correct horse", "not a hash"));
        assert_ne!(h, hash_password("correct horse").unwrap(), "salted");
    }

    #[test]
    fn the_dummy_hash_costs_a_real_check_and_matches_nothing() {
        let d = dummy_hash();
        let real = hash_password("x").unwrap();
        // The same algorithm and parameters as a stored hash: the same work to verify.
        let params = |h: &str| h.split('$').take(4).collect::<Vec<_>>().join("$");
        assert_eq!(params(d), params(&real));
        assert!(!verify_password("", d));
        assert!(!verify_password("rosetta: no such user ", d));
        assert!(std::ptr::eq(d, dummy_hash()), "made once");
    }

    #[test]
    fn keys_are_random_and_shaped() {
        let a = new_api_key().unwrap();
        assert_eq!(a.len(), 51);
        assert_ne!(a, new_api_key().unwrap());
    }
}
