//! ES256: ECDSA P-256 on the generic table verifier ([`ecdsa`](crate::crypto::ecdsa)), with
//! our own field arithmetic ([`p256_field`](crate::crypto::p256_field)) and scalars on
//! [`p384_field::Elem`] (its Montgomery code takes any odd modulus below 2^384, its inversion
//! is [`safegcd`](crate::crypto::safegcd)). This file holds the curve's constants and
//! settings; `ecdsa` says how verification works. The `p256` crate is not in the module.
//!
//! - History: `p256::ecdsa::VerifyingKey::verify_prehash` (0.13) runs two separate
//!   constant-time 4-bit window scalar multiplications for every token: ~510 doublings, ~160
//!   additions and a constant-time scan of a 16-entry table per window, ~1 ms in Envoy's V8.
//!   The tables on p256's own arithmetic took ~190 µs, on [`p256_field`] ~37 µs in Node 20's
//!   V8 (the ignored `verify_timing` test). Issue #13 then moved the scalars, the key and
//!   signature parsing and the table checks off p256 too: the module lost ~40 KB of p256,
//!   primeorder, der and const-oid code.
//! - G's table: 8-bit windows, 4,097 points, ~288 KiB, built once per VM (~10-25 ms in Node's
//!   V8); each key's: 7-bit windows, 2,320 points, ~163 KiB (~5.4 ms). An entry is two field
//!   elements of 9 × 32-bit limbs, 72 bytes. A verification is then at most 70 mixed
//!   additions and no field inversion.
//! - Why 7 bits for keys. First chosen (6 bits) on p256's arithmetic, where a verification
//!   cost ~156 µs and the additions' share was smaller. On [`p256_field`] the additions are
//!   ~94 % of a verification (s⁻¹ ~3 µs of ~47), so each row less counts. Issue #13, session
//!   16, wasm32 in Node 20's V8 (`--no-liftoff`, the ignored `verify_timing` test, best of
//!   three runs) and instructions per request in Envoy (`make bench-instructions`, distinct
//!   ES256 tokens, the whole process):
//!
//!   | key window | verification | key table | build per key | Envoy instructions |
//!   |---|---|---|---|---|
//!   | 6 bits | 47.1 µs | 97,920 B | 3.3 ms | 724.4K |
//!   | **7 bits** | **43.6 µs** | 167,040 B | 5.4 ms | **686.7K** |
//!   | 8 bits | 41.9 µs | 294,984 B | 9.4 ms | 659.0K |
//!
//!   8 bits saves 1.7 µs more but triples each key's memory (in every VM, for every key of a
//!   set) and its build (on the worker's thread, at every key-set version); 7 bits costs
//!   +69 KiB and +2 ms per key.
//! - **Variable time, on purpose**, as everything in [`ecdsa`]: every input is public.

use sha2::Sha256;

use crate::crypto::ecdsa;
use crate::crypto::p256_field::Fe;
use crate::crypto::p384_field::{self, Modulus};
use crate::crypto::weierstrass;

/// Window of G's table: 32 rows of 128 points and one of 1, ~288 KiB, once per VM.
pub const G_WINDOW: u32 = 8;
/// Window of each public key's table: 36 rows of 64 points and one of 16, ~163 KiB.
pub const Q_WINDOW: u32 = 7;
pub use crate::crypto::fixed_window::{MAX_WINDOW, MIN_WINDOW};

/// Bytes of a coordinate or scalar.
const BYTES: usize = 32;
/// Bits in a P-256 scalar.
const SCALAR_BITS: u32 = 256;

