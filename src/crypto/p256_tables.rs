//! Fast ES256 verification: ECDSA P-256 as one fixed-window multi-scalar multiplication
//! u1·G + u2·Q over precomputed affine tables, on our own field arithmetic
//! ([`p256_field`](crate::crypto::p256_field)) and non-complete point formulas.
//!
//! `p256::ecdsa::VerifyingKey::verify_prehash` (0.13) runs two separate constant-time 4-bit
//! window scalar multiplications for every token: ~510 doublings, ~160 additions and a
//! constant-time scan of a 16-entry table per window, ~1 ms in Envoy's V8. A verifier never
//! handles a secret, so the work that depends only on the public point can be done once: for
//! each point P this module keeps the table
//! `row[i][j-1] = j · 2^(w·i) · P` for `j` in `1..=2^(w-1)`, in affine form. A scalar is
//! recoded into signed base-2^w digits (`k = Σ d_i · 2^(w·i)`, `|d_i| <= 2^(w-1)`), and `k·P`
//! is then one mixed addition (or subtraction) per non-zero digit and no doublings at all.
//!
//! - G's table is built once per VM ([`generator_table`], 8-bit windows: 4,097 points,
//!   ~288 KiB, ~25 ms in Node's V8) and Q's table once per key when the key set is loaded
//!   ([`P256VerifyKey::new`], 6-bit windows: 1,360 points, ~96 KiB, ~3 ms). An entry is two
//!   field elements of 9 × 32-bit limbs, 72 bytes. A verification is then at most 76 mixed
//!   additions and no field inversion: ~37 µs in Node 20's V8 (`--no-liftoff`, see the
//!   ignored `verify_timing` test), against ~190 µs for the same tables on p256's
//!   arithmetic. Signed digits halve each row against unsigned windows: a negative digit
//!   costs only the negation of `y`. Key tables are capped per VM ([`KEY_TABLE_BUDGET`]);
//!   keys past the cap use p256's own verifier.
//! - Why 6 bits for keys (measured on p256's arithmetic, wasm32 in Node 20's V8, p256 0.13
//!   `verify_prehash` ~1,100 µs): 4 bits: ~190–230 µs, 3 ms per key; 6 bits: ~156 µs, 7 ms;
//!   8 bits: ~142–163 µs, 21 ms. Past 6 bits the memory and the build (paid per key, per VM,
//!   at every key-set load) triple for under 10 % (native instruction counts: −16 % from 4 to
//!   6 bits, −9 % more from 6 to 8). G's table is paid once per VM, so it gets 8 bits.
//! - Points ([`curve`]): Jacobian accumulators plus affine entries, "madd-2004-hmv" mixed
//!   addition (8M + 3S). Those formulas are not complete, so the accumulator at the identity,
//!   P + P (which must double) and P + (−P) (the identity) are separate branches. An
//!   adversary can reach them only with negligible probability, but they are correct and
//!   tested. Table entries are built in Jacobian form, normalised in batches with one
//!   inversion each, checked to be on the curve, and their sum (by the same mixed additions
//!   verification uses) is checked against p256's own scalar multiplication: p256 is the
//!   reference at build time, and a table failing either check is not used.
//! - The checks are those of ecdsa 0.16's `verify_prehashed`: r, s in [1, n-1] (enforced when
//!   the [`Signature`] is parsed), z = bits2field(prehash) reduced mod n, w = s⁻¹,
//!   u1 = z·w, u2 = r·w, R = u1·G + u2·Q, the identity refused, accepted iff x(R) mod n == r.
//!   The scalars stay on p256's `Scalar`, except s⁻¹: p256 0.13's `invert_vartime` (a
//!   bit-at-a-time binary GCD, ~20 µs in V8, a third of the whole verification) is replaced
//!   by safegcd ([`scalar_inverse`], ~1.6 µs), whose answer is checked by s · s⁻¹ == 1 before
//!   use. x(R) mod n == r is tested without inverting Z: X == r·Z², or X == (r + n)·Z² when
//!   r + n < p (see [`x_matches`]).
//!   tests/p256_differential.rs checks agreement with the RustCrypto verifier on random cases.
//! - **Variable time, on purpose.** Every input here is public (key, signature, signed bytes),
//!   so table lookups indexed by scalar digits, skipped zero digits, branches on exceptional
//!   cases and the variable-time inversion of s leak nothing. This code must never be used with a
//!   secret scalar (signing, ECDH).

use std::sync::{Arc, OnceLock};

use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::Signature;
use p256::elliptic_curve::ops::{Invert, Reduce};
use p256::{AffinePoint, FieldBytes, ProjectivePoint, Scalar, U256};

use sha2::{Digest, Sha256};

use crate::crypto::fixed_window::{self, Reservation, TableBudget};
use crate::crypto::p256_field::Fe;
use crate::crypto::weierstrass;

