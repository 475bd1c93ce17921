//! The host-independent core: extraction, parsing, verification, claims, rules, decisions.
//!
//! Nothing in here imports `proxy_wasm` or reads a clock: every function that needs the time
//! takes `now` ([`crate::time::UnixMillis`]; claims are compared in its whole seconds).

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
pub mod publish;
pub mod request;
pub mod revocation;
pub mod sender;
pub mod token_cache;
pub mod trace;
