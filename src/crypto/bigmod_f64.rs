//! RSAVP1 (`s^e mod n`) on double-precision fused multiply-add: 52-bit limbs held in `f64`,
//! two products per `f64x2.relaxed_madd` pair. The same job as [`bigmod`](super::bigmod) with
//! 40 limbs instead of 74 for RSA-2048, so about 3.4x fewer limb products.
//!
//! The technique is Emmart, Zheng and Weems, "Faster Modular Exponentiation Using Double
//! Precision Floating Point Arithmetic on the GPU" (IEEE ARITH 2018), the floating-point
//! cousin of AVX-512 IFMA's 52-bit integer multiply-add, adapted to round-to-nearest (wasm
//! has no rounding-mode control) and to wasm's two-lane vectors.
//!
//! # Representation
//! A number is L limbs of 52 bits, little-endian, each an integer-valued `f64` in
//! [0, 2^52), stored with [`PAD`] zero limbs on each side; every operand is also kept in
//! reversed order, so the column sums of a product scan are element-wise dot products of two
//! ascending runs (no shuffles). R = 2^(52·L) with R > 4n, so Montgomery products of inputs
//! below 2n stay below 2n and no subtraction is needed until the very end (as in `bigmod`).
//!
//! # Why each product is exact
//! For limbs a, b < 2^52, p = a·b < 2^104. With C = 2^104 and `fma` fused (one rounding):
//! - `hi = fma(a, b, C)` lies in [2^104, 2^105), where doubles are spaced 2^52 apart, so
//!   hi = C + k·2^52 with k = round-to-nearest(p / 2^52) ≤ 2^52 - 2 (p ≤ 2^104 - 2^53 + 1
//!   rounds below 2^105 - 2^52). The bit pattern of hi is bits(C) + k: k is read as an
//!   integer by reinterpreting, with no conversion.
//! - `t = C - hi = -k·2^52` is exact (a multiple of 2^52 below 2^104 in magnitude).
//! - `lo = fma(a, b, t) = p - k·2^52` is an integer with |lo| ≤ 2^51 (round to nearest), so
//!   it is exactly representable and the fused operation returns it exactly.
//! - `lo + 1.5·2^52` lies in [2^52, 2^53]. Doubles there are spaced 1 apart and, up to and
//!   including 2^53, their bit patterns are bits(1.5·2^52) + lo: lo is read as a signed
//!   integer by reinterpreting too.
//!
//! So p = k·2^52 + lo exactly. Each lane sums bit patterns as `i64` (wrapping); the known
//! constant per product is subtracted once per column. A column of an L-limb Montgomery
//! product has at most 2L + 1 products, so its true sums stay below 2L·2^52 ≤ 2^61 for the
//! largest accepted modulus (8,192 bits, L = 158): no overflow.
//!
//! If the host's `relaxed_madd` is not fused (the relaxed-SIMD proposal allows either; on
//! x86-64 V8 fuses only on CPUs with FMA3), `hi` and `lo` are wrong. [`available`] therefore
//! checks, once per process, a fusing probe and a known answer against the integer code, and
//! [`bigmod`](super::bigmod) keeps its integer path whenever either fails. Outside wasm the
//! same code runs on `f64::mul_add`, which is always fused (the differential tests use it);
//! native builds (the CLI) still take the integer path, where `mul_add` may be a libm call.
//!
//! # Montgomery multiplication
//! Product scanning with the reduction interleaved column by column, as in `bigmod`: column c
//! of a·b + q·n is summed as k-sums (carried into column c + 1) and lo-sums (column c), q_c
//! chosen from the column's low 52 bits so that the column becomes a multiple of 2^52, and
//! q_c·n_0 is split the same way. Squaring sums each cross product once, doubles the column,
//! and adds the diagonal square.
//!
//! Everything here is public (modulus, exponent, signature, result): the code is variable
//! time on purpose (exponent bits, final comparison with n). Never use it with a secret.

use std::cmp::Ordering;
use std::sync::OnceLock;

use crate::crypto::bigmod::{ModulusError, RsaPublic};

/// Bits per limb.
pub const LIMB_BITS: u32 = 52;
const MASK: u64 = (1 << LIMB_BITS) - 1;
/// Zero limbs on each side of every stored number: a dot product of odd length is extended
/// by one product at its start, which then reads a zero limb.
const PAD: usize = 2;
/// 2^104: `fma(a, b, C_HI)` rounds a·b to a multiple of 2^52.
const C_HI_BITS: u64 = 0x4670_0000_0000_0000;
/// 1.5·2^52: `lo + C_LO` for |lo| ≤ 2^51 is a double whose bit pattern is bits(C_LO) + lo.
const C_LO_BITS: u64 = 0x4338_0000_0000_0000;

/// Two lanes: wasm's `v128` with relaxed SIMD, or a portable stand-in natively.
#[cfg(target_arch = "wasm32")]
mod lanes {
    use core::arch::wasm32::{
        f64x2_add, f64x2_extract_lane, f64x2_relaxed_madd, f64x2_splat, f64x2_sub, i64x2_add,
        i64x2_extract_lane, i64x2_shl, u64x2_splat, v128,
    };

