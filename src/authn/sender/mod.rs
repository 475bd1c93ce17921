//! Sender-constrained access tokens: the checks that tie a verified token to the client that
//! presents it, either by a DPoP proof (RFC 9449, [`dpop`]) or by the TLS client certificate
//! (RFC 8705 §3, [`mtls`]).
//!
//! Each check is a pure function of the request facts, the verified token and `now`; the
//! jti replay cache ([`replay`]) is a plain data structure with a byte record for the
//! adapter to share. Both are wired through the provider's `sender_constraint` and checked in
//! `authenticate` after the token verified (DPoP replay through shared data in
//! `sources::dpop_replay`; the client certificate is read by the adapter only when some
//! provider has `mtls` on).

pub mod dpop;
pub mod htu;
pub mod mtls;
pub mod nonce;
pub mod replay;
pub mod thumbprint;
