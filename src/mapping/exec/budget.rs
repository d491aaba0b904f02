//! A request's call budget: how many upstream calls its route may still make. Each call
//! sent takes one; a fan-out (`for_each`, a walk's level) is checked whole before its first
//! call, so a request whose upstream data asks for more calls than the route allows is
//! refused before it makes the extra ones, not after. Compensations are not counted: undoing
//! a write is never refused for lack of budget.
//!
//! It also counts the calls that actually left (a call refused before anything was sent —
//! no connection, circuit open, queue full — does not count): a request refused by an
//! upstream after some of its calls had left is not "work not done".

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::{GatewayError, RouteLimit};
use crate::mapping::pack::Route;

/// See the module docs.
#[derive(Debug)]
pub struct CallBudget {
    left: AtomicU32,
    max: u32,
    route: Arc<str>,
    sent: AtomicU32,
}

impl CallBudget {
    /// The budget of one request to `route`.
    pub fn for_route(route: &Route) -> Self {
        let max = route.plan.limits.max_calls;
        Self {
            left: AtomicU32::new(max),
            max,
            route: route.id.clone(),
            sent: AtomicU32::new(0),
        }
    }

    /// Notes that a call left (its request was written, whatever came back).
    pub(super) fn sent(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    /// How many calls left.
    pub fn sent_count(&self) -> u32 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Takes one call from the budget, or refuses it.
    pub(super) fn take(&self) -> Result<(), GatewayError> {
        self.left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(1)
            })
            .map(drop)
            .map_err(|_| self.exceeded())
    }

    /// Refuses a fan-out of `calls` calls the budget has no room left for.
    pub(super) fn check(&self, calls: usize) -> Result<(), GatewayError> {
        let left = self.left.load(Ordering::Relaxed);
        if u32::try_from(calls).is_ok_and(|n| n <= left) {
            Ok(())
        } else {
            Err(self.exceeded())
        }
    }

    /// How many calls were taken.
    pub fn used(&self) -> u32 {
        self.max - self.left.load(Ordering::Relaxed)
    }

    fn exceeded(&self) -> GatewayError {
        RouteLimit::Calls {
            route: self.route.clone(),
            max_calls: self.max,
        }
        .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::pack::shipped_catalog;

    #[test]
    fn takes_until_empty_and_checks_fan_outs_whole() {
        let catalog = shipped_catalog();
        let route = &catalog.routes[0];
        let b = CallBudget::for_route(route);
        let max = route.plan.limits.max_calls as usize;
        assert!(b.check(max).is_ok());
        assert!(b.check(max + 1).is_err());
        b.take().unwrap();
        assert_eq!(b.used(), 1);
        assert!(b.check(max).is_err(), "one is gone");
        for _ in 1..max {
            b.take().unwrap();
        }
        let err = b.take().unwrap_err();
        assert_eq!(err.status(), http::StatusCode::BAD_GATEWAY);
        assert!(err.to_string().contains("max_calls"), "{err}");
        assert_eq!(b.used() as usize, max, "a refused call is not counted");
    }
}
