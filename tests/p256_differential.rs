//! Differential tests of jwt-edge's table-based ES256 verifier (`crypto::p256_tables`, on its
//! own field and scalar arithmetic) against the RustCrypto verifier it replaced (`p256` 0.13, no
//! longer in the module), through the harness shared with ES384
//! (`tests/support/ecdsa.rs`, which describes every test).
//!
//! - `verify_agrees_with_p256`: `P256_DIFFERENTIAL_CASES` random cases (default 10,000, what
//!   plain `cargo test` runs: 8–36 s in a debug build on a busy 2-vCPU VM). The full run is
//!   `P256_DIFFERENTIAL_CASES=100000 cargo test --release --test p256_differential`
//!   (~1–2 min there, most of it in p256's own verifier). The seed is
//!   `P256_DIFFERENTIAL_SEED` (default fixed) and is printed on failure.
//! - `edge_scalars_agree`, `generator_keys_agree` (public key G and −G).
//! - `timing` (ignored): µs per ES256 verification, ours and p256's, and table build time:
//!   `cargo test --release --test p256_differential -- --ignored --nocapture timing`.

#![cfg(not(target_arch = "wasm32"))]
// Test code: a failed unwrap or index is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use jwt_edge::authn::alg::Algorithm;
use support::ecdsa::{self, ecdsa_curve};

ecdsa_curve!(P256, p256, U256, p256_tables, P256VerifyKey, ec_p256, {
    const NAME: &'static str = "P-256";
    const BYTES: usize = 32;
    const ORDER: &'static [u8] = &[
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63,
        0x25, 0x51,
    ];
    const ALG: Algorithm = Algorithm::Es256;
    const DIGEST_LENGTHS: (usize, usize) = (16, 64);
    const EDGE_BITS: &'static [u32] = &[0, 3, 4, 5, 7, 8, 63, 64, 127, 128, 251, 252, 255];
    const CASES: (&'static str, u64) = ("P256_DIFFERENTIAL_CASES", 10_000);
    const SEED: (&'static str, u64) = ("P256_DIFFERENTIAL_SEED", 0x5eed_e525_6000_0001);
    const TIMING_CALLS: u32 = 2000;
});

#[test]
fn verify_agrees_with_p256() {
    ecdsa::verify_agrees::<P256>();
}

#[test]
fn edge_scalars_agree() {
    ecdsa::edge_scalars_agree::<P256>();
}

#[test]
fn generator_keys_agree() {
    ecdsa::generator_keys_agree::<P256>();
}

#[test]
#[ignore = "timing: run with --release --ignored --nocapture"]
fn timing() {
    ecdsa::timing::<P256>();
}
