//! DPoP server nonces (RFC 9449 §8): stateless, so every worker of a proxy issues and accepts
//! the same ones given the provider's secret (kept in shared data by
//! `sources::dpop_nonce`).
//!
//! A nonce is `base64url(window || mac)`: `window` is `now / lifetime` as a big-endian `u32`,
//! `mac` the first 16 bytes of HMAC-SHA256 under the provider's 32-byte secret over the
//! provider's name, the lifetime and the window. A nonce is accepted in its own window and
//! the next one, so it lives between one and two lifetimes; it is bound to its provider and
//! proxy (another provider's or another proxy's nonce fails the MAC). The MAC is compared in
//! constant time. Nothing here keeps state: what a client sent is never stored or echoed.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::authn::b64;
use crate::authn::error::AuthError;
use crate::time::{Millis, UnixMillis};

/// Bytes of a provider's nonce secret.
pub const SECRET_BYTES: usize = 32;
/// Bytes of the MAC in a nonce (128 bits: forging one takes 2^128 guesses per window).
const MAC_BYTES: usize = 16;
/// Bytes of a decoded nonce: the window, then the MAC.
pub const NONCE_BYTES: usize = 4 + MAC_BYTES;
/// Characters of an encoded nonce (unpadded base64url of [`NONCE_BYTES`]).
const NONCE_CHARS: usize = (NONCE_BYTES * 4).div_ceil(3);

/// A provider's nonce secret.
pub type NonceSecret = [u8; SECRET_BYTES];

/// The `nonce` claim of a proof that passed its other checks, decoded but not yet verified
/// (the secret is in shared data, read only when the request is otherwise allowed). Fixed
/// size: nothing of what the client sent is kept beyond these bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NonceClaim {
    /// The proof has no `nonce`.
    #[default]
    Absent,
    /// A `nonce` that cannot be one of ours (not a string, not base64url, wrong length).
    Malformed,
    /// A `nonce` of the right shape.
    Present([u8; NONCE_BYTES]),
}

impl NonceClaim {
    /// The claim as found in a proof's payload.
    pub fn parse(claim: Option<&serde_json::Value>) -> NonceClaim {
        let Some(claim) = claim else {
            return NonceClaim::Absent;
        };
        let Some(s) = claim.as_str() else {
            return NonceClaim::Malformed;
        };
        // Checked before decoding, so a long value costs nothing.
        if s.len() != NONCE_CHARS {
            return NonceClaim::Malformed;
        }
        b64::decode(s)
            .and_then(|bytes| <[u8; NONCE_BYTES]>::try_from(bytes).ok())
            .map_or(NonceClaim::Malformed, NonceClaim::Present)
    }
}

/// The window `now` falls in: whole lifetimes since the epoch (saturating: a lifetime of at
/// least a second keeps this below `u32::MAX` until 2106).
fn window(lifetime: Millis, now: UnixMillis) -> u32 {
    let lifetime = lifetime.as_millis().max(1);
    u32::try_from(now.as_millis() / lifetime).unwrap_or(u32::MAX)
}

fn mac(secret: &NonceSecret, provider: &str, lifetime: Millis, window: u32) -> [u8; MAC_BYTES] {
    let mut out = [0; MAC_BYTES];
    // Any key length is accepted by HMAC; the error branch is unreachable.
    let Ok(mut m) = Hmac::<Sha256>::new_from_slice(secret) else {
        return out;
    };
    // The name is length-prefixed so that no (name, lifetime) pair reads as another.
    m.update(&(provider.len() as u64).to_be_bytes());
    m.update(provider.as_bytes());
    m.update(&lifetime.as_millis().to_be_bytes());
    m.update(&window.to_be_bytes());
    let tag = m.finalize().into_bytes();
    for (o, t) in out.iter_mut().zip(tag.iter()) {
        *o = *t;
    }
    out
}

/// The nonce for the window `now` is in: what a `DPoP-Nonce` header carries.
pub fn issue(secret: &NonceSecret, provider: &str, lifetime: Millis, now: UnixMillis) -> String {
    let w = window(lifetime, now);
    let mut bytes = [0u8; NONCE_BYTES];
    let (head, tail) = bytes.split_at_mut(4);
    head.copy_from_slice(&w.to_be_bytes());
    tail.copy_from_slice(&mac(secret, provider, lifetime, w));
    b64::encode(&bytes)
}

