//! [`Executor`].

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use serde_json::Value;
use tower::Service;

use super::super::BoxFuture;
use crate::capture::CallLog;
use crate::context::RequestMeta;

/// Bytes kept of each upstream body in a capture.
const CAPTURE_CALL_CAP: usize = 64 * 1024;
use crate::error::{GatewayError, RouteLimit, UpstreamError};
use crate::mapping::exec::{CallBudget, CallUpstream, ExecEnv, Outcome, execute};
use crate::mapping::pack::Route;

/// A translated request: the route and its execution context.
#[derive(Debug)]
pub struct ExecRequest {
    /// The route to run.
    pub route: Arc<Route>,
    /// The context its templates and filters read (`path`, `query`, `body`, `principal`…).
    pub ctx: Value,
    /// The client's query parameters, decoded, in order.
    pub query_pairs: Vec<(String, String)>,
    /// The request's ids and tracecode, passed on to its upstream calls.
    pub meta: RequestMeta,
    /// Collects the upstream exchanges when the request's bodies are captured.
    pub calls: Option<CallLog>,
}

/// Runs routes.
#[derive(Clone)]
pub struct Executor {
    upstreams: Arc<dyn CallUpstream>,
}

impl Executor {
    /// An executor making its calls through `upstreams`.
    pub fn new(upstreams: Arc<dyn CallUpstream>) -> Self {
        Self { upstreams }
    }
}

impl Service<ExecRequest> for Executor {
    type Response = Outcome;
    type Error = GatewayError;
    type Future = BoxFuture<'static, Result<Outcome, GatewayError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        Poll::Ready(Ok::<(), Infallible>(())).map(|r| r.map_err(|never| match never {}))
    }

    fn call(&mut self, req: ExecRequest) -> Self::Future {
        let upstreams = self.upstreams.clone();
        let limits = req.route.plan.limits;
        let saga = req.route.plan.saga;
        let route = req.route.id.clone();
        let run = async move {
            let env = ExecEnv {
                upstreams: &*upstreams,
                meta: &req.meta,
                query_pairs: &req.query_pairs,
                calls: req.calls.as_ref(),
                capture_cap: CAPTURE_CALL_CAP,
                directive: Default::default(),
                budget: CallBudget::for_route(&req.route),
            };
            execute(&req.route, req.ctx, &env)
                .await
                .map_err(|e| after_calls(e, env.budget.sent_count()))
        };
        if saga {
            // A write of several calls is never cut off halfway: it runs on a task of its
            // own to its end, or to its undoing, even when the client goes away or the
            // deadline passes (the stage loop checks the deadline between stages instead).
            Box::pin(async move {
                tokio::spawn(run).await.map_err(|e| {
                    GatewayError::from(crate::error::Internal::Failed {
                        doing: "running a multi-call write on its own task",
                        source: Box::new(e),
                    })
                })?
            })
        } else {
            Box::pin(async move {
                tokio::time::timeout(limits.deadline, run)
                    .await
                    .map_err(|_| RouteLimit::Deadline {
                        route,
                        deadline: limits.deadline,
                    })?
            })
        }
    }
}

/// A call refused before it was sent, in a request whose other calls had been sent, is
/// not "work not done": it is marked so, for the layers that give a request's cost back.
fn after_calls(e: GatewayError, sent: u32) -> GatewayError {
    match e {
        GatewayError::Upstream(u) if u.nothing_sent() && sent > 0 => {
            GatewayError::Upstream(UpstreamError::AfterCalls {
                sent,
                inner: Box::new(u),
            })
        }
        other => other,
    }
}
