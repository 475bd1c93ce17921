//! The proxy-wasm adapter: reads what the host offers, asks the core, carries out the answer.
//!
//! Everything here talks to the host through the [`Host`] trait, so the adapter's own logic
//! (pausing and resuming requests, the fetch lease, key-set sync on tick) is tested natively
//! against [`fake::FakeHost`]. Only `proxy.rs`, compiled for wasm32 with the `proxy` feature
//! (on by default), touches the proxy-wasm SDK.

pub mod headers;
pub mod host;
pub use crate::metrics;
pub mod state;

#[cfg(test)]
pub mod fake;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_dpop;
#[cfg(test)]
mod tests_dpop_nonce;
#[cfg(test)]
mod tests_mtls;
#[cfg(test)]
mod tests_publish;

#[cfg(all(target_arch = "wasm32", feature = "proxy"))]
pub mod proxy;

pub use host::Host;
pub use state::{Action, FilterState};
