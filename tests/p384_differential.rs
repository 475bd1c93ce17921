//! Differential tests of jwt-edge's table-based ES384 verifier (`authn::p384_tables`) against
//! the RustCrypto verifier it replaced (`p384` 0.13 `VerifyingKey::verify_prehash` and
//! `Verifier::verify`). Both must give the same answer on every case.
//!
//! - `verify_agrees_with_p384`: random keys (`SigningKey` from random bytes), random digests
//!   (mostly 48 bytes; some 24..80 bytes to exercise `bits2field`'s padding and truncation;
//!   some ≡ 0 mod n, equal to n, or all-ones), and per digest: the valid signature, its high-S
//!   twin (s → n − s, valid in JWS), r and s swapped, a random bit flipped in r || s, random
//!   r || s, r ± 1, a signature by another key, a signature over another digest, and the
//!   digest with a bit flipped. One key in four also goes through the token path
//!   (`VerifyKey::ec_p384` + `VerifyKey::verify` over a message). Every kind of case must
//!   both accept and reject somewhere in the run, or the test fails as too weak.
//!   Cases: `P384_DIFFERENTIAL_CASES` (default 2,000, what plain `cargo test` runs: p384's
//!   own verifier takes ~1 ms per case natively). The full run is
//!   `P384_DIFFERENTIAL_CASES=100000 cargo test --release --test p384_differential`.
//!   The seed is `P384_DIFFERENTIAL_SEED` (default fixed) and is printed on failure.
//! - `timing` (ignored): µs per ES384 verification, ours and p384's, and table build time:
//!   `cargo test --release --test p384_differential -- --ignored --nocapture timing`.

#![cfg(not(target_arch = "wasm32"))]
// Test code: a failed unwrap or index is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Instant;

use jwt_edge::authn::alg::Algorithm;
use jwt_edge::authn::crypto::VerifyKey;
use jwt_edge::authn::p384_tables::{generator_table, P384VerifyKey};
use p384::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use p384::ecdsa::signature::{Signer, Verifier};
use p384::ecdsa::{Signature, SigningKey, VerifyingKey};

/// The group order n, big-endian.
const ORDER: [u8; 48] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc7, 0x63, 0x4d, 0x81, 0xf4, 0x37, 0x2d, 0xdf,
    0x58, 0x1a, 0x0d, 0xb2, 0x48, 0xb0, 0xa7, 0x7a, 0xec, 0xec, 0x19, 0x6a, 0xcc, 0xc5, 0x29, 0x73,
];

/// splitmix64: small, seedable, good enough to pick test inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn signing_key(rng: &mut Rng) -> SigningKey {
    loop {
        // Fails only for 0 or >= n: vanishingly rare, but retried.
        if let Ok(key) = SigningKey::from_slice(&rng.bytes(48)) {
            return key;
        }
    }
}

fn digest(rng: &mut Rng) -> Vec<u8> {
    match rng.below(64) {
        0 => vec![0; 48],
        1 => ORDER.to_vec(),
        2 => vec![0xff; 48],
        3..=9 => {
            let len = 24 + rng.below(57);
            rng.bytes(len)
        }
        _ => rng.bytes(48),
    }
}

/// The kinds of signature tried against each digest.
const KINDS: [&str; 10] = [
    "valid",
    "high-s",
    "swapped",
    "bit flip",
    "random",
    "r plus or minus one",
    "other key",
    "other digest",
    "digest bit flip",
    "token path",
];

#[derive(Default, Clone, Copy)]
struct Tally {
    accepted: u64,
    rejected: u64,
}

/// The scalar ECDSA derives from a digest of at least 24 bytes (SEC1 bits2int: the leading
/// 48 bytes, a shorter digest as a smaller number; then reduced mod n). Only used to avoid
/// offering one digest's signature as "another digest's" when both are the same scalar.
fn digest_scalar(z: &[u8]) -> p384::Scalar {
    use p384::elliptic_curve::ops::Reduce;
    let mut field = [0u8; 48];
    let len = z.len().min(48);
    field[48 - len..].copy_from_slice(&z[..len]);
    <p384::Scalar as Reduce<p384::U384>>::reduce_bytes(&field.into())
}

