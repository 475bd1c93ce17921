//! ECDSA verification as one fixed-window multi-scalar multiplication u1·G + u2·Q over
//! precomputed affine tables, written once for every curve ([`Curve`]: P-256 in
//! [`p256_tables`](crate::crypto::p256_tables), P-384 in
//! [`p384_tables`](crate::crypto::p384_tables)). Neither RustCrypto curve crate is in the
//! module: the field arithmetic is [`p256_field`](crate::crypto::p256_field) and
//! [`p384_field`](crate::crypto::p384_field), the scalars (mod n) are
//! [`p384_field::Elem`] for both curves (its Montgomery code takes any odd modulus below
//! 2^384), the point formulas are [`weierstrass`](crate::crypto::weierstrass).
//!
//! A verifier never handles a secret, so the work that depends only on the public point is
//! done once. For each point P the table holds `row[i][j-1] = j · 2^(w·i) · P` for `j` in
//! `1..=2^(w-1)`, in affine form; a scalar is recoded into signed base-2^w digits, and `k·P`
//! is one mixed addition or subtraction per non-zero digit, with no doublings.
//!
//! - G's table is built once per VM (the curve's `G_WINDOW`) and Q's once per key when the key
//!   set is loaded ([`EcdsaKey::from_coordinates`], `Q_WINDOW`). Every entry is checked to be
//!   on the curve, and the entries' sum against the same multiple computed independently by
//!   double-and-add; a table failing either check is not used. Key tables are capped per VM
//!   and curve (the curve's `KEY_TABLE_BUDGET`); keys past the cap verify u2·Q by
//!   double-and-add (slower, same answers).
//! - The checks are those of ecdsa 0.16's `verify_prehashed`: r, s in [1, n − 1], z =
//!   bits2field(prehash) reduced mod n, w = s⁻¹, u1 = z·w, u2 = r·w, R = u1·G + u2·Q, the
//!   identity refused, accepted iff x(R) mod n == r (tested without inverting Z: X == r·Z²,
//!   or X == (r + n)·Z² when r + n < p, see [`x_matches`]). tests/p256_differential.rs and
//!   tests/p384_differential.rs check agreement with the RustCrypto verifiers (native only)
//!   on random and edge cases; the Wycheproof ECDSA vectors run in wasm too.
//! - Scalars travel as 48-byte big-endian encodings (a P-256 scalar has 16 leading zero
//!   bytes), the width of [`p384_field::Elem`]; a curve's own widths are `C::BYTES`.
//! - **Variable time, on purpose.** Every input here is public (key, signature, signed bytes),
//!   so table lookups indexed by scalar digits, skipped zero digits and the variable-time
//!   inversion of s leak nothing. This code must never be used with a secret scalar (signing,
//!   ECDH).

use std::sync::{Arc, OnceLock};

use sha2::Digest;

use crate::crypto::fixed_window::{self, Reservation, TableBudget};
use crate::crypto::p384_field::{self, Elem, Modulus, Plain};
use crate::crypto::weierstrass::{self, Affine, Field, FixedBaseTable, Jacobian};

/// Bytes of a scalar encoding, whatever the curve (see the module documentation).
pub const WIDE: usize = p384_field::BYTES;

/// A scalar of curve `C` (mod its group order n), in Montgomery form.
pub type Scalar<C> = Elem<<C as Curve>::Order>;
/// A scalar of curve `C` as it is (r, s, z, u1, u2: see [`Plain`]).
pub type PlainScalar<C> = Plain<<C as Curve>::Order>;

