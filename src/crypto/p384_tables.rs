//! Fast ES384 verification: ECDSA P-384 as one fixed-window multi-scalar multiplication
//! u1·G + u2·Q over precomputed affine tables, on our own field and scalar arithmetic
//! ([`p384_field`](crate::crypto::p384_field)) and point formulas
//! ([`weierstrass`](crate::crypto::weierstrass)). The `p384` crate is not in the module.
//!
//! The design of ES256's [`p256_tables`](crate::crypto::p256_tables): a verifier never handles
//! a secret, so the work that depends only on the public point is done once. For each point P
//! the table holds `row[i][j-1] = j · 2^(w·i) · P` for `j` in `1..=2^(w-1)`, in affine form; a
//! scalar is recoded into signed base-2^w digits, and `k·P` is one mixed addition or
//! subtraction per non-zero digit, with no doublings.
//!
//! - History: p384 0.13's `verify_prehash` (~4 ms in Envoy's V8), then these tables on p384's
//!   own points and 64-bit fiat-crypto field (~650-820 µs: its field multiplication emulates a
//!   128-bit product per limb pair in wasm32), now on 28-bit limbs (issue #13: see the
//!   figures at [`p384_verify_timing`](self) and in src/crypto/README.md). Dropping the
//!   `p384` crate also removed ~160 KB of compiled code from the module.
//! - G's table is built once per VM ([`generator_table`], [`G_WINDOW`]) and Q's once per key
//!   when the key set is loaded ([`P384VerifyKey::from_coordinates`], [`Q_WINDOW`]). Every
//!   entry is checked to be on the curve, and the entries' sum against the same multiple
//!   computed independently by double-and-add; a table failing either check is not used.
//!   Key tables are capped per VM ([`KEY_TABLE_BUDGET`]); keys past the cap verify with
//!   double-and-add for u2·Q (slower, same answers).
//! - The checks are those of ecdsa 0.16's `verify_prehashed`: r, s in [1, n-1], z =
//!   bits2field(prehash) reduced mod n, w = s⁻¹, u1 = z·w, u2 = r·w, R = u1·G + u2·Q, the
//!   identity refused, accepted iff x(R) mod n == r (tested without inverting Z: X == r·Z²,
//!   or X == (r + n)·Z² when r + n < p, see [`x_matches`]). tests/p384_differential.rs checks
//!   agreement with the RustCrypto verifier (native only) on random and edge cases, and the
//!   Wycheproof ES384 vectors run in wasm too.
//! - **Variable time, on purpose.** Every input here is public (key, signature, signed bytes),
//!   so table lookups indexed by scalar digits, skipped zero digits and the variable-time
//!   inversion of s leak nothing. This code must never be used with a secret scalar (signing,
//!   ECDH).

use std::sync::{Arc, OnceLock};

use sha2::{Digest, Sha384};

use crate::crypto::fixed_window::{self, Reservation, TableBudget};
use crate::crypto::p384_field::{Fe, Modulus, OrderN, Scalar, BYTES};
use crate::crypto::weierstrass::{self, Affine, Jacobian};

/// Window of G's table: 7 bits, 55 rows of up to 64 points (3,457 entries of 112 bytes,
/// ~378 KiB), built once per VM when the first P-384 key loads.
///
/// Chosen on the previous arithmetic (p384 0.13's field, wasm32 in Node 20's V8, the ignored
/// `p384_verify_timing` test with `P384_WINDOW_SWEEP=1`): 8-bit G and 6-bit Q windows
/// ~1,000-1,170 µs, 7/6 ~1,060 µs, 4/4 ~1,450 µs, 6/6 ~1,130 µs, 8/8 ~990 µs (noisy to
/// ~15 %). 8 bits would save ~5 % per verification for ~0.7 MB per VM and a longer build that
/// stalls the worker's first P-384 key load. Each verification is at most 55 + 65 mixed
/// additions and one scalar inversion.
pub const G_WINDOW: u32 = 7;
/// Window of each public key's table: 64 rows of 32 points and one of 1, 2,049 entries,
/// ~224 KiB. Window 5 was up to 25 % slower per verification; 7 and 8 gained at most ~15 %
/// for 1.7-3x the memory and build time per key (same sweep).
pub const Q_WINDOW: u32 = 6;
pub use fixed_window::{MAX_WINDOW, MIN_WINDOW};