/// The generator, big-endian affine coordinates (SEC 2 / FIPS 186-4).
const GENERATOR_X: [u8; BYTES] = [
    0x6b, 0x17, 0xd1, 0xf2, 0xe1, 0x2c, 0x42, 0x47, 0xf8, 0xbc, 0xe6, 0xe5, 0x63, 0xa4, 0x40, 0xf2,
    0x77, 0x03, 0x7d, 0x81, 0x2d, 0xeb, 0x33, 0xa0, 0xf4, 0xa1, 0x39, 0x45, 0xd8, 0x98, 0xc2, 0x96,
];
const GENERATOR_Y: [u8; BYTES] = [
    0x4f, 0xe3, 0x42, 0xe2, 0xfe, 0x1a, 0x7f, 0x9b, 0x8e, 0xe7, 0xeb, 0x4a, 0x7c, 0x0f, 0x9e, 0x16,
    0x2b, 0xce, 0x33, 0x57, 0x6b, 0x31, 0x5e, 0xce, 0xcb, 0xb6, 0x40, 0x68, 0x37, 0xbf, 0x51, 0xf5,
];
/// The curve's b, big-endian (y² = x³ − 3x + b).
const CURVE_B: [u8; BYTES] = [
    0x5a, 0xc6, 0x35, 0xd8, 0xaa, 0x3a, 0x93, 0xe7, 0xb3, 0xeb, 0xbd, 0x55, 0x76, 0x98, 0x86, 0xbc,
    0x65, 0x1d, 0x06, 0xb0, 0xcc, 0x53, 0xb0, 0xf6, 0x3b, 0xce, 0x3c, 0x3e, 0x27, 0xd2, 0x60, 0x4b,
];

weierstrass::delegate_field!(Fe, CURVE_B);

/// The P-256 group order n, as a [`p384_field`] modulus (48 bytes, big-endian).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderN;

impl Modulus for OrderN {
    const BE: [u8; p384_field::BYTES] = [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00,
        0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17,
        0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
    ];
}

/// A P-256 scalar (mod n).
pub type Scalar = p384_field::Elem<OrderN>;

/// Most heap bytes of key tables (G's excluded) alive at once in this VM: 12 keys at
/// [`Q_WINDOW`] (~163 KiB each). A key set may hold hundreds of P-256 keys within its size
/// limit; keys past the budget verify u2·Q by double-and-add (slower, same answers) rather
/// than cost memory and load time. An old and a new key set are alive together during a swap,
/// so sets of up to 6 P-256 keys always get tables; with G's table the worst case stays
/// under ~2.5 MiB per VM.
pub const KEY_TABLE_BUDGET: usize = 2 << 20;

