//! The verification outcome vocabulary: one stable machine code per way a request can fail.
//!
//! Codes are part of the product's interface (response bodies, logs, metrics) and never change
//! meaning. [`AuthError::status`] is the one place that maps a code to an HTTP status.

use std::fmt;

use crate::authn::alg::Algorithm;

/// Why a request was not authenticated. Each variant has a stable [`code`](AuthError::code).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    /// No token where the provider looks for one.
    TokenMissing,
    /// The token (or the header carrying it) is over `max_token_bytes`.
    TokenTooLarge { limit: usize },
    /// More than one distinct token, or a repeated `Authorization` header.
    MultipleTokens,
    /// Five segments: an encrypted JWT (JWE), which jwt-edge does not accept.
    TokenIsJwe,
    /// Not three non-empty dot-separated segments (signature may not be empty).
    Malformed(String),
    /// A segment is not canonical, unpadded base64url.
    BadBase64(&'static str),
    /// Header or payload is not a JSON object (or is nested too deep, or not UTF-8).
    BadJson(&'static str),
    /// A JSON member name appears twice (RFC 7515 §4 / RFC 8725 §3.2).
    DuplicateMember(&'static str),
    /// The header has no `alg`, or it is not a string.
    AlgMissing,
    /// The token's `alg` is not on the provider's allow-list (this includes `none`).
    AlgNotAllowed(String),
    /// `crit` names an extension jwt-edge does not implement, or is malformed.
    CritUnsupported,
    /// The token names a `kid` the key set does not have.
    UnknownKid(String),
    /// No key in the set fits the token's `alg` (for a token without `kid`), or the key with
    /// the token's `kid` is of another type or restricted to another algorithm or use.
    NoMatchingKey(String),
    /// The signature does not verify.
    BadSignature,
    /// A time claim or other registered claim has the wrong JSON type.
    ClaimMalformed(&'static str),
    /// `exp` is required and absent.
    ExpMissing,
    /// `exp` is in the past (beyond clock skew).
    Expired,
    /// `nbf` is in the future (beyond clock skew).
    NotYetValid,
    /// The token's lifetime is longer than `max_lifetime` allows.
    LifetimeTooLong,
    /// `iss` is absent or not the configured issuer.
    IssuerMismatch,
    /// `aud` does not contain any configured audience.
    AudienceMismatch,
    /// `sub` does not match the configured subject matcher.
    SubjectMismatch,
    /// The key set for the provider is not available (never fetched, or fetch failed).
    JwksUnavailable,
    /// Valid token, but a required scope is missing.
    InsufficientScope { required: String },
    /// Valid token, but a required claim value is missing.
    ClaimMismatch(String),
    /// The token's `jti` or `sub` is on the deny-list.
    TokenRevoked,
    /// The provider's remote revocation list is not available (never fetched, or too stale):
    /// a token that may be revoked is not accepted.
    RevocationUnavailable,
    /// The host refused a header change an accepted request needs (a client's copy of an
    /// identity header to remove, a token not to forward, the identity header itself): the
    /// request does not go on unchanged.
    HeaderChangeRefused,
    // Sender-constrained tokens (src/authn/sender/): RFC 9449 DPoP and RFC 8705 mTLS.
    /// DPoP is required and the request has no `DPoP` header.
    DpopProofMissing,
    /// More than one `DPoP` header (or one with a comma-separated list).
    DpopProofMultiple,
    /// The proof is not a compact JWS with the members RFC 9449 §4.2 requires.
    DpopProofMalformed(String),
    /// The proof's `typ` is not `dpop+jwt`.
    DpopProofTyp,
    /// The proof's `alg` is not an asymmetric algorithm on the provider's DPoP list.
    DpopProofAlg,
    /// The proof's `jwk` is missing, private, symmetric, unsupported or does not fit `alg`.
    DpopProofKey(String),
    /// The proof's signature does not verify under its own `jwk`.
    DpopProofSignature,
    /// `htm` is not the request method.
    DpopHtmMismatch,
    /// `htu` is not the request URI (after normalisation, without query and fragment).
    DpopHtuMismatch,
    /// `iat` is outside the accepted window around now.
    DpopIatOutOfWindow,
    /// `ath` is missing or is not the hash of the access token.
    DpopAthMismatch,
    /// The proof's key is not the key the access token is bound to (`cnf.jkt`).
    DpopJktMismatch,
    /// The proof's `jti` was seen before within its window.
    DpopReplayed,
    /// The replay cache is full of live entries and cannot tell whether this (older) proof
    /// was seen: refused, not a verdict on the client.
    DpopReplayCacheFull,
    /// A DPoP proof was presented with an access token that has no `cnf.jkt`.
    DpopTokenUnbound,
    /// A token bound to a DPoP key (`cnf.jkt`) was presented as a bearer token.
    DpopBoundTokenAsBearer,
    /// The provider requires a server nonce (RFC 9449 §8) and the proof has no `nonce`.
    DpopNonceMissing,
    /// The proof's `nonce` is not one this provider issued for the current or the previous
    /// window (expired, from another provider or proxy, or not a nonce at all).
    DpopNonceInvalid,
    /// The provider's nonce secret cannot be read or created in shared data: refused, not
    /// a verdict on the client.
    DpopNonceUnavailable,
    /// The token is certificate-bound and the connection has no client certificate.
    MtlsCertificateMissing,
    /// `cnf.x5t#S256` is not the SHA-256 of the client certificate.
    MtlsThumbprintMismatch,
    /// Certificate binding is required and the token has no `cnf.x5t#S256`.
    MtlsTokenUnbound,
    /// The request carries its own copy of a header the filter sets from a verified token
    /// (`claim_to_headers`, `forward_payload_header`), on a host where a removed request
    /// header may still reach the upstream (ngx_wasm_module with `proxy_pass`): refused,
    /// since it could not be taken out. (On Envoy such copies are removed instead.)
    IdentityHeaderPresent,
    /// A token that must not be forwarded is in the query string, on a host that cannot take
    /// it out of what it sends upstream (ngx_wasm_module: NGINX's proxy module sends the
    /// original request line).
    TokenInQuery,
}

/// How a failure is answered: status and the RFC 6750 `error` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// 401 without `error=` (RFC 6750 §3.1: no credentials given).
    Unauthorized,
    /// 401 with `error="invalid_token"`.
    InvalidToken,
    /// 403 with `error="insufficient_scope"`.
    Forbidden,
    /// 503: the key set is unavailable. Not the client's fault, and not a forgery.
    Unavailable,
    /// 401 with `error="invalid_dpop_proof"` (RFC 9449 §7.1), always under the DPoP scheme.
    InvalidDpopProof,
    /// 400 with `error="invalid_request"` (RFC 6750 §3.1): the request itself is not
    /// acceptable, whatever its token.
    InvalidRequest,
    /// 401 with `error="use_dpop_nonce"` (RFC 9449 §8): the proof needs a fresh server
    /// nonce, which the reply carries in `DPoP-Nonce`; always under the DPoP scheme.
    UseDpopNonce,
}

/// The scheme a provider's challenge names (RFC 9449 §7.1): `Bearer`, or `DPoP` with the
/// proof algorithms it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme<'a> {
    Bearer,
    Dpop { algs: &'a [Algorithm] },
}

impl Status {
    /// The HTTP status code.
    pub fn http_code(self) -> u32 {
        match self {
            Status::Unauthorized
            | Status::InvalidToken
            | Status::InvalidDpopProof
            | Status::UseDpopNonce => 401,
            Status::Forbidden => 403,
            Status::Unavailable => 503,
            Status::InvalidRequest => 400,
        }
    }
}

impl AuthError {
    /// The stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::TokenMissing => "token_missing",
            AuthError::TokenTooLarge { .. } => "token_too_large",
            AuthError::MultipleTokens => "multiple_tokens",
            AuthError::TokenIsJwe => "token_is_jwe",
            AuthError::Malformed(_) => "token_malformed",
            AuthError::BadBase64(_) => "bad_base64",
            AuthError::BadJson(_) => "bad_json",
            AuthError::DuplicateMember(_) => "duplicate_member",
            AuthError::AlgMissing => "alg_missing",
            AuthError::AlgNotAllowed(_) => "alg_not_allowed",
            AuthError::CritUnsupported => "crit_unsupported",
            AuthError::UnknownKid(_) => "unknown_kid",
            AuthError::NoMatchingKey(_) => "no_matching_key",
            AuthError::BadSignature => "bad_signature",
            AuthError::ClaimMalformed(_) => "claim_malformed",
            AuthError::ExpMissing => "exp_missing",
            AuthError::Expired => "token_expired",
            AuthError::NotYetValid => "token_not_yet_valid",
            AuthError::LifetimeTooLong => "lifetime_too_long",
            AuthError::IssuerMismatch => "issuer_mismatch",
            AuthError::AudienceMismatch => "audience_mismatch",
            AuthError::SubjectMismatch => "subject_mismatch",
            AuthError::JwksUnavailable => "jwks_unavailable",
            AuthError::InsufficientScope { .. } => "insufficient_scope",
            AuthError::ClaimMismatch(_) => "claim_mismatch",
            AuthError::TokenRevoked => "token_revoked",
            AuthError::RevocationUnavailable => "revocation_unavailable",
            AuthError::HeaderChangeRefused => "header_change_refused",
            AuthError::DpopProofMissing => "dpop_proof_missing",
            AuthError::DpopProofMultiple => "dpop_proof_multiple",
            AuthError::DpopProofMalformed(_) => "dpop_proof_malformed",
            AuthError::DpopProofTyp => "dpop_proof_typ",
            AuthError::DpopProofAlg => "dpop_proof_alg",
            AuthError::DpopProofKey(_) => "dpop_proof_key",
            AuthError::DpopProofSignature => "dpop_proof_signature",
            AuthError::DpopHtmMismatch => "dpop_htm_mismatch",
            AuthError::DpopHtuMismatch => "dpop_htu_mismatch",
            AuthError::DpopIatOutOfWindow => "dpop_iat_out_of_window",
            AuthError::DpopAthMismatch => "dpop_ath_mismatch",
            AuthError::DpopJktMismatch => "dpop_jkt_mismatch",
            AuthError::DpopReplayed => "dpop_replayed",
            AuthError::DpopReplayCacheFull => "dpop_replay_cache_full",
            AuthError::DpopTokenUnbound => "dpop_token_unbound",
            AuthError::DpopBoundTokenAsBearer => "dpop_bound_token_as_bearer",
            AuthError::DpopNonceMissing => "dpop_nonce_missing",
            AuthError::DpopNonceInvalid => "dpop_nonce_invalid",
            AuthError::DpopNonceUnavailable => "dpop_nonce_unavailable",
            AuthError::MtlsCertificateMissing => "mtls_certificate_missing",
            AuthError::MtlsThumbprintMismatch => "mtls_thumbprint_mismatch",
            AuthError::MtlsTokenUnbound => "mtls_token_unbound",
            AuthError::IdentityHeaderPresent => "identity_header_present",
            AuthError::TokenInQuery => "token_in_query",
        }
    }

    /// The one mapping from outcome to response class.
    pub fn status(&self) -> Status {
        match self {
            AuthError::TokenMissing => Status::Unauthorized,
            AuthError::AudienceMismatch
            | AuthError::SubjectMismatch
            | AuthError::InsufficientScope { .. }
            | AuthError::ClaimMismatch(_) => Status::Forbidden,
            AuthError::JwksUnavailable
            | AuthError::RevocationUnavailable
            | AuthError::HeaderChangeRefused
            | AuthError::DpopReplayCacheFull
            | AuthError::DpopNonceUnavailable => Status::Unavailable,
            AuthError::DpopNonceMissing | AuthError::DpopNonceInvalid => Status::UseDpopNonce,
            // The proof is at fault (RFC 9449 §7.1 `invalid_dpop_proof`); `ath` and `jkt`
            // tie the proof to the token, and it is the proof that does not fit.
            AuthError::DpopProofMissing
            | AuthError::DpopProofMultiple
            | AuthError::DpopProofMalformed(_)
            | AuthError::DpopProofTyp
            | AuthError::DpopProofAlg
            | AuthError::DpopProofKey(_)
            | AuthError::DpopProofSignature
            | AuthError::DpopHtmMismatch
            | AuthError::DpopHtuMismatch
            | AuthError::DpopIatOutOfWindow
            | AuthError::DpopAthMismatch
            | AuthError::DpopJktMismatch
            | AuthError::DpopReplayed => Status::InvalidDpopProof,
            AuthError::IdentityHeaderPresent | AuthError::TokenInQuery => Status::InvalidRequest,
            AuthError::TokenTooLarge { .. }
            | AuthError::MultipleTokens
            | AuthError::TokenIsJwe
            | AuthError::Malformed(_)
            | AuthError::BadBase64(_)
            | AuthError::BadJson(_)
            | AuthError::DuplicateMember(_)
            | AuthError::AlgMissing
            | AuthError::AlgNotAllowed(_)
            | AuthError::CritUnsupported
            | AuthError::UnknownKid(_)
            | AuthError::NoMatchingKey(_)
            | AuthError::BadSignature
            | AuthError::ClaimMalformed(_)
            | AuthError::ExpMissing
            | AuthError::Expired
            | AuthError::NotYetValid
            | AuthError::LifetimeTooLong
            | AuthError::IssuerMismatch
            | AuthError::TokenRevoked
            | AuthError::DpopTokenUnbound
            | AuthError::DpopBoundTokenAsBearer
            | AuthError::MtlsCertificateMissing
            | AuthError::MtlsThumbprintMismatch
            | AuthError::MtlsTokenUnbound => Status::InvalidToken,
        }
    }

    /// The `WWW-Authenticate` value for this failure (RFC 6750 §3), or `None` for 503.
    ///
    /// `realm` is written as given after escaping; the description never contains token bytes.
    pub fn www_authenticate(&self, realm: &str) -> Option<String> {
        self.challenge(realm, Scheme::Bearer)
    }

    /// The `WWW-Authenticate` value under a provider's scheme: as
    /// [`www_authenticate`](AuthError::www_authenticate) for `Bearer`; for DPoP the scheme
    /// is `DPoP` and `algs` lists the proof algorithms (RFC 9449 §7.1). A proof failure is
    /// always answered under `DPoP`.
    pub fn challenge(&self, realm: &str, scheme: Scheme<'_>) -> Option<String> {
        let realm = quote(realm);
        let (name, algs) = match scheme {
            Scheme::Bearer
                if matches!(
                    self.status(),
                    Status::InvalidDpopProof | Status::UseDpopNonce
                ) =>
            {
                ("DPoP", String::new())
            }
            Scheme::Bearer => ("Bearer", String::new()),
            Scheme::Dpop { algs } => {
                let names: Vec<&str> = algs.iter().map(|a| a.name()).collect();
                ("DPoP", format!(", algs=\"{}\"", names.join(" ")))
            }
        };
        let challenge = match self.status() {
            Status::Unauthorized => Some(format!("{name} realm=\"{realm}\"")),
            Status::InvalidToken => Some(format!(
                "{name} realm=\"{realm}\", error=\"invalid_token\", error_description=\"{}\"",
                quote(&self.to_string())
            )),
            Status::InvalidDpopProof => Some(format!(
                "{name} realm=\"{realm}\", error=\"invalid_dpop_proof\", error_description=\"{}\"",
                quote(&self.to_string())
            )),
            Status::Forbidden => {
                let scope = match self {
                    AuthError::InsufficientScope { required } => {
                        format!(", scope=\"{}\"", quote(required))
                    }
                    _ => String::new(),
                };
                Some(format!(
                    "{name} realm=\"{realm}\", error=\"insufficient_scope\", error_description=\"{}\"{scope}",
                    quote(&self.to_string())
                ))
            }
            Status::InvalidRequest => Some(format!(
                "{name} realm=\"{realm}\", error=\"invalid_request\", error_description=\"{}\"",
                quote(&self.to_string())
            )),
            Status::UseDpopNonce => Some(format!(
                "{name} realm=\"{realm}\", error=\"use_dpop_nonce\", error_description=\"{}\"",
                quote(&self.to_string())
            )),
            Status::Unavailable => None,
        };
        challenge.map(|c| c + &algs)
    }
}

