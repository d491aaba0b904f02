//! Paging schemes of the five dialects (DESIGN §3), as pure functions over plain data.
//!
//! Inside Rosetta a page is a zero-based index and a size ([`PageRequest`]); each scheme
//! only reads its client's parameters into that and writes its envelope back out. Every
//! number from a query string is checked (negative, not a number, out of range) and named in
//! the error, so a bad `maxResults` is a 400 that says so, never a wrong page.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use serde_json::{Map, Value, json};

/// The paging scheme of a dialect (DESIGN §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// RedAPI V1: `maxResults`, `pageToken`, `shouldReturnCount`.
    RedapiV1,
    /// AppDirect: zero-based `page` and `size`.
    AppDirect,
    /// Fusion: one-based `page`, `page_size` and a `next` token.
    Fusion,
    /// LongJump: zero-based `page`, `pageSize`, `getTotalRecordCount`.
    LongJump,
    /// The admin API: `offset` and `limit`.
    Admin,
}

/// A page as the engine sees it, whatever the dialect: zero-based index and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// Zero-based page number.
    pub index: u64,
    /// Records per page (≥ 1).
    pub size: u64,
    /// Whether the client asked for the total count.
    pub want_total: bool,
}

impl PageRequest {
    /// Index of the first record of the page.
    pub fn offset(&self) -> u64 {
        self.index.saturating_mul(self.size)
    }
}

/// Defaults and bounds applied when parsing a client's paging parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageDefaults {
    /// Records per page when the client does not say.
    pub size: u64,
    /// The largest page a client may ask for; bigger sizes are lowered to it.
    pub max_size: u64,
}

impl Default for PageDefaults {
    fn default() -> Self {
        Self {
            size: 30,
            max_size: 1000,
        }
    }
}

/// A paging parameter or token the client sent is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{param}: {detail}")]
pub struct PagingError {
    /// The parameter at fault.
    pub param: String,
    /// What is wrong with it.
    pub detail: String,
}

