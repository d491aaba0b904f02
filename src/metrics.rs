//! Process-wide counters, exposed in the Prometheus text format at the admin `/metrics`.
//!
//! Plain atomics: an increment on the request path is one relaxed add, no lock, no
//! allocation. Counters are per process; a multi-node deployment sums them in Prometheus.

use std::sync::atomic::{AtomicU64, Ordering};

static BY_CLASS: [AtomicU64; 5] = [
    AtomicU64::new(0),
    AtomicU64::new(0),
    AtomicU64::new(0),
    AtomicU64::new(0),
    AtomicU64::new(0),
];
static DURATION_MICROS: AtomicU64 = AtomicU64::new(0);
static ADMIN_REQUESTS: AtomicU64 = AtomicU64::new(0);
static AUDIT_QUEUED: AtomicU64 = AtomicU64::new(0);
static AUDIT_WRITTEN: AtomicU64 = AtomicU64::new(0);
static CAPTURES: AtomicU64 = AtomicU64::new(0);
static CACHE_HITS: AtomicU64 = AtomicU64::new(0);
static CACHE_MISSES: AtomicU64 = AtomicU64::new(0);
static CACHE_EVICTIONS: AtomicU64 = AtomicU64::new(0);
static CACHE_BYTES: AtomicU64 = AtomicU64::new(0);
static AUTH_FAILED: AtomicU64 = AtomicU64::new(0);
static AUTH_REFUSED_USER: AtomicU64 = AtomicU64::new(0);
static AUTH_REFUSED_IP: AtomicU64 = AtomicU64::new(0);
static AUTH_SHED_HASHING: AtomicU64 = AtomicU64::new(0);
static AUTH_SHED_LOOKUPS: AtomicU64 = AtomicU64::new(0);

/// Which budget of failed authentications refused a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureBudget {
    /// `identity.failed_per_user`.
    User,
    /// `identity.failed_per_ip`.
    Ip,
}

/// Which bounded piece of authentication work refused a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthWork {
    /// Password hashes (`identity.hashing`).
    Hashing,
    /// Store lookups (`identity.lookups`).
    Lookups,
}

/// Counts a failed authentication (a 401 that consumed a cell of the failure budgets).
pub fn auth_failed() {
    AUTH_FAILED.fetch_add(1, Ordering::Relaxed);
}

/// Counts a caller refused 429 because `budget` of failures was spent.
pub fn auth_refused(budget: FailureBudget) {
    match budget {
        FailureBudget::User => &AUTH_REFUSED_USER,
        FailureBudget::Ip => &AUTH_REFUSED_IP,
    }
    .fetch_add(1, Ordering::Relaxed);
}

/// Counts a caller refused 503 because `work` had no room within its wait.
pub fn auth_shed(work: AuthWork) {
    match work {
        AuthWork::Hashing => &AUTH_SHED_HASHING,
        AuthWork::Lookups => &AUTH_SHED_LOOKUPS,
    }
    .fetch_add(1, Ordering::Relaxed);
}

/// Counts a read answered from the cache.
pub fn cache_hit() {
    CACHE_HITS.fetch_add(1, Ordering::Relaxed);
}

/// Counts a cacheable read the cache could not answer.
pub fn cache_miss() {
    CACHE_MISSES.fetch_add(1, Ordering::Relaxed);
}

/// Counts an entry the cache dropped.
pub fn cache_evicted() {
    CACHE_EVICTIONS.fetch_add(1, Ordering::Relaxed);
}

/// The cache's current size in bytes (set when metrics are read).
pub fn cache_bytes(n: u64) {
    CACHE_BYTES.store(n, Ordering::Relaxed);
}

/// A proxied request finished with `status` after `micros`.
pub fn request(status: u16, micros: u64) {
    let class = usize::from(status / 100).clamp(1, 5) - 1;
    BY_CLASS[class].fetch_add(1, Ordering::Relaxed);
    DURATION_MICROS.fetch_add(micros, Ordering::Relaxed);
}

/// Counts a request to the admin API.
pub fn admin_request() {
    ADMIN_REQUESTS.fetch_add(1, Ordering::Relaxed);
}

/// Counts an audit row queued for the writer.
pub fn audit_queued() {
    AUDIT_QUEUED.fetch_add(1, Ordering::Relaxed);
}

