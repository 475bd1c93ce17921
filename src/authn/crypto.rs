//! Signature verification: one key type per key family, built once at key-set load and used
//! for every token after that.
//!
//! This module only verifies. Everything it handles (public keys, signatures, signed bytes)
//! is public, so the big-number and curve arithmetic may be variable-time; the one secret,
//! an HMAC key from a local key set, is compared in constant time (`hmac`'s `verify_slice`).
//!
//! Each check from RFC 7518 and the Wycheproof findings is made here, before or instead of
//! trusting a library default:
//! - RS*/PS*: the signature is exactly as long as the modulus (RFC 8017 §8.2.2 step 1) and
//!   below it; PS* uses MGF1 with the message hash and a salt exactly as long as the hash
//!   (RFC 7518 §3.5), which `rsa`'s PSS `VerifyingKey::new` enforces by checking the padding
//!   byte at the fixed position, not by searching for it. Keys are 2048 to 8192 bits (RFC 7518
//!   §3.3; the cap bounds CPU per token), with an odd exponent in 3..2^33 (`rsa`'s own bounds).
//! - ES256/ES384: the signature is raw `r || s`, exactly 64 / 96 bytes (RFC 7518 §3.4), so DER
//!   is refused by its length; r and s must be in [1, n-1] (no "psychic signatures",
//!   CVE-2022-21449); high-S is valid, as in JWS. The public point is checked on the curve and
//!   not the identity when the key is loaded. ES256 runs on per-key precomputed tables
//!   ([`p256_tables`](crate::authn::p256_tables), ~5x faster than p256 0.13's
//!   `verify_prehash`, with the same checks and answers: tests/p256_differential.rs).
//! - EdDSA (Ed25519 only): 64-byte signature, S < L (RFC 8032 §5.1.7), and `verify_strict`,
//!   which also refuses a small-order R or A; small-order public keys are refused at load.
//!   The Wycheproof Ed25519 file passes in full with `verify` and with `verify_strict` alike
//!   (tests/wycheproof.rs pins this); strict is chosen because no honest signer produces a
//!   small-order R, so the extra check costs nothing and leaves no malleable encoding.
//! - HS*: the tag is exactly the hash length and compared in constant time; the key is at
//!   least [`MIN_HMAC_KEY_BYTES`] and, per algorithm, at least the hash length (RFC 7518 §3.2).

use std::fmt;

use hmac::{Hmac, Mac};
use rsa::signature::Verifier;
use rsa::{BigUint, RsaPublicKey};
use sha2::{Digest, Sha256, Sha384, Sha512};

use crate::authn::alg::{Algorithm, KeyFamily};

/// Smallest RSA modulus accepted (RFC 7518 §3.3: "2048 bits or larger MUST be used").
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted: verification cost grows with the modulus, and no issuer
/// needs more.
pub const MAX_RSA_BITS: usize = 8192;
/// Shortest HMAC key accepted for any HS* algorithm (the HS256 hash length). HS384 and HS512
/// additionally need 48 and 64 bytes (RFC 7518 §3.2: a key at least as long as the hash).
pub const MIN_HMAC_KEY_BYTES: usize = 32;

/// Why key material was refused; the message names the rule that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError(pub String);

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The signature did not verify (or could not be parsed). Deliberately carries no detail:
/// every way a signature can be wrong is the same answer to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignatureError;

