//! OpenID Connect discovery (OpenID Connect Discovery 1.0 §4): from a provider's
//! `/.well-known/openid-configuration` to the `jwks_uri` to fetch.
//!
//! The discovered `issuer` must equal the configured one exactly (§4.3), and a document
//! fetched over https may not send the key fetch to plain http.

use serde_json::Value;

use crate::authn::config::split_uri;

/// Largest discovery document accepted.
pub const MAX_DISCOVERY_BYTES: usize = 64 * 1024;

/// Where the key set is, as learnt from a discovery document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksLocation {
    pub uri: String,
    pub authority: String,
    pub path: String,
}

/// Why a discovery document was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoveryError {
    TooLarge(usize),
    NotJson,
    IssuerMissing,
    IssuerMismatch { found: String },
    JwksUriMissing,
    JwksUriInvalid(String),
    Downgrade,
}

impl std::fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DiscoveryError::TooLarge(n) => write!(
                f,
                "discovery document of {n} bytes is over {MAX_DISCOVERY_BYTES}"
            ),
            DiscoveryError::NotJson => f.write_str("discovery document is not a JSON object"),
            DiscoveryError::IssuerMissing => f.write_str("discovery document has no issuer"),
            DiscoveryError::IssuerMismatch { found } => write!(
                f,
                "discovered issuer {:?} is not the configured issuer",
                found.chars().take(128).collect::<String>()
            ),
            DiscoveryError::JwksUriMissing => f.write_str("discovery document has no jwks_uri"),
            DiscoveryError::JwksUriInvalid(why) => {
                write!(f, "discovered jwks_uri is unusable: {why}")
            }
            DiscoveryError::Downgrade => f.write_str(
                "discovered jwks_uri is http:// but the discovery document came over https://",
            ),
        }
    }
}

/// Reads a discovery document fetched from `discovery_uri`.
pub fn parse_discovery(
    body: &[u8],
    expected_issuer: &str,
    discovery_uri: &str,
) -> Result<JwksLocation, DiscoveryError> {
    if body.len() > MAX_DISCOVERY_BYTES {
        return Err(DiscoveryError::TooLarge(body.len()));
    }
    // Read as a Value (serde_json's any-value path), not straight into a Map: a typed read
    // brings serde's "invalid type" formatting, and with it core's float formatter (~18 KB).
    let doc = match serde_json::from_slice(body) {
        Ok(Value::Object(doc)) => doc,
        _ => return Err(DiscoveryError::NotJson),
    };
    let issuer = match doc.get("issuer") {
        Some(Value::String(s)) => s,
        _ => return Err(DiscoveryError::IssuerMissing),
    };
    if issuer != expected_issuer {
        return Err(DiscoveryError::IssuerMismatch {
            found: issuer.clone(),
        });
    }
    let uri = match doc.get("jwks_uri") {
        Some(Value::String(s)) => s,
        _ => return Err(DiscoveryError::JwksUriMissing),
    };
    let secure = |u: &str| {
        u.get(..8)
            .is_some_and(|h| h.eq_ignore_ascii_case("https://"))
    };
    if secure(discovery_uri) && !secure(uri) {
        return Err(DiscoveryError::Downgrade);
    }
    let (authority, path) = split_uri(uri).map_err(DiscoveryError::JwksUriInvalid)?;
    Ok(JwksLocation {
        uri: uri.clone(),
        authority,
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let doc =
            br#"{"issuer":"https://idp.test","jwks_uri":"https://keys.idp.test/v1/jwks?x=1"}"#;
        assert_eq!(
            parse_discovery(
                doc,
                "https://idp.test",
                "https://idp.test/.well-known/openid-configuration"
            ),
            Ok(JwksLocation {
                uri: "https://keys.idp.test/v1/jwks?x=1".into(),
                authority: "keys.idp.test".into(),
                path: "/v1/jwks?x=1".into()
            })
        );
        let d = "https://idp.test/.well-known/openid-configuration";
        let err = |b: &[u8], iss: &str| parse_discovery(b, iss, d).err();
        assert_eq!(
            err(doc, "https://idp.test/"),
            Some(DiscoveryError::IssuerMismatch {
                found: "https://idp.test".into()
            })
        );
        assert_eq!(err(b"[]", "x"), Some(DiscoveryError::NotJson));
        assert_eq!(err(b"{}", "x"), Some(DiscoveryError::IssuerMissing));
        assert_eq!(
            err(br#"{"issuer":"x"}"#, "x"),
            Some(DiscoveryError::JwksUriMissing)
        );
        assert_eq!(
            err(br#"{"issuer":"x","jwks_uri":"http://a/k"}"#, "x"),
            Some(DiscoveryError::Downgrade)
        );
        assert!(matches!(
            err(br#"{"issuer":"x","jwks_uri":"https://"}"#, "x"),
            Some(DiscoveryError::JwksUriInvalid(_))
        ));
        assert_eq!(
            err(&vec![b' '; MAX_DISCOVERY_BYTES + 1], "x"),
            Some(DiscoveryError::TooLarge(MAX_DISCOVERY_BYTES + 1))
        );
        assert!(parse_discovery(
            br#"{"issuer":"x","jwks_uri":"http://a/k"}"#,
            "x",
            "http://a/.well-known/openid-configuration"
        )
        .is_ok());
    }
}