    pub type V = v128;

    /// Two consecutive `f64`s from `p`.
    ///
    /// # Safety
    /// `p` and `p + 1` must be inside one allocation.
    #[inline]
    #[target_feature(enable = "simd128")]
    pub unsafe fn load(p: *const f64) -> V {
        // SAFETY: the caller guarantees the 16 bytes are readable; no alignment is needed.
        unsafe { p.cast::<V>().read_unaligned() }
    }

    #[inline]
    #[target_feature(enable = "simd128")]
    pub fn splat(x: f64) -> V {
        f64x2_splat(x)
    }

    #[inline]
    #[target_feature(enable = "simd128")]
    pub fn splat_bits(x: u64) -> V {
        u64x2_splat(x)
    }

    /// a·b + c, fused or not depending on the host (see the module doc).
    #[inline]
    #[target_feature(enable = "simd128,relaxed-simd")]
    pub fn madd(a: V, b: V, c: V) -> V {
        f64x2_relaxed_madd(a, b, c)
    }

    #[inline]
    #[target_feature(enable = "simd128")]
    pub fn fsub(a: V, b: V) -> V {
        f64x2_sub(a, b)
    }

    #[inline]
    #[target_feature(enable = "simd128")]
    pub fn fadd(a: V, b: V) -> V {
        f64x2_add(a, b)
    }

    /// Lane-wise wrapping sum of the bit patterns as `i64`.
    #[inline]
    #[target_feature(enable = "simd128")]
    pub fn iadd(a: V, b: V) -> V {
        i64x2_add(a, b)
    }

    #[inline]
    #[target_feature(enable = "simd128")]
    pub fn ishl1(a: V) -> V {
        i64x2_shl(a, 1)
    }

    /// The wrapping sum of both lanes as `i64` bit patterns.
    #[inline]
    #[target_feature(enable = "simd128")]
    pub fn hsum(a: V) -> u64 {
        (i64x2_extract_lane::<0>(a) as u64).wrapping_add(i64x2_extract_lane::<1>(a) as u64)
    }

    #[inline]
    #[target_feature(enable = "simd128")]
    pub fn lane0(a: V) -> f64 {
        f64x2_extract_lane::<0>(a)
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod lanes {
    /// Two `f64` lanes; integer views go through the bit patterns.
    #[derive(Clone, Copy)]
    pub struct V([f64; 2]);

    /// # Safety
    /// `p` and `p + 1` must be inside one allocation.
    #[inline]
    pub unsafe fn load(p: *const f64) -> V {
        // SAFETY: the caller guarantees both reads are in bounds.
        unsafe { V([p.read(), p.add(1).read()]) }
    }

    #[inline]
    pub fn splat(x: f64) -> V {
        V([x, x])
    }

    #[inline]
    pub fn splat_bits(x: u64) -> V {
        splat(f64::from_bits(x))
    }

    /// a·b + c with one rounding (`mul_add` is always fused).
    #[inline]
    pub fn madd(a: V, b: V, c: V) -> V {
        V([
            a.0[0].mul_add(b.0[0], c.0[0]),
            a.0[1].mul_add(b.0[1], c.0[1]),
        ])
    }

    #[inline]
    pub fn fsub(a: V, b: V) -> V {
        V([a.0[0] - b.0[0], a.0[1] - b.0[1]])
    }

    #[inline]
    pub fn fadd(a: V, b: V) -> V {
        V([a.0[0] + b.0[0], a.0[1] + b.0[1]])
    }

    fn int(a: V, b: V, f: impl Fn(u64, u64) -> u64) -> V {
        let ([a0, a1], [b0, b1]) = (a.0, b.0);
        let lane = |x: f64, y: f64| f64::from_bits(f(x.to_bits(), y.to_bits()));
        V([lane(a0, b0), lane(a1, b1)])
    }

    #[inline]
    pub fn iadd(a: V, b: V) -> V {
        int(a, b, u64::wrapping_add)
    }

    #[inline]
    pub fn ishl1(a: V) -> V {
        int(a, a, |x, _| x << 1)
    }

    #[inline]
    pub fn hsum(a: V) -> u64 {
        a.0[0].to_bits().wrapping_add(a.0[1].to_bits())
    }

    #[inline]
    pub fn lane0(a: V) -> f64 {
        a.0[0]
    }
}

use lanes::V;

/// (Σk, Σlo) of one column as integers (Σlo may be negative), from its lane sums: the bit
/// patterns of `hi` (k-sums, for the next column) and of `lo + C_LO` (lo-sums, for this
/// column) over `products` lane products.
#[inline]
#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
fn column_sums(hi: V, lo: V, products: u64) -> (i64, i64) {
    let k = lanes::hsum(hi).wrapping_sub(products.wrapping_mul(C_HI_BITS));
    let lo = lanes::hsum(lo).wrapping_sub(products.wrapping_mul(C_LO_BITS));
    (k as i64, lo as i64)
}

/// (C_HI, C_LO) in both lanes.
#[inline]
#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
fn consts() -> (V, V) {
    (lanes::splat_bits(C_HI_BITS), lanes::splat_bits(C_LO_BITS))
}

/// Adds the two lane products a·b to the sums `hi_acc` and `lo_acc` (the four steps of the
/// module doc).
#[inline]
#[cfg_attr(
    target_arch = "wasm32",
    target_feature(enable = "simd128,relaxed-simd")
)]
fn mul_acc(a: V, b: V, hi_acc: &mut V, lo_acc: &mut V, c_hi: V, c_lo: V) {
    let hi = lanes::madd(a, b, c_hi);
    let t = lanes::fsub(c_hi, hi);
    let lo = lanes::fadd(lanes::madd(a, b, t), c_lo);
    *hi_acc = lanes::iadd(*hi_acc, hi);
    *lo_acc = lanes::iadd(*lo_acc, lo);
}

