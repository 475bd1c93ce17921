//! Arithmetic modulo any odd modulus below 2^384: the P-384 field prime p and group order n,
//! and the P-256 group order ([`p256_tables::OrderN`](crate::crypto::p256_tables::OrderN)),
//! for ECDSA verification in wasm ([`ecdsa`](crate::crypto::ecdsa)).
//!
//! Design (the reasoning of [`p256_field`](crate::crypto::p256_field), for 384 bits):
//! - wasm has no 64×64→128-bit multiply, so the `p384` crate's 64-bit fiat-crypto code pays
//!   for an emulated one on every limb product (~0.4 µs per field multiplication in Envoy's
//!   V8), and its unrolled code was ~150 KB of the module. Here a number is 14 limbs of 28
//!   bits held in `u32` (392 bits): a limb product is below 2^56, so a `u64` column sums all
//!   14 products of a multiplication and the 14 of its reduction without any carry.
//! - Montgomery multiplication with R = 2^392 (operand scanning: all products first, then
//!   one reduction digit per limb), written once over the modulus ([`Modulus`]): the field
//!   and the scalars share the code, each monomorphised with its constants folded in. For p,
//!   −p⁻¹ ≡ 1 mod 2^28 (p ≡ −1 mod 2^32), so its reduction digit is the column's low bits.
//! - R > 4m, so the product of two values below 2m is again below 2m: every element is kept
//!   in [0, 2m) with each limb below 2^28, and only comparisons and encoding reduce to [0, m).
//! - Elements are stored in Montgomery form a·R mod m; [`Elem::from_be_bytes`] and
//!   [`Elem::to_be_bytes`] convert, and the first refuses a non-canonical encoding (≥ m).
//! - The constants (limbs of m and 2m, −m⁻¹ mod 2^28, R mod m, R² mod m) are computed by
//!   `const fn`s from m's big-endian bytes at compile time, and checked by the tests against
//!   an independent big-integer reference.
//!
//! **Variable time, on purpose.** Additions pick one of two candidates by sign, inversions
//! are variable-time and equality is early-exit. Every value handled in verification is public
//! (key, signature, digest), so that leaks nothing; this module must never be used with a
//! secret (signing, ECDH).

use std::fmt;
use std::marker::PhantomData;

use crate::crypto::limbs::{self, narrow, widen};
use crate::crypto::safegcd;

/// Bits per limb.
const LIMB_BITS: u32 = 28;
const MASK: u64 = (1 << LIMB_BITS) - 1;
/// Limbs per element: 14 · 28 = 392 bits, so R = 2^392 > 4m for any m below 2^384.
pub const LIMBS: usize = 14;
/// Bytes of an encoding.
pub const BYTES: usize = 48;

/// A modulus below 2^384, odd, and its derived constants.
pub trait Modulus: Copy + 'static {
    /// m, big-endian.
    const BE: [u8; BYTES];
    /// m in 28-bit limbs, little-endian.
    const M: [u64; LIMBS] = limbs_of(&Self::BE);
    /// 2m in 28-bit limbs.
    const TWO_M: [u64; LIMBS] = shl1(&Self::M);
    /// −m⁻¹ mod 2^28.
    const M_PRIME: u64 = neg_inverse(Self::M[0]);
    /// R mod m (1 in Montgomery form).
    const R1: [u64; LIMBS] = pow2_mod(LIMB_BITS * LIMBS as u32, &Self::M);
    /// R² mod m.
    const R2: [u64; LIMBS] = pow2_mod(2 * LIMB_BITS * LIMBS as u32, &Self::M);
    /// m for [`safegcd`]'s inversion.
    const SAFEGCD: safegcd::Constants = safegcd::Constants::new(&Self::BE);
}

/// The P-384 field prime p = 2^384 − 2^128 − 2^96 + 2^32 − 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldP;

impl Modulus for FieldP {
    const BE: [u8; BYTES] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xfe, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff,
        0xff, 0xff, 0xff,
    ];
}

/// The P-384 group order n.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderN;

impl Modulus for OrderN {
    const BE: [u8; BYTES] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc7, 0x63, 0x4d, 0x81, 0xf4, 0x37,
        0x2d, 0xdf, 0x58, 0x1a, 0x0d, 0xb2, 0x48, 0xb0, 0xa7, 0x7a, 0xec, 0xec, 0x19, 0x6a, 0xcc,
        0xc5, 0x29, 0x73,
    ];
}

/// An element of Z/mZ in Montgomery form: limbs of a·R mod m, value in [0, 2m).
pub struct Elem<M: Modulus>([u32; LIMBS], PhantomData<M>);

/// An element of the P-384 field.
pub type Fe = Elem<FieldP>;
/// A P-384 scalar (modulo the group order).
pub type Scalar = Elem<OrderN>;

impl<M: Modulus> Clone for Elem<M> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<M: Modulus> Copy for Elem<M> {}

