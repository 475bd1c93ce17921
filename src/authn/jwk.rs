//! JWKS parsing (lenient per key, strict per document) and key selection.
//!
//! STUB: interface fixed, implementation in progress (see crypto helper).

use crate::authn::alg::Algorithm;
use crate::authn::error::AuthError;

/// A verified-usable public key (or, for local key sets only, an HMAC secret).
#[derive(Debug, Clone)]
pub struct Jwk {
    pub kid: Option<String>,
}

/// The usable keys of one key-set document.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<Jwk>,
}

/// A key entry that was not loaded, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedKey {
    pub index: usize,
    pub kid: Option<String>,
    pub reason: String,
}

/// The outcome of loading a document.
#[derive(Debug, Clone)]
pub struct JwksLoad {
    pub keys: KeySet,
    pub skipped: Vec<SkippedKey>,
}

/// Why a whole document was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksError {
    NotJson(String),
    NoKeysArray,
    NoUsableKey(Vec<SkippedKey>),
    TooLarge(usize),
}

/// Options for [`parse_jwks`].
#[derive(Debug, Clone, Copy)]
pub struct JwksOptions {
    /// Accept `kty: oct` (HMAC) keys: only for local key sets.
    pub allow_symmetric: bool,
}

/// Parses a JWKS document.
pub fn parse_jwks(_bytes: &[u8], _opts: JwksOptions) -> Result<JwksLoad, JwksError> {
    Err(JwksError::NoKeysArray)
}

impl KeySet {
    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key is usable.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys to try for a token with this `kid` and `alg`.
    pub fn select(&self, _kid: Option<&str>, _alg: Algorithm) -> Result<Vec<&Jwk>, AuthError> {
        Err(AuthError::NoMatchingKey("stub".into()))
    }
}

impl Jwk {
    /// Verifies `signature` over `signing_input` with this key under `alg`.
    pub fn verify(
        &self,
        _alg: Algorithm,
        _signing_input: &[u8],
        _signature: &[u8],
    ) -> Result<(), AuthError> {
        Err(AuthError::BadSignature)
    }
}
