//! Certificate-bound access tokens (RFC 8705 §3) through the compiled config and the core
//! decision: `sender_constraint.mtls` × the token's binding × the connection's client
//! certificate → status, code, challenge. The certificate reaches the decision as Envoy gives
//! it to the adapter (`connection.sha256_peer_certificate_digest`: hex SHA-256 of the DER).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::type_complexity
)]

use jwt_edge::authn::authenticate::{decide_cached, Decision};
use jwt_edge::authn::b64;
use jwt_edge::authn::policy::Policy;
use jwt_edge::authn::request::RequestView;
use jwt_edge::authn::sender::mtls::ClientCertificate;
use jwt_edge::authn::token_cache::TokenCache;
use jwt_edge::time::UnixMillis;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

mod support;
use support::sender::{access_token, jkt, jwk, key, keys, outcome, policy, sign, NOW};

/// Two client certificates. The check hashes the DER and never parses X.509, so any bytes do.
const CERT_A: &[u8] = b"\x30\x82\x01\x0a client certificate A";
const CERT_B: &[u8] = b"\x30\x82\x01\x0a client certificate B";

fn x5t(der: &[u8]) -> String {
    b64::encode(&Sha256::digest(der))
}

fn hex_digest(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

fn headers(authorization: String) -> Vec<(String, String)> {
    vec![
        (":method".to_owned(), "GET".to_owned()),
        (":scheme".to_owned(), "https".to_owned()),
        (":authority".to_owned(), "api.test".to_owned()),
        (":path".to_owned(), "/items?page=2".to_owned()),
        ("authorization".to_owned(), authorization),
    ]
}

fn decide(
    p: &Policy,
    token: &str,
    certificate: Option<ClientCertificate<'_>>,
    cache: &TokenCache,
) -> Decision {
    let h = headers(format!("Bearer {token}"));
    let view = RequestView::new(&h, None).with_client_certificate(certificate);
    decide_cached(p, &view, &keys(), cache, UnixMillis::from_secs(NOW))
}

fn challenge(code: &str) -> String {
    let description = match code {
        "mtls_certificate_missing" => {
            "the token is certificate-bound and no client certificate was presented"
        }
        "mtls_thumbprint_mismatch" => "the token is bound to another client certificate",
        "mtls_token_unbound" => "the access token is not bound to a client certificate",
        "claim_malformed" => "claim cnf has the wrong type",
        other => panic!("no description for {other}"),
    };
    format!(
        "Bearer realm=\"https://api.test/items\", error=\"invalid_token\", error_description=\"{description}\""
    )
}

#[test]
fn every_rule_of_rfc_8705_section_3() {
    let hex_a = hex_digest(CERT_A);
    let hex_b = hex_digest(CERT_B);
    let hex_a_upper = hex_a.to_uppercase();
    let a = Some(ClientCertificate::Sha256Hex(&hex_a));
    let b = Some(ClientCertificate::Sha256Hex(&hex_b));
    let cases: Vec<(&str, Option<Value>, Option<ClientCertificate<'_>>, &str)> = vec![
        (
            "bound, its certificate",
            Some(json!({"x5t#S256": x5t(CERT_A)})),
            a,
            "allowed",
        ),
        (
            "bound, its certificate in upper-case hex",
            Some(json!({"x5t#S256": x5t(CERT_A)})),
            Some(ClientCertificate::Sha256Hex(&hex_a_upper)),
            "allowed",
        ),
        (
            "bound, its certificate as DER",
            Some(json!({"x5t#S256": x5t(CERT_A)})),
            Some(ClientCertificate::Der(CERT_A)),
            "allowed",
        ),
        (
            "bound next to a DPoP key, its certificate",
            Some(json!({"x5t#S256": x5t(CERT_A), "jkt": jkt(&key(2))})),
            a,
            "allowed",
        ),
        (
            "bound, another certificate",
            Some(json!({"x5t#S256": x5t(CERT_A)})),
            b,
            "mtls_thumbprint_mismatch",
        ),
        (
            "bound, no certificate",
            Some(json!({"x5t#S256": x5t(CERT_A)})),
            None,
            "mtls_certificate_missing",
        ),
        (
            "bound, the host gave no hex digest",
            Some(json!({"x5t#S256": x5t(CERT_A)})),
            Some(ClientCertificate::Sha256Hex("not a digest")),
            "mtls_certificate_missing",
        ),
        (
            "bound, the host gave an empty digest",
            Some(json!({"x5t#S256": x5t(CERT_A)})),
            Some(ClientCertificate::Sha256Hex("")),
            "mtls_certificate_missing",
        ),
        (
            "bound, a digest one byte short",
            Some(json!({"x5t#S256": x5t(CERT_A)})),
            Some(ClientCertificate::Sha256Hex(&hex_a[..62])),
            "mtls_certificate_missing",
        ),
        ("no cnf", None, a, "mtls_token_unbound"),
        ("no cnf, no certificate", None, None, "mtls_token_unbound"),
        (
            "cnf with a DPoP key only",
            Some(json!({"jkt": jkt(&key(2))})),
            a,
            "mtls_token_unbound",
        ),
        (
            "cnf not an object",
            Some(json!("x5t")),
            a,
            "claim_malformed",
        ),
        (
            "x5t#S256 not a string",
            Some(json!({"x5t#S256": 7})),
            a,
            "claim_malformed",
        ),
        (
            "x5t#S256 31 bytes",
            Some(json!({"x5t#S256": b64::encode(&Sha256::digest(CERT_A)[..31])})),
            a,
            "claim_malformed",
        ),
        (
            "x5t#S256 33 bytes",
            Some(json!({"x5t#S256": b64::encode(&[&Sha256::digest(CERT_A)[..], &[0]].concat())})),
            a,
            "claim_malformed",
        ),
        (
            "x5t#S256 in hex (RFC 8705 says base64url)",
            Some(json!({"x5t#S256": hex_a.clone()})),
            a,
            "claim_malformed",
        ),
        (
            "x5t#S256 padded",
            Some(json!({"x5t#S256": format!("{}=", x5t(CERT_A))})),
            a,
            "claim_malformed",
        ),
    ];
    let required = policy(json!({"mtls": "required"}));
    let optional = policy(json!({"mtls": "optional"}));
    let mut failures = Vec::new();
    for (name, cnf, cert, code) in cases {
        let token = access_token(cnf.clone());
        // Optional differs only for an unbound token: it passes.
        let optional_code = if code == "mtls_token_unbound" {
            "allowed"
        } else {
            code
        };
        for (mode, p, want) in [
            ("required", &required, code),
            ("optional", &optional, optional_code),
        ] {
            // Cold, then from the verified-token cache: the binding is checked on both.
            let cache = TokenCache::new([8]);
            for round in ["cold", "cached"] {
                let (status, got, www) = outcome(&decide(p, &token, cert, &cache));
                let want_status = if want == "allowed" { 200 } else { 401 };
                let want_www = if want == "allowed" {
                    String::new()
                } else {
                    challenge(want)
                };
                if (status, got.as_str(), &www) != (want_status, want, &want_www) {
                    failures.push(format!(
                        "{mode} {name} ({round}): got {status} {got} {www:?}, want {want_status} {want}"
                    ));
                }
            }
            let (hits, _) = cache.take_stats();
            if hits != 1 && want == "allowed" {
                failures.push(format!("{mode} {name}: {hits} cache hits, want 1"));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn a_cached_token_is_checked_against_each_connections_certificate() {
    let p = policy(json!({"mtls": "required"}));
    let token = access_token(Some(json!({"x5t#S256": x5t(CERT_A)})));
    let (hex_a, hex_b) = (hex_digest(CERT_A), hex_digest(CERT_B));
    let cache = TokenCache::new([8]);
    let a = Some(ClientCertificate::Sha256Hex(&hex_a));
    let b = Some(ClientCertificate::Sha256Hex(&hex_b));
    assert_eq!(outcome(&decide(&p, &token, a, &cache)).0, 200);
    let (status, code, _) = outcome(&decide(&p, &token, b, &cache));
    assert_eq!((status, code.as_str()), (401, "mtls_thumbprint_mismatch"));
    let (status, code, _) = outcome(&decide(&p, &token, None, &cache));
    assert_eq!((status, code.as_str()), (401, "mtls_certificate_missing"));
    assert_eq!(outcome(&decide(&p, &token, a, &cache)).0, 200);
    assert_eq!(cache.take_stats(), (3, 1), "(hits, misses)");
}

#[test]
fn disabled_never_looks_at_the_binding() {
    let p = policy(json!({"mtls": "disabled"}));
    let hex_b = hex_digest(CERT_B);
    let cache = TokenCache::disabled();
    for cnf in [
        None,
        Some(json!({"x5t#S256": x5t(CERT_A)})),
        Some(json!("x")),
    ] {
        let token = access_token(cnf.clone());
        for cert in [None, Some(ClientCertificate::Sha256Hex(&hex_b))] {
            assert_eq!(outcome(&decide(&p, &token, cert, &cache)).0, 200, "{cnf:?}");
        }
    }
}

/// DPoP and mTLS on one provider: each binding is checked on its own, the certificate first;
/// every failure of a DPoP provider is challenged under the `DPoP` scheme.
#[test]
fn dpop_and_mtls_together_need_both_bindings() {
    let p = policy(json!({"dpop": "required", "dpop_algorithms": ["ES256"], "mtls": "required"}));
    let token = access_token(Some(json!({"jkt": jkt(&key(2)), "x5t#S256": x5t(CERT_A)})));
    let client = key(2);
    let proof = sign(
        &client,
        json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk(&client)}),
        json!({"jti": "j1", "htm": "GET", "htu": "https://api.test/items", "iat": NOW,
               "ath": b64::encode(&Sha256::digest(token.as_bytes()))}),
    );
    let (hex_a, hex_b) = (hex_digest(CERT_A), hex_digest(CERT_B));
    let run = |authorization: String, proofs: &[&str], cert: &str| {
        let mut h = headers(authorization);
        h.extend(proofs.iter().map(|p| ("dpop".to_owned(), p.to_string())));
        let view = RequestView::new(&h, None)
            .with_client_certificate(Some(ClientCertificate::Sha256Hex(cert)));
        outcome(&decide_cached(
            &p,
            &view,
            &keys(),
            &TokenCache::disabled(),
            UnixMillis::from_secs(NOW),
        ))
    };
    let dpop = format!("DPoP {token}");
    assert_eq!(run(dpop.clone(), &[&proof], &hex_a).0, 200);
    let (status, code, www) = run(dpop.clone(), &[&proof], &hex_b);
    assert_eq!((status, code.as_str()), (401, "mtls_thumbprint_mismatch"));
    assert_eq!(
        www,
        "DPoP realm=\"https://api.test/items\", error=\"invalid_token\", \
         error_description=\"the token is bound to another client certificate\", algs=\"ES256\""
    );
    let (_, code, _) = run(dpop, &[], &hex_a);
    assert_eq!(code, "dpop_proof_missing");
    let (_, code, _) = run(format!("Bearer {token}"), &[], &hex_a);
    assert_eq!(code, "dpop_bound_token_as_bearer");
}
