//! `for_each`: one call per item a filter yields, at most `concurrency` in flight, the
//! answers kept in the items' order. The item count is bounded before anything is sent, so
//! a filter that yields too much fails the step instead of flooding the upstream.

use std::future::Future;
use std::pin::Pin;

use futures_util::StreamExt;
use serde_json::Value;

use super::calls::StepCall;
use super::eval::kind;
use crate::error::{GatewayError, Internal};

/// One fanned-out call.
pub(super) type Fanned<'a> =
    Pin<Box<dyn Future<Output = Result<(u16, Value), GatewayError>> + Send + 'a>>;

/// Runs `call` once per value, each seen under `name` (`item`, `node`), at most
/// `concurrency` in flight; the answers in the values' order.
pub(super) async fn perform_each<'a>(
    at: StepCall<'a>,
    name: &'a str,
    values: impl Iterator<Item = &'a Value>,
    concurrency: usize,
) -> Vec<Result<(u16, Value), GatewayError>> {
    // Boxed and collected first: the opaque future of `perform` made in a closure
    // is not provably `Send` for all lifetimes (a rustc limitation).
    let futs: Vec<Fanned<'a>> = values
        .map(|v| Box::pin(at.perform(Some((name, v)))) as Fanned<'a>)
        .collect();
    futures_util::stream::iter(futs)
        .buffered(concurrency)
        .collect()
        .await
}

/// Runs `call` once per element of `items` (what the step's `for_each` filter yielded),
/// each seen as `item`; the step's value is the array of their answers. The items whose
/// call succeeded go to `done` when the step has a compensation, even when another item's
/// call failed: each of them is undone.
pub(super) async fn for_each(
    at: StepCall<'_>,
    items: Value,
    concurrency: usize,
    max_items: usize,
    done: &mut Vec<Value>,
) -> Result<Value, GatewayError> {
    let StepCall { route, step, .. } = at;
    let Value::Array(items) = items else {
        return Err(Internal::Answer {
            route: route.id.clone(),
            detail: format!(
                "step {}: for_each must yield an array, got {}",
                step.name,
                kind(&items)
            ),
        }
        .into());
    };
    if items.len() > max_items {
        return Err(Internal::Answer {
            route: route.id.clone(),
            detail: format!(
                "step {}: {} items exceed the fan-out limit of {max_items}",
                step.name,
                items.len()
            ),
        }
        .into());
    }
    at.env.budget.check(items.len())?;
    let results = perform_each(at, "item", items.iter(), concurrency).await;
    if at.step.compensate.is_some() {
        done.extend(
            items
                .iter()
                .zip(&results)
                .filter(|(_, r)| r.is_ok())
                .map(|(item, _)| item.clone()),
        );
    }
    let values = results
        .into_iter()
        .map(|r| r.map(|(_, v)| v))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Value::Array(values))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::mapping::exec::OutBody;
    use crate::mapping::exec::fake::{Fake, get_x, run};

    #[tokio::test]
    async fn fan_out_keeps_item_order() {
        let (_d, cat) = get_x(
            r#"
[[route.step]]
name = "each"
call = "GET up /item/{item}"
for_each = "[3, 1, 2]"
concurrency = 2
[route.response]
jq = "[.steps.each[].n]"
"#,
        );
        let fake = Fake::new(&[
            ("GET /item/1", 200, json!({"n": 1})),
            ("GET /item/2", 200, json!({"n": 2})),
            ("GET /item/3", 200, json!({"n": 3})),
        ]);
        let out = run(&cat, &fake, json!({})).await.unwrap();
        assert_eq!(out.body, OutBody::Json(json!([3, 1, 2])));
    }

    /// A fan-out the route's call budget has no room for is refused before its first call.
    #[tokio::test]
    async fn a_fan_out_past_the_call_budget_is_refused_before_it_starts() {
        let (_d, cat) = get_x(
            r#"
max_calls = 3
[[route.step]]
name = "list"
call = "GET up /list"
[[route.step]]
name = "each"
call = "GET up /item/{item}"
for_each = ".steps.list.ids"
[route.response]
jq = "[.steps.each[].n]"
"#,
        );
        let fake = Fake::new(&[
            ("GET /list", 200, json!({"ids": [1, 2, 3]})),
            ("GET /item/", 200, json!({"n": 1})),
        ]);
        let err = run(&cat, &fake, json!({})).await.unwrap_err();
        assert_eq!(err.status(), http::StatusCode::BAD_GATEWAY);
        assert!(err.to_string().contains("3 upstream calls"), "{err}");
        assert_eq!(fake.calls(), vec!["GET /list"], "no item was fetched");

        // Two items fit the budget of three.
        let fake = Fake::new(&[
            ("GET /list", 200, json!({"ids": [1, 2]})),
            ("GET /item/", 200, json!({"n": 1})),
        ]);
        let out = run(&cat, &fake, json!({})).await.unwrap();
        assert_eq!(out.calls, 3);
    }
}