/// A verified-usable key of one family, ready to verify signatures.
#[derive(Clone)]
pub enum VerifyKey {
    Rsa(Box<RsaKey>),
    EcP256(crate::authn::p256_tables::P256VerifyKey),
    EcP384(p384::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
    Hmac(Box<HmacKey>),
}

/// An RSA public key with its six JWS verifiers built once.
#[derive(Clone)]
pub struct RsaKey {
    bits: usize,
    /// Modulus length in bytes: the exact length every signature must have.
    size: usize,
    rs256: rsa::pkcs1v15::VerifyingKey<Sha256>,
    rs384: rsa::pkcs1v15::VerifyingKey<Sha384>,
    rs512: rsa::pkcs1v15::VerifyingKey<Sha512>,
    ps256: rsa::pss::VerifyingKey<Sha256>,
    ps384: rsa::pss::VerifyingKey<Sha384>,
    ps512: rsa::pss::VerifyingKey<Sha512>,
}

/// An HMAC secret, kept as the three keyed MAC states (the key schedule runs once).
#[derive(Clone)]
pub struct HmacKey {
    len: usize,
    hs256: Hmac<Sha256>,
    hs384: Hmac<Sha384>,
    hs512: Hmac<Sha512>,
}

impl VerifyKey {
    /// An RSA key from the big-endian modulus and exponent (JWK `n`, `e`).
    ///
    /// Leading zero octets in `n` are tolerated (several real issuers publish them); the size
    /// rules apply to the modulus value.
    pub fn rsa(n: &[u8], e: &[u8]) -> Result<VerifyKey, KeyError> {
        let n = BigUint::from_bytes_be(n);
        let bits = n.bits();
        if bits < MIN_RSA_BITS {
            return Err(KeyError(format!(
                "RSA modulus is {bits} bits; at least {MIN_RSA_BITS} required"
            )));
        }
        if bits > MAX_RSA_BITS {
            return Err(KeyError(format!(
                "RSA modulus is {bits} bits; at most {MAX_RSA_BITS} accepted"
            )));
        }
        let e = BigUint::from_bytes_be(e);
        if e.bits() > 64 {
            return Err(KeyError("RSA exponent is too large".into()));
        }
        // `rsa` checks: n odd, e odd, 2 <= e <= 2^33-1, e < n.
        let key = RsaPublicKey::new_with_max_size(n, e.clone(), MAX_RSA_BITS)
            .map_err(|err| KeyError(format!("RSA key refused: {err} (e = {e})")))?;
        let size = bits.div_ceil(8);
        Ok(VerifyKey::Rsa(Box::new(RsaKey {
            bits,
            size,
            rs256: rsa::pkcs1v15::VerifyingKey::new(key.clone()),
            rs384: rsa::pkcs1v15::VerifyingKey::new(key.clone()),
            rs512: rsa::pkcs1v15::VerifyingKey::new(key.clone()),
            // `new` fixes the salt length to the digest length: RFC 7518 §3.5.
            ps256: rsa::pss::VerifyingKey::new(key.clone()),
            ps384: rsa::pss::VerifyingKey::new(key.clone()),
            ps512: rsa::pss::VerifyingKey::new(key),
        })))
    }

    /// A P-256 key from the affine coordinates (JWK `x`, `y`, each exactly 32 bytes), with its
    /// verification table precomputed (~37 KiB, see [`p256_tables`](crate::authn::p256_tables)).
    pub fn ec_p256(x: &[u8], y: &[u8]) -> Result<VerifyKey, KeyError> {
        let point = sec1_uncompressed(x, y, 32, "P-256")?;
        p256::ecdsa::VerifyingKey::from_sec1_bytes(&point)
            .map(|key| VerifyKey::EcP256(crate::authn::p256_tables::P256VerifyKey::new(&key)))
            .map_err(|_| KeyError("EC point is not on the curve P-256".into()))
    }

    /// A P-384 key from the affine coordinates (JWK `x`, `y`, each exactly 48 bytes).
    pub fn ec_p384(x: &[u8], y: &[u8]) -> Result<VerifyKey, KeyError> {
        let point = sec1_uncompressed(x, y, 48, "P-384")?;
        p384::ecdsa::VerifyingKey::from_sec1_bytes(&point)
            .map(VerifyKey::EcP384)
            .map_err(|_| KeyError("EC point is not on the curve P-384".into()))
    }

