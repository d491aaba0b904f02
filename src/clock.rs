//! The one place Rosetta reads the time. Timeouts, token refresh and rate-limit buckets run
//! on tokio's clock ([`now`]), which tests pause and advance; a cache entry's age and a
//! request's duration follow the machine's monotonic clock ([`real_now`]), as moka's expiry
//! does; dates (audit rows, quota days and windows, captures) come from a [`WallClock`] that
//! a test can anchor anywhere (a minute before midnight) and that then moves with tokio's
//! clock, so a day rollover is tested with paused time instead of waited for. `clippy.toml`
//! refuses the standard library's clocks and `time`'s `now` outside this module.

use std::time::Duration;

/// Now, on tokio's clock (paused and advanced in tests).
#[allow(clippy::disallowed_methods)]
pub fn now() -> tokio::time::Instant {
    tokio::time::Instant::now()
}

/// Now on the machine's monotonic clock, for what follows real time whatever tokio's clock
/// says: a cache entry's age (moka expires entries on this clock) and a request's duration
/// in the access log and the audit row. Reading it takes no lock, unlike tokio's clock when
/// its test utilities are compiled in.
#[allow(clippy::disallowed_methods)]
pub fn real_now() -> std::time::Instant {
    std::time::Instant::now()
}

/// Where dates come from.
#[derive(Debug, Clone, Copy, Default)]
pub enum WallClock {
    /// The system's clock (follows its adjustments).
    #[default]
    System,
    /// `at_ms` (Unix milliseconds) when tokio's clock read `since`, moving with tokio's clock.
    Anchored {
        /// The date, in Unix milliseconds, at `since`.
        at_ms: i64,
        /// The tokio instant `at_ms` was read at.
        since: tokio::time::Instant,
    },
}

impl WallClock {
    /// A clock reading `at_ms` now and moving with tokio's clock from here.
    pub fn anchored_at(at_ms: i64) -> Self {
        WallClock::Anchored {
            at_ms,
            since: now(),
        }
    }

    /// Unix time in milliseconds.
    pub fn now_ms(&self) -> i64 {
        match self {
            WallClock::System => system_ms(),
            WallClock::Anchored { at_ms, since } => {
                at_ms.saturating_add(i64::try_from(since.elapsed().as_millis()).unwrap_or(i64::MAX))
            }
        }
    }

    /// Today's date in UTC.
    pub fn today_utc(&self) -> time::Date {
        let secs = self.now_ms().div_euclid(1000);
        time::OffsetDateTime::from_unix_timestamp(secs)
            .map_or(time::Date::MIN, time::OffsetDateTime::date)
    }
}

/// Now on the system's clock, as a date and time (for documents that show it).
#[allow(clippy::disallowed_methods)]
pub fn utc_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

/// Unix time in milliseconds on the system's clock.
#[allow(clippy::disallowed_methods)]
pub fn system_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_anchored_clock_moves_with_tokio_time() {
        let clock = WallClock::anchored_at(1_000);
        assert_eq!(clock.now_ms(), 1_000);
        tokio::time::advance(Duration::from_secs(86_400)).await;
        assert_eq!(clock.now_ms(), 1_000 + 86_400_000);
        assert_eq!(
            clock.today_utc(),
            time::macros::date!(1970 - 01 - 02),
            "a day later"
        );
    }

    #[test]
    fn the_system_clock_is_after_this_code_was_written() {
        // 2026-01-01T00:00:00Z
        assert!(WallClock::System.now_ms() > 1_767_225_600_000);
    }
}
