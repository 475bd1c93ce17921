//! One differential-test harness for jwt-edge's table-based ECDSA verifiers
//! (`crypto::p256_tables`, `crypto::p384_tables`) against the RustCrypto verifiers they replaced
//! (`p256`/`p384` 0.13 `VerifyingKey::verify_prehash` and `Verifier::verify`), written once and
//! generic over the curve ([`Curve`]; `tests/p256_differential.rs` and
//! `tests/p384_differential.rs` implement it with [`ecdsa_curve!`] and run the tests below).
//! Both verifiers must give the same answer on every case.
//!
//! - [`verify_agrees`]: random keys (`SigningKey` from random bytes), random digests (mostly
//!   field-sized; some shorter and longer to exercise `bits2field`'s padding and truncation;
//!   some ≡ 0 mod n, equal to n, or all-ones), and per digest: the valid signature, its
//!   high-S twin (s → n − s, valid in JWS), r and s swapped, a random bit flipped in r || s,
//!   random r || s, r ± 1, a signature by another key, a signature over another digest, and
//!   the digest with a bit flipped. One key in four also goes through the token path
//!   (`VerifyKey::ec_p256`/`ec_p384` + `VerifyKey::verify` over a message). Every kind of case
//!   must both accept and reject somewhere in the run, or the test fails as too weak. The
//!   case count and seed come from the environment (names in [`Curve`]); the seed is printed
//!   on failure.
//! - [`edge_scalars_agree`]: valid signatures whose u1 = z/s and u2 = r/s are chosen edge
//!   scalars: signed digits that carry through every window, single bits at window
//!   boundaries, n − 1. For chosen u1, u2 and key Q: R = u1·G + u2·Q (RustCrypto's arithmetic),
//!   r = x(R) mod n, s = r / u2, z = u1·s; then (r, s) is a valid signature over z. Both
//!   verifiers must accept it, and refuse it over z + 1.
//! - [`generator_keys_agree`]: the public key is G itself (secret 1) or −G (secret n − 1), so
//!   the key's table holds the generator's own multiples and the running sum of u1·G + u2·Q
//!   can meet the point being added: a doubling (u1·G = u2·Q, or a partial sum equal to a
//!   table entry) or the identity (u1·G = −u2·Q, where no signature can be valid). On both
//!   keys: the whole edge-scalar grid against the known answer (accept, or refuse when R is
//!   the identity, whose count is asserted), both verifiers on u2 = ±u1, then the random case
//!   kinds of [`verify_agrees`].
//! - [`timing`] (ignored in the test files): µs per verification, ours and RustCrypto's, and
//!   table build time.

use std::time::Instant;

use jwt_edge::authn::alg::Algorithm;
use jwt_edge::crypto::verify::VerifyKey;
use p256::elliptic_curve::ff::{Field, PrimeField};

use super::{env_number, TestRng};

