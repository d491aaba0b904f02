//! The route's outcome made into the client's answer: a list kept to the caller's reach and
//! paged by Rosetta, Rosetta's own search applied, the points settled from the answer when
//! the route says so, and the body rendered in the client's dialect.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Response, header};
use serde_json::{Value, json};

use super::super::SettledPoints;
use super::super::tenancy::BodyTargets;
use super::request::{Given, Prepared};
use crate::body::{Body, empty, full};
use crate::dialect::paging::{self, Continuation, PageRequest};
use crate::dialect::search::apply;
use crate::mapping::exec::{OutBody, Outcome};
use crate::mapping::pack::Route;
use crate::tenancy::reach::keep_in_reach;

/// The client's answer to `outcome`, and the bytes of its body (for the capture).
pub(super) fn respond(
    given: &Given,
    prepared: Prepared<'_>,
    outcome: Outcome,
) -> (Response<Body>, Bytes) {
    let route = &given.rc.route;
    let outcome = within_reach(given, &prepared, outcome);
    let outcome = searched(&prepared, outcome);
    let settled = route.pricing.settle.as_ref().map(|f| {
        settle(
            route,
            f,
            prepared.settle_request,
            &outcome,
            given.price.points,
        )
    });
    let directive = outcome.cache;
    let (mut resp, bytes) = render(
        route,
        outcome,
        prepared.page.as_ref(),
        &prepared.query_pairs,
    );
    resp.extensions_mut().insert(directive);
    if let Some(n) = settled {
        resp.extensions_mut().insert(SettledPoints(n));
    }
    if !prepared.body_targets.is_empty() {
        resp.extensions_mut().insert(BodyTargets(
            prepared
                .body_targets
                .iter()
                .map(|id| Arc::from(id.as_str()))
                .collect(),
        ));
    }
    (resp, bytes)
}

/// A list of companies keeps what the caller reaches before it is paged, so totals and
/// pages count only that (a search pages after its own filter, [`searched`]).
fn within_reach(given: &Given, prepared: &Prepared<'_>, outcome: Outcome) -> Outcome {
    let Outcome {
        status,
        body,
        cache,
        calls,
    } = outcome;
    let body = match (&given.rc.route.tenancy.items, &given.reach, body) {
        (Some(field), Some(reach), OutBody::Page { items, .. }) => {
            let items = keep_in_reach(reach, field, items);
            match &prepared.search {
                Some(_) => OutBody::Page {
                    items,
                    total: None,
                    more: Continuation::Rosetta,
                },
                None => {
                    let total = items.len() as u64;
                    let (offset, size) = prepared
                        .page
                        .as_ref()
                        .map_or((0, u64::MAX), |p| (p.offset(), p.size));
                    let items = items
                        .into_iter()
                        .skip(usize::try_from(offset).unwrap_or(usize::MAX))
                        .take(usize::try_from(size).unwrap_or(usize::MAX))
                        .collect();
                    OutBody::Page {
                        items,
                        total: Some(total),
                        more: Continuation::Rosetta,
                    }
                }
            }
        }
        (Some(_), _, body) | (None, _, body) => body,
    };
    Outcome {
        status,
        body,
        cache,
        calls,
    }
}

/// Rosetta's own search over the route's records: filtered, ordered and paged here.
fn searched(prepared: &Prepared<'_>, outcome: Outcome) -> Outcome {
    let Outcome {
        status,
        body,
        cache,
        calls,
    } = outcome;
    let body = match (&prepared.search, body) {
        (Some((spec, q)), OutBody::Page { items, .. }) => {
            let pg = prepared.page.unwrap_or(PageRequest {
                index: 0,
                size: u64::MAX,
                want_total: false,
            });
            let (items, total) = apply(spec, q, items, pg.offset(), pg.size);
            OutBody::Page {
                items,
                total: Some(total),
                more: Continuation::Rosetta,
            }
        }
        (None | Some(_), body) => body,
    };
    Outcome {
        status,
        body,
        cache,
        calls,
    }
}

/// The points the request finally costs, from the route's `points_settle` over the answer;
/// a settlement that fails keeps the points reserved (logged).
fn settle(
    route: &Route,
    filter: &crate::mapping::jq::JqFilter,
    request: Option<Value>,
    outcome: &Outcome,
    reserved: u64,
) -> u64 {
    let response = match &outcome.body {
        OutBody::Empty => Value::Null,
        OutBody::Json(v) => v.clone(),
        OutBody::Raw(b) => serde_json::from_slice(b).unwrap_or(Value::Null),
        OutBody::Page { items, total, .. } => json!({"items": items, "total": total}),
    };
    let input = json!({"response": response, "request": request, "calls": outcome.calls});
    match filter.run(&input) {
        Ok(v) => v.as_f64().map_or(0, |n| n.max(0.0).ceil() as u64),
        Err(e) => {
            tracing::warn!(route = %route.id, error = %e, "points_settle failed; keeping the reserved points");
            reserved
        }
    }
}

fn render(
    route: &Route,
    outcome: Outcome,
    page: Option<&PageRequest>,
    pairs: &[(String, String)],
) -> (Response<Body>, Bytes) {
    let dialect = route.pack.client_dialect;
    let body = match outcome.body {
        OutBody::Empty => None,
        OutBody::Json(v) => Some(dialect.encode_body(&v)),
        OutBody::Raw(b) => Some(dialect.encode_json_text(b)),
        OutBody::Page { items, total, more } => {
            let page = page.copied().unwrap_or(PageRequest {
                index: 0,
                size: items.len().max(1) as u64,
                want_total: false,
            });
            Some(dialect.encode_body(&paging::render_page_as(
                dialect.paging(),
                route.plan.response.list.as_deref(),
                items,
                total,
                &page,
                pairs,
                &more,
            )))
        }
    };
    let sent = body.clone().unwrap_or_default();
    let mut resp = match body {
        Some(b) => {
            let mut r = super::super::answer(full(b));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(dialect.content_type()),
            );
            r
        }
        None => super::super::answer(empty()),
    };
    *resp.status_mut() = outcome.status;
    (resp, sent)
}
