//! Strict JWS compact parsing (RFC 7515 §7.1) into an [`UntrustedToken`], and signature
//! verification into a [`VerifiedToken`].
//!
//! The two types keep unverified claims from being mistaken for verified ones: only
//! [`UntrustedToken::verify`] makes a `VerifiedToken`, and it needs a key set.

use std::rc::Rc;

use serde_json::{Map, Value};

use crate::authn::alg::Algorithm;
use crate::authn::b64;
use crate::authn::claims::ClaimTimes;
use crate::authn::error::AuthError;
use crate::authn::json::{parse_object, StrictJsonError};
use crate::authn::jwk::{Jwk, KeySet};
use crate::authn::policy::Provider;
use crate::time::UnixMillis;

/// The JOSE header members jwt-edge reads. Other members are ignored; `jwk`, `jku`, `x5u`
/// and `x5c` in particular are never used to find a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The `alg` member as written (checked against the provider's list later).
    pub alg: String,
    pub kid: Option<String>,
    pub typ: Option<String>,
}

/// A token that parsed, whose signature has not been checked.
#[derive(Debug, Clone)]
pub struct UntrustedToken<'a> {
    signing_input: &'a str,
    header: Header,
    claims: Map<String, Value>,
    signature: Vec<u8>,
}

/// A token whose signature verified under a configured key.
#[derive(Debug, Clone)]
///
/// It keeps what checks after verification need (header and claims), not the token's bytes:
/// the caller has those (the verified-token cache keys on them), see [`payload_segment`].
pub struct VerifiedToken {
    header: Rc<Header>,
    claims: Map<String, Value>,
    /// The time claims, read once (`None`: one is malformed, and [`check_times`]
    /// (VerifiedToken::check_times) reads the claims again to say which).
    times: Option<ClaimTimes>,
}

impl<'a> UntrustedToken<'a> {
    /// Parses a compact JWS. `max_bytes` is checked before any decoding.
    pub fn parse(token: &'a str, max_bytes: usize) -> Result<Self, AuthError> {
        Self::parse_with_header(token, max_bytes).map(|(token, _)| token)
    }

    /// [`parse`](Self::parse), also handing over the whole decoded JOSE header, for a caller
    /// that reads a member [`Header`] does not keep (a DPoP proof's `jwk`), so the header is
    /// decoded once.
    pub fn parse_with_header(
        token: &'a str,
        max_bytes: usize,
    ) -> Result<(Self, Map<String, Value>), AuthError> {
        if token.len() > max_bytes {
            return Err(AuthError::TokenTooLarge { limit: max_bytes });
        }
        let Some((h, p, s)) = segments(token) else {
            // Not two dots: count them for the error (four is a JWE's five segments).
            return Err(match token.bytes().filter(|b| *b == b'.').count() {
                4 => AuthError::TokenIsJwe,
                n => AuthError::Malformed(format!("{} segments instead of 3", n + 1)),
            });
        };
        if s.is_empty() {
            return Err(AuthError::Malformed("empty signature".into()));
        }
        let signing_input = token
            .get(..h.len() + 1 + p.len())
            .ok_or_else(|| AuthError::Malformed("missing segment".into()))?;

        let header_bytes = b64::decode(h).ok_or(AuthError::BadBase64("header"))?;
        let header_obj = parse_object(&header_bytes).map_err(|e| json_error(e, "header"))?;
        let header = read_header(&header_obj)?;

        let payload_bytes = b64::decode(p).ok_or(AuthError::BadBase64("payload"))?;
        let claims = parse_object(&payload_bytes).map_err(|e| json_error(e, "payload"))?;

        let signature = b64::decode(s).ok_or(AuthError::BadBase64("signature"))?;

        Ok((
            UntrustedToken {
                signing_input,
                header,
                claims,
                signature,
            },
            header_obj,
        ))
    }

    /// The header (unverified).
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The claims, unverified: only for cheap pre-checks (issuer, times) that refuse early.
    pub fn unverified_claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    /// Checks `alg` against `allowed`, selects keys by `kid`/`alg`, and verifies the
    /// signature over the exact received bytes.
    pub fn verify(self, keys: &KeySet, allowed: &[Algorithm]) -> Result<VerifiedToken, AuthError> {
        self.verify_seen(keys, allowed, |_, _| {})
    }

    /// [`verify`](Self::verify), telling `seen` which keys were selected and the index of the
    /// one that verified (if any). With an empty `seen` this is `verify`.
    #[inline]
    pub fn verify_seen(
        self,
        keys: &KeySet,
        allowed: &[Algorithm],
        seen: impl FnOnce(&[&Jwk], Option<usize>),
    ) -> Result<VerifiedToken, AuthError> {
        let alg = self.allowed_alg(allowed)?;
        let candidates = keys.select(self.header.kid.as_deref(), alg)?;
        let verified_by = candidates.iter().position(|key| {
            key.verify(alg, self.signing_input.as_bytes(), &self.signature)
                .is_ok()
        });
        seen(&candidates, verified_by);
        if verified_by.is_none() {
            return Err(AuthError::BadSignature);
        }
        Ok(VerifiedToken::new(Rc::new(self.header), self.claims))
    }

