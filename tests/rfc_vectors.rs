//! Known-answer tests at signature level from the specifications: the exact JWKs and compact
//! JWS strings of RFC 7515 Appendix A, RFC 7520 §4 and RFC 8037 Appendix A.4, each checked
//! through `parse_jwks` → `KeySet::select(kid, alg)` → `Jwk::verify` over the exact
//! `header.payload` bytes. Every accepted vector is then mutated (signature bits, payload
//! bit) and must fail.
//!
//! The RFCs print their private JWKs for A.2/A.3 and 8037 A.1; the key sets below hold only
//! the public members (RFC 7515 A.3 also checks that the private JWK itself is refused).

// Test code: a failed unwrap or index is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use jwt_edge::authn::alg::Algorithm;
use jwt_edge::authn::b64;
use jwt_edge::authn::error::AuthError;
use jwt_edge::authn::jwk::{parse_jwks, JwksError, JwksOptions, KeySet};
use serde_json::Value;

const REMOTE: JwksOptions = JwksOptions {
    allow_symmetric: false,
};
const LOCAL: JwksOptions = JwksOptions {
    allow_symmetric: true,
};

// RFC 7515 Appendix A.1.1: the HMAC key and the compact JWS.
const RFC7515_A1_JWKS: &str = r#"{"keys":[{"kty":"oct",
  "k":"AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"}]}"#;
const RFC7515_A1_JWS: &str = concat!(
    "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9",
    ".",
    "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ",
    ".",
    "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
);

// RFC 7515 Appendix A.2.1: the RSA key (public members n, e) and the compact JWS.
const RFC7515_A2_JWKS: &str = r#"{"keys":[{"kty":"RSA",
  "n":"ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ",
  "e":"AQAB"}]}"#;
const RFC7515_A2_JWS: &str = concat!(
    "eyJhbGciOiJSUzI1NiJ9",
    ".",
    "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ",
    ".",
    "cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5",
    "jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb",
    "1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QO",
    "YEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw"
);

// RFC 7515 Appendix A.3.1: the P-256 key (public members) and the compact JWS.
const RFC7515_A3_JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256",
  "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
  "y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;
// The same key exactly as A.3.1 prints it, with the private scalar `d`.
const RFC7515_A3_PRIVATE_JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256",
  "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
  "y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
  "d":"jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI"}]}"#;
const RFC7515_A3_JWS: &str = concat!(
    "eyJhbGciOiJFUzI1NiJ9",
    ".",
    "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ",
    ".",
    "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q"
);

// RFC 7515 Appendix A.4.1: the P-521 key (public members) and the ES512 compact JWS.
const RFC7515_A4_JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-521",
  "x":"AekpBQ8ST8a8VcfVOTNl353vSrDCLLJXmPk06wTjxrrjcBpXp5EOnYG_NjFZ6OvLFV1jSfS9tsz4qUxcWceqwQGk",
  "y":"ADSmRA43Z1DSNx_RvcLI87cdL07l6jQyyBXMoxVg_l2Th-x3S1WDhjDly79ajL4Kkd0AZMaZmh9ubmf63e3kyMj2"}]}"#;
const RFC7515_A4_JWS: &str = concat!(
    "eyJhbGciOiJFUzUxMiJ9",
    ".",
    "UGF5bG9hZA",
    ".",
    "AdwMgeerwtHoh-l192l60hp9wAHZFVJbLfD_UxMi70cwnZOYaRI1bKPWROc-mZZqwqT2SI-KGDKB34XO0aw_7XdtAG8G",
    "aSwFKdCAPZgoXD2YBJZCPEX3xKpRwcdOO8KpEHwJjyqOgzDO7iKvU8vcnwNrmxYbSW9ERBXukOXolLzeO_Jn"
);