fn sig_bytes(sig: &Signature) -> Vec<u8> {
    sig.to_bytes().to_vec()
}

/// `value` ± 1 as a 48-byte big-endian number (wrapping).
fn nudge(value: &[u8], up: bool) -> Vec<u8> {
    let mut out = value.to_vec();
    for byte in out.iter_mut().rev() {
        let (next, carry) = if up {
            byte.overflowing_add(1)
        } else {
            byte.overflowing_sub(1)
        };
        *byte = next;
        if !carry {
            break;
        }
    }
    out
}

/// Runs `cases` cases from `seed`; returns per-kind tallies. Panics on the first disagreement.
fn run(seed: u64, cases: u64) -> Vec<Tally> {
    let mut rng = Rng(seed);
    let mut tally = vec![Tally::default(); KINDS.len()];
    let mut done = 0u64;
    let mut previous: Option<SigningKey> = None;
    let mut key_index = 0u64;
    while done < cases {
        let sk = signing_key(&mut rng);
        let vk = *sk.verifying_key();
        let ours = P384VerifyKey::new(&vk);
        assert!(
            ours.table().is_some(),
            "table for key {key_index} (seed {seed})"
        );
        let other = previous
            .replace(sk.clone())
            .unwrap_or_else(|| signing_key(&mut rng));
        let mut last_valid: Option<(Signature, Vec<u8>)> = None;
        for _ in 0..8 {
            let z = digest(&mut rng);
            let valid: Signature = sk.sign_prehash(&z).unwrap();
            let valid_bytes = sig_bytes(&valid);
            let (r, s) = valid_bytes.split_at(48);
            let mut candidates: Vec<(usize, Vec<u8>, Vec<u8>)> = Vec::new();
            candidates.push((0, z.clone(), valid_bytes.clone()));
            let high_s =
                Signature::from_scalars(valid.r().to_bytes(), (-*valid.s()).to_bytes()).unwrap();
            candidates.push((1, z.clone(), sig_bytes(&high_s)));
            candidates.push((2, z.clone(), [s, r].concat()));
            let mut flipped = valid_bytes.clone();
            let bit = rng.below(768);
            flipped[bit / 8] ^= 1 << (bit % 8);
            candidates.push((3, z.clone(), flipped));
            candidates.push((4, z.clone(), rng.bytes(96)));
            let up = rng.below(2) == 0;
            let nudged = if rng.below(2) == 0 {
                [nudge(r, up), s.to_vec()].concat()
            } else {
                [r.to_vec(), nudge(s, up)].concat()
            };
            candidates.push((5, z.clone(), nudged));
            let by_other: Signature = other.sign_prehash(&z).unwrap();
            candidates.push((6, z.clone(), sig_bytes(&by_other)));
            // The previous digest's signature (a fresh one for the key's first digest, or when
            // both digests are the same scalar, as 0 and n are).
            let over_other = match last_valid.replace((valid, z.clone())) {
                Some((sig, prev)) if digest_scalar(&prev) != digest_scalar(&z) => sig,
                _ => sk.sign_prehash(&rng.bytes(48)).unwrap(),
            };
            candidates.push((7, z.clone(), sig_bytes(&over_other)));
            let mut z_flipped = z.clone();
            let bit = rng.below(z.len() * 8);
            z_flipped[bit / 8] ^= 1 << (bit % 8);
            candidates.push((8, z_flipped, valid_bytes.clone()));

            for (kind, z, bytes) in candidates {
                // Parsing is shared (r, s in [1, n-1]); a signature that does not parse is a
                // reject for both and still counted.
                let (reference, got) = match Signature::from_slice(&bytes) {
                    Ok(sig) => (
                        vk.verify_prehash(&z, &sig).is_ok(),
                        ours.verify_prehash(&z, &sig),
                    ),
                    Err(_) => (false, false),
                };
                assert_eq!(
                    got,
                    reference,
                    "disagreement: seed {seed}, key {key_index}, kind {:?}, digest {}, sig {}",
                    KINDS[kind],
                    hex::encode(&z),
                    hex::encode(&bytes)
                );
                let t = &mut tally[kind];
                if reference {
                    t.accepted += 1;
                } else {
                    t.rejected += 1;
                }
                done += 1;
            }
        }
        if key_index % 4 == 0 {
            // The token path: JWK coordinates in, message (hashed with SHA-384) and raw r || s.
            let point = vk.to_encoded_point(false);
            let key = VerifyKey::ec_p384(point.x().unwrap(), point.y().unwrap()).unwrap();
            let len = 1 + rng.below(300);
            let message = rng.bytes(len);
            let sig: Signature = sk.sign(&message);
            let mut bytes = sig_bytes(&sig);
            if rng.below(2) == 0 {
                let bit = rng.below(768);
                bytes[bit / 8] ^= 1 << (bit % 8);
            }
            let reference = Signature::from_slice(&bytes)
                .map(|sig| vk.verify(&message, &sig).is_ok())
                .unwrap_or(false);
            let got = key.verify(Algorithm::Es384, &message, &bytes).is_ok();
            assert_eq!(
                got,
                reference,
                "token path disagreement: seed {seed}, key {key_index}, message {}, sig {}",
                hex::encode(&message),
                hex::encode(&bytes)
            );
            let t = &mut tally[9];
            if reference {
                t.accepted += 1;
            } else {
                t.rejected += 1;
            }
            done += 1;
        }
        key_index += 1;
    }
    tally
}

