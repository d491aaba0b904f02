//! Companies (`/v1/companies`): the gateway's tenants, whose key is the upstream company's
//! external id. Who may call each is the route table's; changes drop the cached credential
//! checks, since a blocked company blocks its users' keys.

use http::StatusCode;
use serde_json::{Value, json};

use super::service::{Answer, Call};
use super::validate;
use super::wire::{json_response, no_content, store_err};
use crate::cluster::bus::Invalidation;
use crate::store::Company;

fn company_json(c: &Company) -> Value {
    json!({"key": c.key, "detail": c.detail, "enabled": c.enabled})
}

/// `POST /v1/companies`.
pub(super) async fn create(mut c: Call) -> Answer {
    let company = validate::company(&c.json().await?)?;
    c.admin
        .directory
        .create_company(company.clone())
        .await
        .map_err(store_err)?;
    c.admin.invalidator.apply(Invalidation::Credentials);
    Ok(json_response(StatusCode::CREATED, &company_json(&company)))
}

/// `GET /v1/companies`.
pub(super) async fn list(c: Call) -> Answer {
    let q = validate::list(&c.query, &["key", "detail"])?;
    let page = c
        .admin
        .directory
        .list_companies(q)
        .await
        .map_err(store_err)?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"companies": page.items.iter().map(company_json).collect::<Vec<_>>(),
                "statistics": {"overall": {"total": page.overall}, "filter": {"total": page.filtered}}}),
    ))
}

/// `GET /v1/companies/{key}`.
pub(super) async fn get(c: Call) -> Answer {
    let key = c.param("key")?.to_owned();
    let company = c
        .admin
        .directory
        .get_company(key)
        .await
        .map_err(store_err)?;
    Ok(json_response(StatusCode::OK, &company_json(&company)))
}

/// `PUT /v1/companies/{key}`: the key may be renamed.
pub(super) async fn replace(mut c: Call) -> Answer {
    let company = validate::company(&c.json().await?)?;
    let key = c.param("key")?.to_owned();
    c.admin
        .directory
        .update_company(key, company.clone())
        .await
        .map_err(store_err)?;
    c.admin.invalidator.apply(Invalidation::Credentials);
    Ok(json_response(StatusCode::OK, &company_json(&company)))
}

/// `DELETE /v1/companies/{key}`: only a company without users.
pub(super) async fn delete(c: Call) -> Answer {
    let key = c.param("key")?.to_owned();
    c.admin
        .directory
        .delete_company(key)
        .await
        .map_err(store_err)?;
    c.admin.invalidator.apply(Invalidation::Credentials);
    Ok(no_content())
}