// RFC 7520 §3.3 Figure 3: the RSA public key used by §4.1 and §4.2.
const RFC7520_RSA_JWKS: &str = r#"{"keys":[{
  "kty": "RSA",
  "kid": "bilbo.baggins@hobbiton.example",
  "use": "sig",
  "n": "n4EPtAOCc9AlkeQHPzHStgAbgs7bTZLwUBZdR8_KuKPEHLd4rHVTeT-O-XV2jRojdNhxJWTDvNd7nqQ0VEiZQHz_AJmSCpMaJMRBSFKrKb2wqVwGU_NsYOYL-QtiWN2lbzcEe6XC0dApr5ydQLrHqkHHig3RBordaZ6Aj-oBHqFEHYpPe7Tpe-OfVfHd1E6cS6M1FZcD1NNLYD5lFHpPI9bTwJlsde3uhGqC0ZCuEHg8lhzwOHrtIQbS0FVbb9k3-tVTU4fg_3L_vniUFAKwuCLqKnS2BYwdq_mzSnbLY7h_qixoR7jig3__kRhuaxwUkRz5iaiQkqgc5gHdrNP5zw",
  "e": "AQAB"}]}"#;

// RFC 7520 §4 Figure 8: the payload every §4 example signs.
macro_rules! rfc7520_payload {
    () => {
        concat!(
            "SXTigJlzIGEgZGFuZ2Vyb3VzIGJ1c2luZXNzLCBGcm9kbywgZ29pbmcgb3V0IH",
            "lvdXIgZG9vci4gWW91IHN0ZXAgb250byB0aGUgcm9hZCwgYW5kIGlmIHlvdSBk",
            "b24ndCBrZWVwIHlvdXIgZmVldCwgdGhlcmXigJlzIG5vIGtub3dpbmcgd2hlcm",
            "UgeW91IG1pZ2h0IGJlIHN3ZXB0IG9mZiB0by4"
        )
    };
}

// RFC 7520 §4.1.3 Figure 13 (RS256).
const RFC7520_4_1_JWS: &str = concat!(
    "eyJhbGciOiJSUzI1NiIsImtpZCI6ImJpbGJvLmJhZ2dpbnNAaG9iYml0b24uZX",
    "hhbXBsZSJ9",
    ".",
    rfc7520_payload!(),
    ".",
    "MRjdkly7_-oTPTS3AXP41iQIGKa80A0ZmTuV5MEaHoxnW2e5CZ5NlKtainoFmK",
    "ZopdHM1O2U4mwzJdQx996ivp83xuglII7PNDi84wnB-BDkoBwA78185hX-Es4J",
    "IwmDLJK3lfWRa-XtL0RnltuYv746iYTh_qHRD68BNt1uSNCrUCTJDt5aAE6x8w",
    "W1Kt9eRo4QPocSadnHXFxnt8Is9UzpERV0ePPQdLuW3IS_de3xyIrDaLGdjluP",
    "xUAhb6L2aXic1U12podGU0KLUQSE_oI-ZnmKJ3F4uOZDnd6QZWJushZ41Axf_f",
    "cIe8u9ipH84ogoree7vjbU5y18kDquDg"
);

// RFC 7520 §4.2.3 Figure 20 (PS384).
const RFC7520_4_2_JWS: &str = concat!(
    "eyJhbGciOiJQUzM4NCIsImtpZCI6ImJpbGJvLmJhZ2dpbnNAaG9iYml0b24uZX",
    "hhbXBsZSJ9",
    ".",
    rfc7520_payload!(),
    ".",
    "cu22eBqkYDKgIlTpzDXGvaFfz6WGoz7fUDcfT0kkOy42miAh2qyBzk1xEsnk2I",
    "pN6-tPid6VrklHkqsGqDqHCdP6O8TTB5dDDItllVo6_1OLPpcbUrhiUSMxbbXU",
    "vdvWXzg-UD8biiReQFlfz28zGWVsdiNAUf8ZnyPEgVFn442ZdNqiVJRmBqrYRX",
    "e8P_ijQ7p8Vdz0TTrxUeT3lm8d9shnr2lfJT8ImUjvAA2Xez2Mlp8cBE5awDzT",
    "0qI0n6uiP1aCN_2_jLAeQTlqRHtfa64QQSUmFAAjVKPbByi7xho0uTOcbH510a",
    "6GYmJUAfmWjwZ6oD4ifKo8DYM-X72Eaw"
);

