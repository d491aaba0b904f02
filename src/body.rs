//! The one response body type of the stack.
//!
//! Every layer answers with the same boxed body so that layers compose without generic
//! explosion; the box costs one allocation per response, which is noise next to a hop.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, combinators::UnsyncBoxBody};

/// Boxed error used by bodies and by tower services that do not have a typed error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Response body of every Rosetta service.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A body holding `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}
