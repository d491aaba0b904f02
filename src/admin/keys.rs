//! API keys of a user (`/v1/users/{username}/keys`). A key's secret is in the answer that
//! mints it and nowhere else: the store keeps its SHA-256 and a prefix to recognise it by.
//! The route table admits the caller for the user (a PARTNER never for one above it).

use http::StatusCode;
use serde_json::{Value, json};

use super::service::{Answer, Call};
use super::validate;
use super::wire::{json_response, no_content, now_ms, rfc3339_ms, store_err};
use crate::cluster::bus::Invalidation;
use crate::error::{BadRequest, Internal};
use crate::identity::passwords::new_api_key;
use crate::identity::sha256_hex;
use crate::store::ApiKeyInfo;

fn key_json(k: &ApiKeyInfo) -> Value {
    json!({"id": k.id, "prefix": k.prefix, "created": rfc3339_ms(k.created_ms),
           "expires": k.expires_ms.map(rfc3339_ms), "revoked": k.revoked})
}

/// `POST /v1/users/{username}/keys`: the new key, with its secret.
pub(super) async fn create(mut c: Call) -> Answer {
    let expires_ms = expiry(&c.json().await?)?;
    let secret = new_api_key().map_err(|e| Internal::Failed {
        doing: "drawing an API key",
        source: e.into(),
    })?;
    let info = ApiKeyInfo {
        id: uuid::Uuid::new_v4().simple().to_string()[..16].to_owned(),
        username: c.user()?.username.clone(),
        prefix: secret[..10].to_owned(),
        created_ms: now_ms(),
        expires_ms,
        revoked: false,
    };
    c.admin
        .directory
        .create_key(info.clone(), sha256_hex(&secret))
        .await
        .map_err(store_err)?;
    let mut v = key_json(&info);
    v["key"] = json!(secret);
    Ok(json_response(StatusCode::CREATED, &v))
}

/// The body of a key's creation: nothing, or `{"expires": "<a future date-time>"}`.
fn expiry(body: &Value) -> Result<Option<i64>, BadRequest> {
    let m = match body {
        Value::Null => return Ok(None),
        Value::Object(m) => m,
        Value::Bool(_) | Value::Number(_) | Value::String(_) | Value::Array(_) => {
            return Err(BadRequest::new("the body must be an object or empty"));
        }
    };
    if let Some(k) = m.keys().find(|k| k.as_str() != "expires") {
        return Err(BadRequest::param(
            k,
            format!("unknown field `{k}`; the one field is expires"),
        ));
    }
    match m.get("expires") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            match validate::time_param(&[("expires".to_owned(), s.clone())], "expires")? {
                Some(ms) if ms > now_ms() => Ok(Some(ms)),
                Some(_) | None => Err(BadRequest::param(
                    "expires",
                    "expires must be in the future",
                )),
            }
        }
        Some(_) => Err(BadRequest::param(
            "expires",
            "expires must be a date-time string",
        )),
    }
}

/// `GET /v1/users/{username}/keys`: never the secrets.
pub(super) async fn list(c: Call) -> Answer {
    let name = c.param("username")?.to_owned();
    let keys = c.admin.directory.list_keys(name).await.map_err(store_err)?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"keys": keys.iter().map(key_json).collect::<Vec<_>>()}),
    ))
}

/// `DELETE /v1/users/{username}/keys/{id}`: revokes the key.
pub(super) async fn revoke(c: Call) -> Answer {
    let (name, id) = (c.param("username")?.to_owned(), c.param("id")?.to_owned());
    c.admin
        .directory
        .revoke_key(name, id)
        .await
        .map_err(store_err)?;
    c.admin.invalidator.apply(Invalidation::Credentials);
    Ok(no_content())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expiry_is_a_future_date_time_or_nothing() {
        assert_eq!(expiry(&Value::Null), Ok(None));
        assert_eq!(expiry(&json!({})), Ok(None));
        assert_eq!(expiry(&json!({"expires": null})), Ok(None));
        assert!(
            expiry(&json!({"expires": "2999-01-01T00:00:00Z"}))
                .unwrap()
                .is_some()
        );
        let field = |v: Value| expiry(&v).unwrap_err().parameter;
        assert_eq!(
            field(json!({"expires": "2000-01-01T00:00:00Z"})).as_deref(),
            Some("expires")
        );
        assert_eq!(field(json!({"expires": 1})).as_deref(), Some("expires"));
        assert_eq!(field(json!({"owner": "x"})).as_deref(), Some("owner"));
        assert_eq!(field(json!([])), None);
    }
}
