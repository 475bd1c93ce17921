//! Arithmetic modulo the P-256 field prime p = 2^256 − 2^224 + 2^192 + 2^96 − 1, for ES256
//! verification in wasm ([`p256_tables`](crate::crypto::p256_tables)).
//!
//! Design (the same reasoning and measurements as [`bigmod`](crate::crypto::bigmod)):
//! - wasm has no 64×64→128-bit multiply, so p256's 64-bit fiat-crypto code pays for an
//!   emulated one on every limb product. Here an element is 9 limbs of 29 bits held in `u32`
//!   (261 bits): a limb product is below 2^58, so a `u64` column sums all 9 products of a
//!   multiplication and the reduction's own products without any carry, and carries once per
//!   column ("lazy carries").
//! - Montgomery multiplication with R = 2^261. Because p ≡ −1 mod 2^96, −p⁻¹ ≡ 1 mod 2^29:
//!   each reduction digit is just the column's low 29 bits, and p's limbs are sparse (two are
//!   zero, one a power of two), which the compiler folds into shifts and adds.
//! - R > 4p, so the product of two values below 2p is again below 2p: every element is kept
//!   in [0, 2p) with each limb below 2^29 (the top one below 2^26), and only comparisons and
//!   encoding reduce to [0, p).
//! - Elements are stored in Montgomery form a·R mod p; [`Fe::from_be_bytes`] and
//!   [`Fe::to_be_bytes`] convert, and the first refuses a non-canonical encoding (≥ p).
//!
//! **Variable time, on purpose.** Additions pick one of two candidates by sign,
//! [`Fe::invert`] is a plain exponentiation and equality is early-exit. Every value handled in
//! verification is public (key, signature, digest), so that leaks nothing; this module must
//! never be used with a secret (signing, ECDH).

use crate::crypto::limbs::{self, narrow, widen};

/// Bits per limb.
const LIMB_BITS: u32 = 29;
const MASK: u64 = (1 << LIMB_BITS) - 1;
/// Limbs per element: 9 · 29 = 261 bits, so R = 2^261 > 4p.
const LIMBS: usize = 9;

/// p in 29-bit limbs, little-endian.
const P: [u64; LIMBS] = [
    0x1fff_ffff,
    0x1fff_ffff,
    0x1fff_ffff,
    0x1ff,
    0,
    0,
    0x4_0000,
    0x1fe0_0000,
    0xff_ffff,
];
/// 2p in 29-bit limbs.
const TWO_P: [u64; LIMBS] = [
    0x1fff_fffe,
    0x1fff_ffff,
    0x1fff_ffff,
    0x3ff,
    0,
    0,
    0x8_0000,
    0x1fc0_0000,
    0x1ff_ffff,
];
/// R² mod p, to bring a number into Montgomery form.
const R2: Fe = Fe([
    0xc00,
    0,
    0x1fff_0000,
    0x1fdf_ffff,
    0x1fbf_ffff,
    0x1fff_ffff,
    0x1fff_ffff,
    0x1fff_fffe,
    0x13,
]);

/// An element of GF(p) in Montgomery form: limbs of a·R mod p, value in [0, 2p).
#[derive(Clone, Copy, Debug)]
pub struct Fe([u32; LIMBS]);

impl Fe {
    /// 0.
    pub const ZERO: Fe = Fe([0; LIMBS]);
    /// 1, that is R mod p.
    pub const ONE: Fe = Fe([
        0x20,
        0,
        0,
        0x1fff_c000,
        0x1fff_ffff,
        0x1fff_ffff,
        0x1f7f_ffff,
        0x3ff_ffff,
        0,
    ]);

    /// The element whose canonical encoding is `bytes` (32 bytes, big-endian); `None` if the
    /// number is not below p.
    pub fn from_be_bytes(bytes: &[u8; 32]) -> Option<Fe> {
        let limbs = limbs::from_be::<LIMBS, 32, LIMB_BITS>(bytes);
        if !less_than(&limbs, &P) {
            return None;
        }
        Some(Fe(narrow(&limbs)).mul(&R2))
    }

