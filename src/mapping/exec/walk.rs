//! `walk`: a tree visited breadth-first from the start ids, one call per node, a level's
//! calls at most `concurrency` at a time. Ids already seen are not visited again and depth
//! and node count are capped: upstream data with a cycle or no end cannot keep it going.

use std::collections::{HashSet, VecDeque};

use serde_json::Value;

use super::calls::StepCall;
use super::fanout::perform_each;
use crate::error::{GatewayError, Internal};
use crate::mapping::jq::JqFilter;

/// Walks from `start` (an id or a list of them), each node seen as `node`; `children` picks
/// the next ids out of a node's answer. The step's value lists every node visited with its
/// parent, depth and answer, level by level.
pub(super) async fn walk(
    at: StepCall<'_>,
    start: Value,
    children: &JqFilter,
    max_depth: usize,
    max_nodes: usize,
    concurrency: usize,
) -> Result<Value, GatewayError> {
    let StepCall { route, step, .. } = at;
    let mut visited: HashSet<String> = HashSet::new();
    let mut frontier: VecDeque<(Value, Value)> = VecDeque::new();
    for id in as_list(start) {
        if visited.insert(id_key(&id)) {
            frontier.push_back((id, Value::Null));
        }
    }
    let mut out = Vec::new();
    let mut depth = 0usize;
    while !frontier.is_empty() && depth <= max_depth {
        let level: Vec<(Value, Value)> = frontier.drain(..).collect();
        at.env.budget.check(level.len())?;
        let nodes = level.iter().map(|(node, _)| node);
        let answers = perform_each(at, "node", nodes, concurrency).await;
        for ((node, parent), answer) in level.into_iter().zip(answers) {
            let (_, response) = answer?;
            let kids = children.run(&response).map_err(|source| Internal::Filter {
                route: route.id.clone(),
                part: format!("step {} walk.children", step.name),
                source,
            })?;
            for kid in as_list(kids) {
                if visited.len() >= max_nodes {
                    break;
                }
                if visited.insert(id_key(&kid)) {
                    frontier.push_back((kid, node.clone()));
                }
            }
            out.push(serde_json::json!({"node": node, "parent": parent, "depth": depth, "response": response}));
        }
        depth += 1;
    }
    Ok(Value::Array(out))
}

/// A filter result as ids: a list (nulls dropped), or one id.
fn as_list(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a.into_iter().filter(|x| !x.is_null()).collect(),
        Value::Null => Vec::new(),
        other @ (Value::Bool(_) | Value::Number(_) | Value::String(_) | Value::Object(_)) => {
            vec![other]
        }
    }
}

/// The visited-set key of an id: a string as itself, anything else as its JSON text.
fn id_key(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other @ (Value::Null
        | Value::Bool(_)
        | Value::Number(_)
        | Value::Array(_)
        | Value::Object(_)) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::mapping::exec::OutBody;
    use crate::mapping::exec::fake::{Fake, get_x, run};

    #[tokio::test]
    async fn walk_is_breadth_first_and_cycle_safe() {
        let (_d, cat) = get_x(
            r#"
[[route.step]]
name = "tree"
call = "GET up /children/{node}"
walk = { start = '["a"]', children = ".kids", max_depth = 10, max_nodes = 100 }
[route.response]
jq = "[.steps.tree[] | {node, parent, depth}]"
"#,
        );
        // a → b, c; b → a (cycle), d; c → d (diamond)
        let fake = Fake::new(&[
            ("GET /children/a", 200, json!({"kids": ["b", "c"]})),
            ("GET /children/b", 200, json!({"kids": ["a", "d"]})),
            ("GET /children/c", 200, json!({"kids": ["d"]})),
            ("GET /children/d", 200, json!({"kids": []})),
        ]);
        let out = run(&cat, &fake, json!({})).await.unwrap();
        assert_eq!(
            out.body,
            OutBody::Json(json!([
                {"node": "a", "parent": null, "depth": 0},
                {"node": "b", "parent": "a", "depth": 1},
                {"node": "c", "parent": "a", "depth": 1},
                {"node": "d", "parent": "b", "depth": 2},
            ]))
        );
        assert_eq!(fake.calls().len(), 4, "each node visited once");
    }

    #[tokio::test]
    async fn walk_respects_its_bounds() {
        let (_d, cat) = get_x(
            r#"
[[route.step]]
name = "tree"
call = "GET up /children/{node}"
walk = { start = '["n0"]', children = '[.next]', max_depth = 3, max_nodes = 100 }
[route.response]
jq = "[.steps.tree[].node]"
"#,
        );
        let answers: Vec<(String, u16, Value)> = (0..10)
            .map(|i| {
                (
                    format!("GET /children/n{i}"),
                    200,
                    json!({"next": format!("n{}", i + 1)}),
                )
            })
            .collect();
        let refs: Vec<(&str, u16, Value)> = answers
            .iter()
            .map(|(a, s, v)| (a.as_str(), *s, v.clone()))
            .collect();
        let fake = Fake::new(&refs);
        let out = run(&cat, &fake, json!({})).await.unwrap();
        assert_eq!(out.body, OutBody::Json(json!(["n0", "n1", "n2", "n3"])));
    }
}
