//! Paging schemes of the five dialects, as pure functions over plain data.
//!
//! STUB: interface fixed by the skeleton; implementation to be filled in.

use serde_json::Value;

/// The paging scheme of a dialect (DESIGN §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    RedapiV1,
    AppDirect,
    Fusion,
    LongJump,
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
    pub size: u64,
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
    pub param: String,
    pub detail: String,
}

/// Reads the client's paging parameters.
pub fn parse_request(
    _scheme: Scheme,
    _query: &[(String, String)],
    _defaults: &PageDefaults,
) -> Result<PageRequest, PagingError> {
    todo!()
}

/// Query parameters that ask an upstream of this scheme for `page`.
pub fn request_params(_scheme: Scheme, _page: &PageRequest) -> Vec<(String, String)> {
    todo!()
}

/// The client-facing envelope for one page of `items`.
pub fn render_page(
    _scheme: Scheme,
    _items: Vec<Value>,
    _total: Option<u64>,
    _page: &PageRequest,
    _query: &[(String, String)],
) -> Value {
    todo!()
}

/// Reads an upstream envelope of this scheme: the items and the total when it says.
pub fn read_page(_scheme: Scheme, _body: Value) -> Result<(Vec<Value>, Option<u64>), PagingError> {
    todo!()
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