/// Bits in a P-384 scalar.
const SCALAR_BITS: u32 = 384;

/// The generator, big-endian affine coordinates (SEC 2 / FIPS 186-4).
const GENERATOR_X: [u8; BYTES] = [
    0xaa, 0x87, 0xca, 0x22, 0xbe, 0x8b, 0x05, 0x37, 0x8e, 0xb1, 0xc7, 0x1e, 0xf3, 0x20, 0xad, 0x74,
    0x6e, 0x1d, 0x3b, 0x62, 0x8b, 0xa7, 0x9b, 0x98, 0x59, 0xf7, 0x41, 0xe0, 0x82, 0x54, 0x2a, 0x38,
    0x55, 0x02, 0xf2, 0x5d, 0xbf, 0x55, 0x29, 0x6c, 0x3a, 0x54, 0x5e, 0x38, 0x72, 0x76, 0x0a, 0xb7,
];
const GENERATOR_Y: [u8; BYTES] = [
    0x36, 0x17, 0xde, 0x4a, 0x96, 0x26, 0x2c, 0x6f, 0x5d, 0x9e, 0x98, 0xbf, 0x92, 0x92, 0xdc, 0x29,
    0xf8, 0xf4, 0x1d, 0xbd, 0x28, 0x9a, 0x14, 0x7c, 0xe9, 0xda, 0x31, 0x13, 0xb5, 0xf0, 0xb8, 0xc0,
    0x0a, 0x60, 0xb1, 0xce, 0x1d, 0x7e, 0x81, 0x9d, 0x7a, 0x43, 0x1d, 0x7c, 0x90, 0xea, 0x0e, 0x5f,
];
/// The curve's b, big-endian (y² = x³ − 3x + b).
const CURVE_B: [u8; BYTES] = [
    0xb3, 0x31, 0x2f, 0xa7, 0xe2, 0x3e, 0xe7, 0xe4, 0x98, 0x8e, 0x05, 0x6b, 0xe3, 0xf8, 0x2d, 0x19,
    0x18, 0x1d, 0x9c, 0x6e, 0xfe, 0x81, 0x41, 0x12, 0x03, 0x14, 0x08, 0x8f, 0x50, 0x13, 0x87, 0x5a,
    0xc6, 0x56, 0x39, 0x8d, 0x8a, 0x2e, 0xd1, 0x9d, 0x2a, 0x85, 0xc8, 0xed, 0xd3, 0xec, 0x2a, 0xef,
];

weierstrass::delegate_field!(Fe, CURVE_B);

/// A table of P-384 multiples.
pub type FixedBaseTable = weierstrass::FixedBaseTable<Fe>;

/// The affine point with these big-endian coordinates, if both are below p and the point is
/// on the curve (P-384 has cofactor 1: every such point is in the prime-order group, and the
/// identity has no affine coordinates).
fn point_from(x: &[u8; BYTES], y: &[u8; BYTES]) -> Option<Affine<Fe>> {
    let point = Affine {
        x: Fe::from_be_bytes(x)?,
        y: Fe::from_be_bytes(y)?,
    };
    point.is_on_curve().then_some(point)
}

/// The table of `point` with `window`, if it passes its checks: every entry on the curve
/// ([`weierstrass::FixedBaseTable::build`]) and the entries' sum equal to the same multiple
/// by double-and-add.
fn checked_table(point: &Affine<Fe>, window: u32) -> Option<FixedBaseTable> {
    let table = FixedBaseTable::build(point, window, SCALAR_BITS)?;
    let window = table.window();
    let k = table_sum_scalar(window);
    let expected = weierstrass::mul_vartime(point, &le_limbs(&k));
    let sum = table.entry_sum();
    let matches = match (sum.to_affine(), expected.to_affine()) {
        (Some(sum), Some(expected)) => sum == expected,
        (None, None) => true,
        _ => false,
    };
    matches.then_some(table)
}

