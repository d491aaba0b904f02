//! Per-user quotas (seed 003): points per request, per day, per dated window, and requests
//! in flight, per service and method group.
//!
//! The limits that apply come from the user's stored quotas ([`limits_for`], pure). Usage is
//! held by a [`QuotaCounter`]: reserve-and-check is one step under the counter's lock, so
//! no interleaving of concurrent requests ever spends more than the budget; a request that
//! fails upstream gives its points back when the policy counts successes only. The in-process
//! counter starts each user's day and window from the audit trail (the points of answered
//! requests), so a restart does not hand out the budget twice.

use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use serde_json::Value;

use crate::store::Quotas;

/// The limits one request is held to (`None`: unlimited).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// The most points one request may cost (`points_per_request`).
    pub per_request: Option<u64>,
    /// Points per local day (`points_per_day`).
    pub per_day: Option<u64>,
    /// `(from, to, points)` of the dated window containing today.
    pub window: Option<(String, String, u64)>,
    /// Requests in flight at once (`max_concurrent_execution`).
    pub max_concurrent: Option<u64>,
}

impl Limits {
    /// Whether no limit applies, so the request need not be counted.
    pub fn is_empty(&self) -> bool {
        self.per_request.is_none()
            && self.per_day.is_none()
            && self.window.is_none()
            && self.max_concurrent.is_none()
    }
}

/// One service/method-group entry of a user's quotas: the numbers, and the dated window it
/// belongs to (`None`: the base quotas).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Rule {
    window: Option<(Box<str>, Box<str>)>,
    service: Box<str>,
    group: Box<str>,
    per_request: Option<u64>,
    per_day: Option<u64>,
    per_window: Option<u64>,
    max_concurrent: Option<u64>,
}

/// A user's quotas reduced to what requests are checked against. The stored form is seed
/// 003's JSON, several allocations per number; this is what the quota layer keeps per active
/// user (benches/memory.sh: 100,000 users).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct QuotaRules {
    rules: Box<[Rule]>,
}

impl QuotaRules {
    /// Keeps, per services list, the first entry of each service and the first method of each
    /// group in it: the entries a lookup by service then group finds. Dated windows are taken
    /// in order of their first day, then last day, whatever order they came in: where windows
    /// overlap, each field the later one sets replaces the earlier's (see `limits_for`).
    pub fn compile(q: &Quotas) -> Self {
        let mut windows: Vec<_> = q.windows.iter().collect();
        windows.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        let lists = q
            .base
            .iter()
            .map(|b| (None, b))
            .chain(windows.into_iter().map(|(f, t, v)| (Some((f, t)), v)));
        let mut rules = Vec::new();
        for (window, services) in lists {
            let mut seen: Vec<&str> = Vec::new();
            for s in services.as_array().map(Vec::as_slice).unwrap_or_default() {
                let Some(service) = s["service"].as_str() else {
                    continue;
                };
                if seen.contains(&service) {
                    continue;
                }
                seen.push(service);
                let mut groups: Vec<&str> = Vec::new();
                for m in s["methods"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                {
                    let Some(group) = m["method_group"].as_str() else {
                        continue;
                    };
                    if groups.contains(&group) {
                        continue;
                    }
                    groups.push(group);
                    let num = |k: &str| m.get(k).and_then(Value::as_u64);
                    rules.push(Rule {
                        window: window.map(|(f, t)| (f.as_str().into(), t.as_str().into())),
                        service: service.into(),
                        group: group.into(),
                        per_request: num("points_per_request"),
                        per_day: num("points_per_day"),
                        per_window: num("points_per_date_window"),
                        max_concurrent: num("max_concurrent_execution"),
                    });
                }
            }
        }
        Self {
            rules: rules.into_boxed_slice(),
        }
    }

    /// Whether no rule limits anything.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The limits for `service`/`group` on local day `today` (`YYYY-MM-DD`): the base quotas,
    /// with the fields of a dated window that contains today taking precedence.
    pub fn limits_for(&self, service: &str, group: &str, today: &str) -> Limits {
        let mut l = Limits::default();
        for r in self.rules.iter() {
            if &*r.service != service || &*r.group != group {
                continue;
            }
            match &r.window {
                None => {
                    l.per_request = r.per_request;
                    l.per_day = r.per_day;
                    l.max_concurrent = r.max_concurrent;
                }
                Some((from, to)) => {
                    if !(&**from <= today && today <= &**to) {
                        continue;
                    }
                    l.per_request = r.per_request.or(l.per_request);
                    l.per_day = r.per_day.or(l.per_day);
                    l.max_concurrent = r.max_concurrent.or(l.max_concurrent);
                    if let Some(v) = r.per_window {
                        l.window = Some((from.to_string(), to.to_string(), v));
                    }
                }
            }
        }
        l
    }
}

/// The limits for `service`/`group` on local day `today` (`YYYY-MM-DD`): the base quotas,
/// with the fields of a dated window that contains today taking precedence.
pub fn limits_for(q: &Quotas, service: &str, group: &str, today: &str) -> Limits {
    QuotaRules::compile(q).limits_for(service, group, today)
}

/// Why a request was refused, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The request alone costs more than one request may.
    PerRequest {
        /// Points the request costs.
        cost: u64,
        /// Points one request may cost.
        limit: u64,
    },
    /// The day's points are spent.
    PerDay {
        /// Points per day.
        limit: u64,
        /// Points used today.
        used: u64,
    },
    /// The dated window's points are spent.
    Window {
        /// Points per window.
        limit: u64,
        /// Points used in the window.
        used: u64,
        /// The window's last day, `YYYY-MM-DD`.
        to: String,
    },
    /// As many requests as allowed are in flight.
    Concurrency {
        /// Requests allowed in flight.
        limit: u64,
    },
}

