//! DPoP proof checks (RFC 9449 §4.3 and §7.1) for a request and its access token, which
//! has already verified: one pure function, [`check_proof`], and what it found,
//! [`ProofFacts`]. The `jti` replay check is the caller's last step, with
//! [`ProofFacts::replay_key`] and [`ProofFacts::replay_until`] (see [`super::replay`]).
//!
//! The order is the RFC's, with the signature checked before any claim is read:
//! one `DPoP` header; a compact JWS (parsed by [`UntrustedToken`], so the same base64url,
//! JSON and `crit` strictness as access tokens); `typ` is `dpop+jwt`; `alg` is asymmetric
//! and on the provider's DPoP list; `jwk` is a public key of a supported type (no private
//! member, not symmetric, not a bare `kid`); the signature verifies under that key; `jti`,
//! `htm`, `htu`, `iat`, `ath`; and last the token's `cnf.jkt` against the key's thumbprint.
//!
//! `typ` is a media type, so it is compared ASCII case-insensitively, and `application/` may
//! be written out (RFC 7515 §4.1.9): `dpop+jwt`, `DPoP+JWT` and `application/dpop+jwt` pass.
//! `htm` is compared exactly (methods are case-sensitive, RFC 9110 §9.1).

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::authn::alg::Algorithm;
use crate::authn::b64;
use crate::authn::error::AuthError;
use crate::authn::jwk::header_public_key;
use crate::authn::jws::UntrustedToken;

use crate::time::{Millis, UnixMillis};

use super::htu::{normalise_htu, normalise_request};
use super::nonce::NonceClaim;
use super::replay::{replay_key, ReplayKey};
use super::thumbprint::jwk_thumbprint;

/// Largest `DPoP` header value accepted, checked before decoding. A proof with an RSA-4096
/// `jwk` is about 1.5 KB.
pub const MAX_PROOF_BYTES: usize = 8 * 1024;

/// Longest `jti` accepted. RFC 9449 asks for 96 random bits or more; 256 bytes leaves room
/// for UUIDs and prefixed identifiers without letting a client grow the replay cache's input.
pub const MAX_JTI_BYTES: usize = 256;

/// The request a proof must be for.
#[derive(Debug, Clone, Copy)]
pub struct ProofRequest<'a> {
    /// `:method`.
    pub method: &'a str,
    /// `:scheme` (or the configured origin's scheme, see [`super::htu`]).
    pub scheme: &'a str,
    /// `:authority`.
    pub authority: &'a str,
    /// `:path`, query included (it is ignored).
    pub path: &'a str,
}

/// A provider's DPoP settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DpopPolicy {
    /// Proof algorithms accepted; symmetric ones are refused even if listed.
    pub algs: Vec<Algorithm>,
    /// How old a proof's `iat` may be (whole seconds: `iat` is).
    pub max_age: Millis,
    /// How far in the future a proof's `iat` may be (clock skew; whole seconds).
    pub max_future: Millis,
}

/// What an accepted proof established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofFacts {
    pub jti: String,
    /// The RFC 7638 thumbprint of the proof's key (equal to the token's `cnf.jkt`).
    pub jkt: String,
    pub alg: Algorithm,
    pub iat: u64,
    /// The proof's key in the replay cache.
    pub replay_key: ReplayKey,
    /// The last second at which the proof passes the `iat` check: how long the replay cache
    /// must remember it.
    pub replay_until: u64,
    /// The `nonce` claim (RFC 9449 §8), checked by the caller when the provider requires
    /// one (see [`super::nonce`]).
    pub nonce: NonceClaim,
}

