//! Cross-site request forgery guard of the admin API's writes.
//!
//! The admin API answers `WWW-Authenticate: Basic`, so a browser that signed in once sends
//! the credentials again on its own, also when a page of another site makes it POST here.
//! Two checks stop that, both before authentication and before any store write:
//!
//! - an unsafe method (anything but GET, HEAD, OPTIONS, TRACE) is refused (403) when the
//!   browser says the request comes from elsewhere: `Sec-Fetch-Site` other than
//!   `same-origin` or `none`, or an `Origin` other than this listener's own
//!   (`http://` + `Host`; `Origin: null`, sent by sandboxed and privacy-sensitive contexts,
//!   is refused too);
//! - POST, PUT and PATCH must say `Content-Type: application/json` (415 otherwise), even
//!   without a body. A cross-site form or a `fetch` without a preflight can only send
//!   `text/plain`, form or multipart types; asking for JSON forces a CORS preflight, which
//!   this API never grants. This also covers browsers that send neither header above.
//!
//! Clients that are not browsers (curl, scripts) send neither `Origin` nor `Sec-Fetch-Site`
//! and only need the `Content-Type`.

use http::request::Parts;
use http::{HeaderMap, Method, header};

use super::access::forbidden;
use crate::error::GatewayError;

/// The one media type the admin API's bodies are in.
const JSON: &str = "application/json";

/// Refuses a cross-site or non-JSON write; lets every safe method through.
pub(super) fn check(parts: &Parts) -> Result<(), GatewayError> {
    if parts.method.is_safe() {
        return Ok(());
    }
    same_site(parts)?;
    if parts.method == Method::POST || parts.method == Method::PUT || parts.method == Method::PATCH
    {
        json_body(&parts.headers)?;
    }
    Ok(())
}

/// 403 unless every `Sec-Fetch-Site` and `Origin` the request carries names this listener.
fn same_site(parts: &Parts) -> Result<(), GatewayError> {
    for v in parts.headers.get_all("sec-fetch-site") {
        let ok = v
            .to_str()
            .is_ok_and(|s| s.trim() == "same-origin" || s.trim() == "none");
        if !ok {
            return Err(forbidden(
                "a cross-site write is refused (Sec-Fetch-Site is not same-origin)",
            ));
        }
    }
    let own = own_host(parts);
    for v in parts.headers.get_all(header::ORIGIN) {
        let ok = own.is_some_and(|host| v.to_str().is_ok_and(|o| is_origin_of(o.trim(), host)));
        if !ok {
            return Err(forbidden(
                "a cross-site write is refused (Origin is not this admin listener)",
            ));
        }
    }
    Ok(())
}

/// The host (and port) the client addressed: the one `Host` header, or in HTTP/2 the
/// request's authority. `None` when that is missing or ambiguous, so no `Origin` matches.
fn own_host(parts: &Parts) -> Option<&str> {
    let mut hosts = parts.headers.get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(h), None) => h.to_str().ok().map(str::trim),
        (Some(_), Some(_)) => None,
        (None, _) => parts.uri.authority().map(|a| a.as_str()),
    }
}

/// Is `origin` exactly `http://` + `host`, compared case-insensitively (scheme and host
/// names are)? A path, `https`, another port or `null` is not.
fn is_origin_of(origin: &str, host: &str) -> bool {
    let scheme = "http://";
    origin.len() == scheme.len() + host.len()
        && origin.is_char_boundary(scheme.len())
        && origin[..scheme.len()].eq_ignore_ascii_case(scheme)
        && origin[scheme.len()..].eq_ignore_ascii_case(host)
}