    /// The canonical encoding (32 bytes, big-endian, below p).
    pub fn to_be_bytes(&self) -> [u8; 32] {
        // Multiplying by plain 1 leaves the Montgomery domain.
        let mut one = [0u32; LIMBS];
        one[0] = 1;
        limbs::to_be::<LIMBS, 32, LIMB_BITS>(&self.mul(&Fe(one)).canonical())
    }

    /// The limbs of the value reduced to [0, p).
    fn canonical(&self) -> [u32; LIMBS] {
        let wide = widen(&self.0);
        match sub_limbs(&wide, &P) {
            Some(reduced) => narrow(&reduced),
            None => self.0,
        }
    }

    /// Whether the element is 0 mod p: its value is 0 or p, as every element is below 2p and
    /// its limbs below 2^29 (one representation per value), without [`canonical`]'s
    /// subtraction (issue #13: each mixed addition of a verification asks once).
    ///
    /// [`canonical`]: Fe::canonical
    pub fn is_zero(&self) -> bool {
        const P_LIMBS: [u32; LIMBS] = narrow(&P);
        self.0 == [0; LIMBS] || self.0 == P_LIMBS
    }

    /// `self + other`.
    pub fn add(&self, other: &Fe) -> Fe {
        // The sum is below 4p: the sum − 2p unless that is negative.
        let (sum, _, reduced, reduced_negative) =
            limbs::candidates::<LIMBS, LIMB_BITS>(&self.0, &other.0, &TWO_P, 1, -1);
        Fe(if reduced_negative { sum } else { reduced })
    }

    /// `2 · self`.
    pub fn double(&self) -> Fe {
        self.add(self)
    }

    /// `self − other`.
    pub fn sub(&self, other: &Fe) -> Fe {
        // The difference is above −2p: the difference, or + 2p if it is negative.
        let (difference, negative, lifted, _) =
            limbs::candidates::<LIMBS, LIMB_BITS>(&self.0, &other.0, &TWO_P, -1, 1);
        Fe(if negative { lifted } else { difference })
    }

    /// `−self`.
    pub fn neg(&self) -> Fe {
        Fe::ZERO.sub(self)
    }

    /// `self · other` (Montgomery: a·R · b·R · R⁻¹ = ab·R).
    pub fn mul(&self, other: &Fe) -> Fe {
        let [a0, a1, a2, a3, a4, a5, a6, a7, a8] = widen(&self.0);
        let [b0, b1, b2, b3, b4, b5, b6, b7, b8] = widen(&other.0);
        // Column k sums a_i·b_j for i + j = k: at most 9 products below 2^58.
        montgomery_reduce([
            a0 * b0,
            a0 * b1 + a1 * b0,
            a0 * b2 + a1 * b1 + a2 * b0,
            a0 * b3 + a1 * b2 + a2 * b1 + a3 * b0,
            a0 * b4 + a1 * b3 + a2 * b2 + a3 * b1 + a4 * b0,
            a0 * b5 + a1 * b4 + a2 * b3 + a3 * b2 + a4 * b1 + a5 * b0,
            a0 * b6 + a1 * b5 + a2 * b4 + a3 * b3 + a4 * b2 + a5 * b1 + a6 * b0,
            a0 * b7 + a1 * b6 + a2 * b5 + a3 * b4 + a4 * b3 + a5 * b2 + a6 * b1 + a7 * b0,
            a0 * b8 + a1 * b7 + a2 * b6 + a3 * b5 + a4 * b4 + a5 * b3 + a6 * b2 + a7 * b1 + a8 * b0,
            a1 * b8 + a2 * b7 + a3 * b6 + a4 * b5 + a5 * b4 + a6 * b3 + a7 * b2 + a8 * b1,
            a2 * b8 + a3 * b7 + a4 * b6 + a5 * b5 + a6 * b4 + a7 * b3 + a8 * b2,
            a3 * b8 + a4 * b7 + a5 * b6 + a6 * b5 + a7 * b4 + a8 * b3,
            a4 * b8 + a5 * b7 + a6 * b6 + a7 * b5 + a8 * b4,
            a5 * b8 + a6 * b7 + a7 * b6 + a8 * b5,
            a6 * b8 + a7 * b7 + a8 * b6,
            a7 * b8 + a8 * b7,
            a8 * b8,
        ])
    }

