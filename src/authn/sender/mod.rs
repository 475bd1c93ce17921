//! Sender-constrained access tokens: the checks that tie a verified token to the client that
//! presents it, either by a DPoP proof (RFC 9449, [`dpop`]) or by the TLS client certificate
//! (RFC 8705 §3, [`mtls`]).
//!
//! Each check is a pure function of the request facts, the verified token and `now`; the
//! jti replay cache ([`replay`]) is a plain data structure with a byte record for the
//! adapter to share. DPoP is wired (provider `sender_constraint`, checked in
//! `authenticate` after the token verified; replay through shared data in
//! `sources::dpop_replay`); the mTLS binding is not wired yet.

pub mod dpop;
pub mod htu;
pub mod mtls;
pub mod replay;
pub mod thumbprint;
