//! Signature verification ([`verify`]) and the arithmetic under it. Everything here handles
//! public data only and is variable-time on purpose; `README.md` in this folder says why that
//! is safe and how each part is cross-checked.

pub mod bigmod;
pub mod bigmod_f64;
pub mod ecdsa;
pub mod fixed_window;
pub mod limbs;
pub mod p256_field;
pub mod p256_tables;
pub mod p384_field;
pub mod p384_tables;
pub mod safegcd;
pub mod verify;
pub mod weierstrass;