/// (k, lo) with a·b = k·2^52 + lo, for limbs a, b < 2^52 (|lo| ≤ 2^51): the steps of
/// [`mul_acc`] on lane 0. A macro, not a function: the callers run once per column and
/// need it inline at any LLVM inlining threshold, which `#[inline(always)]` cannot promise
/// for a `#[target_feature]` function (it must be expanded inside one, for the lane
/// operations to inline).
macro_rules! split_product {
    ($a:expr, $b:expr) => {{
        let (c_hi, c_lo) = (lanes::splat_bits(C_HI_BITS), lanes::splat_bits(C_LO_BITS));
        let (va, vb) = (lanes::splat($a), lanes::splat($b));
        let hi = lanes::madd(va, vb, c_hi);
        let t = lanes::fsub(c_hi, hi);
        let lo = lanes::fadd(lanes::madd(va, vb, t), c_lo);
        (
            lanes::lane0(hi).to_bits().wrapping_sub(C_HI_BITS) as i64,
            lanes::lane0(lo).to_bits().wrapping_sub(C_LO_BITS) as i64,
        )
    }};
}

/// Whether `2·pairs` limbs from index `start` fit in a buffer of `len` limbs.
fn in_bounds(start: usize, pairs: usize, len: usize) -> bool {
    start < len && start + 2 * pairs <= len
}

/// A number in the Montgomery code's form: forward and reversed limbs, both padded.
#[derive(Clone)]
struct Num {
    fwd: Vec<f64>,
    rev: Vec<f64>,
}

impl Num {
    fn zero(limbs: usize) -> Num {
        Num {
            fwd: vec![0.0; limbs + 2 * PAD],
            rev: vec![0.0; limbs + 2 * PAD],
        }
    }

    fn from_limbs(limbs: &[u64]) -> Num {
        let mut num = Num::zero(limbs.len());
        for (i, &limb) in limbs.iter().enumerate() {
            num.set(limbs.len(), i, limb);
        }
        num
    }

    #[inline]
    fn set(&mut self, limbs: usize, i: usize, limb: u64) {
        let value = limb as f64;
        if let Some(slot) = self.fwd.get_mut(PAD + i) {
            *slot = value;
        }
        if let Some(slot) = self.rev.get_mut(PAD + limbs - 1 - i) {
            *slot = value;
        }
    }

    fn limbs(&self, limbs: usize) -> Vec<u64> {
        self.fwd
            .get(PAD..PAD + limbs)
            .unwrap_or(&[])
            .iter()
            .map(|&x| x as u64)
            .collect()
    }
}

/// An RSA public key prepared for RSAVP1 on 52-bit limbs.
#[derive(Clone)]
pub struct RsaPublicF64 {
    limbs: usize,
    /// n as 52-bit limbs, for the final comparison and subtraction.
    n: Vec<u64>,
    /// n in the padded forward/reversed form.
    n_num: Num,
    n0: f64,
    /// -n^-1 mod 2^52.
    n_prime: u64,
    /// R^2 mod n, fully reduced.
    r2: Num,
    e: u64,
    /// n as big-endian bytes without leading zeros.
    n_bytes: Vec<u8>,
}

/// Scratch for one exponentiation: the quotient limbs q_c of a Montgomery product.
struct Scratch {
    q: Vec<f64>,
}

