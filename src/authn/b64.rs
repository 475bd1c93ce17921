//! Base64 (RFC 4648), the two forms jwt-edge reads and writes: strict unpadded base64url for
//! token segments and JWK members (RFC 7515 §2), and padded standard base64 for configuration
//! bytes, PEM bodies and claim values forwarded as headers.
//!
//! Written here rather than taken from the `base64` crate (issue #13): every distinct token
//! decodes three segments, and the crate's decoder (unrolled for long inputs) was the
//! largest piece of machine code a verification ran through outside the arithmetic:
//! 60 cold 64-byte lines and ~6,600 instructions per RS256 token in V8 (`make
//! bench-footprint`), where this loop takes a few lines. Both forms accept exactly one
//! encoding of each byte string (the unused low bits of the last character must be zero,
//! padding exactly as RFC 4648 §4 writes it), as the crate's strict configurations do; the
//! tests compare every result with the crate's.

use std::fmt;

/// base64url's alphabet (RFC 4648 §5).
const URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
/// Standard base64's alphabet (RFC 4648 §4).
const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
/// A byte that is not in the alphabet.
const INVALID: u8 = 0xff;

/// Each byte's 6-bit value in `alphabet`, or [`INVALID`].
#[allow(clippy::indexing_slicing)] // a byte indexes 256 entries; i < 64 = the alphabet's length
const fn table(alphabet: &[u8; 64]) -> [u8; 256] {
    let mut t = [INVALID; 256];
    let mut i = 0;
    while i < 64 {
        t[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    t
}

const URL_TABLE: [u8; 256] = table(URL);
const STANDARD_TABLE: [u8; 256] = table(STANDARD);

/// Why an input is not base64 of the expected form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// A byte outside the alphabet (padding where none belongs included).
    Symbol { byte: u8, offset: usize },
    /// A length no encoding has (one character past a whole group; a padded input that is
    /// not whole groups of four).
    Length,
    /// Padding missing, in excess, or where the form has none.
    Padding,
    /// The last character's unused low bits are not zero (not the canonical encoding).
    TrailingBits,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Symbol { byte, offset } if byte.is_ascii_graphic() => {
                write!(
                    f,
                    "invalid character '{}' at offset {offset}",
                    char::from(*byte)
                )
            }
            DecodeError::Symbol { byte, offset } => {
                write!(f, "invalid byte 0x{byte:02x} at offset {offset}")
            }
            DecodeError::Length => f.write_str("invalid length"),
            DecodeError::Padding => f.write_str("invalid padding"),
            DecodeError::TrailingBits => f.write_str("non-zero unused bits in the last character"),
        }
    }
}

/// Decodes strict base64url: no padding, no `+` or `/`, no whitespace, zero unused bits;
/// `None` on any deviation.
pub fn decode(s: &str) -> Option<Vec<u8>> {
    decode_groups(s.as_bytes(), &URL_TABLE).ok()
}

/// Decodes padded standard base64 (RFC 4648 §4): whole groups of four, canonical padding,
/// zero unused bits.
pub fn decode_standard(s: &str) -> Result<Vec<u8>, DecodeError> {
    let input = s.as_bytes();
    if input.len() % 4 != 0 {
        return Err(DecodeError::Length);
    }
    let pad = input
        .iter()
        .rev()
        .take(2)
        .take_while(|&&b| b == b'=')
        .count();
    let body = input.get(..input.len() - pad).unwrap_or_default();
    // One `=` after three characters, two after two: the padding RFC 4648 writes.
    if pad > 0 && body.len() % 4 != 4 - pad {
        return Err(DecodeError::Padding);
    }
    decode_groups(body, &STANDARD_TABLE)
}

