//! RSA public-key operation (RFC 8017 §5.2.2 RSAVP1: `m = s^e mod n`) for signature
//! verification, with the per-key work done once when the key is loaded.
//!
//! Design (chosen by a micro-benchmark of RSA-2048 verification in Envoy 1.40's V8 before this
//! was written: this layout took ~95-107 µs, against 630-700 µs for `rsa` 0.9, 320-490 µs for
//! `rsa` 0.10-rc and 310-480 µs for `crypto-bigint`; every variant was checked byte for byte
//! against `rsa`'s `modpow` on 2,000 random values):
//! - Numbers are little-endian limbs of [`LIMB_BITS`] = 28 bits held in `u32`. A product of two
//!   limbs is below 2^56, so a `u64` accumulates up to 255 of them without a carry: each column of
//!   a product is summed first and carried once ("product scanning" with lazy carries). Past 64
//!   products (moduli over ~1,800 bits) the running sum is folded into a second word, so any size
//!   is safe. 32-bit limbs would need a carry after every product; on wasm's 64-bit integer
//!   arithmetic that measured ~1.4x slower (140-190 µs against 95-107 µs).
//! - Montgomery multiplication interleaves the product and the reduction column by column
//!   (finely integrated product scanning). Squaring has its own routine that computes each
//!   cross product once and doubles it.
//! - R = 2^(28·L) is chosen with R > 4n, so Montgomery products of inputs below 2n stay below
//!   2n and need no subtraction until the very end.
//! - Per key, once: the limbs of n, n' = -n^-1 mod 2^28, and R^2 mod n (computed with the
//!   Montgomery code itself, from R mod n by Montgomery square-and-multiply).
//! - Per signature: s·R by one multiplication with R^2, then left-to-right square-and-multiply
//!   over e. The last multiplication is by plain s, which also leaves the Montgomery domain
//!   (e is odd, so its last step always multiplies). For e = 65537 that is 16 squarings and one
//!   multiplication.
//!
//! Everything here is public (modulus, exponent, signature, result), so the code is variable
//! time on purpose: it branches on exponent bits and on the final comparison with n. Never use it
//! with a secret exponent or secret base.

use std::cmp::Ordering;
use std::fmt;

use crate::crypto::bigmod_f64::{self, RsaPublicF64};

/// Bits per limb.
pub const LIMB_BITS: u32 = 28;
const MASK: u64 = (1 << LIMB_BITS) - 1;
/// Products summed before folding the accumulator: 64 · 2^56 = 2^62, so adding a sum of twice
/// that (squaring) to a folded accumulator still fits in a `u64`.
const CHUNK: usize = 64;

/// Why a modulus or exponent cannot be used; the messages match the `rsa` crate's checks that
/// this replaces, so operators see the same words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModulusError {
    /// n is even or below 3: not an RSA modulus (Montgomery arithmetic needs n odd).
    InvalidModulus,
    /// e is even.
    InvalidExponent,
    /// e is 1 (or 0): the "signature" would be the message itself.
    ExponentTooSmall,
}

impl fmt::Display for ModulusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ModulusError::InvalidModulus => "invalid modulus",
            ModulusError::InvalidExponent => "invalid exponent",
            ModulusError::ExponentTooSmall => "public exponent too small",
        })
    }
}

/// An RSA public key prepared for RSAVP1: built once per key, used for every signature.
#[derive(Clone)]
pub struct RsaPublic {
    /// n, `limbs` limbs of 28 bits, little-endian, top limbs possibly zero (R > 4n).
    n: Vec<u32>,
    /// -n^-1 mod 2^28.
    n_prime: u32,
    /// R^2 mod n, fully reduced.
    r2: Vec<u32>,
    e: u64,
    /// n as big-endian bytes, exactly `size` long (no leading zero octet).
    n_bytes: Vec<u8>,
    bits: usize,
    /// The same key on 52-bit limbs and fused multiply-add, when this process can use it
    /// ([`bigmod_f64::available`]); `rsavp1` then takes that path.
    fma: Option<Box<RsaPublicF64>>,
}