/// One short Weierstrass curve y² = x³ − 3x + b of prime order (cofactor 1) and its settings.
pub trait Curve: Sized + 'static {
    /// "P-256", for error messages.
    const NAME: &'static str;
    /// Bytes of a coordinate and of each half of a signature.
    const BYTES: usize;
    /// Bits of the group order.
    const SCALAR_BITS: u32;
    /// Window of G's table (built once per VM).
    const G_WINDOW: u32;
    /// Window of each key's table (built once per key and VM).
    const Q_WINDOW: u32;
    /// The generator's affine coordinates, big-endian, [`Curve::BYTES`] each.
    const GENERATOR: (&'static [u8], &'static [u8]);
    /// The field.
    type Fe: Field;
    /// The group order n.
    type Order: Modulus;
    /// The hash of the JWS algorithm (ES256: SHA-256, ES384: SHA-384).
    type Hash: Digest;

    /// The field element with big-endian `bytes` ([`Curve::BYTES`] of them), if below p.
    fn field_element(bytes: &[u8]) -> Option<Self::Fe>;

    /// This curve's per-VM state: G's table and the key table budget.
    fn statics() -> &'static CurveStatics<Self::Fe>;
}

/// Declares a curve for this module: `declare_curve!(P256, P256VerifyKey, "P-256", Sha256)`,
/// in a module that defines the curve's `Fe` (its field), `OrderN` (its group order, a
/// [`Modulus`]), `BYTES`, `SCALAR_BITS`, `G_WINDOW`, `Q_WINDOW`, `GENERATOR_X`, `GENERATOR_Y`
/// and `KEY_TABLE_BUDGET`, gives the unit type `P256` with its [`Curve`] impl (its own
/// statics), the key type `P256VerifyKey`, the alias `FixedBaseTable` and the functions
/// `generator_table()` and `key_table_bytes()` for that curve.
macro_rules! declare_curve {
    ($curve:ident, $key:ident, $name:literal, $hash:ty) => {
        #[doc = concat!("The curve ", $name, " for [`ecdsa`](crate::crypto::ecdsa).")]
        pub struct $curve;

        impl $crate::crypto::ecdsa::Curve for $curve {
            const NAME: &'static str = $name;
            const BYTES: usize = BYTES;
            const SCALAR_BITS: u32 = SCALAR_BITS;
            const G_WINDOW: u32 = G_WINDOW;
            const Q_WINDOW: u32 = Q_WINDOW;
            const GENERATOR: (&'static [u8], &'static [u8]) = (&GENERATOR_X, &GENERATOR_Y);
            type Fe = Fe;
            type Order = OrderN;
            type Hash = $hash;

            fn field_element(bytes: &[u8]) -> Option<Fe> {
                Fe::from_be_bytes(bytes.try_into().ok()?)
            }

            fn statics() -> &'static $crate::crypto::ecdsa::CurveStatics<Fe> {
                static STATICS: $crate::crypto::ecdsa::CurveStatics<Fe> =
                    $crate::crypto::ecdsa::CurveStatics::new(KEY_TABLE_BUDGET);
                &STATICS
            }
        }

        #[doc = concat!("A ", $name, " public key with its precomputed table.")]
        pub type $key = $crate::crypto::ecdsa::EcdsaKey<$curve>;

        #[doc = concat!("A table of ", $name, " multiples.")]
        pub type FixedBaseTable = $crate::crypto::weierstrass::FixedBaseTable<Fe>;

        /// G's table, built on first use and kept for the life of the VM.
        pub fn generator_table() -> Option<&'static FixedBaseTable> {
            $crate::crypto::ecdsa::generator_table::<$curve>()
        }

        /// Heap bytes of this curve's key tables alive now in this VM (process, natively).
        pub fn key_table_bytes() -> usize {
            $crate::crypto::ecdsa::key_table_bytes::<$curve>()
        }
    };
}
pub(crate) use declare_curve;

/// A curve's per-VM state (one `static` per curve: Rust has no generic statics).
pub struct CurveStatics<F> {
    generator: OnceLock<Option<FixedBaseTable<F>>>,
    budget: TableBudget,
}

impl<F> CurveStatics<F> {
    /// No G table yet, and a key table budget of `budget` heap bytes.
    pub const fn new(budget: usize) -> CurveStatics<F> {
        CurveStatics {
            generator: OnceLock::new(),
            budget: TableBudget::new(budget),
        }
    }
}

