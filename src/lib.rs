//! jwt-edge: JWT verification for Envoy and other proxy-wasm hosts.
//!
//! [`authn`] is the host-independent core, [`crypto`] its signature verification and
//! arithmetic, [`sources`] the key-source engine (core too: no host calls, it returns
//! commands); `filter` is the thin proxy-wasm adapter. [`time`] is the instant and duration
//! types they all pass around.

pub mod authn;
#[cfg(not(target_arch = "wasm32"))]
pub mod cli;
pub mod crypto;
pub mod filter;
pub mod heap;
pub mod metrics;
pub mod sources;
pub mod time;
// The unit tests use part of it; tests/support uses the rest.
#[cfg(test)]
#[allow(dead_code)]
mod test_rng;