// RFC 7520 §3.1 Figure 1: the P-521 public key used by §4.3.
const RFC7520_EC_JWKS: &str = r#"{"keys":[{
  "kty": "EC",
  "kid": "bilbo.baggins@hobbiton.example",
  "use": "sig",
  "crv": "P-521",
  "x": "AHKZLLOsCOzz5cY97ewNUajB957y-C-U88c3v13nmGZx6sYl_oJXu9A5RkTKqjqvjyekWF-7ytDyRXYgCF5cj0Kt",
  "y": "AdymlHvOiLxXkEhayXQnNCvDX4h9htZaCJN34kfmC6pV5OhQHiraVySsUdaQkAgDPrwQrJmbnX9cwlGfP-HqHZR1"}]}"#;

// RFC 7520 §4.3.3 Figure 27 (ES512).
const RFC7520_4_3_JWS: &str = concat!(
    "eyJhbGciOiJFUzUxMiIsImtpZCI6ImJpbGJvLmJhZ2dpbnNAaG9iYml0b24uZX",
    "hhbXBsZSJ9",
    ".",
    rfc7520_payload!(),
    ".",
    "AE_R_YZCChjn4791jSQCrdPZCNYqHXCTZH0-JZGYNlaAjP2kqaluUIIUnC9qvb",
    "u9Plon7KRTzoNEuT4Va2cmL1eJAQy3mtPBu_u_sDDyYjnAMDxXPn7XrT0lw-kv",
    "AD890jl8e2puQens_IEKBpHABlsbEPX6sFY8OcGDqoRuBomu9xQ2"
);

// RFC 7520 §3.5 Figure 5: the HMAC key used by §4.4.
const RFC7520_HMAC_JWKS: &str = r#"{"keys":[{
  "kty": "oct",
  "kid": "018c0ae5-4d9b-471b-bfd6-eef314bc7037",
  "use": "sig",
  "alg": "HS256",
  "k": "hJtXIZ2uSN5kbQfbtTNWbpdmhkV8FJG-Onbc6mxCcYg"}]}"#;

// RFC 7520 §4.4.3 Figure 34 (HS256).
const RFC7520_4_4_JWS: &str = concat!(
    "eyJhbGciOiJIUzI1NiIsImtpZCI6IjAxOGMwYWU1LTRkOWItNDcxYi1iZmQ2LW",
    "VlZjMxNGJjNzAzNyJ9",
    ".",
    rfc7520_payload!(),
    ".",
    "s0h6KThzkfBBBkLspW1h84VsJZFTsPPqMDA7g1Md7p0"
);

// RFC 8037 Appendix A.2: the Ed25519 public key; A.4: the compact JWS.
const RFC8037_JWKS: &str = r#"{"keys":[{"kty":"OKP","crv":"Ed25519",
  "x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
const RFC8037_A4_JWS: &str = concat!(
    "eyJhbGciOiJFZERTQSJ9",
    ".",
    "RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc",
    ".",
    "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
);

struct Token {
    signing_input: Vec<u8>,
    signature: Vec<u8>,
    alg_name: String,
    kid: Option<String>,
}

fn split(jws: &str) -> Token {
    let parts: Vec<&str> = jws.split('.').collect();
    assert_eq!(parts.len(), 3, "compact JWS has three parts");
    let header: Value = serde_json::from_slice(&b64::decode(parts[0]).unwrap()).unwrap();
    Token {
        signing_input: format!("{}.{}", parts[0], parts[1]).into_bytes(),
        signature: b64::decode(parts[2]).expect("signature is strict base64url"),
        alg_name: header["alg"].as_str().unwrap().to_string(),
        kid: header.get("kid").map(|k| k.as_str().unwrap().to_string()),
    }
}

