//! jwt-edge: JWT verification for Envoy and other proxy-wasm hosts.
//!
//! [`authn`] is the host-independent core; `filter` is the thin proxy-wasm adapter.

pub mod authn;
pub mod filter;