/// Window of G's table: 32 rows of 128 points and one of 1, ~288 KiB, once per VM.
pub const G_WINDOW: u32 = 8;
/// Window of each public key's table: 42 rows of 32 points and one of 16, ~96 KiB.
pub const Q_WINDOW: u32 = 6;
pub use fixed_window::{MAX_WINDOW, MIN_WINDOW};

/// The group order n, big-endian.
const ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// Bits in a P-256 scalar.
const SCALAR_BITS: u32 = 256;

/// A table of P-256 multiples.
pub type FixedBaseTable = weierstrass::FixedBaseTable<Fe>;

/// The table of `point` with `window`-bit signed digits (clamped to
/// [`MIN_WINDOW`]..=[`MAX_WINDOW`]), if it passes its checks: every entry on the curve
/// ([`weierstrass::FixedBaseTable::build`]), and the entries' sum equal to the point p256's own
/// arithmetic gives for the same sum (see [`fixed_window::table_sum_scalar`]). If either check
/// fails there is no table (`None`) and callers verify without one.
pub fn checked_table(point: &AffinePoint, window: u32) -> Option<FixedBaseTable> {
    let table = FixedBaseTable::build(&curve::from_p256(point)?, window, SCALAR_BITS)?;
    let window = table.window();
    let lengths = fixed_window::row_lengths(SCALAR_BITS, window);
    // The entries' sum, by the mixed additions verification uses, against p256's own scalar
    // multiplication (the identity, with negligible probability, on both sides).
    let sum = table.entry_sum();
    let expected =
        ProjectivePoint::from(*point) * fixed_window::table_sum_scalar::<Scalar>(window, lengths);
    let sum_matches = match curve::from_p256(&expected.to_affine()) {
        Some(expected) => sum.to_affine() == Some(expected),
        None => sum.is_identity(),
    };
    sum_matches.then_some(table)
}

#[cfg(test)]
fn row_count(window: u32) -> u32 {
    fixed_window::row_count(SCALAR_BITS, window)
}

/// The scalar as little-endian 64-bit limbs.
fn le_limbs(scalar: &Scalar) -> [u64; 4] {
    fixed_window::le_limbs(&scalar.to_bytes())
}

/// P-256 points on our own field arithmetic ([`p256_field`](crate::crypto::p256_field)):
/// Jacobian points as accumulators, affine points as table entries. p256 0.13 keeps its
/// coordinates private, has no batch normalisation and uses complete formulas on 64-bit
/// fiat-crypto limbs, all slow in wasm; here the formulas are the cheaper non-complete ones,
/// with every exceptional case (identity, P + P, P + (−P)) handled by an explicit branch.
mod curve {
    use crate::crypto::p256_field::Fe;
    use crate::crypto::weierstrass;
    use p256::elliptic_curve::sec1::ToEncodedPoint;

    pub(super) type Affine = weierstrass::Affine<Fe>;
    pub(super) type Jacobian = weierstrass::Jacobian<Fe>;

    /// The curve's b, big-endian (y² = x³ − 3x + b).
    const B: [u8; 32] = [
        0x5a, 0xc6, 0x35, 0xd8, 0xaa, 0x3a, 0x93, 0xe7, 0xb3, 0xeb, 0xbd, 0x55, 0x76, 0x98, 0x86,
        0xbc, 0x65, 0x1d, 0x06, 0xb0, 0xcc, 0x53, 0xb0, 0xf6, 0x3b, 0xce, 0x3c, 0x3e, 0x27, 0xd2,
        0x60, 0x4b,
    ];

    weierstrass::delegate_field!(Fe, B);