    /// An Ed25519 key from its 32-byte encoding (JWK `x`).
    pub fn ed25519(x: &[u8]) -> Result<VerifyKey, KeyError> {
        let bytes: &[u8; 32] = x
            .try_into()
            .map_err(|_| KeyError(format!("Ed25519 x is {} bytes; 32 required", x.len())))?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(bytes)
            .map_err(|_| KeyError("Ed25519 x is not a valid curve point".into()))?;
        // A small-order key lets one signature verify for many messages.
        if key.is_weak() {
            return Err(KeyError("Ed25519 x is a small-order point".into()));
        }
        Ok(VerifyKey::Ed25519(key))
    }

    /// An HMAC secret (JWK `k`), at least [`MIN_HMAC_KEY_BYTES`] long.
    pub fn hmac(k: &[u8]) -> Result<VerifyKey, KeyError> {
        if k.len() < MIN_HMAC_KEY_BYTES {
            return Err(KeyError(format!(
                "oct key k is {} bytes; at least {MIN_HMAC_KEY_BYTES} required",
                k.len()
            )));
        }
        let err = |_| KeyError("oct key k is not usable as an HMAC key".to_string());
        Ok(VerifyKey::Hmac(Box::new(HmacKey {
            len: k.len(),
            hs256: Hmac::<Sha256>::new_from_slice(k).map_err(err)?,
            hs384: Hmac::<Sha384>::new_from_slice(k).map_err(err)?,
            hs512: Hmac::<Sha512>::new_from_slice(k).map_err(err)?,
        })))
    }

    /// The family this key belongs to.
    pub fn family(&self) -> KeyFamily {
        match self {
            VerifyKey::Rsa(_) => KeyFamily::Rsa,
            VerifyKey::EcP256(_) => KeyFamily::EcP256,
            VerifyKey::EcP384(_) => KeyFamily::EcP384,
            VerifyKey::Ed25519(_) => KeyFamily::Ed25519,
            VerifyKey::Hmac(_) => KeyFamily::Oct,
        }
    }

    /// True when this key can verify `alg`: the family matches and, for HMAC, the secret is
    /// at least as long as the algorithm's hash (RFC 7518 §3.2).
    pub fn supports(&self, alg: Algorithm) -> bool {
        if alg.key_family() != self.family() {
            return false;
        }
        match self {
            VerifyKey::Hmac(key) => key.len >= hash_len(alg),
            _ => true,
        }
    }