/// Reads the client's paging parameters.
pub fn parse_request(
    scheme: Scheme,
    query: &[(String, String)],
    defaults: &PageDefaults,
) -> Result<PageRequest, PagingError> {
    let get = |k: &str| {
        query
            .iter()
            .find(|(a, _)| a == k)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let clamp = |size: u64| size.clamp(1, defaults.max_size.max(1));
    match scheme {
        Scheme::RedapiV1 => {
            let token = get("pageToken").map(V1Token::decode).transpose()?;
            let max = get("maxResults")
                .map(|v| int(v, "maxResults", i32::MAX as u64))
                .transpose()?;
            let size = match (max, &token) {
                // The upstream's token fixes its page size: another would skip records.
                (_, Some(t)) if t.next.is_some() => t.page_size,
                (Some(m), _) if m > 0 => m,
                (_, Some(t)) => t.page_size,
                (Some(_) | None, None) => defaults.size,
            };
            let index = token.as_ref().map_or(0, |t| t.page - 1);
            Ok(PageRequest {
                index,
                size: clamp(size),
                want_total: flag(get("shouldReturnCount"), "shouldReturnCount")?,
            })
        }
        Scheme::AppDirect => Ok(PageRequest {
            index: get("page")
                .map(|v| int(v, "page", MAX_PAGE))
                .transpose()?
                .unwrap_or(0),
            size: clamp(positive(get("size"), "size", defaults.size)?),
            want_total: true,
        }),
        Scheme::LongJump => Ok(PageRequest {
            index: get("page")
                .map(|v| int(v, "page", MAX_PAGE))
                .transpose()?
                .unwrap_or(0),
            size: clamp(positive(get("pageSize"), "pageSize", defaults.size)?),
            want_total: flag(get("getTotalRecordCount"), "getTotalRecordCount")?,
        }),
        Scheme::Fusion => {
            // `next` carries every parameter of the previous request; explicit ones win.
            let from_next: Vec<(String, String)> = match get("next") {
                Some(t) => {
                    let raw = decode_b64(t)
                        .ok_or_else(|| err("next", "is not a token this API issued"))?;
                    form_urlencoded::parse(&raw).into_owned().collect()
                }
                None => Vec::new(),
            };
            let pick = |k: &str| {
                get(k).or_else(|| {
                    from_next
                        .iter()
                        .find(|(a, _)| a == k)
                        .map(|(_, v)| v.as_str())
                })
            };
            let page = positive(pick("page"), "page", 1)?;
            Ok(PageRequest {
                index: page - 1,
                size: clamp(positive(pick("page_size"), "page_size", defaults.size)?),
                want_total: true,
            })
        }
        Scheme::Admin => {
            let limit = positive(get("limit"), "limit", 100)?;
            if limit > 10_000_000 {
                return Err(err("limit", "must be between 1 and 10000000"));
            }
            let offset = get("offset")
                .map(|v| int(v, "offset", 10_000_000))
                .transpose()?
                .unwrap_or(0);
            if offset % limit != 0 {
                return Err(err("offset", "must be a multiple of limit"));
            }
            Ok(PageRequest {
                index: offset / limit,
                size: limit,
                want_total: true,
            })
        }
    }
}

/// Query parameters that ask an upstream of this scheme for `page`.
pub fn request_params(scheme: Scheme, page: &PageRequest) -> Vec<(String, String)> {
    let p = |k: &str, v: u64| (k.to_owned(), v.to_string());
    match scheme {
        Scheme::RedapiV1 => {
            let mut out = vec![p("maxResults", page.size)];
            if page.index > 0 {
                let token = V1Token {
                    page: page.index + 1,
                    page_size: page.size,
                    total_count: 0,
                    next: None,
                };
                out.push(("pageToken".into(), token.encode()));
            }
            if page.want_total {
                out.push(("shouldReturnCount".into(), "true".into()));
            }
            out
        }
        Scheme::AppDirect => vec![p("page", page.index), p("size", page.size)],
        Scheme::LongJump => {
            let mut out = vec![p("page", page.index), p("pageSize", page.size)];
            if page.want_total {
                out.push(("getTotalRecordCount".into(), "true".into()));
            }
            out
        }
        Scheme::Fusion => vec![p("page", page.index + 1), p("page_size", page.size)],
        Scheme::Admin => vec![p("offset", page.offset()), p("limit", page.size)],
    }
}

/// The client-facing envelope for one page of `items`.
///
/// LongJump's envelope is XML; this is its JSON-level shape (`records`, `totalRecordCount`),
/// which the LongJump dialect writes out as the `<platform>` document.
pub fn render_page(
    scheme: Scheme,
    items: Vec<Value>,
    total: Option<u64>,
    page: &PageRequest,
    query: &[(String, String)],
    more: &Continuation,
) -> Value {
    render_page_as(scheme, None, items, total, page, query, more)
}

/// [`render_page`] with the key a scheme whose lists name their records puts them under
/// (Fusion: the route's `response.list`, e.g. `resellers`; `items` when it names none).
pub fn render_page_as(
    scheme: Scheme,
    list: Option<&str>,
    items: Vec<Value>,
    total: Option<u64>,
    page: &PageRequest,
    query: &[(String, String)],
    more: &Continuation,
) -> Value {
    let seen = page.offset().saturating_add(items.len() as u64);
    let last = match (more, total) {
        (Continuation::Upstream(next), _) => next.is_none(),
        (Continuation::Rosetta, Some(t)) => seen >= t,
        (Continuation::Rosetta, None) => (items.len() as u64) < page.size,
    };
    let upstream_next = match more {
        Continuation::Upstream(next) => next.clone(),
        Continuation::Rosetta => None,
    };
    let total_or_seen = total.unwrap_or(seen);
    match scheme {
        Scheme::RedapiV1 => {
            let next = (!last).then(|| {
                V1Token {
                    page: page.index + 2,
                    page_size: page.size,
                    total_count: total.unwrap_or(0),
                    next: upstream_next,
                }
                .encode()
            });
            let mut doc = json!({"results": items, "nextPageToken": next});
            if page.want_total {
                doc["totalCount"] = json!(total_or_seen);
            }
            doc
        }
        Scheme::AppDirect => json!({"content": items, "page": {
            "size": page.size, "totalElements": total_or_seen,
            "totalPages": total_or_seen.div_ceil(page.size), "number": page.index}}),
        Scheme::LongJump => {
            let mut doc = json!({"records": items});
            if page.want_total {
                doc["totalRecordCount"] = json!(total_or_seen);
            }
            doc
        }
        Scheme::Fusion => {
            let mut doc = Map::new();
            doc.insert("results".into(), json!(total_or_seen));
            doc.insert("pages".into(), json!(total_or_seen.div_ceil(page.size)));
            doc.insert("page".into(), json!(page.index + 1));
            // Seed 004's lists carry their page size beside the page.
            doc.insert("pageSize".into(), json!(page.size));
            if !last {
                let mut q = form_urlencoded::Serializer::new(String::new());
                for (k, v) in query
                    .iter()
                    .filter(|(k, _)| !matches!(k.as_str(), "page" | "next" | "page_size"))
                {
                    q.append_pair(k, v);
                }
                q.append_pair("page_size", &page.size.to_string());
                q.append_pair("page", &(page.index + 2).to_string());
                doc.insert("next".into(), json!(STANDARD.encode(q.finish())));
            }
            doc.insert(list.unwrap_or("items").into(), Value::Array(items));
            Value::Object(doc)
        }
        Scheme::Admin => {
            json!({"items": items, "statistics": {"overall": {"total": total_or_seen}, "filter": {"total": total_or_seen}}})
        }
    }
}

/// Reads an upstream envelope of this scheme: the items and the total when it says.
pub fn read_page(scheme: Scheme, body: Value) -> Result<(Vec<Value>, Option<u64>), PagingError> {
    let Value::Object(mut m) = body else {
        return Err(err("body", "is not a paged envelope"));
    };
    match scheme {
        Scheme::RedapiV1 => {
            let items = take(&mut m, "results")?;
            Ok((items, m.get("totalCount").and_then(Value::as_u64)))
        }
        Scheme::AppDirect => {
            let items = take(&mut m, "content")?;
            Ok((
                items,
                m.get("page")
                    .and_then(|p| p.get("totalElements"))
                    .and_then(Value::as_u64),
            ))
        }
        Scheme::LongJump => {
            let items = take(&mut m, "records")?;
            Ok((items, m.get("totalRecordCount").and_then(Value::as_u64)))
        }
        Scheme::Fusion => {
            let total = m
                .get("results")
                .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()));
            let key = m.iter().find(|(_, v)| v.is_array()).map(|(k, _)| k.clone());
            let items = match key {
                Some(k) => take(&mut m, &k)?,
                None => Vec::new(),
            };
            Ok((items, total))
        }
        Scheme::Admin => {
            let key = m.iter().find(|(_, v)| v.is_array()).map(|(k, _)| k.clone());
            let total = m
                .get("statistics")
                .and_then(|s| s.get("filter"))
                .and_then(|f| f.get("total"))
                .and_then(Value::as_u64);
            let items = match key {
                Some(k) => take(&mut m, &k)?,
                None => Vec::new(),
            };
            Ok((items, total))
        }
    }
}