/// Which arithmetic RSAVP1 runs on in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arithmetic {
    /// 28-bit limbs in integers (SIMD128 `i64x2.extmul` in wasm): this module.
    Integer,
    /// 52-bit limbs in doubles with fused `f64x2.relaxed_madd`: [`bigmod_f64`].
    FusedMultiplyAdd,
}

impl Arithmetic {
    /// The arithmetic new keys get in this process (the fusing probe and known answer run
    /// the first time this is asked).
    pub fn current() -> Arithmetic {
        // The feature test first: without it the FMA code is dead and leaves the module.
        if cfg!(feature = "rsa-fma") && bigmod_f64::available() {
            Arithmetic::FusedMultiplyAdd
        } else {
            Arithmetic::Integer
        }
    }

    /// A short description for logs and benchmark reports.
    pub fn describe(self) -> &'static str {
        match self {
            Arithmetic::Integer => "integer, 28-bit limbs",
            Arithmetic::FusedMultiplyAdd => "f64x2.relaxed_madd (fused), 52-bit limbs",
        }
    }
}

impl RsaPublic {
    /// Prepares the modulus `n` (big-endian, leading zero octets allowed) and exponent `e`.
    ///
    /// Needs n odd and at least 3, e odd and at least 3. Size policy is the caller's. Uses
    /// [`Arithmetic::current`].
    pub fn new(n: &[u8], e: u64) -> Result<RsaPublic, ModulusError> {
        let mut key = RsaPublic::new_integer(n, e)?;
        if Arithmetic::current() == Arithmetic::FusedMultiplyAdd {
            key.fma = RsaPublicF64::new(n, e).ok().map(Box::new);
        }
        Ok(key)
    }

    /// [`new`](Self::new) on the integer arithmetic only, whatever this process could use.
    #[inline(never)] // called from two places; one copy (module size)
    pub fn new_integer(n: &[u8], e: u64) -> Result<RsaPublic, ModulusError> {
        let n_bytes: Vec<u8> = n.iter().copied().skip_while(|b| *b == 0).collect();
        let bits = match n_bytes.first() {
            Some(top) => n_bytes.len() * 8 - top.leading_zeros() as usize,
            None => 0,
        };
        let odd = n_bytes.last().is_some_and(|b| b & 1 == 1);
        if !odd || bits < 2 {
            return Err(ModulusError::InvalidModulus);
        }
        if e < 2 {
            return Err(ModulusError::ExponentTooSmall);
        }
        if e & 1 == 0 {
            return Err(ModulusError::InvalidExponent);
        }
        // R = 2^(28·L) > 4n.
        let limbs = (bits + 2).div_ceil(LIMB_BITS as usize);
        let n_limbs = limbs_from_be(&n_bytes, limbs);
        let n0 = n_limbs.first().copied().unwrap_or(1);
        let mut key = RsaPublic {
            n_prime: neg_inverse(n0),
            n: n_limbs,
            r2: Vec::new(),
            e,
            n_bytes,
            bits,
            fma: None,
        };
        key.r2 = key.compute_r2();
        Ok(key)
    }

    /// Modulus size in bits.
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// Modulus size in bytes: the exact length of every signature and of every result.
    pub fn size(&self) -> usize {
        self.n_bytes.len()
    }

    /// The public exponent.
    pub fn exponent(&self) -> u64 {
        self.e
    }

    /// The arithmetic [`rsavp1`](Self::rsavp1) runs on for this key.
    pub fn arithmetic(&self) -> Arithmetic {
        match self.fma {
            Some(_) => Arithmetic::FusedMultiplyAdd,
            None => Arithmetic::Integer,
        }
    }