fn keys(jwks: &str, opts: JwksOptions) -> KeySet {
    let load = parse_jwks(jwks.as_bytes(), opts).expect("RFC key set loads");
    assert!(load.skipped.is_empty(), "{:?}", load.skipped);
    load.keys
}

/// Verifies with every selected key; Ok if one accepts.
fn verify(
    set: &KeySet,
    token: &Token,
    signing_input: &[u8],
    signature: &[u8],
) -> Result<(), AuthError> {
    let alg = Algorithm::parse(&token.alg_name).expect("supported alg");
    let mut last = Err(AuthError::BadSignature);
    for key in set.select(token.kid.as_deref(), alg)? {
        last = key.verify(alg, signing_input, signature);
        if last.is_ok() {
            return last;
        }
    }
    last
}

/// The vector verifies, and flipping signature bits or one payload bit makes it fail.
/// `bit_stride` spaces the flipped signature bits (1 = every bit); RSA uses a wider stride
/// because each check is a modular exponentiation in a debug build.
fn check_accepts(name: &str, jwks: &str, opts: JwksOptions, jws: &str, bit_stride: usize) {
    let set = keys(jwks, opts);
    let token = split(jws);
    assert_eq!(
        verify(&set, &token, &token.signing_input, &token.signature),
        Ok(()),
        "{name}: must verify"
    );
    let mut flipped = 0;
    for bit in (0..token.signature.len() * 8).step_by(bit_stride) {
        let mut sig = token.signature.clone();
        sig[bit / 8] ^= 1 << (bit % 8);
        assert_eq!(
            verify(&set, &token, &token.signing_input, &sig),
            Err(AuthError::BadSignature),
            "{name}: signature bit {bit} flipped"
        );
        flipped += 1;
    }
    // Always include the last bit as well.
    let mut sig = token.signature.clone();
    *sig.last_mut().unwrap() ^= 1;
    assert!(
        verify(&set, &token, &token.signing_input, &sig).is_err(),
        "{name}: last bit"
    );
    // One bit of the payload.
    let mut input = token.signing_input.clone();
    *input.last_mut().unwrap() ^= 0x01;
    assert!(
        verify(&set, &token, &input, &token.signature).is_err(),
        "{name}: payload bit"
    );
    // Truncated and extended signatures.
    let short = &token.signature[..token.signature.len() - 1];
    assert!(
        verify(&set, &token, &token.signing_input, short).is_err(),
        "{name}: truncated"
    );
    let mut long = token.signature.clone();
    long.push(0);
    assert!(
        verify(&set, &token, &token.signing_input, &long).is_err(),
        "{name}: extended"
    );
    println!("{name}: verified; {flipped} signature bit flips rejected");
}