impl RsaPublicF64 {
    /// Prepares the modulus (big-endian, leading zeros allowed) and the exponent, with the
    /// same requirements as [`bigmod::RsaPublic::new`](super::bigmod::RsaPublic::new).
    #[inline(never)] // called from two places; one copy (module size)
    pub fn new(n: &[u8], e: u64) -> Result<RsaPublicF64, ModulusError> {
        let n_bytes: Vec<u8> = n.iter().copied().skip_while(|b| *b == 0).collect();
        let bits = match n_bytes.first() {
            Some(top) => n_bytes.len() * 8 - top.leading_zeros() as usize,
            None => 0,
        };
        if n_bytes.last().is_none_or(|b| b & 1 == 0) || bits < 2 {
            return Err(ModulusError::InvalidModulus);
        }
        if e < 2 {
            return Err(ModulusError::ExponentTooSmall);
        }
        if e & 1 == 0 {
            return Err(ModulusError::InvalidExponent);
        }
        // R = 2^(52·L) > 4n.
        let limbs = (bits + 2).div_ceil(LIMB_BITS as usize);
        let n_limbs = be_to_limbs(&n_bytes, limbs, LIMB_BITS);
        let n0 = n_limbs.first().copied().unwrap_or(1);
        let mut key = RsaPublicF64 {
            limbs,
            n_num: Num::from_limbs(&n_limbs),
            n0: n0 as f64,
            n_prime: neg_inverse(n0),
            n: n_limbs,
            r2: Num::zero(limbs),
            e,
            n_bytes,
        };
        key.r2 = key.compute_r2()?;
        Ok(key)
    }

    /// Modulus size in bytes.
    pub fn size(&self) -> usize {
        self.n_bytes.len()
    }

    fn scratch(&self) -> Scratch {
        Scratch {
            q: vec![0.0; self.limbs + 2 * PAD],
        }
    }

    /// RSAVP1: `s^e mod n` as exactly [`size`](Self::size) big-endian bytes; `None` when `s`
    /// is not exactly `size` bytes or not below n.
    #[inline(never)] // as `new`
    pub fn rsavp1(&self, s: &[u8]) -> Option<Vec<u8>> {
        if s.len() != self.n_bytes.len() || s >= self.n_bytes.as_slice() {
            return None;
        }
        let base = Num::from_limbs(&be_to_limbs(s, self.limbs, LIMB_BITS));
        let mut scratch = self.scratch();
        // s·R mod n (below 2n), raised to e - 1 in the domain, times plain s: the last
        // multiplication leaves the domain.
        let (mut x, mut t) = (Num::zero(self.limbs), Num::zero(self.limbs));
        self.mont_mul(&base, &self.r2, &mut x, &mut scratch);
        self.pow(&mut x, &mut t, self.e - 1, &mut scratch);
        self.mont_mul(&x, &base, &mut t, &mut scratch);
        Some(limbs_to_be(
            self.reduced(&t).into_iter(),
            self.n_bytes.len(),
            LIMB_BITS,
        ))
    }

    /// x = x^exp in the Montgomery domain (x = Mont(b) gives Mont(b^exp)), for exp ≥ 1, by
    /// left-to-right square-and-multiply; `t` is scratch of x's size.
    fn pow(&self, x: &mut Num, t: &mut Num, exp: u64, scratch: &mut Scratch) {
        // The base is kept only when a multiplication needs it: e - 1 = 2^16 for e = 65537
        // takes squarings alone (allocations are a visible part of a verification in V8).
        let base = (exp.count_ones() > 1).then(|| x.clone());
        for bit in (0..63 - exp.leading_zeros()).rev() {
            self.mont_sqr(x, t, scratch);
            std::mem::swap(x, t);
            if let Some(base) = base.as_ref().filter(|_| (exp >> bit) & 1 == 1) {
                self.mont_mul(x, base, t, scratch);
                std::mem::swap(x, t);
            }
        }
    }

    /// The limbs of x (below 2n) reduced below n.
    fn reduced(&self, x: &Num) -> Vec<u64> {
        let mut limbs = x.limbs(self.limbs);
        if compare(&limbs, &self.n) != Ordering::Less {
            sub_assign(&mut limbs, &self.n);
        }
        limbs
    }

    /// R^2 mod n = 2^(104·L) mod n = (2^(8·L))^13 mod n, by the integer code (RSAVP1 with
    /// e = 13), which is in the module anyway: less code than a second R^2 routine (module
    /// size). Needs 2^(8·L) < n: true for every n of more than 8·L bits, so for every n
    /// above 2^8 (L = 1 up to 50 bits, then 8·L < 52·(L-1)); refused otherwise.
    fn compute_r2(&self) -> Result<Num, ModulusError> {
        let size = self.n_bytes.len();
        let shift = 8 * self.limbs;
        // 2^shift as `size` big-endian bytes: byte size-1-shift/8 is 1.
        let mut base = vec![0u8; size];
        match size
            .checked_sub(1 + shift / 8)
            .and_then(|i| base.get_mut(i))
        {
            Some(byte) => *byte = 1,
            None => return Err(ModulusError::InvalidModulus),
        }
        let r2 = RsaPublic::new_integer(&self.n_bytes, 13)?
            .rsavp1_integer(&base)
            .ok_or(ModulusError::InvalidModulus)?;
        Ok(Num::from_limbs(&be_to_limbs(&r2, self.limbs, LIMB_BITS)))
    }

    /// out = a·b·R^-1 mod n, below 2n for a, b below 2n.
    fn mont_mul(&self, a: &Num, b: &Num, out: &mut Num, scratch: &mut Scratch) {
        self.mont::<false>(a, b, out, scratch);
    }

