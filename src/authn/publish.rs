//! What a request publishes for the host's access log and for later filters: jwt_authn's
//! `payload_in_metadata` and `header_in_metadata` (with `normalize_payload_in_metadata`), and
//! the extension `outcome_in_metadata` (the denial code, or the providers that vouched).
//!
//! jwt_authn writes a `Struct` into the stream's dynamic metadata, which a proxy-wasm filter
//! cannot reach; jwt-edge publishes the same content as one property per configured name,
//! `proxy_set_property(<name>, <JSON or code>)`. On Envoy that is the stream's filter state
//! `wasm.<name>` (printable with `%FILTER_STATE(wasm.<name>:PLAIN)%`); on ngx_wasm_module a
//! name `ngx.<var>` sets the NGINX variable `$<var>`. Nothing is published (and no host call
//! made) for a name that is not configured. A value is never a token nor a signature: the
//! payload and the JOSE header are re-serialised from their decoded JSON, compact.

use serde_json::{Map, Value};

use crate::authn::authenticate::{Allow, AllowReason, Decision};
use crate::authn::b64;
use crate::authn::json::parse_object;
use crate::authn::jws::segments;

/// Longest name accepted for a published entry.
pub const MAX_NAME_LEN: usize = 128;

/// Prefix of the outcome of a request a `report_only` rule let through that an enforcing rule
/// would have refused: `would_deny:<code>`.
pub const WOULD_DENY_PREFIX: &str = "would_deny:";

/// A provider's published entries (all unset by default: nothing is published).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProviderPublish {
    /// `payload_in_metadata`: the verified claims, as compact JSON.
    pub payload: Option<String>,
    /// `header_in_metadata`: the token's JOSE header, as compact JSON.
    pub header: Option<String>,
    /// `normalize_payload_in_metadata.space_delimited_claims`: top-level string claims
    /// published as the list of their space-separated words (`"a b"` → `["a","b"]`).
    pub space_delimited_claims: Vec<String>,
}

impl ProviderPublish {
    /// True when the provider publishes nothing.
    pub fn is_empty(&self) -> bool {
        self.payload.is_none() && self.header.is_none()
    }

    /// The entries of a token this provider verified: `token` as received (its header
    /// segment is decoded again only when `header_in_metadata` asks for it), `claims` its
    /// verified claims. Empty, with no allocation, when nothing is configured.
    pub fn entries(&self, token: &str, claims: &Map<String, Value>) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(name) = &self.payload {
            out.push((name.clone(), self.payload_json(claims)));
        }
        if let Some(name) = &self.header {
            if let Some(json) = header_json(token) {
                out.push((name.clone(), json));
            }
        }
        out
    }

    fn payload_json(&self, claims: &Map<String, Value>) -> String {
        if self.space_delimited_claims.is_empty() {
            return compact(claims);
        }
        let mut normalized = claims.clone();
        for name in &self.space_delimited_claims {
            if let Some(v) = normalized.get_mut(name) {
                if let Value::String(s) = v {
                    let words = s
                        .split(' ')
                        .filter(|w| !w.is_empty())
                        .map(|w| Value::String(w.to_owned()))
                        .collect();
                    *v = Value::Array(words);
                }
            }
        }
        compact(&normalized)
    }
}

/// What a decided request publishes under `outcome_in_metadata`: the error code of a refusal
/// (`token_expired`); `would_deny:<code>` for a request a `report_only` rule let through that
/// an enforcing rule would have refused; for an accepted request, the names of the providers
/// whose tokens vouched (comma-separated, in provider order). `None` for a request let
/// through without a verified token (no requirement, CORS preflight, `allow_missing*`) and
/// for one still waiting for keys.
pub fn outcome(decision: &Decision) -> Option<String> {
    match decision {
        Decision::Deny(d) => Some(d.error.code().to_owned()),
        Decision::Allow(Allow {
            would_deny: Some(d),
            ..
        }) => Some(format!("{WOULD_DENY_PREFIX}{}", d.error.code())),
        Decision::Allow(a) if a.reason == AllowReason::Verified && !a.identities.is_empty() => {
            let names: Vec<&str> = a.identities.iter().map(|i| i.provider.as_str()).collect();
            Some(names.join(","))
        }
        Decision::Allow(_) | Decision::WaitForKeys(_) => None,
    }
}

/// The JOSE header of a compact JWS, re-serialised (`None` when it does not decode, which a
/// token that verified cannot do).
fn header_json(token: &str) -> Option<String> {
    let (segment, _, _) = segments(token)?;
    let bytes = b64::decode(segment)?;
    let header = parse_object(&bytes).ok()?;
    Some(compact(&header))
}

/// Compact JSON: one line, control characters escaped (fit for a log line).
fn compact(map: &Map<String, Value>) -> String {
    crate::authn::json::to_compact(map)
}