/// Keeps a quoted-string value inside its quotes: drops `"`, `\` and control characters.
fn quote(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .collect()
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::TokenMissing => f.write_str("no token in the request"),
            AuthError::TokenTooLarge { limit } => {
                write!(f, "token is larger than {limit} bytes")
            }
            AuthError::MultipleTokens => f.write_str("the request carries more than one token"),
            AuthError::TokenIsJwe => f.write_str("encrypted tokens (JWE) are not accepted"),
            AuthError::Malformed(why) => {
                write!(f, "token is not a JWS compact serialization: {why}")
            }
            AuthError::BadBase64(part) => {
                write!(f, "token {part} is not unpadded base64url")
            }
            AuthError::BadJson(part) => write!(f, "token {part} is not a JSON object"),
            AuthError::DuplicateMember(part) => {
                write!(f, "token {part} has a duplicate member name")
            }
            AuthError::AlgMissing => f.write_str("token header has no alg"),
            AuthError::AlgNotAllowed(_) => f.write_str("the token's algorithm is not allowed"),
            AuthError::CritUnsupported => {
                f.write_str("token header crit names an unsupported extension")
            }
            AuthError::UnknownKid(_) => f.write_str("the key set has no key with the token's kid"),
            AuthError::NoMatchingKey(_) => {
                f.write_str("no key in the key set fits the token's kid and algorithm")
            }
            AuthError::BadSignature => f.write_str("signature verification failed"),
            AuthError::ClaimMalformed(claim) => write!(f, "claim {claim} has the wrong type"),
            AuthError::ExpMissing => f.write_str("token has no exp claim"),
            AuthError::Expired => f.write_str("token is expired"),
            AuthError::NotYetValid => f.write_str("token is not yet valid"),
            AuthError::LifetimeTooLong => f.write_str("token lifetime exceeds max_lifetime"),
            AuthError::IssuerMismatch => f.write_str("issuer is not accepted"),
            AuthError::AudienceMismatch => f.write_str("audience is not accepted"),
            AuthError::SubjectMismatch => f.write_str("subject is not accepted"),
            AuthError::JwksUnavailable => f.write_str("signing keys are not available"),
            AuthError::InsufficientScope { required } => {
                write!(f, "token lacks required scope {required}")
            }
            AuthError::ClaimMismatch(claim) => {
                write!(f, "claim {claim} does not have a required value")
            }
            AuthError::TokenRevoked => f.write_str("token has been revoked"),
            AuthError::RevocationUnavailable => f.write_str("the revocation list is not available"),
            AuthError::HeaderChangeRefused => {
                f.write_str("the proxy refused a header change the request needs")
            }
            AuthError::DpopProofMissing => f.write_str("the request has no DPoP proof"),
            AuthError::DpopProofMultiple => {
                f.write_str("the request carries more than one DPoP proof")
            }
            AuthError::DpopProofMalformed(why) => write!(f, "the DPoP proof is malformed: {why}"),
            AuthError::DpopProofTyp => f.write_str("the DPoP proof's typ is not dpop+jwt"),
            AuthError::DpopProofAlg => f.write_str("the DPoP proof's algorithm is not allowed"),
            AuthError::DpopProofKey(why) => {
                write!(f, "the DPoP proof's key is not accepted: {why}")
            }
            AuthError::DpopProofSignature => {
                f.write_str("the DPoP proof's signature does not verify")
            }
            AuthError::DpopHtmMismatch => f.write_str("the DPoP proof is for another method"),
            AuthError::DpopHtuMismatch => f.write_str("the DPoP proof is for another URI"),
            AuthError::DpopIatOutOfWindow => {
                f.write_str("the DPoP proof is too old or too far in the future")
            }
            AuthError::DpopAthMismatch => {
                f.write_str("the DPoP proof is not bound to this access token")
            }
            AuthError::DpopJktMismatch => {
                f.write_str("the DPoP proof's key is not the key the token is bound to")
            }
            AuthError::DpopReplayed => f.write_str("the DPoP proof has been used before"),
            AuthError::DpopReplayCacheFull => {
                f.write_str("the DPoP replay cache cannot take this proof")
            }
            AuthError::DpopTokenUnbound => {
                f.write_str("the access token is not bound to a DPoP key")
            }
            AuthError::DpopBoundTokenAsBearer => {
                f.write_str("a DPoP-bound token was presented as a bearer token")
            }
            AuthError::DpopNonceMissing => {
                f.write_str("the DPoP proof has no nonce: use the one in DPoP-Nonce")
            }
            AuthError::DpopNonceInvalid => f.write_str(
                "the DPoP proof's nonce is not valid or has expired: use the one in DPoP-Nonce",
            ),
            AuthError::DpopNonceUnavailable => f.write_str("the DPoP nonce secret is unavailable"),
            AuthError::MtlsCertificateMissing => f.write_str(
                "the token is certificate-bound and no client certificate was presented",
            ),
            AuthError::MtlsThumbprintMismatch => {
                f.write_str("the token is bound to another client certificate")
            }
            AuthError::MtlsTokenUnbound => {
                f.write_str("the access token is not bound to a client certificate")
            }
            AuthError::IdentityHeaderPresent => {
                f.write_str("the request carries a header that only the filter may set")
            }
            AuthError::TokenInQuery => f.write_str(
                "the token cannot be taken out of the query string here: send it in a header",
            ),
        }
    }
}

