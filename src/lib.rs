//! jwt-edge: JWT verification for Envoy and other proxy-wasm hosts.
//!
//! [`authn`] is the host-independent core, [`sources`] the key-source engine (core too: no
//! host calls, it returns commands); `filter` is the thin proxy-wasm adapter.

pub mod authn;
#[cfg(not(target_arch = "wasm32"))]
pub mod cli;
pub mod filter;
pub mod metrics;
pub mod sources;
