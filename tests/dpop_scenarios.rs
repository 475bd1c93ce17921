//! DPoP-bound tokens (RFC 9449) through the compiled config and the core decision, and the
//! per-proxy replay check through shared data: request → status, code, challenge.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::type_complexity
)]

use jwt_edge::authn::authenticate::{decide_cached, Decision};
use jwt_edge::authn::b64;
use jwt_edge::authn::config;
use jwt_edge::authn::policy::Policy;
use jwt_edge::authn::request::RequestView;
use jwt_edge::authn::token_cache::TokenCache;
use jwt_edge::sources::dpop_replay::{record_proofs, replay_cache_keys, seed};
use jwt_edge::sources::{SharedData, WriteError};
use jwt_edge::time::UnixMillis;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::cell::RefCell;

mod support;
use support::sender::{access_token, config, jkt, jwk, key, keys, outcome, policy, sign, NOW};

const HTU: &str = "https://api.test/items";

fn bound_token() -> String {
    access_token(Some(json!({"jkt": jkt(&key(2))})))
}

fn proof_with(token: &str, htm: &str, htu: &str, jti: &str, iat: u64) -> String {
    let client = key(2);
    sign(
        &client,
        json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk(&client)}),
        json!({"jti": jti, "htm": htm, "htu": htu, "iat": iat,
               "ath": b64::encode(&Sha256::digest(token.as_bytes()))}),
    )
}

fn proof(token: &str) -> String {
    proof_with(token, "GET", HTU, "jti-1", NOW)
}

fn headers(authorization: Option<String>, dpop: &[String], method: &str) -> Vec<(String, String)> {
    let mut h = vec![
        (":method".to_owned(), method.to_owned()),
        (":scheme".to_owned(), "https".to_owned()),
        (":authority".to_owned(), "api.test".to_owned()),
        (":path".to_owned(), "/items?page=2".to_owned()),
    ];
    h.extend(authorization.map(|a| ("authorization".to_owned(), a)));
    h.extend(dpop.iter().map(|p| ("dpop".to_owned(), p.clone())));
    h
}

fn decide_with(p: &Policy, h: &[(String, String)], cache: &TokenCache) -> Decision {
    decide_cached(
        p,
        &RequestView::new(h, None),
        &keys(),
        cache,
        UnixMillis::from_secs(NOW),
    )
}

fn required() -> Policy {
    policy(json!({"dpop": "required", "dpop_algorithms": ["ES256", "EdDSA"]}))
}

#[test]
fn bound_token_with_a_valid_proof_is_allowed_and_its_proof_kept_for_the_replay_check() {
    let p = required();
    let t = bound_token();
    let d = decide_with(
        &p,
        &headers(Some(format!("DPoP {t}")), &[proof(&t)], "GET"),
        &TokenCache::disabled(),
    );
    assert_eq!(outcome(&d).0, 200);
    let Decision::Allow(a) = d else {
        unreachable!()
    };
    assert_eq!(a.proofs.len(), 1);
    assert_eq!(a.proofs[0].until, NOW + 60);
    assert_eq!(a.remove_headers, vec!["authorization".to_owned()]);
}

#[test]
fn every_refusal_with_status_code_and_challenge() {
    let p = required();
    let t = bound_token();
    let unbound = access_token(None);
    let dpop = |t: &str| Some(format!("DPoP {t}"));
    let cases: Vec<(&str, Option<String>, Vec<String>, &str, u32, &str, &str)> = vec![
        (
            "no credentials",
            None,
            vec![],
            "GET",
            401,
            "token_missing",
            "DPoP realm=\"https://api.test/items\", algs=\"ES256 EdDSA\"",
        ),
        (
            "missing proof",
            dpop(&t),
            vec![],
            "GET",
            401,
            "dpop_proof_missing",
            "invalid_dpop_proof",
        ),
        (
            "two proofs",
            dpop(&t),
            vec![proof(&t), proof(&t)],
            "GET",
            401,
            "dpop_proof_multiple",
            "invalid_dpop_proof",
        ),
        (
            "wrong method",
            dpop(&t),
            vec![proof(&t)],
            "POST",
            401,
            "dpop_htm_mismatch",
            "invalid_dpop_proof",
        ),
        (
            "wrong uri",
            dpop(&t),
            vec![proof_with(&t, "GET", "https://api.test/other", "j", NOW)],
            "GET",
            401,
            "dpop_htu_mismatch",
            "invalid_dpop_proof",
        ),
        (
            "stale iat",
            dpop(&t),
            vec![proof_with(&t, "GET", HTU, "j", NOW - 61)],
            "GET",
            401,
            "dpop_iat_out_of_window",
            "invalid_dpop_proof",
        ),
        (
            "proof for another token",
            dpop(&t),
            vec![proof(&unbound)],
            "GET",
            401,
            "dpop_ath_mismatch",
            "invalid_dpop_proof",
        ),
        (
            "unbound token under DPoP",
            dpop(&unbound),
            vec![proof(&unbound)],
            "GET",
            401,
            "dpop_token_unbound",
            "invalid_token",
        ),
        (
            "bound token as bearer",
            Some(format!("Bearer {t}")),
            vec![proof(&t)],
            "GET",
            401,
            "dpop_bound_token_as_bearer",
            "invalid_token",
        ),
        (
            "unbound bearer where required",
            Some(format!("Bearer {unbound}")),
            vec![],
            "GET",
            401,
            "dpop_token_unbound",
            "invalid_token",
        ),
    ];
    for (name, auth, proofs, method, status, code, challenge) in cases {
        let d = decide_with(&p, &headers(auth, &proofs, method), &TokenCache::disabled());
        let (s, c, w) = outcome(&d);
        assert_eq!((s, c.as_str()), (status, code), "{name}");
        assert!(w.starts_with("DPoP realm="), "{name}: {w}");
        assert!(w.contains(challenge), "{name}: {w}");
        assert!(w.ends_with("algs=\"ES256 EdDSA\""), "{name}: {w}");
    }
}

