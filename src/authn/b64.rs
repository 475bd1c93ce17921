//! Strict base64url: the only decoding jwt-edge applies to token segments and JWK members.

use base64::alphabet::URL_SAFE;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;

/// Unpadded, canonical base64url (RFC 7515 §2): no `=`, no `+` or `/`, no whitespace, and
/// the unused low bits of the last character must be zero, so every byte string has exactly
/// one accepted encoding.
const STRICT: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

/// Decodes strict base64url; `None` on any deviation.
pub fn decode(s: &str) -> Option<Vec<u8>> {
    STRICT.decode(s.as_bytes()).ok()
}

/// Encodes as unpadded base64url.
pub fn encode(bytes: &[u8]) -> String {
    STRICT.encode(bytes)
}

/// Encodes as padded base64url (jwt_authn's `pad_forward_payload_header`).
pub fn encode_padded(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