/// `Σ_i (1 + 2 + … + len_i) · 2^(window·i) mod n`: the scalar whose multiple of P is the sum
/// of every entry of P's table.
fn table_sum_scalar(window: u32) -> Scalar {
    let step = Scalar::from_u64(1u64 << window);
    let mut weight = Scalar::ONE;
    let mut total = Scalar::ZERO;
    for len in fixed_window::row_lengths(SCALAR_BITS, window) {
        let len = len as u64;
        total = total.add(&Scalar::from_u64(len * (len + 1) / 2).mul(&weight));
        weight = weight.mul(&step);
    }
    total
}

/// The scalar as little-endian 64-bit limbs.
fn le_limbs(scalar: &Scalar) -> [u64; 6] {
    fixed_window::le_limbs(&scalar.to_be_bytes())
}

/// G's table, built on first use and kept for the life of the VM (`None` only if building
/// failed its checks, which does not happen).
pub fn generator_table() -> Option<&'static FixedBaseTable> {
    static TABLE: OnceLock<Option<FixedBaseTable>> = OnceLock::new();
    TABLE
        .get_or_init(|| checked_table(&point_from(&GENERATOR_X, &GENERATOR_Y)?, G_WINDOW))
        .as_ref()
}

/// Most heap bytes of P-384 key tables (G's excluded) alive at once in this VM: 9 keys at
/// [`Q_WINDOW`] (~224 KiB each). Keys past the budget verify u2·Q by double-and-add (slower,
/// same answers) rather than cost memory and load time. An old and a new key set are alive
/// together during a swap, so sets of up to 4 P-384 keys always get tables. Separate from
/// the P-256 budget.
pub const KEY_TABLE_BUDGET: usize = 2 << 20;

static BUDGET: TableBudget = TableBudget::new(KEY_TABLE_BUDGET);

/// Heap bytes of key tables alive now in this VM (process, natively).
pub fn key_table_bytes() -> usize {
    BUDGET.used()
}

/// A key's table, counted against [`KEY_TABLE_BUDGET`] while it lives.
struct KeyTable {
    table: FixedBaseTable,
    _reserved: Reservation,
}

/// A P-384 public key with its precomputed table, ready to verify ES384 signatures.
#[derive(Clone)]
pub struct P384VerifyKey {
    point: Affine<Fe>,
    /// `None` past [`KEY_TABLE_BUDGET`] or if a table failed its checks; verification then
    /// computes u2·Q by double-and-add.
    table: Option<Arc<KeyTable>>,
}

impl P384VerifyKey {
    /// The key with these affine coordinates (big-endian, 48 bytes each), with its table at
    /// the default [`Q_WINDOW`]; `None` if a coordinate is not below p or the point is not on
    /// the curve. Also builds G's table if this VM has none yet, so that cost lands on key
    /// loading rather than on a request.
    pub fn from_coordinates(x: &[u8; BYTES], y: &[u8; BYTES]) -> Option<P384VerifyKey> {
        P384VerifyKey::with_window(x, y, Q_WINDOW)
    }

    /// As [`P384VerifyKey::from_coordinates`], with a chosen window for the key's table.
    pub fn with_window(x: &[u8; BYTES], y: &[u8; BYTES], window: u32) -> Option<P384VerifyKey> {
        let point = point_from(x, y)?;
        // A table that fails its checks gives its reservation back as it drops.
        let table = generator_table()
            .and_then(|_| BUDGET.reserve(FixedBaseTable::size_for(window, SCALAR_BITS)))
            .and_then(|reserved| {
                checked_table(&point, window).map(|table| {
                    Arc::new(KeyTable {
                        table,
                        _reserved: reserved,
                    })
                })
            });
        Some(P384VerifyKey { point, table })
    }

    /// The key's own table, if built (G's is shared: [`generator_table`]).
    pub fn table(&self) -> Option<&FixedBaseTable> {
        self.table.as_deref().map(|t| &t.table)
    }