impl<M: Modulus> fmt::Debug for Elem<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Elem").field(&self.0).finish()
    }
}

impl<M: Modulus> Elem<M> {
    /// 0.
    pub const ZERO: Self = Elem([0; LIMBS], PhantomData);
    /// 1, that is R mod m.
    pub const ONE: Self = Elem(narrow(&M::R1), PhantomData);

    /// The element whose canonical encoding is `bytes` (48 bytes, big-endian); `None` if the
    /// number is not below m.
    pub fn from_be_bytes(bytes: &[u8; BYTES]) -> Option<Self> {
        let limbs = limbs_of(bytes);
        if !less_than(&limbs, &M::M) {
            return None;
        }
        Some(Elem(narrow(&limbs), PhantomData).mul(&Elem(narrow(&M::R2), PhantomData)))
    }

    /// The element `value` (below 2^64, so below m).
    pub fn from_u64(value: u64) -> Self {
        let mut bytes = [0u8; BYTES];
        bytes[BYTES - 8..].copy_from_slice(&value.to_be_bytes());
        let limbs = limbs_of(&bytes);
        Elem(narrow(&limbs), PhantomData).mul(&Elem(narrow(&M::R2), PhantomData))
    }

    /// The canonical encoding (48 bytes, big-endian, below m).
    pub fn to_be_bytes(&self) -> [u8; BYTES] {
        // Multiplying by plain 1 leaves the Montgomery domain.
        let mut one = [0u32; LIMBS];
        one[0] = 1;
        limbs::to_be::<LIMBS, BYTES, LIMB_BITS>(&self.mul(&Elem(one, PhantomData)).canonical())
    }

    /// The limbs of the value reduced to [0, m).
    fn canonical(&self) -> [u32; LIMBS] {
        canonical::<M>(&self.0)
    }

    /// Whether the element is 0 mod m: its value is 0 or m, as every element is below 2m and
    /// its limbs below 2^28 (one representation per value), without [`canonical`]'s
    /// subtraction (issue #13: each mixed addition of a verification asks once).
    ///
    /// [`canonical`]: Elem::canonical
    pub fn is_zero(&self) -> bool {
        self.0 == [0; LIMBS] || self.0.iter().zip(&M::M).all(|(l, m)| u64::from(*l) == *m)
    }

    /// `self + other`.
    pub fn add(&self, other: &Self) -> Self {
        // The sum is below 4m: the sum − 2m unless that is negative.
        let (sum, _, reduced, reduced_negative) =
            limbs::candidates::<LIMBS, LIMB_BITS>(&self.0, &other.0, &M::TWO_M, 1, -1);
        Elem(if reduced_negative { sum } else { reduced }, PhantomData)
    }

    /// `2 · self`.
    pub fn double(&self) -> Self {
        self.add(self)
    }

    /// `self − other`.
    pub fn sub(&self, other: &Self) -> Self {
        // The difference is above −2m: the difference, or + 2m if it is negative.
        let (difference, negative, lifted, _) =
            limbs::candidates::<LIMBS, LIMB_BITS>(&self.0, &other.0, &M::TWO_M, -1, 1);
        Elem(if negative { lifted } else { difference }, PhantomData)
    }

    /// `−self`.
    pub fn neg(&self) -> Self {
        Self::ZERO.sub(self)
    }

    /// `self · other` (Montgomery: a·R · b·R · R⁻¹ = ab·R). Never inlined: one copy of the
    /// unrolled multiplication per modulus (module size; a call costs nothing beside it).
    #[inline(never)]
    pub fn mul(&self, other: &Self) -> Self {
        Elem(montgomery_mul::<M>(&self.0, &other.0), PhantomData)
    }

    /// `self²`. Never inlined, as [`Elem::mul`].
    #[inline(never)]
    pub fn square(&self) -> Self {
        Elem(montgomery_square::<M>(&self.0), PhantomData)
    }

    /// `self⁻¹`; `None` for 0 (see [`Plain::invert`]).
    pub fn invert(&self) -> Option<Self> {
        Plain::from_be_bytes(&self.to_be_bytes())?.invert()
    }
}

/// A number below m as it is, not in Montgomery form: what a signature's r and s, a digest
/// and the scalars u1, u2 of ECDSA are. Times an [`Elem`] it gives a plain product without any
/// conversion (a · bR · R⁻¹ = ab), so ECDSA verification spends 4 multiplications on its
/// scalars ([`Plain::invert`] and the check inside it, u1, u2) where it spent 10 on elements.
pub struct Plain<M: Modulus>([u32; LIMBS], PhantomData<M>);

impl<M: Modulus> Clone for Plain<M> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<M: Modulus> Copy for Plain<M> {}

impl<M: Modulus> fmt::Debug for Plain<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Plain").field(&self.to_be_bytes()).finish()
    }
}