/// Counts `n` audit rows written to the store.
pub fn audit_written(n: u64) {
    AUDIT_WRITTEN.fetch_add(n, Ordering::Relaxed);
}

/// Counts a request whose bodies were queued for capture.
pub fn capture_queued() {
    CAPTURES.fetch_add(1, Ordering::Relaxed);
}

/// The Prometheus exposition of every counter.
pub fn render() -> String {
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let total: u64 = BY_CLASS.iter().map(get).sum();
    let mut out = String::with_capacity(1024);
    out.push_str("# HELP rosetta_http_requests_total Proxied requests by status class.\n");
    out.push_str("# TYPE rosetta_http_requests_total counter\n");
    for (i, a) in BY_CLASS.iter().enumerate() {
        out.push_str(&format!(
            "rosetta_http_requests_total{{class=\"{}xx\"}} {}\n",
            i + 1,
            get(a)
        ));
    }
    out.push_str("# HELP rosetta_http_request_duration_seconds Time to answer proxied requests.\n");
    out.push_str("# TYPE rosetta_http_request_duration_seconds summary\n");
    out.push_str(&format!(
        "rosetta_http_request_duration_seconds_sum {}\nrosetta_http_request_duration_seconds_count {total}\n",
        get(&DURATION_MICROS) as f64 / 1e6
    ));
    for (name, help, a) in [
        (
            "rosetta_admin_requests_total",
            "Admin API requests.",
            &ADMIN_REQUESTS,
        ),
        (
            "rosetta_audit_rows_queued_total",
            "Audit rows handed to the store writer.",
            &AUDIT_QUEUED,
        ),
        (
            "rosetta_audit_rows_written_total",
            "Audit rows committed by the store writer.",
            &AUDIT_WRITTEN,
        ),
        (
            "rosetta_captures_total",
            "Requests whose bodies were captured.",
            &CAPTURES,
        ),
        (
            "rosetta_cache_hits_total",
            "Reads answered from the cache.",
            &CACHE_HITS,
        ),
        (
            "rosetta_cache_misses_total",
            "Cacheable reads sent on.",
            &CACHE_MISSES,
        ),
        (
            "rosetta_cache_evictions_total",
            "Entries evicted for space.",
            &CACHE_EVICTIONS,
        ),
    ] {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
            get(a)
        ));
    }
    out.push_str(&format!(
        "# HELP rosetta_auth_failures_total Failed authentications (401).\n# TYPE rosetta_auth_failures_total counter\nrosetta_auth_failures_total {}\n",
        get(&AUTH_FAILED)
    ));
    out.push_str("# HELP rosetta_auth_refused_total Authentications refused (429) before any check, by the budget of failures spent.\n# TYPE rosetta_auth_refused_total counter\n");
    for (budget, a) in [("user", &AUTH_REFUSED_USER), ("ip", &AUTH_REFUSED_IP)] {
        out.push_str(&format!(
            "rosetta_auth_refused_total{{budget=\"{budget}\"}} {}\n",
            get(a)
        ));
    }
    out.push_str("# HELP rosetta_auth_shed_total Authentications shed (503) for want of room, by the work refused.\n# TYPE rosetta_auth_shed_total counter\n");
    for (work, a) in [
        ("hashing", &AUTH_SHED_HASHING),
        ("lookups", &AUTH_SHED_LOOKUPS),
    ] {
        out.push_str(&format!(
            "rosetta_auth_shed_total{{work=\"{work}\"}} {}\n",
            get(a)
        ));
    }
    out.push_str(&format!(
        "# HELP rosetta_cache_bytes Bytes held by the read cache.\n# TYPE rosetta_cache_bytes gauge\nrosetta_cache_bytes {}\n",
        get(&CACHE_BYTES)
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_class_and_renders() {
        request(204, 1500);
        request(503, 10);
        request(99, 1);
        let text = render();
        for line in [
            "rosetta_http_requests_total{class=\"2xx\"}",
            "rosetta_http_requests_total{class=\"5xx\"}",
            "rosetta_http_request_duration_seconds_count",
            "# TYPE rosetta_audit_rows_written_total counter",
        ] {
            assert!(text.contains(line), "{line}");
        }
    }
}
