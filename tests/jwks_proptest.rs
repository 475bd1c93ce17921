//! Property tests: no input makes JWKS loading, key selection or verification panic.
//!
//! Two generators: arbitrary bytes (mostly not JSON), and JSON-shaped key sets whose members
//! come from the JWK vocabulary with values that are sometimes right (valid base64url of
//! plausible lengths, real curve names) and sometimes wrong (wrong types, odd lengths, junk),
//! so that the per-key checks are reached rather than the JSON parser failing first.

// Test code: a failed unwrap or index is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use jwt_edge::authn::alg::Algorithm;
use jwt_edge::authn::b64;
use jwt_edge::authn::jwk::{parse_jwks, JwksError, JwksOptions, MAX_JWKS_BYTES};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

// RFC 7515 A.2.1 modulus and A.3.1 P-256 coordinates: valid material to mix in.
const RSA_N: &str = "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";
const P256_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
const P256_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";

const NAMES: [&str; 16] = [
    "kty", "crv", "n", "e", "x", "y", "k", "alg", "use", "key_ops", "kid", "d", "p", "x5c", "oth",
    "keys",
];

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(("[a-z]{1,3}", inner), 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn member_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        // Plausible strings.
        prop::sample::select(vec![
            "RSA", "EC", "OKP", "oct", "P-256", "P-384", "P-521", "Ed25519", "X25519", "sig",
            "enc", "RS256", "PS512", "ES256", "ES384", "EdDSA", "HS256", "HS512", "none", "AQAB",
            "Aw", "AA", "", RSA_N, P256_X, P256_Y,
        ])
        .prop_map(|s| json!(s)),
        // Base64url of arbitrary bytes of common key lengths.
        prop::sample::select(vec![0usize, 1, 31, 32, 33, 48, 64, 128, 256, 257, 512])
            .prop_flat_map(|n| prop::collection::vec(any::<u8>(), n..=n))
            .prop_map(|bytes| json!(b64::encode(&bytes))),
        // key_ops-like arrays.
        prop::collection::vec(
            prop::sample::select(vec!["verify", "sign", "encrypt"]),
            0..3
        )
        .prop_map(|ops| json!(ops)),
        any_json(),
    ]
}

/// A valid key of some family with a few members replaced or removed.
fn mutated_valid_key() -> impl Strategy<Value = Value> {
    let base = prop::sample::select(vec![
        json!({"kty": "RSA", "n": RSA_N, "e": "AQAB", "kid": "r"}),
        json!({"kty": "EC", "crv": "P-256", "x": P256_X, "y": P256_Y, "kid": "e"}),
        json!({"kty": "OKP", "crv": "Ed25519", "x": P256_X}),
        json!({"kty": "oct", "k": RSA_N, "alg": "HS512"}),
    ]);
    let edits = prop::collection::vec(
        (
            prop::sample::select(NAMES.to_vec()),
            prop::option::of(member_value()),
        ),
        0..3,
    );
    (base, edits).prop_map(|(mut key, edits)| {
        if let Some(members) = key.as_object_mut() {
            for (name, value) in edits {
                match value {
                    Some(v) => members.insert(name.to_string(), v),
                    None => members.remove(name),
                };
            }
        }
        key
    })
}

fn key_entry() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => mutated_valid_key(),
        3 => prop::collection::vec((prop::sample::select(NAMES.to_vec()), member_value()), 0..8)
            .prop_map(|members| {
                Value::Object(members.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        1 => any_json(),
    ]
}

fn exercise(bytes: &[u8], allow_symmetric: bool) {
    match parse_jwks(bytes, JwksOptions { allow_symmetric }) {
        Ok(load) => {
            assert!(!load.keys.is_empty());
            for key in load.keys.iter() {
                for alg in Algorithm::ALL {
                    let _ = key.verify(alg, b"h.p", &[0u8; 64]);
                    let _ = key.verify(alg, b"h.p", &[]);
                    let _ = load.keys.select(key.kid.as_deref(), alg);
                    let _ = load.keys.select(None, alg);
                }
            }
        }
        Err(JwksError::TooLarge(n)) => assert!(n > MAX_JWKS_BYTES),
        Err(err) => {
            let _ = err.to_string();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        exercise(&bytes, true);
        exercise(&bytes, false);
    }

    #[test]
    fn arbitrary_key_sets_never_panic(
        entries in prop::collection::vec(key_entry(), 0..6),
        extra in any_json(),
    ) {
        let doc = json!({ "keys": entries, "other": extra });
        let bytes = serde_json::to_vec(&doc).unwrap();
        exercise(&bytes, true);
        exercise(&bytes, false);
        // Truncations of a well-formed document are refused cleanly too.
        for cut in [1usize, 2, bytes.len() / 2] {
            exercise(&bytes[..bytes.len().saturating_sub(cut)], true);
        }
    }
}
