//! DPoP server nonces (RFC 9449 §8) through the compiled config, the core decision and the
//! per-proxy nonce secret in shared data: a proof without a nonce, or with one that is not
//! this provider's for the current or the previous window, is refused with `use_dpop_nonce`
//! and a fresh nonce; a proof carrying that nonce passes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use jwt_edge::authn::authenticate::{decide_cached, provider_denial, Decision, Proof};
use jwt_edge::authn::b64;
use jwt_edge::authn::config;
use jwt_edge::authn::policy::Policy;
use jwt_edge::authn::request::RequestView;
use jwt_edge::authn::token_cache::TokenCache;
use jwt_edge::sources::dpop_nonce::{check_nonces, nonce_secret_key, seed};
use jwt_edge::sources::memory::MemoryStore;
use jwt_edge::sources::SharedData;
use jwt_edge::time::{Millis, UnixMillis};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

mod support;
use support::sender::{access_token, config, jkt, jwk, key, keys, policy, sign, NOW};

const HTU: &str = "https://api.test/items";

fn nonce_policy() -> Policy {
    policy(json!({"dpop": "required", "dpop_nonce": "required", "dpop_nonce_lifetime": "10s"}))
}

fn headers(token: &str, proof: &str) -> Vec<(String, String)> {
    vec![
        (":method".to_owned(), "GET".to_owned()),
        (":scheme".to_owned(), "https".to_owned()),
        (":authority".to_owned(), "api.test".to_owned()),
        (":path".to_owned(), "/items".to_owned()),
        ("authorization".to_owned(), format!("DPoP {token}")),
        ("dpop".to_owned(), proof.to_owned()),
    ]
}

/// The proofs a request with a proof carrying `nonce` (a JSON value, or none) is allowed on,
/// at `now` seconds.
fn proofs(p: &Policy, nonce: Option<Value>, now: u64) -> Vec<Proof> {
    let token = access_token(Some(json!({"jkt": jkt(&key(2))})));
    let mut claims = json!({"jti": format!("j-{now}-{nonce:?}"), "htm": "GET", "htu": HTU,
        "iat": now, "ath": b64::encode(&Sha256::digest(token.as_bytes()))});
    if let Some(n) = nonce {
        claims["nonce"] = n;
    }
    let client = key(2);
    let proof = sign(
        &client,
        json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk(&client)}),
        claims,
    );
    let h = headers(&token, &proof);
    let d = decide_cached(
        p,
        &RequestView::new(&h, None),
        &keys(),
        &TokenCache::disabled(),
        UnixMillis::from_secs(now),
    );
    match d {
        Decision::Allow(a) => a.proofs,
        other => panic!("the nonce is checked after the decision: {other:?}"),
    }
}

fn check(
    store: &MemoryStore,
    p: &Policy,
    nonce: Option<Value>,
    now: u64,
) -> Result<(), (String, Option<String>)> {
    check_nonces(store, p, &proofs(p, nonce, now), UnixMillis::from_secs(now)).map_err(
        |(provider, e, fresh)| {
            assert_eq!(provider, 0);
            (e.code().to_owned(), fresh)
        },
    )
}

#[test]
fn missing_then_retried_with_the_servers_nonce() {
    let p = nonce_policy();
    assert_eq!(
        p.providers[0].sender.nonce_lifetime,
        Some(Millis::from_secs(10))
    );
    let store = MemoryStore::default();
    seed(&store, &p);
    let (code, fresh) = check(&store, &p, None, NOW).unwrap_err();
    assert_eq!(code, "dpop_nonce_missing");
    let fresh = fresh.unwrap();
    assert_eq!(fresh.len(), 27);
    assert_eq!(check(&store, &p, Some(json!(fresh)), NOW), Ok(()));
    // Its window (10 s) and the next; two windows on it is refused with a new one.
    let start = NOW - NOW % 10;
    assert_eq!(check(&store, &p, Some(json!(fresh)), start + 19), Ok(()));
    let (code, newer) = check(&store, &p, Some(json!(fresh)), start + 20).unwrap_err();
    assert_eq!(code, "dpop_nonce_invalid");
    let newer = newer.unwrap();
    assert_ne!(newer, fresh);
    assert_eq!(check(&store, &p, Some(json!(newer)), start + 20), Ok(()));
    // Not a nonce at all.
    for bad in [
        json!(1),
        json!("x"),
        json!(format!("{fresh}x")),
        json!(null),
    ] {
        let (code, again) = check(&store, &p, Some(bad), NOW).unwrap_err();
        assert_eq!(code, "dpop_nonce_invalid");
        assert_eq!(again.as_deref(), Some(fresh.as_str()));
    }
}

