//! JSON text as the converter writes it: strings (escaped only when they must be), field
//! keys written out once per path, and the hashes that tell an object's fields apart. Text
//! is written a few bytes at a time, so these avoid the per-call costs of a general JSON
//! writer.

/// Whether any byte of `s` must be escaped in a JSON string (a control character, `"` or
/// `\\`), eight bytes at a time: element text is short, too short for SIMD to pay.
pub(super) fn needs_escape(s: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // A byte of `x` is zero ⇔ its high bit is set in `zero(x)` (the classic bit trick;
    // false positives only ever occur above a true zero byte, so the test is exact).
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let word = |c: &[u8]| {
        let mut w = [0; 8];
        w.copy_from_slice(c);
        let x = u64::from_le_bytes(w);
        // Bytes below 0x20: `x - 0x20` borrows into the high bit for those (and ASCII
        // bytes only; bytes ≥ 0x80 are masked out by `!x`).
        let control = x.wrapping_sub(0x20 * ONES) & !x & HIGH;
        control | zero(x ^ (u64::from(b'"') * ONES)) | zero(x ^ (u64::from(b'\\') * ONES)) != 0
    };
    if s.len() < 8 {
        return s.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\');
    }
    let mut chunks = s.chunks_exact(8);
    if chunks.any(word) {
        return true;
    }
    // The last eight bytes, overlapping the chunks already tested: no byte-by-byte tail.
    !chunks.remainder().is_empty() && word(&s[s.len() - 8..])
}

/// Writes `s` as a JSON string. Most text needs no escaping: then it is one copy.
#[inline]
pub(super) fn json_str(out: &mut Vec<u8>, s: &str) {
    if !needs_escape(s.as_bytes()) {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Writing to a Vec cannot fail.
        let _ = serde_json::to_writer(out, s);
    }
}

/// A field name as written: quoted, escaped, with its `:` (`:[` opening an array).
pub(super) fn json_key(name: &str, array: bool) -> Vec<u8> {
    let mut key = Vec::with_capacity(name.len() + 4);
    json_str(&mut key, name);
    key.extend_from_slice(if array { b":[" } else { b":" });
    key
}

/// The hash of a key by its name alone (without the `:`/`:[` after it): an array and a
/// plain field of the same name are the same field.
pub(super) fn key_hash(key: &[u8]) -> u64 {
    let end = key
        .iter()
        .rposition(|&b| b == b'"')
        .map_or(key.len(), |i| i + 1);
    fnv1a(&key[..end])
}

/// The 64-bit FNV-1a hash: quick on bytes as short as field names.
fn fnv1a(s: &[u8]) -> u64 {
    s.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::needs_escape;

    proptest::proptest! {
        #[test]
        fn escape_test_is_exact(s in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40)) {
            let slow = s.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\');
            proptest::prop_assert_eq!(needs_escape(&s), slow);
        }
    }
}