impl Refusal {
    /// The message naming the exhausted limit.
    pub fn message(&self) -> String {
        match self {
            Refusal::PerRequest { cost, limit } => format!(
                "points_per_request: this request costs {cost} points, the limit is {limit}"
            ),
            Refusal::PerDay { limit, used } => {
                format!("points_per_day: {used} of {limit} points used today")
            }
            Refusal::Window { limit, used, to } => format!(
                "points_per_date_window: {used} of {limit} points used in the window ending {to}"
            ),
            Refusal::Concurrency { limit } => {
                format!("max_concurrent_execution: {limit} requests already in flight")
            }
        }
    }
}

/// Whose usage: user, service, method group.
/// Shared strings: the user's from its principal, the others from the route, so a key costs
/// no allocation per request and little memory per active user.
pub type UsageKey = (Arc<str>, Arc<str>, Arc<str>);

/// What the counter knows about one key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// The local day counted, `YYYY-MM-DD`.
    pub day: String,
    /// Points used that day.
    pub day_used: u64,
    /// The dated window counted, `(from, to)`; `None`: no window.
    pub window: Option<(String, String)>,
    /// Points used in that window.
    pub window_used: u64,
    /// Requests reserved and not yet released.
    pub inflight: u64,
    /// Last reservation; an idle key is forgotten (and reloaded from the audit trail).
    pub touched: Option<tokio::time::Instant>,
}

/// Remaining budget after a reservation, for the response headers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Remaining {
    /// Points left today; `None`: no daily limit.
    pub day: Option<u64>,
    /// Points left in the window; `None`: no window limit.
    pub window: Option<u64>,
}

/// Usage counters. `reserve` checks and takes in one atomic step.
pub trait QuotaCounter: Send + Sync + 'static {
    /// Whether the counter holds `key` for `day` and `window` already (else the caller
    /// loads the usage from the store and calls [`QuotaCounter::seed`]).
    fn knows(&self, key: &UsageKey, day: &str, window: Option<&(String, String)>) -> bool;
    /// Starts `key`'s day and window at the given usage, unless it is known already.
    fn seed(
        &self,
        key: &UsageKey,
        day: &str,
        day_used: u64,
        window: Option<(String, String)>,
        window_used: u64,
    );
    /// Checks `cost` and a concurrency slot against `limits` and takes them, or says why not.
    fn reserve(
        &self,
        key: &UsageKey,
        day: &str,
        cost: u64,
        limits: &Limits,
    ) -> Result<Remaining, Refusal>;
    /// Replaces a reservation of `reserved` points by the `actual` cost (settlement may take
    /// usage past a limit: the reservation was the check).
    fn settle(&self, key: &UsageKey, reserved: u64, actual: u64);
    /// Ends a reserved request; `refund` gives its points back.
    fn release(&self, key: &UsageKey, cost: u64, refund: bool);
    /// What the counter holds for `key`; `None` if it is not known.
    fn usage(&self, key: &UsageKey) -> Option<Usage>;
}

