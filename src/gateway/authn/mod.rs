//! Authentication: credentials from the request become a
//! [`crate::identity::Principal`] in its extensions, through the providers of an
//! [`crate::identity::AuthChain`]. Routes a pack marks `anonymous` skip it.
//!
//! A caller known at once (a declared key, a check still cached) goes straight on. Any other
//! attempt is made through [`crate::identity::AuthChain::attempt`] with the client's
//! address: refused 429 when its username's or its IP's budget of failures is spent, 503
//! when there is no room to check it, 401 when it fails — and a 401 is written to the audit
//! trail here, as `anonymous` with the IP, since the audit layer below never sees it.

mod layer;
mod refusal;
mod service;

pub use layer::AuthnLayer;
pub use service::Authn;