/// Whether `name` may name a published entry: 1 to [`MAX_NAME_LEN`] characters of ASCII
/// letters, digits, `_`, `-` and `.`, with no empty dot-separated part. A `:` would end the
/// key in Envoy's `%FILTER_STATE(KEY:PLAIN)%`, and whitespace or quotes would not survive a
/// log format.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .split('.')
            .all(|part| !part.is_empty() && part.bytes().all(valid_name_byte))
}

fn valid_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    /// `{"alg":"RS256","kid":"k1"}` . `{"sub":"alice"}` . signature.
    const TOKEN: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJhbGljZSJ9.c2ln";

    #[test]
    fn nothing_configured_publishes_nothing() {
        let p = ProviderPublish::default();
        assert!(p.is_empty());
        let out = p.entries(TOKEN, &claims(json!({"sub": "alice"})));
        assert!(out.is_empty());
        assert_eq!(out.capacity(), 0, "no allocation on the common path");
    }

    #[test]
    fn payload_and_header_as_compact_json() {
        let p = ProviderPublish {
            payload: Some("jwt_payload".into()),
            header: Some("jwt_header".into()),
            ..Default::default()
        };
        let c = claims(json!({"sub": "alice", "aud": ["a", "b"], "n": 1, "nested": {"x": "y\n"}}));
        assert_eq!(
            p.entries(TOKEN, &c),
            vec![
                (
                    "jwt_payload".to_string(),
                    r#"{"aud":["a","b"],"n":1,"nested":{"x":"y\n"},"sub":"alice"}"#.to_string()
                ),
                (
                    "jwt_header".to_string(),
                    r#"{"alg":"RS256","kid":"k1"}"#.to_string()
                ),
            ]
        );
    }

    #[test]
    fn space_delimited_claims_become_lists() {
        let p = ProviderPublish {
            payload: Some("p".into()),
            space_delimited_claims: vec!["scope".into(), "roles".into(), "absent".into()],
            ..Default::default()
        };
        let c = claims(json!({"scope": " read  write ", "roles": ["x y"], "sub": "a b"}));
        assert_eq!(
            p.entries(TOKEN, &c),
            vec![(
                "p".to_string(),
                r#"{"roles":["x y"],"scope":["read","write"],"sub":"a b"}"#.to_string()
            )]
        );
    }

    #[test]
    fn a_value_is_never_token_material() {
        let p = ProviderPublish {
            payload: Some("p".into()),
            header: Some("h".into()),
            ..Default::default()
        };
        for (_, v) in p.entries(TOKEN, &claims(json!({"sub": "alice"}))) {
            for segment in TOKEN.split('.') {
                assert!(!v.contains(segment), "{v} carries {segment}");
            }
        }
    }

    #[test]
    fn outcomes() {
        use crate::authn::authenticate::{Denial, Identity};
        use crate::authn::error::AuthError;
        let token = std::rc::Rc::new(
            crate::authn::jws::VerifiedToken::from_cache(
                std::rc::Rc::new(crate::authn::jws::Header {
                    alg: "RS256".into(),
                    kid: None,
                    typ: None,
                }),
                br#"{"sub":"alice"}"#,
            )
            .unwrap(),
        );
        let identity = |name: &str| Identity::new(0, name.into(), token.clone());
        let denial = |error| Denial {
            error,
            provider: None,
            kid: None,
            iss: None,
            sub: None,
            status: 401,
            headers: vec![],
            body: String::new(),
        };
        let verified = Decision::Allow(Allow {
            identities: vec![identity("a"), identity("b")],
            ..Allow::default()
        });
        assert_eq!(outcome(&verified).as_deref(), Some("a,b"));
        let refused = Decision::Deny(denial(AuthError::BadSignature));
        assert_eq!(outcome(&refused).as_deref(), Some("bad_signature"));
        let spared = Decision::Allow(Allow {
            reason: AllowReason::ReportOnly,
            would_deny: Some(Box::new(denial(AuthError::Expired))),
            ..Allow::default()
        });
        assert_eq!(
            outcome(&spared).as_deref(),
            Some("would_deny:token_expired")
        );
        for reason in [
            AllowReason::NoRequirement,
            AllowReason::CorsPreflight,
            AllowReason::Allowed,
        ] {
            let d = Decision::Allow(Allow {
                reason,
                ..Allow::default()
            });
            assert_eq!(outcome(&d), None, "{reason:?}");
        }
        assert_eq!(outcome(&Decision::WaitForKeys(vec![0])), None);
    }

    #[test]
    fn names() {
        for ok in ["jwt_payload", "a", "ngx.jwt_sub", "my-app.jwt.v1", "A9_-"] {
            assert!(valid_name(ok), "{ok}");
        }
        let long = "a".repeat(MAX_NAME_LEN + 1);
        for bad in [
            "", ".a", "a.", "a..b", "a b", "a:PLAIN", "a\"", "wasm/x", "é", "a\n", &long,
        ] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }
}
