//! Quotas of a user (`/v1/users/{username}/quotas`): the base quotas and dated windows the
//! quota layer enforces; every change is told to the quota book so the next request sees it.
//! Reading follows the user scope; writing is ADMIN-only (both declared in the route table),
//! since quotas bound what a company may spend upstream and a PARTNER would otherwise raise
//! its own company's limits.

use http::StatusCode;
use serde_json::json;

use super::service::{Answer, Call};
use super::validate;
use super::wire::{json_response, no_content, store_err};
use crate::error::{BadRequest, GatewayError};

/// `PUT /v1/users/{username}/quotas`: the base quotas, or a dated window's with `from`/`to`.
pub(super) async fn put(mut c: Call) -> Answer {
    let owner = c.user()?.username.clone();
    let window = quota_window(&c.query)?;
    let services = validate::quotas(&c.json().await?)?;
    if window.is_none() {
        validate::no_date_window_limit(&services)?;
    }
    c.admin
        .quotas
        .put_quotas(owner.clone(), window.clone(), services.clone())
        .await
        .map_err(store_err)?;
    c.admin.quotas_changed(&owner);
    let mut v = json!({"services": services});
    if let Some((from, to)) = window {
        v["from"] = json!(from);
        v["to"] = json!(to);
    }
    Ok(json_response(StatusCode::OK, &v))
}

/// `GET /v1/users/{username}/quotas`: the base quotas and every dated window.
pub(super) async fn get(c: Call) -> Answer {
    let owner = c.user()?.username.clone();
    let q = c.admin.quotas.get_quotas(owner).await.map_err(store_err)?;
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "base": {"services": q.base.unwrap_or_else(|| json!([]))},
            "windows": q.windows.into_iter()
                .map(|(from, to, services)| json!({"from": from, "to": to, "services": services}))
                .collect::<Vec<_>>(),
        }),
    ))
}

/// `DELETE /v1/users/{username}/quotas`: every quota of the user, or one window.
pub(super) async fn delete(c: Call) -> Answer {
    let owner = c.user()?.username.clone();
    let window = quota_window(&c.query)?;
    let n = c
        .admin
        .quotas
        .delete_quotas(owner.clone(), window)
        .await
        .map_err(store_err)?;
    c.admin.quotas_changed(&owner);
    if n == 0 {
        return Err(GatewayError::NotFound(format!("quotas of `{owner}`")));
    }
    Ok(no_content())
}

/// `from`/`to` (both or neither, `YYYY-MM-DD`, `from <= to`): a dated quota window.
fn quota_window(pairs: &[(String, String)]) -> Result<Option<(String, String)>, GatewayError> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let parse = |k: &str, v: &str| {
        time::Date::parse(v, fmt)
            .map_err(|_| BadRequest::param(k, format!("{k} must be a YYYY-MM-DD date")))
    };
    match (get("from"), get("to")) {
        (None, None) => Ok(None),
        (Some(f), Some(t)) => {
            let (from, to) = (parse("from", f)?, parse("to", t)?);
            if from > to {
                return Err(BadRequest::param("from", "from must not be after to").into());
            }
            Ok(Some((f.to_owned(), t.to_owned())))
        }
        (Some(_), None) => {
            Err(BadRequest::param("to", "a dated window needs both from and to").into())
        }
        (None, Some(_)) => {
            Err(BadRequest::param("from", "a dated window needs both from and to").into())
        }
    }
}