/// What the harness needs from a curve: its sizes and test settings, and thin wrappers over
/// the curve crate and jwt-edge's table verifier for it.
pub trait Curve {
    /// "P-256".
    const NAME: &'static str;
    /// Bytes of a scalar or field element.
    const BYTES: usize;
    /// The group order n, big-endian.
    const ORDER: &'static [u8];
    const ALG: Algorithm;
    /// Shortest and longest digest tried besides the field-sized ones.
    const DIGEST_LENGTHS: (usize, usize);
    /// Single-bit scalars tried in the edge grid (±2^bit).
    const EDGE_BITS: &'static [u32];
    /// Environment variable and default for the number of random cases.
    const CASES: (&'static str, u64);
    /// Environment variable and default for the seed.
    const SEED: (&'static str, u64);
    /// Verifications per timed repetition.
    const TIMING_CALLS: u32;

    type SigningKey: Clone;
    type VerifyingKey;
    type Signature;
    /// jwt-edge's verifier with the key's table.
    type Ours;
    type Scalar: PrimeField;

    fn signing_key(secret: &[u8]) -> Option<Self::SigningKey>;
    fn verifying_key(sk: &Self::SigningKey) -> Self::VerifyingKey;
    fn ours(vk: &Self::VerifyingKey) -> Self::Ours;
    /// Heap bytes of the key's table; `None` when the verifier fell back to RustCrypto's.
    fn key_table_bytes(ours: &Self::Ours) -> Option<usize>;
    /// Builds the generator's table if this process has none yet; its heap bytes.
    fn generator_table_bytes() -> usize;
    /// r || s over a digest.
    fn sign_prehash(sk: &Self::SigningKey, z: &[u8]) -> Vec<u8>;
    /// r || s over a message.
    fn sign(sk: &Self::SigningKey, message: &[u8]) -> Vec<u8>;
    /// r || s with r, s in [1, n − 1], as both verifiers take it; `None` otherwise.
    fn parse(sig: &[u8]) -> Option<Self::Signature>;
    fn reference_prehash(vk: &Self::VerifyingKey, z: &[u8], sig: &Self::Signature) -> bool;
    fn ours_prehash(ours: &Self::Ours, z: &[u8], sig: &Self::Signature) -> bool;
    fn reference_message(vk: &Self::VerifyingKey, message: &[u8], sig: &Self::Signature) -> bool;
    /// The key as the token path loads it (JWK coordinates).
    fn token_key(vk: &Self::VerifyingKey) -> VerifyKey;
    /// A big-endian number of [`Curve::BYTES`] bytes, reduced mod n.
    fn reduce(bytes: &[u8]) -> Self::Scalar;
    /// x(u1·G + u2·Q) mod n, or `None` when the sum is the identity.
    fn combine_x(
        vk: &Self::VerifyingKey,
        u1: &Self::Scalar,
        u2: &Self::Scalar,
    ) -> Option<Self::Scalar>;
}

/// Implements [`Curve`] for a RustCrypto curve crate and jwt-edge's table module for it:
/// `ecdsa_curve!(Type, crate, Uint, tables_module, OursType, token_constructor, { items })`,
/// where the items are the curve's constants. jwt-edge's verifiers take the point's
/// coordinates and `r || s` as bytes (no RustCrypto type in the module).
#[allow(unused_macros)]
macro_rules! ecdsa_curve {
    ($curve:ident, $krate:ident, $uint:ident, $tables:ident, $ours:ident, $token_key:ident,
     { $($consts:tt)* }) => {
        struct $curve;

        impl crate::support::ecdsa::Curve for $curve {
            $($consts)*

            type SigningKey = $krate::ecdsa::SigningKey;
            type VerifyingKey = $krate::ecdsa::VerifyingKey;
            type Signature = $krate::ecdsa::Signature;
            type Ours = jwt_edge::crypto::$tables::$ours;
            type Scalar = $krate::Scalar;

            fn signing_key(secret: &[u8]) -> Option<Self::SigningKey> {
                $krate::ecdsa::SigningKey::from_slice(secret).ok()
            }

            fn verifying_key(sk: &Self::SigningKey) -> Self::VerifyingKey {
                *sk.verifying_key()
            }

            fn ours(vk: &Self::VerifyingKey) -> Self::Ours {
                let point = vk.to_encoded_point(false);
                jwt_edge::crypto::$tables::$ours::from_coordinates(
                    point.x().unwrap(),
                    point.y().unwrap(),
                )
                .unwrap()
            }

            fn ours_prehash(ours: &Self::Ours, z: &[u8], sig: &Self::Signature) -> bool {
                ours.verify_prehash(z, &sig.to_bytes())
            }

            fn key_table_bytes(ours: &Self::Ours) -> Option<usize> {
                ours.table().map(|table| table.heap_bytes())
            }

            fn generator_table_bytes() -> usize {
                jwt_edge::crypto::$tables::generator_table().unwrap().heap_bytes()
            }

            fn sign_prehash(sk: &Self::SigningKey, z: &[u8]) -> Vec<u8> {
                use $krate::ecdsa::signature::hazmat::PrehashSigner;
                let sig: Self::Signature = sk.sign_prehash(z).unwrap();
                sig.to_bytes().to_vec()
            }

            fn sign(sk: &Self::SigningKey, message: &[u8]) -> Vec<u8> {
                use $krate::ecdsa::signature::Signer;
                let sig: Self::Signature = sk.sign(message);
                sig.to_bytes().to_vec()
            }

            fn parse(sig: &[u8]) -> Option<Self::Signature> {
                $krate::ecdsa::Signature::from_slice(sig).ok()
            }

            fn reference_prehash(
                vk: &Self::VerifyingKey,
                z: &[u8],
                sig: &Self::Signature,
            ) -> bool {
                use $krate::ecdsa::signature::hazmat::PrehashVerifier;
                vk.verify_prehash(z, sig).is_ok()
            }

            fn reference_message(
                vk: &Self::VerifyingKey,
                message: &[u8],
                sig: &Self::Signature,
            ) -> bool {
                use $krate::ecdsa::signature::Verifier;
                vk.verify(message, sig).is_ok()
            }

            fn token_key(vk: &Self::VerifyingKey) -> jwt_edge::crypto::verify::VerifyKey {
                let point = vk.to_encoded_point(false);
                jwt_edge::crypto::verify::VerifyKey::$token_key(
                    point.x().unwrap(),
                    point.y().unwrap(),
                )
                .unwrap()
            }

            fn reduce(bytes: &[u8]) -> Self::Scalar {
                use $krate::elliptic_curve::ops::Reduce;
                <$krate::Scalar as Reduce<$krate::$uint>>::reduce_bytes(bytes.into())
            }

            fn combine_x(
                vk: &Self::VerifyingKey,
                u1: &Self::Scalar,
                u2: &Self::Scalar,
            ) -> Option<Self::Scalar> {
                use $krate::elliptic_curve::point::AffineCoordinates;
                use $krate::ProjectivePoint;
                let q = ProjectivePoint::from(*vk.as_affine());
                let sum = ProjectivePoint::GENERATOR * u1 + q * u2;
                (sum != ProjectivePoint::IDENTITY).then(|| Self::reduce(&sum.to_affine().x()))
            }
        }
    };
}
// Only the ECDSA test crates use the macro; every crate with `mod support;` compiles it.
#[allow(unused_imports)]
pub(crate) use ecdsa_curve;

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

impl Tally {
    fn count(&mut self, accepted: bool) {
        if accepted {
            self.accepted += 1;
        } else {
            self.rejected += 1;
        }
    }
}

fn bytes_of<S: PrimeField>(scalar: &S) -> Vec<u8> {
    scalar.to_repr().as_ref().to_vec()
}

fn invert<S: PrimeField>(scalar: &S) -> S {
    Option::<S>::from(scalar.invert()).unwrap()
}

/// Both verifiers' answers (reference, ours); a signature that does not parse is a reject for
/// both (parsing is shared: r, s in [1, n − 1]).
fn both<C: Curve>(vk: &C::VerifyingKey, ours: &C::Ours, z: &[u8], sig: &[u8]) -> (bool, bool) {
    match C::parse(sig) {
        Some(sig) => (
            C::reference_prehash(vk, z, &sig),
            C::ours_prehash(ours, z, &sig),
        ),
        None => (false, false),
    }
}

fn random_signing_key<C: Curve>(rng: &mut TestRng) -> C::SigningKey {
    loop {
        // Fails only for 0 or >= n: vanishingly rare, but retried.
        if let Some(key) = C::signing_key(&rng.bytes(C::BYTES)) {
            return key;
        }
    }
}

fn digest<C: Curve>(rng: &mut TestRng) -> Vec<u8> {
    let (shortest, longest) = C::DIGEST_LENGTHS;
    match rng.below(64) {
        0 => vec![0; C::BYTES],
        1 => C::ORDER.to_vec(),
        2 => vec![0xff; C::BYTES],
        3..=9 => {
            let len = shortest + rng.below(longest - shortest + 1);
            rng.bytes(len)
        }
        _ => rng.bytes(C::BYTES),
    }
}

/// The scalar ECDSA derives from a digest at least half the field size (SEC1 bits2int: the
/// leading field-size bytes, a shorter digest as a smaller number; then reduced mod n). Only
/// used to avoid offering one digest's signature as "another digest's" when both are the
/// same scalar.
fn digest_scalar<C: Curve>(z: &[u8]) -> C::Scalar {
    let mut field = vec![0u8; C::BYTES];
    let len = z.len().min(C::BYTES);
    field[C::BYTES - len..].copy_from_slice(&z[..len]);
    C::reduce(&field)
}

/// The high-S twin of r || s: (r, n − s).
fn high_s<C: Curve>(sig: &[u8]) -> Vec<u8> {
    let (r, s) = sig.split_at(C::BYTES);
    [r.to_vec(), bytes_of(&-C::reduce(s))].concat()
}

/// `value` ± 1 as a big-endian number (wrapping).
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

fn flip_bit(bytes: &mut [u8], rng: &mut TestRng) {
    let bit = rng.below(bytes.len() * 8);
    bytes[bit / 8] ^= 1 << (bit % 8);
}

/// Eight digests' worth of cases (every kind but the token path) on `sk`, plus one token-path
/// case when `token_path`; counts each in `tally` and returns how many ran. Panics on the
/// first disagreement, naming `context`.
fn check_key<C: Curve>(
    rng: &mut TestRng,
    sk: &C::SigningKey,
    other: &C::SigningKey,
    token_path: bool,
    tally: &mut [Tally],
    context: &str,
) -> u64 {
    let vk = C::verifying_key(sk);
    let ours = C::ours(&vk);
    assert!(C::key_table_bytes(&ours).is_some(), "table for {context}");
    let mut done = 0;
    let mut last_valid: Option<(Vec<u8>, Vec<u8>)> = None;
    for _ in 0..8 {
        let z = digest::<C>(rng);
        let valid = C::sign_prehash(sk, &z);
        let (r, s) = valid.split_at(C::BYTES);
        let mut candidates: Vec<(usize, Vec<u8>, Vec<u8>)> = Vec::new();
        candidates.push((0, z.clone(), valid.clone()));
        candidates.push((1, z.clone(), high_s::<C>(&valid)));
        candidates.push((2, z.clone(), [s, r].concat()));
        let mut flipped = valid.clone();
        flip_bit(&mut flipped, rng);
        candidates.push((3, z.clone(), flipped));
        candidates.push((4, z.clone(), rng.bytes(2 * C::BYTES)));
        let up = rng.below(2) == 0;
        let nudged = if rng.below(2) == 0 {
            [nudge(r, up), s.to_vec()].concat()
        } else {
            [r.to_vec(), nudge(s, up)].concat()
        };
        candidates.push((5, z.clone(), nudged));
        candidates.push((6, z.clone(), C::sign_prehash(other, &z)));
        // The previous digest's signature (a fresh one for the key's first digest, or when
        // both digests are the same scalar, as 0 and n are).
        let over_other = match last_valid.replace((valid.clone(), z.clone())) {
            Some((sig, prev)) if digest_scalar::<C>(&prev) != digest_scalar::<C>(&z) => sig,
            _ => C::sign_prehash(sk, &rng.bytes(C::BYTES)),
        };
        candidates.push((7, z.clone(), over_other));
        let mut z_flipped = z.clone();
        flip_bit(&mut z_flipped, rng);
        candidates.push((8, z_flipped, valid.clone()));

        for (kind, z, bytes) in candidates {
            let (reference, got) = both::<C>(&vk, &ours, &z, &bytes);
            assert_eq!(
                got,
                reference,
                "{} disagreement: {context}, kind {:?}, digest {}, sig {}",
                C::NAME,
                KINDS[kind],
                hex::encode(&z),
                hex::encode(&bytes)
            );
            tally[kind].count(reference);
            done += 1;
        }
    }
    if token_path {
        // JWK coordinates in, a message (hashed by the algorithm) and raw r || s.
        let key = C::token_key(&vk);
        let len = 1 + rng.below(300);
        let message = rng.bytes(len);
        let mut bytes = C::sign(sk, &message);
        if rng.below(2) == 0 {
            flip_bit(&mut bytes, rng);
        }
        let reference =
            C::parse(&bytes).is_some_and(|sig| C::reference_message(&vk, &message, &sig));
        let got = key.verify(C::ALG, &message, &bytes).is_ok();
        assert_eq!(
            got,
            reference,
            "{} token path disagreement: {context}, message {}, sig {}",
            C::NAME,
            hex::encode(&message),
            hex::encode(&bytes)
        );
        tally[9].count(reference);
        done += 1;
    }
    done
}

/// Runs at least `cases` cases from `seed` on fresh random keys; returns per-kind tallies.
fn run<C: Curve>(seed: u64, cases: u64) -> Vec<Tally> {
    let mut rng = TestRng(seed);
    let mut tally = vec![Tally::default(); KINDS.len()];
    let mut done = 0u64;
    let mut previous: Option<C::SigningKey> = None;
    let mut key_index = 0u64;
    while done < cases {
        let sk = random_signing_key::<C>(&mut rng);
        let other = previous
            .replace(sk.clone())
            .unwrap_or_else(|| random_signing_key::<C>(&mut rng));
        let context = format!("seed {seed}, key {key_index}");
        done += check_key::<C>(
            &mut rng,
            &sk,
            &other,
            key_index % 4 == 0,
            &mut tally,
            &context,
        );
        key_index += 1;
    }
    tally
}

fn sum(tallies: &[Vec<Tally>]) -> Vec<Tally> {
    let mut total = vec![Tally::default(); KINDS.len()];
    for tally in tallies {
        for (sum, t) in total.iter_mut().zip(tally) {
            sum.accepted += t.accepted;
            sum.rejected += t.rejected;
        }
    }
    total
}

fn print(total: &[Tally]) {
    for (kind, t) in KINDS.iter().zip(total) {
        println!(
            "  {kind:>20}: {} accepted, {} rejected",
            t.accepted, t.rejected
        );
    }
}

/// Valid and high-S signatures always verify; the corrupted kinds never do (except by a
/// negligible accident), so both answers must have come up where they should.
fn assert_kinds_exercised(total: &[Tally]) {
    let get = |name: &str| total[KINDS.iter().position(|k| *k == name).unwrap()];
    for name in ["valid", "high-s"] {
        assert_eq!(get(name).rejected, 0, "{name}");
        assert!(get(name).accepted > 0, "{name}");
    }
    // "swapped" to "other digest": a signature that is not for this key and digest.
    for name in &KINDS[2..8] {
        assert_eq!(get(name).accepted, 0, "{name}");
        assert!(get(name).rejected > 0, "{name}");
    }
    // A flipped digest bit past the field size is truncated away by bits2field: still valid.
    assert!(get("digest bit flip").rejected > 0);
}

/// The random differential, on every available core.
pub fn verify_agrees<C: Curve>() {
    let cases = env_number(C::CASES.0, C::CASES.1);
    let seed = env_number(C::SEED.0, C::SEED.1);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let started = Instant::now();
    let tallies: Vec<Vec<Tally>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let share = cases / threads + u64::from(i < cases % threads);
                scope.spawn(move || {
                    run::<C>(seed.wrapping_add(i.wrapping_mul(0x1_0000_0001)), share)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let total = sum(&tallies);
    let all: u64 = total.iter().map(|t| t.accepted + t.rejected).sum();
    println!(
        "{}: {all} cases agreed in {:.1} s (seed {seed:#x}, {threads} threads)",
        C::NAME,
        started.elapsed().as_secs_f64()
    );
    print(&total);
    assert!(all >= cases);
    assert_kinds_exercised(&total);
    if cases >= 1000 {
        let get = |name: &str| total[KINDS.iter().position(|k| *k == name).unwrap()];
        assert!(get("digest bit flip").accepted > 0);
        assert!(get("token path").accepted > 0 && get("token path").rejected > 0);
    }
}

/// The edge scalars: ±1, 2, repeated byte patterns, and ±2^bit for [`Curve::EDGE_BITS`].
fn edge_scalars<C: Curve>() -> Vec<C::Scalar> {
    let mut edges = vec![C::Scalar::ONE, -C::Scalar::ONE, C::Scalar::from(2u64)];
    for pattern in [0x88u8, 0x80, 0x7f, 0xff, 0x08, 0x01, 0xf8] {
        edges.push(C::reduce(&vec![pattern; C::BYTES]));
    }
    for bit in C::EDGE_BITS {
        let mut bytes = vec![0u8; C::BYTES];
        bytes[C::BYTES - 1 - (bit / 8) as usize] = 1 << (bit % 8);
        edges.push(C::reduce(&bytes));
        edges.push(-C::reduce(&bytes));
    }
    edges
}

/// How one (u1, u2) pair went on a key.
#[derive(Debug, PartialEq, Eq)]
enum Edge {
    /// R = u1·G + u2·Q has an x: the signature built from it verified.
    Valid,
    /// R is the identity: signatures that make verification compute it were refused.
    Identity,
}

/// How thoroughly [`edge_case`] checks a pair.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Both verifiers must give the known answer, and refuse the valid signature over z + 1.
    Differential,
    /// jwt-edge's verifier alone against the known answer. RustCrypto's generic verifier is
    /// instantiated in this (unoptimised) test crate and takes ~16 ms per P-384 verification
    /// in a debug build, so a whole grid of it is left to the pairs that need it.
    KnownAnswer,
}

/// Builds, for `u1` and `u2`, the signature whose verification on the key computes
/// R = u1·G + u2·Q, and checks it as `check` says.
fn edge_case<C: Curve>(
    vk: &C::VerifyingKey,
    ours: &C::Ours,
    (u1, u2): (&C::Scalar, &C::Scalar),
    check: Check,
    context: &str,
) -> Edge {
    let s_for = |r: &C::Scalar| *r * invert(u2);
    let answers = |z: &C::Scalar, sig: &[u8]| match check {
        Check::Differential => both::<C>(vk, ours, &bytes_of(z), sig),
        Check::KnownAnswer => {
            let ours = C::parse(sig).is_some_and(|sig| C::ours_prehash(ours, &bytes_of(z), &sig));
            (ours, ours)
        }
    };
    match C::combine_x(vk, u1, u2) {
        Some(r) => {
            let s = s_for(&r);
            let z = *u1 * s;
            let sig = [bytes_of(&r), bytes_of(&s)].concat();
            assert_eq!(
                answers(&z, &sig),
                (true, true),
                "{} {context}: valid edge signature",
                C::NAME
            );
            if check == Check::Differential {
                assert_eq!(
                    answers(&(z + C::Scalar::ONE), &sig),
                    (false, false),
                    "{} {context}: edge signature over z + 1",
                    C::NAME
                );
            }
            Edge::Valid
        }
        None => {
            // The identity has no x, so no r can match; any r makes verification compute it
            // when s = r/u2 and z = u1·s.
            for r in [C::Scalar::ONE, C::Scalar::from(2u64), -C::Scalar::ONE] {
                let s = s_for(&r);
                let sig = [bytes_of(&r), bytes_of(&s)].concat();
                assert_eq!(
                    answers(&(*u1 * s), &sig),
                    (false, false),
                    "{} {context}: R is the identity",
                    C::NAME
                );
            }
            Edge::Identity
        }
    }
}

/// `u1` against every edge scalar as u2, then u1 = 0 (z = 0: R = u2·Q alone) with u2 = `u1`.
/// Returns how many pairs were valid and how many gave the identity.
fn edge_row<C: Curve>(
    vk: &C::VerifyingKey,
    ours: &C::Ours,
    u1: &C::Scalar,
    edges: &[C::Scalar],
    check: Check,
    context: &str,
) -> (usize, usize) {
    let (mut valid, mut identity) = (0, 0);
    for (j, u2) in edges.iter().enumerate() {
        let context = format!("{context}, u2 = edge {j}");
        match edge_case::<C>(vk, ours, (u1, u2), check, &context) {
            Edge::Valid => valid += 1,
            Edge::Identity => identity += 1,
        }
    }
    let context = format!("{context}, u1 = 0");
    let zero = C::Scalar::ZERO;
    assert_eq!(
        edge_case::<C>(vk, ours, (&zero, u1), check, &context),
        Edge::Valid
    );
    (valid, identity)
}

/// Every pair of edge scalars, each u1 with a fresh random key.
pub fn edge_scalars_agree<C: Curve>() {
    let edges = edge_scalars::<C>();
    let mut rng = TestRng(11);
    let mut checked = 0;
    for (i, u1) in edges.iter().enumerate() {
        let vk = C::verifying_key(&random_signing_key::<C>(&mut rng));
        let ours = C::ours(&vk);
        let context = format!("u1 = edge {i}");
        let (valid, identity) =
            edge_row::<C>(&vk, &ours, u1, &edges, Check::Differential, &context);
        assert_eq!(identity, 0, "edge {i}: a random key gave the identity");
        checked += valid;
    }
    assert_eq!(checked, edges.len() * edges.len());
}

/// The public key G (secret 1) and −G (secret n − 1): the edge grid with the identity cases
/// counted exactly, then the random case kinds.
pub fn generator_keys_agree<C: Curve>() {
    let edges = edge_scalars::<C>();
    let mut one = vec![0u8; C::BYTES];
    *one.last_mut().unwrap() = 1;
    let minus_one = bytes_of(&-C::Scalar::ONE);
    let mut rng = TestRng(0x5eed_0006);
    let mut total = vec![Tally::default(); KINDS.len()];
    for (name, secret, sign) in [
        ("G", one, C::Scalar::ONE),
        ("-G", minus_one, -C::Scalar::ONE),
    ] {
        let sk = C::signing_key(&secret).unwrap();
        let vk = C::verifying_key(&sk);
        let ours = C::ours(&vk);
        // Q = sign·G, so R = (u1 + sign·u2)·G: the identity exactly when u1 = −sign·u2, and a
        // doubling of the same multiple when u1 = sign·u2.
        let expected_identity = edges
            .iter()
            .flat_map(|u1| edges.iter().map(move |u2| (*u1, *u2)))
            .filter(|(u1, u2)| *u1 + sign * *u2 == C::Scalar::ZERO)
            .count();
        let doublings = edges
            .iter()
            .flat_map(|u1| edges.iter().map(move |u2| (*u1, *u2)))
            .filter(|(u1, u2)| *u1 == sign * *u2)
            .count();
        assert!(expected_identity > 0 && doublings > 0);
        let (mut valid, mut identity) = (0, 0);
        for (i, u1) in edges.iter().enumerate() {
            let context = format!("Q = {name}, u1 = edge {i}");
            let (v, id) = edge_row::<C>(&vk, &ours, u1, &edges, Check::KnownAnswer, &context);
            valid += v;
            identity += id;
        }
        assert_eq!(identity, expected_identity, "Q = {name}: identity cases");
        assert_eq!(valid + identity, edges.len() * edges.len());
        // Both verifiers where the halves meet: u2 = ±u1 (a doubling one way, the identity
        // the other).
        for (i, u) in edges.iter().enumerate() {
            for (u2, what) in [(*u, "u2 = u1"), (-*u, "u2 = -u1")] {
                let context = format!("Q = {name}, u1 = edge {i}, {what}");
                let expected = if *u + sign * u2 == C::Scalar::ZERO {
                    Edge::Identity
                } else {
                    Edge::Valid
                };
                assert_eq!(
                    edge_case::<C>(&vk, &ours, (u, &u2), Check::Differential, &context),
                    expected
                );
            }
        }
        println!(
            "{} Q = {name}: {valid} valid edge signatures ({doublings} with u1·G = u2·Q), \
             {identity} identity cases refused",
            C::NAME
        );

        let mut tally = vec![Tally::default(); KINDS.len()];
        for round in 0..8 {
            let other = random_signing_key::<C>(&mut rng);
            let context = format!("Q = {name}, round {round}");
            check_key::<C>(&mut rng, &sk, &other, true, &mut tally, &context);
        }
        total = sum(&[total, tally]);
    }
    print(&total);
    assert_kinds_exercised(&total);
}

/// µs per verification, ours and RustCrypto's, and the table build times.
pub fn timing<C: Curve>() {
    let mut rng = TestRng(7);
    let sk = random_signing_key::<C>(&mut rng);
    let vk = C::verifying_key(&sk);
    let z = rng.bytes(C::BYTES);
    let sig = C::parse(&C::sign_prehash(&sk, &z)).unwrap();

    let started = Instant::now();
    let g_bytes = C::generator_table_bytes();
    let g_build = started.elapsed();
    let started = Instant::now();
    let ours = C::ours(&vk);
    let q_build = started.elapsed();

    let n = C::TIMING_CALLS;
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
    let theirs_us = measure(&|| C::reference_prehash(&vk, &z, &sig));
    let ours_us = measure(&|| C::ours_prehash(&ours, &z, &sig));
    println!(
        "{} RustCrypto verify_prehash: {theirs_us:.1} µs; tables: {ours_us:.1} µs; \
         G table {:.1} ms / {g_bytes} bytes (once per VM); key table {:.2} ms / {} bytes",
        C::NAME,
        g_build.as_secs_f64() * 1e3,
        q_build.as_secs_f64() * 1e3,
        C::key_table_bytes(&ours).unwrap()
    );
}
