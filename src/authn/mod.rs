//! The host-independent core: extraction, parsing, verification, claims, rules, decisions.
//!
//! Nothing in here imports `proxy_wasm` or reads a clock: every function that needs the time
//! takes `now` (seconds since the Unix epoch).

pub mod alg;
pub mod authenticate;
pub mod b64;
pub mod claims;
pub mod config;
pub mod discovery;
pub mod error;
pub mod extract;
pub mod json;
pub mod jwk;
pub mod jws;
pub mod matcher;
pub mod outcome;
pub mod policy;
pub mod request;
pub mod revocation;
pub mod token_cache;

// The signature code lives in src/crypto/ (its README holds the design notes); these are its
// paths here.
pub use crate::crypto::verify as crypto;
pub use crate::crypto::{bigmod, bigmod_f64, fixed_window, p256_field, p256_tables, p384_tables};