fn take(m: &mut Map<String, Value>, k: &str) -> Result<Vec<Value>, PagingError> {
    match m.remove(k) {
        Some(Value::Array(a)) => Ok(a),
        Some(Value::Null) | None => Ok(Vec::new()),
        Some(_) => Err(err(k, "is not a list")),
    }
}

/// The records of `page` within a list of `len` records held by Rosetta.
pub fn slice(len: usize, page: &PageRequest) -> std::ops::Range<usize> {
    let start = usize::try_from(page.offset())
        .unwrap_or(usize::MAX)
        .min(len);
    let end = start
        .saturating_add(usize::try_from(page.size).unwrap_or(usize::MAX))
        .min(len);
    start..end
}

/// Who knows whether a page has a next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Continuation {
    /// Rosetta: from the total, or a short page.
    Rosetta,
    /// The upstream, with its token for the next page (`None`: this is the last).
    Upstream(Option<String>),
}

/// The upstream's continuation token in the client's `pageToken`, for a route the upstream
/// pages: `None` on the first page. A later page whose token carries none, or one that is
/// not a plausible upstream token (base64 text, at most 2048 characters), is a token this
/// API never issued: refused before anything is sent.
pub fn upstream_cursor(
    query: &[(String, String)],
    page: &PageRequest,
) -> Result<Option<String>, PagingError> {
    let bad = || err("pageToken", "is not a page token this API issued");
    let token = query
        .iter()
        .find(|(k, v)| k == "pageToken" && !v.is_empty())
        .map(|(_, v)| V1Token::decode(v))
        .transpose()?;
    match token.and_then(|t| t.next) {
        None if page.index == 0 => Ok(None),
        None => Err(bad()),
        Some(n)
            if !n.is_empty()
                && n.len() <= 2048
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+/=-_".contains(&b)) =>
        {
            Ok(Some(n))
        }
        Some(_) => Err(bad()),
    }
}

