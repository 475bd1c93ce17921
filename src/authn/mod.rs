//! The host-independent core: extraction, parsing, verification, claims, rules, decisions.
//!
//! Nothing in here imports `proxy_wasm` or reads a clock: every function that needs the time
//! takes `now` (seconds since the Unix epoch).

pub mod alg;
pub mod b64;
pub mod config;
pub mod crypto;
pub mod error;
pub mod jwk;
pub mod matcher;
pub mod policy;
pub mod request;