    /// Verifies an ES384 signature (`r || s`, 96 bytes) over `message` (hashed with SHA-384).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.verify_prehash(&Sha384::digest(message), signature)
    }

    /// Verifies `signature` (`r || s`, 96 bytes, each in [1, n − 1]) over a message digest,
    /// exactly as ecdsa 0.16's `verify_prehash` does for P-384 (including its handling of
    /// digests of other lengths than 48 bytes).
    pub fn verify_prehash(&self, prehash: &[u8], signature: &[u8]) -> bool {
        let Some(g_table) = generator_table() else {
            return false;
        };
        let Some((r_bytes, r, s)) = split_signature(signature) else {
            return false;
        };
        let Some(field) = fixed_window::bits2field::<BYTES>(prehash) else {
            return false;
        };
        let Some(z) = reduce(&field) else {
            return false;
        };
        // s is in [1, n − 1] and n is prime: the inverse exists (and is checked inside).
        let Some(s_inv) = s.invert() else {
            return false;
        };
        let u1 = le_limbs(&z.mul(&s_inv));
        let u2 = le_limbs(&r.mul(&s_inv));
        let sum = g_table.add_multiple(&u1, Jacobian::IDENTITY);
        let sum = match self.table() {
            Some(q_table) => q_table.add_multiple(&u2, sum),
            None => sum.add(&weierstrass::mul_vartime(&self.point, &u2)),
        };
        x_matches(&sum, &r_bytes)
    }
}

/// `r || s` as r's bytes and both scalars, if the signature is 96 bytes and r, s are in
/// [1, n − 1] (what `ecdsa::Signature::from_slice` accepts).
fn split_signature(signature: &[u8]) -> Option<([u8; BYTES], Scalar, Scalar)> {
    let (r_bytes, s_bytes) = (signature.get(..BYTES)?, signature.get(BYTES..)?);
    let r_bytes: [u8; BYTES] = r_bytes.try_into().ok()?;
    let s_bytes: [u8; BYTES] = s_bytes.try_into().ok()?;
    let (r, s) = (
        Scalar::from_be_bytes(&r_bytes)?,
        Scalar::from_be_bytes(&s_bytes)?,
    );
    (!r.is_zero() && !s.is_zero()).then_some((r_bytes, r, s))
}

/// A 48-byte big-endian number reduced mod n: it is below 2^384 < 2n, so it is the number or
/// the number − n (`None` cannot happen; the caller rejects if it did).
fn reduce(bytes: &[u8; BYTES]) -> Option<Scalar> {
    Scalar::from_be_bytes(bytes)
        .or_else(|| Scalar::from_be_bytes(&be_add(bytes, &OrderN::BE, true).0))
}