    /// RSAVP1 (RFC 8017 §5.2.2): `s^e mod n` as exactly [`size`](Self::size) big-endian bytes.
    ///
    /// `None` when `s` is not exactly `size` bytes or is not below n ("signature
    /// representative out of range").
    pub fn rsavp1(&self, s: &[u8]) -> Option<Vec<u8>> {
        match &self.fma {
            // Never set without the feature; the test lets the FMA code leave the module.
            Some(fma) if cfg!(feature = "rsa-fma") => fma.rsavp1(s),
            _ => self.rsavp1_integer(s),
        }
    }

    /// [`rsavp1`](Self::rsavp1) on the integer arithmetic, whichever the key uses.
    #[inline(never)] // as `new_integer`
    pub fn rsavp1_integer(&self, s: &[u8]) -> Option<Vec<u8>> {
        // Equal lengths, so byte order is numeric order.
        if s.len() != self.n_bytes.len() || s >= self.n_bytes.as_slice() {
            return None;
        }
        let limbs = self.n.len();
        let base = limbs_from_be(s, limbs);
        let mut q = vec![0u32; limbs];
        let mut x = vec![0u32; limbs];
        let mut t = vec![0u32; limbs];
        // x = s·R mod n (below 2n).
        self.mont_mul(&base, &self.r2, &mut x, &mut q);
        let base_mont = x.clone();
        let top = 63 - self.e.leading_zeros();
        // Bits below the top one, except bit 0 (always 1: e is odd).
        for bit in (1..top).rev() {
            self.mont_sqr(&x, &mut t, &mut q);
            std::mem::swap(&mut x, &mut t);
            if (self.e >> bit) & 1 == 1 {
                self.mont_mul(&x, &base_mont, &mut t, &mut q);
                std::mem::swap(&mut x, &mut t);
            }
        }
        // Bit 0: square, then multiply by plain s, which removes the factor R.
        self.mont_sqr(&x, &mut t, &mut q);
        self.mont_mul(&t, &base, &mut x, &mut q);
        reduce_once(&mut x, &self.n);
        Some(limbs_to_be(&x, self.n_bytes.len()))
    }

    /// R^2 mod n, from 2^(bits-1) (below n) doubled up to R mod n = Mont(1), doubled once more
    /// to Mont(2), then raised to the power 28·L in the Montgomery domain: Mont(2^(28·L)) =
    /// Mont(R) = R^2 mod n. A few dozen doublings and ~15 multiplications, instead of the
    /// ~56·L doublings a plain shift-and-subtract would take.
    fn compute_r2(&self) -> Vec<u32> {
        let limbs = self.n.len();
        let mut x = vec![0u32; limbs];
        let top_bit = self.bits - 1;
        if let Some(limb) = x.get_mut(top_bit / LIMB_BITS as usize) {
            *limb = 1 << (top_bit % LIMB_BITS as usize);
        }
        let r_bits = limbs * LIMB_BITS as usize;
        for _ in top_bit..=r_bits {
            double_mod(&mut x, &self.n);
        }
        // x = 2R mod n = Mont(2); raise it to r_bits.
        let two = x.clone();
        let mut q = vec![0u32; limbs];
        let mut t = vec![0u32; limbs];
        let top = usize::BITS - 1 - r_bits.leading_zeros();
        for bit in (0..top).rev() {
            self.mont_sqr(&x, &mut t, &mut q);
            std::mem::swap(&mut x, &mut t);
            if (r_bits >> bit) & 1 == 1 {
                self.mont_mul(&x, &two, &mut t, &mut q);
                std::mem::swap(&mut x, &mut t);
            }
        }
        reduce_once(&mut x, &self.n);
        x
    }

