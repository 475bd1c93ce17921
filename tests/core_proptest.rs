//! No input makes the core panic: arbitrary bytes into token parsing, extraction, and the
//! whole decision (issue 2). JWKS and config parsing have their own property tests
//! (tests/jwks_proptest.rs, tests/config_examples.rs).
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

use jwt_edge::authn::alg::Algorithm;
use jwt_edge::authn::authenticate::{decide, Decision, KeyLookup, KeyState};
use jwt_edge::authn::claims::claim_header_value;
use jwt_edge::authn::config;
use jwt_edge::authn::jwk::{parse_jwks, JwksOptions, KeySet};
use jwt_edge::authn::jws::UntrustedToken;
use jwt_edge::authn::policy::{ClaimFormat, JwksId};
use jwt_edge::authn::request::RequestView;
use jwt_edge::time::UnixMillis;
use proptest::prelude::*;

struct Keys(KeySet);

impl KeyLookup for Keys {
    fn keys(&self, _id: JwksId) -> KeyState<'_> {
        KeyState::Ready(&self.0)
    }
}

/// The fixture's key set, loaded once: loading builds each EC key's verification table, which
/// in a debug build costs a noticeable fraction of a second per P-384 key.
fn keys() -> &'static Keys {
    static KEYS: std::sync::OnceLock<Keys> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        Keys(
            parse_jwks(
                include_bytes!("fixtures/jwks.json"),
                JwksOptions {
                    allow_symmetric: false,
                },
            )
            .unwrap()
            .keys,
        )
    })
}

fn policy() -> jwt_edge::authn::policy::Policy {
    config::parse(
        r#"{"providers": {
              "a": {"issuer": "https://issuer.test", "remote_jwks": {"http_uri": {"uri": "https://idp/k", "cluster": "idp"}},
                    "claim_to_headers": [{"header_name": "x-sub", "claim_name": "sub"}]},
              "b": {"from_headers": [{"name": "x-token"}], "from_params": ["t"], "from_cookies": ["jwt"],
                    "remote_jwks": {"http_uri": {"uri": "https://idp/k", "cluster": "idp"}}}},
            "rules": [{"match": {"prefix": "/any"}, "requires": {"requires_any": {"requirements": [{"provider_name": "a"}, {"provider_name": "b"}]}}},
                      {"match": {"prefix": "/opt"}, "requires": {"allow_missing": {}}},
                      {"match": {"prefix": "/"}, "requires": {"provider_name": "a", "scopes": ["s"]}}]}"#,
    )
    .unwrap()
}

/// A base64url-ish alphabet with the characters that matter to the parser.
fn tokenish() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[A-Za-z0-9_=+/.\\- ,\"{}:]{0,300}").unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn token_parse_never_panics_and_never_verifies(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let s = String::from_utf8_lossy(&bytes);
        if let Ok(t) = UntrustedToken::parse(&s, 8192) {
            prop_assert!(t.verify(&keys().0, &Algorithm::ALL).is_err());
        }
    }

    #[test]
    fn tokenish_strings_never_verify(s in tokenish()) {
        if let Ok(t) = UntrustedToken::parse(&s, 8192) {
            prop_assert!(t.verify(&keys().0, &Algorithm::ALL).is_err());
        }
    }

    #[test]
    fn decide_never_panics_and_never_allows_without_a_valid_token(
        path in proptest::string::string_regex("/(any|opt|x)?[a-z?=&%._-]{0,40}").unwrap(),
        headers in proptest::collection::vec(
            (prop_oneof![Just("authorization".to_string()), Just("x-token".to_string()), Just("cookie".to_string()), Just("x-sub".to_string()), "[a-z-]{1,10}"],
             tokenish()),
            0..6),
    ) {
        let p = policy();
        let mut hs: Vec<(String, String)> = vec![(":method".into(), "GET".into()), (":path".into(), path.clone())];
        hs.extend(headers);
        let d = decide(&p, &RequestView::new(&hs, None), keys(), UnixMillis::from_secs(1_800_000_000));
        if let Decision::Allow(a) = &d {
            // Random input can only pass where no valid token is needed.
            prop_assert!(a.identities.is_empty());
            prop_assert!(path.starts_with("/opt"), "allowed {path} {hs:?}");
        }
    }
}

/// Reverses the `joined` claim format: split on `,`, then undo the `%2C` / `%25` escapes.
fn split_joined(s: &str) -> Vec<String> {
    s.split(',')
        .map(|part| part.replace("%2C", ",").replace("%25", "%"))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    /// jwt_authn prints a claim number with C's "%f" unless it is a non-negative integer
    /// below 2^64; Rust's `{:.6}` is the same exact, round-half-to-even conversion.
    #[test]
    fn claim_numbers_print_as_jwt_authn(bits in any::<u64>()) {
        let d = f64::from_bits(bits);
        prop_assume!(d.is_finite());
        let Some(n) = serde_json::Number::from_f64(d) else { return Ok(()) };
        let got = claim_header_value(&serde_json::Value::Number(n), ClaimFormat::JwtAuthn);
        let want = if (0.0..18_446_744_073_709_551_616.0).contains(&d) && d.fract() == 0.0 {
            format!("{}", d as u64)
        } else {
            format!("{d:.6}")
        };
        prop_assert_eq!(got, Some(want));
    }

    /// F9: the joined form is unambiguous: it splits back into exactly the array's strings.
    #[test]
    fn joined_claim_arrays_round_trip(items in proptest::collection::vec("[a-z,% ]{1,6}", 1..5)) {
        let v = serde_json::json!(items);
        let joined = claim_header_value(&v, ClaimFormat::Joined).unwrap();
        prop_assert_eq!(split_joined(&joined), items);
    }
}