impl<M: Modulus> PartialEq for Plain<M> {
    fn eq(&self, other: &Self) -> bool {
        canonical::<M>(&self.0) == canonical::<M>(&other.0)
    }
}

impl<M: Modulus> Eq for Plain<M> {}

impl<M: Modulus> Plain<M> {
    /// The number `bytes` (48 bytes, big-endian); `None` if it is not below m.
    pub fn from_be_bytes(bytes: &[u8; BYTES]) -> Option<Self> {
        let limbs = limbs_of(bytes);
        less_than(&limbs, &M::M).then(|| Plain(narrow(&limbs), PhantomData))
    }

    /// The canonical encoding (48 bytes, big-endian, below m).
    pub fn to_be_bytes(&self) -> [u8; BYTES] {
        limbs::to_be::<LIMBS, BYTES, LIMB_BITS>(&canonical::<M>(&self.0))
    }

    /// Whether the number is 0 mod m.
    pub fn is_zero(&self) -> bool {
        canonical::<M>(&self.0) == [0; LIMBS]
    }

    /// `self · other mod m`, plain (by [`Elem::mul`]: one copy of the multiplication).
    pub fn mul(&self, other: &Elem<M>) -> Self {
        Plain(Elem::<M>(self.0, PhantomData).mul(other).0, PhantomData)
    }

    /// `self⁻¹` as an element; `None` for 0. Variable time: [`safegcd`] (every modulus here is
    /// prime), brought into Montgomery form by one multiplication and checked by another
    /// (self · self⁻¹ = 1) before it is returned.
    pub fn invert(&self) -> Option<Elem<M>> {
        let inverse = Elem::from_be_bytes(&safegcd::invert(&self.to_be_bytes(), &M::SAFEGCD)?)?;
        let mut one = [0u32; LIMBS];
        one[0] = 1;
        (canonical::<M>(&self.mul(&inverse).0) == one).then_some(inverse)
    }
}

/// The limbs of a value in [0, 2m) reduced to [0, m).
fn canonical<M: Modulus>(value: &[u32; LIMBS]) -> [u32; LIMBS] {
    match sub_limbs(&widen(value), &M::M) {
        Some(reduced) => narrow(&reduced),
        None => *value,
    }
}

impl<M: Modulus> PartialEq for Elem<M> {
    /// Equality mod m (the representations may differ by m).
    fn eq(&self, other: &Self) -> bool {
        self.canonical() == other.canonical()
    }
}

impl<M: Modulus> Eq for Elem<M> {}

/// a·b·R⁻¹ mod m, below 2m for a, b below 2m: the 27 product columns, fully unrolled
/// (generated; ~1.8x faster in V8 than the same work in loops, 205 against 365 ns in Node 20),
/// each at most 14 products below 2^56.
#[inline(always)]
#[rustfmt::skip]
fn montgomery_mul<M: Modulus>(a: &[u32; LIMBS], b: &[u32; LIMBS]) -> [u32; LIMBS] {
    let [a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13] = widen(a);
    let [b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, b13] = widen(b);
    montgomery_reduce::<M>([
        a0 * b0,
        a0 * b1 + a1 * b0,
        a0 * b2 + a1 * b1 + a2 * b0,
        a0 * b3 + a1 * b2 + a2 * b1 + a3 * b0,
        a0 * b4 + a1 * b3 + a2 * b2 + a3 * b1 + a4 * b0,
        a0 * b5 + a1 * b4 + a2 * b3 + a3 * b2 + a4 * b1 + a5 * b0,
        a0 * b6 + a1 * b5 + a2 * b4 + a3 * b3 + a4 * b2 + a5 * b1 + a6 * b0,
        a0 * b7 + a1 * b6 + a2 * b5 + a3 * b4 + a4 * b3 + a5 * b2 + a6 * b1 + a7 * b0,
        a0 * b8 + a1 * b7 + a2 * b6 + a3 * b5 + a4 * b4 + a5 * b3 + a6 * b2 + a7 * b1 + a8 * b0,
        a0 * b9 + a1 * b8 + a2 * b7 + a3 * b6 + a4 * b5 + a5 * b4 + a6 * b3 + a7 * b2 + a8 * b1 + a9 * b0,
        a0 * b10 + a1 * b9 + a2 * b8 + a3 * b7 + a4 * b6 + a5 * b5 + a6 * b4 + a7 * b3 + a8 * b2 + a9 * b1 + a10 * b0,
        a0 * b11 + a1 * b10 + a2 * b9 + a3 * b8 + a4 * b7 + a5 * b6 + a6 * b5 + a7 * b4 + a8 * b3 + a9 * b2 + a10 * b1 + a11 * b0,
        a0 * b12 + a1 * b11 + a2 * b10 + a3 * b9 + a4 * b8 + a5 * b7 + a6 * b6 + a7 * b5 + a8 * b4 + a9 * b3 + a10 * b2 + a11 * b1 + a12 * b0,
        a0 * b13 + a1 * b12 + a2 * b11 + a3 * b10 + a4 * b9 + a5 * b8 + a6 * b7 + a7 * b6 + a8 * b5 + a9 * b4 + a10 * b3 + a11 * b2 + a12 * b1 + a13 * b0,
        a1 * b13 + a2 * b12 + a3 * b11 + a4 * b10 + a5 * b9 + a6 * b8 + a7 * b7 + a8 * b6 + a9 * b5 + a10 * b4 + a11 * b3 + a12 * b2 + a13 * b1,
        a2 * b13 + a3 * b12 + a4 * b11 + a5 * b10 + a6 * b9 + a7 * b8 + a8 * b7 + a9 * b6 + a10 * b5 + a11 * b4 + a12 * b3 + a13 * b2,
        a3 * b13 + a4 * b12 + a5 * b11 + a6 * b10 + a7 * b9 + a8 * b8 + a9 * b7 + a10 * b6 + a11 * b5 + a12 * b4 + a13 * b3,
        a4 * b13 + a5 * b12 + a6 * b11 + a7 * b10 + a8 * b9 + a9 * b8 + a10 * b7 + a11 * b6 + a12 * b5 + a13 * b4,
        a5 * b13 + a6 * b12 + a7 * b11 + a8 * b10 + a9 * b9 + a10 * b8 + a11 * b7 + a12 * b6 + a13 * b5,
        a6 * b13 + a7 * b12 + a8 * b11 + a9 * b10 + a10 * b9 + a11 * b8 + a12 * b7 + a13 * b6,
        a7 * b13 + a8 * b12 + a9 * b11 + a10 * b10 + a11 * b9 + a12 * b8 + a13 * b7,
        a8 * b13 + a9 * b12 + a10 * b11 + a11 * b10 + a12 * b9 + a13 * b8,
        a9 * b13 + a10 * b12 + a11 * b11 + a12 * b10 + a13 * b9,
        a10 * b13 + a11 * b12 + a12 * b11 + a13 * b10,
        a11 * b13 + a12 * b12 + a13 * b11,
        a12 * b13 + a13 * b12,
        a13 * b13,
    ])
}

