//! Names of the headers Rosetta sets on every answer, as constants: `insert("x-name", …)`
//! parses and validates the name on each call, and these are on every request's path.

use http::HeaderName;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const X_TRACE_CODE: HeaderName = HeaderName::from_static("x-trace-code");
pub const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
pub const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
pub const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
pub const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");
pub const X_QUOTA_DAY_REMAINING: HeaderName = HeaderName::from_static("x-quota-day-remaining");
pub const X_QUOTA_WINDOW_REMAINING: HeaderName =
    HeaderName::from_static("x-quota-window-remaining");
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