    /// `None` for the identity, which has no affine coordinates.
    pub(super) fn from_p256(point: &p256::AffinePoint) -> Option<Affine> {
        let encoded = point.to_encoded_point(false);
        let coordinate = |bytes: Option<&p256::FieldBytes>| -> Option<Fe> {
            Fe::from_be_bytes(&(*bytes?).into())
        };
        Some(Affine {
            x: coordinate(encoded.x())?,
            y: coordinate(encoded.y())?,
        })
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use p256::{AffinePoint, ProjectivePoint, Scalar};

        fn affine(point: &Jacobian) -> Option<Affine> {
            point.to_affine()
        }

        fn multiple(k: u64) -> Affine {
            from_p256(&(ProjectivePoint::GENERATOR * Scalar::from(k)).to_affine()).unwrap()
        }

        #[test]
        fn exceptional_additions() {
            let g_affine = multiple(1);
            let g = Jacobian::from(&g_affine);
            let minus_g = Affine {
                x: g_affine.x,
                y: g_affine.y.neg(),
            };
            let two_g = multiple(2);
            assert!(g_affine.is_on_curve() && minus_g.is_on_curve());
            assert!(!Affine {
                x: g_affine.x,
                y: g_affine.x
            }
            .is_on_curve());
            // Full additions.
            assert_eq!(affine(&g.add(&g)), Some(two_g));
            assert_eq!(affine(&g.double()), Some(two_g));
            assert!(g.add(&Jacobian::from(&minus_g)).is_identity());
            assert_eq!(affine(&Jacobian::IDENTITY.add(&g)), Some(g_affine));
            assert_eq!(affine(&g.add(&Jacobian::IDENTITY)), Some(g_affine));
            assert_eq!(affine(&Jacobian::IDENTITY), None);
            assert!(Jacobian::IDENTITY.double().is_identity());
            // Mixed additions, from an accumulator whose z is not 1: 3G = 2G + G.
            let three_g = g.double().add_affine(&g_affine);
            assert_ne!(three_g.z, Fe::ONE);
            assert_eq!(affine(&three_g), Some(multiple(3)));
            assert_eq!(affine(&three_g.add_affine(&g_affine)), Some(multiple(4)));
            assert_eq!(affine(&three_g.sub_affine(&g_affine)), Some(two_g));
            // Accumulator at infinity; P + P (must double); P + (−P) (identity).
            assert_eq!(
                affine(&Jacobian::IDENTITY.add_affine(&g_affine)),
                Some(g_affine)
            );
            assert_eq!(
                affine(&Jacobian::IDENTITY.sub_affine(&g_affine)),
                Some(minus_g)
            );
            let three = multiple(3);
            assert_eq!(affine(&three_g.add_affine(&three)), Some(multiple(6)));
            assert!(three_g.sub_affine(&three).is_identity());
            assert!(three_g
                .add_affine(&Affine {
                    x: three.x,
                    y: three.y.neg()
                })
                .is_identity());
            assert_eq!(affine(&g.add_affine(&g_affine)), Some(two_g));
            assert!(g.sub_affine(&g_affine).is_identity());
            // And on after the identity.
            let back = three_g.sub_affine(&three).add_affine(&two_g);
            assert_eq!(affine(&back), Some(two_g));
            assert_eq!(affine(&three_g.add(&three_g)), affine(&three_g.double()));
            // has_x: X/Z² compared without inversion.
            assert!(three_g.has_x(&three.x));
            assert!(!three_g.has_x(&two_g.x));
            assert!(!Jacobian::IDENTITY.has_x(&Fe::ZERO));
        }

        #[test]
        fn mixed_additions_match_p256() {
            // A chain of additions and subtractions of multiples of G against p256's sums.
            let mut ours = Jacobian::IDENTITY;
            let mut theirs = ProjectivePoint::IDENTITY;
            let point = (ProjectivePoint::GENERATOR * Scalar::from(0x1234_5678u64)).to_affine();
            let mut step = ProjectivePoint::from(point);
            for i in 0..300u64 {
                let entry = from_p256(&step.to_affine()).unwrap();
                if i % 3 == 2 {
                    ours = ours.sub_affine(&entry);
                    theirs -= step;
                } else {
                    ours = ours.add_affine(&entry);
                    theirs += step;
                }
                step = step + step + ProjectivePoint::from(point) * Scalar::from(i);
                let expected = from_p256(&theirs.to_affine());
                assert_eq!(affine(&ours), expected, "step {i}");
            }
            assert_eq!(
                from_p256(&AffinePoint::IDENTITY),
                None,
                "the identity has no affine form"
            );
        }
    }
}

/// s⁻¹ mod n for verification, by Bernstein and Yang's safegcd in its variable-time form,
/// ported from libsecp256k1's `secp256k1_modinv32_var` (`src/modinv32_impl.h`; its
/// `doc/safegcd_implementation.md` explains every step): batches of 30 "divsteps" on the low
/// bits of f and g, each batch applied to the full numbers as a 2×2 matrix on 30-bit signed
/// limbs, with the matching update of the Bézout coefficient d mod n. p256 0.13's
/// `invert_vartime` is a bit-at-a-time binary GCD on constant-time 256-bit operations, ~20 µs
/// in V8, a third of a verification; this is a few µs. The caller checks s · s⁻¹ = 1 with p256's
/// own multiplication, so a wrong answer here could only cost a fallback, never a wrong result.
mod scalar_inverse {
    use p256::elliptic_curve::ff::PrimeField;
    use p256::Scalar;

    const M30: i32 = (u32::MAX >> 2) as i32;
    /// n in signed 30-bit limbs (all non-negative), little-endian.
    const N: [i32; 9] = [
        0x3c63_2551,
        0x0ee7_2b0b,
        0x3179_e84f,
        0x39be_ab69,
        0x3fff_ffbc,
        0x3fff_ffff,
        0x0fff,
        0x3fff_c000,
        0xffff,
    ];
    /// n⁻¹ mod 2^30.
    const N_INV30: u32 = 0x11ff_43b1;

    /// The transition matrix of 30 divsteps, scaled by 2^30.
    struct Matrix {
        u: i32,
        v: i32,
        q: i32,
        r: i32,
    }

    /// −f⁻¹ mod 256 for odd f (libsecp256k1 looks it up in a table): x = 3f ⊕ 2 is f⁻¹ mod
    /// 2^5, and one Newton step doubles the correct bits.
    fn neg_inverse_mod_256(f: u32) -> u32 {
        let x = f.wrapping_mul(3) ^ 2;
        let x = x.wrapping_mul(2u32.wrapping_sub(f.wrapping_mul(x)));
        x.wrapping_neg() & 0xff
    }

