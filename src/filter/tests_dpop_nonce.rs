//! DPoP server nonces through the adapter: a proof without a nonce gets a `use_dpop_nonce`
//! 401 with a `DPoP-Nonce` header, and the same client's next proof with that nonce passes,
//! on another VM of the same proxy too (the nonce secret lives in shared data).

use std::cell::RefCell;
use std::rc::Rc;

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::authn::b64;
use crate::filter::fake::{Reply, SharedStore};
use crate::filter::state::Action;
use crate::sources::dpop_nonce::nonce_secret_key;
use crate::sources::SharedData;
use crate::time::UnixMillis;

use super::tests::{request, vm_with, T0};
use super::tests_dpop::{bound_token, jwk, sign};

fn header<'a>(reply: &'a Reply, name: &str) -> Vec<&'a str> {
    reply
        .headers
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

#[test]
fn use_dpop_nonce_then_retry_with_it_on_any_vm() {
    let (idp, client, token) = bound_token();
    let now = T0 / 1000;
    let proof = |jti: &str, nonce: Option<&str>| {
        let mut claims = json!({"jti": jti, "htm": "GET", "htu": "https://api.test/items",
            "iat": now, "ath": b64::encode(&Sha256::digest(token.as_bytes()))});
        if let Some(n) = nonce {
            claims["nonce"] = json!(n);
        }
        sign(
            &client,
            json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk(&client)}),
            claims,
        )
    };
    let cfg = json!({
        "providers": {"p": {
            "issuer": "https://issuer.test",
            "local_jwks": {"inline_string": json!({"keys": [jwk(&idp)]}).to_string()},
            "sender_constraint": {"dpop": "required", "dpop_algorithms": ["ES256"],
                                  "dpop_nonce": "required", "dpop_nonce_lifetime": "10s"}
        }},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "p"}}]
    })
    .to_string();
    let shared = Rc::new(RefCell::new(SharedStore::default()));
    let (host1, mut vm1) = vm_with(&shared, &cfg, false);
    let (host2, mut vm2) = vm_with(&shared, &cfg, false);
    // Both VMs configured: the second finds the first's secret and keeps it.
    vm1.on_configured(&host1);
    let (secret, cas) = host1.read(&nonce_secret_key("p"));
    assert_eq!(secret.as_ref().map(Vec::len), Some(33));
    vm2.on_configured(&host2);
    assert_eq!(host2.read(&nonce_secret_key("p")), (secret, cas));

    let auth = format!("DPoP {token}");
    let send = |host, vm: &mut _, id, proof: &str| {
        let h = [
            (":scheme", "https"),
            ("authorization", auth.as_str()),
            ("dpop", proof),
        ];
        request(host, vm, id, "/items", &h)
    };
    let p1 = proof("j1", None);
    assert_eq!(send(&host1, &mut vm1, 1, &p1), Action::Pause);
    let reply = host1.stream(1).reply.unwrap();
    assert_eq!(reply.status, 401);
    assert_eq!(
        header(&reply, "www-authenticate"),
        [
            "DPoP realm=\"https://api.test/items\", error=\"use_dpop_nonce\", \
          error_description=\"the DPoP proof has no nonce: use the one in DPoP-Nonce\", \
          algs=\"ES256\""
        ]
    );
    let nonces = header(&reply, "dpop-nonce");
    assert_eq!(nonces.len(), 1);
    let nonce = nonces[0].to_owned();
    assert_eq!(nonce.len(), 27);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&reply.body).unwrap(),
        json!({"error": "dpop_nonce_missing",
               "error_description": "the DPoP proof has no nonce: use the one in DPoP-Nonce"})
    );
    assert_eq!(host1.counter("jwt_edge.denied.dpop_nonce_missing"), 1);
    assert_eq!(
        host1.counter("jwt_edge.provider.p.denied.dpop_nonce_missing"),
        1
    );

    // The proof refused for its nonce was not recorded: the replay cache only sees proofs
    // that pass. The retry (a new proof with the nonce) passes on the other VM.
    let p2 = proof("j2", Some(&nonce));
    assert_eq!(send(&host2, &mut vm2, 1, &p2), Action::Continue);
    assert!(host2.stream(1).reply.is_none());
    assert_eq!(host2.counter("jwt_edge.allowed"), 1);
    // A proof with the same nonce and a new jti passes again (nonces are not one-time),
    // within the next window too.
    host1.now_ms.set(UnixMillis(T0 + 10_000));
    let p3 = proof("j3", Some(&nonce));
    assert_eq!(send(&host1, &mut vm1, 2, &p3), Action::Continue);
    // Two windows on, it is refused with a new nonce.
    host1.now_ms.set(UnixMillis(T0 + 20_000));
    let p4 = proof("j4", Some(&nonce));
    assert_eq!(send(&host1, &mut vm1, 3, &p4), Action::Pause);
    let reply = host1.stream(3).reply.unwrap();
    assert_eq!(reply.status, 401);
    assert!(header(&reply, "www-authenticate")[0].contains("error=\"use_dpop_nonce\""));
    let newer = header(&reply, "dpop-nonce");
    assert_eq!(newer.len(), 1);
    assert_ne!(newer[0], nonce);
    assert_eq!(host1.counter("jwt_edge.denied.dpop_nonce_invalid"), 1);
    // A replayed proof with a good nonce is still a replay.
    host2.now_ms.set(UnixMillis(T0 + 1_000));
    assert_eq!(send(&host2, &mut vm2, 2, &p2), Action::Pause);
    assert_eq!(host2.counter("jwt_edge.denied.dpop_replayed"), 1);
    let reply = host2.stream(2).reply.unwrap();
    assert!(header(&reply, "dpop-nonce").is_empty());
}
