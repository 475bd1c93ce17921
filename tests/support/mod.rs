//! Shared by the integration tests that declare `mod support;`. Each test crate uses a part of
//! it, so unused items are expected.
#![allow(dead_code)]

pub mod ecdsa;
pub mod sender;

// The library's unit tests compile the same file (`#[cfg(test)] mod test_rng` in lib.rs): one
// RNG for every test.
#[path = "../../src/test_rng.rs"]
mod test_rng;
pub use test_rng::TestRng;

/// A number from the environment (`_` separators allowed), else `default`.
pub fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}