/// G's table of curve `C`, built on first use and kept for the life of the VM (`None` only if
/// building failed its checks, which does not happen).
pub fn generator_table<C: Curve>() -> Option<&'static FixedBaseTable<C::Fe>> {
    C::statics()
        .generator
        .get_or_init(|| {
            checked_table::<C>(
                &point_from::<C>(C::GENERATOR.0, C::GENERATOR.1)?,
                C::G_WINDOW,
            )
        })
        .as_ref()
}

/// Heap bytes of curve `C`'s key tables alive now in this VM (process, natively).
pub fn key_table_bytes<C: Curve>() -> usize {
    C::statics().budget.used()
}

/// The affine point with these big-endian coordinates, if both are below p and the point is
/// on the curve (cofactor 1: every such point is in the prime-order group, and the identity
/// has no affine coordinates).
pub fn point_from<C: Curve>(x: &[u8], y: &[u8]) -> Option<Affine<C::Fe>> {
    let point = Affine {
        x: C::field_element(x)?,
        y: C::field_element(y)?,
    };
    point.is_on_curve().then_some(point)
}

/// The table of `point` with `window`, if it passes its checks: every entry on the curve
/// ([`FixedBaseTable::build`]) and the entries' sum equal to the same multiple by
/// double-and-add.
pub fn checked_table<C: Curve>(
    point: &Affine<C::Fe>,
    window: u32,
) -> Option<FixedBaseTable<C::Fe>> {
    let table = FixedBaseTable::build(point, window, C::SCALAR_BITS)?;
    let k = table_sum_scalar::<C>(table.window());
    let expected = weierstrass::mul_vartime(point, &le_limbs(&k.to_be_bytes()));
    let matches = match (table.entry_sum().to_affine(), expected.to_affine()) {
        (Some(sum), Some(expected)) => sum == expected,
        (None, None) => true,
        _ => false,
    };
    matches.then_some(table)
}

/// `Σ_i (1 + 2 + … + len_i) · 2^(window·i) mod n`: the scalar whose multiple of P is the sum
/// of every entry of P's table.
pub fn table_sum_scalar<C: Curve>(window: u32) -> Scalar<C> {
    let step = Scalar::<C>::from_u64(1u64 << window);
    let mut weight = Scalar::<C>::ONE;
    let mut total = Scalar::<C>::ZERO;
    for len in fixed_window::row_lengths(C::SCALAR_BITS, window) {
        let len = len as u64;
        total = total.add(&Scalar::<C>::from_u64(len * (len + 1) / 2).mul(&weight));
        weight = weight.mul(&step);
    }
    total
}

/// A scalar's big-endian encoding as little-endian 64-bit limbs.
pub fn le_limbs(scalar: &[u8; WIDE]) -> [u64; WIDE / 8] {
    fixed_window::le_limbs(scalar)
}

/// A key's table, counted against its curve's budget while it lives.
struct KeyTable<F> {
    table: FixedBaseTable<F>,
    _reserved: Reservation,
}

/// A public key of curve `C` with its precomputed table, ready to verify signatures.
pub struct EcdsaKey<C: Curve> {
    point: Affine<C::Fe>,
    /// `None` past the curve's key table budget or if a table failed its checks;
    /// verification then computes u2·Q by double-and-add.
    table: Option<Arc<KeyTable<C::Fe>>>,
}

impl<C: Curve> Clone for EcdsaKey<C> {
    fn clone(&self) -> Self {
        EcdsaKey {
            point: self.point,
            table: self.table.clone(),
        }
    }
}

impl<C: Curve> EcdsaKey<C> {
    /// The key with these affine coordinates (big-endian, [`Curve::BYTES`] each), with its
    /// table at the curve's `Q_WINDOW`; `None` if a coordinate has another length or is not
    /// below p, or the point is not on the curve. Also builds G's table if this VM has none
    /// yet, so that cost lands on key loading rather than on a request.
    pub fn from_coordinates(x: &[u8], y: &[u8]) -> Option<EcdsaKey<C>> {
        EcdsaKey::with_window(x, y, C::Q_WINDOW)
    }