ecdsa::declare_curve!(P256, P256VerifyKey, "P-256", Sha256);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::fixed_window;
    use p256::ecdsa::signature::hazmat::PrehashSigner;
    use p256::ecdsa::{Signature, SigningKey};
    use p256::elliptic_curve::ops::Reduce;
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    use p256::{AffinePoint, ProjectivePoint, U256};

    type Affine = weierstrass::Affine<Fe>;
    type Jacobian = weierstrass::Jacobian<Fe>;

    /// n, big-endian, 32 bytes.
    fn order() -> [u8; BYTES] {
        OrderN::BE[p384_field::BYTES - BYTES..].try_into().unwrap()
    }

    fn coordinates(point: &AffinePoint) -> ([u8; BYTES], [u8; BYTES]) {
        let encoded = point.to_encoded_point(false);
        let bytes = |c: Option<&p256::FieldBytes>| -> [u8; BYTES] { (*c.unwrap()).into() };
        (bytes(encoded.x()), bytes(encoded.y()))
    }

    /// p256's point in our form; `None` for the identity, which has no affine coordinates.
    fn from_p256(point: &AffinePoint) -> Option<Affine> {
        if *point == AffinePoint::IDENTITY {
            return None;
        }
        let (x, y) = coordinates(point);
        ecdsa::point_from::<P256>(&x, &y)
    }

    fn checked_table(point: &AffinePoint, window: u32) -> Option<FixedBaseTable> {
        ecdsa::checked_table::<P256>(&from_p256(point)?, window)
    }

    fn le_limbs(k: &p256::Scalar) -> [u64; 6] {
        fixed_window::le_limbs(&k.to_bytes())
    }

    fn x_matches(sum: &Jacobian, r: &[u8; BYTES]) -> bool {
        ecdsa::x_matches::<P256>(sum, &ecdsa::widen(r).unwrap())
    }

    fn verify_key(sk: &SigningKey) -> P256VerifyKey {
        let (x, y) = coordinates(sk.verifying_key().as_affine());
        P256VerifyKey::from_coordinates(&x, &y).unwrap()
    }

    fn scalar(bytes: [u8; 32]) -> p256::Scalar {
        <p256::Scalar as Reduce<U256>>::reduce_bytes(&bytes.into())
    }

    #[test]
    fn constants_match_p256() {
        assert_eq!(
            coordinates(&AffinePoint::GENERATOR),
            (GENERATOR_X, GENERATOR_Y)
        );
        // n = (n − 1) + 1, with p256's n − 1.
        let mut one = [0u8; BYTES];
        one[BYTES - 1] = 1;
        let n_minus_one: [u8; BYTES] = (-p256::Scalar::ONE).to_bytes().into();
        assert_eq!(be_add(&n_minus_one, &one, false), order());
        // Off the curve, or a coordinate not below p.
        let mut y = GENERATOR_Y;
        y[BYTES - 1] ^= 1;
        assert!(ecdsa::point_from::<P256>(&GENERATOR_X, &y).is_none());
        assert!(ecdsa::point_from::<P256>(&[0xff; BYTES], &GENERATOR_Y).is_none());
        assert!(ecdsa::point_from::<P256>(&[0; BYTES], &[0; BYTES]).is_none());
        assert!(ecdsa::point_from::<P256>(&GENERATOR_X[1..], &GENERATOR_Y).is_none());
    }

    #[test]
    fn scalars_match_p256() {
        let mut rng = crate::test_rng::TestRng(0x0dd_5ca1a5);
        for _ in 0..2000 {
            let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
            rng.fill(&mut a);
            rng.fill(&mut b);
            let (ta, tb) = (scalar(a), scalar(b));
            let ours = |k: &p256::Scalar| {
                Scalar::from_be_bytes(&ecdsa::widen(&k.to_bytes()).unwrap()).unwrap()
            };
            let (oa, ob) = (ours(&ta), ours(&tb));
            let plain = ecdsa::reduce::<P256>(&ecdsa::widen(&a).unwrap()).unwrap();
            assert_eq!(plain.to_be_bytes(), oa.to_be_bytes());
            assert_eq!(oa.mul(&ob), ours(&(ta * tb)));
            assert_eq!(plain.mul(&ob).to_be_bytes(), ours(&(ta * tb)).to_be_bytes());
            assert_eq!(oa.add(&ob), ours(&(ta + tb)));
            if ta != p256::Scalar::ZERO {
                let expected = ours(&ta.invert().unwrap());
                assert_eq!(oa.invert(), Some(expected));
            }
        }
        assert_eq!(Scalar::ZERO.invert(), None);
    }

    fn affine(point: &Jacobian) -> Option<Affine> {
        point.to_affine()
    }

    fn multiple(k: u64) -> Affine {
        from_p256(&(ProjectivePoint::GENERATOR * p256::Scalar::from(k)).to_affine()).unwrap()
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
        let point = (ProjectivePoint::GENERATOR * p256::Scalar::from(0x1234_5678u64)).to_affine();
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
            step = step + step + ProjectivePoint::from(point) * p256::Scalar::from(i);
            let expected = from_p256(&theirs.to_affine());
            assert_eq!(affine(&ours), expected, "step {i}");
        }
        assert_eq!(
            from_p256(&AffinePoint::IDENTITY),
            None,
            "the identity has no affine form"
        );
    }

    #[test]
    fn table_multiplication_matches_double_and_add() {
        let point = (ProjectivePoint::GENERATOR * scalar([7; 32])).to_affine();
        let mut edge = [0xffu8; 32];
        edge[0] = 0x7f;
        let scalars = [
            p256::Scalar::ZERO,
            p256::Scalar::ONE,
            -p256::Scalar::ONE,
            scalar([0x88; 32]),
            scalar([0x80; 32]),
            scalar(edge),
            scalar([0x5a; 32]),
        ];
        for window in MIN_WINDOW..=MAX_WINDOW {
            let table = checked_table(&point, window).unwrap();
            for k in &scalars {
                let got = table.add_multiple(&le_limbs(k), Jacobian::IDENTITY);
                let expected = (ProjectivePoint::from(point) * k).to_affine();
                assert_eq!(got.to_affine(), from_p256(&expected), "window {window}");
            }
        }
    }

    #[test]
    fn table_sizes() {
        assert_eq!(fixed_window::row_count(SCALAR_BITS, 4), 65);
        assert_eq!(fixed_window::row_count(SCALAR_BITS, 8), 33);
        let g = AffinePoint::GENERATOR;
        assert_eq!(
            FixedBaseTable::size_for(G_WINDOW, SCALAR_BITS),
            generator_table().unwrap().heap_bytes()
        );
        assert_eq!(checked_table(&g, 4).unwrap().len(), 64 * 8 + 1);
        assert_eq!(generator_table().unwrap().len(), 32 * 128 + 1);
        assert_eq!(checked_table(&g, 5).unwrap().len(), 51 * 16 + 2);
    }

    #[test]
    fn key_tables_are_counted_while_alive() {
        let verify_key = verify_key(&SigningKey::from_slice(&[3; 32]).unwrap());
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
        use std::time::Instant;
        let started = Instant::now();
        generator_table().unwrap();
        let g_build = started.elapsed();
        let sk = SigningKey::from_slice(&[0x42; 32]).unwrap();
        let started = Instant::now();
        let key = verify_key(&sk);
        let q_build = started.elapsed();
        let z = [0x17u8; 32];
        let sig: Signature = sk.sign_prehash(&z).unwrap();
        let bytes = sig.to_bytes();
        let time = |f: &dyn Fn()| crate::crypto::us_per_call(500, f);
        let (median, min) = time(&|| {
            assert!(key.verify_prehash(std::hint::black_box(&z), &bytes));
        });
        // Where the time goes: the scalar inversion and the two table multiplications.
        let (_, r, s) = ecdsa::split_signature::<P256>(&bytes).unwrap();
        let (invert_us, _) = time(&|| {
            std::hint::black_box(std::hint::black_box(&s).invert());
        });
        let (g_table, q_table) = (generator_table().unwrap(), key.table().unwrap());
        let (points_us, _) = time(&|| {
            let u1 = ecdsa::le_limbs(&std::hint::black_box(&s).to_be_bytes());
            let sum = g_table.add_multiple(&u1, Jacobian::IDENTITY);
            std::hint::black_box(q_table.add_multiple(&ecdsa::le_limbs(&r.to_be_bytes()), sum));
        });
        println!("s⁻¹ {invert_us:.1} µs, u1·G + u2·Q {points_us:.1} µs");
        println!(
            "ES256 verify_prehash: median {median:.1} µs (min {min:.1}); G table {:.1} ms, {} B; \
             key table {:.2} ms, {} B",
            g_build.as_secs_f64() * 1e3,
            generator_table().unwrap().heap_bytes(),
            q_build.as_secs_f64() * 1e3,
            key.table().unwrap().heap_bytes()
        );
        let plain = key.without_table();
        let (plain_us, _) = time(&|| {
            assert!(plain.verify_prehash(std::hint::black_box(&z), &bytes));
        });
        println!("  without a key table: {plain_us:.1} µs");
    }

    #[test]
    fn verifies_like_p256() {
        let sk = SigningKey::from_slice(&[0x42; 32]).unwrap();
        let vk = *sk.verifying_key();
        let ours = verify_key(&sk);
        ecdsa::check_key_against_reference::<_, Signature, _, _>(
            &ours,
            &sk,
            &vk,
            &[16, 20, 32, 48, 64],
        );
        // The message path hashes with SHA-256.
        let sig: Signature = p256::ecdsa::signature::Signer::sign(&sk, b"message");
        assert!(ours.verify(b"message", &sig.to_bytes()));
        assert!(!ours.verify(b"massage", &sig.to_bytes()));
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
        let p_minus_n = be_add(&p, &order(), true);
        assert_eq!(p_minus_n[..16], [0; 16]);
        let one = {
            let mut one = [0u8; 32];
            one[31] = 1;
            one
        };
        let z = Fe::from_be_bytes(&[0x3c; 32]).unwrap();
        let with_x = |x: &[u8; 32]| -> Jacobian {
            let x = Fe::from_be_bytes(x).unwrap();
            Jacobian {
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
            be_add(&order(), &one, true),
        ];
        for r in candidates {
            let r_plus_n = be_add(&r, &order(), false);
            assert!(x_matches(&with_x(&r), &r));
            assert!(!x_matches(&with_x(&be_add(&r, &one, false)), &r));
            assert!(!x_matches(&Jacobian::IDENTITY, &r));
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
}