#[test]
fn the_proof_is_checked_on_a_token_cache_hit_too() {
    let p = policy(json!({"dpop": "required"}));
    let mut cfg = config(json!({"dpop": "required"}));
    cfg["providers"]["p"]["jwt_cache_config"] = json!({"jwt_cache_size": 10});
    let p_cached = config::parse(&cfg.to_string()).unwrap();
    let cache = TokenCache::new(p_cached.providers.iter().map(|p| p.jwt_cache_size));
    let t = bound_token();
    let ok = headers(Some(format!("DPoP {t}")), &[proof(&t)], "GET");
    assert_eq!(outcome(&decide_with(&p_cached, &ok, &cache)).0, 200);
    let no_proof = headers(Some(format!("DPoP {t}")), &[], "GET");
    assert_eq!(
        outcome(&decide_with(&p_cached, &no_proof, &cache)).1,
        "dpop_proof_missing"
    );
    assert_eq!(
        cache.take_stats().0,
        1,
        "the second decision was a cache hit"
    );
    // Default algorithms: every asymmetric one.
    let d = decide_with(&p, &headers(None, &[], "GET"), &TokenCache::disabled());
    assert!(
        outcome(&d)
            .2
            .ends_with("algs=\"RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 EdDSA\""),
        "{}",
        outcome(&d).2
    );
}

#[test]
fn optional_takes_unbound_bearer_tokens_but_not_bound_ones() {
    let p = policy(json!({"dpop": "optional"}));
    let t = bound_token();
    let unbound = access_token(None);
    let run = |auth: String, proofs: &[String]| {
        outcome(&decide_with(
            &p,
            &headers(Some(auth), proofs, "GET"),
            &TokenCache::disabled(),
        ))
        .1
    };
    assert_eq!(run(format!("Bearer {unbound}"), &[]), "allowed");
    assert_eq!(run(format!("DPoP {t}"), &[proof(&t)]), "allowed");
    assert_eq!(
        run(format!("Bearer {t}"), &[]),
        "dpop_bound_token_as_bearer"
    );
    assert_eq!(run(format!("DPoP {t}"), &[]), "dpop_proof_missing");
}

#[test]
fn disabled_is_todays_behaviour() {
    let p = policy(json!({}));
    let t = bound_token();
    let run = |auth: String| {
        outcome(&decide_with(
            &p,
            &headers(Some(auth), &[], "GET"),
            &TokenCache::disabled(),
        ))
    };
    // The DPoP scheme is not this provider's: no token found.
    assert_eq!(run(format!("DPoP {t}")).1, "token_missing");
    assert!(run(format!("DPoP {t}")).2.starts_with("Bearer realm="));
    assert_eq!(run(format!("Bearer {t}")).1, "allowed");
}

type Store = jwt_edge::sources::memory::MemoryStore;