    /// Verifies `signature` over `signing_input` under `alg`.
    ///
    /// Fails (never panics) on any mismatch: a key of another family, a signature of the wrong
    /// length or encoding, or a signature that does not verify.
    pub fn verify(
        &self,
        alg: Algorithm,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureError> {
        if !self.supports(alg) {
            return Err(SignatureError);
        }
        match self {
            VerifyKey::Rsa(key) => key.verify(alg, signing_input, signature),
            VerifyKey::EcP256(key) => {
                // `from_slice` refuses any length but 64 and r, s outside [1, n-1].
                let sig =
                    p256::ecdsa::Signature::from_slice(signature).map_err(|_| SignatureError)?;
                if key.verify(signing_input, &sig) {
                    Ok(())
                } else {
                    Err(SignatureError)
                }
            }
            VerifyKey::EcP384(key) => {
                let sig =
                    p384::ecdsa::Signature::from_slice(signature).map_err(|_| SignatureError)?;
                key.verify(signing_input, &sig).map_err(|_| SignatureError)
            }
            VerifyKey::Ed25519(key) => {
                let sig =
                    ed25519_dalek::Signature::from_slice(signature).map_err(|_| SignatureError)?;
                key.verify_strict(signing_input, &sig)
                    .map_err(|_| SignatureError)
            }
            VerifyKey::Hmac(key) => key.verify(alg, signing_input, signature),
        }
    }
}

impl RsaKey {
    fn verify(
        &self,
        alg: Algorithm,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureError> {
        if signature.len() != self.size {
            return Err(SignatureError);
        }
        let result = match alg {
            Algorithm::Rs256 => self.rs256.verify(signing_input, &pkcs1(signature)?),
            Algorithm::Rs384 => self.rs384.verify(signing_input, &pkcs1(signature)?),
            Algorithm::Rs512 => self.rs512.verify(signing_input, &pkcs1(signature)?),
            Algorithm::Ps256 => self.ps256.verify(signing_input, &pss(signature)?),
            Algorithm::Ps384 => self.ps384.verify(signing_input, &pss(signature)?),
            Algorithm::Ps512 => self.ps512.verify(signing_input, &pss(signature)?),
            Algorithm::Es256
            | Algorithm::Es384
            | Algorithm::EdDsa
            | Algorithm::Hs256
            | Algorithm::Hs384
            | Algorithm::Hs512 => return Err(SignatureError),
        };
        result.map_err(|_| SignatureError)
    }
}

fn pkcs1(signature: &[u8]) -> Result<rsa::pkcs1v15::Signature, SignatureError> {
    rsa::pkcs1v15::Signature::try_from(signature).map_err(|_| SignatureError)
}

fn pss(signature: &[u8]) -> Result<rsa::pss::Signature, SignatureError> {
    rsa::pss::Signature::try_from(signature).map_err(|_| SignatureError)
}

impl HmacKey {
    fn verify(
        &self,
        alg: Algorithm,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureError> {
        // `verify_slice` refuses a tag of any other length than the hash (no truncated MACs)
        // and compares in constant time.
        let result = match alg {
            Algorithm::Hs256 => mac_check(self.hs256.clone(), signing_input, signature),
            Algorithm::Hs384 => mac_check(self.hs384.clone(), signing_input, signature),
            Algorithm::Hs512 => mac_check(self.hs512.clone(), signing_input, signature),
            Algorithm::Rs256
            | Algorithm::Rs384
            | Algorithm::Rs512
            | Algorithm::Ps256
            | Algorithm::Ps384
            | Algorithm::Ps512
            | Algorithm::Es256
            | Algorithm::Es384
            | Algorithm::EdDsa => false,
        };
        if result {
            Ok(())
        } else {
            Err(SignatureError)
        }
    }
}

fn mac_check<M: Mac>(mut mac: M, signing_input: &[u8], tag: &[u8]) -> bool {
    mac.update(signing_input);
    mac.verify_slice(tag).is_ok()
}

/// The hash output length of an HS* algorithm (0 for others: no length rule).
fn hash_len(alg: Algorithm) -> usize {
    match alg {
        Algorithm::Hs256 => Sha256::output_size(),
        Algorithm::Hs384 => Sha384::output_size(),
        Algorithm::Hs512 => Sha512::output_size(),
        Algorithm::Rs256
        | Algorithm::Rs384
        | Algorithm::Rs512
        | Algorithm::Ps256
        | Algorithm::Ps384
        | Algorithm::Ps512
        | Algorithm::Es256
        | Algorithm::Es384
        | Algorithm::EdDsa => 0,
    }
}

/// `0x04 || x || y`, after checking each coordinate is exactly the field size
/// (RFC 7518 §6.2.1.2: "MUST be the full size of a coordinate", leading zeros kept).
fn sec1_uncompressed(x: &[u8], y: &[u8], size: usize, crv: &str) -> Result<Vec<u8>, KeyError> {
    for (name, coord) in [("x", x), ("y", y)] {
        if coord.len() != size {
            return Err(KeyError(format!(
                "EC {name} is {} bytes; {crv} needs {size}",
                coord.len()
            )));
        }
    }
    let mut point = Vec::with_capacity(1 + 2 * size);
    point.push(0x04);
    point.extend_from_slice(x);
    point.extend_from_slice(y);
    Ok(point)
}

// Never print key material: a modulus is noise in a log, and an HMAC key is a secret.
impl fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyKey::Rsa(key) => write!(f, "Rsa({} bits)", key.bits),
            VerifyKey::EcP256(_) => f.write_str("EcP256"),
            VerifyKey::EcP384(_) => f.write_str("EcP384"),
            VerifyKey::Ed25519(_) => f.write_str("Ed25519"),
            VerifyKey::Hmac(key) => write!(f, "Hmac({} bytes, redacted)", key.len),
        }
    }
}

impl RsaKey {
    /// Modulus size in bits.
    pub fn bits(&self) -> usize {
        self.bits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_length_rules() {
        assert!(VerifyKey::hmac(&[7; 31]).is_err());
        let key = VerifyKey::hmac(&[7; 32]).unwrap();
        assert!(key.supports(Algorithm::Hs256));
        assert!(!key.supports(Algorithm::Hs384));
        assert!(!key.supports(Algorithm::Hs512));
        let key = VerifyKey::hmac(&[7; 64]).unwrap();
        assert!(key.supports(Algorithm::Hs512));
        let tag = {
            let mut mac = Hmac::<Sha256>::new_from_slice(&[7; 64]).unwrap();
            mac.update(b"a.b");
            mac.finalize().into_bytes().to_vec()
        };
        assert_eq!(key.verify(Algorithm::Hs256, b"a.b", &tag), Ok(()));
        // Truncated and extended tags are refused, not compared as a prefix.
        assert!(key.verify(Algorithm::Hs256, b"a.b", &tag[..16]).is_err());
        let mut long = tag.clone();
        long.push(0);
        assert!(key.verify(Algorithm::Hs256, b"a.b", &long).is_err());
        assert!(key.verify(Algorithm::Hs384, b"a.b", &tag).is_err());
        assert!(key.verify(Algorithm::Rs256, b"a.b", &tag).is_err());
        assert_eq!(format!("{key:?}"), "Hmac(64 bytes, redacted)");
    }

    #[test]
    fn ec_coordinates_must_be_full_size() {
        let err = VerifyKey::ec_p256(&[1; 33], &[1; 32]).unwrap_err();
        assert_eq!(err.0, "EC x is 33 bytes; P-256 needs 32");
        let err = VerifyKey::ec_p256(&[1; 32], &[1; 32]).unwrap_err();
        assert_eq!(err.0, "EC point is not on the curve P-256");
        let err = VerifyKey::ec_p384(&[0; 48], &[0; 48]).unwrap_err();
        assert_eq!(err.0, "EC point is not on the curve P-384");
    }

    #[test]
    fn ed25519_refuses_small_order_and_bad_length() {
        // The identity point (y = 1) has order 1.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            VerifyKey::ed25519(&identity).unwrap_err().0,
            "Ed25519 x is a small-order point"
        );
        assert!(VerifyKey::ed25519(&[0; 31]).is_err());
    }

