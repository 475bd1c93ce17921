//! x⁻¹ mod m for an odd modulus m below 2^384, by Bernstein and Yang's safegcd in its
//! variable-time form, ported from libsecp256k1's `secp256k1_modinv32_var`
//! (`src/modinv32_impl.h`; its `doc/safegcd_implementation.md` explains every step): batches
//! of 30 "divsteps" on the low bits of f and g, each batch applied to the full numbers as a
//! 2×2 matrix on 30-bit signed limbs, with the matching update of the Bézout coefficient
//! d mod m. libsecp256k1 fixes m to secp256k1's order in 9 limbs; here m is any
//! [`Modulus`](crate::crypto::p384_field::Modulus) in [`LIMBS`] limbs, its constants
//! ([`Constants`]) computed at compile time from its bytes.
//!
//! It replaced two slower inversions (issue #13): p256 0.13's `invert_vartime` (a
//! bit-at-a-time binary GCD on constant-time 256-bit operations, ~20 µs in V8) and the
//! bounded binary extended Euclid on 64-bit words that P-384 used (~22 µs in V8 for s⁻¹ of
//! ES384, an eighth of a verification). [`Elem::invert`](crate::crypto::p384_field::Elem::invert)
//! checks every answer by one multiplication, so a wrong answer could only reject.
//!
//! **Variable time, on purpose**: the number of divsteps depends on the input. Only public
//! values (signature scalars, point coordinates of public keys) are ever inverted here.

/// Limbs of 30 bits: 390 bits, room for a 384-bit modulus and the sign.
pub const LIMBS: usize = 13;
/// Bytes of the big-endian encodings taken and returned.
const BYTES: usize = 48;
const M30: i32 = (u32::MAX >> 2) as i32;

/// A modulus in the form safegcd needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Constants {
    /// m in signed 30-bit limbs (all non-negative), little-endian.
    n: [i32; LIMBS],
    /// m⁻¹ mod 2^30.
    n_inv30: u32,
    /// Limbs that hold every number the inversion handles (d, e in (−2m, m), f and g below m,
    /// with their sign): ⌈(bits of m + 2) / 30⌉, 9 for P-256's order, 13 for P-384's. The
    /// limbs above are zero and left alone.
    len: usize,
}

impl Constants {
    /// The constants of the odd modulus with these big-endian bytes (at compile time).
    #[allow(clippy::indexing_slicing)] // i < BYTES (const fn: no `get`)
    pub const fn new(be: &[u8; BYTES]) -> Constants {
        let n = to_limbs(be);
        // Newton's iteration for m⁻¹ mod 2^30: x = m is right to 3 bits for odd m, and each
        // step doubles the correct bits (3, 6, 12, 24, 48).
        let m0 = n[0] as u64;
        let mut x = m0;
        let mut i = 0;
        while i < 4 {
            x = x.wrapping_mul(2u64.wrapping_sub(m0.wrapping_mul(x)));
            i += 1;
        }
        let mut bits = 8 * BYTES;
        let mut i = 0;
        while i < BYTES && be[i] == 0 {
            bits -= 8;
            i += 1;
        }
        if i < BYTES {
            bits -= be[i].leading_zeros() as usize;
        }
        let len = (bits + 2).div_ceil(30);
        Constants {
            n,
            n_inv30: (x & M30 as u64) as u32,
            len: if len < LIMBS { len } else { LIMBS },
        }
    }
}

/// A big-endian number as 30-bit limbs, little-endian.
#[allow(clippy::indexing_slicing)] // i < BYTES and bit / 30 <= 47 · 8 / 30 < LIMBS (const fn)
const fn to_limbs(be: &[u8; BYTES]) -> [i32; LIMBS] {
    let mut limbs = [0i32; LIMBS];
    let mut i = 0;
    while i < BYTES {
        let bit = i * 8;
        let value = (be[BYTES - 1 - i] as u64) << (bit % 30);
        limbs[bit / 30] |= (value & M30 as u64) as i32;
        if bit / 30 + 1 < LIMBS {
            limbs[bit / 30 + 1] |= (value >> 30) as i32;
        }
        i += 1;
    }
    limbs
}

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

