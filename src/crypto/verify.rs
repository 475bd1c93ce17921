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
//!   below it; `s^e mod n` is our own Montgomery code ([`bigmod`](crate::crypto::bigmod), ~6x
//!   faster than `rsa` 0.9 in V8), prepared once per key. RS* then compares the whole result
//!   with the one valid EMSA-PKCS1-v1_5 block for the hash (RFC 8017 §8.2.2 steps 3-4: encode
//!   and compare, never parse the decrypted block), so there is no padding to be lenient about
//!   and e = 3 keys are not open to Bleichenbacher-style forgeries. PS* is EMSA-PSS-VERIFY
//!   (RFC 8017 §9.1.2) with MGF1 over the message hash and a salt exactly as long as the hash
//!   (RFC 7518 §3.5): the 0x01 separator is checked at its one fixed position, not searched
//!   for. Keys are 2048 to 8192 bits (RFC 7518 §3.3; the cap bounds CPU per token), with an
//!   odd exponent in 3..2^33 (the bounds the `rsa` crate enforced before).
//! - ES256/ES384: the signature is raw `r || s`, exactly 64 / 96 bytes (RFC 7518 §3.4), so DER
//!   is refused by its length; r and s must be in [1, n-1] (no "psychic signatures",
//!   CVE-2022-21449); high-S is valid, as in JWS. The public point is checked on the curve and
//!   not the identity when the key is loaded. Both run on per-key precomputed tables and our
//!   own arithmetic, written once for the two curves ([`ecdsa`](crate::crypto::ecdsa) over
//!   [`p256_field`](crate::crypto::p256_field) and [`p384_field`](crate::crypto::p384_field);
//!   neither RustCrypto curve crate is in the module), with the checks and answers of
//!   p256/p384 0.13's `verify_prehash` (tests/p256_differential.rs, tests/p384_differential.rs):
//!   ES256 ~40-50 µs in Envoy's V8 (~20x p256 0.13), ES384 ~150 µs (~25x p384 0.13).
//! - EdDSA (Ed25519 only): 64-byte signature, S < L (RFC 8032 §5.1.7), and `verify_strict`'s
//!   answer, which also refuses a small-order R or A; small-order public keys are refused at
//!   load. The Wycheproof Ed25519 file passes in full with `verify` and with `verify_strict`
//!   alike (tests/wycheproof.rs pins this); strict is chosen because no honest signer produces
//!   a small-order R, so the extra check costs nothing and leaves no malleable encoding. It is
//!   computed as `verify` plus a comparison of R's bytes with the eight small-order encodings
//!   (`SMALL_ORDER_R`), which skips `verify_strict`'s decompression of R: 1758K -> 1629K
//!   instructions per distinct EdDSA token in Envoy (`make bench-instructions`).
//! - HS*: the tag is exactly the hash length and compared in constant time; the key is at
//!   least [`MIN_HMAC_KEY_BYTES`] and, per algorithm, at least the hash length (RFC 7518 §3.2).

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha384, Sha512};

use crate::authn::alg::{Algorithm, KeyFamily};
use crate::crypto::bigmod::RsaPublic;
use crate::crypto::ecdsa::{Curve, EcdsaKey};

/// Smallest RSA modulus accepted (RFC 7518 §3.3: "2048 bits or larger MUST be used").
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted: verification cost grows with the modulus, and no issuer
/// needs more.
pub const MAX_RSA_BITS: usize = 8192;
/// Largest RSA public exponent accepted (2^33 - 1, the bound of the `rsa` crate and of most
/// libraries; real keys use 65537, a few 3).
pub const MAX_RSA_EXPONENT: u64 = (1 << 33) - 1;
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
    EcP256(crate::crypto::p256_tables::P256VerifyKey),
    EcP384(crate::crypto::p384_tables::P384VerifyKey),
    Ed25519(ed25519_dalek::VerifyingKey),
    Hmac(Box<HmacKey>),
}

