//! The circuit breaker of one upstream: after `failures` consecutive failed calls it opens,
//! and calls are refused at once (503, nothing sent) for `cool_down` instead of each waiting
//! out its own timeout against an upstream that is down.
//!
//! A failure is a call that could not connect (TCP or TLS), whose connection broke before
//! an answer, that timed out, or that was answered 5xx. Any other answer is a success and
//! resets the count. After the cool-down one call, the probe, is let through (half-open):
//! its success closes the breaker, its failure opens it for another cool-down, and the
//! calls arriving meanwhile are refused. A probe that ends without a verdict (cancelled by
//! its caller, or it failed before reaching the upstream) leaves the next call to probe, so
//! the breaker can never stay half-open for good. Time is tokio's ([`crate::clock::now`]).

use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use crate::config::BreakerConfig;

/// What a finished call says about the upstream's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// It answered (below 500).
    Healthy,
    /// It could not be reached, broke, timed out, or answered 5xx.
    Failed,
    /// Nothing was learnt (the call failed before reaching it, or its answer was unreadable).
    Neutral,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// The probe is in flight.
    HalfOpen,
}

/// One upstream's breaker.
#[derive(Debug)]
pub(super) struct Breaker {
    upstream: String,
    threshold: u32,
    cool_down: Duration,
    state: Mutex<State>,
}

/// A call the breaker let through; [`Pass::settle`] reports how it went.
#[must_use]
pub(super) struct Pass<'a> {
    breaker: &'a Breaker,
    probe: bool,
    settled: bool,
}

impl Breaker {
    /// The breaker `cfg` describes; `None` when it is turned off (`failures = 0`).
    pub(super) fn new(upstream: &str, cfg: &BreakerConfig) -> Option<Self> {
        (cfg.failures > 0).then(|| Self {
            upstream: upstream.to_owned(),
            threshold: cfg.failures,
            cool_down: cfg.cool_down,
            state: Mutex::new(State::Closed { failures: 0 }),
        })
    }

    /// Lets a call through, or refuses it with how long until a call may be tried again.
    pub(super) fn admit(&self) -> Result<Pass<'_>, Duration> {
        let mut state = self.state.lock();
        let probe = match *state {
            State::Closed { .. } => false,
            State::Open { until } => {
                let now = crate::clock::now();
                if now < until {
                    return Err(until - now);
                }
                *state = State::HalfOpen;
                true
            }
            // The probe decides soon; its caller's timeout bounds it.
            State::HalfOpen => return Err(Duration::from_secs(1)),
        };
        Ok(Pass {
            breaker: self,
            probe,
            settled: false,
        })
    }

    fn record(&self, probe: bool, verdict: Verdict) {
        let mut state = self.state.lock();
        let next = match (*state, verdict) {
            (State::Closed { .. }, Verdict::Healthy) => State::Closed { failures: 0 },
            (State::Closed { failures }, Verdict::Failed) => {
                let failures = failures + 1;
                if failures >= self.threshold {
                    tracing::warn!(
                        upstream = %self.upstream,
                        failures,
                        cool_down = ?self.cool_down,
                        "circuit opened: calls are refused until the cool-down is over"
                    );
                    self.open()
                } else {
                    State::Closed { failures }
                }
            }
            (s @ State::Closed { .. }, Verdict::Neutral) => s,
            // Only the probe's verdict moves a half-open breaker; a call let through before
            // the breaker opened tells nothing about the upstream now.
            (State::HalfOpen, Verdict::Healthy) if probe => {
                tracing::info!(upstream = %self.upstream, "circuit closed: the probe succeeded");
                State::Closed { failures: 0 }
            }
            (State::HalfOpen, Verdict::Failed) if probe => {
                tracing::warn!(upstream = %self.upstream, "circuit opened again: the probe failed");
                self.open()
            }
            (State::HalfOpen, Verdict::Neutral) if probe => State::Open {
                until: crate::clock::now(),
            },
            (s @ (State::HalfOpen | State::Open { .. }), _) => s,
        };
        *state = next;
    }

    fn open(&self) -> State {
        State::Open {
            until: crate::clock::now() + self.cool_down,
        }
    }
}

impl Pass<'_> {
    /// Reports how the call went.
    pub(super) fn settle(mut self, verdict: Verdict) {
        self.settled = true;
        self.breaker.record(self.probe, verdict);
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        if !self.settled {
            // Cancelled: nothing was learnt, and a probe must not leave the breaker half-open.
            self.breaker.record(self.probe, Verdict::Neutral);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(failures: u32, cool_down_ms: u64) -> Breaker {
        Breaker::new(
            "up",
            &BreakerConfig {
                failures,
                cool_down: Duration::from_millis(cool_down_ms),
            },
        )
        .expect("on")
    }

    fn call(b: &Breaker, verdict: Verdict) -> Result<(), Duration> {
        b.admit().map(|p| p.settle(verdict))
    }

    #[test]
    fn failures_zero_turns_it_off() {
        let off = BreakerConfig {
            failures: 0,
            cool_down: Duration::ZERO,
        };
        assert!(Breaker::new("up", &off).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn consecutive_failures_open_it_and_a_success_resets_the_count() {
        let b = breaker(3, 10_000);
        for _ in 0..2 {
            call(&b, Verdict::Failed).unwrap();
        }
        call(&b, Verdict::Healthy).unwrap();
        // Neutral outcomes neither count nor reset.
        for v in [Verdict::Failed, Verdict::Neutral, Verdict::Failed] {
            call(&b, v).unwrap();
        }
        call(&b, Verdict::Failed).unwrap();
        // Open: refused at once with the remaining cool-down.
        assert_eq!(call(&b, Verdict::Healthy), Err(Duration::from_secs(10)));
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(b.admit().err(), Some(Duration::from_secs(6)));
    }

    #[tokio::test(start_paused = true)]
    async fn after_the_cool_down_one_probe_decides() {
        let b = breaker(1, 200);
        call(&b, Verdict::Failed).unwrap();
        assert!(b.admit().is_err());
        tokio::time::advance(Duration::from_millis(200)).await;
        let probe = b.admit().expect("the probe goes through");
        assert!(b.admit().is_err(), "one probe at a time");
        probe.settle(Verdict::Failed);
        // Re-opened for a whole cool-down.
        assert_eq!(b.admit().err(), Some(Duration::from_millis(200)));
        tokio::time::advance(Duration::from_millis(200)).await;
        call(&b, Verdict::Healthy).unwrap();
        // Closed: calls go through again, and one failure (threshold 1) opens it.
        call(&b, Verdict::Healthy).unwrap();
        call(&b, Verdict::Failed).unwrap();
        assert!(b.admit().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_dropped_without_a_verdict_lets_the_next_call_probe() {
        let b = breaker(1, 200);
        call(&b, Verdict::Failed).unwrap();
        tokio::time::advance(Duration::from_millis(200)).await;
        drop(b.admit().expect("probe"));
        let again = b.admit().expect("the next call is the probe");
        again.settle(Verdict::Healthy);
        assert_eq!(*b.state.lock(), State::Closed { failures: 0 });
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_answer_from_before_the_opening_does_not_close_it() {
        let b = breaker(1, 200);
        let early = b.admit().unwrap();
        call(&b, Verdict::Failed).unwrap();
        early.settle(Verdict::Healthy);
        assert!(b.admit().is_err(), "still open");
    }
}