    /// out = a^2·R^-1 mod n, below 2n for a below 2n.
    fn mont_sqr(&self, a: &Num, out: &mut Num, scratch: &mut Scratch) {
        self.mont::<true>(a, a, out, scratch);
    }

    /// out = a·b·R^-1 mod n; with `SQUARE` (b = a), each cross product a_j·a_(c-j), j < c - j,
    /// is computed once and the column doubled, then the diagonal square added. One routine,
    /// never inlined, in two copies: with the choice a runtime flag, RSAVP1 took 35.1 µs in
    /// Envoy's V8 (`make bench-micro`, 3 rounds), 32.7 µs with a copy for each (~1.5 KB more).
    #[inline(never)]
    #[cfg_attr(
        target_arch = "wasm32",
        target_feature(enable = "simd128,relaxed-simd")
    )]
    fn mont<const SQUARE: bool>(&self, a: &Num, b: &Num, out: &mut Num, scratch: &mut Scratch) {
        let l = self.limbs;
        let q = &mut scratch.q;
        let len = l + 2 * PAD;
        let n = &self.n_num.rev;
        if [a.fwd.len(), b.rev.len(), q.len(), n.len()] != [len; 4] {
            debug_assert!(false, "operands of the wrong size");
            return;
        }
        q.fill(0.0);
        let mut carry = 0i64;
        let mut k_prev = 0i64;
        let (c_hi, c_lo) = consts();
        let (x, y, np) = (a.fwd.as_ptr(), b.rev.as_ptr(), n.as_ptr());
        let zero = lanes::splat_bits(0);
        // Each column's two dot products run here, over raw pointers into the four operands
        // (their lengths checked once above), in one loop over their common pairs. History,
        // RSAVP1 (s^65537, 2048-bit) in Envoy 1.40's V8 14.6 (`make bench-micro`) and Node
        // 20's V8 11.3: a function per run, not inlined, taking the sums through memory:
        // 38.6 / 41.3 µs; the runs inline, one after the other: 37.3 / 33.4 µs (sums as
        // fields of a struct local: 53 µs in Node 20, a 4-way unrolled loop: 36); one loop
        // over both runs: 35.1 / 31.8 µs; a copy for squares and one for products: 32.7;
        // the longer run known: 32.3; the columns below L and from L on in two loops: 31.9
        // (Envoy). What is left is throughput: making each q_c independent of its column
        // (wrong results, an experiment) saved only ~7 % (Node 20: 29.6 -> 27.6 µs).
        // Column c of a·b + q·n plus the carries into it: `low` is max(0, c + 1 - L), the
        // product run ends at `end_a` (c/2 rounded up for a square, else min(c + 1, L)) and
        // the reduction at `end_q` = min(c, L). A macro: the columns below L and from L on
        // are two loops, where these bounds are simpler and no column asks which half it is in.
        macro_rules! column {
            ($c:expr, $low:expr, $end_a:expr, $end_q:expr) => {{
                // Column c sums x_j·y_(c-j) for j in [low, end_a) and the reduction q_j·n_(c-j)
                // for j in [low, end_q) (q_c is not chosen yet), in one loop over their common
                // pairs. Both runs start at `start`: low, or low - 1 when the x·y run is odd,
                // where x_-1 (low = 0) or y_L (low = c + 1 - L) is a zero pad limb, and so is
                // q_-1 or n_L. The q·n run is rounded up to whole pairs at its end instead: q_j
                // is zero for j ≥ c (not chosen yet) and j = L (pad).
                let (c, low, end_a, end_q): (usize, usize, usize, usize) =
                    ($c, $low, $end_a, $end_q);
                let start = if end_a > low {
                    low.wrapping_sub((end_a - low) % 2)
                } else {
                    low
                };
                let pairs_a = if end_a > low {
                    end_a.wrapping_sub(start) / 2
                } else {
                    0
                };
                let pairs_q = if end_q > low {
                    end_q.wrapping_sub(start).div_ceil(2)
                } else {
                    0
                };
                let xi = PAD.wrapping_add(start);
                // y_(c-j) is at PAD + L - 1 - (c - j).
                let yi = (PAD + l - 1).wrapping_add(start).wrapping_sub(c);
                debug_assert!(
                    in_bounds(xi, pairs_a.max(pairs_q), len)
                        && in_bounds(yi, pairs_a.max(pairs_q), len),
                    "column {c}: runs outside the padded limbs"
                );
                debug_assert!(if SQUARE {
                    pairs_a <= pairs_q
                } else {
                    pairs_q <= pairs_a
                });
                let (mut ha, mut la, mut hq, mut lq) = (zero, zero, zero, zero);
                // SAFETY: start ≥ low - 1 ≥ -1 and both runs end at most at L (the q·n run's
                // rounding reads j = end_q ≤ L at most), so PAD - 1 ≤ xi and xi + 2·pairs ≤
                // PAD + L + 1; c - j ≥ -1 and ≤ L for the j read, so yi ≥ PAD - 1 and
                // yi + 2·pairs ≤ PAD + L + 1: inside the L + 2·PAD limbs checked above.
                unsafe {
                    let (mut xa, mut ya, mut xq, mut yq) =
                        (x.add(xi), y.add(yi), q.as_ptr().add(xi), np.add(yi));
                    // The product run is the longer one for a multiplication (its end is c + 1
                    // or L, the reduction's c or L), the shorter for a square (its end is c/2).
                    let common = if SQUARE { pairs_a } else { pairs_q };
                    // One pair of lanes of a run: x_j·y_(c-j) and the next, into (h, l).
                    macro_rules! pair {
                        ($x:ident, $y:ident, $h:ident, $l:ident) => {
                            mul_acc(
                                lanes::load($x),
                                lanes::load($y),
                                &mut $h,
                                &mut $l,
                                c_hi,
                                c_lo,
                            )
                        };
                    }
                    for _ in 0..common {
                        pair!(xa, ya, ha, la);
                        pair!(xq, yq, hq, lq);
                        (xa, ya, xq, yq) = (xa.add(2), ya.add(2), xq.add(2), yq.add(2));
                    }
                    if SQUARE {
                        for _ in common..pairs_q {
                            pair!(xq, yq, hq, lq);
                            (xq, yq) = (xq.add(2), yq.add(2));
                        }
                    } else {
                        for _ in common..pairs_a {
                            pair!(xa, ya, ha, la);
                            (xa, ya) = (xa.add(2), ya.add(2));
                        }
                    }
                }
                let mut products_a = 2 * pairs_a as u64;
                if SQUARE {
                    ha = lanes::ishl1(ha);
                    la = lanes::ishl1(la);
                    products_a *= 2;
                }
                let (hi, lo) = (lanes::iadd(ha, hq), lanes::iadd(la, lq));
                let products = products_a + 2 * pairs_q as u64;
                let (mut k, mut lo) = column_sums(hi, lo, products);
                if SQUARE && c % 2 == 0 {
                    if let Some(&limb) = a.fwd.get(PAD + c / 2) {
                        let (dk, dl) = split_product!(limb, limb);
                        k += dk;
                        lo += dl;
                    }
                }

                let column = lo.wrapping_add(k_prev).wrapping_add(carry);
                k_prev = k;
                column
            }};
        }
        for c in 0..l {
            let column = column!(c, 0, if SQUARE { c.div_ceil(2) } else { c + 1 }, c);
            carry = self.reduce_column(column, c, q);
        }
        for c in l..2 * l {
            let column = column!(c, c + 1 - l, if SQUARE { c.div_ceil(2) } else { l }, l);
            out.set(l, c - l, column as u64 & MASK);
            carry = column >> LIMB_BITS;
        }
    }

    /// Chooses q_c so that column c becomes a multiple of 2^52, records it, and returns the
    /// carry into column c + 1 (q_c·n_0 included).
    #[inline]
    #[cfg_attr(
        target_arch = "wasm32",
        target_feature(enable = "simd128,relaxed-simd")
    )]
    fn reduce_column(&self, column: i64, c: usize, q: &mut [f64]) -> i64 {
        let digit = (column as u64).wrapping_mul(self.n_prime) & MASK;
        let digit_f = digit as f64;
        if let Some(slot) = q.get_mut(PAD + c) {
            *slot = digit_f;
        }
        let (k, lo) = split_product!(digit_f, self.n0);
        // column + lo ≡ 0 mod 2^52: the shift is exact.
        (column.wrapping_add(lo) >> LIMB_BITS).wrapping_add(k)
    }
}

