//! Routes that pass one JSON call's answer on unchanged ([`verbatim_call`]): recognising
//! them, and running them with the answer checked but kept as bytes. They skip the stage
//! loop, but take their status checks and errors from the same helpers (`calls`,
//! `outcome`), so both paths fail alike.

use serde_json::Value;

use super::calls::{accepted, decode_upstream, refused, send, unreadable};
use super::eval::LazyVal;
use super::outcome::{answer_status, directive};
use super::request::build_request;
use super::{ExecEnv, OutBody, Outcome};
use crate::dialect::Dialect;
use crate::error::GatewayError;
use crate::mapping::jq::Seg;
use crate::mapping::pack::{Call, Fan, Paging, Route, Step, StepKind, UpstreamFormat};

/// The call whose upstream answer is the route's answer unchanged: a route of one call (no
/// `when`, no fan-out) whose response is `.steps.<that call>`, from a JSON upstream to a JSON
/// client, not paged and with no `points_settle` (which reads the answer). Such an answer is
/// checked as JSON and sent on as it came: parsing it into values only to write the same JSON
/// again was the largest part of these routes' work for bodies of any size, and the bytes as
/// sent keep what values would not (number spelling beyond `f64`, key order, escapes).
pub fn verbatim_call(route: &Route) -> Option<(&Step, &Call)> {
    let [stage] = route.plan.stages.as_slice() else {
        return None;
    };
    let [step] = stage.as_slice() else {
        return None;
    };
    let StepKind::Call {
        call,
        fan: Fan::One,
    } = &step.kind
    else {
        return None;
    };
    let json_client = match route.pack.client_dialect {
        Dialect::RedapiV1 | Dialect::AppDirect | Dialect::Fusion | Dialect::Admin => true,
        Dialect::LongJump => false,
    };
    let json_upstream = match route.pack.upstream_format {
        UpstreamFormat::Json => true,
        UpstreamFormat::LongJumpXml(_) => false,
    };
    if !json_client
        || !json_upstream
        || step.when.is_some()
        || route.paging == Paging::Rosetta
        || route.pricing.settle.is_some()
        || route.request.search.is_some()
        || route.plan.response.found.is_some()
    {
        return None;
    }
    match route.plan.response.jq.as_ref()?.path()? {
        [Seg::Key(steps), Seg::Key(name)] if steps == "steps" && *name == step.name => {
            Some((step, call))
        }
        _ => None,
    }
}

