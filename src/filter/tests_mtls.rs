//! Certificate-bound tokens through the adapter: the client certificate's digest is read from
//! the host only when a provider has `sender_constraint.mtls` on, once per decision, and what
//! the host gives that is not a hex SHA-256 counts as no certificate.

use std::cell::RefCell;
use std::rc::Rc;

use p256::ecdsa::SigningKey;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::authn::b64;
use crate::authn::error::AuthError;
use crate::filter::fake::{FakeHost, SharedStore};
use crate::filter::state::{Action, FilterState};

use super::tests::{request, vm_with, T0};
use super::tests_dpop::{jwk, sign};

const CERT_A: &[u8] = b"\x30\x82\x01\x0a client certificate A";
const CERT_B: &[u8] = b"\x30\x82\x01\x0a client certificate B";

fn config(sender: Value, idp: &SigningKey) -> String {
    json!({
        "providers": {"p": {
            "issuer": "https://issuer.test",
            "local_jwks": {"inline_string": json!({"keys": [jwk(idp)]}).to_string()},
            "claim_to_headers": [{"header_name": "x-jwt-sub", "claim_name": "sub"}],
            "sender_constraint": sender
        }},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "p"}}]
    })
    .to_string()
}

fn token(idp: &SigningKey, cnf: Option<Value>) -> String {
    let mut claims = json!({"iss": "https://issuer.test", "sub": "alice", "exp": T0 / 1000 + 600});
    if let Some(cnf) = cnf {
        claims["cnf"] = cnf;
    }
    sign(idp, json!({"alg": "ES256"}), claims)
}

fn vm(sender: Value) -> (SigningKey, FakeHost, FilterState) {
    let idp = SigningKey::from_slice(&[1; 32]).unwrap();
    let shared = Rc::new(RefCell::new(SharedStore::default()));
    let (host, state) = vm_with(&shared, &config(sender, &idp), false);
    (idp, host, state)
}

fn send(host: &FakeHost, state: &mut FilterState, id: u32, token: &str) -> Action {
    let auth = format!("Bearer {token}");
    request(
        host,
        state,
        id,
        "/items",
        &[(":scheme", "https"), ("authorization", auth.as_str())],
    )
}

/// `(status, www-authenticate)` of stream `id`'s local reply.
fn reply(host: &FakeHost, id: u32) -> Option<(u32, String)> {
    let r = host.stream(id).reply?;
    let www = r
        .headers
        .iter()
        .find(|(n, _)| n == "www-authenticate")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    Some((r.status, www))
}

fn challenge(description: &str) -> String {
    format!(
        "Bearer realm=\"https://api.test/items\", error=\"invalid_token\", error_description=\"{description}\""
    )
}

#[test]
fn the_certificate_is_not_read_without_mtls() {
    for sender in [
        json!({}),
        json!({"mtls": "disabled"}),
        json!({"dpop": "optional"}),
    ] {
        let (idp, host, mut state) = vm(sender.clone());
        *host.peer_certificate_digest.borrow_mut() = Some(hex::encode(Sha256::digest(CERT_A)));
        let t = token(
            &idp,
            Some(json!({"x5t#S256": b64::encode(&Sha256::digest(CERT_B))})),
        );
        assert_eq!(send(&host, &mut state, 1, &t), Action::Continue, "{sender}");
        assert_eq!(host.peer_certificate_reads.get(), 0, "{sender}");
    }
}

#[test]
fn required_mtls_reads_the_digest_once_per_request_and_fails_closed() {
    let (idp, host, mut state) = vm(json!({"mtls": "required"}));
    let bound = token(
        &idp,
        Some(json!({"x5t#S256": b64::encode(&Sha256::digest(CERT_A))})),
    );
    let unbound = token(&idp, None);
    let hex_a = hex::encode(Sha256::digest(CERT_A));
    let (mismatch, missing, unbound_error) = (
        Some(AuthError::MtlsThumbprintMismatch),
        Some(AuthError::MtlsCertificateMissing),
        Some(AuthError::MtlsTokenUnbound),
    );
    let cases: [(Option<String>, &str, Option<AuthError>); 7] = [
        (Some(hex_a.clone()), &bound, None),
        (Some(hex::encode(Sha256::digest(CERT_B))), &bound, mismatch),
        (None, &bound, missing.clone()),
        (Some(String::new()), &bound, missing.clone()),
        // Raw digest bytes instead of hex, or hex with a trailing newline: not what Envoy
        // gives, refused rather than guessed at.
        (
            Some(String::from_utf8_lossy(&Sha256::digest(CERT_A)).into_owned()),
            &bound,
            missing.clone(),
        ),
        (Some(format!("{hex_a}\n")), &bound, missing),
        (Some(hex_a.clone()), &unbound, unbound_error),
    ];
    for (i, (digest, t, refusal)) in cases.iter().enumerate() {
        let id = i as u32 + 1;
        *host.peer_certificate_digest.borrow_mut() = digest.clone();
        let action = send(&host, &mut state, id, t);
        assert_eq!(host.peer_certificate_reads.get(), id, "case {id}");
        match refusal {
            None => {
                assert_eq!(action, Action::Continue, "case {id}");
                assert_eq!(reply(&host, id), None);
                assert_eq!(
                    host.stream(id).upstream_values("x-jwt-sub"),
                    vec!["alice"],
                    "case {id}"
                );
            }
            Some(error) => {
                assert_eq!(action, Action::Pause, "case {id}");
                assert_eq!(
                    reply(&host, id),
                    Some((401, challenge(&error.to_string()))),
                    "case {id}: {}",
                    error.code()
                );
            }
        }
    }
    assert_eq!(host.counter("jwt_edge.allowed"), 1);
    assert_eq!(host.counter("jwt_edge.denied"), 6);
    assert_eq!(host.counter("jwt_edge.denied.mtls_thumbprint_mismatch"), 1);
    assert_eq!(host.counter("jwt_edge.denied.mtls_certificate_missing"), 4);
    assert_eq!(host.counter("jwt_edge.denied.mtls_token_unbound"), 1);
    assert_eq!(
        host.counter("jwt_edge.provider.p.denied.mtls_certificate_missing"),
        4
    );
}

#[test]
fn optional_mtls_lets_an_unbound_token_through_without_a_certificate() {
    let (idp, host, mut state) = vm(json!({"mtls": "optional"}));
    assert_eq!(
        send(&host, &mut state, 1, &token(&idp, None)),
        Action::Continue
    );
    let bound = token(
        &idp,
        Some(json!({"x5t#S256": b64::encode(&Sha256::digest(CERT_A))})),
    );
    assert_eq!(send(&host, &mut state, 2, &bound), Action::Pause);
    assert_eq!(host.counter("jwt_edge.denied.mtls_certificate_missing"), 1);
    assert_eq!(host.peer_certificate_reads.get(), 2);
}
