//! Published entries through the adapter: the exact `set_property` calls the fake host
//! records (names, values, order, before the local reply), none when nothing is configured,
//! none while a request waits for keys, and never token material in a value.

use std::cell::RefCell;
use std::rc::Rc;

use serde_json::{json, Value};

use crate::filter::fake::{FakeHost, SharedStore};
use crate::filter::state::{Action, FilterState};

use super::tests::{answer, request, token, vm_with, JWKS};

fn config(publish: bool, jwks: Value) -> String {
    let mut p = json!({
        "issuer": "https://issuer.test",
        "audiences": ["api"],
        "claim_to_headers": [{"header_name": "x-jwt-sub", "claim_name": "sub"}]
    });
    p.as_object_mut()
        .unwrap()
        .extend(jwks.as_object().unwrap().clone());
    let mut cfg = json!({
        "providers": {"p": p},
        "rules": [
            {"match": {"prefix": "/public"}},
            {"match": {"prefix": "/try"}, "requires": {"provider_name": "p"}, "report_only": true},
            {"match": {"prefix": "/"}, "requires": {"provider_name": "p"}}
        ]
    });
    if publish {
        let p = &mut cfg["providers"]["p"];
        p["payload_in_metadata"] = json!("jwt_payload");
        p["header_in_metadata"] = json!("jwt_header");
        p["normalize_payload_in_metadata"] = json!({"space_delimited_claims": ["scope"]});
        cfg["outcome_in_metadata"] = json!("jwt_outcome");
    }
    cfg.to_string()
}

fn local() -> Value {
    json!({"local_jwks": {"inline_string": JWKS}})
}

fn remote() -> Value {
    json!({"remote_jwks": {"http_uri": {"uri": "https://idp.test/keys", "cluster": "idp"}}})
}

fn bearer(name: &str) -> String {
    format!("Bearer {}", token(name))
}

/// Decides one request and returns what it published.
fn published(
    host: &FakeHost,
    state: &mut FilterState,
    id: u32,
    path: &str,
    auth: Option<&str>,
) -> Vec<(String, String)> {
    let value = auth.map(bearer);
    let extra: Vec<(&str, &str)> = value
        .iter()
        .map(|v| ("authorization", v.as_str()))
        .collect();
    request(host, state, id, path, &extra);
    let s = host.stream(id);
    assert_eq!(s.properties_after_reply, 0, "set after the local reply");
    s.properties
}

fn entry(name: &str, value: &str) -> (String, String) {
    (name.to_owned(), value.to_owned())
}

#[test]
fn exact_entries_before_the_local_reply() {
    let shared = Rc::new(RefCell::new(SharedStore::default()));
    let (host, mut state) = vm_with(&shared, &config(true, local()), false);

    assert_eq!(
        published(&host, &mut state, 1, "/items", Some("claims")),
        vec![
            entry(
                "jwt_payload",
                r#"{"admin":true,"aud":"api","exp":4102444800,"iat":1700000000,"iss":"https://issuer.test","org":{"id":7,"name":"acme"},"roles":["a","b"],"scope":["risk:score","read"],"sub":"svc-payments"}"#
            ),
            entry("jwt_header", r#"{"alg":"RS256","kid":"rsa-1"}"#),
            entry("jwt_outcome", "p"),
        ]
    );
    assert!(host.stream(1).reply.is_none());

    for (id, path, tok, outcome) in [
        (2, "/items", Some("expired"), "token_expired"),
        (3, "/items", Some("forged_kid"), "bad_signature"),
        (4, "/items", None, "token_missing"),
        (5, "/try", Some("expired"), "would_deny:token_expired"),
    ] {
        assert_eq!(
            published(&host, &mut state, id, path, tok),
            vec![entry("jwt_outcome", outcome)],
            "{path} {tok:?}"
        );
        let refused = host.stream(id).reply.map(|r| r.status);
        assert_eq!(refused, (path != "/try").then_some(401), "{path} {tok:?}");
    }
    // No requirement: nothing verified, nothing published.
    assert_eq!(
        published(&host, &mut state, 6, "/public", Some("rs256")),
        vec![]
    );

    for id in 1..=6 {
        for (_, value) in host.stream(id).properties {
            for name in ["claims", "expired", "forged_kid", "rs256"] {
                for segment in token(name).split('.') {
                    assert!(!value.contains(segment), "{value} carries token material");
                }
            }
        }
    }
}

#[test]
fn nothing_is_published_when_unconfigured() {
    let shared = Rc::new(RefCell::new(SharedStore::default()));
    let (host, mut state) = vm_with(&shared, &config(false, local()), false);
    for (id, path, tok) in [
        (1, "/items", Some("claims")),
        (2, "/items", Some("expired")),
        (3, "/try", Some("expired")),
        (4, "/items", None),
    ] {
        assert_eq!(published(&host, &mut state, id, path, tok), vec![]);
    }
    assert_eq!(
        host.stream(1).upstream_values("x-jwt-sub"),
        ["svc-payments"]
    );
}

#[test]
fn a_waiting_request_publishes_once_decided() {
    let shared = Rc::new(RefCell::new(SharedStore::default()));
    let (host, mut state) = vm_with(&shared, &config(true, remote()), false);
    state.on_tick(&host);
    let auth = bearer("rs256");
    assert_eq!(
        request(&host, &mut state, 7, "/items", &[("authorization", &auth)]),
        Action::Pause
    );
    assert_eq!(
        host.stream(7).properties,
        vec![],
        "nothing before the decision"
    );
    answer(&host, &mut state, "200", JWKS.as_bytes());
    let s = host.stream(7);
    assert!(s.resumed);
    assert_eq!(
        s.properties,
        vec![
            entry(
                "jwt_payload",
                r#"{"aud":"api","exp":4102444800,"iat":1700000000,"iss":"https://issuer.test","sub":"alice"}"#
            ),
            entry("jwt_header", r#"{"alg":"RS256","kid":"rsa-1","typ":"JWT"}"#),
            entry("jwt_outcome", "p"),
        ],
        "one set per configured name"
    );
}