    /// out = a·b·R^-1 mod n, below 2n for a, b below 2n. `q` is scratch (the quotient limbs).
    fn mont_mul(&self, a: &[u32], b: &[u32], out: &mut [u32], q: &mut [u32]) {
        let n = self.n.as_slice();
        let limbs = n.len();
        let mut acc = Column::default();
        for i in 0..limbs {
            acc.add_dot(part(a, 0, i + 1), part(b, 0, i + 1), 1);
            acc.add_dot(part(q, 0, i), part(n, 1, i + 1), 1);
            self.reduce_column(&mut acc, i, q);
        }
        for (i, slot) in out.iter_mut().enumerate() {
            let start = i + 1;
            acc.add_dot(part(a, start, limbs), part(b, start, limbs), 1);
            acc.add_dot(part(q, start, limbs), part(n, start, limbs), 1);
            *slot = acc.take_digit();
        }
    }

    /// out = a^2·R^-1 mod n, below 2n for a below 2n: each cross product a_j·a_k (j < k) is
    /// computed once and doubled.
    fn mont_sqr(&self, a: &[u32], out: &mut [u32], q: &mut [u32]) {
        let n = self.n.as_slice();
        let limbs = n.len();
        let mut acc = Column::default();
        for i in 0..limbs {
            // j in 0..=(i-1)/2 paired with i-j.
            let half = i.div_ceil(2);
            acc.add_dot(part(a, 0, half), part(a, i + 1 - half, i + 1), 2);
            if i % 2 == 0 {
                acc.add_square(a.get(i / 2));
            }
            acc.add_dot(part(q, 0, i), part(n, 1, i + 1), 1);
            self.reduce_column(&mut acc, i, q);
        }
        for (k, slot) in out.iter_mut().enumerate() {
            let i = k + limbs;
            // j in (i-L+1)..=(i-1)/2 paired with i-j.
            let start = k + 1;
            let end = i.div_ceil(2).max(start);
            acc.add_dot(part(a, start, end), part(a, i + 1 - end, i + 1 - start), 2);
            if i % 2 == 0 {
                acc.add_square(a.get(i / 2));
            }
            acc.add_dot(part(q, start, limbs), part(n, start, limbs), 1);
            *slot = acc.take_digit();
        }
    }

    /// Chooses q_i so column i becomes a multiple of 2^28, adds q_i·n_0, and carries.
    #[inline(always)]
    fn reduce_column(&self, acc: &mut Column, i: usize, q: &mut [u32]) {
        let digit = (acc.lo as u32).wrapping_mul(self.n_prime) & MASK as u32;
        if let Some(slot) = q.get_mut(i) {
            *slot = digit;
        }
        let n0 = self.n.first().copied().unwrap_or(0);
        acc.lo += u64::from(digit) * u64::from(n0);
        // The low 28 bits are now zero.
        acc.take_digit();
    }
}

/// One column of a product: the value lo + hi·2^28, carried only when the column is done.
#[derive(Default)]
struct Column {
    lo: u64,
    hi: u64,
}

impl Column {
    /// Adds `scale`·Σ x_j·y_(len-1-j) (x and y have the same length), folding the sum into
    /// `hi` every [`CHUNK`] products.
    #[inline(always)]
    fn add_dot(&mut self, x: &[u32], y: &[u32], scale: u64) {
        let (mut x, mut y) = (x, y);
        // Only columns of moduli above ~1,800 bits are this long.
        while x.len() > CHUNK {
            let split = (
                x.split_at_checked(CHUNK),
                y.split_at_checked(y.len().saturating_sub(CHUNK)),
            );
            let (Some((x_head, x_rest)), Some((y_rest, y_tail))) = split else {
                break;
            };
            self.add_dot_short(x_head, y_tail, scale);
            x = x_rest;
            y = y_rest;
        }
        self.add_dot_short(x, y, scale);
    }

    /// [`add_dot`](Self::add_dot) for at most [`CHUNK`] products. Slice patterns rather than
    /// iterator adapters: as fast in release, and 4x faster in unoptimised test builds; two
    /// accumulators let the multiplications overlap.
    #[inline(always)]
    fn add_dot_short(&mut self, x: &[u32], y: &[u32], scale: u64) {
        // lo is below 2^40 here (a carry, or folded below 2^28 plus one square), and
        // dot·scale < 2·64·2^56 = 2^63: no overflow.
        self.lo += dot(x, y) * scale;
        self.hi += self.lo >> LIMB_BITS;
        self.lo &= MASK;
    }