/// a²·R⁻¹ mod m: each cross product computed once with one factor doubled (at most 7 products
/// below 2^57 and one square below 2^56 per column), 105 products instead of 196.
#[inline(always)]
#[rustfmt::skip]
fn montgomery_square<M: Modulus>(a: &[u32; LIMBS]) -> [u32; LIMBS] {
    let [a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13] = widen(a);
    let [d0, d1, d2, d3, d4, d5, d6] = [2 * a0, 2 * a1, 2 * a2, 2 * a3, 2 * a4, 2 * a5, 2 * a6];
    let [d7, d8, d9, d10, d11, d12] = [2 * a7, 2 * a8, 2 * a9, 2 * a10, 2 * a11, 2 * a12];
    montgomery_reduce::<M>([
        a0 * a0,
        d0 * a1,
        d0 * a2 + a1 * a1,
        d0 * a3 + d1 * a2,
        d0 * a4 + d1 * a3 + a2 * a2,
        d0 * a5 + d1 * a4 + d2 * a3,
        d0 * a6 + d1 * a5 + d2 * a4 + a3 * a3,
        d0 * a7 + d1 * a6 + d2 * a5 + d3 * a4,
        d0 * a8 + d1 * a7 + d2 * a6 + d3 * a5 + a4 * a4,
        d0 * a9 + d1 * a8 + d2 * a7 + d3 * a6 + d4 * a5,
        d0 * a10 + d1 * a9 + d2 * a8 + d3 * a7 + d4 * a6 + a5 * a5,
        d0 * a11 + d1 * a10 + d2 * a9 + d3 * a8 + d4 * a7 + d5 * a6,
        d0 * a12 + d1 * a11 + d2 * a10 + d3 * a9 + d4 * a8 + d5 * a7 + a6 * a6,
        d0 * a13 + d1 * a12 + d2 * a11 + d3 * a10 + d4 * a9 + d5 * a8 + d6 * a7,
        d1 * a13 + d2 * a12 + d3 * a11 + d4 * a10 + d5 * a9 + d6 * a8 + a7 * a7,
        d2 * a13 + d3 * a12 + d4 * a11 + d5 * a10 + d6 * a9 + d7 * a8,
        d3 * a13 + d4 * a12 + d5 * a11 + d6 * a10 + d7 * a9 + a8 * a8,
        d4 * a13 + d5 * a12 + d6 * a11 + d7 * a10 + d8 * a9,
        d5 * a13 + d6 * a12 + d7 * a11 + d8 * a10 + a9 * a9,
        d6 * a13 + d7 * a12 + d8 * a11 + d9 * a10,
        d7 * a13 + d8 * a12 + d9 * a11 + a10 * a10,
        d8 * a13 + d9 * a12 + d10 * a11,
        d9 * a13 + d10 * a12 + a11 * a11,
        d10 * a13 + d11 * a12,
        d11 * a13 + a12 * a12,
        d12 * a13,
        a13 * a13,
    ])
}