/// An RSA public key with its Montgomery constants computed once.
#[derive(Clone)]
pub struct RsaKey {
    public: RsaPublic,
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
        let n: Vec<u8> = n.iter().copied().skip_while(|b| *b == 0).collect();
        let bits = match n.first() {
            Some(top) => n.len() * 8 - top.leading_zeros() as usize,
            None => 0,
        };
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
        let e: Vec<u8> = e.iter().copied().skip_while(|b| *b == 0).collect();
        if e.len() > 8 {
            return Err(KeyError("RSA exponent is too large".into()));
        }
        let e = e.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        if e > MAX_RSA_EXPONENT {
            return Err(KeyError(format!(
                "RSA key refused: public exponent too large (e = {e})"
            )));
        }
        // n odd, e odd and at least 3 (e < n holds: n has 2048 bits or more).
        let public = RsaPublic::new(&n, e)
            .map_err(|err| KeyError(format!("RSA key refused: {err} (e = {e})")))?;
        Ok(VerifyKey::Rsa(Box::new(RsaKey { public })))
    }

    /// A P-256 key from the affine coordinates (JWK `x`, `y`, each exactly 32 bytes), with its
    /// verification table precomputed (~163 KiB, see [`p256_tables`](crate::crypto::p256_tables)).
    pub fn ec_p256(x: &[u8], y: &[u8]) -> Result<VerifyKey, KeyError> {
        ec_key(x, y).map(VerifyKey::EcP256)
    }

    /// A P-384 key from the affine coordinates (JWK `x`, `y`, each exactly 48 bytes), with its
    /// verification table precomputed (~224 KiB, see [`p384_tables`](crate::crypto::p384_tables)).
    pub fn ec_p384(x: &[u8], y: &[u8]) -> Result<VerifyKey, KeyError> {
        ec_key(x, y).map(VerifyKey::EcP384)
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
            // Any length but 64 (96) and r, s outside [1, n-1] are refused inside.
            VerifyKey::EcP256(key) => key
                .verify(signing_input, signature)
                .then_some(())
                .ok_or(SignatureError),
            VerifyKey::EcP384(key) => key
                .verify(signing_input, signature)
                .then_some(())
                .ok_or(SignatureError),
            VerifyKey::Ed25519(key) => {
                let sig =
                    ed25519_dalek::Signature::from_slice(signature).map_err(|_| SignatureError)?;
                // `verify_strict`'s answer without its square root: see SMALL_ORDER_R.
                if SMALL_ORDER_R.contains(sig.r_bytes()) {
                    return Err(SignatureError);
                }
                ed25519_dalek::Verifier::verify(key, signing_input, &sig)
                    .map_err(|_| SignatureError)
            }
            VerifyKey::Hmac(key) => key.verify(alg, signing_input, signature),
        }
    }
}