/// Checks the `DPoP` header values of a request against the request, the access token as
/// received (`access_token`, for `ath`) and its `cnf` claim.
pub fn check_proof(
    dpop_headers: &[&str],
    request: &ProofRequest<'_>,
    access_token: &str,
    cnf: Option<&Value>,
    policy: &DpopPolicy,
    now: UnixMillis,
) -> Result<ProofFacts, AuthError> {
    let proof = match dpop_headers {
        [] => return Err(AuthError::DpopProofMissing),
        [one] => *one,
        _ => return Err(AuthError::DpopProofMultiple),
    };
    // A proxy folds repeated headers into one comma-separated value; a JWS has no comma.
    if proof.contains(',') {
        return Err(AuthError::DpopProofMultiple);
    }
    if proof.is_empty() {
        return Err(AuthError::DpopProofMissing);
    }
    let (parsed, mut header) = UntrustedToken::parse_with_header(proof, MAX_PROOF_BYTES)
        .map_err(|e| AuthError::DpopProofMalformed(e.to_string()))?;

    let typ_ok = parsed.header().typ.as_deref().is_some_and(|t| {
        t.eq_ignore_ascii_case("dpop+jwt") || t.eq_ignore_ascii_case("application/dpop+jwt")
    });
    if !typ_ok {
        return Err(AuthError::DpopProofTyp);
    }
    let alg = Algorithm::parse(&parsed.header().alg)
        .filter(|a| !a.is_symmetric() && policy.algs.contains(a))
        .ok_or(AuthError::DpopProofAlg)?;

    let jwk_obj = match header.remove("jwk") {
        Some(Value::Object(jwk)) => jwk,
        Some(_) => return Err(AuthError::DpopProofKey("jwk is not an object".into())),
        None => return Err(AuthError::DpopProofKey("the header has no jwk".into())),
    };
    let key = header_public_key(&jwk_obj).map_err(AuthError::DpopProofKey)?;
    let jkt =
        jwk_thumbprint(&jwk_obj).ok_or_else(|| AuthError::DpopProofKey("no thumbprint".into()))?;
    let verified = parsed.verify_with_key(&key, alg).map_err(|e| match e {
        AuthError::BadSignature => AuthError::DpopProofSignature,
        _ => AuthError::DpopProofKey(format!("the key does not fit {alg}")),
    })?;
    let claims = verified.claims();

    let jti = string_claim(claims, "jti")?;
    if jti.is_empty() || jti.len() > MAX_JTI_BYTES {
        return Err(AuthError::DpopProofMalformed(format!(
            "jti must be 1 to {MAX_JTI_BYTES} bytes"
        )));
    }
    if string_claim(claims, "htm")? != request.method {
        return Err(AuthError::DpopHtmMismatch);
    }
    let htu = normalise_htu(string_claim(claims, "htu")?);
    let target = normalise_request(request.scheme, request.authority, request.path);
    if htu.is_none() || htu != target {
        return Err(AuthError::DpopHtuMismatch);
    }
    let iat = match claims.get("iat") {
        Some(Value::Number(n)) => n.as_u64(),
        _ => None,
    }
    .ok_or_else(|| AuthError::DpopProofMalformed("iat is not a whole number".into()))?;
    // In whole seconds, the scale of `iat`.
    let (now, max_age) = (now.as_secs(), policy.max_age.as_secs());
    if iat < now.saturating_sub(max_age) || iat > now.saturating_add(policy.max_future.as_secs()) {
        return Err(AuthError::DpopIatOutOfWindow);
    }
    let ath = b64::encode(&Sha256::digest(access_token.as_bytes()));
    if claims.get("ath").and_then(Value::as_str) != Some(ath.as_str()) {
        return Err(AuthError::DpopAthMismatch);
    }

    let bound = match cnf {
        None => return Err(AuthError::DpopTokenUnbound),
        Some(Value::Object(cnf)) => match cnf.get("jkt") {
            None => return Err(AuthError::DpopTokenUnbound),
            Some(Value::String(jkt)) => jkt,
            Some(_) => return Err(AuthError::ClaimMalformed("cnf")),
        },
        Some(_) => return Err(AuthError::ClaimMalformed("cnf")),
    };
    if *bound != jkt {
        return Err(AuthError::DpopJktMismatch);
    }

    Ok(ProofFacts {
        replay_key: replay_key(&jkt, jti),
        replay_until: iat.saturating_add(max_age),
        nonce: NonceClaim::parse(claims.get("nonce")),
        jti: jti.to_owned(),
        jkt,
        alg,
        iat,
    })
}