    /// `secp256k1_modinv32_divsteps_30_var`: 30 divsteps on the low bits of f (odd) and g,
    /// starting from `eta` (−delta); returns the new eta and the matrix.
    fn divsteps_30(mut eta: i32, f0: u32, g0: u32) -> (i32, Matrix) {
        let (mut u, mut v, mut q, mut r) = (1u32, 0u32, 0u32, 1u32);
        let (mut f, mut g) = (f0, g0);
        let mut i: u32 = 30;
        loop {
            // Skip the zero bits of g (at most i of them).
            let zeros = (g | (u32::MAX << i)).trailing_zeros();
            g >>= zeros;
            u <<= zeros;
            v <<= zeros;
            eta -= zeros as i32;
            i -= zeros;
            if i == 0 {
                break;
            }
            // f and g are both odd now.
            if eta < 0 {
                eta = -eta;
                (f, g) = (g, f.wrapping_neg());
                (u, q) = (q, u.wrapping_neg());
                (v, r) = (r, v.wrapping_neg());
            }
            // Cancel up to min(eta + 1, i, 8) low bits of g at once: g += w·f.
            let limit = (eta + 1).min(i as i32) as u32;
            let mask = (u32::MAX >> (32 - limit)) & 0xff;
            let w = g.wrapping_mul(neg_inverse_mod_256(f)) & mask;
            g = g.wrapping_add(f.wrapping_mul(w));
            q = q.wrapping_add(u.wrapping_mul(w));
            r = r.wrapping_add(v.wrapping_mul(w));
        }
        let matrix = Matrix {
            u: u as i32,
            v: v as i32,
            q: q as i32,
            r: r as i32,
        };
        (eta, matrix)
    }

    /// `secp256k1_modinv32_update_de_30`: (d, e) ← matrix · (d, e) / 2^30 mod n, keeping both
    /// in (−2n, n).
    fn update_de(d: &mut [i32; 9], e: &mut [i32; 9], t: &Matrix) {
        let (dv, ev) = (*d, *e);
        let (u, v, q, r) = (
            i64::from(t.u),
            i64::from(t.v),
            i64::from(t.q),
            i64::from(t.r),
        );
        let sd = dv[8] >> 31;
        let se = ev[8] >> 31;
        let mut md = (t.u & sd).wrapping_add(t.v & se);
        let mut me = (t.q & sd).wrapping_add(t.r & se);
        let mut cd = u * i64::from(dv[0]) + v * i64::from(ev[0]);
        let mut ce = q * i64::from(dv[0]) + r * i64::from(ev[0]);
        // Choose md, me so that the low 30 bits of cd + n·md and ce + n·me are zero.
        md = md.wrapping_sub(
            (N_INV30.wrapping_mul(cd as u32).wrapping_add(md as u32) & M30 as u32) as i32,
        );
        me = me.wrapping_sub(
            (N_INV30.wrapping_mul(ce as u32).wrapping_add(me as u32) & M30 as u32) as i32,
        );
        cd += i64::from(N[0]) * i64::from(md);
        ce += i64::from(N[0]) * i64::from(me);
        cd >>= 30;
        ce >>= 30;
        let higher = dv.iter().zip(&ev).zip(&N).skip(1);
        for ((d_out, e_out), ((di, ei), ni)) in d.iter_mut().zip(e.iter_mut()).zip(higher) {
            let (di, ei, ni) = (i64::from(*di), i64::from(*ei), i64::from(*ni));
            cd += u * di + v * ei + ni * i64::from(md);
            ce += q * di + r * ei + ni * i64::from(me);
            *d_out = cd as i32 & M30;
            *e_out = ce as i32 & M30;
            cd >>= 30;
            ce >>= 30;
        }
        d[8] = cd as i32;
        e[8] = ce as i32;
    }

    /// `secp256k1_modinv32_update_fg_30_var`: (f, g) ← matrix · (f, g) / 2^30 on the low
    /// `len` limbs (the rest are sign extension).
    fn update_fg(len: usize, f: &mut [i32; 9], g: &mut [i32; 9], t: &Matrix) {
        let (fv, gv) = (*f, *g);
        let (u, v, q, r) = (
            i64::from(t.u),
            i64::from(t.v),
            i64::from(t.q),
            i64::from(t.r),
        );
        let mut cf = u * i64::from(fv[0]) + v * i64::from(gv[0]);
        let mut cg = q * i64::from(fv[0]) + r * i64::from(gv[0]);
        // The matrix makes the low 30 bits of both zero.
        cf >>= 30;
        cg >>= 30;
        let higher = fv.iter().zip(&gv).skip(1).take(len.saturating_sub(1));
        for ((f_out, g_out), (fi, gi)) in f.iter_mut().zip(g.iter_mut()).zip(higher) {
            let (fi, gi) = (i64::from(*fi), i64::from(*gi));
            cf += u * fi + v * gi;
            cg += q * fi + r * gi;
            *f_out = cf as i32 & M30;
            *g_out = cg as i32 & M30;
            cf >>= 30;
            cg >>= 30;
        }
        if let (Some(f_top), Some(g_top)) = (f.get_mut(len - 1), g.get_mut(len - 1)) {
            *f_top = cf as i32;
            *g_top = cg as i32;
        }
    }