/// Decodes unpadded characters of `table`'s alphabet.
fn decode_groups(input: &[u8], table: &[u8; 256]) -> Result<Vec<u8>, DecodeError> {
    let tail = input.len() % 4;
    if tail == 1 {
        return Err(DecodeError::Length);
    }
    let value = |b: u8| u32::from(lookup(table, b));
    // The whole groups' bytes are written in place, three per group, then the rest's.
    let whole = input.len() / 4 * 3;
    let mut out = Vec::with_capacity(whole + 2);
    out.resize(whole, 0);
    let mut groups = input.chunks_exact(4);
    for (group, bytes) in groups.by_ref().zip(out.chunks_exact_mut(3)) {
        if let ([a, b, c, d], [x, y, z]) = (group, bytes) {
            let (a, b, c, d) = (value(*a), value(*b), value(*c), value(*d));
            if (a | b | c | d) & 0x80 != 0 {
                return Err(first_invalid(input, table));
            }
            let n = a << 18 | b << 12 | c << 6 | d;
            (*x, *y, *z) = ((n >> 16) as u8, (n >> 8) as u8, n as u8);
        }
    }
    let rest = groups.remainder();
    let mut n = 0u32;
    for &b in rest {
        let v = value(b);
        if v & 0x80 != 0 {
            return Err(first_invalid(input, table));
        }
        n = n << 6 | v;
    }
    match *rest {
        [_, _] if n & 0xf == 0 => out.push((n >> 4) as u8),
        [_, _, _] if n & 0x3 == 0 => out.extend_from_slice(&[(n >> 10) as u8, (n >> 2) as u8]),
        [] => {}
        _ => return Err(DecodeError::TrailingBits),
    }
    Ok(out)
}

/// `b`'s entry in a decoding table.
#[inline]
#[allow(clippy::indexing_slicing)] // a byte indexes a 256-entry table
fn lookup(table: &[u8; 256], b: u8) -> u8 {
    table[usize::from(b)]
}

/// The first byte of `input` outside `table`'s alphabet (the slow path of an error).
fn first_invalid(input: &[u8], table: &[u8; 256]) -> DecodeError {
    let (offset, byte) = input
        .iter()
        .enumerate()
        .find(|(_, &b)| lookup(table, b) == INVALID)
        .map_or((0, 0), |(i, &b)| (i, b));
    DecodeError::Symbol { byte, offset }
}

/// Encodes as unpadded base64url.
pub fn encode(bytes: &[u8]) -> String {
    encode_with(bytes, URL, false)
}

/// Encodes as padded base64url (jwt_authn's `pad_forward_payload_header`).
pub fn encode_padded(bytes: &[u8]) -> String {
    encode_with(bytes, URL, true)
}

/// Encodes as padded standard base64.
pub fn encode_standard(bytes: &[u8]) -> String {
    encode_with(bytes, STANDARD, true)
}