/// The canonical encodings of the eight points of small order on Ed25519 (the identity, the
/// point of order 2, two of order 4, four of order 8).
///
/// `verify_strict` is `verify` plus a refusal of an R or a public key A of small order. A of
/// small order is refused when the key is loaded. For R, `verify` compares the signature's R
/// bytes with the canonical encoding of the R it recomputes, so an R that is not the canonical
/// encoding of a point never passes; a canonical R is of small order exactly when it is one of
/// these. Checking the bytes gives `verify_strict`'s answer without decompressing R (a square
/// root in the field: ~10 % of an EdDSA verification).
const SMALL_ORDER_R: [[u8; 32]; 8] = [
    hex32(b"0100000000000000000000000000000000000000000000000000000000000000"),
    hex32(b"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    hex32(b"0000000000000000000000000000000000000000000000000000000000000000"),
    hex32(b"0000000000000000000000000000000000000000000000000000000000000080"),
    hex32(b"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
    hex32(b"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa"),
    hex32(b"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
    hex32(b"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85"),
];

/// 64 hex digits as 32 bytes, at compile time (a bad digit fails the build: the panic is a
/// compile-time error in a const, never a run-time one).
#[allow(clippy::indexing_slicing, clippy::panic)] // const fn: no iterators; bounds are the arrays'
const fn hex32(hex: &[u8; 64]) -> [u8; 32] {
    const fn digit(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => panic!("not a lowercase hex digit"),
        }
    }
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = digit(hex[2 * i]) << 4 | digit(hex[2 * i + 1]);
        i += 1;
    }
    out
}

impl RsaKey {
    fn verify(
        &self,
        alg: Algorithm,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureError> {
        // RSAVP1 refuses any length but the modulus length, and s >= n.
        let em = self.public.rsavp1(signature).ok_or(SignatureError)?;
        let bits = self.public.bits();
        let valid = match alg {
            Algorithm::Rs256 => {
                em == pkcs1_v15_block::<Sha256>(&SHA256_PREFIX, signing_input, em.len())
            }
            Algorithm::Rs384 => {
                em == pkcs1_v15_block::<Sha384>(&SHA384_PREFIX, signing_input, em.len())
            }
            Algorithm::Rs512 => {
                em == pkcs1_v15_block::<Sha512>(&SHA512_PREFIX, signing_input, em.len())
            }
            Algorithm::Ps256 => pss_verify::<Sha256>(&em, bits, signing_input),
            Algorithm::Ps384 => pss_verify::<Sha384>(&em, bits, signing_input),
            Algorithm::Ps512 => pss_verify::<Sha512>(&em, bits, signing_input),
            Algorithm::Es256
            | Algorithm::Es384
            | Algorithm::EdDsa
            | Algorithm::Hs256
            | Algorithm::Hs384
            | Algorithm::Hs512 => false,
        };
        if valid {
            Ok(())
        } else {
            Err(SignatureError)
        }
    }
}

/// DER of DigestInfo up to the hash value, for SHA-256/384/512 (RFC 8017 §9.2 note 1). The
/// AlgorithmIdentifier carries the explicit NULL parameter, as RFC 8017 writes it and RFC 7518
/// §3.3 uses it; the NULL-less variant (Wycheproof "MissingNull") is therefore refused.
const SHA256_PREFIX: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];
const SHA384_PREFIX: [u8; 19] = [
    0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05,
    0x00, 0x04, 0x30,
];
const SHA512_PREFIX: [u8; 19] = [
    0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05,
    0x00, 0x04, 0x40,
];

/// EMSA-PKCS1-v1_5-ENCODE (RFC 8017 §9.2): `0x00 0x01 FF..FF 0x00 || DigestInfo || H`, exactly
/// `size` bytes. The modulus is at least 2048 bits, far above the 11 + 83 bytes the longest
/// DigestInfo needs, so the padding is always at least 8 bytes of FF as the RFC requires.
fn pkcs1_v15_block<D: Digest>(prefix: &[u8], message: &[u8], size: usize) -> Vec<u8> {
    let hash = D::digest(message);
    let tail = prefix.len() + hash.len();
    let mut block = Vec::with_capacity(size);
    block.extend_from_slice(&[0x00, 0x01]);
    block.resize(size.saturating_sub(tail + 1), 0xff);
    block.push(0x00);
    block.extend_from_slice(prefix);
    block.extend_from_slice(&hash);
    block
}

/// EMSA-PSS-VERIFY (RFC 8017 §9.1.2) with MGF1 over `D` and a salt exactly as long as the
/// hash. `em_full` is RSAVP1's output (the modulus length); `mod_bits` is the modulus size.
fn pss_verify<D: Digest>(em_full: &[u8], mod_bits: usize, message: &[u8]) -> bool {
    let h_len = <D as Digest>::output_size();
    let s_len = h_len;
    let em_bits = mod_bits.saturating_sub(1);
    let em_len = em_bits.div_ceil(8);
    // RFC 8017 §8.1.2 step 2c, I2OSP(m, emLen): when emLen is one byte shorter than the
    // modulus, that extra leading byte must be zero.
    let Some((extra, em)) = em_full.split_at_checked(em_full.len().saturating_sub(em_len)) else {
        return false;
    };
    if extra.iter().any(|b| *b != 0) || em.len() != em_len {
        return false;
    }
    // Step 3.
    if em_len < h_len + s_len + 2 {
        return false;
    }
    // Steps 4-5.
    let Some((trailer, rest)) = em.split_last() else {
        return false;
    };
    if *trailer != 0xbc {
        return false;
    }
    let db_len = em_len - h_len - 1;
    let Some((masked_db, h)) = rest.split_at_checked(db_len) else {
        return false;
    };
    // Step 6: the bits above emBits must be zero.
    let top_mask = 0xffu8 >> (8 * em_len - em_bits);
    if masked_db.first().is_some_and(|b| b & !top_mask != 0) {
        return false;
    }
    // Steps 7-9.
    let mut db = mgf1::<D>(h, db_len);
    for (d, m) in db.iter_mut().zip(masked_db) {
        *d ^= m;
    }
    if let Some(first) = db.first_mut() {
        *first &= top_mask;
    }
    // Step 10: zeros, then 0x01 at the one position a hash-length salt allows.
    let ps_len = em_len - h_len - s_len - 2;
    let Some((ps, rest)) = db.split_at_checked(ps_len) else {
        return false;
    };
    let Some((separator, salt)) = rest.split_first() else {
        return false;
    };
    if ps.iter().any(|b| *b != 0) || *separator != 0x01 || salt.len() != s_len {
        return false;
    }
    // Steps 11-14: H' = Hash(0x00 × 8 || Hash(M) || salt). Each hash input is built in one
    // buffer and hashed by one `D::digest` (one call into the hash's update per hash).
    let mut m_prime = vec![0u8; 8];
    m_prime.extend_from_slice(&D::digest(message));
    m_prime.extend_from_slice(salt);
    D::digest(m_prime.as_slice()).iter().eq(h)
}

/// MGF1 (RFC 8017 §B.2.1): `len` bytes of Hash(seed || counter) blocks.
fn mgf1<D: Digest>(seed: &[u8], len: usize) -> Vec<u8> {
    let mut mask = Vec::with_capacity(len + <D as Digest>::output_size());
    let mut input = seed.to_vec();
    input.extend_from_slice(&[0; 4]);
    let mut counter: u32 = 0;
    while mask.len() < len {
        if let Some(tail) = input.get_mut(seed.len()..) {
            tail.copy_from_slice(&counter.to_be_bytes());
        }
        mask.extend_from_slice(&D::digest(input.as_slice()));
        counter = counter.wrapping_add(1);
    }
    mask.truncate(len);
    mask
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

/// The key of curve `C` with these coordinates, each checked to be exactly the field size
/// (RFC 7518 §6.2.1.2: "MUST be the full size of a coordinate", leading zeros kept), then to be
/// below p and on the curve.
fn ec_key<C: Curve>(x: &[u8], y: &[u8]) -> Result<EcdsaKey<C>, KeyError> {
    for (name, coord) in [("x", x), ("y", y)] {
        if coord.len() != C::BYTES {
            return Err(KeyError(format!(
                "EC {name} is {} bytes; {} needs {}",
                coord.len(),
                C::NAME,
                C::BYTES
            )));
        }
    }
    EcdsaKey::from_coordinates(x, y)
        .ok_or_else(|| KeyError(format!("EC point is not on the curve {}", C::NAME)))
}

// Never print key material: a modulus is noise in a log, and an HMAC key is a secret.
impl fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyKey::Rsa(key) => write!(f, "Rsa({} bits)", key.public.bits()),
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
        self.public.bits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SMALL_ORDER_R is exactly the canonical encodings of curve25519-dalek's eight torsion
    /// points.
    #[test]
    fn small_order_r_is_the_eight_torsion_points() {
        let ours: std::collections::BTreeSet<[u8; 32]> = SMALL_ORDER_R.into_iter().collect();
        let torsion: std::collections::BTreeSet<[u8; 32]> =
            curve25519_dalek::constants::EIGHT_TORSION
                .iter()
                .map(|p| p.compress().to_bytes())
                .collect();
        assert_eq!(ours.len(), 8);
        assert_eq!(ours, torsion);
    }

    /// The case where `verify` and `verify_strict` differ: R the identity and S = k·a, which
    /// the key's owner can always make and plain `verify` accepts. jwt-edge refuses it, as
    /// `verify_strict` does, and every other small-order R too.
    #[test]
    fn small_order_r_refused_as_verify_strict_refuses_it() {
        use curve25519_dalek::scalar::{clamp_integer, Scalar};
        use ed25519_dalek::Verifier;
        let seed = [9u8; 32];
        let expanded = Sha512::digest(seed);
        let mut lower = [0u8; 32];
        lower.copy_from_slice(&expanded[..32]);
        let a = Scalar::from_bytes_mod_order(clamp_integer(lower));
        let dalek = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
        let public = dalek.to_bytes();
        let key = VerifyKey::ed25519(&public).unwrap();
        let message = b"eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJtYWxsb3J5In0";
        for r in SMALL_ORDER_R {
            let mut wide = [0u8; 64];
            wide.copy_from_slice(
                &Sha512::new()
                    .chain_update(r)
                    .chain_update(public)
                    .chain_update(message)
                    .finalize(),
            );
            let s = Scalar::from_bytes_mod_order_wide(&wide) * a;
            let mut sig = [0u8; 64];
            sig[..32].copy_from_slice(&r);
            sig[32..].copy_from_slice(&s.to_bytes());
            let parsed = ed25519_dalek::Signature::from_bytes(&sig);
            if r == SMALL_ORDER_R[0] {
                assert!(
                    dalek.verify(message, &parsed).is_ok(),
                    "plain verify accepts R = identity"
                );
            }
            assert!(dalek.verify_strict(message, &parsed).is_err());
            assert!(
                key.verify(Algorithm::EdDsa, message, &sig).is_err(),
                "{r:02x?}"
            );
        }
        // An honest signature still verifies.
        let honest =
            ed25519_dalek::Signer::sign(&ed25519_dalek::SigningKey::from_bytes(&seed), message);
        assert!(key
            .verify(Algorithm::EdDsa, message, &honest.to_bytes())
            .is_ok());
    }

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

    /// µs per `VerifyKey::verify` for RS256, PS256, ES256, ES384 and EdDSA in whatever runtime runs
    /// the test (natively, or wasm under Node's V8: `make unit-wasm` with
    /// `-- --ignored --nocapture verify_key_timing`). The RSA signature does not verify (a
    /// 2048-bit all-ones modulus, no private key needed): RSAVP1 and the padding check cost
    /// the same either way.
    #[test]
    #[ignore = "timing: run with --release --ignored --nocapture"]
    fn verify_key_timing() {
        use ed25519_dalek::Signer;
        let time = |name: &str, rounds: u32, f: &dyn Fn() -> bool| {
            let (median, min) = crate::crypto::us_per_call(rounds, &|| {
                std::hint::black_box(f());
            });
            println!("{name}: median {median:.1} µs (min {min:.1})");
        };
        let message = b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJiZW5jaCJ9";
        let rsa = VerifyKey::rsa(&[0xff; 256], &[1, 0, 1]).unwrap();
        let mut s = vec![0x5a; 256];
        s[0] = 0x3c;
        for alg in [Algorithm::Rs256, Algorithm::Ps256] {
            time(&format!("{alg:?}"), 1000, &|| {
                rsa.verify(alg, std::hint::black_box(message), &s).is_ok()
            });
        }
        // (key, signature) for a RustCrypto curve crate and the matching constructor.
        macro_rules! ec_case {
            ($curve:ident, $size:expr, $make:ident) => {{
                let sk = $curve::ecdsa::SigningKey::from_slice(&[0x42; $size]).unwrap();
                let point = sk.verifying_key().to_encoded_point(false);
                let key = VerifyKey::$make(point.x().unwrap(), point.y().unwrap()).unwrap();
                let sig: $curve::ecdsa::Signature = sk.sign(message);
                (key, sig.to_bytes().to_vec())
            }};
        }
        let ed = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let cases = [
            ("ES256", Algorithm::Es256, 1000, ec_case!(p256, 32, ec_p256)),
            ("ES384", Algorithm::Es384, 300, ec_case!(p384, 48, ec_p384)),
            (
                "EdDSA",
                Algorithm::EdDsa,
                500,
                (
                    VerifyKey::ed25519(ed.verifying_key().as_bytes()).unwrap(),
                    ed.sign(message).to_bytes().to_vec(),
                ),
            ),
        ];
        for (name, alg, rounds, (key, sig)) in &cases {
            assert!(key.verify(*alg, message, sig).is_ok());
            time(name, *rounds, &|| {
                key.verify(*alg, std::hint::black_box(message), sig).is_ok()
            });
        }
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
