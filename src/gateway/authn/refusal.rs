//! [`RefusalAudit`]: the audit row of a failed authentication.
//!
//! Only failures on the credentials (401) are written: each spent a cell of its IP's budget
//! of failures, so a client cannot write rows faster than that budget lets it fail. The 429s
//! and 503s that refuse an attempt before any check are counted in the metrics instead.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::clock::WallClock;
use crate::context::RequestMeta;
use crate::mapping::pack::Route;
use crate::store::{AuditRow, AuditSink};

/// Where refused attempts are recorded.
#[derive(Clone)]
pub(super) struct RefusalAudit {
    pub(super) sink: Arc<dyn AuditSink>,
    pub(super) server: Arc<str>,
    pub(super) wall: WallClock,
}

/// What the row of one attempt needs, taken when the request was called.
pub(super) struct Attempt {
    audit: RefusalAudit,
    route: Arc<Route>,
    tracecode: Arc<str>,
    started: Instant,
    ip: Option<IpAddr>,
}

impl RefusalAudit {
    /// The pending row of an attempt on `route`.
    pub(super) fn attempt(
        &self,
        route: &Arc<Route>,
        meta: &RequestMeta,
        ip: Option<IpAddr>,
    ) -> Attempt {
        Attempt {
            audit: self.clone(),
            route: route.clone(),
            tracecode: meta.tracecode.clone(),
            started: meta.started,
            ip,
        }
    }
}

impl Attempt {
    /// Writes the row of the attempt, refused with `status`.
    pub(super) fn refused(self, status: u16) {
        let anonymous = crate::identity::Principal::anonymous();
        self.audit.sink.record_audit(AuditRow {
            time_ms: self.audit.wall.now_ms(),
            username: anonymous.user,
            company_key: anonymous.company,
            tracecode: self.tracecode,
            server: self.audit.server,
            service: self.route.pack.service.clone(),
            operation: self.route.id.clone(),
            method_group: self.route.method_group.clone(),
            points: 0,
            duration_ms: self.started.elapsed().as_millis() as u64,
            status,
            // Nothing was done: no request to count as "the same" for unique points.
            fingerprint: 0,
            targets: Arc::from([]),
            ip: self.ip,
        });
    }
}
