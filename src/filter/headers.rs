//! Request headers as proxy-wasm serializes a header map (ABI 0.2.1
//! `proxy_get_header_map_pairs`): a little-endian `u32` pair count, then a `u32` name length
//! and a `u32` value length per pair, then each name and each value followed by a NUL byte.
//!
//! [`refill`] decodes that buffer into a vector the adapter keeps from one request to the
//! next, refilling its strings in place: once they are long enough, reading a request's
//! headers allocates nothing but the host's buffer (the SDK's decoder allocates a `String`
//! and a `Vec` per pair, and a request frees them all again).

/// Past this many bytes of kept string capacity (one request with very large headers), the
/// kept strings are dropped before the next request rather than held by an idle VM.
const MAX_RETAINED_BYTES: usize = 64 * 1024;

/// Replaces `out` with the pairs of `buf` (names in lower case, values as UTF-8 with invalid
/// sequences replaced). A buffer that does not decode (truncated, lengths past its end) gives
/// no headers at all: the request is then decided as one that carries none.
pub fn refill(out: &mut Vec<(String, String)>, buf: &[u8]) {
    let retained: usize = out.iter().map(|(k, v)| k.capacity() + v.capacity()).sum();
    if retained > MAX_RETAINED_BYTES {
        *out = Vec::new();
    }
    let count = decode(buf, |i, name, value| {
        match out.get_mut(i) {
            Some((k, v)) => {
                k.clear();
                k.push_str(&text(name));
                v.clear();
                v.push_str(&text(value));
            }
            None => out.push((text(name).into_owned(), text(value).into_owned())),
        }
        if let Some((k, _)) = out.get_mut(i) {
            // In place: HTTP/1 and HTTP/2 codecs hand names over lower-case already.
            k.make_ascii_lowercase();
        }
    })
    .unwrap_or_default();
    out.truncate(count);
}

/// `bytes` as text: `from_utf8` (word-at-a-time over ASCII) for the usual valid input,
/// `from_utf8_lossy` (byte by byte) only for a value that is not UTF-8.
fn text(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// Calls `pair(index, name, value)` for each pair of `buf`; the number of pairs, or `None`
/// if `buf` is not a well-formed serialized map.
fn decode(buf: &[u8], mut pair: impl FnMut(usize, &[u8], &[u8])) -> Option<usize> {
    if buf.is_empty() {
        return Some(0);
    }
    let u32_at = |at: usize| -> Option<usize> {
        let bytes: [u8; 4] = buf.get(at..at.checked_add(4)?)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(bytes)).ok()
    };
    let count = u32_at(0)?;
    let mut data = count.checked_mul(8)?.checked_add(4)?;
    if data > buf.len() {
        return None;
    }
    for i in 0..count {
        let name_len = u32_at(4 + i * 8)?;
        let value_len = u32_at(8 + i * 8)?;
        let name_end = data.checked_add(name_len)?;
        let name = buf.get(data..name_end)?;
        let value_start = name_end.checked_add(1)?;
        let value_end = value_start.checked_add(value_len)?;
        let value = buf.get(value_start..value_end)?;
        pair(i, name, value);
        data = value_end.checked_add(1)?;
    }
    Some(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The serialization proxy-wasm hosts produce (and the SDK's `serialize_map`).
    fn serialize(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
        for (k, v) in pairs {
            out.extend((k.len() as u32).to_le_bytes());
            out.extend((v.len() as u32).to_le_bytes());
        }
        for (k, v) in pairs {
            out.extend(*k);
            out.push(0);
            out.extend(*v);
            out.push(0);
        }
        out
    }

    fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn decodes_and_reuses_the_strings() {
        let mut out = Vec::new();
        let first = serialize(&[
            (b":path", b"/a"),
            (b"Authorization", b"Bearer xyz"),
            (b"x-empty", b""),
        ]);
        refill(&mut out, &first);
        assert_eq!(
            out,
            owned(&[
                (":path", "/a"),
                ("authorization", "Bearer xyz"),
                ("x-empty", "")
            ])
        );
        let buffers: Vec<*const u8> = out.iter().map(|(k, _)| k.as_ptr()).collect();
        // Fewer, shorter pairs: the same strings, refilled; the extra one dropped.
        refill(&mut out, &serialize(&[(b":path", b"/"), (b"host", b"h")]));
        assert_eq!(out, owned(&[(":path", "/"), ("host", "h")]));
        assert_eq!(out[0].0.as_ptr(), buffers[0]);
        assert_eq!(out[1].0.as_ptr(), buffers[1]);
        // More pairs than before: the new ones are allocated.
        refill(&mut out, &first);
        assert_eq!(out.len(), 3);
        assert_eq!(out[2], ("x-empty".to_string(), String::new()));
        // No buffer (no headers, or the host refused): no headers.
        refill(&mut out, &[]);
        assert!(out.is_empty());
    }

    #[test]
    fn invalid_utf8_is_replaced_never_a_panic() {
        let mut out = Vec::new();
        refill(&mut out, &serialize(&[(b"x-bin", b"a\xffb")]));
        assert_eq!(out, owned(&[("x-bin", "a\u{fffd}b")]));
    }

    #[test]
    fn a_malformed_buffer_gives_no_headers() {
        let good = serialize(&[(b"authorization", b"Bearer t"), (b"x", b"y")]);
        let mut out = owned(&[("stale", "value")]);
        // Every truncation of a good buffer, and lengths pointing past the end.
        for cut in 1..good.len() - 1 {
            refill(&mut out, &good[..cut]);
            assert!(out.is_empty(), "cut at {cut}: {out:?}");
        }
        let mut huge = good.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        refill(&mut out, &huge);
        assert!(out.is_empty());
        let mut long_name = good.clone();
        long_name[4..8].copy_from_slice(&1000u32.to_le_bytes());
        refill(&mut out, &long_name);
        assert!(out.is_empty());
        refill(&mut out, &good);
        assert_eq!(out, owned(&[("authorization", "Bearer t"), ("x", "y")]));
    }

    #[test]
    fn large_requests_do_not_pin_memory() {
        let mut out = Vec::new();
        let big = "v".repeat(MAX_RETAINED_BYTES);
        refill(&mut out, &serialize(&[(b"x-big", big.as_bytes())]));
        assert_eq!(out[0].1.len(), MAX_RETAINED_BYTES);
        refill(&mut out, &serialize(&[(b"x", b"1")]));
        assert_eq!(out, owned(&[("x", "1")]));
        assert!(out[0].1.capacity() < 1024, "{}", out[0].1.capacity());
    }
}