/// Runs a [`verbatim_call`] route: the call, its status checks as [`perform`](super::calls::perform) makes them, and
/// its body passed on as [`OutBody::Raw`].
pub(super) async fn verbatim(
    route: &Route,
    step: &Step,
    call: &Call,
    ctx: &Value,
    env: &ExecEnv<'_>,
) -> Result<Outcome, GatewayError> {
    let req = build_request(route, &step.name, call, ctx, &LazyVal::new(ctx), None, env)?;
    let resp = send(call, req, env).await?;
    let status = resp.status.as_u16();
    if !accepted(step, &resp) {
        let body = decode_upstream(&route.pack.upstream_format, &call.upstream, &resp, None)?;
        return Err(refused(step, call, &resp, &body));
    }
    let text = resp.body.trim_ascii();
    let body = if text.is_empty() || text == b"null" {
        // As a value, `null` is "no body" (an upstream 202/204 passed through).
        OutBody::Empty
    } else {
        // The whole body, as the parsing path reads it: an error's line and column are the same.
        serde_json::from_slice::<serde::de::IgnoredAny>(&resp.body)
            .map_err(|e| unreadable(&call.upstream, &resp, "JSON", e))?;
        OutBody::Raw(resp.body.slice_ref(text))
    };
    Ok(Outcome {
        status: answer_status(route, |name| (name == step.name).then_some(status)),
        body,
        cache: directive(env),
        calls: env.budget.used(),
    })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http::StatusCode;
    use serde_json::{Value, json};

    use super::verbatim_call;
    use crate::context::RequestMeta;
    use crate::dialect::Dialect;
    use crate::mapping::exec::fake::{Fake, catalog, run};
    use crate::mapping::exec::{ExecEnv, OutBody, execute};
    use crate::mapping::pack::{Catalog, UpstreamFormat};

    /// One call to `GET up /a`, answered by `response` (`.steps.up` passes it on verbatim).
    fn one_call(response: &str, extra: &str) -> (tempfile::TempDir, Catalog) {
        catalog(&format!(
            "[[route]]\nid = \"r\"\nmatch = \"GET /x\"\n{extra}\n[[route.step]]\nname = \"up\"\ncall = \"GET up /a\"\n[route.response]\nstatus_from = \"up\"\njq = '{response}'\n"
        ))
    }

    #[tokio::test]
    async fn a_passed_on_answer_is_the_upstream_text_checked_not_rewritten() {
        let text =
            r#"{"price":1.10,"big":123456789012345678901234567890,"s":"caf\u00e9","z":1,"a":2}"#;
        let (_d, cat) = one_call(".steps.up", "");
        assert!(verbatim_call(&cat.routes[0]).is_some());
        let fake = Fake::text(&[("GET /a", 200, &format!("\n  {text} \r\n"))]);
        let out = run(&cat, &fake, json!({})).await.unwrap();
        assert_eq!(out.status, StatusCode::OK);
        assert_eq!(
            out.body,
            OutBody::Raw(Bytes::copy_from_slice(text.as_bytes()))
        );
        // The same route through values would have rewritten it.
        let (_d2, parsed) = one_call(".steps.up | .", "");
        assert!(verbatim_call(&parsed.routes[0]).is_none());
        let OutBody::Json(v) = run(&parsed, &fake, json!({})).await.unwrap().body else {
            panic!("a value");
        };
        assert_ne!(serde_json::to_string(&v).unwrap(), text);
    }

    #[tokio::test]
    async fn a_passed_on_answer_fails_and_empties_as_a_parsed_one_does() {
        let (_d, raw) = one_call(".steps.up", "");
        let (_d2, parsed) = one_call(".steps.up | .", "");
        let outcome = |cat: &Catalog, status: u16, body: &'static str| {
            let fake = Fake::text(&[("GET /a", status, body)]);
            let route = cat.routes[0].clone();
            async move {
                let meta = RequestMeta::new(None);
                let env = ExecEnv {
                    upstreams: &fake,
                    meta: &meta,
                    query_pairs: &[],
                    calls: None,
                    capture_cap: 0,
                    directive: Default::default(),
                    budget: crate::mapping::exec::CallBudget::for_route(&route),
                };
                execute(&route, json!({}), &env)
                    .await
                    .map(|o| (o.status, o.body))
                    .map_err(|e| (e.status(), e.to_string()))
            }
        };
        for (status, body) in [
            (200, r#"{"a": 1"#),
            (200, "\n\n  {\"a\": ]"),
            (200, "{} x"),
            (200, "<html></html>"),
            (404, r#"{"message": "no such thing"}"#),
            (500, "not json"),
        ] {
            let (a, b) = (
                outcome(&raw, status, body).await,
                outcome(&parsed, status, body).await,
            );
            assert!(a.is_err(), "{status} {body}: {a:?}");
            assert_eq!(a, b, "{status} {body}");
        }
        for body in ["", "  \n", "null", " null "] {
            assert_eq!(
                outcome(&raw, 200, body).await,
                Ok((StatusCode::OK, OutBody::Empty))
            );
            assert_eq!(
                outcome(&parsed, 200, body).await,
                Ok((StatusCode::OK, OutBody::Empty))
            );
        }
        // An allowed status passes its answer on, with that status.
        let (_d3, allowed) = catalog(
            "[[route]]\nid = \"r\"\nmatch = \"GET /x\"\n[[route.step]]\nname = \"up\"\ncall = \"GET up /a\"\nallow_status = [404]\n[route.response]\nstatus_from = \"up\"\njq = \".steps.up\"\n",
        );
        assert_eq!(
            outcome(&allowed, 404, r#"{"gone":true}"#).await,
            Ok((
                StatusCode::NOT_FOUND,
                OutBody::Raw(Bytes::from_static(br#"{"gone":true}"#))
            ))
        );
    }

    #[test]
    fn only_routes_answering_one_json_call_unchanged_pass_it_on() {
        let cat = crate::mapping::pack::shipped_catalog();
        let verbatim: Vec<&str> = cat
            .routes
            .iter()
            .filter(|r| verbatim_call(r).is_some())
            .map(|r| &*r.id)
            .collect();
        for id in ["products.get", "products.list", "pass"] {
            assert!(verbatim.contains(&id), "{id} in {verbatim:?}");
        }
        for r in &cat.routes {
            if verbatim.contains(&&*r.id) {
                assert_eq!(r.plan.stages.len(), 1, "{}", r.id);
                assert!(
                    r.paging != crate::mapping::pack::Paging::Rosetta && r.pricing.settle.is_none(),
                    "{}",
                    r.id
                );
                assert!(
                    matches!(r.pack.upstream_format, UpstreamFormat::Json),
                    "{}",
                    r.id
                );
                assert!(
                    !matches!(r.pack.client_dialect, Dialect::LongJump),
                    "{}",
                    r.id
                );
            }
        }
        // Two calls, a transform, XML on either side: values as before.
        for id in ["companies.get", "companies.search"] {
            assert!(!verbatim.contains(&id), "{id}");
        }
        assert!(
            cat.routes
                .iter()
                .any(|r| matches!(r.pack.upstream_format, UpstreamFormat::LongJumpXml(_)))
        );
        let (_d, when) = catalog(
            "[[route]]\nid = \"r\"\nmatch = \"GET /x\"\n[[route.step]]\nname = \"up\"\nwhen = \"true\"\ncall = \"GET up /a\"\n[route.response]\njq = \".steps.up\"\n",
        );
        assert!(
            verbatim_call(&when.routes[0]).is_none(),
            "a step that may be skipped"
        );
        let (_d2, other) = one_call(".steps.other", "");
        assert!(
            verbatim_call(&other.routes[0]).is_none(),
            "another step's answer"
        );
    }

    proptest::proptest! {
        /// Whatever JSON an upstream sends, compact or spaced out, the passed-on answer means
        /// what the parsed route answers, and compact text is passed on as it came.
        #[test]
        fn a_passed_on_answer_means_what_the_parsed_one_does(
            v in crate::test_support::arb_json(),
            pretty in proptest::bool::ANY,
        ) {
            static CATALOGS: std::sync::LazyLock<[(tempfile::TempDir, Catalog); 2]> =
                std::sync::LazyLock::new(|| [one_call(".steps.up", ""), one_call(".steps.up | .", "")]);
            let text = if pretty {
                serde_json::to_string_pretty(&v).unwrap()
            } else {
                serde_json::to_string(&v).unwrap()
            };
            let fake = Fake::text(&[("GET /a", 200, &text)]);
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let raw = rt.block_on(run(&CATALOGS[0].1, &fake, json!({}))).unwrap().body;
            let parsed = rt.block_on(run(&CATALOGS[1].1, &fake, json!({}))).unwrap().body;
            match (raw, parsed) {
                (OutBody::Empty, OutBody::Empty) => proptest::prop_assert!(v.is_null()),
                (OutBody::Raw(b), OutBody::Json(p)) => {
                    proptest::prop_assert_eq!(&serde_json::from_slice::<Value>(&b).unwrap(), &p);
                    if !pretty {
                        proptest::prop_assert_eq!(&b[..], text.as_bytes());
                    }
                }
                (a, b) => proptest::prop_assert!(false, "{a:?} vs {b:?}"),
            }
        }
    }
}