    /// As [`EcdsaKey::from_coordinates`], with a chosen window for the key's table.
    pub fn with_window(x: &[u8], y: &[u8], window: u32) -> Option<EcdsaKey<C>> {
        let point = point_from::<C>(x, y)?;
        let statics = C::statics();
        // A table that fails its checks gives its reservation back as it drops.
        let table = generator_table::<C>()
            .and_then(|_| {
                statics
                    .budget
                    .reserve(FixedBaseTable::<C::Fe>::size_for(window, C::SCALAR_BITS))
            })
            .and_then(|reserved| {
                checked_table::<C>(&point, window).map(|table| {
                    Arc::new(KeyTable {
                        table,
                        _reserved: reserved,
                    })
                })
            });
        Some(EcdsaKey { point, table })
    }

    /// The same key without its table (u2·Q by double-and-add, as past the budget).
    #[cfg(test)]
    pub(crate) fn without_table(&self) -> EcdsaKey<C> {
        EcdsaKey {
            point: self.point,
            table: None,
        }
    }

    /// The key's own table, if built (G's is shared: [`generator_table`]).
    pub fn table(&self) -> Option<&FixedBaseTable<C::Fe>> {
        self.table.as_deref().map(|t| &t.table)
    }

    /// Verifies a signature (`r || s`, 2 · [`Curve::BYTES`] bytes) over `message`, hashed
    /// with the curve's JWS hash.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.verify_prehash(&C::Hash::digest(message), signature)
    }

    /// Verifies `signature` (`r || s`, each in [1, n − 1]) over a message digest, exactly as
    /// ecdsa 0.16's `verify_prehash` does (including its handling of digests of other lengths
    /// than the field's). Never inlined: one function per curve, not both curves inside
    /// `VerifyKey::verify` (a 30 KB function, whose compilation alone took TurboFan 5 MB).
    #[inline(never)]
    pub fn verify_prehash(&self, prehash: &[u8], signature: &[u8]) -> bool {
        let Some(g_table) = generator_table::<C>() else {
            return false;
        };
        let Some((r_bytes, r, s)) = split_signature::<C>(signature) else {
            return false;
        };
        let Some(z) = bits2field::<C>(prehash).and_then(|field| reduce::<C>(&field)) else {
            return false;
        };
        // s is in [1, n − 1] and n is prime: the inverse exists (and is checked inside).
        let Some(s_inv) = s.invert() else {
            return false;
        };
        let u1 = le_limbs(&z.mul(&s_inv).to_be_bytes());
        let u2 = le_limbs(&r.mul(&s_inv).to_be_bytes());
        let sum = g_table.add_multiple(&u1, Jacobian::IDENTITY);
        let sum = match self.table() {
            Some(q_table) => q_table.add_multiple(&u2, sum),
            None => sum.add(&weierstrass::mul_vartime(&self.point, &u2)),
        };
        x_matches::<C>(&sum, &r_bytes)
    }
}

/// `bytes` (at most [`WIDE`] of them) right-aligned in a [`WIDE`]-byte big-endian number.
pub fn widen(bytes: &[u8]) -> Option<[u8; WIDE]> {
    let mut wide = [0u8; WIDE];
    wide.get_mut(WIDE.checked_sub(bytes.len())?..)?
        .copy_from_slice(bytes);
    Some(wide)
}