    #[inline(always)]
    fn add_square(&mut self, limb: Option<&u32>) {
        if let Some(&limb) = limb {
            self.lo += u64::from(limb) * u64::from(limb);
        }
    }

    /// Returns the column's low 28 bits and moves the rest to the next column.
    #[inline(always)]
    fn take_digit(&mut self) -> u32 {
        let digit = (self.lo & MASK) as u32;
        self.lo = self.hi + (self.lo >> LIMB_BITS);
        self.hi = 0;
        digit
    }
}

/// Σ x_j·y_(len-1-j) for slices of equal length (at most [`CHUNK`] products, each below
/// 2^56), the inner loop of every multiplication.
#[cfg(not(target_arch = "wasm32"))]
#[inline(always)]
fn dot(x: &[u32], y: &[u32]) -> u64 {
    dot_scalar(x, y)
}

/// [`dot`] without SIMD. Slice patterns rather than iterator adapters: as fast in release, and
/// 4x faster in unoptimised test builds; two accumulators let the multiplications overlap.
#[inline(always)]
fn dot_scalar(x: &[u32], y: &[u32]) -> u64 {
    let (mut x, mut y) = (x, y);
    let (mut even, mut odd) = (0u64, 0u64);
    while let ([p0, p1, x_rest @ ..], [y_rest @ .., q1, q0]) = (x, y) {
        even += *p0 as u64 * *q0 as u64;
        odd += *p1 as u64 * *q1 as u64;
        x = x_rest;
        y = y_rest;
    }
    if let ([p], [q]) = (x, y) {
        even += *p as u64 * *q as u64;
    }
    even + odd
}

/// [`dot`] with wasm SIMD128: four 32x32→64-bit products per step (`i64x2.extmul_*_i32x4`,
/// which V8 compiles to `pmuludq`), the y quad reversed by one shuffle. In the same
/// micro-benchmark this made the whole modular exponentiation 1.5-1.9x faster in Envoy's V8
/// (54-85 µs against 95-107 µs); `+simd128` alone, leaving LLVM to vectorise, gained nothing.
/// Two u64 lanes each take at most half of the products, so the lane sums stay below 2^62.
///
/// Every proxy-wasm runtime jwt-edge targets (V8 in Envoy and Istio, Wasmtime and V8 in
/// ngx_wasm_module) runs SIMD128. The result is checked against [`dot_scalar`] in tests run
/// in wasm (`make unit-wasm`), and the whole verification against Wycheproof there.
#[cfg(target_arch = "wasm32")]
#[inline(always)]
fn dot(x: &[u32], y: &[u32]) -> u64 {
    dot_simd(x, y)
}

#[cfg(target_arch = "wasm32")]
#[target_feature(enable = "simd128")]
fn dot_simd(x: &[u32], y: &[u32]) -> u64 {
    use core::arch::wasm32::{
        i32x4_shuffle, u64x2_add, u64x2_extmul_high_u32x4, u64x2_extmul_low_u32x4,
        u64x2_extract_lane, u64x2_splat, v128,
    };
    let len = x.len().min(y.len());
    let quads = len / 4;
    let mut acc = u64x2_splat(0);
    for k in 0..quads {
        let j = 4 * k;
        // SAFETY: j + 4 <= len <= x.len(), and y.len() - j - 4 >= y.len() - len >= 0, so both
        // 16-byte reads are inside their slices; read_unaligned has no alignment requirement.
        let (xv, yv) = unsafe {
            (
                x.as_ptr().add(j).cast::<v128>().read_unaligned(),
                y.as_ptr()
                    .add(y.len() - j - 4)
                    .cast::<v128>()
                    .read_unaligned(),
            )
        };
        // y's quad is y_(len-1-j) ... y_(len-4-j) from the top lane down: reverse it.
        let y_rev = i32x4_shuffle::<3, 2, 1, 0>(yv, yv);
        acc = u64x2_add(acc, u64x2_extmul_low_u32x4(xv, y_rev));
        acc = u64x2_add(acc, u64x2_extmul_high_u32x4(xv, y_rev));
    }
    let done = 4 * quads;
    let tail_x = x.get(done..len).unwrap_or(&[]);
    let tail_y = y.get(..y.len().saturating_sub(done)).unwrap_or(&[]);
    let tail_y = tail_y
        .get(tail_y.len().saturating_sub(tail_x.len())..)
        .unwrap_or(&[]);
    u64x2_extract_lane::<0>(acc) + u64x2_extract_lane::<1>(acc) + dot_scalar(tail_x, tail_y)
}