/// Montgomery reduction of the 27 product columns `t` (each below 2^60): `t · R⁻¹ mod m`,
/// below 2m when `t < 4m²`. Product scanning as in [`p256_field`](crate::crypto::p256_field):
/// column k, with the carry from column k − 1, gets digit q_k = its low 28 bits times −m⁻¹
/// and the products q_j·m_(k−j) of the digits so far, which clears its low 28 bits. A column
/// holds at most a product sum below 2^60, 14 of q·m below 2^56 and a carry below 2^34: below
/// 2^62, no overflow. Columns 14..=26 and the last carry are the result. The constants fold:
/// for p, −p⁻¹ mod 2^28 = 1 and m_2 = 0.
#[inline(always)]
#[rustfmt::skip]
fn montgomery_reduce<M: Modulus>(t: [u64; 2 * LIMBS - 1]) -> [u32; LIMBS] {
    let [t0, t1, t2, t3, t4, t5, t6, t7, t8, t9, t10, t11, t12, t13, t14, t15, t16, t17, t18, t19, t20, t21, t22, t23, t24, t25, t26] = t;
    let [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13] = M::M;
    let acc = t0;
    let q0 = acc.wrapping_mul(M::M_PRIME) & MASK;
    let acc = (acc + q0 * m0) >> LIMB_BITS;
    let acc = t1 + q0 * m1 + acc;
    let q1 = acc.wrapping_mul(M::M_PRIME) & MASK;
    let acc = (acc + q1 * m0) >> LIMB_BITS;
    let acc = t2 + q0 * m2 + q1 * m1 + acc;
    let q2 = acc.wrapping_mul(M::M_PRIME) & MASK;
    let acc = (acc + q2 * m0) >> LIMB_BITS;
    let acc = t3 + q0 * m3 + q1 * m2 + q2 * m1 + acc;
    let q3 = acc.wrapping_mul(M::M_PRIME) & MASK;
    let acc = (acc + q3 * m0) >> LIMB_BITS;
    let acc = t4 + q0 * m4 + q1 * m3 + q2 * m2 + q3 * m1 + acc;
    let q4 = acc.wrapping_mul(M::M_PRIME) & MASK;
    let acc = (acc + q4 * m0) >> LIMB_BITS;
    let acc = t5 + q0 * m5 + q1 * m4 + q2 * m3 + q3 * m2 + q4 * m1 + acc;
    let q5 = acc.wrapping_mul(M::M_PRIME) & MASK;
    let acc = (acc + q5 * m0) >> LIMB_BITS;
    let acc = t6 + q0 * m6 + q1 * m5 + q2 * m4 + q3 * m3 + q4 * m2 + q5 * m1 + acc;
    let q6 = acc.wrapping_mul(M::M_PRIME) & MASK;
    let acc = (acc + q6 * m0) >> LIMB_BITS;
    let acc = t7 + q0 * m7 + q1 * m6 + q2 * m5 + q3 * m4 + q4 * m3 + q5 * m2 + q6 * m1 + acc;
    let q7 = acc.wrapping_mul(M::M_PRIME) & MASK;
    let acc = (acc + q7 * m0) >> LIMB_BITS;
    let acc = t8 + q0 * m8 + q1 * m7 + q2 * m6 + q3 * m5 + q4 * m4 + q5 * m3 + q6 * m2 + q7 * m1 + acc;
    let q8 = acc.wrapping_mul(M::M_PRIME) & MASK;
    let acc = (acc + q8 * m0) >> LIMB_BITS;
    let acc = t9 + q0 * m9 + q1 * m8 + q2 * m7 + q3 * m6 + q4 * m5 + q5 * m4 + q6 * m3 + q7 * m2 + q8 * m1 + acc;
    let q9 = acc.wrapping_mul(M::M_PRIME) & MASK;
    let acc = (acc + q9 * m0) >> LIMB_BITS;
    let acc = t10 + q0 * m10 + q1 * m9 + q2 * m8 + q3 * m7 + q4 * m6 + q5 * m5 + q6 * m4 + q7 * m3 + q8 * m2 + q9 * m1 + acc;
    let q10 = acc.wrapping_mul(M::M_PRIME) & MASK;
    let acc = (acc + q10 * m0) >> LIMB_BITS;
    let acc = t11 + q0 * m11 + q1 * m10 + q2 * m9 + q3 * m8 + q4 * m7 + q5 * m6 + q6 * m5 + q7 * m4 + q8 * m3 + q9 * m2 + q10 * m1 + acc;
    let q11 = acc.wrapping_mul(M::M_PRIME) & MASK;
    let acc = (acc + q11 * m0) >> LIMB_BITS;
    let acc = t12 + q0 * m12 + q1 * m11 + q2 * m10 + q3 * m9 + q4 * m8 + q5 * m7 + q6 * m6 + q7 * m5 + q8 * m4 + q9 * m3 + q10 * m2 + q11 * m1 + acc;
    let q12 = acc.wrapping_mul(M::M_PRIME) & MASK;
    let acc = (acc + q12 * m0) >> LIMB_BITS;
    let acc = t13 + q0 * m13 + q1 * m12 + q2 * m11 + q3 * m10 + q4 * m9 + q5 * m8 + q6 * m7 + q7 * m6 + q8 * m5 + q9 * m4 + q10 * m3 + q11 * m2 + q12 * m1 + acc;
    let q13 = acc.wrapping_mul(M::M_PRIME) & MASK;
    let acc = (acc + q13 * m0) >> LIMB_BITS;
    let acc = t14 + q1 * m13 + q2 * m12 + q3 * m11 + q4 * m10 + q5 * m9 + q6 * m8 + q7 * m7 + q8 * m6 + q9 * m5 + q10 * m4 + q11 * m3 + q12 * m2 + q13 * m1 + acc;
    let r0 = acc & MASK;
    let acc = acc >> LIMB_BITS;
    let acc = t15 + q2 * m13 + q3 * m12 + q4 * m11 + q5 * m10 + q6 * m9 + q7 * m8 + q8 * m7 + q9 * m6 + q10 * m5 + q11 * m4 + q12 * m3 + q13 * m2 + acc;
    let r1 = acc & MASK;
    let acc = acc >> LIMB_BITS;
    let acc = t16 + q3 * m13 + q4 * m12 + q5 * m11 + q6 * m10 + q7 * m9 + q8 * m8 + q9 * m7 + q10 * m6 + q11 * m5 + q12 * m4 + q13 * m3 + acc;
    let r2 = acc & MASK;
    let acc = acc >> LIMB_BITS;
    let acc = t17 + q4 * m13 + q5 * m12 + q6 * m11 + q7 * m10 + q8 * m9 + q9 * m8 + q10 * m7 + q11 * m6 + q12 * m5 + q13 * m4 + acc;
    let r3 = acc & MASK;
    let acc = acc >> LIMB_BITS;
    let acc = t18 + q5 * m13 + q6 * m12 + q7 * m11 + q8 * m10 + q9 * m9 + q10 * m8 + q11 * m7 + q12 * m6 + q13 * m5 + acc;
    let r4 = acc & MASK;
    let acc = acc >> LIMB_BITS;
    let acc = t19 + q6 * m13 + q7 * m12 + q8 * m11 + q9 * m10 + q10 * m9 + q11 * m8 + q12 * m7 + q13 * m6 + acc;
    let r5 = acc & MASK;
    let acc = acc >> LIMB_BITS;
    let acc = t20 + q7 * m13 + q8 * m12 + q9 * m11 + q10 * m10 + q11 * m9 + q12 * m8 + q13 * m7 + acc;
    let r6 = acc & MASK;
    let acc = acc >> LIMB_BITS;
    let acc = t21 + q8 * m13 + q9 * m12 + q10 * m11 + q11 * m10 + q12 * m9 + q13 * m8 + acc;
    let r7 = acc & MASK;
    let acc = acc >> LIMB_BITS;
    let acc = t22 + q9 * m13 + q10 * m12 + q11 * m11 + q12 * m10 + q13 * m9 + acc;
    let r8 = acc & MASK;
    let acc = acc >> LIMB_BITS;
    let acc = t23 + q10 * m13 + q11 * m12 + q12 * m11 + q13 * m10 + acc;
    let r9 = acc & MASK;
    let acc = acc >> LIMB_BITS;
    let acc = t24 + q11 * m13 + q12 * m12 + q13 * m11 + acc;
    let r10 = acc & MASK;
    let acc = acc >> LIMB_BITS;
    let acc = t25 + q12 * m13 + q13 * m12 + acc;
    let r11 = acc & MASK;
    let acc = acc >> LIMB_BITS;
    let acc = t26 + q13 * m13 + acc;
    let r12 = acc & MASK;
    let acc = acc >> LIMB_BITS;
    narrow(&[r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, r10, r11, r12, acc])
}