/// -n0^-1 mod 2^52 for odd n0, by Newton iteration (3 → 6 → 12 → 24 → 48 → 96 bits).
fn neg_inverse(n0: u64) -> u64 {
    let mut inv = n0;
    for _ in 0..5 {
        inv = inv.wrapping_mul(2u64.wrapping_sub(n0.wrapping_mul(inv)));
    }
    inv.wrapping_neg() & MASK
}

/// Big-endian bytes to `limbs` little-endian limbs of `bits` (≤ 56) bits; the value must
/// fit. Shared with `bigmod` (28-bit limbs): one copy in the module.
pub(crate) fn be_to_limbs(bytes: &[u8], limbs: usize, bits: u32) -> Vec<u64> {
    let mask = (1u64 << bits) - 1;
    let mut out = Vec::with_capacity(limbs);
    let mut buffer: u64 = 0;
    let mut filled = 0;
    for &byte in bytes.iter().rev() {
        buffer |= u64::from(byte) << filled;
        filled += 8;
        if filled >= bits {
            out.push(buffer & mask);
            buffer >>= bits;
            filled -= bits;
        }
    }
    if filled > 0 {
        out.push(buffer);
    }
    out.resize(limbs, 0);
    out
}

/// Limbs of `bits` (≤ 56) bits to exactly `size` big-endian bytes; the value must fit.
/// Shared with `bigmod`.
pub(crate) fn limbs_to_be(limbs: impl Iterator<Item = u64>, size: usize, bits: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(size + 8);
    let mut buffer: u64 = 0;
    let mut filled = 0;
    for limb in limbs {
        // filled < 8 here, so the limb fits above it.
        buffer |= limb << filled;
        filled += bits;
        while filled >= 8 {
            out.push(buffer as u8);
            buffer >>= 8;
            filled -= 8;
        }
    }
    if filled > 0 {
        out.push(buffer as u8);
    }
    out.resize(size, 0);
    out.reverse();
    out
}