#[test]
fn another_proxys_or_providers_nonce_is_refused() {
    let p = nonce_policy();
    let (ours, theirs) = (MemoryStore::default(), MemoryStore::default());
    let (_, from_theirs) = check(&theirs, &p, None, NOW).unwrap_err();
    let (code, _) = check(&ours, &p, Some(json!(from_theirs.unwrap())), NOW).unwrap_err();
    assert_eq!(code, "dpop_nonce_invalid");
    // Same secret, other provider name.
    let mut cfg =
        config(json!({"dpop": "required", "dpop_nonce": "required", "dpop_nonce_lifetime": "10s"}));
    let provider = cfg["providers"]["p"].take();
    cfg["providers"] = json!({"q": provider});
    cfg["rules"][0]["requires"]["provider_name"] = json!("q");
    let q = config::parse(&cfg.to_string()).unwrap();
    // Provider q's record holds p's secret: only the name in the MAC tells them apart.
    let (secret, _) = ours.read(&nonce_secret_key("p"));
    ours.put(&nonce_secret_key("q"), &secret.unwrap(), 1);
    let (_, from_q) = check(&ours, &q, None, NOW).unwrap_err();
    let (code, _) = check(&ours, &p, Some(json!(from_q.unwrap())), NOW).unwrap_err();
    assert_eq!(code, "dpop_nonce_invalid");
}

#[test]
fn fails_closed_without_a_secret() {
    let p = nonce_policy();
    let store = MemoryStore::default();
    store.lose.set(u32::MAX);
    assert_eq!(
        check(&store, &p, None, NOW),
        Err(("dpop_nonce_unavailable".to_owned(), None))
    );
}

#[test]
fn not_required_ignores_the_claim() {
    let p = policy(json!({"dpop": "required"}));
    assert_eq!(p.providers[0].sender.nonce_lifetime, None);
    let store = MemoryStore::default();
    seed(&store, &p);
    assert_eq!(store.read(&nonce_secret_key("p")).0, None);
    assert_eq!(check(&store, &p, None, NOW), Ok(()));
    assert_eq!(check(&store, &p, Some(json!(5)), NOW), Ok(()));
    // Default lifetime.
    let d = policy(json!({"dpop": "optional", "dpop_nonce": "required"}));
    assert_eq!(
        d.providers[0].sender.nonce_lifetime,
        Some(Millis::from_secs(60))
    );
}

#[test]
fn the_challenge() {
    let p = nonce_policy();
    let h = headers("t", "p");
    let view = RequestView::new(&h, None);
    for (e, description) in [
        (
            jwt_edge::authn::error::AuthError::DpopNonceMissing,
            "the DPoP proof has no nonce: use the one in DPoP-Nonce",
        ),
        (
            jwt_edge::authn::error::AuthError::DpopNonceInvalid,
            "the DPoP proof's nonce is not valid or has expired: use the one in DPoP-Nonce",
        ),
    ] {
        let d = provider_denial(&p, &view, p.providers.first(), e);
        assert_eq!(d.status, 401);
        let www: Vec<&str> = d
            .headers
            .iter()
            .filter(|(n, _)| n == "www-authenticate")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(
            www,
            [format!(
                "DPoP realm=\"https://api.test/items\", error=\"use_dpop_nonce\", error_description=\"{description}\", algs=\"RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 EdDSA\""
            )]
        );
    }
    let d = provider_denial(
        &p,
        &view,
        p.providers.first(),
        jwt_edge::authn::error::AuthError::DpopNonceUnavailable,
    );
    assert_eq!(d.status, 503);
    assert!(d.headers.iter().all(|(n, _)| n != "www-authenticate"));
}

#[test]
fn config_errors_name_the_path() {
    let cases = [
        (
            json!({"dpop": "required", "dpop_nonce": "optional"}),
            "providers.p.sender_constraint.dpop_nonce",
        ),
        (
            json!({"dpop_nonce": "required"}),
            "providers.p.sender_constraint.dpop",
        ),
        (
            json!({"dpop": "required", "dpop_nonce_lifetime": "30s"}),
            "providers.p.sender_constraint.dpop_nonce_lifetime",
        ),
        (
            json!({"dpop": "required", "dpop_nonce": "disabled", "dpop_nonce_lifetime": "30s"}),
            "providers.p.sender_constraint.dpop_nonce_lifetime",
        ),
        (
            json!({"dpop": "required", "dpop_nonce": "required", "dpop_nonce_lifetime": "0s"}),
            "providers.p.sender_constraint.dpop_nonce_lifetime",
        ),
        (
            json!({"dpop": "required", "dpop_nonce": "required", "dpop_nonce_lifetime": "3601s"}),
            "providers.p.sender_constraint.dpop_nonce_lifetime",
        ),
        (
            json!({"dpop": "required", "dpop_nonce": "required", "dpop_nonce_lifetime": "1.5s"}),
            "providers.p.sender_constraint.dpop_nonce_lifetime",
        ),
    ];
    for (sender, path) in cases {
        let err = config::parse(&config(sender.clone()).to_string())
            .unwrap_err()
            .to_string();
        assert!(err.contains(path), "{sender}: {err}");
    }
    // The bounds themselves are accepted.
    for lifetime in ["1s", "3600s"] {
        let p = policy(
            json!({"dpop": "required", "dpop_nonce": "required", "dpop_nonce_lifetime": lifetime}),
        );
        assert!(p.providers[0].sender.nonce_lifetime.is_some());
    }
}