impl std::error::Error for AuthError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(AuthError::TokenMissing.status().http_code(), 401);
        assert_eq!(AuthError::Expired.status().http_code(), 401);
        assert_eq!(AuthError::AudienceMismatch.status().http_code(), 403);
        assert_eq!(AuthError::JwksUnavailable.status().http_code(), 503);
        assert_eq!(AuthError::IdentityHeaderPresent.status().http_code(), 400);
    }

    #[test]
    fn www_authenticate_shapes() {
        assert_eq!(
            AuthError::TokenMissing.www_authenticate("api").as_deref(),
            Some("Bearer realm=\"api\"")
        );
        assert_eq!(
            AuthError::Expired.www_authenticate("a\"b").as_deref(),
            Some("Bearer realm=\"ab\", error=\"invalid_token\", error_description=\"token is expired\"")
        );
        assert_eq!(
            AuthError::InsufficientScope { required: "risk:score".into() }
                .www_authenticate("api")
                .as_deref(),
            Some("Bearer realm=\"api\", error=\"insufficient_scope\", error_description=\"token lacks required scope risk:score\", scope=\"risk:score\"")
        );
        assert_eq!(AuthError::JwksUnavailable.www_authenticate("api"), None);
        assert_eq!(
            AuthError::IdentityHeaderPresent.www_authenticate("api").as_deref(),
            Some("Bearer realm=\"api\", error=\"invalid_request\", error_description=\"the request carries a header that only the filter may set\"")
        );
    }

    #[test]
    fn dpop_challenges() {
        let algs = [Algorithm::Es256, Algorithm::EdDsa];
        let dpop = Scheme::Dpop { algs: &algs };
        assert_eq!(
            AuthError::TokenMissing.challenge("api", dpop).as_deref(),
            Some("DPoP realm=\"api\", algs=\"ES256 EdDSA\"")
        );
        assert_eq!(
            AuthError::DpopReplayed.challenge("api", dpop).as_deref(),
            Some("DPoP realm=\"api\", error=\"invalid_dpop_proof\", error_description=\"the DPoP proof has been used before\", algs=\"ES256 EdDSA\"")
        );
        assert_eq!(
            AuthError::Expired.challenge("api", dpop).as_deref(),
            Some("DPoP realm=\"api\", error=\"invalid_token\", error_description=\"token is expired\", algs=\"ES256 EdDSA\"")
        );
        // A proof failure names the DPoP scheme even where the caller asked for Bearer.
        assert_eq!(
            AuthError::DpopHtmMismatch.www_authenticate("api").as_deref(),
            Some("DPoP realm=\"api\", error=\"invalid_dpop_proof\", error_description=\"the DPoP proof is for another method\"")
        );
        assert_eq!(AuthError::DpopReplayCacheFull.status().http_code(), 503);
        assert_eq!(
            AuthError::MtlsCertificateMissing.status(),
            Status::InvalidToken
        );
    }
}
