//! Undoing a failed route's finished steps: each done step's `compensate` call, newest
//! first, so a multi-call write never leaves the upstream half-changed. A compensation that
//! fails cannot be undone in turn; it is logged as an error for someone to repair, and the
//! client gets the original failure.

use serde_json::Value;

use super::ExecEnv;
use super::eval::LazyVal;
use super::request::build_request;
use crate::error::GatewayError;
use crate::mapping::pack::{Route, Step};

/// Runs the compensations of `done` (the steps finished before the failure, in order) in
/// reverse, against the context as it stood then.
pub(super) async fn compensate(route: &Route, done: &[&Step], ctx: &Value, env: &ExecEnv<'_>) {
    let ctx_val = LazyVal::new(ctx);
    for step in done.iter().rev() {
        let Some(call) = &step.compensate else {
            continue;
        };
        let result = match build_request(route, &step.name, call, ctx, &ctx_val, None, env) {
            Ok(req) => env
                .upstreams
                .call(&call.upstream, req)
                .await
                .map_err(GatewayError::from),
            Err(e) => Err(e),
        };
        match result {
            Ok(resp) if resp.status.is_success() => {
                tracing::warn!(route = %route.id, step = %step.name, tracecode = %env.meta.tracecode, "compensated after a failed step");
            }
            Ok(resp) => {
                tracing::error!(route = %route.id, step = %step.name, status = resp.status.as_u16(), tracecode = %env.meta.tracecode, "compensation answered an error: upstream state needs repair");
            }
            Err(e) => {
                tracing::error!(route = %route.id, step = %step.name, error = %e, tracecode = %env.meta.tracecode, "compensation failed: upstream state needs repair");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use http::StatusCode;
    use serde_json::{Value, json};

    use crate::mapping::exec::fake::{Fake, catalog, run};

    #[tokio::test]
    async fn a_failed_step_compensates_the_done_ones_in_reverse() {
        let (_d, cat) = catalog(
            r#"
[[route]]
id = "r"
match = "PATCH /move/{id}"
tenancy = { other = ["path.id"] }
[[route.step]]
name = "find"
call = "GET up /assoc/{id}"
[[route.step]]
name = "skipped"
when = "false"
call = "DELETE up /never"
[route.step.compensate]
call = "POST up /never-undo"
[[route.step]]
name = "remove"
call = "DELETE up /assoc/{steps.find.id}"
[route.step.compensate]
call = "POST up /assoc"
body = "{restore: .steps.find.id}"
[[route.step]]
name = "create"
call = "POST up /assoc-new"
"#,
        );
        let fake = Fake::new(&[
            ("GET /assoc/c1", 200, json!({"id": "a1"})),
            ("DELETE /assoc/a1", 204, Value::Null),
            ("POST /assoc-new", 409, json!({"message": "conflict"})),
            ("POST /assoc", 201, json!({})),
        ]);
        let err = run(&cat, &fake, json!({"path": {"id": "c1"}}))
            .await
            .unwrap_err();
        assert_eq!(err.status(), StatusCode::CONFLICT);
        assert_eq!(
            fake.calls(),
            vec![
                "GET /assoc/c1",
                "DELETE /assoc/a1",
                "POST /assoc-new",
                "POST /assoc"
            ]
        );
        let restore = fake.calls.lock()[3].1.clone();
        assert_eq!(restore, json!({"restore": "a1"}));
    }
}