/// `a + b` (or `a − b` with `subtract`) on 48-byte big-endian numbers, and the carry (or
/// borrow) out of the top byte.
fn be_add(a: &[u8; BYTES], b: &[u8; BYTES], subtract: bool) -> ([u8; BYTES], bool) {
    let mut out = [0u8; BYTES];
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

/// Whether x(R) mod n == r for `r` in [1, n − 1] (big-endian), false for the identity, without
/// a field inversion. x(R) is below p < 2n, so x(R) mod n is x(R) or x(R) − n: either
/// x(R) == r, or x(R) == r + n when that is below p.
fn x_matches(sum: &Jacobian<Fe>, r: &[u8; BYTES]) -> bool {
    let Some(r_fe) = Fe::from_be_bytes(r) else {
        return false;
    };
    if sum.has_x(&r_fe) {
        return true;
    }
    // r + n, if it does not overflow 384 bits and is below p (from_be_bytes checks).
    let (r_plus_n, overflow) = be_add(r, &OrderN::BE, false);
    !overflow && Fe::from_be_bytes(&r_plus_n).is_some_and(|x| sum.has_x(&x))
}

#[cfg(test)]
mod tests {
    use super::*;
    use p384::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
    use p384::ecdsa::{Signature, SigningKey};
    use p384::elliptic_curve::ops::Reduce;
    use p384::elliptic_curve::sec1::ToEncodedPoint;
    use p384::{ProjectivePoint, U384};

    fn coordinates(point: &p384::AffinePoint) -> ([u8; BYTES], [u8; BYTES]) {
        let encoded = point.to_encoded_point(false);
        let bytes = |c: Option<&p384::FieldBytes>| -> [u8; BYTES] { (*c.unwrap()).into() };
        let (x, y) = (bytes(encoded.x()), bytes(encoded.y()));
        (x, y)
    }

    fn ours(point: &p384::AffinePoint) -> Affine<Fe> {
        let (x, y) = coordinates(point);
        point_from(&x, &y).unwrap()
    }

    fn their_scalar(bytes: [u8; BYTES]) -> p384::Scalar {
        <p384::Scalar as Reduce<U384>>::reduce_bytes(&bytes.into())
    }

    fn our_scalar(k: &p384::Scalar) -> Scalar {
        Scalar::from_be_bytes(&k.to_bytes().into()).unwrap()
    }

    #[test]
    fn generator_and_b_match_p384() {
        assert_eq!(
            coordinates(&p384::AffinePoint::GENERATOR),
            (GENERATOR_X, GENERATOR_Y)
        );
        assert!(point_from(&GENERATOR_X, &GENERATOR_Y).is_some());
        // Off the curve, or a coordinate not below p.
        let mut y = GENERATOR_Y;
        y[BYTES - 1] ^= 1;
        assert!(point_from(&GENERATOR_X, &y).is_none());
        assert!(point_from(&crate::crypto::p384_field::FieldP::BE, &GENERATOR_Y).is_none());
        assert!(point_from(&[0; BYTES], &[0; BYTES]).is_none());
    }

    #[test]
    fn table_multiplication_matches_p384() {
        let point = (ProjectivePoint::GENERATOR * their_scalar([7; BYTES])).to_affine();
        let mut edge = [0xffu8; BYTES];
        edge[0] = 0x7f;
        let scalars = [
            p384::Scalar::ZERO,
            p384::Scalar::ONE,
            -p384::Scalar::ONE,
            their_scalar([0x88; BYTES]),
            their_scalar([0x80; BYTES]),
            their_scalar(edge),
            their_scalar([0x5a; BYTES]),
            their_scalar([0xff; BYTES]),
        ];
        for window in MIN_WINDOW..=MAX_WINDOW {
            let table = checked_table(&ours(&point), window).unwrap();
            for k in &scalars {
                let limbs = le_limbs(&our_scalar(k));
                let expected = (ProjectivePoint::from(point) * k).to_affine();
                let expected = (expected != p384::AffinePoint::IDENTITY).then(|| ours(&expected));
                let got = table.add_multiple(&limbs, Jacobian::IDENTITY);
                assert_eq!(got.to_affine(), expected, "window {window}");
                let plain = weierstrass::mul_vartime(&ours(&point), &limbs);
                assert_eq!(plain.to_affine(), expected, "window {window}");
            }
        }
    }

    #[test]
    fn exceptional_additions() {
        let g = ours(&p384::AffinePoint::GENERATOR);
        let jg = Jacobian::from(&g);
        let two_g = ours(&(ProjectivePoint::GENERATOR + ProjectivePoint::GENERATOR).to_affine());
        assert_eq!(jg.add_affine(&g).to_affine(), Some(two_g));
        assert_eq!(jg.add(&jg).to_affine(), Some(two_g));
        assert_eq!(jg.double().to_affine(), Some(two_g));
        assert!(jg.sub_affine(&g).is_identity());
        assert!(jg
            .add(&Jacobian {
                y: jg.y.neg(),
                ..jg
            })
            .is_identity());
        assert_eq!(Jacobian::IDENTITY.add_affine(&g).to_affine(), Some(g));
        assert_eq!(Jacobian::IDENTITY.add(&jg).to_affine(), Some(g));
        assert_eq!(jg.add(&Jacobian::IDENTITY).to_affine(), Some(g));
        assert!(Jacobian::<Fe>::IDENTITY.to_affine().is_none());
        assert!(Jacobian::<Fe>::IDENTITY.double().is_identity());
        // A point whose z is not 1: 2G + G, then + G again.
        let three_g = jg.double().add_affine(&g);
        let four_g = ours(&(ProjectivePoint::GENERATOR * p384::Scalar::from(4u64)).to_affine());
        assert_eq!(three_g.add_affine(&g).to_affine(), Some(four_g));
        assert_eq!(three_g.add(&jg).to_affine(), Some(four_g));
        assert_eq!(
            three_g.add(&three_g).to_affine(),
            three_g.double().to_affine()
        );
    }

    #[test]
    fn table_sizes_and_checks() {
        use fixed_window::row_count;
        // 385 bits (384 plus the recoding's carry).
        assert_eq!(row_count(SCALAR_BITS, 4), 97);
        assert_eq!(row_count(SCALAR_BITS, 7), 55);
        let g = ours(&p384::AffinePoint::GENERATOR);
        // Window 4: 96 rows of 8, the last row's digit is 0 or 1 (bit 384 is only a carry).
        assert_eq!(checked_table(&g, 4).unwrap().len(), 96 * 8 + 1);
        // Window 5: 76 rows of 16, the last covers bits 380..384 plus a carry: 16 entries.
        assert_eq!(checked_table(&g, 5).unwrap().len(), 77 * 16);
        assert_eq!(
            FixedBaseTable::size_for(G_WINDOW, SCALAR_BITS),
            generator_table().unwrap().heap_bytes()
        );
        // The sum check refuses a table whose entries are not the multiples they claim.
        let table = checked_table(&g, 4).unwrap();
        let k = table_sum_scalar(4);
        let sum = table.entry_sum().to_affine().unwrap();
        let expected = (ProjectivePoint::GENERATOR
            * <p384::Scalar as Reduce<U384>>::reduce_bytes(&k.to_be_bytes().into()))
        .to_affine();
        assert_eq!(Some(sum), Some(ours(&expected)));
    }

    #[test]
    fn key_tables_are_counted_while_alive() {
        let key = SigningKey::from_slice(&[3; BYTES]).unwrap();
        let (x, y) = coordinates(key.verifying_key().as_affine());
        let verify_key = P384VerifyKey::from_coordinates(&x, &y).unwrap();
        assert!(verify_key.table().is_some());
        let copy = verify_key.clone();
        // Other tests build keys concurrently: only a lower bound holds.
        assert!(key_table_bytes() >= FixedBaseTable::size_for(Q_WINDOW, SCALAR_BITS));
        drop(verify_key);
        assert!(copy.table().is_some());
        drop(copy);
    }

    #[test]
    fn verifies_like_p384() {
        let sk = SigningKey::from_slice(&[0x42; BYTES]).unwrap();
        let vk = *sk.verifying_key();
        let (x, y) = coordinates(vk.as_affine());
        let ours = P384VerifyKey::from_coordinates(&x, &y).unwrap();
        assert!(ours.table().is_some());
        // Without a table: double-and-add for u2·Q.
        let plain = P384VerifyKey {
            point: ours.point,
            table: None,
        };
        for len in [24usize, 32, 48, 64] {
            let z = vec![0xa5u8; len];
            let sig: Signature = sk.sign_prehash(&z).unwrap();
            let bytes = sig.to_bytes();
            assert!(vk.verify_prehash(&z, &sig).is_ok());
            assert!(ours.verify_prehash(&z, &bytes));
            assert!(plain.verify_prehash(&z, &bytes));
            let mut other = z.clone();
            other[0] ^= 1;
            assert!(!ours.verify_prehash(&other, &bytes));
            assert!(!plain.verify_prehash(&other, &bytes));
            assert!(!ours.verify_prehash(&z[..23], &bytes));
            // r, s out of range or the wrong length.
            assert!(!ours.verify_prehash(&z, &bytes[..95]));
            let mut long = bytes.to_vec();
            long.push(0);
            assert!(!ours.verify_prehash(&z, &long));
            let mut zero_r = bytes.to_vec();
            zero_r[..BYTES].fill(0);
            assert!(!ours.verify_prehash(&z, &zero_r));
            let mut n_s = bytes.to_vec();
            n_s[BYTES..].copy_from_slice(&OrderN::BE);
            assert!(!ours.verify_prehash(&z, &n_s));
        }
    }

    #[test]
    fn reduce_and_x_matches_edges() {
        // reduce: below n unchanged, n .. 2^384 − 1 minus n.
        assert_eq!(reduce(&OrderN::BE), Some(Scalar::ZERO));
        let max = [0xffu8; BYTES];
        let expected = be_add(&max, &OrderN::BE, true).0;
        assert_eq!(reduce(&max).unwrap().to_be_bytes(), expected);
        assert_eq!(reduce(&[1; BYTES]).unwrap().to_be_bytes(), [1; BYTES]);
        // x_matches: a point whose x is above n matches r = x − n.
        let g = ours(&p384::AffinePoint::GENERATOR);
        let mut k = 1u64;
        let mut tried = 0;
        loop {
            let point = weierstrass::mul_vartime(&g, &[k]);
            let x = point.to_affine().unwrap().x.to_be_bytes();
            let (r, borrow) = be_add(&x, &OrderN::BE, true);
            if !borrow && r != [0; BYTES] {
                // x ≥ n: r = x − n matches, x itself (not below n) would not be a valid r.
                assert!(x_matches(&point, &r));
                let (other, _) = be_add(
                    &r,
                    &{
                        let mut one = [0u8; BYTES];
                        one[BYTES - 1] = 1;
                        one
                    },
                    false,
                );
                assert!(!x_matches(&point, &other));
                break;
            }
            // x < n: x matches itself only.
            assert!(x_matches(&point, &x));
            k += 1;
            tried += 1;
            // x ≥ n happens with probability ~2^-190: only a constructed point would get
            // there, so stop after a few plain cases.
            if tried == 8 {
                break;
            }
        }
        assert!(!x_matches(&Jacobian::IDENTITY, &[1; BYTES]));
    }

    /// µs per verification and table build times, in whatever runtime runs the test (natively,
    /// or wasm under `node --no-liftoff`, which tracks Envoy's V8 on 32-bit-limb code):
    /// `cargo test --release --lib -- --ignored --nocapture p384_verify_timing`.
    #[test]
    #[ignore = "timing: run with --release --ignored --nocapture"]
    fn p384_verify_timing() {
        use std::time::Instant;
        let sk = SigningKey::from_slice(&[0x42; BYTES]).unwrap();
        let (x, y) = coordinates(sk.verifying_key().as_affine());
        let z = [0x17u8; BYTES];
        let sig: Signature = sk.sign_prehash(&z).unwrap();
        let bytes = sig.to_bytes();
        let time = |rounds: u32, f: &dyn Fn() -> bool| {
            let mut medians = Vec::new();
            for _ in 0..5 {
                let started = Instant::now();
                for _ in 0..rounds {
                    assert!(f());
                }
                medians.push(started.elapsed().as_secs_f64() * 1e6 / f64::from(rounds));
            }
            medians.sort_by(f64::total_cmp);
            medians[2]
        };
        let started = Instant::now();
        let g = generator_table().unwrap();
        println!(
            "G table (window {G_WINDOW}): {:.1} ms, {} B",
            started.elapsed().as_secs_f64() * 1e3,
            g.heap_bytes()
        );
        let started = Instant::now();
        let key = P384VerifyKey::from_coordinates(&x, &y).unwrap();
        println!(
            "key table (window {Q_WINDOW}): {:.1} ms, {} B",
            started.elapsed().as_secs_f64() * 1e3,
            key.table().unwrap().heap_bytes()
        );
        let us = time(200, &|| {
            key.verify_prehash(std::hint::black_box(&z), &bytes)
        });
        println!("ES384 verify_prehash (G {G_WINDOW}, Q {Q_WINDOW}): median {us:.1} µs");
        let (_, _, s) = split_signature(&bytes).unwrap();
        let us = time(200, &|| std::hint::black_box(s).invert().is_some());
        println!("  of which s⁻¹: {us:.1} µs");
        let plain = P384VerifyKey {
            point: key.point,
            table: None,
        };
        let us = time(20, &|| {
            plain.verify_prehash(std::hint::black_box(&z), &bytes)
        });
        println!("  without a key table: {us:.1} µs");
    }

    #[test]
    fn scalar_conversions() {
        let k = their_scalar([0x5a; BYTES]);
        assert_eq!(
            our_scalar(&k).to_be_bytes(),
            <[u8; BYTES]>::from(k.to_bytes())
        );
    }
}
