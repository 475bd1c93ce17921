//! Key sets as real identity providers served them (`tests/data/real-jwks/`, see its
//! README for sources and quirks), loaded as a remote JWKS (`allow_symmetric: false`).
//!
//! The expected counts were derived by reading each file (key types, curves, `use`, `alg`, and
//! each RSA modulus measured) and are asserted with the exact skip reason of every entry the
//! loader drops. Documents where no key survives are refused as a whole (`NoUsableKey`).
//! Discovery documents have no `keys` array and must be refused with `NoKeysArray`.

// Test code: a failed unwrap or index is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fs;

use jwt_edge::authn::jwk::{parse_jwks, JwksError, JwksOptions, SkippedKey};
use serde_json::Value;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/real-jwks/");

const RSA_1024: &str = "RSA modulus is 1024 bits; at least 2048 required";
const N_NOT_URL: &str = "n is not unpadded base64url";

/// file, keys kept, reasons of the skipped entries in document order.
const EXPECTED: &[(&str, usize, &[&str])] = &[
    ("apple-jwks.json", 3, &[]),
    ("auth0-common-jwks.json", 2, &[]),
    ("auth0-samples-jwks.json", 1, &[]),
    ("authentik-jwks.json", 1, &[]),
    ("docker-jwks.json", 2, &[]),
    ("facebook-jwks.json", 2, &[]),
    // 1024-bit RSA (with a leading 0x00 octet in n): refused.
    ("forgerock-2015-jwks.json", 0, &[RSA_1024]),
    ("gitlab-jwks.json", 2, &[]),
    // RSA keys with a leading 0x00 octet in n load; the P-256 and P-384 keys say alg "EC",
    // which is no JWS algorithm (they also have a 33-byte coordinate, never reached); the curve
    // is judged before alg, so the P-521 key is skipped for its curve.
    (
        "gluu-2015-jwks.json",
        3,
        &[
            "alg EC is not a signature algorithm",
            "alg EC is not a signature algorithm",
            "unsupported kty EC crv P-521",
        ],
    ),
    // Padded standard base64 (and 1024 bits).
    ("google-2015-01-v2-jwks.json", 0, &[N_NOT_URL, N_NOT_URL]),
    ("google-2015-05-v3-jwks.json", 0, &[RSA_1024, RSA_1024]),
    ("google-2022-jwks.json", 2, &[]),
    ("google-jwks.json", 2, &[]),
    ("hashicorp-vault-jwks.json", 2, &[]),
    // The RSA-OAEP encryption key next to the signing key.
    ("keycloak-jwks.json", 1, &["use is enc, not sig"]),
    ("keycloak-mafiasi-jwks.json", 1, &[]),
    ("lego-jwks.json", 5, &[]),
    (
        "microsoft-2015-common-jwks.json",
        0,
        &[N_NOT_URL, N_NOT_URL],
    ),
    ("microsoft-2016-common-jwks.json", 2, &[]),
    ("microsoft-2016-tenant-v2-jwks.json", 2, &[]),
    ("microsoft-entra-common-jwks.json", 9, &[]),
    ("mojeid-jwks.json", 1, &[]),
    ("okta-common-jwks.json", 2, &[]),
    ("onelogin-jwks.json", 1, &[]),
    // 7 RSA (RS256/PS256) + 7 EC P-256 kept; the X25519 key-agreement key is not for us.
    (
        "paypal-jwks.json",
        14,
        &["kty OKP crv X25519 is not a signature curve"],
    ),
    // 3 RSA + 3 P-256 + 3 P-384 kept; P-521 (ES512) is not supported.
    (
        "pingfederate-2015-jwks.json",
        9,
        &[
            "unsupported kty EC crv P-521",
            "unsupported kty EC crv P-521",
            "unsupported kty EC crv P-521",
        ],
    ),
    ("salesforce-2015-jwks.json", 4, &[]),
    ("slack-jwks.json", 1, &[]),
    // The jwt-svid key is kept; the x509-svid one (no kid) is for certificates.
    ("spiffe-bundle-jwks.json", 1, &["use is x509-svid, not sig"]),
    ("thinktecture-2015-jwks.json", 0, &[N_NOT_URL]),
    ("verimi-jwks.json", 2, &[]),
    // Three 1024-bit RSA keys dropped, the ES256 key kept.
    ("yahoo-jwks.json", 1, &[RSA_1024, RSA_1024, RSA_1024]),
];

fn load(name: &str) -> (usize, Vec<SkippedKey>) {
    let bytes = fs::read(format!("{DIR}{name}")).unwrap_or_else(|e| panic!("{name}: {e}"));
    match parse_jwks(&bytes, JwksOptions::default()) {
        Ok(load) => (load.keys.len(), load.skipped),
        Err(JwksError::NoUsableKey(skipped)) => (0, skipped),
        Err(other) => panic!("{name}: refused: {other}"),
    }
}

fn is_jwks_shaped(bytes: &[u8]) -> bool {
    let doc: Value = serde_json::from_slice(bytes).unwrap();
    doc.get("keys").is_some_and(Value::is_array)
}

#[test]
fn real_key_sets_load_as_expected() {
    let mut names: Vec<String> = fs::read_dir(DIR)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();

    let mut jwks_files = Vec::new();
    let mut discovery_files = 0;
    for name in &names {
        let bytes = fs::read(format!("{DIR}{name}")).unwrap();
        if is_jwks_shaped(&bytes) {
            jwks_files.push(name.clone());
        } else {
            // Discovery documents: valid JSON objects, no key set.
            assert_eq!(
                parse_jwks(&bytes, JwksOptions::default()).unwrap_err(),
                JwksError::NoKeysArray,
                "{name}"
            );
            discovery_files += 1;
        }
    }
    let listed: Vec<String> = EXPECTED.iter().map(|e| e.0.to_string()).collect();
    assert_eq!(jwks_files, listed, "every JWKS-shaped file is in the table");
    // The folder holds 32 key sets and 16 discovery documents (its README's summary line
    // counts more files than were kept).
    assert_eq!(discovery_files, 16);

    let (mut total_kept, mut total_skipped) = (0, 0);
    let mut mismatches = Vec::new();
    println!("{:<38} {:>4} {:>7}", "document", "kept", "skipped");
    for (name, kept, reasons) in EXPECTED {
        let (got_kept, skipped) = load(name);
        println!("{:<38} {:>4} {:>7}", name, got_kept, skipped.len());
        for s in &skipped {
            println!("    #{} kid {:?}: {}", s.index, s.kid, s.reason);
        }
        let got_reasons: Vec<&str> = skipped.iter().map(|s| s.reason.as_str()).collect();
        if got_kept != *kept || got_reasons != *reasons {
            mismatches.push(format!(
                "{name}: kept {got_kept} (expected {kept}), skipped {got_reasons:?} (expected {reasons:?})"
            ));
        }
        total_kept += got_kept;
        total_skipped += skipped.len();
    }
    println!("total: {total_kept} kept, {total_skipped} skipped");
    assert!(mismatches.is_empty(), "{mismatches:#?}");
    // 98 key entries in the 32 key sets: every entry is either kept or skipped with a reason.
    assert_eq!((total_kept, total_skipped), (78, 20));
}
