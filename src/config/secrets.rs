//! Secrets in the configuration: upstream credentials (a header's value, a Basic password,
//! an OAuth2 client secret) and the first administrator's password.
//!
//! They belong in the environment (`ROSETTA__…`), not in a file that is copied, committed
//! and read by more people than the process: `rosetta check` and `rosetta serve` warn about
//! each one written in the file ([`inline`]). A secret may be left out of the file, so the
//! shipped configuration holds none and still loads (for `check` and for `demo`, which
//! gives its sample upstreams their credentials itself); a gateway is refused at start when
//! an upstream's secret is still missing ([`missing`]), never run with an empty one.

use super::{Config, UpstreamAuthConfig};

/// The keys of an upstream's `[auth]` table that hold a secret, whatever its type.
const AUTH_SECRETS: [&str; 3] = ["value", "password", "client_secret"];

/// The environment variable that sets the configuration key `dotted` (`a.b_c` →
/// `ROSETTA__A__B_C`).
pub fn env_var(dotted: &str) -> String {
    format!(
        "ROSETTA__{}",
        dotted.replace('.', "__").to_ascii_uppercase()
    )
}

/// The dotted keys of the secrets written in the configuration file's text `toml`, in file
/// order; nothing when the text is not TOML (loading it says why).
pub fn inline(toml: &str) -> Vec<String> {
    let Ok(doc) = toml.parse::<toml::Table>() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if doc
        .get("admin")
        .and_then(|a| a.get("bootstrap_password"))
        .is_some()
    {
        out.push("admin.bootstrap_password".to_owned());
    }
    let upstreams = doc.get("upstreams").and_then(toml::Value::as_table);
    for (name, up) in upstreams.into_iter().flatten() {
        let Some(auth) = up.get("auth").and_then(toml::Value::as_table) else {
            continue;
        };
        for key in AUTH_SECRETS {
            if auth.contains_key(key) {
                out.push(format!("upstreams.{name}.auth.{key}"));
            }
        }
    }
    out
}

/// The dotted keys of the upstream secrets that `cfg` needs but nobody gave (left out of
/// the file and the environment, or empty).
pub fn missing(cfg: &Config) -> Vec<String> {
    let mut out = Vec::new();
    for (name, up) in &cfg.upstreams {
        let (key, value) = match &up.auth {
            UpstreamAuthConfig::None => continue,
            UpstreamAuthConfig::Header { value, .. } => ("value", value),
            UpstreamAuthConfig::Basic { password, .. } => ("password", password),
            UpstreamAuthConfig::Oauth2 { client_secret, .. } => ("client_secret", client_secret),
        };
        if value.is_empty() {
            out.push(format!("upstreams.{name}.auth.{key}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_written_in_the_file_are_named() {
        let text = r#"
[admin]
bootstrap_user = "root"
bootstrap_password = "x"
[upstreams.a]
url = "http://127.0.0.1:1"
[upstreams.a.auth]
type = "basic"
username = "u"
password = "p"
[upstreams.b]
url = "http://127.0.0.1:2"
auth = { type = "header", name = "x-api-key", value = "k" }
[upstreams.c]
url = "http://127.0.0.1:3"
auth = { type = "oauth2", token_url = "http://127.0.0.1:3/t", client_id = "c" }
"#;
        assert_eq!(
            inline(text),
            [
                "admin.bootstrap_password",
                "upstreams.a.auth.password",
                "upstreams.b.auth.value",
            ]
        );
        assert!(inline("[admin]\nbootstrap_user = \"root\"").is_empty());
        assert!(inline("not toml [").is_empty());
        assert_eq!(
            env_var("upstreams.redapi.auth.client_secret"),
            "ROSETTA__UPSTREAMS__REDAPI__AUTH__CLIENT_SECRET"
        );
    }

    #[test]
    fn a_secret_left_out_loads_and_is_missing_until_given() {
        let dir = tempfile::tempdir().unwrap();
        let text = "[upstreams.c]\nurl = \"http://127.0.0.1:3\"\n\
                    auth = { type = \"oauth2\", token_url = \"http://127.0.0.1:3/t\", client_id = \"c\" }\n\
                    [upstreams.d]\nurl = \"http://127.0.0.1:4\"\n";
        let mut cfg = Config::from_toml(text, dir.path()).expect("loads without its secret");
        assert_eq!(missing(&cfg), ["upstreams.c.auth.client_secret"]);
        if let UpstreamAuthConfig::Oauth2 { client_secret, .. } =
            &mut cfg.upstreams.get_mut("c").unwrap().auth
        {
            *client_secret = "s".into();
        }
        assert!(missing(&cfg).is_empty());
    }
}
