//! The sender-constraint scenario tests' world (`dpop_scenarios.rs`, `mtls_scenarios.rs`):
//! P-256 keys from a fixed seed, the issuer's access tokens (key seed 1, kid `idp`), one
//! provider `p` with a given `sender_constraint` over its local key set, and a decision as
//! `(status, code, challenge)`.

use jwt_edge::authn::authenticate::{Decision, KeyLookup, KeyState};
use jwt_edge::authn::b64;
use jwt_edge::authn::config;
use jwt_edge::authn::jwk::{parse_jwks, JwksOptions, KeySet};
use jwt_edge::authn::policy::{JwksId, Policy};
use jwt_edge::authn::sender::thumbprint::jwk_thumbprint;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use serde_json::{json, Value};

/// The P-256 key whose secret scalar is `seed` repeated.
pub fn key(seed: u8) -> SigningKey {
    SigningKey::from_slice(&[seed; 32]).unwrap()
}

/// The public JWK of `k` (`kty`, `crv`, `x`, `y`).
pub fn jwk(k: &SigningKey) -> Value {
    let p = k.verifying_key().to_encoded_point(false);
    json!({"kty": "EC", "crv": "P-256", "x": b64::encode(p.x().unwrap()), "y": b64::encode(p.y().unwrap())})
}

/// A compact ES256 JWS over `header` and `claims`.
pub fn sign(k: &SigningKey, header: Value, claims: Value) -> String {
    let input = format!(
        "{}.{}",
        b64::encode(header.to_string().as_bytes()),
        b64::encode(claims.to_string().as_bytes())
    );
    let s: Signature = k.sign(input.as_bytes());
    format!("{input}.{}", b64::encode(&s.to_bytes()))
}

pub const NOW: u64 = 1_800_000_000;
pub fn jkt(k: &SigningKey) -> String {
    jwk_thumbprint(jwk(k).as_object().unwrap()).unwrap()
}

/// The issuer's key (seed 1) signs access tokens; the client's key (seed 2) signs proofs.
pub fn access_token(cnf: Option<Value>) -> String {
    let mut claims = json!({"iss": "https://issuer.test", "sub": "alice", "exp": NOW + 600});
    if let Some(cnf) = cnf {
        claims["cnf"] = cnf;
    }
    sign(&key(1), json!({"alg": "ES256", "kid": "idp"}), claims)
}

pub fn config(sender: Value) -> Value {
    let mut idp = jwk(&key(1));
    idp["kid"] = "idp".into();
    idp["alg"] = "ES256".into();
    let jwks = json!({"keys": [idp]}).to_string();
    json!({
        "providers": {"p": {
            "issuer": "https://issuer.test",
            "local_jwks": {"inline_string": jwks},
            "sender_constraint": sender,
        }},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "p"}}]
    })
}

pub fn policy(sender: Value) -> Policy {
    config::parse(&config(sender).to_string()).unwrap_or_else(|e| panic!("config: {e}"))
}

pub struct Keys(KeySet);

impl KeyLookup for Keys {
    fn keys(&self, _id: JwksId) -> KeyState<'_> {
        KeyState::Ready(&self.0)
    }
}

pub fn keys() -> Keys {
    let mut idp = jwk(&key(1));
    idp["kid"] = "idp".into();
    let bytes = json!({"keys": [idp]}).to_string();
    Keys(
        parse_jwks(
            bytes.as_bytes(),
            JwksOptions {
                allow_symmetric: false,
            },
        )
        .unwrap()
        .keys,
    )
}

/// `(status, code, www-authenticate)` of a decision; `(200, "allowed", "")` for an allow.
pub fn outcome(d: &Decision) -> (u32, String, String) {
    match d {
        Decision::Allow(_) => (200, "allowed".into(), String::new()),
        Decision::Deny(d) => {
            let challenge = d
                .headers
                .iter()
                .find(|(n, _)| n == "www-authenticate")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            (d.status, d.error.code().into(), challenge)
        }
        Decision::WaitForKeys(_) => panic!("no waiting with local keys"),
    }
}