/// Query parameters asking an upstream that pages by token for the page after `cursor`
/// (the first page when `None`), `size` records long.
pub fn upstream_params(scheme: Scheme, size: u64, cursor: Option<&str>) -> Vec<(String, String)> {
    match scheme {
        Scheme::Fusion => {
            let mut out = vec![("page_size".to_owned(), size.to_string())];
            if let Some(c) = cursor {
                out.push(("next".to_owned(), c.to_owned()));
            }
            out
        }
        Scheme::RedapiV1 | Scheme::AppDirect | Scheme::LongJump | Scheme::Admin => request_params(
            scheme,
            &PageRequest {
                index: 0,
                size,
                want_total: true,
            },
        ),
    }
}

/// An upstream page as a route reads it: `{items, total, next}`, the records from the
/// scheme's list key (`list_key`, e.g. Fusion's `resellers`), the total it reports and its
/// continuation token.
pub fn read_upstream_page(
    scheme: Scheme,
    list_key: &str,
    body: Value,
) -> Result<Value, PagingError> {
    let Value::Object(mut m) = body else {
        return Err(err("body", "is not a paged envelope"));
    };
    let next = match scheme {
        Scheme::Fusion => m
            .remove("next")
            .filter(|v| v.as_str().is_some_and(|s| !s.is_empty())),
        Scheme::RedapiV1 => m.remove("nextPageToken").filter(Value::is_string),
        Scheme::AppDirect | Scheme::LongJump | Scheme::Admin => None,
    };
    let total = match scheme {
        Scheme::Fusion => m
            .get("results")
            .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok())),
        Scheme::RedapiV1 | Scheme::AppDirect | Scheme::LongJump | Scheme::Admin => {
            read_page(scheme, Value::Object(m.clone()))?.1
        }
    };
    let items = take(&mut m, list_key)?;
    Ok(json!({"items": items, "total": total, "next": next}))
}

/// The highest page a client may ask for, in any scheme: `MAX_PAGE` pages of 1000 records
/// (the default largest page) are an offset still exact in JSON (below 2^53) and in a filter.
pub const MAX_PAGE: u64 = u32::MAX as u64;

/// The V1 `pageToken`: base64 of `{"Page":n,"PageSize":s,"TotalCount":t}`, `Page` 1-based
/// (and `"Next"`, the upstream's token, on routes the upstream pages).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct V1Token {
    /// The page, 1-based.
    pub page: u64,
    /// Records per page.
    pub page_size: u64,
    /// The total record count; 0 when not known.
    pub total_count: u64,
    /// The upstream's own continuation token (Fusion's `next`) when the upstream pages the
    /// route: carried as it came, never made or read by Rosetta. Absent otherwise, so the
    /// seed's token form is unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

