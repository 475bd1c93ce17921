//! Project Wycheproof signature vectors (C2SP/wycheproof `testvectors_v1/`, copied unmodified to
//! `tests/data/wycheproof/` with their licence and source commit), run through the same code path a token takes: the
//! group's public key is wrapped as `{"keys":[jwk]}` and loaded with `parse_jwks`, the key is
//! found with `KeySet::select`, and each vector's `msg`/`sig` goes to `Jwk::verify`.
//!
//! - `valid` must verify; `invalid` must not.
//! - `acceptable`: the only ones in these files are the RSA PKCS#1 v1.5 `MissingNull` vectors
//!   (DigestInfo without the NULL parameter). RFC 8017 §9.2 encodes the NULL and RFC 7518
//!   §3.3 uses that encoding, so jwt-edge compares against exactly it: they must be REJECTED.
//! - A key our load policy refuses counts its vectors as "policy-rejected"; the expected number
//!   is asserted per file (currently none: the e = 3 `SmallPublicKey` groups load, because the
//!   RSA verifier compares the whole encoded message and is not open to e = 3 forgeries).
//! - ECDSA groups without `publicKeyJwk` (the `EdgeCasePublicKey` keys) get a JWK built from
//!   `publicKey.wx`/`wy`, left-padded to the field size as RFC 7518 §6.2.1.2 requires.

// Test code: a failed unwrap or index is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fs;

use jwt_edge::authn::alg::Algorithm;
use jwt_edge::authn::b64;
use jwt_edge::authn::error::AuthError;
use jwt_edge::authn::jwk::{parse_jwks, JwksError, JwksOptions};
use serde_json::{json, Value};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/wycheproof/");

#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
struct Tally {
    total: usize,
    valid_passed: usize,
    invalid_rejected: usize,
    acceptable_accepted: usize,
    acceptable_rejected: usize,
    policy_rejected: usize,
}

/// file, algorithm, field size for EC keys built from hex, expected tally.
const FILES: [(&str, Algorithm, usize, Tally); 8] = [
    (
        "rsa_signature_2048_sha256_test.json",
        Algorithm::Rs256,
        0,
        Tally {
            total: 259,
            valid_passed: 9,
            invalid_rejected: 249,
            acceptable_accepted: 0,
            acceptable_rejected: 1,
            policy_rejected: 0,
        },
    ),
    (
        "rsa_signature_3072_sha256_test.json",
        Algorithm::Rs256,
        0,
        Tally {
            total: 259,
            valid_passed: 8,
            invalid_rejected: 250,
            acceptable_accepted: 0,
            acceptable_rejected: 1,
            policy_rejected: 0,
        },
    ),
    (
        "rsa_signature_2048_sha384_test.json",
        Algorithm::Rs384,
        0,
        Tally {
            total: 258,
            valid_passed: 7,
            invalid_rejected: 250,
            acceptable_accepted: 0,
            acceptable_rejected: 1,
            policy_rejected: 0,
        },
    ),
    (
        "rsa_signature_2048_sha512_test.json",
        Algorithm::Rs512,
        0,
        Tally {
            total: 259,
            valid_passed: 8,
            invalid_rejected: 250,
            acceptable_accepted: 0,
            acceptable_rejected: 1,
            policy_rejected: 0,
        },
    ),
    (
        "rsa_pss_2048_sha256_mgf1_32_test.json",
        Algorithm::Ps256,
        0,
        Tally {
            total: 108,
            valid_passed: 63,
            invalid_rejected: 45,
            acceptable_accepted: 0,
            acceptable_rejected: 0,
            policy_rejected: 0,
        },
    ),
    (
        "ecdsa_secp256r1_sha256_p1363_test.json",
        Algorithm::Es256,
        32,
        Tally {
            total: 262,
            valid_passed: 173,
            invalid_rejected: 89,
            acceptable_accepted: 0,
            acceptable_rejected: 0,
            policy_rejected: 0,
        },
    ),
    (
        "ecdsa_secp384r1_sha384_p1363_test.json",
        Algorithm::Es384,
        48,
        Tally {
            total: 280,
            valid_passed: 193,
            invalid_rejected: 87,
            acceptable_accepted: 0,
            acceptable_rejected: 0,
            policy_rejected: 0,
        },
    ),
    (
        "ed25519_test.json",
        Algorithm::EdDsa,
        0,
        Tally {
            total: 151,
            valid_passed: 88,
            invalid_rejected: 63,
            acceptable_accepted: 0,
            acceptable_rejected: 0,
            policy_rejected: 0,
        },
    ),
];

/// The group's JWK, or one built from the hex coordinates of an EC key.
fn group_jwk(group: &Value, field_size: usize) -> Value {
    if let Some(jwk) = group.get("publicKeyJwk").or_else(|| group.get("keyJwk")) {
        return jwk.clone();
    }
    assert!(field_size > 0, "group without a JWK in a non-EC file");
    let key = &group["publicKey"];
    let coord = |name: &str| {
        let raw = hex::decode(key[name].as_str().unwrap()).unwrap();
        // Wycheproof writes coordinates as signed big-endian integers: drop sign octets,
        // then left-pad to the field size.
        let trimmed: Vec<u8> = raw.iter().copied().skip_while(|b| *b == 0).collect();
        assert!(trimmed.len() <= field_size);
        let mut full = vec![0u8; field_size - trimmed.len()];
        full.extend(trimmed);
        b64::encode(&full)
    };
    let crv = if field_size == 32 { "P-256" } else { "P-384" };
    json!({"kty": "EC", "crv": crv, "x": coord("wx"), "y": coord("wy"), "kid": "none"})
}

