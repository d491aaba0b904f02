//! [`AuditFuture`]: the layers below's answer; when it comes, the request's row goes to the
//! store's writer. A request whose future is dropped before its answer (the client went
//! away, the shutdown's grace ran out) still writes its row, with status 499 (nginx's
//! "client closed request"), from [`Pending`]'s drop.

use std::future::Ready;
use std::sync::Arc;

use futures_util::future::Either;
use std::time::Instant;

use super::super::finish::{Answer, Finish, Finishing};
use super::super::tenancy::BodyTargets;
use crate::clock::WallClock;
use crate::mapping::pack::Route;
use crate::store::{AuditRow, AuditSink, AuditSlot};

/// The audit layer's future: a request missing its context is refused at once.
pub type AuditFuture<F> = Either<Ready<Answer>, Finishing<F, Pending>>;

/// The status of a row whose request was dropped before it was answered.
const CLIENT_CLOSED: u16 = 499;

/// A request's row to come: written with the answer, or with [`CLIENT_CLOSED`] when dropped
/// without one.
pub struct Pending {
    row: Option<(AuditSlot, Parts)>,
}

impl Pending {
    /// The row of a request whose room in the queue is `slot`.
    pub(super) fn new(slot: AuditSlot, parts: Parts) -> Self {
        Self {
            row: Some((slot, parts)),
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some((slot, parts)) = self.row.take() {
            // The points stay charged, as the quota layer keeps them for a request dropped
            // mid-flight: the upstream may have done the work.
            let points = parts.points;
            parts.record(slot, CLIENT_CLOSED, points, None);
        }
    }
}

/// What the row needs from the request, taken when it was called.
pub(super) struct Parts {
    pub(super) sink: Arc<dyn AuditSink>,
    pub(super) server: Arc<str>,
    pub(super) route: Arc<Route>,
    pub(super) user: Arc<str>,
    pub(super) company: Arc<str>,
    pub(super) tracecode: Arc<str>,
    pub(super) started: Instant,
    pub(super) wall: WallClock,
    /// What the quota layer reserves; a route that settles its points says so in the answer.
    pub(super) points: u64,
    pub(super) fingerprint: u64,
    /// The company ids in the request's path and query the route declares (the body's come
    /// with a successful answer, [`BodyTargets`]).
    pub(super) targets: Arc<[Arc<str>]>,
    /// The client's address, when the server gave it.
    pub(super) ip: Option<std::net::IpAddr>,
}

impl Finish for Pending {
    fn finish(mut self, answer: Answer) -> Answer {
        if let Some((slot, parts)) = self.row.take() {
            parts.answered(slot, &answer);
        }
        answer
    }
}

impl Parts {
    fn answered(self, slot: AuditSlot, result: &Answer) {
        let body_targets = match result {
            Ok(r) => r.extensions().get::<BodyTargets>(),
            Err(_) => None,
        };
        let (status, points) = match result {
            Ok(r) => (
                r.status().as_u16(),
                r.extensions()
                    .get::<super::super::SettledPoints>()
                    .map_or(self.points, |s| s.0),
            ),
            // Given back by the rate-limit and quota layers: recorded as not charged, so
            // usage read back from the trail agrees with the counters.
            Err(e) if self.route.pricing.count_success && super::super::refundable(result) => {
                (e.status().as_u16(), 0)
            }
            Err(e) => (e.status().as_u16(), self.points),
        };
        self.record(slot, status, points, body_targets);
    }

    fn record(self, slot: AuditSlot, status: u16, points: u64, body: Option<&BodyTargets>) {
        let targets = match body {
            Some(b) => self
                .targets
                .iter()
                .chain(b.0.iter().filter(|t| !self.targets.contains(t)))
                .cloned()
                .collect(),
            None => self.targets,
        };
        self.sink.record_reserved(
            slot,
            AuditRow {
                time_ms: self.wall.now_ms(),
                username: self.user,
                company_key: self.company,
                tracecode: self.tracecode,
                server: self.server,
                service: self.route.pack.service.clone(),
                operation: self.route.id.clone(),
                method_group: self.route.method_group.clone(),
                points: u32::try_from(points).unwrap_or(u32::MAX),
                duration_ms: self.started.elapsed().as_millis() as u64,
                status,
                fingerprint: self.fingerprint,
                targets,
                ip: self.ip,
            },
        );
    }
}
