//! Translation at the client edge: the client's request (body, query, paging, path values)
//! becomes an execution context for the route, and the route's outcome becomes a response
//! in the client's dialect.
//!
//! Everything a client can get wrong is checked here, before any upstream is called: body
//! size (413), JSON syntax and nesting, declared query parameters, paging parameters.

mod answer;
mod capture;
mod layer;
mod request;
mod service;

pub use capture::CaptureSink;
pub use layer::TranslateLayer;
pub use service::Translate;