/// A token that arrived under the `Bearer` scheme: refused when it is bound to a DPoP key
/// (`cnf.jkt`), since whoever holds a bound token without its key is what DPoP stops (RFC 9449
/// §7.2). A token without `cnf.jkt` passes here; whether the provider accepts unbound tokens
/// at all is the configuration's call.
pub fn check_bearer_use(cnf: Option<&Value>) -> Result<(), AuthError> {
    match cnf {
        Some(Value::Object(cnf)) if cnf.contains_key("jkt") => {
            Err(AuthError::DpopBoundTokenAsBearer)
        }
        _ => Ok(()),
    }
}

fn string_claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Result<&'a str, AuthError> {
    claims
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| AuthError::DpopProofMalformed(format!("{name} is missing or not a string")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::json::parse_object;
    use serde_json::json;

    const NOW: u64 = 1_700_000_000;
    const TOKEN: &str = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln";

    /// A test-only signer: fixed keys, so every run signs the same way.
    #[derive(Clone)]
    enum Key {
        P256(p256::ecdsa::SigningKey),
        P384(p384::ecdsa::SigningKey),
        Ed(ed25519_dalek::SigningKey),
    }

    impl Key {
        fn p256(seed: u8) -> Key {
            Key::P256(p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap())
        }
        fn p384(seed: u8) -> Key {
            Key::P384(p384::ecdsa::SigningKey::from_slice(&[seed; 48]).unwrap())
        }
        fn ed(seed: u8) -> Key {
            Key::Ed(ed25519_dalek::SigningKey::from_bytes(&[seed; 32]))
        }
        fn alg(&self) -> &'static str {
            match self {
                Key::P256(_) => "ES256",
                Key::P384(_) => "ES384",
                Key::Ed(_) => "EdDSA",
            }
        }
        fn jwk(&self) -> Value {
            match self {
                Key::P256(k) => {
                    let p = k.verifying_key().to_encoded_point(false);
                    json!({"kty":"EC","crv":"P-256","x":b64::encode(p.x().unwrap()),"y":b64::encode(p.y().unwrap())})
                }
                Key::P384(k) => {
                    let p = k.verifying_key().to_encoded_point(false);
                    json!({"kty":"EC","crv":"P-384","x":b64::encode(p.x().unwrap()),"y":b64::encode(p.y().unwrap())})
                }
                Key::Ed(k) => {
                    json!({"kty":"OKP","crv":"Ed25519","x":b64::encode(k.verifying_key().as_bytes())})
                }
            }
        }
        fn jkt(&self) -> String {
            jwk_thumbprint(self.jwk().as_object().unwrap()).unwrap()
        }
        fn sign(&self, input: &[u8]) -> Vec<u8> {
            use ed25519_dalek::Signer as _;
            match self {
                Key::P256(k) => {
                    let s: p256::ecdsa::Signature = k.sign(input);
                    s.to_bytes().to_vec()
                }
                Key::P384(k) => {
                    let s: p384::ecdsa::Signature = k.sign(input);
                    s.to_bytes().to_vec()
                }
                Key::Ed(k) => k.sign(input).to_bytes().to_vec(),
            }
        }
    }

    /// One request with its proof, each part open to change by a test case.
    #[derive(Clone)]
    struct Case {
        key: Key,
        signer: Key,
        header: Value,
        claims: Value,
        /// `None`: the proof itself as the only header.
        headers: Option<Vec<String>>,
        method: &'static str,
        scheme: &'static str,
        authority: &'static str,
        path: &'static str,
        token: &'static str,
        cnf: Option<Value>,
        /// Seconds, the scale of `iat`.
        now: u64,
    }

    fn base(key: Key) -> Case {
        Case {
            header: json!({"typ":"dpop+jwt","alg":key.alg(),"jwk":key.jwk()}),
            claims: json!({
                "jti":"e1j3V_bKic8-LAEB",
                "htm":"GET",
                "htu":"https://api.example.com/v1/items",
                "iat":NOW,
                "ath":b64::encode(&Sha256::digest(TOKEN.as_bytes())),
            }),
            cnf: Some(json!({"jkt": key.jkt()})),
            signer: key.clone(),
            key,
            headers: None,
            method: "GET",
            scheme: "https",
            authority: "api.example.com",
            path: "/v1/items?page=2",
            token: TOKEN,
            now: NOW,
        }
    }

    fn policy() -> DpopPolicy {
        DpopPolicy {
            algs: vec![
                Algorithm::Es256,
                Algorithm::Es384,
                Algorithm::EdDsa,
                Algorithm::Hs256,
            ],
            max_age: Millis::from_secs(60),
            max_future: Millis::from_secs(5),
        }
    }

    fn proof(c: &Case) -> String {
        let input = format!(
            "{}.{}",
            b64::encode(c.header.to_string().as_bytes()),
            b64::encode(c.claims.to_string().as_bytes())
        );
        format!("{input}.{}", b64::encode(&c.signer.sign(input.as_bytes())))
    }

    fn run_proof(c: &Case, proof: &str) -> Result<ProofFacts, AuthError> {
        let headers = c.headers.clone().unwrap_or_else(|| vec![proof.to_owned()]);
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        let request = ProofRequest {
            method: c.method,
            scheme: c.scheme,
            authority: c.authority,
            path: c.path,
        };
        check_proof(
            &headers,
            &request,
            c.token,
            c.cnf.as_ref(),
            &policy(),
            UnixMillis::from_secs(c.now),
        )
    }

    fn run(c: &Case) -> Result<ProofFacts, AuthError> {
        run_proof(c, &proof(c))
    }

    fn code(c: &Case) -> &'static str {
        match run(c) {
            Ok(_) => "ok",
            Err(e) => e.code(),
        }
    }

    #[test]
    fn valid_proofs_for_each_key_type() {
        for key in [Key::p256(7), Key::p384(7), Key::ed(7)] {
            let c = base(key.clone());
            let facts = run(&c).unwrap();
            assert_eq!(facts.jti, "e1j3V_bKic8-LAEB");
            assert_eq!(facts.jkt, key.jkt());
            assert_eq!(facts.alg.name(), key.alg());
            assert_eq!((facts.iat, facts.replay_until), (NOW, NOW + 60));
            assert_eq!(facts.replay_key, replay_key(&key.jkt(), "e1j3V_bKic8-LAEB"));
        }
    }

    type Edit = fn(&mut Case);

    #[test]
    fn every_rule() {
        let cases: &[(&str, Edit, &str)] = &[
            ("valid", |_| {}, "ok"),
            // One DPoP header.
            (
                "no header",
                |c| c.headers = Some(vec![]),
                "dpop_proof_missing",
            ),
            (
                "empty header",
                |c| c.headers = Some(vec![String::new()]),
                "dpop_proof_missing",
            ),
            (
                "two headers",
                |c| {
                    let p = proof(c);
                    c.headers = Some(vec![p.clone(), p]);
                },
                "dpop_proof_multiple",
            ),
            (
                "folded headers",
                |c| {
                    let p = proof(c);
                    c.headers = Some(vec![format!("{p}, {p}")]);
                },
                "dpop_proof_multiple",
            ),
            (
                "not a JWS",
                |c| c.headers = Some(vec!["a.b".into()]),
                "dpop_proof_malformed",
            ),
            (
                "JWE",
                |c| c.headers = Some(vec!["a.b.c.d.e".into()]),
                "dpop_proof_malformed",
            ),
            (
                "too large",
                |c| c.headers = Some(vec!["a".repeat(MAX_PROOF_BYTES + 1)]),
                "dpop_proof_malformed",
            ),
            (
                "crit",
                |c| c.header["crit"] = json!(["x"]),
                "dpop_proof_malformed",
            ),
            // typ.
            (
                "typ missing",
                |c| {
                    c.header.as_object_mut().unwrap().remove("typ");
                },
                "dpop_proof_typ",
            ),
            (
                "typ JWT",
                |c| c.header["typ"] = json!("JWT"),
                "dpop_proof_typ",
            ),
            (
                "typ at+jwt",
                |c| c.header["typ"] = json!("at+jwt"),
                "dpop_proof_typ",
            ),
            (
                "typ dpop+jwt with space",
                |c| c.header["typ"] = json!("dpop+jwt "),
                "dpop_proof_typ",
            ),
            (
                "typ upper case",
                |c| c.header["typ"] = json!("DPoP+JWT"),
                "ok",
            ),
            (
                "typ with application/",
                |c| c.header["typ"] = json!("application/dpop+jwt"),
                "ok",
            ),
            // alg.
            (
                "alg none",
                |c| c.header["alg"] = json!("none"),
                "dpop_proof_alg",
            ),
            (
                "alg HS256 even if listed",
                |c| c.header["alg"] = json!("HS256"),
                "dpop_proof_alg",
            ),
            (
                "alg not on the list",
                |c| c.header["alg"] = json!("RS256"),
                "dpop_proof_alg",
            ),
            (
                "alg lower case",
                |c| c.header["alg"] = json!("es256"),
                "dpop_proof_alg",
            ),
            (
                "alg missing",
                |c| {
                    c.header.as_object_mut().unwrap().remove("alg");
                },
                "dpop_proof_malformed",
            ),
            (
                "alg of another key type",
                |c| c.header["alg"] = json!("ES384"),
                "dpop_proof_key",
            ),
            // jwk.
            (
                "no jwk",
                |c| {
                    c.header.as_object_mut().unwrap().remove("jwk");
                },
                "dpop_proof_key",
            ),
            (
                "kid only",
                |c| {
                    c.header.as_object_mut().unwrap().remove("jwk");
                    c.header["kid"] = json!("k1");
                },
                "dpop_proof_key",
            ),
            (
                "jwk with kid only",
                |c| c.header["jwk"] = json!({"kid":"k1"}),
                "dpop_proof_key",
            ),
            (
                "jwk not an object",
                |c| c.header["jwk"] = json!("k1"),
                "dpop_proof_key",
            ),
            (
                "jwk symmetric",
                |c| c.header["jwk"] = json!({"kty":"oct","k":b64::encode(&[7; 32])}),
                "dpop_proof_key",
            ),
            (
                "jwk private d",
                |c| c.header["jwk"]["d"] = json!(b64::encode(&[7; 32])),
                "dpop_proof_key",
            ),
            (
                "jwk private k",
                |c| c.header["jwk"]["k"] = json!(b64::encode(&[7; 32])),
                "dpop_proof_key",
            ),
            (
                "jwk private p",
                |c| c.header["jwk"]["p"] = json!("AQAB"),
                "dpop_proof_key",
            ),
            (
                "jwk private q",
                |c| c.header["jwk"]["q"] = json!("AQAB"),
                "dpop_proof_key",
            ),
            (
                "jwk private dp",
                |c| c.header["jwk"]["dp"] = json!("AQAB"),
                "dpop_proof_key",
            ),
            (
                "jwk private dq",
                |c| c.header["jwk"]["dq"] = json!("AQAB"),
                "dpop_proof_key",
            ),
            (
                "jwk private qi",
                |c| c.header["jwk"]["qi"] = json!("AQAB"),
                "dpop_proof_key",
            ),
            (
                "jwk off the curve",
                |c| c.header["jwk"]["y"] = json!(b64::encode(&[1; 32])),
                "dpop_proof_key",
            ),
            (
                "jwk use enc",
                |c| c.header["jwk"]["use"] = json!("enc"),
                "dpop_proof_key",
            ),
            (
                "jwk extra members",
                |c| c.header["jwk"]["kid"] = json!("k1"),
                "ok",
            ),
            // Signature.
            (
                "signed by another key",
                |c| c.signer = Key::p256(8),
                "dpop_proof_signature",
            ),
            (
                "another key in jwk",
                |c| c.header["jwk"] = Key::p256(8).jwk(),
                "dpop_proof_signature",
            ),
            // jti.
            (
                "jti missing",
                |c| {
                    c.claims.as_object_mut().unwrap().remove("jti");
                },
                "dpop_proof_malformed",
            ),
            (
                "jti empty",
                |c| c.claims["jti"] = json!(""),
                "dpop_proof_malformed",
            ),
            (
                "jti number",
                |c| c.claims["jti"] = json!(5),
                "dpop_proof_malformed",
            ),
            (
                "jti too long",
                |c| c.claims["jti"] = json!("j".repeat(MAX_JTI_BYTES + 1)),
                "dpop_proof_malformed",
            ),
            (
                "jti longest",
                |c| c.claims["jti"] = json!("j".repeat(MAX_JTI_BYTES)),
                "ok",
            ),
            // htm.
            ("wrong method", |c| c.method = "POST", "dpop_htm_mismatch"),
            (
                "method case",
                |c| c.claims["htm"] = json!("get"),
                "dpop_htm_mismatch",
            ),
            (
                "htm missing",
                |c| {
                    c.claims.as_object_mut().unwrap().remove("htm");
                },
                "dpop_proof_malformed",
            ),
            // htu.
            (
                "htu other path",
                |c| c.path = "/v1/other",
                "dpop_htu_mismatch",
            ),
            (
                "htu trailing slash",
                |c| c.path = "/v1/items/",
                "dpop_htu_mismatch",
            ),
            (
                "htu path case",
                |c| c.path = "/V1/items",
                "dpop_htu_mismatch",
            ),
            (
                "htu dot segment",
                |c| c.path = "/v1/x/../items",
                "dpop_htu_mismatch",
            ),
            (
                "htu other host",
                |c| c.authority = "evil.example.com",
                "dpop_htu_mismatch",
            ),
            (
                "htu other port",
                |c| c.authority = "api.example.com:8443",
                "dpop_htu_mismatch",
            ),
            (
                "htu other scheme",
                |c| c.scheme = "http",
                "dpop_htu_mismatch",
            ),
            (
                "htu relative",
                |c| c.claims["htu"] = json!("/v1/items"),
                "dpop_htu_mismatch",
            ),
            (
                "htu with userinfo",
                |c| c.claims["htu"] = json!("https://u@api.example.com/v1/items"),
                "dpop_htu_mismatch",
            ),
            (
                "htu bad escape",
                |c| c.claims["htu"] = json!("https://api.example.com/v1/%zz"),
                "dpop_htu_mismatch",
            ),
            (
                "htu number",
                |c| c.claims["htu"] = json!(1),
                "dpop_proof_malformed",
            ),
            (
                "htu normalised forms",
                |c| {
                    c.claims["htu"] = json!("HTTPS://API.EXAMPLE.COM:443/v1/%69tems?q=1#f");
                    c.authority = "Api.Example.Com";
                    c.path = "/v1/items";
                },
                "ok",
            ),
            ("request without query", |c| c.path = "/v1/items", "ok"),
            // iat.
            ("iat at the oldest", |c| c.now = NOW + 60, "ok"),
            ("iat stale", |c| c.now = NOW + 61, "dpop_iat_out_of_window"),
            ("iat at the furthest future", |c| c.now = NOW - 5, "ok"),
            ("iat future", |c| c.now = NOW - 6, "dpop_iat_out_of_window"),
            (
                "iat zero",
                |c| c.claims["iat"] = json!(0),
                "dpop_iat_out_of_window",
            ),
            (
                "iat string",
                |c| c.claims["iat"] = json!(NOW.to_string()),
                "dpop_proof_malformed",
            ),
            (
                "iat fraction",
                |c| c.claims["iat"] = json!(1.5),
                "dpop_proof_malformed",
            ),
            (
                "iat negative",
                |c| c.claims["iat"] = json!(-1),
                "dpop_proof_malformed",
            ),
            (
                "iat missing",
                |c| {
                    c.claims.as_object_mut().unwrap().remove("iat");
                },
                "dpop_proof_malformed",
            ),
            // ath.
            (
                "ath missing",
                |c| {
                    c.claims.as_object_mut().unwrap().remove("ath");
                },
                "dpop_ath_mismatch",
            ),
            (
                "ath of another token",
                |c| c.token = "other.token.x",
                "dpop_ath_mismatch",
            ),
            (
                "ath padded",
                |c| {
                    c.claims["ath"] = json!(format!(
                        "{}=",
                        b64::encode(&Sha256::digest(TOKEN.as_bytes()))
                    ));
                },
                "dpop_ath_mismatch",
            ),
            (
                "ath hex",
                |c| c.claims["ath"] = json!(hex::encode(Sha256::digest(TOKEN.as_bytes()))),
                "dpop_ath_mismatch",
            ),
            // cnf.jkt.
            (
                "token bound to another key",
                |c| c.cnf = Some(json!({"jkt": Key::p256(8).jkt()})),
                "dpop_jkt_mismatch",
            ),
            (
                "token bound to the key's x",
                |c| c.cnf = Some(json!({"jkt": c.key.jwk()["x"].clone()})),
                "dpop_jkt_mismatch",
            ),
            ("token without cnf", |c| c.cnf = None, "dpop_token_unbound"),
            (
                "token with cnf but no jkt",
                |c| c.cnf = Some(json!({"x5t#S256": "AAAA"})),
                "dpop_token_unbound",
            ),
            (
                "token with cnf.jkt a number",
                |c| c.cnf = Some(json!({"jkt": 1})),
                "claim_malformed",
            ),
            (
                "token with cnf a string",
                |c| c.cnf = Some(json!("jkt")),
                "claim_malformed",
            ),
        ];
        for key in [Key::p256(7), Key::ed(9)] {
            for (name, edit, want) in cases {
                let mut c = base(key.clone());
                if *name == "alg of another key type" && key.alg() == "EdDSA" {
                    c.header["alg"] = json!("ES256");
                } else {
                    edit(&mut c);
                }
                if *name == "signed by another key" || *name == "another key in jwk" {
                    if let Key::Ed(_) = key {
                        c = base(key.clone());
                        if *name == "signed by another key" {
                            c.signer = Key::ed(10);
                        } else {
                            c.header["jwk"] = Key::ed(10).jwk();
                        }
                    }
                }
                if *name == "jwk off the curve" && key.alg() == "EdDSA" {
                    continue;
                }
                assert_eq!(code(&c), *want, "{name} ({})", key.alg());
            }
        }
    }

    #[test]
    fn bound_token_as_bearer() {
        let code = |cnf: Option<Value>| match check_bearer_use(cnf.as_ref()) {
            Ok(()) => "ok",
            Err(e) => e.code(),
        };
        assert_eq!(
            code(Some(json!({"jkt": "x"}))),
            "dpop_bound_token_as_bearer"
        );
        assert_eq!(code(Some(json!({"jkt": 1}))), "dpop_bound_token_as_bearer");
        assert_eq!(code(Some(json!({"x5t#S256": "x"}))), "ok");
        assert_eq!(code(Some(json!("jkt"))), "ok");
        assert_eq!(code(None), "ok");
    }

    /// Every single-bit change of a valid proof is refused (jwt-compact's mutation test).
    #[test]
    fn every_bit_flip_is_refused() {
        let c = base(Key::ed(3));
        let good = proof(&c);
        assert!(run_proof(&c, &good).is_ok());
        let mut checked = 0;
        for i in 0..good.len() {
            for bit in 0..8 {
                let mut bytes = good.clone().into_bytes();
                bytes[i] ^= 1 << bit;
                let Ok(flipped) = String::from_utf8(bytes) else {
                    continue;
                };
                assert!(run_proof(&c, &flipped).is_err(), "byte {i} bit {bit}");
                checked += 1;
            }
        }
        // A flip of a top bit makes invalid UTF-8, which no header value can carry.
        assert_eq!(checked, good.len() * 7);
    }

    /// RFC 9449 §5 Figure 5 (also §4.1 Figure 4): the example proof, ES256 with the key in its
    /// header, made for a token request, so it carries no `ath`: every check before `ath`
    /// passes, its signature included. Its key's thumbprint is the `jkt` of the RFC's
    /// examples (§6.1).
    #[test]
    fn rfc9449_example_proof() {
        let proof = concat!(
            "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6Ik",
            "VDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCR",
            "nMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JE",
            "QSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIj",
            "oiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwia",
            "WF0IjoxNTYyMjYyNjE2fQ.2-GxA6T8lP4vfrg8v-FdWP0A0zdrj8igiMLvqRMUvwnQg",
            "4PtFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg",
        );
        let request = ProofRequest {
            method: "POST",
            scheme: "https",
            authority: "server.example.com",
            path: "/token",
        };
        let jkt = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
        let cnf = json!({ "jkt": jkt });
        let check = |p: &str, request: &ProofRequest<'_>, now: u64| {
            check_proof(
                &[p],
                request,
                TOKEN,
                Some(&cnf),
                &policy(),
                UnixMillis::from_secs(now),
            )
            .unwrap_err()
            .code()
        };
        assert_eq!(check(proof, &request, 1_562_262_616), "dpop_ath_mismatch");
        let header = b64::decode(proof.split('.').next().unwrap()).unwrap();
        let header = parse_object(&header).unwrap();
        assert_eq!(
            jwk_thumbprint(header["jwk"].as_object().unwrap()).as_deref(),
            Some(jkt)
        );
        // The same proof one bit off in its signature, or for another request, fails.
        let mut forged = proof.to_owned();
        forged.pop();
        forged.push('w');
        assert_eq!(
            check(&forged, &request, 1_562_262_616),
            "dpop_proof_signature"
        );
        let get = ProofRequest {
            method: "GET",
            ..request
        };
        assert_eq!(check(proof, &get, 1_562_262_616), "dpop_htm_mismatch");
        assert_eq!(
            check(proof, &request, 1_562_262_616 + 61),
            "dpop_iat_out_of_window"
        );
    }

    /// RFC 9449 §7.1: the access token of the example request and its `ath`.
    #[test]
    fn rfc9449_ath_example() {
        assert_eq!(
            b64::encode(&Sha256::digest(
                b"Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"
            )),
            "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
        );
    }

    /// The replay cache after the proof checks: the same proof twice is refused.
    #[test]
    fn replay_of_an_accepted_proof() {
        use super::super::replay::{ReplayCache, ReplayError};
        let c = base(Key::p256(7));
        let p = proof(&c);
        let mut cache = ReplayCache::new(16);
        let facts = run_proof(&c, &p).unwrap();
        assert_eq!(
            cache.check_and_insert(
                facts.replay_key,
                facts.replay_until,
                UnixMillis::from_secs(NOW)
            ),
            Ok(())
        );
        // Every replay within the window, including at the very end.
        for now in [NOW, NOW + 1, NOW + 60] {
            let mut late = c.clone();
            late.now = now;
            let facts = run_proof(&late, &p).unwrap();
            assert_eq!(
                cache.check_and_insert(
                    facts.replay_key,
                    facts.replay_until,
                    UnixMillis::from_secs(now)
                ),
                Err(ReplayError::Replayed)
            );
        }
        // After the window the proof fails its iat check before the cache is asked.
        let mut late = c.clone();
        late.now = NOW + 61;
        assert_eq!(
            run_proof(&late, &p).unwrap_err().code(),
            "dpop_iat_out_of_window"
        );
        // A fresh jti from the same key passes.
        let mut fresh = c.clone();
        fresh.claims["jti"] = json!("another");
        let facts = run(&fresh).unwrap();
        assert_eq!(
            cache.check_and_insert(
                facts.replay_key,
                facts.replay_until,
                UnixMillis::from_secs(NOW)
            ),
            Ok(())
        );
    }
}