fn run_file(file: &str, alg: Algorithm, field_size: usize) -> (Tally, Vec<String>) {
    let text = fs::read(format!("{DIR}{file}")).unwrap_or_else(|e| panic!("{file}: {e}"));
    let doc: Value = serde_json::from_slice(&text).unwrap();
    let mut tally = Tally::default();
    let mut failures = Vec::new();
    for group in doc["testGroups"].as_array().unwrap() {
        let jwk = group_jwk(group, field_size);
        if let Some(own) = jwk.get("alg").and_then(Value::as_str) {
            assert_eq!(own, alg.name(), "{file}: JWK alg");
        }
        let tests = group["tests"].as_array().unwrap();
        assert!(!tests.is_empty());
        let jwks = serde_json::to_vec(&json!({ "keys": [jwk] })).unwrap();
        let load = match parse_jwks(&jwks, JwksOptions::default()) {
            Ok(load) => load,
            Err(JwksError::NoUsableKey(skipped)) => {
                println!("  policy-rejected key: {}", skipped[0].reason);
                tally.total += tests.len();
                tally.policy_rejected += tests.len();
                continue;
            }
            Err(other) => panic!("{file}: key set refused: {other}"),
        };
        assert!(load.skipped.is_empty());
        let keys = load.keys.select(Some("none"), alg).unwrap();
        assert_eq!(keys.len(), 1);
        let key = keys[0];
        for test in tests {
            tally.total += 1;
            let msg = hex::decode(test["msg"].as_str().unwrap()).unwrap();
            let sig = hex::decode(test["sig"].as_str().unwrap()).unwrap();
            let outcome = key.verify(alg, &msg, &sig);
            if let Err(err) = &outcome {
                assert_eq!(*err, AuthError::BadSignature, "{file}: error kind");
            }
            let verified = outcome.is_ok();
            let result = test["result"].as_str().unwrap();
            match (result, verified) {
                ("valid", true) => tally.valid_passed += 1,
                ("invalid", false) => tally.invalid_rejected += 1,
                ("acceptable", true) => tally.acceptable_accepted += 1,
                ("acceptable", false) => tally.acceptable_rejected += 1,
                _ => failures.push(format!(
                    "{file} tcId {} ({result}, flags {}, {:?}): verified = {verified}",
                    test["tcId"], test["flags"], test["comment"]
                )),
            }
        }
    }
    (tally, failures)
}

#[test]
fn wycheproof_signature_vectors() {
    let mut all_failures = Vec::new();
    let mut mismatched = Vec::new();
    println!(
        "{:<42} {:>5} {:>6} {:>8} {:>7} {:>7} {:>6}",
        "file", "total", "valid", "invalid", "acc-ok", "acc-no", "policy"
    );
    for (file, alg, field_size, expected) in FILES {
        let (tally, failures) = run_file(file, alg, field_size);
        println!(
            "{:<42} {:>5} {:>6} {:>8} {:>7} {:>7} {:>6}",
            file,
            tally.total,
            tally.valid_passed,
            tally.invalid_rejected,
            tally.acceptable_accepted,
            tally.acceptable_rejected,
            tally.policy_rejected
        );
        if tally != expected {
            mismatched.push(format!("{file}: got {tally:?}, expected {expected:?}"));
        }
        all_failures.extend(failures);
    }
    for failure in &all_failures {
        println!("FAIL {failure}");
    }
    assert!(
        all_failures.is_empty(),
        "{} vectors failed",
        all_failures.len()
    );
    assert!(mismatched.is_empty(), "{mismatched:#?}");
}

/// Every copied file is in the table above (a new file is not silently skipped).
#[test]
fn every_file_is_covered() {
    let mut on_disk: Vec<String> = fs::read_dir(DIR)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with("_test.json"))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = FILES.iter().map(|f| f.0.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
}

/// Pins the Ed25519 strictness decision. This file does not separate `verify` from
/// `verify_strict`: both get all 151 vectors right (S >= L, truncation and garbage are refused
/// by both). jwt-edge uses `verify_strict` because it additionally refuses a small-order R or
/// public key, which no honest signer produces, so it costs nothing and removes the remaining
/// malleability. If a dependency update makes either disagree with the file, this test says so.
#[test]
fn ed25519_strict_versus_lenient() {
    let doc: Value =
        serde_json::from_slice(&fs::read(format!("{DIR}ed25519_test.json")).unwrap()).unwrap();
    let (mut lenient_wrong, mut strict_wrong) = (0, 0);
    for group in doc["testGroups"].as_array().unwrap() {
        let pk: [u8; 32] = hex::decode(group["publicKey"]["pk"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let key = ed25519_dalek::VerifyingKey::from_bytes(&pk).unwrap();
        for test in group["tests"].as_array().unwrap() {
            let msg = hex::decode(test["msg"].as_str().unwrap()).unwrap();
            let sig = hex::decode(test["sig"].as_str().unwrap()).unwrap();
            let valid = test["result"] == "valid";
            let Ok(sig) = ed25519_dalek::Signature::from_slice(&sig) else {
                assert!(!valid);
                continue;
            };
            use ed25519_dalek::Verifier;
            if key.verify(&msg, &sig).is_ok() != valid {
                lenient_wrong += 1;
            }
            if key.verify_strict(&msg, &sig).is_ok() != valid {
                strict_wrong += 1;
            }
        }
    }
    println!(
        "ed25519: lenient verify wrong on {lenient_wrong}, verify_strict wrong on {strict_wrong}"
    );
    assert_eq!((lenient_wrong, strict_wrong), (0, 0));
}