#[test]
fn rfc7515_a1_hs256_local_key() {
    check_accepts(
        "RFC 7515 A.1 HS256",
        RFC7515_A1_JWKS,
        LOCAL,
        RFC7515_A1_JWS,
        1,
    );
    // The same secret in a remote key set is refused.
    match parse_jwks(RFC7515_A1_JWKS.as_bytes(), REMOTE) {
        Err(JwksError::NoUsableKey(skipped)) => assert_eq!(
            skipped[0].reason,
            "kty oct keys are only accepted in a local JWKS"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn rfc7515_a2_rs256() {
    check_accepts(
        "RFC 7515 A.2 RS256",
        RFC7515_A2_JWKS,
        REMOTE,
        RFC7515_A2_JWS,
        61,
    );
}

#[test]
fn rfc7515_a3_es256() {
    check_accepts(
        "RFC 7515 A.3 ES256",
        RFC7515_A3_JWKS,
        REMOTE,
        RFC7515_A3_JWS,
        1,
    );
    // As printed in the RFC, with `d`: a private key in a key set is refused.
    match parse_jwks(RFC7515_A3_PRIVATE_JWKS.as_bytes(), REMOTE) {
        Err(JwksError::NoUsableKey(skipped)) => {
            assert_eq!(skipped[0].reason, "private key material in a public JWKS")
        }
        other => panic!("{other:?}"),
    }
}

/// ES512 is not supported: the algorithm name is not an `Algorithm`, and the P-521 key does
/// not load, so the vector cannot verify by either route.
fn check_es512_refused(name: &str, jwks: &str, jws: &str) {
    let token = split(jws);
    assert_eq!(token.alg_name, "ES512");
    assert_eq!(Algorithm::parse(&token.alg_name), None, "{name}");
    match parse_jwks(jwks.as_bytes(), REMOTE) {
        Err(JwksError::NoUsableKey(skipped)) => {
            assert_eq!(skipped[0].reason, "unsupported kty EC crv P-521", "{name}")
        }
        other => panic!("{name}: {other:?}"),
    }
}

#[test]
fn rfc7515_a4_es512_is_refused() {
    check_es512_refused("RFC 7515 A.4 ES512", RFC7515_A4_JWKS, RFC7515_A4_JWS);
}

#[test]
fn rfc7520_4_1_rs256() {
    check_accepts(
        "RFC 7520 4.1 RS256",
        RFC7520_RSA_JWKS,
        REMOTE,
        RFC7520_4_1_JWS,
        61,
    );
}

#[test]
fn rfc7520_4_2_ps384() {
    check_accepts(
        "RFC 7520 4.2 PS384",
        RFC7520_RSA_JWKS,
        REMOTE,
        RFC7520_4_2_JWS,
        61,
    );
    // The PS384 signature does not pass as PS256, PS512 or RS384 with the same key.
    let set = keys(RFC7520_RSA_JWKS, REMOTE);
    let token = split(RFC7520_4_2_JWS);
    let key = set
        .select(Some("bilbo.baggins@hobbiton.example"), Algorithm::Ps384)
        .unwrap()[0];
    for other in [Algorithm::Ps256, Algorithm::Ps512, Algorithm::Rs384] {
        assert_eq!(
            key.verify(other, &token.signing_input, &token.signature),
            Err(AuthError::BadSignature),
            "{other}"
        );
    }
}

#[test]
fn rfc7520_4_3_es512_is_refused() {
    check_es512_refused("RFC 7520 4.3 ES512", RFC7520_EC_JWKS, RFC7520_4_3_JWS);
}

#[test]
fn rfc7520_4_4_hs256() {
    check_accepts(
        "RFC 7520 4.4 HS256",
        RFC7520_HMAC_JWKS,
        LOCAL,
        RFC7520_4_4_JWS,
        1,
    );
}

#[test]
fn rfc8037_a4_ed25519() {
    check_accepts(
        "RFC 8037 A.4 EdDSA",
        RFC8037_JWKS,
        REMOTE,
        RFC8037_A4_JWS,
        1,
    );
}

/// A signature made with one RFC key under a kid that names another key fails: selection by
/// kid never falls back to other keys.
#[test]
fn reused_kid_with_another_key_fails() {
    // RFC 7520's RSA key published under the kid, token signed by RFC 7515 A.2's key.
    let set = keys(RFC7520_RSA_JWKS, REMOTE);
    let mut token = split(RFC7515_A2_JWS);
    token.kid = Some("bilbo.baggins@hobbiton.example".into());
    assert_eq!(
        verify(&set, &token, &token.signing_input, &token.signature),
        Err(AuthError::BadSignature)
    );
    token.kid = Some("someone-else".into());
    assert_eq!(
        verify(&set, &token, &token.signing_input, &token.signature),
        Err(AuthError::UnknownKid("someone-else".into()))
    );
}