    /// x⁻¹ mod n; `None` for 0 (and, defensively, if the result fails the caller's check).
    pub(super) fn invert(x: &Scalar) -> Option<Scalar> {
        let bytes: [u8; 32] = x.to_repr().into();
        let mut g = [0i32; 9];
        for (i, byte) in bytes.iter().rev().enumerate() {
            let bit = i * 8;
            let value = u64::from(*byte) << (bit % 30);
            if let Some(limb) = g.get_mut(bit / 30) {
                *limb |= (value & M30 as u64) as i32;
            }
            if let Some(limb) = g.get_mut(bit / 30 + 1) {
                *limb |= (value >> 30) as i32;
            }
        }
        if g == [0; 9] {
            return None;
        }
        let mut d = [0i32; 9];
        let mut e = [0i32; 9];
        e[0] = 1;
        let mut f = N;
        let mut len = 9usize;
        let mut eta = -1i32;
        // Each batch shrinks f and g by ~30 bits on average; a bound keeps a bug from looping.
        for _ in 0..64 {
            let (f0, g0) = (f[0] as u32, g[0] as u32);
            let (next_eta, t) = divsteps_30(eta, f0, g0);
            eta = next_eta;
            update_de(&mut d, &mut e, &t);
            update_fg(len, &mut f, &mut g, &t);
            if g.iter().take(len).all(|limb| *limb == 0) {
                // f = ±1 = gcd, and d·x ≡ f (mod n).
                let sign = f.get(len - 1).copied().unwrap_or(0);
                return normalize(&d, sign < 0);
            }
            // Drop a limb when both top limbs are pure sign (0 or −1).
            let (fn_, gn) = (
                f.get(len - 1).copied().unwrap_or(0),
                g.get(len - 1).copied().unwrap_or(0),
            );
            if len >= 2 && (fn_ ^ (fn_ >> 31)) == 0 && (gn ^ (gn >> 31)) == 0 {
                if let Some(limb) = f.get_mut(len - 2) {
                    *limb |= ((fn_ as u32) << 30) as i32;
                }
                if let Some(limb) = g.get_mut(len - 2) {
                    *limb |= ((gn as u32) << 30) as i32;
                }
                len -= 1;
            }
        }
        None
    }

    /// d (signed 30-bit limbs, in (−2n, n)) negated if `negate`, reduced to [0, n).
    fn normalize(d: &[i32; 9], negate: bool) -> Option<Scalar> {
        // As one signed number: limbs to [0, 2^30) with the sign in the top one.
        let mut limbs = [0i64; 9];
        let mut carry = 0i64;
        for (out, limb) in limbs.iter_mut().zip(d) {
            let value = i64::from(*limb) * if negate { -1 } else { 1 } + carry;
            *out = value & i64::from(M30);
            carry = value >> 30;
        }
        limbs[8] += carry << 30;
        // Now in (−2n, 2n): add or subtract n until in [0, n).
        for _ in 0..3 {
            let negative = limbs[8] < 0;
            let at_least_n = !negative && !less_than_n(&limbs);
            if !negative && !at_least_n {
                break;
            }
            let mut carry = 0i64;
            for (limb, n) in limbs.iter_mut().zip(&N) {
                let value = *limb
                    + if negative {
                        i64::from(*n)
                    } else {
                        -i64::from(*n)
                    }
                    + carry;
                *limb = value & i64::from(M30);
                carry = value >> 30;
            }
            limbs[8] += carry << 30;
        }
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().rev().enumerate() {
            let bit = i * 8;
            let low = limbs.get(bit / 30).map_or(0, |l| *l >> (bit % 30));
            let high = limbs.get(bit / 30 + 1).map_or(0, |l| *l << (30 - bit % 30));
            *byte = (low | high) as u8;
        }
        Option::from(Scalar::from_repr(bytes.into()))
    }