    /// `self²`, each cross product computed once with one factor doubled.
    pub fn square(&self) -> Fe {
        let [a0, a1, a2, a3, a4, a5, a6, a7, a8] = widen(&self.0);
        let [d0, d1, d2, d3] = [2 * a0, 2 * a1, 2 * a2, 2 * a3];
        let [d4, d5, d6, d7] = [2 * a4, 2 * a5, 2 * a6, 2 * a7];
        // At most 4 products below 2^59 and one square below 2^58 per column.
        montgomery_reduce([
            a0 * a0,
            d0 * a1,
            d0 * a2 + a1 * a1,
            d0 * a3 + d1 * a2,
            d0 * a4 + d1 * a3 + a2 * a2,
            d0 * a5 + d1 * a4 + d2 * a3,
            d0 * a6 + d1 * a5 + d2 * a4 + a3 * a3,
            d0 * a7 + d1 * a6 + d2 * a5 + d3 * a4,
            d0 * a8 + d1 * a7 + d2 * a6 + d3 * a5 + a4 * a4,
            d1 * a8 + d2 * a7 + d3 * a6 + d4 * a5,
            d2 * a8 + d3 * a7 + d4 * a6 + a5 * a5,
            d3 * a8 + d4 * a7 + d5 * a6,
            d4 * a8 + d5 * a7 + a6 * a6,
            d5 * a8 + d6 * a7,
            d6 * a8 + a7 * a7,
            d7 * a8,
            a8 * a8,
        ])
    }

    /// `self⁻¹` by Fermat (self^(p−2)); `None` for 0. Slow (~300 multiplications): for batch
    /// normalisation at table build time, not per signature.
    pub fn invert(&self) -> Option<Fe> {
        if self.is_zero() {
            return None;
        }
        // p − 2, most significant 64-bit word first.
        const EXPONENT: [u64; 4] = [
            0xffff_ffff_0000_0001,
            0x0000_0000_0000_0000,
            0x0000_0000_ffff_ffff,
            0xffff_ffff_ffff_fffd,
        ];
        let mut result = Fe::ONE;
        for word in EXPONENT {
            for bit in (0..64).rev() {
                result = result.square();
                if (word >> bit) & 1 == 1 {
                    result = result.mul(self);
                }
            }
        }
        Some(result)
    }
}

impl PartialEq for Fe {
    /// Equality mod p (the representations may differ by p).
    fn eq(&self, other: &Fe) -> bool {
        self.canonical() == other.canonical()
    }
}

impl Eq for Fe {}