    /// Verifies the signature with one given key, under an `alg` the caller has already
    /// allowed: a DPoP proof carries its own key (RFC 9449 §4.3), there is no key set.
    pub fn verify_with_key(self, key: &Jwk, alg: Algorithm) -> Result<VerifiedToken, AuthError> {
        key.verify(alg, self.signing_input.as_bytes(), &self.signature)?;
        Ok(VerifiedToken::new(Rc::new(self.header), self.claims))
    }

    /// The token's algorithm, if it is on `allowed`.
    pub fn allowed_alg(&self, allowed: &[Algorithm]) -> Result<Algorithm, AuthError> {
        Algorithm::parse(&self.header.alg)
            .filter(|a| allowed.contains(a))
            .ok_or_else(|| AuthError::AlgNotAllowed(self.header.alg.clone()))
    }
}

impl VerifiedToken {
    /// The verified header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The verified claims.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    /// The header, to share with the verified-token cache.
    pub(crate) fn shared_header(&self) -> &Rc<Header> {
        &self.header
    }

    /// A token the verified-token cache holds: `header` and `payload` (the decoded payload
    /// segment) of a token that verified. Only [`TokenCache`](crate::authn::token_cache)
    /// calls this, after comparing the request's token with the stored one in full.
    pub(crate) fn from_cache(header: Rc<Header>, payload: &[u8]) -> Option<VerifiedToken> {
        let claims = parse_object(payload).ok()?;
        Some(VerifiedToken::new(header, claims))
    }

    fn new(header: Rc<Header>, claims: Map<String, Value>) -> VerifiedToken {
        VerifiedToken {
            times: ClaimTimes::read(&claims).ok(),
            header,
            claims,
        }
    }

    /// [`claims::check_times`](crate::authn::claims::check_times) on this token's claims.
    #[inline]
    pub fn check_times(&self, p: &Provider, now: UnixMillis) -> Result<(), AuthError> {
        match &self.times {
            Some(times) => times.check(p, now),
            None => crate::authn::claims::check_times(&self.claims, p, now),
        }
    }
}

/// The payload segment of a compact JWS exactly as received (for a token that parsed: the
/// canonical base64url of its payload JSON).
pub fn payload_segment(token: &str) -> &str {
    let Some((_, rest)) = split_at_dot(token) else {
        return "";
    };
    split_at_dot(rest).map_or(rest, |(payload, _)| payload)
}

/// The three segments of a compact JWS (exactly two dots), or `None`. A byte scan:
/// `str::split` with a char pattern is ~13 more cold lines of machine code per token (`make
/// bench-footprint`). The parser, the verified-token cache and the published header all
/// split tokens here.
pub fn segments(token: &str) -> Option<(&str, &str, &str)> {
    let (header, rest) = split_at_dot(token)?;
    let (payload, signature) = split_at_dot(rest)?;
    (!signature.as_bytes().contains(&b'.')).then_some((header, payload, signature))
}

/// `s` before and after its first `.`.
fn split_at_dot(s: &str) -> Option<(&str, &str)> {
    let dot = s.bytes().position(|b| b == b'.')?;
    Some((s.get(..dot)?, s.get(dot + 1..)?))
}

fn json_error(e: StrictJsonError, part: &'static str) -> AuthError {
    match e {
        StrictJsonError::Invalid => AuthError::BadJson(part),
        StrictJsonError::Duplicate => AuthError::DuplicateMember(part),
    }
}