#[test]
fn verify_agrees_with_p384() {
    let cases = env_number("P384_DIFFERENTIAL_CASES", 2_000);
    let seed = env_number("P384_DIFFERENTIAL_SEED", 0x5eed_e538_4000_0001);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let started = Instant::now();
    let tallies: Vec<Vec<Tally>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let share = cases / threads + u64::from(i < cases % threads);
                scope.spawn(move || run(seed.wrapping_add(i.wrapping_mul(0x1_0000_0001)), share))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut total = vec![Tally::default(); KINDS.len()];
    for tally in &tallies {
        for (sum, t) in total.iter_mut().zip(tally) {
            sum.accepted += t.accepted;
            sum.rejected += t.rejected;
        }
    }
    let all: u64 = total.iter().map(|t| t.accepted + t.rejected).sum();
    println!(
        "{all} cases agreed in {:.1} s (seed {seed:#x}, {threads} threads)",
        started.elapsed().as_secs_f64()
    );
    for (kind, t) in KINDS.iter().zip(&total) {
        println!(
            "  {kind:>20}: {} accepted, {} rejected",
            t.accepted, t.rejected
        );
    }
    assert!(all >= cases);
    let get = |name: &str| total[KINDS.iter().position(|k| *k == name).unwrap()];
    // Valid and high-S signatures always verify; the corrupted kinds never do (except by a
    // negligible accident), so both answers must have come up where they should.
    for name in ["valid", "high-s"] {
        assert_eq!(get(name).rejected, 0, "{name}");
        assert!(get(name).accepted > 0, "{name}");
    }
    for name in [
        "swapped",
        "bit flip",
        "random",
        "r plus or minus one",
        "other key",
        "other digest",
    ] {
        assert_eq!(get(name).accepted, 0, "{name}");
        assert!(get(name).rejected > 0, "{name}");
    }
    // A flipped digest bit past the 48th byte is truncated away by bits2field: still valid.
    assert!(get("digest bit flip").rejected > 0);
    if cases >= 1000 {
        assert!(get("digest bit flip").accepted > 0);
        assert!(get("token path").accepted > 0 && get("token path").rejected > 0);
    }
}