impl V1Token {
    /// URL-safe base64 without padding (seed 000's example token is exactly this form).
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Accepts standard or URL-safe base64, padded or not.
    pub fn decode(token: &str) -> Result<Self, PagingError> {
        let bad = || err("pageToken", "is not a page token this API issued");
        let raw = decode_b64(token).ok_or_else(bad)?;
        let t: V1Token = serde_json::from_slice(&raw).map_err(|_| bad())?;
        // A page past the other schemes' bound is none this API issued. Page 2^63 made an
        // offset (`(page - 1) × size`) that saturated, the list routes' filter failed on
        // `offset + size`, and the client's bad token was answered with a 500.
        if t.page < 1 || t.page > MAX_PAGE || t.page_size < 1 {
            return Err(bad());
        }
        Ok(t)
    }
}

impl From<PagingError> for crate::error::BadRequest {
    fn from(e: PagingError) -> Self {
        crate::error::BadRequest::param(e.param.clone(), e.to_string())
    }
}

fn decode_b64(t: &str) -> Option<Vec<u8>> {
    [&URL_SAFE_NO_PAD, &URL_SAFE, &STANDARD, &STANDARD_NO_PAD]
        .iter()
        .find_map(|e| e.decode(t.trim()).ok())
}

fn err(param: &str, detail: &str) -> PagingError {
    PagingError {
        param: param.to_owned(),
        detail: detail.to_owned(),
    }
}

fn int(v: &str, param: &str, max: u64) -> Result<u64, PagingError> {
    match v.parse::<i64>() {
        Ok(n) if n < 0 => Err(err(param, "must not be negative")),
        Ok(n) if n as u64 > max => Err(err(param, &format!("must be at most {max}"))),
        Ok(n) => Ok(n as u64),
        Err(_) => Err(err(param, "must be an integer")),
    }
}

fn positive(v: Option<&str>, param: &str, default: u64) -> Result<u64, PagingError> {
    match v {
        None => Ok(default),
        Some(v) => match int(v, param, i32::MAX as u64)? {
            0 => Err(err(param, "must be at least 1")),
            n => Ok(n),
        },
    }
}