/// 415 unless there is exactly one `Content-Type` and its type is `application/json`
/// (parameters such as `; charset=utf-8` allowed).
fn json_body(headers: &HeaderMap) -> Result<(), GatewayError> {
    let mut values = headers.get_all(header::CONTENT_TYPE).iter();
    let refuse = |what: &str| GatewayError::UnsupportedMediaType {
        detail: format!("the admin API takes {JSON} bodies, and this request {what}"),
    };
    let v = match (values.next(), values.next()) {
        (Some(v), None) => v,
        (None, _) => return Err(refuse("has no Content-Type")),
        (Some(_), Some(_)) => return Err(refuse("has more than one Content-Type")),
    };
    let essence = v
        .to_str()
        .ok()
        .and_then(|s| s.split(';').next())
        .map(str::trim);
    match essence {
        Some(t) if t.eq_ignore_ascii_case(JSON) => Ok(()),
        Some(_) | None => {
            // The sender's own text, cut short: a message is not a place for a long header.
            let shown: String = String::from_utf8_lossy(v.as_bytes())
                .chars()
                .take(64)
                .collect();
            Err(refuse(&format!("is `{shown}`")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: Method, headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::builder()
            .method(method)
            .uri("/v1/users")
            .header("host", "127.0.0.1:9090");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn status(method: Method, headers: &[(&str, &str)]) -> u16 {
        check(&parts(method, headers)).map_or_else(|e| e.status().as_u16(), |()| 200)
    }

    const CT: (&str, &str) = ("content-type", "application/json");

    #[test]
    fn writes_need_a_json_content_type() {
        for m in [Method::POST, Method::PUT, Method::PATCH] {
            assert_eq!(status(m.clone(), &[CT]), 200, "{m}");
            assert_eq!(status(m.clone(), &[]), 415, "{m} without a type");
            for t in [
                "application/x-www-form-urlencoded",
                "text/plain",
                "multipart/form-data; boundary=x",
                "application/jsonp",
                "application/json-seq",
                "text/json",
                "application/json, text/plain",
            ] {
                assert_eq!(status(m.clone(), &[("content-type", t)]), 415, "{m} {t}");
            }
        }
        for t in [
            "Application/JSON",
            "application/json; charset=utf-8",
            " application/json ;charset=UTF-8",
        ] {
            assert_eq!(status(Method::POST, &[("content-type", t)]), 200, "{t}");
        }
        let two = [CT, ("content-type", "text/plain")];
        assert_eq!(status(Method::POST, &two), 415, "two types");
        // DELETE has no body to type; reads are never checked.
        assert_eq!(status(Method::DELETE, &[]), 200);
        assert_eq!(status(Method::GET, &[("content-type", "text/plain")]), 200);
    }

    #[test]
    fn cross_site_writes_are_refused() {
        for m in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            for h in [
                ("origin", "http://evil.example"),
                ("origin", "null"),
                ("origin", "https://127.0.0.1:9090"),
                ("origin", "http://127.0.0.1:9091"),
                ("origin", "http://127.0.0.1:9090/"),
                ("origin", "http://127.0.0.1"),
                ("sec-fetch-site", "cross-site"),
                ("sec-fetch-site", "same-site"),
                ("sec-fetch-site", "bogus"),
            ] {
                assert_eq!(status(m.clone(), &[CT, h]), 403, "{m} {h:?}");
            }
            for h in [
                ("origin", "http://127.0.0.1:9090"),
                ("origin", "HTTP://127.0.0.1:9090"),
                ("sec-fetch-site", "same-origin"),
                ("sec-fetch-site", "none"),
            ] {
                assert_eq!(status(m.clone(), &[CT, h]), 200, "{m} {h:?}");
            }
        }
        // One bad value among good ones is enough; GET and HEAD are never refused.
        let mixed = [
            CT,
            ("sec-fetch-site", "same-origin"),
            ("sec-fetch-site", "cross-site"),
        ];
        assert_eq!(status(Method::POST, &mixed), 403);
        for m in [Method::GET, Method::HEAD] {
            assert_eq!(status(m, &[("origin", "http://evil.example")]), 200);
        }
        // The 403 comes before the 415: a cross-site form post learns nothing more.
        let form = [
            ("content-type", "text/plain"),
            ("origin", "http://evil.example"),
        ];
        assert_eq!(status(Method::POST, &form), 403);
    }

    #[test]
    fn the_own_origin_is_compared_case_insensitively() {
        let p = |host: &str| {
            http::Request::builder()
                .method(Method::DELETE)
                .uri("/v1/users/ann")
                .header("host", host)
                .header("origin", "http://Admin.Example:9090")
                .body(())
                .unwrap()
                .into_parts()
                .0
        };
        assert!(check(&p("admin.example:9090")).is_ok());
        assert!(check(&p("other.example:9090")).is_err());
        // No Host at all: no origin can be this listener's.
        let no_host = http::Request::delete("/v1/users/ann")
            .header("origin", "http://admin.example:9090")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        assert!(check(&no_host).is_err());
        // HTTP/2 carries the host in the authority.
        let h2 = http::Request::delete("http://admin.example:9090/v1/users/ann")
            .header("origin", "http://admin.example:9090")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        assert!(check(&h2).is_ok());
    }
}
