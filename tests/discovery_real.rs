//! Every real discovery document in tests/data/real-jwks parses; its issuer must be
//! matched exactly, and the jwks_uri it names is what gets fetched.
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

use jwt_edge::authn::discovery::{parse_discovery, DiscoveryError};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/real-jwks");

#[test]
fn real_discovery_documents() {
    let mut seen = 0;
    let mut names: Vec<_> = std::fs::read_dir(DIR)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with("openid-configuration.json"))
        .collect();
    names.sort();
    for path in names {
        let body = std::fs::read(&path).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let issuer = v["issuer"].as_str().unwrap();
        let jwks_uri = v["jwks_uri"].as_str().unwrap();
        let discovery_uri = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let got = parse_discovery(&body, issuer, &discovery_uri);
        if issuer.contains('{') {
            // Entra's multi-tenant template is not a URI; its jwks_uri is still usable.
            assert!(
                got.is_ok() || matches!(got, Err(DiscoveryError::JwksUriInvalid(_))),
                "{name}: {got:?}"
            );
        } else {
            let loc = got.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(loc.uri, jwks_uri, "{name}");
            assert!(loc.path.starts_with('/'), "{name}");
        }
        // Any other issuer is refused, trailing slash included.
        let other = format!("{issuer}x");
        assert!(
            matches!(
                parse_discovery(&body, &other, &discovery_uri),
                Err(DiscoveryError::IssuerMismatch { .. })
            ),
            "{name}"
        );
        println!("{name}: issuer {issuer} -> {jwks_uri}");
        seen += 1;
    }
    assert_eq!(seen, 16);
}
