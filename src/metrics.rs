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
static AUDIT_SPILLED: AtomicU64 = AtomicU64::new(0);
static AUDIT_LOST: AtomicU64 = AtomicU64::new(0);
static AUDIT_REFUSED: AtomicU64 = AtomicU64::new(0);
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
static CLUSTER_RELEASE_FAILED: AtomicU64 = AtomicU64::new(0);
static CLUSTER_UNAVAILABLE: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];

/// Counts a request's shared limits that could not be given back (the lease expires by
/// itself).
pub fn cluster_release_failed() {
    CLUSTER_RELEASE_FAILED.fetch_add(1, Ordering::Relaxed);
}

/// Counts a request whose shared limits could not be checked: refused (`deny`) or let
/// through counted on this node alone (`allow`).
pub fn cluster_unavailable(allowed: bool) {
    CLUSTER_UNAVAILABLE[usize::from(allowed)].fetch_add(1, Ordering::Relaxed);
}

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

static CLUSTER: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];

/// What became of an invalidation on the cluster bus (`cluster::bus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterEvent {
    /// This node's invalidation was published on Redis.
    Published,
    /// This node's invalidation could not be queued or published (the others are told to
    /// drop everything once Redis takes messages again).
    Unsent,
    /// Another node's invalidation was applied here.
    Received,
    /// A message on the channel was not an invalidation.
    Ignored,
    /// This node dropped all its caches (a new subscription, or a peer's `Everything`).
    CachesDropped,
}

impl ClusterEvent {
    const ALL: [ClusterEvent; 5] = [
        ClusterEvent::Published,
        ClusterEvent::Unsent,
        ClusterEvent::Received,
        ClusterEvent::Ignored,
        ClusterEvent::CachesDropped,
    ];

    fn label(self) -> &'static str {
        match self {
            ClusterEvent::Published => "published",
            ClusterEvent::Unsent => "unsent",
            ClusterEvent::Received => "received",
            ClusterEvent::Ignored => "ignored",
            ClusterEvent::CachesDropped => "caches_dropped",
        }
    }
}

/// Counts `event` on the cluster bus.
pub fn cluster(event: ClusterEvent) {
    CLUSTER[event as usize].fetch_add(1, Ordering::Relaxed);
}

static CONNECTIONS_ACCEPTED: AtomicU64 = AtomicU64::new(0);
static CONNECTIONS_CLOSED: AtomicU64 = AtomicU64::new(0);
static CONNECTIONS_TIMED_OUT: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];
static REQUESTS_TIMED_OUT: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];

/// Which timeout closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionTimeout {
    /// Nothing, or only part of an HTTP/2 preface, within `server.first_byte_timeout`.
    FirstByte,
    /// An HTTP/1 request's headers not all received within `server.header_read_timeout`.
    Header,
    /// No request in flight for `server.idle_timeout`.
    Idle,
}

impl ConnectionTimeout {
    const ALL: [Self; 3] = [Self::FirstByte, Self::Header, Self::Idle];

    fn label(self) -> &'static str {
        match self {
            Self::FirstByte => "first_byte",
            Self::Header => "header",
            Self::Idle => "idle",
        }
    }
}

/// Which limit cut a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestTimeout {
    /// The body came slower than `server.min_body_rate`.
    BodyRate,
    /// The body had not all arrived within `server.request_timeout`.
    Body,
    /// The body had arrived, the answer was not begun within `server.request_timeout`.
    Answer,
}

impl RequestTimeout {
    const ALL: [Self; 3] = [Self::BodyRate, Self::Body, Self::Answer];

    fn label(self) -> &'static str {
        match self {
            Self::BodyRate => "body_rate",
            Self::Body => "body",
            Self::Answer => "answer",
        }
    }
}

/// Counts a connection accepted (by either listener).
pub fn connection_opened() {
    CONNECTIONS_ACCEPTED.fetch_add(1, Ordering::Relaxed);
}

/// Counts a connection closed, for whatever reason.
pub fn connection_closed() {
    CONNECTIONS_CLOSED.fetch_add(1, Ordering::Relaxed);
}

/// Counts a connection closed by `why`.
pub fn connection_timed_out(why: ConnectionTimeout) {
    CONNECTIONS_TIMED_OUT[why as usize].fetch_add(1, Ordering::Relaxed);
}

