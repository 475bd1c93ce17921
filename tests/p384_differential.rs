//! Differential tests of jwt-edge's table-based ES384 verifier (`crypto::p384_tables`, on its
//! own field arithmetic) against the RustCrypto verifier it replaced (`p384` 0.13, no longer in
//! the module), through the harness shared with ES256
//! (`tests/support/ecdsa.rs`, which describes every test).
//!
//! - `verify_agrees_with_p384`: `P384_DIFFERENTIAL_CASES` random cases (default 2,000, what
//!   plain `cargo test` runs: p384's own verifier takes ~1 ms per case natively). The full run
//!   is `P384_DIFFERENTIAL_CASES=100000 cargo test --release --test p384_differential`. The
//!   seed is `P384_DIFFERENTIAL_SEED` (default fixed) and is printed on failure.
//! - `edge_scalars_agree`, `generator_keys_agree` (public key G and −G).
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

mod support;

use jwt_edge::authn::alg::Algorithm;
use support::ecdsa::{self, ecdsa_curve};

ecdsa_curve!(P384, p384, U384, p384_tables, P384VerifyKey, ec_p384, {
    const NAME: &'static str = "P-384";
    const BYTES: usize = 48;
    const ORDER: &'static [u8] = &[
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc7, 0x63, 0x4d, 0x81, 0xf4, 0x37,
        0x2d, 0xdf, 0x58, 0x1a, 0x0d, 0xb2, 0x48, 0xb0, 0xa7, 0x7a, 0xec, 0xec, 0x19, 0x6a, 0xcc,
        0xc5, 0x29, 0x73,
    ];
    const ALG: Algorithm = Algorithm::Es384;
    const DIGEST_LENGTHS: (usize, usize) = (24, 80);
    const EDGE_BITS: &'static [u32] = &[
        0, 3, 4, 5, 6, 7, 8, 63, 64, 127, 128, 255, 256, 377, 378, 383,
    ];
    const CASES: (&'static str, u64) = ("P384_DIFFERENTIAL_CASES", 2_000);
    const SEED: (&'static str, u64) = ("P384_DIFFERENTIAL_SEED", 0x5eed_e538_4000_0001);
    const TIMING_CALLS: u32 = 200;
});

#[test]
fn verify_agrees_with_p384() {
    ecdsa::verify_agrees::<P384>();
}

#[test]
fn edge_scalars_agree() {
    ecdsa::edge_scalars_agree::<P384>();
}

#[test]
fn generator_keys_agree() {
    ecdsa::generator_keys_agree::<P384>();
}

#[test]
#[ignore = "timing: run with --release --ignored --nocapture"]
fn timing() {
    ecdsa::timing::<P384>();
}