/// `secp256k1_modinv32_update_de_30`: (d, e) ← matrix · (d, e) / 2^30 mod m, keeping both
/// in (−2m, m), on the low `m.len` limbs (the top one signed).
fn update_de(d: &mut [i32; LIMBS], e: &mut [i32; LIMBS], t: &Matrix, m: &Constants) {
    let (dv, ev) = (*d, *e);
    let top = m.len - 1;
    let (u, v, q, r) = (
        i64::from(t.u),
        i64::from(t.v),
        i64::from(t.q),
        i64::from(t.r),
    );
    let sd = dv.get(top).copied().unwrap_or(0) >> 31;
    let se = ev.get(top).copied().unwrap_or(0) >> 31;
    let mut md = (t.u & sd).wrapping_add(t.v & se);
    let mut me = (t.q & sd).wrapping_add(t.r & se);
    let mut cd = u * i64::from(dv[0]) + v * i64::from(ev[0]);
    let mut ce = q * i64::from(dv[0]) + r * i64::from(ev[0]);
    // Choose md, me so that the low 30 bits of cd + m·md and ce + m·me are zero.
    md = md.wrapping_sub(
        (m.n_inv30.wrapping_mul(cd as u32).wrapping_add(md as u32) & M30 as u32) as i32,
    );
    me = me.wrapping_sub(
        (m.n_inv30.wrapping_mul(ce as u32).wrapping_add(me as u32) & M30 as u32) as i32,
    );
    cd += i64::from(m.n[0]) * i64::from(md);
    ce += i64::from(m.n[0]) * i64::from(me);
    cd >>= 30;
    ce >>= 30;
    let higher = dv.iter().zip(&ev).zip(&m.n).skip(1).take(top);
    for ((d_out, e_out), ((di, ei), ni)) in d.iter_mut().zip(e.iter_mut()).zip(higher) {
        let (di, ei, ni) = (i64::from(*di), i64::from(*ei), i64::from(*ni));
        cd += u * di + v * ei + ni * i64::from(md);
        ce += q * di + r * ei + ni * i64::from(me);
        *d_out = cd as i32 & M30;
        *e_out = ce as i32 & M30;
        cd >>= 30;
        ce >>= 30;
    }
    if let (Some(d_top), Some(e_top)) = (d.get_mut(top), e.get_mut(top)) {
        *d_top = cd as i32;
        *e_top = ce as i32;
    }
}

