//! RFC 7638 JWK thumbprints: SHA-256 over the key's required members, in lexicographic
//! order, as JSON without whitespace, encoded base64url (RFC 9449 `jkt`).

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::authn::b64;
use crate::authn::json::to_compact;

/// The required members of each key type (RFC 7638 §3.2, RFC 8037 §2), lexicographic.
fn required_members(kty: &str) -> Option<&'static [&'static str]> {
    match kty {
        "RSA" => Some(&["e", "kty", "n"]),
        "EC" => Some(&["crv", "kty", "x", "y"]),
        "OKP" => Some(&["crv", "kty", "x"]),
        _ => None,
    }
}

/// The thumbprint of a JWK given as a JSON object, or `None` when its `kty` is not RSA, EC
/// or OKP or a required member is missing or not a string. Other members are ignored.
pub fn jwk_thumbprint(jwk: &Map<String, Value>) -> Option<String> {
    let kty = jwk.get("kty")?.as_str()?;
    let mut members = Vec::new();
    for name in required_members(kty)? {
        members.push((*name, jwk.get(*name)?.as_str()?));
    }
    Some(thumbprint_of_members(&members))
}

/// The thumbprint of `members`, which must be the key type's required members (`kty`
/// included) in lexicographic order of their names.
pub fn thumbprint_of_members(members: &[(&str, &str)]) -> String {
    let mut json = String::from("{");
    for (n, (name, value)) in members.iter().enumerate() {
        if n > 0 {
            json.push(',');
        }
        // serde_json escapes only what JSON requires, which is what RFC 7638 §3.3 asks.
        json.push_str(&to_compact(*name));
        json.push(':');
        json.push_str(&to_compact(*value));
    }
    json.push('}');
    b64::encode(&Sha256::digest(json.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::json::parse_object;

    fn thumb(jwk: &str) -> Option<String> {
        jwk_thumbprint(&parse_object(jwk.as_bytes()).unwrap())
    }

    /// RFC 7638 §3.1: the RSA key of RFC 7517 Appendix A.1 and its thumbprint.
    #[test]
    fn rfc7638_example() {
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let jwk =
            format!(r#"{{"kty":"RSA","n":"{n}","e":"AQAB","alg":"RS256","kid":"2011-04-29"}}"#);
        assert_eq!(
            thumb(&jwk).as_deref(),
            Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
        );
    }

    /// EC and OKP: the hash input is the required members in order, whatever the order and
    /// the extra members of the JWK as written.
    #[test]
    fn ec_and_okp_members() {
        let digest = |s: &str| b64::encode(&Sha256::digest(s.as_bytes()));
        for (jwk, canonical) in [
            (
                r#"{"y":"Y","x":"X","kty":"EC","crv":"P-256","kid":"k","use":"sig"}"#,
                r#"{"crv":"P-256","kty":"EC","x":"X","y":"Y"}"#,
            ),
            (
                r#"{"kty":"EC","crv":"P-384","x":"A","y":"B"}"#,
                r#"{"crv":"P-384","kty":"EC","x":"A","y":"B"}"#,
            ),
            (
                r#"{"x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kty":"OKP","crv":"Ed25519"}"#,
                r#"{"crv":"Ed25519","kty":"OKP","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#,
            ),
        ] {
            assert_eq!(thumb(jwk), Some(digest(canonical)), "{jwk}");
        }
        // RFC 8037 Appendix A.3: the Ed25519 key of A.2 has this thumbprint.
        assert_eq!(
            thumb(
                r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#
            )
            .as_deref(),
            Some("kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k")
        );
        for bad in [
            r#"{"kty":"EC","crv":"P-256","x":"X"}"#,
            r#"{"kty":"oct","k":"AAAA"}"#,
            r#"{"kty":"RSA","n":"AQAB","e":1}"#,
            r#"{"crv":"Ed25519","x":"AA"}"#,
        ] {
            assert_eq!(thumb(bad), None, "{bad}");
        }
    }
}