/// The in-process counter: one lock, held for a few additions per request. Keys with
/// nothing in flight and no reservation for [`IDLE`] are forgotten, so memory follows the
/// recently active users: a forgotten key is reloaded from the audit trail, whose rows were
/// written long before (the writer lags by milliseconds).
///
/// Every active user holds a key per service it calls, so a key is kept in 64 bytes: the
/// service and group are an index into the few pairs the routes have, days are packed
/// `YYYYMMDD` numbers and the last reservation is whole seconds since the counter started.
/// (As strings, options and instants it was 400 bytes: 78 MiB for 100,000 users on two
/// services.)
#[derive(Debug)]
pub struct LocalQuotas {
    table: Mutex<Table>,
    reserves: std::sync::atomic::AtomicU64,
    /// What `touched` counts from.
    started: tokio::time::Instant,
}

impl Default for LocalQuotas {
    fn default() -> Self {
        Self {
            table: Mutex::default(),
            reserves: std::sync::atomic::AtomicU64::new(0),
            started: crate::clock::now(),
        }
    }
}

#[derive(Debug, Default)]
struct Table {
    map: hashbrown::HashMap<UserScope, Held, foldhash::fast::RandomState>,
    /// (service, method group) pairs, indexed by the keys; a handful, one per route kind.
    scopes: Vec<(Arc<str>, Arc<str>)>,
}

/// A held key: the user and the index of its (service, group).
#[derive(Debug, Hash, PartialEq, Eq)]
struct UserScope(Arc<str>, u32);

/// A key as looked up: borrowed, so a lookup never touches the user's shared reference
/// count (every request does three or four). Hashes as [`UserScope`] does, field by field.
#[derive(Hash)]
struct Probe<'a>(&'a str, u32);

impl hashbrown::Equivalent<UserScope> for Probe<'_> {
    fn equivalent(&self, key: &UserScope) -> bool {
        *key.0 == *self.0 && key.1 == self.1
    }
}

impl Table {
    fn scope(&self, service: &str, group: &str) -> Option<u32> {
        self.scopes
            .iter()
            .position(|(s, g)| **s == *service && **g == *group)
            .map(|i| i as u32)
    }

    fn get(&self, key: &UsageKey) -> Option<&Held> {
        let scope = self.scope(&key.1, &key.2)?;
        self.map.get(&Probe(&key.0, scope))
    }

    fn get_mut(&mut self, key: &UsageKey) -> Option<&mut Held> {
        let scope = self.scope(&key.1, &key.2)?;
        self.map.get_mut(&Probe(&key.0, scope))
    }

    fn entry(&mut self, key: &UsageKey) -> &mut Held {
        let scope = self.scope(&key.1, &key.2).unwrap_or_else(|| {
            self.scopes.push((key.1.clone(), key.2.clone()));
            (self.scopes.len() - 1) as u32
        });
        // One lookup; on first sight the user's name is shared, not copied.
        self.map
            .raw_entry_mut()
            .from_key(&Probe(&key.0, scope))
            .or_insert_with(|| (UserScope(key.0.clone(), scope), Held::default()))
            .1
    }
}

/// One key's usage, packed (see [`LocalQuotas`]).
#[derive(Debug, Default, Clone, Copy)]
struct Held {
    day: u32,
    /// Packed first and last day of the window; `(0, 0)` is none.
    window: (u32, u32),
    inflight: u32,
    /// Seconds since the counter started, plus one, of the last reservation; 0 is never.
    touched: u32,
    day_used: u64,
    window_used: u64,
}