    /// Whether the carried, non-negative `limbs` are below n.
    fn less_than_n(limbs: &[i64; 9]) -> bool {
        for (limb, n) in limbs.iter().zip(&N).rev() {
            if *limb != i64::from(*n) {
                return *limb < i64::from(*n);
            }
        }
        false
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::test_rng::TestRng;
        use p256::elliptic_curve::ops::{Invert, Reduce};
        use p256::U256;

        #[test]
        fn neg_inverses() {
            for f in (1u32..512).step_by(2) {
                assert_eq!(f.wrapping_mul(neg_inverse_mod_256(f)) & 0xff, 0xff, "{f}");
            }
        }

        #[test]
        fn matches_p256_inversion() {
            let mut rng = TestRng(0x1234_5678_9abc_def0);
            let mut scalars = vec![
                Scalar::ONE,
                -Scalar::ONE,
                Scalar::from(2u64),
                -Scalar::from(2u64),
            ];
            for k in [1u64, 2, 3, 0xffff_ffff, 1 << 63] {
                scalars.push(Scalar::from(k));
                scalars.push(-Scalar::from(k));
            }
            for _ in 0..20_000 {
                let mut bytes = [0u8; 32];
                rng.fill(&mut bytes);
                match rng.next_u64() % 8 {
                    0 => bytes[..20].fill(0),
                    1 => bytes[..16].fill(0xff),
                    2 => bytes[8..].fill(0),
                    _ => {}
                }
                scalars.push(<Scalar as Reduce<U256>>::reduce_bytes(&bytes.into()));
            }
            for x in scalars {
                if x == Scalar::ZERO {
                    continue;
                }
                let expected = Option::<Scalar>::from(Invert::invert_vartime(&x)).unwrap();
                assert_eq!(invert(&x), Some(expected), "{:?}", x.to_repr());
            }
            assert_eq!(invert(&Scalar::ZERO), None);
        }
    }
}

/// G's table, built on first use and kept for the life of the VM (`None` only if building
/// failed its checks, which does not happen: see [`FixedBaseTable::new`]).
pub fn generator_table() -> Option<&'static FixedBaseTable> {
    static TABLE: OnceLock<Option<FixedBaseTable>> = OnceLock::new();
    TABLE
        .get_or_init(|| checked_table(&AffinePoint::GENERATOR, G_WINDOW))
        .as_ref()
}

/// Most heap bytes of key tables (G's excluded) alive at once in this VM: 21 keys at
/// [`Q_WINDOW`] (~96 KiB each). A key set may hold hundreds of P-256 keys within its size
/// limit; keys past the budget verify with p256's own `verify_prehash` (~1 ms in Envoy's V8,
/// same answers) rather than cost memory and load time. An old
/// and a new key set are alive together during a swap, so sets of up to ~10 P-256 keys always
/// get tables; with G's table the worst case stays under ~2.5 MiB per VM.
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

/// A P-256 public key with its precomputed table, ready to verify ES256 signatures.
#[derive(Clone)]
pub struct P256VerifyKey {
    key: p256::ecdsa::VerifyingKey,
    /// `None` past [`KEY_TABLE_BUDGET`] or if a table failed its checks; verification then
    /// uses p256's own `verify_prehash` (slower, same answers).
    table: Option<Arc<KeyTable>>,
}

impl P256VerifyKey {
    /// Precomputes the table of `key` with the default [`Q_WINDOW`]. Also builds G's table if
    /// this VM has none yet, so that cost lands on key loading rather than on a request.
    pub fn new(key: &p256::ecdsa::VerifyingKey) -> P256VerifyKey {
        P256VerifyKey::with_window(key, Q_WINDOW)
    }

    /// As [`P256VerifyKey::new`], with a chosen window for the key's table (for measurement).
    pub fn with_window(key: &p256::ecdsa::VerifyingKey, window: u32) -> P256VerifyKey {
        // A table that fails its checks gives its reservation back as it drops.
        let table = generator_table()
            .and_then(|_| BUDGET.reserve(FixedBaseTable::size_for(window, SCALAR_BITS)))
            .and_then(|reserved| {
                checked_table(key.as_affine(), window).map(|table| {
                    Arc::new(KeyTable {
                        table,
                        _reserved: reserved,
                    })
                })
            });
        P256VerifyKey { key: *key, table }
    }

    /// The key's own table, if built (G's is shared: [`generator_table`]).
    pub fn table(&self) -> Option<&FixedBaseTable> {
        self.table.as_deref().map(|t| &t.table)
    }

    /// The public key.
    pub fn verifying_key(&self) -> &p256::ecdsa::VerifyingKey {
        &self.key
    }

    /// Verifies an ES256 signature over `message` (hashed with SHA-256).
    pub fn verify(&self, message: &[u8], signature: &Signature) -> bool {
        self.verify_prehash(&Sha256::digest(message), signature)
    }

    /// Verifies `signature` over a message digest, exactly as ecdsa 0.16's `verify_prehash`
    /// does for P-256 (including its handling of digests of other lengths than 32 bytes).
    pub fn verify_prehash(&self, prehash: &[u8], signature: &Signature) -> bool {
        let (Some(g_table), Some(q_table)) = (generator_table(), self.table()) else {
            return self.key.verify_prehash(prehash, signature).is_ok();
        };
        let Some(field) = bits2field(prehash) else {
            return false;
        };
        let z = <Scalar as Reduce<U256>>::reduce_bytes(&field);
        let (r, s) = signature.split_scalars();
        // s is non-zero (the signature type guarantees it), so the inverse exists. The fast
        // inversion is checked by one multiplication; p256's is the fallback.
        let s_inv = match scalar_inverse::invert(&s) {
            Some(inverse) if inverse * *s == Scalar::ONE => inverse,
            _ => match Option::<Scalar>::from(Invert::invert_vartime(&*s)) {
                Some(inverse) => inverse,
                None => return false,
            },
        };
        let u1 = z * s_inv;
        let u2 = *r * s_inv;
        let sum = g_table.add_multiple(&le_limbs(&u1), curve::Jacobian::IDENTITY);
        let sum = q_table.add_multiple(&le_limbs(&u2), sum);
        x_matches(&sum, &r.to_bytes().into())
    }
}