fn allowed_proofs(p: &Policy, jti: &str) -> Vec<jwt_edge::authn::authenticate::Proof> {
    let t = bound_token();
    let h = headers(
        Some(format!("DPoP {t}")),
        &[proof_with(&t, "GET", HTU, jti, NOW)],
        "GET",
    );
    match decide_with(p, &h, &TokenCache::disabled()) {
        Decision::Allow(a) => a.proofs,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_replayed_proof_is_refused_through_shared_data() {
    let p = required();
    let store = Store::default();
    let first = allowed_proofs(&p, "a");
    assert_eq!(
        record_proofs(&store, &p, &first, UnixMillis::from_secs(NOW)),
        Ok(())
    );
    let err = record_proofs(
        &store,
        &p,
        &allowed_proofs(&p, "a"),
        UnixMillis::from_secs(NOW + 1),
    )
    .unwrap_err();
    assert_eq!((err.0, err.1.code()), (0, "dpop_replayed"));
    // Another jti passes, after losing a CAS race once.
    store.lose.set(1);
    assert_eq!(
        record_proofs(
            &store,
            &p,
            &allowed_proofs(&p, "b"),
            UnixMillis::from_secs(NOW + 1)
        ),
        Ok(())
    );
    // A host that never lets the write through: fail closed.
    store.lose.set(u32::MAX);
    let err = record_proofs(
        &store,
        &p,
        &allowed_proofs(&p, "c"),
        UnixMillis::from_secs(NOW + 1),
    )
    .unwrap_err();
    assert_eq!(err.1.code(), "dpop_replay_cache_full");
}

/// A store on which another VM writes between this VM's read and its first write.
struct Racing<'a> {
    inner: &'a Store,
    other_vm: RefCell<Option<Box<dyn FnOnce() + 'a>>>,
}

impl SharedData for Racing<'_> {
    fn read(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        self.inner.read(key)
    }
    fn compare_and_swap(&self, key: &str, v: &[u8], cas: Option<u32>) -> Result<(), WriteError> {
        if let Some(other) = self.other_vm.borrow_mut().take() {
            other();
        }
        self.inner.compare_and_swap(key, v, cas)
    }
}

#[test]
fn the_same_proof_on_two_vms_at_once_is_accepted_once() {
    let p = required();
    let store = Store::default();
    seed(&store, &p);
    let shards: Vec<String> =
        replay_cache_keys("p", p.providers[0].sender.replay_cache_size).collect();
    assert_eq!(shards.len(), 16);
    assert!(shards.iter().all(|k| store.read(k).0.is_some()));
    // Seeding again (another VM configured) leaves existing records alone.
    seed(&store, &p);
    assert_eq!(*store.blind_overwrites.borrow(), Vec::<String>::new());

    let proofs = allowed_proofs(&p, "same");
    let racing = Racing {
        inner: &store,
        other_vm: RefCell::new(Some(Box::new(|| {
            assert_eq!(
                record_proofs(&store, &p, &proofs, UnixMillis::from_secs(NOW)),
                Ok(())
            );
        }))),
    };
    let err = record_proofs(&racing, &p, &proofs, UnixMillis::from_secs(NOW)).unwrap_err();
    assert_eq!(err.1.code(), "dpop_replayed");
    // Proofs only ever went in by compare-and-swap on a record that existed.
    assert_eq!(*store.blind_overwrites.borrow(), Vec::<String>::new());
}

#[test]
fn a_corrupt_record_refuses_every_proof_it_could_have_held() {
    let p = required();
    let store = Store::default();
    let capacity = p.providers[0].sender.replay_cache_size;
    for key in replay_cache_keys("p", capacity) {
        store.put(&key, b"garbage", 7);
    }
    let err = record_proofs(
        &store,
        &p,
        &allowed_proofs(&p, "a"),
        UnixMillis::from_secs(NOW),
    )
    .unwrap_err();
    assert_eq!(err.1.code(), "dpop_replay_cache_full");
}

#[test]
fn config_errors_name_the_path() {
    let cases = [
        (json!({"dpop": "yes"}), "providers.p.sender_constraint.dpop"),
        (
            json!({"dpop": "required", "dpop_algorithms": ["HS256"]}),
            "providers.p.sender_constraint.dpop_algorithms[0]",
        ),
        (
            json!({"dpop": "required", "dpop_algorithms": ["ES256", "ES256"]}),
            "providers.p.sender_constraint.dpop_algorithms[1]",
        ),
        (
            json!({"dpop": "required", "dpop_algorithms": []}),
            "providers.p.sender_constraint.dpop_algorithms",
        ),
        (
            json!({"dpop": "required", "dpop_max_age": "0s"}),
            "providers.p.sender_constraint.dpop_max_age",
        ),
        (
            json!({"dpop": "required", "dpop_max_age": "3600s"}),
            "providers.p.sender_constraint.dpop_max_age",
        ),
        (
            json!({"dpop": "required", "dpop_clock_skew": "1.5s"}),
            "providers.p.sender_constraint.dpop_clock_skew",
        ),
        (
            json!({"dpop": "required", "dpop_replay_cache_size": 0}),
            "providers.p.sender_constraint.dpop_replay_cache_size",
        ),
        (
            json!({"dpop_max_age": "30s"}),
            "providers.p.sender_constraint.dpop",
        ),
        (json!({"mtls": "on"}), "providers.p.sender_constraint.mtls"),
    ];
    for (sender, path) in cases {
        let err = config::parse(&config(sender.clone()).to_string())
            .unwrap_err()
            .to_string();
        assert!(err.contains(path), "{sender}: {err}");
    }
}
