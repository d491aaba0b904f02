//! Pure parts of the cache: keys, scopes, query normalisation, ETags.

use std::sync::Arc;

pub use crate::mapping::pack::CacheScope as Scope;

/// The scope part of a key: whose answers an entry holds. A caller who reaches every company
/// (`ADMIN`) is kept apart from the rest of its company: lists are kept to the caller's reach,
/// so the same request answers differently for them.
pub fn scope_value(scope: Scope, user: &str, company: &str, reaches_all: bool) -> String {
    match (scope, reaches_all) {
        (Scope::Public, _) => String::new(),
        (Scope::Company, false) => ["c:", company].concat(),
        (Scope::Company, true) => ["a:", company].concat(),
        (Scope::User, _) => ["u:", user].concat(),
    }
}

/// One cached answer's identity. Equality covers every field; the hash only `request` and
/// `scope` (the rest follows from them), computed once when the key is made: moka hashes a
/// key several times per read, and its table rehashes every key as it grows and sheds
/// evicted entries (hashing the strings there was 7% of a cache miss in-process).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey {
    /// `pack:route`.
    pub route: Arc<str>,
    /// Path, normalised query, dialect and `Accept`.
    pub request: String,
    /// The scope's value: company key, user name, or empty for public.
    pub scope: String,
    /// The route's path parameters (names and values), for targeted invalidation; shared
    /// with the request's route context, not copied.
    pub params: Arc<[(String, String)]>,
    hash: u64,
}

/// Seeded per process, so that which requests share a hash cannot be chosen by a client.
static KEY_HASHER: std::sync::LazyLock<foldhash::fast::RandomState> =
    std::sync::LazyLock::new(foldhash::fast::RandomState::default);

impl CacheKey {
    /// The key of `request` to `route` under `scope`, hashed once here.
    pub fn new(
        route: Arc<str>,
        request: String,
        scope: String,
        params: Arc<[(String, String)]>,
    ) -> Self {
        use std::hash::BuildHasher;
        let hash = KEY_HASHER.hash_one((&request, &scope));
        Self {
            route,
            request,
            scope,
            params,
            hash,
        }
    }
}

impl std::hash::Hash for CacheKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// The query with its pairs sorted, so `?a=1&b=2` and `?b=2&a=1` share an entry.
pub fn normalise_query(query: Option<&str>) -> String {
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    pairs.sort();
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// A strong ETag for a body.
pub fn etag(body: &[u8]) -> String {
    format!(
        "\"{}\"",
        &crate::identity::sha256_hex(&String::from_utf8_lossy(body))[..20]
    )
}

/// Whether `If-None-Match` (a list, or `*`) matches `tag`.
pub(crate) fn if_none_match(header: &str, tag: &str) -> bool {
    header
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t == tag || t.strip_prefix("W/") == Some(tag))
}

/// Whether a cached read of `key` is affected by a write to `routes` whose path parameters
/// are `values`: the route is named and, when both carry parameters, one value is shared
/// (a company id names the same company in `/companies/{companyId}` and
/// `/networking/rest/tenant/{tenant_id}`).
pub(crate) fn affected(key: &CacheKey, routes: &[Arc<str>], values: &[String]) -> bool {
    routes.contains(&key.route)
        && (key.params.is_empty()
            || values.is_empty()
            || key.params.iter().any(|(_, p)| values.contains(p)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_separate_callers() {
        let (a1, a2, b1) = (("ann", "acme"), ("bob", "acme"), ("cy", "beta"));
        let v = |s, (u, c): (&str, &str)| scope_value(s, u, c, false);
        assert_eq!(
            v(Scope::Company, a1),
            v(Scope::Company, a2),
            "one company shares"
        );
        assert_ne!(
            v(Scope::Company, a1),
            v(Scope::Company, b1),
            "companies never do"
        );
        assert_ne!(
            v(Scope::User, a1),
            v(Scope::User, a2),
            "user scope: each their own"
        );
        assert_eq!(v(Scope::Public, a1), v(Scope::Public, b1));
        // A user named like a company cannot reach that company's entries.
        assert_ne!(
            v(Scope::User, ("acme", "x")),
            v(Scope::Company, ("x", "acme"))
        );
        // An ADMIN's lists hold every company: never shared with its company's other callers.
        assert_ne!(
            scope_value(Scope::Company, "root", "acme", true),
            v(Scope::Company, ("ann", "acme"))
        );
        assert_eq!(
            scope_value(Scope::User, "ann", "acme", true),
            v(Scope::User, a1),
            "a user scope is the user's alone already"
        );
    }

    #[test]
    fn queries_normalise() {
        assert_eq!(
            normalise_query(Some("b=2&a=1")),
            normalise_query(Some("a=1&b=2"))
        );
        assert_eq!(normalise_query(None), "");
        assert_ne!(normalise_query(Some("a=1")), normalise_query(Some("a=2")));
    }

    #[test]
    fn etags_and_matching() {
        let t = etag(b"hello");
        assert!(t.starts_with('"') && t.ends_with('"'));
        assert_ne!(t, etag(b"hello!"));
        assert!(if_none_match(&format!("\"x\", {t}"), &t));
        assert!(if_none_match(&format!("W/{t}"), &t));
        assert!(if_none_match("*", &t));
        assert!(!if_none_match("\"x\"", &t));
    }

    #[test]
    fn invalidation_by_route_and_shared_parameter() {
        let key = |route: &str, params: &[&str]| {
            CacheKey::new(
                Arc::from(route),
                String::new(),
                String::new(),
                params
                    .iter()
                    .map(|s| ("id".to_owned(), s.to_string()))
                    .collect(),
            )
        };
        let routes: Vec<Arc<str>> =
            vec![Arc::from("p:companies.get"), Arc::from("p:companies.mine")];
        let values = vec!["c1".to_owned()];
        assert!(affected(&key("p:companies.get", &["c1"]), &routes, &values));
        assert!(!affected(
            &key("p:companies.get", &["c2"]),
            &routes,
            &values
        ));
        assert!(affected(&key("p:companies.mine", &[]), &routes, &values));
        assert!(!affected(&key("p:users.get", &["c1"]), &routes, &values));
    }
}
