//! Users (`/v1/users`), seed 003's fields; the password is stored hashed and never shown.
//!
//! The route table admits the caller for the user a path names; what a body asks for is
//! checked here ([`check_user_write`]): a PARTNER neither creates nor makes a user outside
//! its company or above itself.

use http::StatusCode;
use serde_json::{Value, json};

use super::access::{check_user_write, users_listed};
use super::service::{Answer, Call};
use super::validate;
use super::wire::{json_response, no_content, store_err};
use crate::cluster::bus::Invalidation;
use crate::error::{BadRequest, GatewayError, Internal};
use crate::identity::passwords::hash_password;
use crate::store::{User, UserQuery, UserStats};

fn user_json(u: &User) -> Value {
    json!({"username": u.username, "name": u.name, "email": u.email, "phone": u.phone,
           "company_key": u.company_key, "enabled": u.enabled, "roles": u.roles, "timezone": u.timezone})
}

fn password_hash(password: Option<&str>) -> Result<Option<String>, GatewayError> {
    password.map(hash_password).transpose().map_err(|e| {
        Internal::Failed {
            doing: "hashing a password",
            source: e.into(),
        }
        .into()
    })
}

/// `POST /v1/users`.
pub(super) async fn create(mut c: Call) -> Answer {
    let (u, password) = validate::user(&c.json().await?)?;
    check_user_write(c.caller()?, &u)?;
    let hash = password_hash(password.as_deref())?;
    c.admin
        .directory
        .create_user(u.clone(), hash)
        .await
        .map_err(store_err)?;
    Ok(json_response(StatusCode::CREATED, &user_json(&u)))
}

/// `GET /v1/users`: a PARTNER's list holds its own company's users only.
pub(super) async fn list(c: Call) -> Answer {
    let list = validate::list(
        &c.query,
        &[
            "username",
            "name",
            "email",
            "company_key",
            "enabled",
            "timezone",
        ],
    )?;
    let group = validate::user_group(&c.query)?;
    let asked = validate::word_param(&c.query, "company_key", 3, 256)?;
    let company_key = users_listed(c.caller()?, asked)?;
    let page = c
        .admin
        .directory
        .list_users(UserQuery {
            list,
            company_key,
            group,
        })
        .await
        .map_err(store_err)?;
    let stats = |s: UserStats| json!({"total": s.total, "active": s.active, "blocked": s.blocked, "admins": s.admins});
    Ok(json_response(
        StatusCode::OK,
        &json!({"users": page.items.iter().map(user_json).collect::<Vec<_>>(),
                "statistics": {"overall": stats(page.overall), "filter": stats(page.filtered)}}),
    ))
}

/// `GET /v1/users/{username}`.
pub(super) async fn get(c: Call) -> Answer {
    Ok(json_response(StatusCode::OK, &user_json(c.user()?)))
}

/// `PUT /v1/users/{username}`: the username cannot change; a null password keeps the
/// current one.
pub(super) async fn replace(mut c: Call) -> Answer {
    let (u, password) = validate::user(&c.json().await?)?;
    if u.username != c.param("username")? {
        return Err(BadRequest::param("username", "username cannot be changed").into());
    }
    check_user_write(c.caller()?, &u)?;
    let hash = password_hash(password.as_deref())?;
    c.admin
        .directory
        .update_user(u.clone(), hash)
        .await
        .map_err(store_err)?;
    c.admin.invalidator.apply(Invalidation::Credentials);
    c.admin.quotas_changed(&u.username);
    Ok(json_response(StatusCode::OK, &user_json(&u)))
}

/// `DELETE /v1/users/{username}`, with their keys.
pub(super) async fn delete(c: Call) -> Answer {
    let name = c.param("username")?.to_owned();
    c.admin
        .directory
        .delete_user(name)
        .await
        .map_err(store_err)?;
    c.admin.invalidator.apply(Invalidation::Credentials);
    Ok(no_content())
}