/// `r || s` as r's (widened) bytes and both scalars, if the signature is 2 · [`Curve::BYTES`]
/// bytes and r, s are in [1, n − 1] (what `ecdsa::Signature::from_slice` accepts).
pub fn split_signature<C: Curve>(
    signature: &[u8],
) -> Option<([u8; WIDE], PlainScalar<C>, PlainScalar<C>)> {
    if signature.len() != 2 * C::BYTES {
        return None;
    }
    let (r_bytes, s_bytes) = signature.split_at(C::BYTES);
    let (r_bytes, s_bytes) = (widen(r_bytes)?, widen(s_bytes)?);
    let (r, s) = (
        PlainScalar::<C>::from_be_bytes(&r_bytes)?,
        PlainScalar::<C>::from_be_bytes(&s_bytes)?,
    );
    (!r.is_zero() && !s.is_zero()).then_some((r_bytes, r, s))
}

/// ecdsa 0.16's `bits2field` for the curve's field, widened: at least half the field's bytes,
/// a shorter digest is left-padded with zeros and a longer one truncated to its leading
/// [`Curve::BYTES`].
pub fn bits2field<C: Curve>(prehash: &[u8]) -> Option<[u8; WIDE]> {
    if prehash.len() < C::BYTES / 2 {
        return None;
    }
    widen(prehash.get(..prehash.len().min(C::BYTES))?)
}

/// A number below 2^(8 · [`Curve::BYTES`]) reduced mod n: that is below 2n for both curves
/// (n > 2^(bits − 1)), so it is the number or the number − n (`None` cannot happen; the
/// caller rejects if it did).
pub fn reduce<C: Curve>(bytes: &[u8; WIDE]) -> Option<PlainScalar<C>> {
    PlainScalar::<C>::from_be_bytes(bytes)
        .or_else(|| PlainScalar::<C>::from_be_bytes(&be_add(bytes, &C::Order::BE, true).0))
}

/// `a + b` (or `a − b` with `subtract`) on [`WIDE`]-byte big-endian numbers, and the carry
/// (or borrow) out of the top byte.
pub fn be_add(a: &[u8; WIDE], b: &[u8; WIDE], subtract: bool) -> ([u8; WIDE], bool) {
    let mut out = [0u8; WIDE];
    let mut carry = 0i16;
    for ((o, x), y) in out.iter_mut().rev().zip(a.iter().rev()).zip(b.iter().rev()) {
        let total = if subtract {
            i16::from(*x) - i16::from(*y) + carry
        } else {
            i16::from(*x) + i16::from(*y) + carry
        };
        *o = total as u8;
        carry = total >> 8;
    }
    (out, carry != 0)
}

/// The field element of a widened number, if it fits the curve's field and is below p.
fn field_element_wide<C: Curve>(bytes: &[u8; WIDE]) -> Option<C::Fe> {
    let (high, low) = bytes.split_at(WIDE - C::BYTES);
    if high.iter().any(|byte| *byte != 0) {
        return None;
    }
    C::field_element(low)
}

/// Whether x(R) mod n == r for `r` in [1, n − 1] (widened big-endian), false for the
/// identity, without a field inversion. x(R) is below p < 2n, so x(R) mod n is x(R) or
/// x(R) − n: either x(R) == r, or x(R) == r + n when that is below p.
pub fn x_matches<C: Curve>(sum: &Jacobian<C::Fe>, r: &[u8; WIDE]) -> bool {
    let Some(r_fe) = field_element_wide::<C>(r) else {
        return false;
    };
    if sum.has_x(&r_fe) {
        return true;
    }
    // r + n, if it fits the field's bytes and is below p (field_element_wide checks).
    let (r_plus_n, overflow) = be_add(r, &C::Order::BE, false);
    !overflow && field_element_wide::<C>(&r_plus_n).is_some_and(|x| sum.has_x(&x))
}