    #[test]
    fn rsa_size_rules() {
        let mut n = vec![0xff; 128];
        let e = [1, 0, 1];
        assert_eq!(
            VerifyKey::rsa(&n, &e).unwrap_err().0,
            "RSA modulus is 1024 bits; at least 2048 required"
        );
        n = vec![0xff; 1025];
        assert_eq!(
            VerifyKey::rsa(&n, &e).unwrap_err().0,
            "RSA modulus is 8200 bits; at most 8192 accepted"
        );
        // Leading zero octets do not count towards the size.
        let mut padded = vec![0];
        padded.extend(vec![0xff; 256]);
        let key = VerifyKey::rsa(&padded, &e).unwrap();
        assert_eq!(format!("{key:?}"), "Rsa(2048 bits)");
        // Even exponent, exponent 1, even modulus.
        assert!(VerifyKey::rsa(&vec![0xff; 256], &[2]).is_err());
        assert!(VerifyKey::rsa(&vec![0xff; 256], &[1]).is_err());
        assert!(VerifyKey::rsa(&vec![0xfe; 256], &e).is_err());
        // Signature length must equal the modulus length exactly.
        assert!(key.verify(Algorithm::Rs256, b"x", &[0; 257]).is_err());
        assert!(key.verify(Algorithm::Rs256, b"x", &[0; 255]).is_err());
        assert!(key.verify(Algorithm::Rs256, b"x", &[]).is_err());
    }
}