/// Counts a request cut by `why`.
pub fn request_timed_out(why: RequestTimeout) {
    REQUESTS_TIMED_OUT[why as usize].fetch_add(1, Ordering::Relaxed);
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

/// Counts `n` audit rows appended to the spill file (the table failed).
pub fn audit_spilled(n: u64) {
    AUDIT_SPILLED.fetch_add(n, Ordering::Relaxed);
}

/// Counts `n` audit rows lost (a spill file line cut by a crash; the writer gone and the
/// spill file failing).
pub fn audit_lost(n: u64) {
    AUDIT_LOST.fetch_add(n, Ordering::Relaxed);
}

/// Counts a request refused (503) because the audit queue was full.
pub fn audit_refused() {
    AUDIT_REFUSED.fetch_add(1, Ordering::Relaxed);
}

/// Counts a request whose bodies were queued for capture.
pub fn capture_queued() {
    CAPTURES.fetch_add(1, Ordering::Relaxed);
}

/// The gauge of calls in flight, one line per upstream.
pub fn render_in_flight<'a>(upstreams: impl Iterator<Item = (&'a str, usize)>) -> String {
    let mut out = String::from(
        "# HELP rosetta_upstream_in_flight Calls in flight to each upstream now (max_in_flight bounds them).\n# TYPE rosetta_upstream_in_flight gauge\n",
    );
    for (name, n) in upstreams {
        out.push_str(&format!(
            "rosetta_upstream_in_flight{{upstream=\"{name}\"}} {n}\n"
        ));
    }
    out
}

/// The Prometheus exposition of every counter (the upstreams' gauge is added by the caller,
/// which holds the upstreams: [`render_in_flight`]).
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
            "rosetta_audit_rows_spilled_total",
            "Audit rows appended to the spill file because the table failed.",
            &AUDIT_SPILLED,
        ),
        (
            "rosetta_audit_rows_lost_total",
            "Audit rows lost (a spill-file line cut by a crash, or no writer and no spill file).",
            &AUDIT_LOST,
        ),
        (
            "rosetta_audit_refused_total",
            "Requests refused (503) because the audit queue was full.",
            &AUDIT_REFUSED,
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
    let (accepted, closed) = (get(&CONNECTIONS_ACCEPTED), get(&CONNECTIONS_CLOSED));
    out.push_str(&format!(
        "# HELP rosetta_connections_open Connections open on the proxy and admin listeners.\n# TYPE rosetta_connections_open gauge\nrosetta_connections_open {}\n",
        accepted.saturating_sub(closed)
    ));
    out.push_str(&format!(
        "# HELP rosetta_connections_accepted_total Connections accepted.\n# TYPE rosetta_connections_accepted_total counter\nrosetta_connections_accepted_total {accepted}\n"
    ));
    out.push_str("# HELP rosetta_connections_timed_out_total Connections closed by a timeout.\n");
    out.push_str("# TYPE rosetta_connections_timed_out_total counter\n");
    for why in ConnectionTimeout::ALL {
        out.push_str(&format!(
            "rosetta_connections_timed_out_total{{after=\"{}\"}} {}\n",
            why.label(),
            get(&CONNECTIONS_TIMED_OUT[why as usize])
        ));
    }
    out.push_str("# HELP rosetta_requests_timed_out_total Requests cut by a timeout (408, 504).\n");
    out.push_str("# TYPE rosetta_requests_timed_out_total counter\n");
    for why in RequestTimeout::ALL {
        out.push_str(&format!(
            "rosetta_requests_timed_out_total{{reason=\"{}\"}} {}\n",
            why.label(),
            get(&REQUESTS_TIMED_OUT[why as usize])
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
    out.push_str("# HELP rosetta_cluster_unavailable_total Requests whose shared limits (Redis) could not be checked, by what they got: refused 503 (deny) or let through counted on this node alone (allow).\n# TYPE rosetta_cluster_unavailable_total counter\n");
    for (outcome, a) in [
        ("refused", &CLUSTER_UNAVAILABLE[0]),
        ("allowed", &CLUSTER_UNAVAILABLE[1]),
    ] {
        out.push_str(&format!(
            "rosetta_cluster_unavailable_total{{outcome=\"{outcome}\"}} {}\n",
            get(a)
        ));
    }
    out.push_str(&format!(
        "# HELP rosetta_cluster_release_failures_total Admitted requests whose shared limits could not be given back (their concurrency lease expires by itself).\n# TYPE rosetta_cluster_release_failures_total counter\nrosetta_cluster_release_failures_total {}\n",
        get(&CLUSTER_RELEASE_FAILED)
    ));
    out.push_str("# HELP rosetta_cluster_invalidations_total Invalidations on the cluster bus, by what became of them.\n# TYPE rosetta_cluster_invalidations_total counter\n");
    for event in ClusterEvent::ALL {
        out.push_str(&format!(
            "rosetta_cluster_invalidations_total{{event=\"{}\"}} {}\n",
            event.label(),
            get(&CLUSTER[event as usize])
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
            "# TYPE rosetta_connections_open gauge",
            "rosetta_connections_timed_out_total{after=\"first_byte\"}",
            "rosetta_requests_timed_out_total{reason=\"body_rate\"}",
            "rosetta_cluster_invalidations_total{event=\"unsent\"}",
        ] {
            assert!(text.contains(line), "{line}");
        }
    }
}