fn compare(a: &[u64], b: &[u64]) -> Ordering {
    a.iter().rev().cmp(b.iter().rev())
}

/// a -= b for a >= b, same limb count.
fn sub_assign(a: &mut [u64], b: &[u64]) {
    let mut borrow = 0u64;
    for (x, &y) in a.iter_mut().zip(b) {
        let diff = x.wrapping_sub(y).wrapping_sub(borrow);
        borrow = diff >> 63;
        *x = diff & MASK;
    }
}

/// Whether this process uses [`RsaPublicF64`]: in wasm, when `relaxed_madd` is fused here
/// ([`fused`]) and a known answer matches the integer code ([`known_answer`]); computed once.
/// Never natively: there the integer code is the faster choice (`mul_add` may be a libm call
/// without `-C target-feature=+fma`), and the tests call [`RsaPublicF64`] directly.
///
/// Only with the `rsa-fma` cargo feature (on by default, so in the shipped module: every host
/// it claims loads relaxed SIMD, integration-tests/test_rsa_arithmetic.py); without it the
/// module holds no relaxed-SIMD instruction at all.
pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        cfg!(all(target_arch = "wasm32", feature = "rsa-fma")) && fused() && known_answer()
    })
}

/// The fusing probe: (1 + 2^-52)^2 - (1 + 2^-51) is 2^-104 with one rounding, 0 with two.
/// The operands go through `black_box` so that neither rustc nor the engine can fold it.
#[cfg_attr(
    target_arch = "wasm32",
    target_feature(enable = "simd128,relaxed-simd")
)]
pub fn fused() -> bool {
    let a = std::hint::black_box(1.0 + f64::EPSILON);
    let c = std::hint::black_box(-(1.0 + 2.0 * f64::EPSILON));
    let r = lanes::madd(lanes::splat(a), lanes::splat(a), lanes::splat(c));
    lanes::lane0(r) == f64::EPSILON * f64::EPSILON
}