fn flag(v: Option<&str>, param: &str) -> Result<bool, PagingError> {
    match v {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
        Some(_) => Err(err(param, "must be true or false")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    const D: PageDefaults = PageDefaults {
        size: 30,
        max_size: 1000,
    };
    const ALL: [Scheme; 5] = [
        Scheme::RedapiV1,
        Scheme::AppDirect,
        Scheme::Fusion,
        Scheme::LongJump,
        Scheme::Admin,
    ];

    #[test]
    fn seed_token_is_reproduced_exactly() {
        let t = V1Token {
            page: 2,
            page_size: 30,
            total_count: 35,
            next: None,
        };
        assert_eq!(
            t.encode(),
            "eyJQYWdlIjoyLCJQYWdlU2l6ZSI6MzAsIlRvdGFsQ291bnQiOjM1fQ"
        );
        assert_eq!(
            V1Token::decode("eyJQYWdlIjoyLCJQYWdlU2l6ZSI6MzAsIlRvdGFsQ291bnQiOjM1fQ==").unwrap(),
            t
        );
    }

    #[test]
    fn v1_rejections_name_the_parameter() {
        for (k, v) in [
            ("maxResults", "-1"),
            ("maxResults", "abc"),
            ("maxResults", "2147483648"),
            ("pageToken", "%%%"),
            ("pageToken", "e30"),
            ("shouldReturnCount", "yes"),
        ] {
            let e = parse_request(Scheme::RedapiV1, &q(&[(k, v)]), &D).unwrap_err();
            assert_eq!(e.param, k, "{k}={v}");
        }
        // Page 0 is not a page.
        let zero = V1Token {
            page: 0,
            page_size: 5,
            total_count: 0,
            next: None,
        };
        assert!(
            V1Token::decode(&URL_SAFE_NO_PAD.encode(serde_json::to_vec(&zero).unwrap())).is_err()
        );
    }

    #[test]
    fn v1_defaults_and_token() {
        let p = parse_request(Scheme::RedapiV1, &q(&[]), &D).unwrap();
        assert_eq!(
            p,
            PageRequest {
                index: 0,
                size: 30,
                want_total: false
            }
        );
        let tok = V1Token {
            page: 3,
            page_size: 7,
            total_count: 40,
            next: None,
        }
        .encode();
        let p = parse_request(
            Scheme::RedapiV1,
            &q(&[("pageToken", &tok), ("shouldReturnCount", "TRUE")]),
            &D,
        )
        .unwrap();
        assert_eq!(
            p,
            PageRequest {
                index: 2,
                size: 7,
                want_total: true
            }
        );
        let p = parse_request(Scheme::RedapiV1, &q(&[("maxResults", "5000")]), &D).unwrap();
        assert_eq!(p.size, 1000, "clamped to the maximum");
    }

    #[test]
    fn a_v1_token_past_the_last_page_any_scheme_takes_is_refused() {
        let token = |page: u64| {
            V1Token {
                page,
                page_size: 1000,
                total_count: 0,
                next: None,
            }
            .encode()
        };
        let p =
            parse_request(Scheme::RedapiV1, &q(&[("pageToken", &token(MAX_PAGE))]), &D).unwrap();
        assert_eq!(p.index, MAX_PAGE - 1);
        assert!(p.offset() < 1 << 53, "an exact integer in JSON");
        for page in [MAX_PAGE + 1, 1 << 63, u64::MAX] {
            let e = parse_request(Scheme::RedapiV1, &q(&[("pageToken", &token(page))]), &D)
                .unwrap_err();
            assert_eq!(e.param, "pageToken", "{page}");
        }
    }

    #[test]
    fn v1_envelope() {
        let page = PageRequest {
            index: 0,
            size: 2,
            want_total: false,
        };
        let doc = render_page(
            Scheme::RedapiV1,
            vec![json!(1), json!(2)],
            Some(3),
            &page,
            &[],
            &Continuation::Rosetta,
        );
        assert!(doc.get("totalCount").is_none());
        let next = V1Token::decode(doc["nextPageToken"].as_str().unwrap()).unwrap();
        assert_eq!(
            next,
            V1Token {
                page: 2,
                page_size: 2,
                total_count: 3,
                next: None
            }
        );
        let last = render_page(
            Scheme::RedapiV1,
            vec![json!(3)],
            Some(3),
            &PageRequest {
                index: 1,
                size: 2,
                want_total: true,
            },
            &[],
            &Continuation::Rosetta,
        );
        assert_eq!(last["nextPageToken"], Value::Null);
        assert_eq!(last["totalCount"], 3);
    }

    #[test]
    fn fusion_lists_name_their_records_and_carry_the_page_size() {
        let page = PageRequest {
            index: 0,
            size: 10,
            want_total: true,
        };
        let items = vec![
            json!({"id": 21, "name": "PSTN Test name"}),
            json!({"id": 8}),
        ];
        // Seed 004's PSTN usage example: page, pageSize, pages, the named list, results.
        let doc = render_page_as(
            Scheme::Fusion,
            Some("pstnUsages"),
            items.clone(),
            Some(2),
            &page,
            &[],
            &Continuation::Rosetta,
        );
        assert_eq!(
            doc,
            json!({"results": 2, "pages": 1, "page": 1, "pageSize": 10, "pstnUsages": items})
        );
        // What a page written so reads back as.
        assert_eq!(
            read_page(Scheme::Fusion, doc).unwrap(),
            (items.clone(), Some(2))
        );
        let unnamed = render_page(
            Scheme::Fusion,
            items,
            Some(2),
            &page,
            &[],
            &Continuation::Rosetta,
        );
        assert!(unnamed["items"].is_array(), "{unnamed}");
    }

    #[test]
    fn fusion_next_token_matches_the_seed_form() {
        let page = PageRequest {
            index: 0,
            size: 10,
            want_total: true,
        };
        let doc = render_page(
            Scheme::Fusion,
            vec![json!(1); 10],
            Some(25),
            &page,
            &q(&[("parent", "3a4a")]),
            &Continuation::Rosetta,
        );
        let raw =
            String::from_utf8(STANDARD.decode(doc["next"].as_str().unwrap()).unwrap()).unwrap();
        assert_eq!(raw, "parent=3a4a&page_size=10&page=2");
        assert_eq!(doc["pages"], 3);
        let p = parse_request(
            Scheme::Fusion,
            &q(&[("next", doc["next"].as_str().unwrap())]),
            &D,
        )
        .unwrap();
        assert_eq!(
            p,
            PageRequest {
                index: 1,
                size: 10,
                want_total: true
            }
        );
        // The seed's own token decodes.
        let seed = "cGFyZW50PTNhNGFmYmQzLWYxZDctNGY4NS1iZDU5LWE0MDU2N2YyMDYzOSZwYWdlPTI=";
        assert_eq!(
            parse_request(Scheme::Fusion, &q(&[("next", seed)]), &D)
                .unwrap()
                .index,
            1
        );
    }

    #[test]
    fn admin_offset_must_sit_on_a_page_boundary() {
        assert_eq!(
            parse_request(Scheme::Admin, &q(&[("offset", "20"), ("limit", "10")]), &D)
                .unwrap()
                .index,
            2
        );
        assert_eq!(
            parse_request(Scheme::Admin, &q(&[("offset", "15"), ("limit", "10")]), &D)
                .unwrap_err()
                .param,
            "offset"
        );
        assert_eq!(
            parse_request(Scheme::Admin, &q(&[("limit", "0")]), &D)
                .unwrap_err()
                .param,
            "limit"
        );
        assert_eq!(parse_request(Scheme::Admin, &q(&[]), &D).unwrap().size, 100);
    }

    #[test]
    fn envelopes_are_read_back() {
        let page = PageRequest {
            index: 1,
            size: 2,
            want_total: true,
        };
        for scheme in ALL {
            let doc = render_page(
                scheme,
                vec![json!("a"), json!("b")],
                Some(9),
                &page,
                &[],
                &Continuation::Rosetta,
            );
            let (items, total) = read_page(scheme, doc).unwrap();
            assert_eq!(items, vec![json!("a"), json!("b")], "{scheme:?}");
            assert_eq!(total, Some(9), "{scheme:?}");
        }
    }

    proptest! {
        #[test]
        fn v1_tokens_round_trip(page in 1u64..u32::MAX as u64, size in 1u64..100_000, total in any::<u32>()) {
            let t = V1Token { page, page_size: size, total_count: u64::from(total), next: None };
            prop_assert_eq!(V1Token::decode(&t.encode()).unwrap(), t);
        }

        #[test]
        fn request_params_parse_back(index in 0u64..10_000, size in 1u64..1000, want in any::<bool>()) {
            for scheme in ALL {
                let p = PageRequest { index, size, want_total: want || !matches!(scheme, Scheme::RedapiV1 | Scheme::LongJump) };
                let back = parse_request(scheme, &request_params(scheme, &p), &D).unwrap();
                prop_assert_eq!(back, p, "{:?}", scheme);
            }
        }

        #[test]
        fn slicing_visits_every_record_once(len in 0usize..500, size in 1u64..50) {
            let mut seen = Vec::new();
            let mut index = 0;
            loop {
                let r = slice(len, &PageRequest { index, size, want_total: false });
                if r.is_empty() { break; }
                seen.extend(r);
                index += 1;
            }
            prop_assert_eq!(seen, (0..len).collect::<Vec<_>>());
        }

        #[test]
        fn following_tokens_visits_every_record_once(len in 0usize..300, size in 1u64..40, known_total in any::<bool>()) {
            for scheme in [Scheme::RedapiV1, Scheme::Fusion] {
                let records: Vec<usize> = (0..len).collect();
                let mut query = q(&[("maxResults", &size.to_string()), ("page_size", &size.to_string())]);
                let mut seen = Vec::new();
                for _ in 0..=len + 1 {
                    let page = parse_request(scheme, &query, &D).unwrap();
                    let items: Vec<Value> = records[slice(len, &page)].iter().map(|r| json!(r)).collect();
                    let total = known_total.then_some(len as u64);
                    let doc = render_page(scheme, items.clone(), total, &page, &query, &Continuation::Rosetta);
                    seen.extend(items.iter().map(|v| v.as_u64().unwrap() as usize));
                    let next = match scheme {
                        Scheme::RedapiV1 => doc["nextPageToken"].as_str().map(|t| ("pageToken", t.to_owned())),
                        Scheme::AppDirect | Scheme::Fusion | Scheme::LongJump | Scheme::Admin => {
                            doc["next"].as_str().map(|t| ("next", t.to_owned()))
                        }
                    };
                    match next {
                        Some((k, t)) => query = vec![(k.to_owned(), t)],
                        None => break,
                    }
                }
                prop_assert_eq!(&seen, &records, "{:?}", scheme);
            }
        }
    }
}

#[cfg(test)]
mod upstream_tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn the_upstream_token_rides_inside_the_v1_token_untouched() {
        let page = PageRequest {
            index: 0,
            size: 2,
            want_total: true,
        };
        let fusion_next = "cGFyZW50PXgmcGFnZT0y";
        let doc = render_page(
            Scheme::RedapiV1,
            vec![json!(1), json!(2)],
            Some(5),
            &page,
            &[],
            &Continuation::Upstream(Some(fusion_next.into())),
        );
        let token = doc["nextPageToken"].as_str().unwrap();
        let query = q(&[("pageToken", token), ("maxResults", "7")]);
        let next = parse_request(Scheme::RedapiV1, &query, &PageDefaults::default()).unwrap();
        assert_eq!(
            (next.index, next.size),
            (1, 2),
            "the upstream's size is kept"
        );
        assert_eq!(
            upstream_cursor(&query, &next).unwrap().as_deref(),
            Some(fusion_next)
        );
        assert_eq!(
            upstream_params(Scheme::Fusion, 2, Some(fusion_next)),
            q(&[("page_size", "2"), ("next", fusion_next)])
        );
        // The upstream's last page has no next: neither has the client's.
        let last = render_page(
            Scheme::RedapiV1,
            vec![json!(1)],
            None,
            &page,
            &[],
            &Continuation::Upstream(None),
        );
        assert!(last["nextPageToken"].is_null());
    }

    #[test]
    fn a_later_page_without_the_upstreams_token_is_refused() {
        let forged = V1Token {
            page: 3,
            page_size: 2,
            total_count: 9,
            next: None,
        }
        .encode();
        let query = q(&[("pageToken", &forged)]);
        let page = parse_request(Scheme::RedapiV1, &query, &PageDefaults::default()).unwrap();
        assert_eq!(
            upstream_cursor(&query, &page).unwrap_err().param,
            "pageToken"
        );
        let odd = V1Token {
            page: 2,
            page_size: 2,
            total_count: 9,
            next: Some("a&parent=elsewhere".into()),
        }
        .encode();
        let query = q(&[("pageToken", &odd)]);
        let page = parse_request(Scheme::RedapiV1, &query, &PageDefaults::default()).unwrap();
        assert!(upstream_cursor(&query, &page).is_err());
    }

    #[test]
    fn fusion_pages_are_read_from_their_list_key() {
        let v = read_upstream_page(
            Scheme::Fusion,
            "resellers",
            json!({"results": 3, "pages": 2, "page": 1, "next": "abc", "resellers": [1, 2], "other": [9]}),
        )
        .unwrap();
        assert_eq!(v, json!({"items": [1, 2], "total": 3, "next": "abc"}));
    }
}