/// Montgomery reduction of the 17 product columns `t`: `t · R⁻¹ mod p`, below 2p when
/// `t < p·R` (true for two factors below 2p, as 4p < R). Product scanning: column i, with the
/// carry from column i − 1, gets digit q_i = its low 29 bits (−p⁻¹ ≡ 1 mod 2^29) and the
/// products q_j·p_(i−j) of the digits so far; that clears its low 29 bits. p_4 = p_5 = 0, and
/// q_i·p_0 folds into the carry: (acc + q·(2^29 − 1)) / 2^29 = (acc >> 29) + q as acc ≡ q
/// mod 2^29. A column holds at most 9 products below 2^59, 6 of q·p below 2^58 and a carry
/// below 2^35: below 2^63, no overflow. Columns 9..=16 and the last carry are the result.
#[inline(always)]
fn montgomery_reduce(t: [u64; 2 * LIMBS - 1]) -> Fe {
    let [_, p1, p2, p3, _, _, p6, p7, p8] = P;
    let [t0, t1, t2, t3, t4, t5, t6, t7, t8, t9, t10, t11, t12, t13, t14, t15, t16] = t;
    let acc = t0;
    let q0 = acc & MASK;
    let acc = (acc >> LIMB_BITS) + q0;
    let acc = acc + t1 + q0 * p1;
    let q1 = acc & MASK;
    let acc = (acc >> LIMB_BITS) + q1;
    let acc = acc + t2 + q0 * p2 + q1 * p1;
    let q2 = acc & MASK;
    let acc = (acc >> LIMB_BITS) + q2;
    let acc = acc + t3 + q0 * p3 + q1 * p2 + q2 * p1;
    let q3 = acc & MASK;
    let acc = (acc >> LIMB_BITS) + q3;
    let acc = acc + t4 + q1 * p3 + q2 * p2 + q3 * p1;
    let q4 = acc & MASK;
    let acc = (acc >> LIMB_BITS) + q4;
    let acc = acc + t5 + q2 * p3 + q3 * p2 + q4 * p1;
    let q5 = acc & MASK;
    let acc = (acc >> LIMB_BITS) + q5;
    let acc = acc + t6 + q0 * p6 + q3 * p3 + q4 * p2 + q5 * p1;
    let q6 = acc & MASK;
    let acc = (acc >> LIMB_BITS) + q6;
    let acc = acc + t7 + q0 * p7 + q1 * p6 + q4 * p3 + q5 * p2 + q6 * p1;
    let q7 = acc & MASK;
    let acc = (acc >> LIMB_BITS) + q7;
    let acc = acc + t8 + q0 * p8 + q1 * p7 + q2 * p6 + q5 * p3 + q6 * p2 + q7 * p1;
    let q8 = acc & MASK;
    let acc = (acc >> LIMB_BITS) + q8;
    let acc = acc + t9 + q1 * p8 + q2 * p7 + q3 * p6 + q6 * p3 + q7 * p2 + q8 * p1;
    let r0 = acc & MASK;
    let acc = acc >> LIMB_BITS;
    let acc = acc + t10 + q2 * p8 + q3 * p7 + q4 * p6 + q7 * p3 + q8 * p2;
    let r1 = acc & MASK;
    let acc = acc >> LIMB_BITS;
    let acc = acc + t11 + q3 * p8 + q4 * p7 + q5 * p6 + q8 * p3;
    let r2 = acc & MASK;
    let acc = acc >> LIMB_BITS;
    let acc = acc + t12 + q4 * p8 + q5 * p7 + q6 * p6;
    let r3 = acc & MASK;
    let acc = acc >> LIMB_BITS;
    let acc = acc + t13 + q5 * p8 + q6 * p7 + q7 * p6;
    let r4 = acc & MASK;
    let acc = acc >> LIMB_BITS;
    let acc = acc + t14 + q6 * p8 + q7 * p7 + q8 * p6;
    let r5 = acc & MASK;
    let acc = acc >> LIMB_BITS;
    let acc = acc + t15 + q7 * p8 + q8 * p7;
    let r6 = acc & MASK;
    let acc = acc >> LIMB_BITS;
    let acc = acc + t16 + q8 * p8;
    let r7 = acc & MASK;
    let acc = acc >> LIMB_BITS;
    Fe(narrow(&[r0, r1, r2, r3, r4, r5, r6, r7, acc]))
}

fn sub_limbs(a: &[u64; LIMBS], b: &[u64; LIMBS]) -> Option<[u64; LIMBS]> {
    limbs::sub::<LIMBS, LIMB_BITS>(a, b)
}