fn sub_limbs(a: &[u64; LIMBS], b: &[u64; LIMBS]) -> Option<[u64; LIMBS]> {
    limbs::sub::<LIMBS, LIMB_BITS>(a, b)
}

fn less_than(a: &[u64; LIMBS], b: &[u64; LIMBS]) -> bool {
    limbs::less_than::<LIMBS, LIMB_BITS>(a, b)
}

/// A 48-byte big-endian number in 28-bit limbs.
const fn limbs_of(bytes: &[u8; BYTES]) -> [u64; LIMBS] {
    limbs::from_be::<LIMBS, BYTES, LIMB_BITS>(bytes)
}

/// 2x for carried limbs (x below 2^390).
#[allow(clippy::indexing_slicing)] // constant bounds below LIMBS and BYTES (const fn: no `get`)
const fn shl1(x: &[u64; LIMBS]) -> [u64; LIMBS] {
    let mut out = [0u64; LIMBS];
    let mut carry = 0;
    let mut i = 0;
    while i < LIMBS {
        let value = (x[i] << 1) | carry;
        out[i] = value & MASK;
        carry = value >> LIMB_BITS;
        i += 1;
    }
    out
}

/// 2^k mod m by k modular doublings (compile time only).
#[allow(clippy::indexing_slicing)] // constant bounds below LIMBS and BYTES (const fn: no `get`)
const fn pow2_mod(k: u32, m: &[u64; LIMBS]) -> [u64; LIMBS] {
    let mut x = [0u64; LIMBS];
    x[0] = 1;
    let mut step = 0;
    while step < k {
        x = shl1(&x);
        // x < 2m: subtract m once if x >= m.
        let mut diff = [0u64; LIMBS];
        let mut borrow = 0i64;
        let mut i = 0;
        while i < LIMBS {
            let value = x[i] as i64 - m[i] as i64 + borrow;
            diff[i] = (value as u64) & MASK;
            borrow = value >> LIMB_BITS;
            i += 1;
        }
        if borrow == 0 {
            x = diff;
        }
        step += 1;
    }
    x
}