/// `YYYY-MM-DD` as the number `YYYYMMDD` (same order, same equality). Anything else is
/// `u32::MAX`: the counter's days come from [`local_day`] and validated quota windows.
fn pack_day(day: &str) -> u32 {
    let b = day.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        b[r].iter().try_fold(0u32, |n, c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return u32::MAX;
    }
    match (digits(0..4), digits(5..7), digits(8..10)) {
        (Some(y), Some(m), Some(d)) => y * 10_000 + m * 100 + d,
        (None, _, _) | (_, None, _) | (_, _, None) => u32::MAX,
    }
}

fn unpack_day(n: u32) -> String {
    format!("{:04}-{:02}-{:02}", n / 10_000, n / 100 % 100, n % 100)
}

fn pack_window(window: Option<&(String, String)>) -> (u32, u32) {
    window.map_or((0, 0), |(f, t)| (pack_day(f), pack_day(t)))
}

/// How long an idle key is kept.
pub const IDLE: Duration = Duration::from_secs(120);

/// Reservations between two sweeps of idle keys.
const SWEEP_EVERY: u64 = 4096;

impl LocalQuotas {
    fn now_secs(&self) -> u32 {
        u32::try_from(self.started.elapsed().as_secs()).unwrap_or(u32::MAX - 1) + 1
    }

    /// Forgets keys idle for [`IDLE`] with nothing in flight.
    pub fn sweep(&self) {
        let now = self.now_secs();
        let mut t = self.table.lock();
        // Saturating: a reservation made between reading the clock and taking the lock is
        // newer than `now`.
        t.map.retain(|_, u| {
            u.inflight > 0
                || (u.touched > 0 && u64::from(now.saturating_sub(u.touched)) < IDLE.as_secs())
        });
        t.map.shrink_to_fit();
    }

