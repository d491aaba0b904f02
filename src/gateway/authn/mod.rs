//! Authentication: credentials from the request become a
//! [`crate::identity::Principal`] in its extensions, through the providers of an
//! [`crate::identity::AuthChain`]. Routes a pack marks `anonymous` skip it.

mod layer;
mod service;

pub use layer::AuthnLayer;
pub use service::Authn;