fn less_than(a: &[u64; LIMBS], b: &[u64; LIMBS]) -> bool {
    limbs::less_than::<LIMBS, LIMB_BITS>(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::TestRng;
    use p256::elliptic_curve::bigint::modular::constant_mod::Residue;
    use p256::elliptic_curve::bigint::{impl_modulus, Encoding, U256};

    impl_modulus!(
        Modulus,
        U256,
        "ffffffff00000001000000000000000000000000ffffffffffffffffffffffff"
    );
    /// The reference: crypto-bigint's Montgomery arithmetic (64- or 32-bit limbs).
    type Ref = Residue<Modulus, { U256::LIMBS }>;

    const P_BYTES: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff,
    ];

    fn reference(fe: &Fe) -> Ref {
        Ref::new(&U256::from_be_bytes(fe.to_be_bytes()))
    }

    fn bytes_of(r: &Ref) -> [u8; 32] {
        r.retrieve().to_be_bytes()
    }

    /// `p − k` as bytes, for small k.
    fn p_minus(k: u8) -> [u8; 32] {
        let mut bytes = P_BYTES;
        bytes[31] -= k;
        bytes
    }

    /// A random element; a third of them stored in their non-canonical form (value + p).
    fn random_fe(rng: &mut TestRng) -> Fe {
        loop {
            let mut bytes = [0u8; 32];
            rng.fill(&mut bytes);
            // Bias towards runs of ones and zeros, where carries go wrong.
            match rng.next_u64() % 8 {
                0 => bytes[..16].fill(0xff),
                1 => bytes[16..].fill(0),
                2 => bytes[4..28].fill(0),
                _ => {}
            }
            if let Some(fe) = Fe::from_be_bytes(&bytes) {
                return if rng.next_u64() % 3 == 0 {
                    plus_p(&fe)
                } else {
                    fe
                };
            }
        }
    }

    /// Propagates carries so every limb but the top one is below 2^29.
    fn carry(limbs: &mut [u64; LIMBS]) {
        let mut carry = 0u64;
        for limb in limbs.iter_mut() {
            let value = *limb + carry;
            *limb = value & MASK;
            carry = value >> LIMB_BITS;
        }
        if let Some(top) = limbs.last_mut() {
            *top += carry << LIMB_BITS;
        }
    }

    /// The same element represented as its canonical value + p (still below 2p).
    fn plus_p(fe: &Fe) -> Fe {
        let mut limbs = widen(&fe.canonical());
        for (limb, p) in limbs.iter_mut().zip(&P) {
            *limb += p;
        }
        carry(&mut limbs);
        let lazy = Fe(narrow(&limbs));
        assert!(less_than(&limbs, &TWO_P));
        assert_ne!(lazy.0, fe.canonical());
        lazy
    }

    /// Edge elements: 0, 1, 2, p − 1, p − 2, 2^255, their lazy forms, and the largest
    /// representation allowed (2p − 1, all limbs all ones but the top one).
    fn edges() -> Vec<Fe> {
        let mut high = [0u8; 32];
        high[0] = 0x80;
        let mut small = [0u8; 32];
        small[31] = 2;
        let mut out = Vec::new();
        for bytes in [
            [0u8; 32],
            Fe::ONE.to_be_bytes(),
            small,
            p_minus(1),
            p_minus(2),
            high,
        ] {
            let fe = Fe::from_be_bytes(&bytes).unwrap();
            out.push(fe);
            out.push(plus_p(&fe));
        }
        let mut two_p_minus_one = TWO_P;
        two_p_minus_one[0] -= 1;
        out.push(Fe(narrow(&two_p_minus_one)));
        let mut ones = [MASK as u32; LIMBS];
        ones[LIMBS - 1] = TWO_P[LIMBS - 1] as u32 - 1;
        out.push(Fe(ones));
        out.push(Fe::ONE);
        out
    }

    fn check_ops(a: &Fe, b: &Fe) {
        let (ra, rb) = (reference(a), reference(b));
        let checks = [
            ("mul", a.mul(b), ra.mul(&rb)),
            ("square", a.square(), ra.square()),
            ("mul self", a.mul(a), ra.square()),
            ("add", a.add(b), ra.add(&rb)),
            ("double", a.double(), ra.add(&ra)),
            ("sub", a.sub(b), ra.sub(&rb)),
            ("neg", a.neg(), ra.neg()),
        ];
        for (name, got, want) in checks {
            assert_eq!(got.to_be_bytes(), bytes_of(&want), "{name} {a:?} {b:?}");
            // Results keep the invariant: limbs below 2^29, value below 2p.
            assert!(got.0.iter().all(|l| u64::from(*l) <= MASK), "{name}");
            assert!(less_than(&widen(&got.0), &TWO_P), "{name} {got:?}");
        }
        assert_eq!(a == b, ra == rb);
        assert_eq!(a.is_zero(), ra.retrieve() == U256::ZERO);
    }

    #[test]
    fn ops_match_reference_on_edges() {
        let edges = edges();
        for a in &edges {
            for b in &edges {
                check_ops(a, b);
            }
        }
    }

    #[test]
    fn ops_match_reference_on_random_values() {
        let mut rng = TestRng(0x5eed);
        for _ in 0..20_000 {
            let (a, b) = (random_fe(&mut rng), random_fe(&mut rng));
            check_ops(&a, &b);
        }
    }

    #[test]
    fn encoding_round_trips_and_refuses_non_canonical() {
        let mut rng = TestRng(7);
        for _ in 0..2_000 {
            let fe = random_fe(&mut rng);
            let bytes = fe.to_be_bytes();
            assert_eq!(Fe::from_be_bytes(&bytes).unwrap(), fe);
            assert_eq!(Fe::from_be_bytes(&bytes).unwrap().to_be_bytes(), bytes);
        }
        assert_eq!(
            Fe::from_be_bytes(&p_minus(1)).unwrap().to_be_bytes(),
            p_minus(1)
        );
        assert_eq!(Fe::ZERO.to_be_bytes(), [0; 32]);
        let mut one = [0u8; 32];
        one[31] = 1;
        assert_eq!(Fe::ONE.to_be_bytes(), one);
        assert_eq!(Fe::from_be_bytes(&one).unwrap(), Fe::ONE);
        // p ends in 96 one bits: p + 1 ends in 96 zero bits after a 1.
        let mut p_plus_one = P_BYTES;
        p_plus_one[20..].fill(0);
        p_plus_one[19] = 1;
        for bytes in [P_BYTES, [0xff; 32], p_plus_one] {
            assert!(Fe::from_be_bytes(&bytes).is_none());
        }
        assert!(plus_p(&Fe::ZERO).is_zero());
        assert_eq!(plus_p(&Fe::ZERO).to_be_bytes(), [0; 32]);
    }

    #[test]
    fn constants() {
        // R² is R² mod p: converting 1 gives R mod p = ONE.
        let mut one = [0u8; 32];
        one[31] = 1;
        assert_eq!(Fe::from_be_bytes(&one).unwrap().0, Fe::ONE.0);
        let mut limbs = P;
        for limb in limbs.iter_mut() {
            *limb *= 2;
        }
        carry(&mut limbs);
        assert_eq!(limbs, TWO_P);
        // R2's limbs, read as a Montgomery element, are R² · R⁻¹ = R = 2^261 mod p.
        let r = Ref::new(&U256::from(2u8)).pow(&U256::from(LIMBS as u64 * u64::from(LIMB_BITS)));
        assert_eq!(R2.to_be_bytes(), bytes_of(&r));
    }

    #[test]
    fn inversion() {
        let mut rng = TestRng(11);
        for fe in edges()
            .into_iter()
            .chain((0..200).map(|_| random_fe(&mut rng)))
        {
            match fe.invert() {
                None => assert!(fe.is_zero()),
                Some(inverse) => assert_eq!(fe.mul(&inverse), Fe::ONE),
            }
        }
    }

    /// ns per multiplication, squaring and addition in whatever runs the test (wasm: under
    /// `node --no-liftoff`): `cargo test --release --lib -- --ignored --nocapture field_timing`.
    #[test]
    #[ignore = "timing: run with --release --ignored --nocapture"]
    fn field_timing() {
        use std::hint::black_box;
        use std::time::Instant;
        let mut rng = TestRng(3);
        let (mut a, b) = (random_fe(&mut rng), random_fe(&mut rng));
        let rounds = 200_000;
        let time = |f: &mut dyn FnMut()| {
            let started = Instant::now();
            for _ in 0..rounds {
                f();
            }
            started.elapsed().as_secs_f64() * 1e9 / f64::from(rounds)
        };
        for _ in 0..2 {
            let mul = time(&mut || a = black_box(a.mul(&b)));
            let square = time(&mut || a = black_box(a.square()));
            let add = time(&mut || a = black_box(a.add(&b)));
            let sub = time(&mut || a = black_box(a.sub(&b)));
            println!("mul {mul:.1} ns, square {square:.1} ns, add {add:.1} ns, sub {sub:.1} ns");
        }
    }
}