/// `slice[start..end]`, or empty when out of range (never, by construction of the callers).
#[inline(always)]
fn part(slice: &[u32], start: usize, end: usize) -> &[u32] {
    slice.get(start..end).unwrap_or(&[])
}

/// -n0^-1 mod 2^28 for odd n0, by Newton iteration (each step doubles the correct bits:
/// 3 → 6 → 12 → 24 → 48).
fn neg_inverse(n0: u32) -> u32 {
    let mut inv = n0;
    for _ in 0..4 {
        inv = inv.wrapping_mul(2u32.wrapping_sub(n0.wrapping_mul(inv)));
    }
    inv.wrapping_neg() & MASK as u32
}

/// Big-endian bytes to `limbs` little-endian 28-bit limbs (the value must fit).
fn limbs_from_be(bytes: &[u8], limbs: usize) -> Vec<u32> {
    bigmod_f64::be_to_limbs(bytes, limbs, LIMB_BITS)
        .into_iter()
        .map(|limb| limb as u32)
        .collect()
}

/// Limbs to exactly `size` big-endian bytes (the value must fit).
fn limbs_to_be(limbs: &[u32], size: usize) -> Vec<u8> {
    bigmod_f64::limbs_to_be(limbs.iter().map(|&limb| u64::from(limb)), size, LIMB_BITS)
}

/// Compares two numbers of the same limb count.
fn compare(a: &[u32], b: &[u32]) -> Ordering {
    a.iter().rev().cmp(b.iter().rev())
}

/// a -= b, for a >= b (same limb count).
fn sub_assign(a: &mut [u32], b: &[u32]) {
    let mut borrow = 0u32;
    for (x, &y) in a.iter_mut().zip(b) {
        let diff = x.wrapping_sub(y).wrapping_sub(borrow);
        borrow = diff >> 31;
        *x = diff & MASK as u32;
    }
}

/// a = a mod n, for a below 2n.
fn reduce_once(a: &mut [u32], n: &[u32]) {
    if compare(a, n) != Ordering::Less {
        sub_assign(a, n);
    }
}