    /// Keys currently held.
    pub fn len(&self) -> usize {
        self.table.lock().map.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl QuotaCounter for LocalQuotas {
    fn knows(&self, key: &UsageKey, day: &str, window: Option<&(String, String)>) -> bool {
        let t = self.table.lock();
        t.get(key)
            .is_some_and(|u| u.day == pack_day(day) && u.window == pack_window(window))
    }

    fn seed(
        &self,
        key: &UsageKey,
        day: &str,
        day_used: u64,
        window: Option<(String, String)>,
        window_used: u64,
    ) {
        let (day, window) = (pack_day(day), pack_window(window.as_ref()));
        let mut t = self.table.lock();
        let u = t.entry(key);
        if u.day != day {
            u.day = day;
            u.day_used = day_used;
        }
        if u.window != window {
            u.window = window;
            u.window_used = window_used;
        }
    }

    fn reserve(
        &self,
        key: &UsageKey,
        day: &str,
        cost: u64,
        limits: &Limits,
    ) -> Result<Remaining, Refusal> {
        if let Some(limit) = limits.per_request
            && cost > limit
        {
            return Err(Refusal::PerRequest { cost, limit });
        }
        let n = self
            .reserves
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep();
        }
        let (day, now) = (pack_day(day), self.now_secs());
        let mut t = self.table.lock();
        let u = t.entry(key);
        u.touched = now;
        if u.day != day {
            // A new local day since the last request: the daily budget starts again.
            u.day = day;
            u.day_used = 0;
        }
        if let Some(limit) = limits.max_concurrent
            && u64::from(u.inflight) >= limit
        {
            return Err(Refusal::Concurrency { limit });
        }
        if let Some(limit) = limits.per_day
            && u.day_used + cost > limit
        {
            return Err(Refusal::PerDay {
                limit,
                used: u.day_used,
            });
        }
        if let Some((_, to, limit)) = &limits.window
            && u.window_used + cost > *limit
        {
            return Err(Refusal::Window {
                limit: *limit,
                used: u.window_used,
                to: to.clone(),
            });
        }
        u.day_used += cost;
        u.window_used += cost;
        u.inflight = u.inflight.saturating_add(1);
        Ok(Remaining {
            day: limits.per_day.map(|l| l - u.day_used),
            window: limits.window.as_ref().map(|(_, _, l)| l - u.window_used),
        })
    }

    fn settle(&self, key: &UsageKey, reserved: u64, actual: u64) {
        let mut t = self.table.lock();
        if let Some(u) = t.get_mut(key) {
            u.day_used = (u.day_used + actual).saturating_sub(reserved);
            u.window_used = (u.window_used + actual).saturating_sub(reserved);
        }
    }

    fn release(&self, key: &UsageKey, cost: u64, refund: bool) {
        let mut t = self.table.lock();
        if let Some(u) = t.get_mut(key) {
            u.inflight = u.inflight.saturating_sub(1);
            if refund {
                u.day_used = u.day_used.saturating_sub(cost);
                u.window_used = u.window_used.saturating_sub(cost);
            }
        }
    }

    fn usage(&self, key: &UsageKey) -> Option<Usage> {
        let t = self.table.lock();
        let u = t.get(key)?;
        Some(Usage {
            day: unpack_day(u.day),
            day_used: u.day_used,
            window: (u.window != (0, 0)).then(|| (unpack_day(u.window.0), unpack_day(u.window.1))),
            window_used: u.window_used,
            inflight: u64::from(u.inflight),
            touched: (u.touched > 0)
                .then(|| self.started + Duration::from_secs(u64::from(u.touched - 1))),
        })
    }
}

/// The user's local day for `now_ms` and `timezone` hours: `(YYYY-MM-DD, ms until the next
/// local midnight)`.
pub fn local_day(now_ms: i64, timezone: i32) -> (String, Duration) {
    let local_ms = now_ms + i64::from(timezone) * 3_600_000;
    let day_ms = 86_400_000;
    let days = local_ms.div_euclid(day_ms);
    let left = day_ms - local_ms.rem_euclid(day_ms);
    let date = time::Date::from_julian_day(2_440_588 + days as i32)
        .map(|d| {
            d.format(time::macros::format_description!("[year]-[month]-[day]"))
                .unwrap_or_default()
        })
        .unwrap_or_default();
    (date, Duration::from_millis(left as u64))
}

/// UTC milliseconds of the local midnight that starts `day` in `timezone`.
pub fn day_start_ms(day: &str, timezone: i32) -> Option<i64> {
    let d = time::Date::parse(
        day,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .ok()?;
    Some(d.midnight().assume_utc().unix_timestamp() * 1000 - i64::from(timezone) * 3_600_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    fn quotas() -> Quotas {
        Quotas {
            base: Some(json!([{"service": "S", "methods": [{"method_group": "READ",
                "points_per_request": 15, "points_per_day": 1500, "max_concurrent_execution": 5}]}])),
            windows: vec![(
                "2026-12-01".into(),
                "2026-12-31".into(),
                json!([{"service": "S", "methods": [{"method_group": "READ", "points_per_date_window": 100, "points_per_day": 50}]}]),
            )],
        }
    }

    #[tokio::test(start_paused = true)]
    async fn idle_keys_are_forgotten_but_not_while_in_flight() {
        let c = LocalQuotas::default();
        let limits = Limits {
            per_day: Some(10),
            ..Limits::default()
        };
        let idle: UsageKey = ("a".into(), "S".into(), "READ".into());
        let busy: UsageKey = ("b".into(), "S".into(), "READ".into());
        c.reserve(&idle, "2026-01-01", 1, &limits).unwrap();
        c.release(&idle, 1, false);
        c.reserve(&busy, "2026-01-01", 1, &limits).unwrap();
        tokio::time::advance(IDLE - Duration::from_secs(1)).await;
        c.sweep();
        assert_eq!(c.len(), 2, "not idle long enough");
        tokio::time::advance(Duration::from_secs(2)).await;
        c.sweep();
        assert!(
            c.usage(&idle).is_none(),
            "forgotten: reloaded from the audit trail"
        );
        assert!(!c.knows(&idle, "2026-01-01", None));
        assert_eq!(
            c.usage(&busy).unwrap().inflight,
            1,
            "a request in flight keeps its key"
        );
    }

    #[test]
    fn the_first_entry_of_a_service_and_of_a_group_is_the_one_that_counts() {
        let q = Quotas {
            base: Some(json!([
                {"service": "S", "methods": [
                    {"method_group": "READ", "points_per_day": 10},
                    {"method_group": "READ", "points_per_day": 99}]},
                {"service": "S", "methods": [{"method_group": "WRITE", "points_per_day": 7}]}
            ])),
            windows: vec![],
        };
        let rules = QuotaRules::compile(&q);
        assert_eq!(
            rules.limits_for("S", "READ", "2026-01-01").per_day,
            Some(10)
        );
        assert!(
            rules.limits_for("S", "WRITE", "2026-01-01").is_empty(),
            "a second entry of a service is never consulted"
        );
        assert!(QuotaRules::compile(&Quotas::default()).is_empty());
    }

    #[test]
    fn base_and_window_limits() {
        let q = quotas();
        let l = limits_for(&q, "S", "READ", "2026-11-30");
        assert_eq!(
            l,
            Limits {
                per_request: Some(15),
                per_day: Some(1500),
                window: None,
                max_concurrent: Some(5)
            }
        );
        let l = limits_for(&q, "S", "READ", "2026-12-10");
        assert_eq!(l.per_day, Some(50), "the window overrides");
        assert_eq!(
            l.window,
            Some(("2026-12-01".into(), "2026-12-31".into(), 100))
        );
        assert!(limits_for(&q, "S", "WRITE", "2026-12-10").is_empty());
        assert!(limits_for(&q, "T", "READ", "2026-12-10").is_empty());
    }

    #[test]
    fn overlapping_windows_apply_in_order_of_their_first_day_field_by_field() {
        let window = |from: &str, to: &str, methods: Value| {
            (
                from.to_owned(),
                to.to_owned(),
                json!([{"service": "S", "methods": [methods]}]),
            )
        };
        let wide = window(
            "2026-01-01",
            "2026-12-31",
            json!({"method_group": "READ", "points_per_date_window": 5, "points_per_day": 3}),
        );
        let late = window(
            "2026-11-15",
            "2026-12-15",
            json!({"method_group": "READ", "points_per_date_window": 7}),
        );
        // Stored or sent in either order, the later-starting window's fields win.
        for windows in [vec![wide.clone(), late.clone()], vec![late, wide]] {
            let q = Quotas {
                base: None,
                windows,
            };
            let l = limits_for(&q, "S", "READ", "2026-11-27");
            assert_eq!(
                l.window,
                Some(("2026-11-15".into(), "2026-12-15".into(), 7))
            );
            assert_eq!(
                l.per_day,
                Some(3),
                "a field only the earlier sets still applies"
            );
            let l = limits_for(&q, "S", "READ", "2026-11-01");
            assert_eq!(
                l.window,
                Some(("2026-01-01".into(), "2026-12-31".into(), 5))
            );
        }
    }

    #[test]
    fn exactly_100_of_64_times_many_succeed() {
        let c = Arc::new(LocalQuotas::default());
        let limits = Limits {
            per_request: Some(15),
            per_day: Some(1500),
            ..Limits::default()
        };
        let key: UsageKey = ("ann".into(), "S".into(), "READ".into());
        let ok = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let threads: Vec<_> = (0..64)
            .map(|_| {
                let (c, l, k, ok) = (c.clone(), limits.clone(), key.clone(), ok.clone());
                std::thread::spawn(move || {
                    for _ in 0..10 {
                        if c.reserve(&k, "2026-11-26", 15, &l).is_ok() {
                            ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            c.release(&k, 15, false);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(ok.load(std::sync::atomic::Ordering::Relaxed), 100);
        assert_eq!(c.usage(&key).unwrap().day_used, 1500);
    }

    #[test]
    fn refusals_name_the_limit_and_refunds_give_back() {
        let c = LocalQuotas::default();
        let key: UsageKey = ("a".into(), "S".into(), "R".into());
        let l = Limits {
            per_request: Some(10),
            per_day: Some(20),
            max_concurrent: Some(1),
            ..Limits::default()
        };
        let (d1, d2) = ("2026-01-01", "2026-01-02");
        assert!(matches!(
            c.reserve(&key, d1, 11, &l),
            Err(Refusal::PerRequest { .. })
        ));
        assert_eq!(c.reserve(&key, d1, 10, &l).unwrap().day, Some(10));
        assert!(matches!(
            c.reserve(&key, d1, 1, &l),
            Err(Refusal::Concurrency { limit: 1 })
        ));
        c.release(&key, 10, true);
        assert_eq!(c.usage(&key).unwrap().day_used, 0, "refunded");
        c.reserve(&key, d1, 10, &l).unwrap();
        c.release(&key, 10, false);
        c.reserve(&key, d1, 10, &l).unwrap();
        c.release(&key, 10, false);
        let e = c.reserve(&key, d1, 1, &l).unwrap_err();
        assert!(e.message().contains("points_per_day"));
        // The next local day starts empty.
        assert!(c.reserve(&key, d2, 10, &l).is_ok());
    }

    #[test]
    fn a_held_key_fits_in_64_bytes() {
        // What benches/memory.sh's bound rests on: one such entry per active (user, service).
        assert!(std::mem::size_of::<(UserScope, Held)>() <= 64);
    }

    #[test]
    fn a_probe_hashes_and_compares_as_the_key_it_finds() {
        use std::hash::BuildHasher;
        let h = foldhash::fast::RandomState::default();
        let key = UserScope(Arc::from("ann"), 3);
        assert_eq!(h.hash_one(&key), h.hash_one(Probe("ann", 3)));
        assert!(hashbrown::Equivalent::equivalent(&Probe("ann", 3), &key));
        assert!(!hashbrown::Equivalent::equivalent(&Probe("ann", 4), &key));
        assert!(!hashbrown::Equivalent::equivalent(&Probe("an", 3), &key));
    }

    #[test]
    fn packed_days_keep_order_and_equality_and_read_back() {
        let days = [
            "0001-01-01",
            "2026-01-31",
            "2026-02-01",
            "2026-11-26",
            "9999-12-31",
        ];
        for w in days.windows(2) {
            assert!(pack_day(w[0]) < pack_day(w[1]), "{} < {}", w[0], w[1]);
        }
        for d in days {
            assert_eq!(unpack_day(pack_day(d)), d);
        }
        for bad in [
            "",
            "d1",
            "2026-1-01",
            "2026/01/01",
            "2026-01-0x",
            "２026-01-01",
        ] {
            assert_eq!(pack_day(bad), u32::MAX, "{bad:?}");
        }
    }

    #[test]
    fn usage_reads_back_as_it_was_seeded_and_a_new_window_reloads() {
        let c = LocalQuotas::default();
        let key: UsageKey = ("a".into(), "S".into(), "R".into());
        let window = ("2026-12-01".to_owned(), "2026-12-31".to_owned());
        assert!(!c.knows(&key, "2026-12-10", Some(&window)));
        c.seed(&key, "2026-12-10", 7, Some(window.clone()), 40);
        assert!(c.knows(&key, "2026-12-10", Some(&window)));
        assert!(!c.knows(&key, "2026-12-11", Some(&window)), "another day");
        assert!(!c.knows(&key, "2026-12-10", None), "another window");
        let other: UsageKey = ("a".into(), "S".into(), "W".into());
        assert!(
            !c.knows(&other, "2026-12-10", Some(&window)),
            "another group"
        );
        let u = c.usage(&key).unwrap();
        assert_eq!(
            (
                u.day.as_str(),
                u.day_used,
                u.window,
                u.window_used,
                u.inflight,
                u.touched
            ),
            ("2026-12-10", 7, Some(window), 40, 0, None)
        );
    }

    #[test]
    fn local_days_follow_the_timezone() {
        // 2026-11-26T23:30Z is already the 27th at +2 and still the 26th at -5.
        let now = day_start_ms("2026-11-26", 0).unwrap() + 23 * 3_600_000 + 1_800_000;
        assert_eq!(local_day(now, 0).0, "2026-11-26");
        assert_eq!(local_day(now, 2).0, "2026-11-27");
        assert_eq!(local_day(now, -5).0, "2026-11-26");
        assert_eq!(local_day(now, 0).1, Duration::from_secs(1800));
        assert_eq!(
            day_start_ms("2026-11-27", 2).unwrap(),
            day_start_ms("2026-11-26", 0).unwrap() + 22 * 3_600_000
        );
    }
}
