//! Per-request context carried in request extensions.
//!
//! The trace layer inserts a [`RequestMeta`] before anything else runs, so every later layer,
//! the upstream calls and the error renderer see the same request id and tracecode.

use std::sync::Arc;
use std::time::Instant;

/// The client's address, inserted by the server for each connection's requests.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// The address of the listener that accepted the request (links in answers name it when no
/// `server.public_url` is set), inserted by the server like [`PeerAddr`].
#[derive(Debug, Clone, Copy)]
pub struct LocalAddr(pub std::net::SocketAddr);

/// Identity of one request, as the trace layer assigned it.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    /// `X-Request-Id`: the client's when it sent a sane one, else ours.
    pub request_id: Arc<str>,
    /// `X-Trace-Code`: Rosetta's handle on the request (admin `/v1/tracecode/{tracecode}`).
    pub tracecode: Arc<str>,
    /// W3C trace id (32 hex digits) passed to upstreams in `traceparent`.
    pub trace_id: Arc<str>,
    /// When the request arrived.
    pub started: Instant,
}

impl RequestMeta {
    /// A fresh context (trace ids from the CSPRNG).
    pub fn new(request_id: Option<&str>) -> Self {
        use rand::Rng;
        let mut rng = rand::rng();
        // Hex written on the stack and copied once into its `Arc` (a `format!` first was a
        // second allocation per id on every request).
        let mut trace_id = [0u8; 32];
        let mut tracecode = [0u8; 16];
        let hex = |bytes: &[u8], out: &mut [u8]| -> Arc<str> {
            // Lowercase hex of bytes that fit `out` exactly: cannot fail.
            let _ = hex::encode_to_slice(bytes, out);
            Arc::from(std::str::from_utf8(out).unwrap_or_default())
        };
        let trace_id = hex(&rng.random::<u128>().to_be_bytes(), &mut trace_id);
        let tracecode = hex(&rng.random::<u64>().to_be_bytes(), &mut tracecode);
        let request_id = match request_id {
            Some(id) if is_sane_request_id(id) => Arc::from(id),
            // From the thread's CSPRNG: `Uuid::new_v4` asks the OS for every id (a syscall per
            // request on the hot path).
            _ => Arc::from(
                uuid::Builder::from_random_bytes(rng.random())
                    .into_uuid()
                    .hyphenated()
                    .encode_lower(&mut uuid::Uuid::encode_buffer()) as &str,
            ),
        };
        Self {
            request_id,
            tracecode,
            trace_id,
            started: crate::clock::real_now(),
        }
    }

    /// `traceparent` for an upstream call made on behalf of this request: written on the
    /// stack and copied once into the header value (a `format!` then a header copy was two
    /// allocations and the formatting machinery on every upstream call).
    pub fn traceparent(&self) -> Option<http::HeaderValue> {
        use rand::Rng;
        let span: u64 = rand::rng().random();
        if self.trace_id.len() != 32 {
            // Not one of ours (`new` makes 32 hex digits): no W3C parent to give.
            return None;
        }
        // "00-" + 32 hex + "-" + 16 hex + "-01"
        let mut out = [0u8; 55];
        out[..3].copy_from_slice(b"00-");
        out[3..35].copy_from_slice(self.trace_id.as_bytes());
        out[35] = b'-';
        let _ = hex::encode_to_slice(span.to_be_bytes(), &mut out[36..52]);
        out[52..].copy_from_slice(b"-01");
        http::HeaderValue::from_bytes(&out).ok()
    }
}

/// Client-sent ids are echoed back and logged, so only short printable ones are kept.
fn is_sane_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_sane_client_ids_and_replaces_others() {
        assert_eq!(&*RequestMeta::new(Some("abc-123")).request_id, "abc-123");
        assert_ne!(&*RequestMeta::new(Some("bad id\n")).request_id, "bad id\n");
        assert_eq!(RequestMeta::new(None).request_id.len(), 36);
    }

    #[test]
    fn traceparent_is_w3c_shaped() {
        let m = RequestMeta::new(None);
        let tp = m.traceparent().unwrap();
        let parts: Vec<&str> = tp.to_str().unwrap().split('-').collect();
        assert_eq!(parts.len(), 4);
        assert_eq!(parts[0], "00");
        assert_eq!(parts[1], &*m.trace_id);
        assert_eq!(parts[2].len(), 16);
        assert!(parts[2].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(parts[3], "01");
        assert_eq!(tp.len(), 55);
        let odd = RequestMeta {
            trace_id: "not-ours".into(),
            ..m
        };
        assert_eq!(
            odd.traceparent(),
            None,
            "no parent rather than a malformed one"
        );
    }

    #[test]
    fn ids_are_lowercase_hex_of_their_length_and_differ() {
        let hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let (a, b) = (RequestMeta::new(None), RequestMeta::new(None));
        for m in [&a, &b] {
            assert_eq!(m.trace_id.len(), 32);
            assert_eq!(m.tracecode.len(), 16);
            assert!(hex(&m.trace_id) && hex(&m.tracecode), "{m:?}");
        }
        assert_ne!(a.trace_id, b.trace_id);
        assert_ne!(a.tracecode, b.tracecode);
    }
}