/// a = 2a mod n, for a below n.
fn double_mod(a: &mut [u32], n: &[u32]) {
    let mut carry = 0u32;
    for limb in a.iter_mut() {
        let wide = (*limb << 1) | carry;
        carry = wide >> LIMB_BITS;
        *limb = wide & MASK as u32;
    }
    reduce_once(a, n);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::test_rng::TestRng;

    /// The SIMD dot product (the only code that differs between wasm and native) agrees with
    /// the scalar one on every length a multiplication uses and on extreme limbs. Runs in wasm
    /// under `make unit-wasm`; natively both sides are the scalar code.
    #[test]
    fn dot_matches_the_scalar_dot() {
        let mut rng = TestRng(0x9e37_79b9_7f4a_7c15);
        let mut next = || (rng.next_u64() as u32) & MASK as u32;
        let max = MASK as u32;
        for len in 0..=CHUNK {
            for pattern in 0..40 {
                let (x, y): (Vec<u32>, Vec<u32>) = (0..len)
                    .map(|_| match pattern {
                        0 => (max, max),
                        1 => (0, max),
                        2 => (1, 1),
                        _ => (next(), next()),
                    })
                    .unzip();
                let want: u64 = (0..len).map(|j| x[j] as u64 * y[len - 1 - j] as u64).sum();
                assert_eq!(dot_scalar(&x, &y), want, "scalar, len {len}");
                assert_eq!(dot(&x, &y), want, "dot, len {len} pattern {pattern}");
            }
        }
    }

    fn modpow_u128(s: u128, e: u64, n: u128) -> u128 {
        // n < 2^63 here, so products fit.
        let (mut result, mut base, mut e) = (1u128, s % n, e);
        while e > 0 {
            if e & 1 == 1 {
                result = result * base % n;
            }
            base = base * base % n;
            e >>= 1;
        }
        result
    }

    fn be(value: u128, size: usize) -> Vec<u8> {
        value.to_be_bytes()[16 - size..].to_vec()
    }

    #[test]
    fn small_moduli_against_u128() {
        // Moduli of 1 to 3 limbs; exponents 3, 5, 17, 65537, and a long odd one.
        let moduli: [u128; 6] = [
            3,
            1_000_003,
            0x0fff_ffff,
            0x1000_0001,
            (1 << 61) - 1,
            0x7fff_ffff_ffff_ffe7,
        ];
        for n in moduli {
            let size = (128 - n.leading_zeros() as usize).div_ceil(8);
            for e in [3u64, 5, 17, 65_537, 0x1_0000_0001] {
                let key = RsaPublic::new(&be(n, size), e).unwrap();
                assert_eq!(key.size(), size);
                let mut rng = TestRng(0x1234_5678_9abc_def1);
                for _ in 0..200 {
                    let s = (u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64());
                    let base = s % n;
                    let got = key.rsavp1(&be(base, size)).unwrap();
                    assert_eq!(
                        got,
                        be(modpow_u128(base, e, n), size),
                        "n {n} e {e} s {base}"
                    );
                }
                // n - 1, 0, 1 and the out-of-range n itself.
                assert_eq!(key.rsavp1(&be(0, size)).unwrap(), be(0, size));
                assert_eq!(key.rsavp1(&be(1, size)).unwrap(), be(1, size));
                assert_eq!(key.rsavp1(&be(n - 1, size)).unwrap(), be(n - 1, size));
                assert!(key.rsavp1(&be(n, size)).is_none());
                assert!(key.rsavp1(&[0; 40]).is_none());
            }
        }
    }

    #[test]
    fn refuses_bad_parameters() {
        assert_eq!(
            RsaPublic::new(&[0, 0], 3).err(),
            Some(ModulusError::InvalidModulus)
        );
        assert_eq!(
            RsaPublic::new(&[1], 3).err(),
            Some(ModulusError::InvalidModulus)
        );
        assert_eq!(
            RsaPublic::new(&[0xfe], 3).err(),
            Some(ModulusError::InvalidModulus)
        );
        assert_eq!(
            RsaPublic::new(&[0xff], 1).err(),
            Some(ModulusError::ExponentTooSmall)
        );
        assert_eq!(
            RsaPublic::new(&[0xff], 4).err(),
            Some(ModulusError::InvalidExponent)
        );
        // Leading zeros are not part of the size.
        let key = RsaPublic::new(&[0, 0, 0x01, 0x01], 3).unwrap();
        assert_eq!((key.size(), key.bits()), (2, 9));
    }

    #[test]
    fn neg_inverse_is_exact() {
        for n0 in [1u32, 3, 0x0fff_ffff, 0x0123_4567, 0x0aaa_aaab] {
            let inv = neg_inverse(n0);
            assert_eq!(
                n0.wrapping_mul(inv).wrapping_add(1) & MASK as u32,
                0,
                "{n0}"
            );
        }
    }
}