/// What both curves' unit tests check of a key against RustCrypto's signer and verifier for
/// the same curve (`p256`/`p384` 0.13, which share the `signature` crate's traits).
#[cfg(test)]
pub(crate) fn check_key_against_reference<C, Sig, Sk, Vk>(
    ours: &EcdsaKey<C>,
    signer: &Sk,
    reference: &Vk,
    digest_lengths: &[usize],
) where
    C: Curve,
    Sig: p256::ecdsa::signature::SignatureEncoding + for<'a> TryFrom<&'a [u8]>,
    Sk: p256::ecdsa::signature::hazmat::PrehashSigner<Sig>,
    Vk: p256::ecdsa::signature::hazmat::PrehashVerifier<Sig>,
{
    let sign_prehash = |z: &[u8]| -> Vec<u8> {
        let sig = signer.sign_prehash(z).expect("signs");
        sig.to_bytes().as_ref().to_vec()
    };
    let reference = |z: &[u8], sig: &[u8]| match Sig::try_from(sig) {
        Ok(sig) => reference.verify_prehash(z, &sig).is_ok(),
        Err(_) => false,
    };
    assert!(ours.table().is_some());
    // Without a table: double-and-add for u2·Q.
    let plain = ours.without_table();
    let n = &C::Order::BE[WIDE - C::BYTES..];
    for &len in digest_lengths {
        let z = vec![0xa5u8; len];
        let bytes = sign_prehash(&z);
        assert!(reference(&z, &bytes));
        assert!(ours.verify_prehash(&z, &bytes));
        assert!(plain.verify_prehash(&z, &bytes));
        let mut other = z.clone();
        other[0] ^= 1;
        assert!(!ours.verify_prehash(&other, &bytes));
        assert!(!plain.verify_prehash(&other, &bytes));
        assert!(!ours.verify_prehash(&z[..C::BYTES / 2 - 1], &bytes));
        // r, s out of range or the wrong length.
        assert!(!ours.verify_prehash(&z, &bytes[..2 * C::BYTES - 1]));
        let mut long = bytes.to_vec();
        long.push(0);
        assert!(!ours.verify_prehash(&z, &long));
        let mut zero_r = bytes.to_vec();
        zero_r[..C::BYTES].fill(0);
        assert!(!ours.verify_prehash(&z, &zero_r));
        let mut n_s = bytes.to_vec();
        n_s[C::BYTES..].copy_from_slice(n);
        assert!(!ours.verify_prehash(&z, &n_s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::p256_tables::P256;
    use crate::crypto::p384_tables::P384;

    #[test]
    fn bits2field_pads_and_truncates() {
        assert!(bits2field::<P256>(&[1; 15]).is_none());
        let short = bits2field::<P256>(&[1; 16]).unwrap();
        assert_eq!(&short[..32], &[0; 32]);
        assert_eq!(&short[32..], &[1; 16]);
        let long: Vec<u8> = (0..64).collect();
        assert_eq!(&bits2field::<P256>(&long).unwrap()[16..], &long[..32]);
        assert_eq!(&bits2field::<P256>(&long).unwrap()[..16], &[0; 16]);
        assert!(bits2field::<P384>(&[1; 23]).is_none());
        assert_eq!(&bits2field::<P384>(&long).unwrap()[..], &long[..48]);
        assert_eq!(widen(&[0; WIDE + 1]), None);
    }

    #[test]
    fn signatures_split_by_curve_length() {
        let mut sig = [0u8; 64];
        sig[31] = 1;
        sig[63] = 2;
        let (r_bytes, r, s) = split_signature::<P256>(&sig).unwrap();
        assert_eq!(r_bytes, widen(&sig[..32]).unwrap());
        assert_eq!(r.to_be_bytes(), Scalar::<P256>::from_u64(1).to_be_bytes());
        assert_eq!(s.to_be_bytes(), Scalar::<P256>::from_u64(2).to_be_bytes());
        assert!(split_signature::<P384>(&sig).is_none());
        assert!(split_signature::<P256>(&sig[..63]).is_none());
        // r = 0, s = n: out of range.
        let mut zero_r = sig;
        zero_r[31] = 0;
        assert!(split_signature::<P256>(&zero_r).is_none());
        let mut n_s = sig;
        n_s[32..].copy_from_slice(&<P256 as Curve>::Order::BE[16..]);
        assert!(split_signature::<P256>(&n_s).is_none());
    }
}
