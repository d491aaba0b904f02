//! Undoing a failed route's finished steps: each done step's `compensate` call, newest
//! first, so a multi-call write never leaves the upstream half-changed. A compensation that
//! fails cannot be undone in turn; it is logged as an error for someone to repair, and the
//! client gets the original failure.

use serde_json::Value;

use super::eval::LazyVal;
use super::request::build_request;
use super::{Done, ExecEnv};
use crate::error::GatewayError;
use crate::mapping::pack::{Call, Fan, Route, Step, StepKind};

/// Runs the compensations of `done` (the steps finished before the failure, in order) in
/// reverse, against the context as it stood then: a `for_each` step's once per item whose
/// call succeeded (newest first, each seeing its own `item`), any other step's once.
pub(super) async fn compensate(route: &Route, done: &[Done<'_>], ctx: &Value, env: &ExecEnv<'_>) {
    let ctx_val = LazyVal::new(ctx);
    for Done { step, items } in done.iter().rev() {
        let Some(call) = &step.compensate else {
            continue;
        };
        let fanned = matches!(
            step.kind,
            StepKind::Call {
                fan: Fan::ForEach { .. },
                ..
            }
        );
        if fanned {
            for item in items.iter().rev() {
                undo(route, step, call, ctx, &ctx_val, Some(("item", item)), env).await;
            }
        } else {
            undo(route, step, call, ctx, &ctx_val, None, env).await;
        }
    }
}

/// One compensating call, its outcome logged (it cannot be undone in turn).
async fn undo(
    route: &Route,
    step: &Step,
    call: &Call,
    ctx: &Value,
    ctx_val: &LazyVal<'_>,
    item: Option<(&str, &Value)>,
    env: &ExecEnv<'_>,
) {
    let result = match build_request(route, &step.name, call, ctx, ctx_val, item, env) {
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

    /// A fan-out that removed several associations restores every one of them, each with
    /// its own item, the ones of a fan-out that failed halfway included.
    #[tokio::test]
    async fn every_item_a_fan_out_removed_is_restored() {
        let route = |last: &str| {
            format!(
                r#"
[[route]]
id = "r"
match = "DELETE /co/{{id}}"
tenancy = {{ other = ["path.id"] }}
[[route.step]]
name = "assocs"
call = "GET up /assocs/{{id}}"
[[route.step]]
name = "detach"
call = "DELETE up /assoc/{{item.id}}"
for_each = ".steps.assocs.list"
concurrency = 1
[route.step.compensate]
call = "POST up /assoc"
body = "{{reseller: .item.reseller}}"
[[route.step]]
name = "disable"
call = "{last}"
"#
            )
        };
        let assocs = json!({"list": [
            {"id": "a1", "reseller": "r1"},
            {"id": "a2", "reseller": "r2"},
            {"id": "a3", "reseller": "r3"},
        ]});
        // The step after the fan-out fails: all three come back, newest first.
        let (_d, cat) = catalog(&route("PATCH up /disable"));
        let fake = Fake::new(&[
            ("GET /assocs/c1", 200, assocs.clone()),
            ("DELETE /assoc/", 204, Value::Null),
            ("PATCH /disable", 500, json!({"message": "down"})),
            ("POST /assoc", 201, json!({})),
        ]);
        run(&cat, &fake, json!({"path": {"id": "c1"}}))
            .await
            .unwrap_err();
        let restored: Vec<Value> = fake
            .calls
            .lock()
            .iter()
            .filter(|(c, _)| c == "POST /assoc")
            .map(|(_, b)| b["reseller"].clone())
            .collect();
        assert_eq!(restored, vec![json!("r3"), json!("r2"), json!("r1")]);

        // The fan-out itself fails on its second item: the first comes back, only it.
        let (_d, cat) = catalog(&route("PATCH up /disable"));
        let fake = Fake::new(&[
            ("GET /assocs/c1", 200, assocs),
            ("DELETE /assoc/a2", 500, json!({"message": "down"})),
            ("DELETE /assoc/", 204, Value::Null),
            ("POST /assoc", 201, json!({})),
        ]);
        run(&cat, &fake, json!({"path": {"id": "c1"}}))
            .await
            .unwrap_err();
        let calls = fake.calls.lock().clone();
        let restored: Vec<Value> = calls
            .iter()
            .filter(|(c, _)| c == "POST /assoc")
            .map(|(_, b)| b["reseller"].clone())
            .collect();
        assert_eq!(
            restored,
            vec![json!("r3"), json!("r1")],
            "a1 and a3 went through (the fan-out sends them all): {calls:?}"
        );
        assert!(!calls.iter().any(|(c, _)| c == "PATCH /disable"));
    }
}