/// RSAVP1 with e = 65537 under a fixed pseudo-random 2048-bit modulus n, of n with its top
/// bit cleared, compared with the integer code: covers the squaring, the multiplication, the
/// conversions and R^2, in well under a millisecond, once per process.
pub fn known_answer() -> bool {
    let mut state = 0x243f_6a88_85a3_08d3u64;
    let mut n = [0u8; 256];
    for byte in n.iter_mut() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *byte = state as u8;
    }
    let mut s = n;
    let ([n_top, .., n_low], [s_top, ..]) = (&mut n, &mut s);
    *n_top |= 0x80;
    *n_low |= 1;
    *s_top &= 0x7f;
    match (
        RsaPublic::new_integer(&n, 65_537),
        RsaPublicF64::new(&n, 65_537),
    ) {
        (Ok(integer), Ok(fma)) => {
            let want = integer.rsavp1_integer(&s);
            want.is_some() && fma.rsavp1(&s) == want
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn bytes(&mut self, len: usize) -> Vec<u8> {
            (0..len).map(|_| self.next() as u8).collect()
        }
    }

    #[cfg_attr(
        target_arch = "wasm32",
        target_feature(enable = "simd128,relaxed-simd")
    )]
    fn split_product(a: f64, b: f64) -> (i64, i64) {
        split_product!(a, b)
    }

    /// The exact split of every limb product, on the values where rounding decides: ties
    /// (p mod 2^52 = 2^51, which rounds to even and gives lo = ±2^51), the largest limbs,
    /// powers of two, and random limbs. Runs on `relaxed_madd` under `make unit-wasm`.
    #[test]
    fn split_product_is_exact() {
        let max = MASK;
        let mut values = vec![
            0,
            1,
            2,
            3,
            max,
            max - 1,
            1 << 51,
            (1 << 51) + 1,
            (1 << 51) - 1,
        ];
        values.extend((0..52).map(|i| 1u64 << i));
        values.extend((0..52).map(|i| max >> i));
        let mut rng = Rng(0x1234_5678_9abc_def1);
        values.extend((0..60).map(|_| rng.next() & MASK));
        // a·b with p mod 2^52 = 2^51: a = 2^26, b = 2^25·(2k + 1).
        values.extend([1 << 26, 3 << 25, 5 << 25, (max >> 27) << 25 | 1 << 25]);
        let mut ties = 0;
        for &a in &values {
            for &b in &values {
                let (k, lo) = split_product(a as f64, b as f64);
                let p = u128::from(a) * u128::from(b);
                assert!(lo.unsigned_abs() <= 1 << 51, "{a} {b}");
                assert!((0..(1 << 52) - 1).contains(&k), "{a} {b}");
                let got = (i128::from(k) << 52) + i128::from(lo);
                assert_eq!(got, p as i128, "{a} * {b}");
                ties += usize::from(lo.unsigned_abs() == 1 << 51);
            }
        }
        assert!(ties > 0, "no tie case exercised");
    }

    /// Which arithmetic new keys get: the FMA one exactly in wasm with the `rsa-fma` feature
    /// (so `make unit-wasm`'s Wycheproof and scenario runs go through it), else the integer
    /// one. Fails on a wasm host whose `relaxed_madd` is not fused: the FMA path would go
    /// untested there.
    #[test]
    fn keys_get_the_expected_arithmetic() {
        use crate::crypto::bigmod::Arithmetic;
        let key = RsaPublic::new(&[0x01, 0x01], 3).unwrap();
        if cfg!(all(target_arch = "wasm32", feature = "rsa-fma")) {
            assert!(fused(), "relaxed_madd is not fused on this host");
            assert_eq!(Arithmetic::current(), Arithmetic::FusedMultiplyAdd);
            assert_eq!(key.arithmetic(), Arithmetic::FusedMultiplyAdd);
        } else {
            assert_eq!(Arithmetic::current(), Arithmetic::Integer);
            assert_eq!(key.arithmetic(), Arithmetic::Integer);
        }
    }

    #[test]
    fn probe_and_known_answer() {
        assert!(fused());
        assert!(known_answer());
    }

    fn be(value: u128, size: usize) -> Vec<u8> {
        value.to_be_bytes()[16 - size..].to_vec()
    }

    fn modpow_u128(s: u128, e: u64, n: u128) -> u128 {
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

    /// Moduli of 1 and 2 limbs (L = 1, 2: every column range at its edge).
    #[test]
    fn small_moduli_against_u128() {
        let moduli: [u128; 6] = [
            257,
            1_000_003,
            (1 << 50) - 27,
            (1 << 50) + 1,
            (1 << 61) - 1,
            0x7fff_ffff_ffff_ffe7,
        ];
        for n in moduli {
            let size = (128 - n.leading_zeros() as usize).div_ceil(8);
            for e in [3u64, 5, 17, 65_537, 0x1_0000_0001] {
                let key = RsaPublicF64::new(&be(n, size), e).unwrap();
                let mut s: u128 = 0x1234_5678_9abc_def1;
                for _ in 0..100 {
                    s = s
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    let base = s % n;
                    let got = key.rsavp1(&be(base, size)).unwrap();
                    assert_eq!(got, be(modpow_u128(base, e, n), size), "n {n} e {e}");
                }
                assert_eq!(key.rsavp1(&be(0, size)).unwrap(), be(0, size));
                assert_eq!(key.rsavp1(&be(n - 1, size)).unwrap(), be(n - 1, size));
                assert!(key.rsavp1(&be(n, size)).is_none());
                assert!(key.rsavp1(&[0; 40]).is_none());
            }
        }
    }

    /// Random moduli at every limb count from 2 to 20 limbs and at the RSA sizes, against the
    /// integer code: 4 values per modulus by default; with `RSA_DIFFERENTIAL_FULL` set, more
    /// moduli until 100,000 cases (meant for wasm, where this runs on `relaxed_madd` against
    /// the SIMD128 integer code: `RSA_DIFFERENTIAL_FULL=1 make unit-wasm`; natively the
    /// 100,000 cases against the `rsa` crate are in tests/rsa_differential.rs).
    #[test]
    fn random_moduli_against_integer() {
        let full = std::env::var_os("RSA_DIFFERENTIAL_FULL").is_some();
        let mut rng = Rng(0x0bad_5eed_0000_0001);
        let mut sizes: Vec<usize> = (8..=130).step_by(3).collect();
        sizes.extend([256, 257, 384, 512]);
        let mut cases = 0;
        let mut round = 0;
        while round == 0 || (full && cases < 100_000) {
            round += 1;
            for &size in &sizes {
                cases += check_random_modulus(&mut rng, size, if full { 20 } else { 4 });
            }
        }
        println!("{cases} cases, FMA arithmetic against the integer one");
    }

    /// One random modulus of `size` bytes (all ones for 257), `values` values below it.
    fn check_random_modulus(rng: &mut Rng, size: usize, values: usize) -> usize {
        let mut n = rng.bytes(size);
        n[0] |= 0x80;
        n[size - 1] |= 1;
        if size == 257 {
            n.iter_mut().for_each(|b| *b = 0xff);
        }
        let e = if size % 2 == 0 { 65_537 } else { 3 };
        let int = RsaPublic::new_integer(&n, e).unwrap();
        let fma = RsaPublicF64::new(&n, e).unwrap();
        for i in 0..values {
            let mut s = rng.bytes(size);
            s[0] &= 0x7f;
            if i == 1 {
                s = n.clone();
                s[size - 1] -= 1;
            }
            assert_eq!(
                fma.rsavp1(&s),
                int.rsavp1_integer(&s),
                "size {size} case {i}"
            );
        }
        values
    }
}