/// `secp256k1_modinv32_update_fg_30_var`: (f, g) ← matrix · (f, g) / 2^30 on the low
/// `len` limbs (the rest are sign extension).
fn update_fg(len: usize, f: &mut [i32; LIMBS], g: &mut [i32; LIMBS], t: &Matrix) {
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

/// x⁻¹ mod m for x (big-endian) in [1, m − 1], m prime; `None` for 0 or when no inverse was
/// found within the bound (the caller checks the result anyway).
pub fn invert(x: &[u8; BYTES], m: &Constants) -> Option<[u8; BYTES]> {
    let mut g = to_limbs(x);
    if g == [0; LIMBS] {
        return None;
    }
    let mut d = [0i32; LIMBS];
    let mut e = [0i32; LIMBS];
    e[0] = 1;
    let mut f = m.n;
    // f and g start below m: the limbs above m.len are sign extension.
    let mut len = m.len;
    let mut eta = -1i32;
    // Each batch shrinks f and g by ~30 bits on average (at most ~1,111 divsteps for 384
    // bits, libsecp256k1's bound); a bound keeps a bug from looping.
    for _ in 0..80 {
        let (f0, g0) = (f[0] as u32, g[0] as u32);
        let (next_eta, t) = divsteps_30(eta, f0, g0);
        eta = next_eta;
        update_de(&mut d, &mut e, &t, m);
        update_fg(len, &mut f, &mut g, &t);
        if g.iter().take(len).all(|limb| *limb == 0) {
            // f = ±1 = gcd, and d·x ≡ f (mod m).
            let sign = f.get(len - 1).copied().unwrap_or(0);
            return normalize(&d, sign < 0, m);
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

/// d (signed 30-bit limbs, in (−2m, m)) negated if `negate`, reduced to [0, m), big-endian.
fn normalize(d: &[i32; LIMBS], negate: bool, m: &Constants) -> Option<[u8; BYTES]> {
    // As one signed number: limbs to [0, 2^30) with the sign in the top one.
    let mut limbs = [0i64; LIMBS];
    let mut carry = 0i64;
    // (d's limbs above m.len are zero: the carry runs through them.)
    for (out, limb) in limbs.iter_mut().zip(d) {
        let value = i64::from(*limb) * if negate { -1 } else { 1 } + carry;
        *out = value & i64::from(M30);
        carry = value >> 30;
    }
    limbs[LIMBS - 1] += carry << 30;
    // Now in (−2m, 2m): add or subtract m until in [0, m).
    for _ in 0..3 {
        let negative = limbs[LIMBS - 1] < 0;
        let at_least_m = !negative && !less_than(&limbs, &m.n);
        if !negative && !at_least_m {
            break;
        }
        let mut carry = 0i64;
        for (limb, n) in limbs.iter_mut().zip(&m.n) {
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
        limbs[LIMBS - 1] += carry << 30;
    }
    if limbs[LIMBS - 1] < 0 || !less_than(&limbs, &m.n) {
        return None;
    }
    let mut bytes = [0u8; BYTES];
    for (i, byte) in bytes.iter_mut().rev().enumerate() {
        let bit = i * 8;
        let low = limbs.get(bit / 30).map_or(0, |l| *l >> (bit % 30));
        let high = limbs.get(bit / 30 + 1).map_or(0, |l| *l << (30 - bit % 30));
        *byte = (low | high) as u8;
    }
    Some(bytes)
}

/// Whether the carried, non-negative `limbs` are below m.
fn less_than(limbs: &[i64; LIMBS], n: &[i32; LIMBS]) -> bool {
    for (limb, n) in limbs.iter().zip(n).rev() {
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
    use p256::elliptic_curve::ff::PrimeField;
    use p256::elliptic_curve::ops::{Invert, Reduce};

    #[test]
    fn neg_inverses() {
        for f in (1u32..512).step_by(2) {
            assert_eq!(f.wrapping_mul(neg_inverse_mod_256(f)) & 0xff, 0xff, "{f}");
        }
    }

    #[test]
    fn constants() {
        // libsecp256k1-style constants of the P-256 order, as the P-256-only port had them.
        let mut n = [0u8; BYTES];
        n[16..].copy_from_slice(&[
            0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2,
            0xfc, 0x63, 0x25, 0x51,
        ]);
        let c = Constants::new(&n);
        assert_eq!(
            c.n[..9],
            [
                0x3c63_2551,
                0x0ee7_2b0b,
                0x3179_e84f,
                0x39be_ab69,
                0x3fff_ffbc,
                0x3fff_ffff,
                0x0fff,
                0x3fff_c000,
                0xffff
            ]
        );
        assert_eq!(c.n[9..], [0; 4]);
        assert_eq!(c.n_inv30, 0x11ff_43b1);
        assert_eq!(c.len, 9);
        let mut max = [0xffu8; BYTES];
        max[BYTES - 1] = 0xfd;
        let c = Constants::new(&max);
        assert_eq!(c.n[0].wrapping_mul(c.n_inv30 as i32) & M30, 1);
        assert!(c.n[..LIMBS - 1]
            .iter()
            .all(|limb| *limb == M30 || *limb == M30 - 2));
        // 384 − 12 · 30 = 24 bits in the top limb.
        assert_eq!(c.n[LIMBS - 1], 0xff_ffff);
        assert_eq!(c.len, LIMBS);
    }

    /// Random and edge values of both curves' scalars (and so of any odd modulus of up to 384
    /// bits, P-384's field prime included) against RustCrypto's inversions.
    fn check<S>(m: &Constants, random: impl Fn(&mut TestRng) -> S, samples: usize)
    where
        S: PrimeField + Invert<Output = subtle::CtOption<S>> + From<u64>,
    {
        let wide = |s: &S| -> [u8; BYTES] {
            let repr = s.to_repr();
            let bytes: &[u8] = repr.as_ref();
            let mut out = [0u8; BYTES];
            out[BYTES - bytes.len()..].copy_from_slice(bytes);
            out
        };
        let mut rng = TestRng(0x1234_5678_9abc_def0);
        let mut scalars = vec![S::ONE, -S::ONE, S::from(2u64), -S::from(2u64)];
        for k in [1u64, 2, 3, 0xffff_ffff, 1 << 63] {
            scalars.push(S::from(k));
            scalars.push(-S::from(k));
        }
        for _ in 0..samples {
            scalars.push(random(&mut rng));
        }
        for x in scalars {
            if x == S::ZERO {
                continue;
            }
            let expected = Option::<S>::from(Invert::invert_vartime(&x)).unwrap();
            assert_eq!(
                invert(&wide(&x), m),
                Some(wide(&expected)),
                "{:?}",
                wide(&x)
            );
        }
        assert_eq!(invert(&[0; BYTES], m), None);
    }

    /// Random bytes, often with a run of zeros or ones (short values, values near 2^bits).
    fn random_bytes<const N: usize>(rng: &mut TestRng) -> [u8; N] {
        let mut bytes = [0u8; N];
        rng.fill(&mut bytes);
        match rng.next_u64() % 8 {
            0 => bytes[..N * 5 / 8].fill(0),
            1 => bytes[..N / 2].fill(0xff),
            2 => bytes[8..].fill(0),
            _ => {}
        }
        bytes
    }

    #[test]
    fn matches_p256_inversion() {
        use crate::crypto::p256_tables::OrderN;
        use crate::crypto::p384_field::Modulus;
        let random = |rng: &mut TestRng| {
            <p256::Scalar as Reduce<p256::U256>>::reduce_bytes(&random_bytes(rng).into())
        };
        check(&Constants::new(&OrderN::BE), random, 20_000);
    }

    #[test]
    fn matches_p384_inversion() {
        use crate::crypto::p384_field::{Modulus, OrderN};
        let random = |rng: &mut TestRng| {
            <p384::Scalar as Reduce<p384::U384>>::reduce_bytes(&random_bytes(rng).into())
        };
        check(&Constants::new(&OrderN::BE), random, 20_000);
    }
}