/// Checks a proof's nonce: issued by this provider under `secret` for the current window or
/// the one before. `dpop_nonce_missing` without one, `dpop_nonce_invalid` otherwise.
pub fn verify(
    secret: &NonceSecret,
    provider: &str,
    lifetime: Millis,
    claim: &NonceClaim,
    now: UnixMillis,
) -> Result<(), AuthError> {
    let bytes = match claim {
        NonceClaim::Absent => return Err(AuthError::DpopNonceMissing),
        NonceClaim::Malformed => return Err(AuthError::DpopNonceInvalid),
        NonceClaim::Present(bytes) => bytes,
    };
    let (head, tail) = bytes.split_at(4);
    let mut w = [0; 4];
    w.copy_from_slice(head);
    let w = u32::from_be_bytes(w);
    let current = window(lifetime, now);
    if w != current && w.checked_add(1) != Some(current) {
        return Err(AuthError::DpopNonceInvalid);
    }
    let expected = mac(secret, provider, lifetime, w);
    if bool::from(expected.as_slice().ct_eq(tail)) {
        Ok(())
    } else {
        Err(AuthError::DpopNonceInvalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: NonceSecret = [7; SECRET_BYTES];
    const LIFE: Millis = Millis::from_secs(60);
    /// The start of a window.
    const T0: u64 = 1_700_000_040_000;

    fn at(ms: u64) -> UnixMillis {
        UnixMillis(ms)
    }

    fn claim(nonce: &str) -> NonceClaim {
        NonceClaim::parse(Some(&json!(nonce)))
    }

    fn check(nonce: &str, now: u64) -> &'static str {
        match verify(&SECRET, "idp", LIFE, &claim(nonce), at(now)) {
            Ok(()) => "ok",
            Err(e) => e.code(),
        }
    }

    #[test]
    fn shape() {
        assert_eq!(T0 % 60_000, 0);
        let n = issue(&SECRET, "idp", LIFE, at(T0));
        assert_eq!(n.len(), NONCE_CHARS);
        assert_eq!(NONCE_CHARS, 27);
        let bytes = b64::decode(&n).unwrap();
        assert_eq!(
            bytes[..4],
            u32::try_from(T0 / 60_000).unwrap().to_be_bytes()
        );
        // Only the window decides: the same nonce all through it, another in the next.
        assert_eq!(issue(&SECRET, "idp", LIFE, at(T0 + 59_999)), n);
        assert_ne!(issue(&SECRET, "idp", LIFE, at(T0 + 60_000)), n);
        // Header-safe: base64url only.
        assert!(n
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }

    #[test]
    fn windows() {
        let n = issue(&SECRET, "idp", LIFE, at(T0 + 30_000));
        // Its own window and the next one, to their last millisecond.
        for now in [T0, T0 + 59_999, T0 + 60_000, T0 + 119_999] {
            assert_eq!(check(&n, now), "ok", "{now}");
        }
        // Older: two windows on. Future: the window before it was issued.
        assert_eq!(check(&n, T0 + 120_000), "dpop_nonce_invalid");
        assert_eq!(check(&n, T0 + 10 * 60_000), "dpop_nonce_invalid");
        assert_eq!(check(&n, T0 - 1), "dpop_nonce_invalid");
        assert_eq!(check(&n, 0), "dpop_nonce_invalid");
    }

    #[test]
    fn bound_to_provider_secret_and_lifetime() {
        let other_provider = issue(&SECRET, "idp2", LIFE, at(T0));
        let other_secret = issue(&[8; SECRET_BYTES], "idp", LIFE, at(T0));
        assert_eq!(check(&other_provider, T0), "dpop_nonce_invalid");
        assert_eq!(check(&other_secret, T0), "dpop_nonce_invalid");
        // Same window number under another lifetime (2 minutes, at twice the time).
        let two = Millis::from_secs(120);
        let n = issue(&SECRET, "idp", two, at(2 * T0));
        assert_eq!(
            b64::decode(&n).unwrap()[..4],
            b64::decode(&issue(&SECRET, "idp", LIFE, at(T0))).unwrap()[..4]
        );
        assert_eq!(check(&n, T0), "dpop_nonce_invalid");
        // The length prefix: ("ab", …) and ("a", "b"…) do not collide.
        assert_ne!(mac(&SECRET, "ab", LIFE, 1), mac(&SECRET, "a", LIFE, 1));
    }

    #[test]
    fn every_bit_flip_is_refused() {
        let n = issue(&SECRET, "idp", LIFE, at(T0));
        let bytes = b64::decode(&n).unwrap();
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                // A flip in the window's low bit may land on the previous window: the MAC
                // still refuses it.
                assert_eq!(
                    check(&b64::encode(&b), T0),
                    "dpop_nonce_invalid",
                    "{i}/{bit}"
                );
            }
        }
        // And flips of the text.
        for i in 0..n.len() {
            let mut t = n.clone().into_bytes();
            t[i] = if t[i] == b'A' { b'B' } else { b'A' };
            let t = String::from_utf8(t).unwrap();
            assert_eq!(check(&t, T0), "dpop_nonce_invalid", "char {i}");
        }
    }

    #[test]
    fn malformed_claims() {
        let n = issue(&SECRET, "idp", LIFE, at(T0));
        assert_eq!(NonceClaim::parse(None), NonceClaim::Absent);
        assert!(matches!(claim(&n), NonceClaim::Present(_)));
        let cases = [
            json!(1),
            json!(null),
            json!([n.clone()]),
            json!(""),
            json!(format!("{n}A")),
            json!(&n[1..]),
            json!(format!("{}=", &n[..26])),
            json!(format!("{}+", &n[..26])),
            json!(format!("{}/", &n[..26])),
            json!(format!("{} ", &n[..26])),
            json!("x".repeat(100_000)),
        ];
        for c in &cases {
            assert_eq!(NonceClaim::parse(Some(c)), NonceClaim::Malformed, "{c}");
        }
        // Non-canonical last character (unused low bits set).
        let last = n.as_bytes()[26];
        let mut t = n.clone().into_bytes();
        t[26] = if last == b'A' { b'B' } else { last ^ 1 };
        let t = String::from_utf8(t).unwrap();
        assert_ne!(check(&t, T0), "ok");
        assert_eq!(
            verify(&SECRET, "idp", LIFE, &NonceClaim::Absent, at(T0))
                .unwrap_err()
                .code(),
            "dpop_nonce_missing"
        );
        assert_eq!(
            verify(&SECRET, "idp", LIFE, &NonceClaim::Malformed, at(T0))
                .unwrap_err()
                .code(),
            "dpop_nonce_invalid"
        );
    }

    #[test]
    fn end_of_time_saturates() {
        let far = at(u64::MAX);
        let n = issue(&SECRET, "idp", Millis(1), far);
        assert_eq!(verify(&SECRET, "idp", Millis(1), &claim(&n), far), Ok(()));
    }
}
