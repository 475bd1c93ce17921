//! DPoP through the adapter: a proof accepted by one VM is refused as a replay by another
//! VM of the same proxy (the replay cache lives in shared data).

use std::cell::RefCell;
use std::rc::Rc;

use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::authn::b64;
use crate::authn::sender::thumbprint::jwk_thumbprint;
use crate::filter::fake::SharedStore;
use crate::filter::state::Action;

use super::tests::{request, vm_with, T0};

pub(super) fn jwk(k: &SigningKey) -> Value {
    let p = k.verifying_key().to_encoded_point(false);
    json!({"kty": "EC", "crv": "P-256", "x": b64::encode(p.x().unwrap()), "y": b64::encode(p.y().unwrap())})
}

pub(super) fn sign(k: &SigningKey, header: Value, claims: Value) -> String {
    let input = format!(
        "{}.{}",
        b64::encode(header.to_string().as_bytes()),
        b64::encode(claims.to_string().as_bytes())
    );
    let s: Signature = k.sign(input.as_bytes());
    format!("{input}.{}", b64::encode(&s.to_bytes()))
}

/// The issuer's key (seed 1), the client's (seed 2), and an access token bound to the
/// client's key, issued at [`T0`].
pub(super) fn bound_token() -> (SigningKey, SigningKey, String) {
    let (idp, client) = (
        SigningKey::from_slice(&[1; 32]).unwrap(),
        SigningKey::from_slice(&[2; 32]).unwrap(),
    );
    let now = T0 / 1000;
    let jkt = jwk_thumbprint(jwk(&client).as_object().unwrap()).unwrap();
    let token = sign(
        &idp,
        json!({"alg": "ES256"}),
        json!({"iss": "https://issuer.test", "sub": "alice", "exp": now + 600, "cnf": {"jkt": jkt}}),
    );
    (idp, client, token)
}

#[test]
fn a_proof_is_accepted_once_per_proxy() {
    let (idp, client, token) = bound_token();
    let now = T0 / 1000;
    let proof = sign(
        &client,
        json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk(&client)}),
        json!({"jti": "j1", "htm": "GET", "htu": "https://api.test/items", "iat": now,
               "ath": b64::encode(&Sha256::digest(token.as_bytes()))}),
    );
    let cfg = json!({
        "providers": {"p": {
            "issuer": "https://issuer.test",
            "local_jwks": {"inline_string": json!({"keys": [jwk(&idp)]}).to_string()},
            "sender_constraint": {"dpop": "required", "dpop_algorithms": ["ES256"]}
        }},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "p"}}]
    })
    .to_string();
    let shared = Rc::new(RefCell::new(SharedStore::default()));
    let (host1, mut vm1) = vm_with(&shared, &cfg, false);
    let (host2, mut vm2) = vm_with(&shared, &cfg, false);
    let auth = format!("DPoP {token}");
    let h = [
        (":scheme", "https"),
        ("authorization", auth.as_str()),
        ("dpop", proof.as_str()),
    ];
    assert_eq!(request(&host1, &mut vm1, 1, "/items", &h), Action::Continue);
    assert!(host1.stream(1).reply.is_none());
    assert_eq!(host1.counter("jwt_edge.allowed"), 1);

    assert_eq!(request(&host2, &mut vm2, 1, "/items", &h), Action::Pause);
    let reply = host2.stream(1).reply.unwrap();
    assert_eq!(reply.status, 401);
    let challenge = reply
        .headers
        .iter()
        .find(|(n, _)| n == "www-authenticate")
        .map(|(_, v)| v.as_str());
    assert_eq!(
        challenge,
        Some(
            "DPoP realm=\"https://api.test/items\", error=\"invalid_dpop_proof\", \
             error_description=\"the DPoP proof has been used before\", algs=\"ES256\""
        )
    );
    assert_eq!(host2.counter("jwt_edge.denied"), 1);
    assert_eq!(host2.counter("jwt_edge.denied.dpop_replayed"), 1);
    assert_eq!(host2.counter("jwt_edge.provider.p.denied.dpop_replayed"), 1);
    // The first VM sees the replay too.
    assert_eq!(request(&host1, &mut vm1, 2, "/items", &h), Action::Pause);
    assert_eq!(host1.counter("jwt_edge.denied.dpop_replayed"), 1);
}
