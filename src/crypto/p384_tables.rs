//! ES384: ECDSA P-384 on the generic table verifier ([`ecdsa`](crate::crypto::ecdsa)), with
//! our own field and scalar arithmetic ([`p384_field`](crate::crypto::p384_field)). This file
//! holds the curve's constants and settings; `ecdsa` says how verification works.
//!
//! History: p384 0.13's `verify_prehash` (~4 ms in Envoy's V8), then tables on p384's own
//! points and 64-bit fiat-crypto field (~650-820 µs: its field multiplication emulates a
//! 128-bit product per limb pair in wasm32), now on 28-bit limbs (issue #13: see the figures
//! at [`p384_verify_timing`](self) and in src/crypto/README.md). Dropping the `p384` crate
//! also removed ~160 KB of compiled code from the module.

use sha2::Sha384;

use crate::crypto::ecdsa;
use crate::crypto::p384_field::{Fe, OrderN, BYTES};
use crate::crypto::weierstrass;

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
pub use crate::crypto::fixed_window::{MAX_WINDOW, MIN_WINDOW};

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

/// Most heap bytes of P-384 key tables (G's excluded) alive at once in this VM: 9 keys at
/// [`Q_WINDOW`] (~224 KiB each). Keys past the budget verify u2·Q by double-and-add (slower,
/// same answers) rather than cost memory and load time. An old and a new key set are alive
/// together during a swap, so sets of up to 4 P-384 keys always get tables. Separate from
/// the P-256 budget.
pub const KEY_TABLE_BUDGET: usize = 2 << 20;

ecdsa::declare_curve!(P384, P384VerifyKey, "P-384", Sha384);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::ecdsa::{be_add, le_limbs};
    use crate::crypto::fixed_window;
    use crate::crypto::p384_field::{Modulus, Scalar};
    use crate::crypto::weierstrass::{Affine, Jacobian};
    use p384::ecdsa::signature::hazmat::PrehashSigner;
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

    fn point_from(x: &[u8], y: &[u8]) -> Option<Affine<Fe>> {
        ecdsa::point_from::<P384>(x, y)
    }

    fn checked_table(point: &Affine<Fe>, window: u32) -> Option<FixedBaseTable> {
        ecdsa::checked_table::<P384>(point, window)
    }

    fn table_sum_scalar(window: u32) -> Scalar {
        ecdsa::table_sum_scalar::<P384>(window)
    }

    fn reduce(bytes: &[u8; BYTES]) -> Option<Scalar> {
        Scalar::from_be_bytes(&ecdsa::reduce::<P384>(bytes)?.to_be_bytes())
    }

    fn x_matches(sum: &Jacobian<Fe>, r: &[u8; BYTES]) -> bool {
        ecdsa::x_matches::<P384>(sum, r)
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
                let limbs = le_limbs(&our_scalar(k).to_be_bytes());
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
        ecdsa::check_key_against_reference::<_, Signature, _, _>(
            &ours,
            &sk,
            &vk,
            &[24, 32, 48, 64],
        );
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
            crate::crypto::us_per_call(rounds, &|| assert!(f())).0
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
        let (_, _, s) = ecdsa::split_signature::<P384>(&bytes).unwrap();
        let us = time(200, &|| std::hint::black_box(s).invert().is_some());
        println!("  of which s⁻¹: {us:.1} µs");
        let plain = key.without_table();
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