/// Whether x(R) mod n == r for `r` in [1, n − 1] (big-endian), false for the identity, without
/// a field inversion. x(R) is below p < 2n, so x(R) mod n is x(R) or x(R) − n: either
/// x(R) == r, or x(R) == r + n when that is below p.
fn x_matches(sum: &curve::Jacobian, r: &[u8; 32]) -> bool {
    let Some(r_fe) = Fe::from_be_bytes(r) else {
        return false;
    };
    if sum.has_x(&r_fe) {
        return true;
    }
    // r + n, if it does not overflow 256 bits and is below p (from_be_bytes checks).
    let mut r_plus_n = [0u8; 32];
    let mut carry = 0u16;
    for ((out, a), b) in r_plus_n
        .iter_mut()
        .rev()
        .zip(r.iter().rev())
        .zip(ORDER.iter().rev())
    {
        let total = u16::from(*a) + u16::from(*b) + carry;
        *out = total as u8;
        carry = total >> 8;
    }
    carry == 0 && Fe::from_be_bytes(&r_plus_n).is_some_and(|x| sum.has_x(&x))
}

/// ecdsa 0.16's `bits2field` for the 32-byte field.
fn bits2field(prehash: &[u8]) -> Option<FieldBytes> {
    fixed_window::bits2field::<32>(prehash).map(FieldBytes::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(bytes: [u8; 32]) -> Scalar {
        <Scalar as Reduce<U256>>::reduce_bytes(&bytes.into())
    }

    #[test]
    fn table_multiplication_matches_double_and_add() {
        let point = (ProjectivePoint::GENERATOR * scalar([7; 32])).to_affine();
        let mut edge = [0xffu8; 32];
        edge[0] = 0x7f;
        let scalars = [
            Scalar::ZERO,
            Scalar::ONE,
            -Scalar::ONE,
            scalar([0x88; 32]),
            scalar([0x80; 32]),
            scalar(edge),
            scalar([0x5a; 32]),
        ];
        for window in MIN_WINDOW..=MAX_WINDOW {
            let table = checked_table(&point, window).unwrap();
            for k in &scalars {
                let got = table.add_multiple(&le_limbs(k), curve::Jacobian::IDENTITY);
                let expected = (ProjectivePoint::from(point) * k).to_affine();
                assert_eq!(
                    got.to_affine(),
                    curve::from_p256(&expected),
                    "window {window}"
                );
            }
        }
    }

    #[test]
    fn table_sizes() {
        assert_eq!(row_count(4), 65);
        assert_eq!(row_count(8), 33);
        let g = AffinePoint::GENERATOR;
        assert_eq!(checked_table(&g, 4).unwrap().len(), 64 * 8 + 1);
        assert_eq!(generator_table().unwrap().len(), 32 * 128 + 1);
        assert_eq!(checked_table(&g, 5).unwrap().len(), 51 * 16 + 2);
    }

    #[test]
    fn key_tables_are_counted_while_alive() {
        let key = p256::ecdsa::SigningKey::from_slice(&[3; 32]).unwrap();
        let verify_key = P256VerifyKey::new(key.verifying_key());
        assert!(verify_key.table().is_some());
        let copy = verify_key.clone();
        // Other tests build keys concurrently: only a lower bound holds.
        assert!(key_table_bytes() >= FixedBaseTable::size_for(Q_WINDOW, SCALAR_BITS));
        drop(verify_key);
        assert!(copy.table().is_some());
        drop(copy);
    }

    /// µs per verification and table build times, in whatever runtime runs the test (natively,
    /// or wasm under `node --no-liftoff`, which tracks Envoy's V8 on 32-bit-limb code):
    /// `cargo test --release --lib -- --ignored --nocapture verify_timing`.
    #[test]
    #[ignore = "timing: run with --release --ignored --nocapture"]
    fn verify_timing() {
        use p256::ecdsa::signature::hazmat::PrehashSigner;
        use std::time::Instant;
        let started = Instant::now();
        generator_table().unwrap();
        let g_build = started.elapsed();
        let sk = p256::ecdsa::SigningKey::from_slice(&[0x42; 32]).unwrap();
        let started = Instant::now();
        let key = P256VerifyKey::new(sk.verifying_key());
        let q_build = started.elapsed();
        let z = [0x17u8; 32];
        let sig: Signature = sk.sign_prehash(&z).unwrap();
        let rounds = 500;
        let mut medians = Vec::new();
        for _ in 0..7 {
            let started = Instant::now();
            for _ in 0..rounds {
                assert!(key.verify_prehash(std::hint::black_box(&z), &sig));
            }
            medians.push(started.elapsed().as_secs_f64() * 1e6 / f64::from(rounds));
        }
        medians.sort_by(f64::total_cmp);
        // Where the time goes: the scalar inversion and the two table multiplications.
        let (r, s) = sig.split_scalars();
        let started = Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(scalar_inverse::invert(std::hint::black_box(&s)));
        }
        let invert_us = started.elapsed().as_secs_f64() * 1e6 / f64::from(rounds);
        let (g_table, q_table) = (generator_table().unwrap(), key.table().unwrap());
        let started = Instant::now();
        for _ in 0..rounds {
            let sum = g_table.add_multiple(
                &le_limbs(std::hint::black_box(&s)),
                curve::Jacobian::IDENTITY,
            );
            std::hint::black_box(q_table.add_multiple(&le_limbs(&r), sum));
        }
        let points_us = started.elapsed().as_secs_f64() * 1e6 / f64::from(rounds);
        println!("s⁻¹ {invert_us:.1} µs, u1·G + u2·Q {points_us:.1} µs");
        println!(
            "ES256 verify_prehash: median {:.1} µs (min {:.1}); G table {:.1} ms, {} B; \
             key table {:.2} ms, {} B",
            medians[3],
            medians[0],
            g_build.as_secs_f64() * 1e3,
            generator_table().unwrap().heap_bytes(),
            q_build.as_secs_f64() * 1e3,
            key.table().unwrap().heap_bytes()
        );
    }

    /// Big-endian 32-byte `a + b` (wrapping) and `a - b` (wrapping).
    fn be_add(a: &[u8; 32], b: &[u8; 32], subtract: bool) -> [u8; 32] {
        let mut out = [0u8; 32];
        let mut carry = 0i16;
        for i in (0..32).rev() {
            let t = i16::from(a[i])
                + if subtract {
                    -i16::from(b[i])
                } else {
                    i16::from(b[i])
                }
                + carry;
            out[i] = t.rem_euclid(256) as u8;
            carry = t.div_euclid(256);
        }
        out
    }

    #[test]
    fn x_matches_covers_r_plus_n() {
        // x(R) = X/Z² is compared without inverting Z, against r and (when below p) r + n.
        // Only X and Z matter, so synthetic Jacobian triples with a chosen x suffice.
        let p: [u8; 32] =
            hex_bytes("ffffffff00000001000000000000000000000000ffffffffffffffffffffffff");
        let p_minus_n = be_add(&p, &ORDER, true);
        assert_eq!(p_minus_n[..16], [0; 16]);
        let one = {
            let mut one = [0u8; 32];
            one[31] = 1;
            one
        };
        let z = Fe::from_be_bytes(&[0x3c; 32]).unwrap();
        let with_x = |x: &[u8; 32]| -> curve::Jacobian {
            let x = Fe::from_be_bytes(x).unwrap();
            curve::Jacobian {
                x: x.mul(&z.square()),
                y: Fe::ONE,
                z,
            }
        };
        let below_p = |x: &[u8; 32]| Fe::from_be_bytes(x).is_some();
        let candidates = [
            one,
            [0x11; 32].map(|b| b & 0x0f),
            be_add(&p_minus_n, &one, true),
            p_minus_n,
            be_add(&p_minus_n, &one, false),
            be_add(&ORDER, &one, true),
        ];
        for r in candidates {
            let r_plus_n = be_add(&r, &ORDER, false);
            assert!(x_matches(&with_x(&r), &r));
            assert!(!x_matches(&with_x(&be_add(&r, &one, false)), &r));
            assert!(!x_matches(&curve::Jacobian::IDENTITY, &r));
            // Equal-length big-endian arrays compare as numbers.
            if r < p_minus_n {
                // x(R) in [n, p): x(R) mod n = x(R) − n.
                assert!(below_p(&r_plus_n));
                assert!(x_matches(&with_x(&r_plus_n), &r));
                let next = be_add(&r_plus_n, &one, false);
                if below_p(&next) {
                    assert!(!x_matches(&with_x(&next), &r));
                }
            } else {
                // r + n ≥ p is no x coordinate; neither is it reduced mod p or mod 2^256.
                let reduced = be_add(&r_plus_n, &p, true);
                for x in [r_plus_n, reduced] {
                    if below_p(&x) && x != r {
                        assert!(!x_matches(&with_x(&x), &r));
                    }
                }
            }
        }
    }

    fn hex_bytes(hex: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    #[test]
    fn bits2field_matches_ecdsa() {
        assert!(bits2field(&[1; 15]).is_none());
        let short = bits2field(&[1; 16]).unwrap();
        assert_eq!(&short[..16], &[0; 16]);
        assert_eq!(&short[16..], &[1; 16]);
        let mut long = [2u8; 48];
        long[0] = 9;
        assert_eq!(&bits2field(&long).unwrap()[..], &long[..32]);
    }
}