#[allow(clippy::indexing_slicing)] // masked to 6 bits: below the alphabet's 64
fn encode_with(bytes: &[u8], alphabet: &[u8; 64], pad: bool) -> String {
    let symbol = |n: u32, shift: u32| char::from(alphabet[((n >> shift) & 0x3f) as usize]);
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    let mut groups = bytes.chunks_exact(3);
    for group in groups.by_ref() {
        if let [a, b, c] = *group {
            let n = u32::from(a) << 16 | u32::from(b) << 8 | u32::from(c);
            out.extend([symbol(n, 18), symbol(n, 12), symbol(n, 6), symbol(n, 0)]);
        }
    }
    match *groups.remainder() {
        [a] => {
            let n = u32::from(a) << 16;
            out.extend([symbol(n, 18), symbol(n, 12)]);
            if pad {
                out.push_str("==");
            }
        }
        [a, b] => {
            let n = u32::from(a) << 16 | u32::from(b) << 8;
            out.extend([symbol(n, 18), symbol(n, 12), symbol(n, 6)]);
            if pad {
                out.push('=');
            }
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::TestRng;
    use base64::engine::general_purpose::{
        GeneralPurpose, GeneralPurposeConfig, STANDARD as CRATE_STANDARD, URL_SAFE,
    };
    use base64::engine::DecodePaddingMode;
    use base64::Engine;

    /// The `base64` crate configured as this module's strict base64url.
    const CRATE_URL_STRICT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new()
            .with_encode_padding(false)
            .with_decode_padding_mode(DecodePaddingMode::RequireNone)
            .with_decode_allow_trailing_bits(false),
    );

    #[test]
    fn strictness() {
        assert_eq!(decode("eyJ9").as_deref(), Some(&b"{\"}"[..]));
        assert_eq!(decode("").as_deref(), Some(&b""[..]));
        assert_eq!(decode("_-8").as_deref(), Some(&[0xff, 0xef][..]));
        for bad in [
            "eyJ9=", "eyJ=", "ab+/", "ab/c", "ey J9", "ey\nJ9", "a", "_-9",
        ] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
        assert_eq!(encode(&[0xff, 0xef]), "_-8");
        assert_eq!(encode_padded(&[0xff, 0xef]), "_-8=");
        assert_eq!(encode_standard(&[0xff, 0xef]), "/+8=");
        assert_eq!(decode_standard("/+8=").as_deref(), Ok(&[0xff, 0xef][..]));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let err = |s: &str| decode_standard(s).unwrap_err().to_string();
        assert_eq!(err("ab-d"), "invalid character '-' at offset 2");
        assert_eq!(err("ab\u{7f}d"), "invalid byte 0x7f at offset 2");
        assert_eq!(err("abc"), "invalid length");
        assert_eq!(err("abcde==="), "invalid character '=' at offset 5");
        assert_eq!(err("ab=c"), "invalid character '=' at offset 2");
        assert_eq!(err("abc=abcd"), "invalid character '=' at offset 3");
        assert_eq!(err("a==="), "invalid character '=' at offset 1");
        assert_eq!(err("ab=="), "non-zero unused bits in the last character");
        assert_eq!(err("abd="), "non-zero unused bits in the last character");
        assert_eq!(decode_standard("abc=").as_deref(), Ok(&[0x69, 0xb7][..]));
        assert_eq!(err("abcd===="), "invalid character '=' at offset 4");
    }

    /// A string of `len` characters drawn mostly from both alphabets and `=`, sometimes
    /// anything: what a decoder must sort out.
    fn candidate(rng: &mut TestRng, len: usize) -> String {
        const CHARS: &[u8] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/===A";
        (0..len)
            .map(|_| {
                let r = rng.next_u64();
                let any = (r >> 8) as u8 & 0x7f;
                let listed = CHARS.get(rng.below(CHARS.len())).copied().unwrap_or(b'A');
                char::from(if r % 17 == 0 { any } else { listed })
            })
            .collect()
    }

    #[test]
    fn decoders_agree_with_the_base64_crate() {
        let mut rng = TestRng(0xb64);
        for round in 0..60_000 {
            let s = candidate(&mut rng, round % 23);
            assert_eq!(decode(&s), CRATE_URL_STRICT.decode(&s).ok(), "url {s:?}");
            assert_eq!(
                decode_standard(&s).ok(),
                CRATE_STANDARD.decode(&s).ok(),
                "standard {s:?}"
            );
        }
        // Every encoding of every short byte string, and its last character changed.
        for round in 0..20_000 {
            let bytes = rng.bytes(round % 11);
            for (ours, theirs) in [
                (encode(&bytes), CRATE_URL_STRICT.encode(&bytes)),
                (encode_padded(&bytes), URL_SAFE.encode(&bytes)),
                (encode_standard(&bytes), CRATE_STANDARD.encode(&bytes)),
            ] {
                assert_eq!(ours, theirs, "{bytes:?}");
            }
            let url = encode(&bytes);
            assert_eq!(decode(&url).as_deref(), Some(&bytes[..]));
            let std = encode_standard(&bytes);
            assert_eq!(decode_standard(&std).as_deref(), Ok(&bytes[..]));
            let mut flipped = url.into_bytes();
            if let Some(last) = flipped.last_mut() {
                *last = URL.get(rng.below(64)).copied().unwrap_or(b'A');
                let s = String::from_utf8(flipped).unwrap_or_default();
                assert_eq!(decode(&s), CRATE_URL_STRICT.decode(&s).ok(), "{s:?}");
            }
        }
    }
}