/// Valid signatures whose u1 = z/s and u2 = r/s are chosen edge scalars: signed digits that
/// carry through every window, single bits at window boundaries, n - 1. For chosen u1, u2 and
/// key Q: R = u1·G + u2·Q (p384's arithmetic), r = x(R) mod n, s = r / u2, z = u1·s; then
/// (r, s) is a valid signature over z. Both verifiers must accept it, and refuse it over z + 1.
#[test]
fn edge_scalars_agree() {
    use p384::elliptic_curve::ops::Reduce;
    use p384::elliptic_curve::point::AffineCoordinates;
    use p384::elliptic_curve::PrimeField;
    use p384::{ProjectivePoint, Scalar, U384};

    let scalar = |bytes: &[u8]| <Scalar as Reduce<U384>>::reduce_bytes(bytes.into());
    let mut edges: Vec<Scalar> = vec![Scalar::ONE, -Scalar::ONE, Scalar::from(2u64)];
    for pattern in [0x88u8, 0x80, 0x7f, 0xff, 0x08, 0x01, 0xf8] {
        edges.push(scalar(&[pattern; 48]));
    }
    for bit in [
        0u32, 3, 4, 5, 6, 7, 8, 63, 64, 127, 128, 255, 256, 377, 378, 383,
    ] {
        let mut bytes = [0u8; 48];
        bytes[47 - (bit / 8) as usize] = 1 << (bit % 8);
        edges.push(scalar(&bytes));
        edges.push(-scalar(&bytes));
    }
    let mut rng = Rng(11);
    let mut checked = 0;
    for (i, u1) in edges.iter().enumerate() {
        let sk = signing_key(&mut rng);
        let vk = *sk.verifying_key();
        let ours = P384VerifyKey::new(&vk);
        let q = ProjectivePoint::from(*vk.as_affine());
        for u2 in &edges {
            let big_r = (ProjectivePoint::GENERATOR * u1 + q * u2).to_affine();
            let r = <Scalar as Reduce<U384>>::reduce_bytes(&big_r.x());
            let s = r * u2.invert().unwrap();
            let z = *u1 * s;
            let sig = Signature::from_scalars(r.to_repr(), s.to_repr()).unwrap();
            let prehash = z.to_repr();
            assert!(vk.verify_prehash(&prehash, &sig).is_ok(), "edge {i}");
            assert!(ours.verify_prehash(&prehash, &sig), "edge {i}");
            let other = (z + Scalar::ONE).to_repr();
            assert!(vk.verify_prehash(&other, &sig).is_err(), "edge {i}");
            assert!(!ours.verify_prehash(&other, &sig), "edge {i}");
            checked += 1;
        }
        // u1 = 0 too (z = 0): R = u2·Q alone.
        let u2 = *u1;
        let big_r = (q * u2).to_affine();
        let r = <Scalar as Reduce<U384>>::reduce_bytes(&big_r.x());
        let s = r * u2.invert().unwrap();
        let sig = Signature::from_scalars(r.to_repr(), s.to_repr()).unwrap();
        assert!(vk.verify_prehash(&[0; 48], &sig).is_ok());
        assert!(ours.verify_prehash(&[0; 48], &sig));
    }
    assert_eq!(checked, edges.len() * edges.len());
}

#[test]
#[ignore = "timing: run with --release --ignored --nocapture"]
fn timing() {
    let mut rng = Rng(7);
    let sk = signing_key(&mut rng);
    let vk: VerifyingKey = *sk.verifying_key();
    let z = rng.bytes(48);
    let sig: Signature = sk.sign_prehash(&z).unwrap();

    let started = Instant::now();
    generator_table().unwrap();
    let g_build = started.elapsed();
    let started = Instant::now();
    let ours = P384VerifyKey::new(&vk);
    let q_build = started.elapsed();

    let n = 200;
    let measure = |f: &dyn Fn() -> bool| {
        let mut medians = Vec::new();
        for _ in 0..5 {
            let started = Instant::now();
            for _ in 0..n {
                assert!(f());
            }
            medians.push(started.elapsed().as_secs_f64() * 1e6 / f64::from(n));
        }
        medians.sort_by(f64::total_cmp);
        medians[2]
    };
    let theirs_us = measure(&|| vk.verify_prehash(&z, &sig).is_ok());
    let ours_us = measure(&|| ours.verify_prehash(&z, &sig));
    println!(
        "p384 0.13 verify_prehash: {theirs_us:.1} µs; tables: {ours_us:.1} µs; \
         G table {:.1} ms / {} bytes (once per VM); key table {:.2} ms / {} bytes",
        g_build.as_secs_f64() * 1e3,
        generator_table().unwrap().heap_bytes(),
        q_build.as_secs_f64() * 1e3,
        ours.table().unwrap().heap_bytes()
    );
}