fn read_header(obj: &Map<String, Value>) -> Result<Header, AuthError> {
    let alg = match obj.get("alg") {
        Some(Value::String(s)) => s.clone(),
        _ => return Err(AuthError::AlgMissing),
    };
    let kid = match obj.get("kid") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(AuthError::Malformed("kid is not a string".into())),
    };
    let typ = match obj.get("typ") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(AuthError::Malformed("typ is not a string".into())),
    };
    // jwt-edge implements no JWS extension, so any `crit` (even a well-formed one) is refused
    // (RFC 7515 §4.1.11). That includes `b64` (RFC 7797) unencoded payloads.
    if obj.contains_key("crit") {
        return Err(AuthError::CritUnsupported);
    }
    if obj.get("b64").is_some_and(|v| v != &Value::Bool(true)) {
        return Err(AuthError::CritUnsupported);
    }
    // `zip` and `enc` belong to JWE: a JWS that carries them is not what it claims to be.
    if obj.contains_key("zip") || obj.contains_key("enc") {
        return Err(AuthError::Malformed("JWE header member in a JWS".into()));
    }
    Ok(Header { alg, kid, typ })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_exactly_three() {
        assert_eq!(segments("h.p.s"), Some(("h", "p", "s")));
        assert_eq!(segments("h..s"), Some(("h", "", "s")));
        assert_eq!(segments(".."), Some(("", "", "")));
        for two_or_four in ["h.p", "hps", "", "h.p.s.x", "a.b.c.d.e"] {
            assert_eq!(segments(two_or_four), None, "{two_or_four}");
        }
    }

    #[test]
    fn payload_segment_is_between_the_first_two_dots() {
        assert_eq!(payload_segment("h.p.s"), "p");
        assert_eq!(payload_segment("h..s"), "");
        assert_eq!(payload_segment("h.p"), "p");
        assert_eq!(payload_segment("h.p.s.x"), "p");
        assert_eq!(payload_segment("hps"), "");
    }

    fn seg(json: &str) -> String {
        b64::encode(json.as_bytes())
    }

    fn tok(h: &str, p: &str) -> String {
        format!("{}.{}.{}", seg(h), seg(p), b64::encode(b"sig"))
    }

    fn code(t: &str) -> &'static str {
        match UntrustedToken::parse(t, 8192) {
            Ok(_) => "ok",
            Err(e) => e.code(),
        }
    }

    #[test]
    fn structure() {
        let good = tok(r#"{"alg":"RS256","kid":"k"}"#, r#"{"sub":"a"}"#);
        assert_eq!(code(&good), "ok");
        let t = UntrustedToken::parse(&good, 8192).unwrap();
        assert_eq!(t.header().kid.as_deref(), Some("k"));
        assert_eq!(t.unverified_claims().get("sub"), Some(&Value::from("a")));

        assert_eq!(code("a.b"), "token_malformed");
        assert_eq!(code("a.b.c.d"), "token_malformed");
        assert_eq!(code("a.b.c.d.e"), "token_is_jwe");
        assert_eq!(code(""), "token_malformed");
        let (h, p) = (seg(r#"{"alg":"RS256"}"#), seg("{}"));
        assert_eq!(code(&format!("{h}.{p}.")), "token_malformed");
        assert_eq!(code(&format!("{h}=.{p}.AA")), "bad_base64");
        assert_eq!(code(&format!("{h}.{p}=.AA")), "bad_base64");
        assert_eq!(code(&format!("{h}.{p}.A+A")), "bad_base64");
        assert_eq!(code(&format!("{h}.{}.AA", seg("[]"))), "bad_json");
        assert_eq!(code(&format!("{}.{p}.AA", seg("null"))), "bad_json");
        assert_eq!(code(&format!(".{p}.AA")), "bad_json");
        assert_eq!(code(&"a".repeat(9000)), "token_too_large");
    }

    #[test]
    fn header_rules() {
        let p = r#"{}"#;
        assert_eq!(code(&tok(r#"{"kid":"k"}"#, p)), "alg_missing");
        assert_eq!(code(&tok(r#"{"alg":5}"#, p)), "alg_missing");
        assert_eq!(
            code(&tok(r#"{"alg":"RS256","alg":"none"}"#, p)),
            "duplicate_member"
        );
        assert_eq!(
            code(&tok(r#"{"alg":"RS256"}"#, r#"{"a":1,"a":1}"#)),
            "duplicate_member"
        );
        assert_eq!(
            code(&tok(r#"{"alg":"RS256","crit":["exp"],"exp":1}"#, p)),
            "crit_unsupported"
        );
        assert_eq!(
            code(&tok(r#"{"alg":"RS256","crit":[]}"#, p)),
            "crit_unsupported"
        );
        assert_eq!(
            code(&tok(r#"{"alg":"RS256","b64":false}"#, p)),
            "crit_unsupported"
        );
        assert_eq!(
            code(&tok(r#"{"alg":"RS256","kid":1}"#, p)),
            "token_malformed"
        );
        assert_eq!(
            code(&tok(r#"{"alg":"RS256","zip":"DEF"}"#, p)),
            "token_malformed"
        );
        // Unknown members, and key-carrying members, are ignored, not trusted.
        assert_eq!(
            code(&tok(r#"{"alg":"RS256","jku":"http://x","x":1}"#, p)),
            "ok"
        );
    }

    #[test]
    fn alg_allow_list() {
        let allowed = [Algorithm::Rs256, Algorithm::Es256];
        for (alg, ok) in [
            ("RS256", true),
            ("ES256", true),
            ("HS256", false),
            ("none", false),
            ("rs256", false),
        ] {
            let t = tok(&format!(r#"{{"alg":"{alg}"}}"#), "{}");
            let parsed = UntrustedToken::parse(&t, 8192).unwrap();
            assert_eq!(parsed.allowed_alg(&allowed).is_ok(), ok, "{alg}");
        }
    }
}