/// −m0⁻¹ mod 2^28 for odd m0, by Newton's iteration (each step doubles the correct bits).
const fn neg_inverse(m0: u64) -> u64 {
    let mut inverse: u64 = 1;
    let mut i = 0;
    while i < 5 {
        inverse = inverse.wrapping_mul(2u64.wrapping_sub(m0.wrapping_mul(inverse))) & MASK;
        i += 1;
    }
    (MASK + 1 - inverse) & MASK
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::TestRng;
    use p384::elliptic_curve::bigint::modular::runtime_mod::{DynResidue, DynResidueParams};
    use p384::elliptic_curve::bigint::{Encoding, U384};

    /// The reference: crypto-bigint's own Montgomery arithmetic (64- or 32-bit limbs, its own
    /// reduction), on the canonical values.
    fn reference<M: Modulus>(e: &Elem<M>) -> DynResidue<{ U384::LIMBS }> {
        DynResidue::new(&U384::from_be_bytes(e.to_be_bytes()), params::<M>())
    }

    fn params<M: Modulus>() -> DynResidueParams<{ U384::LIMBS }> {
        DynResidueParams::new(&U384::from_be_bytes(M::BE))
    }

    fn value(r: &DynResidue<{ U384::LIMBS }>) -> [u8; BYTES] {
        r.retrieve().to_be_bytes()
    }

    fn random<M: Modulus>(rng: &mut TestRng) -> Elem<M> {
        loop {
            let mut bytes = [0u8; BYTES];
            rng.fill(&mut bytes);
            // As wide as m (P-256's order has 16 leading zero bytes).
            let lead = M::BE.iter().take_while(|byte| **byte == 0).count();
            bytes[..lead].fill(0);
            // Mostly full-size values, sometimes short ones and values just below m.
            match rng.below(8) {
                0 => bytes[..40].fill(0),
                1 => {
                    bytes = M::BE;
                    bytes[BYTES - 1] -= (rng.below(5) + 1) as u8;
                }
                _ => {}
            }
            if let Some(e) = Elem::<M>::from_be_bytes(&bytes) {
                return e;
            }
        }
    }

    fn check<M: Modulus>(rng: &mut TestRng) {
        for _ in 0..3000 {
            let (a, b) = (random::<M>(rng), random::<M>(rng));
            let (ra, rb) = (reference(&a), reference(&b));
            assert_eq!(a.mul(&b).to_be_bytes(), value(&(ra * rb)));
            assert_eq!(a.square().to_be_bytes(), value(&ra.square()));
            assert_eq!(a.add(&b).to_be_bytes(), value(&(ra + rb)));
            assert_eq!(a.sub(&b).to_be_bytes(), value(&(ra - rb)));
            assert_eq!(a.neg().to_be_bytes(), value(&-ra));
            assert_eq!(a.double().to_be_bytes(), value(&(ra + ra)));
            // Chains keep values in [0, 2m): results still agree after many steps.
            let chained = a.mul(&b).add(&a).sub(&b).square().mul(&a).double().neg();
            let expected =
                -(((ra * rb + ra - rb).square() * ra) + ((ra * rb + ra - rb).square() * ra));
            assert_eq!(chained.to_be_bytes(), value(&expected));
            if !a.is_zero() {
                let inverse = a.invert().unwrap();
                assert_eq!(a.mul(&inverse), Elem::ONE);
                assert_eq!(inverse.to_be_bytes(), value(&ra.invert().0));
            }
            assert_eq!(Elem::<M>::from_be_bytes(&a.to_be_bytes()), Some(a));
            // The same numbers plain: products without conversion, the same inverse.
            let plain = Plain::<M>::from_be_bytes(&a.to_be_bytes()).unwrap();
            assert_eq!(plain.to_be_bytes(), a.to_be_bytes());
            assert_eq!(plain.mul(&b).to_be_bytes(), value(&(ra * rb)));
            assert_eq!(plain.invert(), a.invert());
            assert_eq!(plain.is_zero(), a.is_zero());
        }
        assert!(Plain::<M>::from_be_bytes(&M::BE).is_none());
        assert!(Plain::<M>::from_be_bytes(&[0; BYTES])
            .unwrap()
            .invert()
            .is_none());
    }

    /// Zero has two representations below 2m, 0 and m; their neighbours are not zero.
    fn zero_representations<M: Modulus>() {
        let at = |limbs: [u64; LIMBS]| Elem::<M>(narrow(&limbs), PhantomData);
        assert!(at([0; LIMBS]).is_zero());
        assert!(at(M::M).is_zero());
        let mut m_minus_one = M::M;
        m_minus_one[0] -= 1;
        let mut one = [0; LIMBS];
        one[0] = 1;
        for limbs in [m_minus_one, one] {
            assert!(!at(limbs).is_zero());
        }
        // m + R mod m, through the addition (limbs kept below 2^28).
        assert!(!at(M::M).add(&Elem::ONE).is_zero());
        let x = Elem::<M>::ONE.double();
        assert!(x.sub(&x).is_zero());
        assert!(x.add(&x.neg()).is_zero());
    }

    #[test]
    fn zero_in_both_representations() {
        zero_representations::<FieldP>();
        zero_representations::<OrderN>();
        zero_representations::<crate::crypto::p256_tables::OrderN>();
    }

    #[test]
    fn field_ops_match_reference() {
        check::<FieldP>(&mut TestRng(0x384f));
    }

    #[test]
    fn scalar_ops_match_reference() {
        check::<OrderN>(&mut TestRng(0x384e));
    }

    #[test]
    fn p256_scalar_ops_match_reference() {
        check::<crate::crypto::p256_tables::OrderN>(&mut TestRng(0x256e));
    }

    #[test]
    fn constants_and_edges() {
        // m · (−m⁻¹) ≡ −1 mod 2^28.
        assert_eq!((FieldP::M[0] * FieldP::M_PRIME + 1) & MASK, 0);
        assert_eq!((OrderN::M[0] * OrderN::M_PRIME + 1) & MASK, 0);
        assert_eq!(FieldP::M_PRIME, 1);
        // R mod m is 1 in the domain.
        assert_eq!(
            Fe::ONE.to_be_bytes(),
            value(&DynResidue::one(params::<FieldP>()))
        );
        assert_eq!(Scalar::ONE.to_be_bytes()[BYTES - 1], 1);
        // Non-canonical encodings are refused; m − 1 is the largest accepted.
        assert!(Fe::from_be_bytes(&FieldP::BE).is_none());
        assert!(Scalar::from_be_bytes(&OrderN::BE).is_none());
        assert!(Fe::from_be_bytes(&[0xff; BYTES]).is_none());
        let mut below = FieldP::BE;
        below[BYTES - 1] -= 1;
        let minus_one = Fe::from_be_bytes(&below).unwrap();
        assert_eq!(minus_one, Fe::ONE.neg());
        assert_eq!(minus_one.to_be_bytes(), below);
        assert!(Fe::ZERO.is_zero());
        assert!(Fe::ZERO.invert().is_none());
        assert!(Scalar::ZERO.invert().is_none());
        assert_eq!(Fe::ONE.invert(), Some(Fe::ONE));
        assert_eq!(minus_one.invert(), Some(minus_one));
        assert_eq!(Scalar::from_u64(7).to_be_bytes()[BYTES - 1], 7);
        assert_eq!(
            Scalar::from_u64(7),
            Scalar::from_be_bytes(&{
                let mut b = [0u8; BYTES];
                b[BYTES - 1] = 7;
                b
            })
            .unwrap()
        );
        // x + m represents x too: equal, same encoding.
        let x = Fe::from_u64(5);
        let mut limbs = [0u64; LIMBS];
        let mut carry = 0;
        for (i, limb) in limbs.iter_mut().enumerate() {
            let v = u64::from(x.0[i]) + FieldP::M[i] + carry;
            *limb = v & MASK;
            carry = v >> LIMB_BITS;
        }
        let lifted = Elem::<FieldP>(narrow(&limbs), PhantomData);
        assert_eq!(lifted, x);
        assert_eq!(lifted.to_be_bytes(), x.to_be_bytes());
        assert_eq!(lifted.mul(&Fe::ONE), x);
    }
}
