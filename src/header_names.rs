//! Names of the headers Rosetta sets on every answer, as constants: `insert("x-name", …)`
//! parses and validates the name on each call, and these are on every request's path.

use http::HeaderName;

/// `X-Request-Id`: the client's request id, or one Rosetta made.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// `X-Trace-Code`: Rosetta's handle on the request, for `/v1/tracecode`.
pub const X_TRACE_CODE: HeaderName = HeaderName::from_static("x-trace-code");
/// `RateLimit-Limit`: the policy's burst.
pub const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
/// `RateLimit-Remaining`: requests the bucket still takes.
pub const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
/// `RateLimit-Reset`: seconds until the bucket is empty again.
pub const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
/// `Cache-Status`: whether the read cache answered.
pub const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");
/// `X-Quota-Day-Remaining`: quota points left today.
pub const X_QUOTA_DAY_REMAINING: HeaderName = HeaderName::from_static("x-quota-day-remaining");
/// `X-Quota-Window-Remaining`: quota points left in the dated window.
pub const X_QUOTA_WINDOW_REMAINING: HeaderName =
    HeaderName::from_static("x-quota-window-remaining");
/// `traceparent`: the W3C trace context passed to upstreams.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
