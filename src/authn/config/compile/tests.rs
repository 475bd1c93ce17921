//! `compile`'s checks, each error with its JSON path.

use serde_json::json;

use super::*;
use crate::authn::alg::Algorithm;
use crate::authn::config::parse;
use crate::authn::matcher::{HeaderRule, PathMatch, QueryRule, StringPattern};
use crate::authn::policy::{
    ClaimFormat, ClaimToHeader, JwksId, JwksSource, Policy, Requirement, RouteOverride,
    TokenLocation, DEFAULT_MAX_TOKEN_BYTES,
};
use crate::time::Millis;

fn remote(uri: &str) -> Value {
    json!({"remote_jwks": {"http_uri": {"uri": uri, "cluster": "idp"}}})
}

fn compile_json(v: Value) -> Result<Policy> {
    parse(&v.to_string())
}

fn one_provider(p: Value) -> Policy {
    compile_json(json!({"providers": {"p": p}})).unwrap()
}

#[test]
fn provider_defaults() {
    let policy = one_provider(remote("https://idp.example.com/jwks"));
    let p = &policy.providers[0];
    assert_eq!(p.name, "p");
    assert!(p.require_expiration, "stricter than jwt_authn on purpose");
    assert_eq!(p.clock_skew, Millis::from_secs(60));
    assert_eq!(p.algorithms, Algorithm::DEFAULT_ALLOWED.to_vec());
    assert!(!p.algorithms.iter().any(|a| a.is_symmetric()));
    assert_eq!(
        p.locations,
        vec![
            TokenLocation::Header {
                name: "authorization".into(),
                value_prefix: "Bearer ".into()
            },
            TokenLocation::Param("access_token".into()),
        ]
    );
    assert_eq!(p.max_token_bytes, DEFAULT_MAX_TOKEN_BYTES);
    assert_eq!(p.max_lifetime, None);
    assert_eq!(p.issuer, None);
    assert!(p.audiences.is_empty());
    assert!(!p.forward);
    assert_eq!(p.jwt_cache_size, 0);
    assert_eq!(p.forward_payload_header, None);
    let Some(JwksSource::Remote(r)) = policy.jwks_sources.get(p.jwks) else {
        panic!("remote source expected");
    };
    assert_eq!(r.timeout_ms, Millis(5_000));
    assert_eq!(r.cache_duration, Millis::from_secs(600));
    assert_eq!(r.authority, "idp.example.com");
    assert_eq!(r.path, "/jwks");
    assert!(policy.rules.is_empty());
    assert!(policy.per_route.is_empty());
    assert!(!policy.bypass_cors_preflight);
    assert!(!policy.strip_failure_response);
    assert!(policy.identity_headers.is_empty());
}

#[test]
fn explicit_values_are_used() {
    let policy = one_provider(json!({
        "issuer": "https://idp",
        "audiences": ["a", "b"],
        "require_expiration": false,
        "max_lifetime": "3600.5s",
        "clock_skew_seconds": 0,
        "algorithms": ["ES256", "RS256"],
        "max_token_bytes": 256,
        "forward": true,
        "from_headers": [{"name": "X-Token"}, {"name": "Authorization", "value_prefix": "JWT "}],
        "from_cookies": ["session"],
        "from_params": ["jwt"],
        "jwt_cache_config": {},
        "remote_jwks": {
            "http_uri": {"uri": "HTTP://idp:8080?tenant=a", "cluster": "idp", "timeout": "1.5s"},
            "cache_duration": "1.9s"
        }
    }));
    let p = &policy.providers[0];
    assert_eq!(p.issuer.as_deref(), Some("https://idp"));
    assert!(!p.require_expiration);
    assert_eq!(p.max_lifetime, Some(Millis::from_secs(3600)));
    assert_eq!(p.clock_skew, Millis::from_secs(0));
    assert_eq!(p.algorithms, vec![Algorithm::Es256, Algorithm::Rs256]);
    assert_eq!(p.max_token_bytes, 256);
    assert_eq!(p.jwt_cache_size, DEFAULT_JWT_CACHE_SIZE);
    assert_eq!(
        p.locations,
        vec![
            TokenLocation::Header {
                name: "x-token".into(),
                value_prefix: String::new()
            },
            TokenLocation::Header {
                name: "authorization".into(),
                value_prefix: "JWT ".into()
            },
            TokenLocation::Param("jwt".into()),
            TokenLocation::Cookie("session".into()),
        ]
    );
    let Some(JwksSource::Remote(r)) = policy.jwks_sources.first() else {
        panic!("remote source expected");
    };
    assert_eq!(r.timeout_ms, Millis(1_500));
    assert_eq!(r.cache_duration, Millis::from_secs(1));
    assert_eq!(r.authority, "idp:8080");
    assert_eq!(r.path, "/?tenant=a");
}

#[test]
fn remote_sources_are_shared_by_uri_and_cluster() {
    let same = "https://idp.example.com/jwks";
    let policy = compile_json(json!({"providers": {
        "a": remote(same),
        "b": remote(same),
        "c": remote("https://idp.example.com/other"),
        "d": {"remote_jwks": {"http_uri": {"uri": same, "cluster": "elsewhere"}}},
    }}))
    .unwrap();
    let ids: Vec<JwksId> = policy.providers.iter().map(|p| p.jwks).collect();
    assert_eq!(ids, vec![0, 0, 1, 2]);
    assert_eq!(policy.jwks_sources.len(), 3);
}

#[test]
fn uris_split_into_authority_and_path() {
    let ok = [
        ("https://h", "h", "/"),
        ("https://h/", "h", "/"),
        ("https://h:443/a/b?x=1&y", "h:443", "/a/b?x=1&y"),
        ("http://[::1]:8080/k", "[::1]:8080", "/k"),
        ("HTTPS://Idp.Example.com/k", "Idp.Example.com", "/k"),
    ];
    for (uri, authority, path) in ok {
        assert_eq!(
            split_uri(uri),
            Ok((authority.to_string(), path.to_string())),
            "{uri}"
        );
    }
    for bad in [
        "",
        "idp/jwks",
        "ftp://h/",
        "https://",
        "https:///jwks",
        "https://user@h/",
        "https://h:0/",
        "https://h:99999/",
        "https://h:/",
        "https://h/a#frag",
        "https://h/a b",
        "https://[::1/",
        "https://h^/",
    ] {
        assert!(split_uri(bad).is_err(), "{bad}");
    }
}

#[test]
fn requirements_compile_to_trees() {
    let policy = compile_json(json!({
        "providers": {"a": remote("https://a/k"), "b": remote("https://b/k")},
        "requirement_map": {
            "tree": {"requires_any": {"requirements": [
                {"provider_and_audiences": {"provider_name": "b", "audiences": ["x"]}},
                {"requires_all": {"requirements": [{"provider_name": "a"}, {"allow_missing": {}}]}},
                {"allow_missing_or_failed": {}}
            ]}}
        },
        "rules": [
            {"match": {"path": "/open"}},
            {"match": {"prefix": "/"}, "requirement_name": "tree"}
        ],
        "per_route": {"r1": {"requirement_name": "tree"}, "r2": {"disabled": true}}
    }))
    .unwrap();
    let tree = Requirement::Any(vec![
        Requirement::Provider {
            provider: 1,
            audiences: Some(vec!["x".into()]),
            scopes: vec![],
            claims: vec![],
        },
        Requirement::All(vec![
            Requirement::Provider {
                provider: 0,
                audiences: None,
                scopes: vec![],
                claims: vec![],
            },
            Requirement::AllowMissing,
        ]),
        Requirement::AllowMissingOrFailed,
    ]);
    assert_eq!(policy.rules.len(), 2);
    assert_eq!(policy.rules.first().and_then(|r| r.requires.clone()), None);
    assert_eq!(
        policy.rules.get(1).and_then(|r| r.requires.clone()),
        Some(tree.clone())
    );
    assert_eq!(
        policy.per_route.get("r1"),
        Some(&RouteOverride::Require(tree))
    );
    assert_eq!(policy.per_route.get("r2"), Some(&RouteOverride::Disabled));
}

#[test]
fn route_matches_compile() {
    let policy = compile_json(json!({
        "providers": {"a": remote("https://a/k")},
        "rules": [{"match": {
            "safe_regex": {"google_re2": {}, "regex": "/v[0-9]+/.*"},
            "case_sensitive": false,
            "methods": ["GET", "POST", "GET"],
            "headers": [
                {"name": ":Method", "exact_match": "GET"},
                {"name": "X-Present"},
                {"name": "x-absent", "present_match": false, "invert_match": true},
                {"name": "x-s", "string_match": {"suffix": ".example", "ignore_case": true}}
            ],
            "query_parameters": [{"name": "q"}, {"name": "r", "string_match": {"exact": ""}}]
        }}]
    }))
    .unwrap();
    let Some(rule) = policy.rules.first() else {
        panic!("one rule expected");
    };
    let m = &rule.matcher;
    assert!(matches!(&m.path, PathMatch::Regex(StringPattern::Regex(r)) if r.is_match("/v2/x")));
    assert!(!m.case_sensitive);
    assert_eq!(m.methods, vec!["GET".to_string(), "POST".to_string()]);
    let names: Vec<&str> = m.headers.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, [":method", "x-present", "x-absent", "x-s"]);
    assert_eq!(
        m.headers.get(1).map(|h| &h.rule),
        Some(&HeaderRule::Present(true))
    );
    assert_eq!(
        m.headers.get(2).map(|h| (&h.rule, h.invert)),
        Some((&HeaderRule::Present(false), true))
    );
    assert_eq!(
        m.query_parameters.first().map(|q| &q.rule),
        Some(&QueryRule::Present)
    );
}

#[test]
fn identity_headers_are_lower_case_sorted_and_deduplicated() {
    let mut a = remote("https://a/k");
    a["forward_payload_header"] = json!("X-Payload");
    a["claim_to_headers"] = json!([{"header_name": "X-Sub", "claim_name": "sub"}]);
    let mut b = remote("https://b/k");
    b["claim_to_headers"] = json!([
        {"header_name": "x-sub", "claim_name": "sub"},
        {"header_name": "x-org", "claim_name": "org.id", "value_format": "joined"}
    ]);
    let policy = compile_json(json!({"providers": {"a": a, "b": b}})).unwrap();
    assert_eq!(policy.identity_headers, ["x-org", "x-payload", "x-sub"]);
    let b = policy.providers.get(1).map(|p| p.claim_to_headers.clone());
    assert_eq!(
        b.and_then(|c| c.get(1).cloned()),
        Some(ClaimToHeader {
            header_name: "x-org".into(),
            claim_path: vec!["org".into(), "id".into()],
            format: ClaimFormat::Joined,
        })
    );
    let first = policy
        .providers
        .first()
        .and_then(|p| p.claim_to_headers.first().cloned());
    assert_eq!(first.map(|c| c.format), Some(ClaimFormat::JwtAuthn));
    let mut c = remote("https://c/k");
    c["claim_to_headers"] =
        json!([{"header_name": "x-r", "claim_name": "roles", "value_format": "csv"}]);
    let e = compile_json(json!({"providers": {"c": c}})).unwrap_err();
    assert_eq!(e.path, "providers.c.claim_to_headers[0].value_format");
}

#[test]
fn a_header_written_twice_by_one_provider_is_refused() {
    let mut a = remote("https://a/k");
    a["forward_payload_header"] = json!("x-a");
    a["claim_to_headers"] = json!([{"header_name": "X-A", "claim_name": "sub"}]);
    let e = compile_json(json!({"providers": {"a": a}})).unwrap_err();
    assert_eq!(e.path, "providers.a.claim_to_headers[0].header_name");
}

#[test]
fn hmac_is_allowed_with_a_local_key_set() {
    let jwks = json!({"keys": [{"kty": "oct", "kid": "s", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"}]});
    let policy = one_provider(json!({
        "algorithms": ["HS256"],
        "local_jwks": {"inline_string": jwks.to_string()}
    }));
    assert_eq!(policy.providers[0].algorithms, vec![Algorithm::Hs256]);
    assert!(matches!(
        policy.jwks_sources.first(),
        Some(JwksSource::Local(_))
    ));
}

#[test]
fn proto_defaults_of_unsupported_fields_are_accepted() {
    let mut p = remote("https://a/k");
    p["clear_route_cache"] = json!(false);
    p["payload_in_metadata"] = json!("");
    p["failed_status_in_metadata"] = json!(null);
    let policy = compile_json(json!({
        "providers": {"p": p},
        "stat_prefix": "x",
        "filter_state_rules": null
    }));
    assert!(policy.is_ok(), "{policy:?}");
    let mut p = remote("https://a/k");
    p["clear_route_cache"] = json!(true);
    let e = compile_json(json!({"providers": {"p": p}})).unwrap_err();
    assert_eq!(e.path, "providers.p.clear_route_cache");
    assert!(e.message.contains("not supported by jwt-edge"), "{e}");
}

#[test]
fn errors_carry_paths_into_nested_matchers() {
    let cases = [
        (
            json!({"prefix": "/", "headers": [{"name": "x", "string_match": {"prefix": ""}}]}),
            "rules[0].match.headers[0].string_match.prefix",
        ),
        (
            json!({"prefix": "/", "query_parameters": [{"name": "q", "string_match": {"safe_regex": {"regex": "("}}}]}),
            "rules[0].match.query_parameters[0].string_match.safe_regex.regex",
        ),
        (
            json!({"prefix": "/", "headers": [{"name": "x", "safe_regex_match": {}}]}),
            "rules[0].match.headers[0].safe_regex_match.regex",
        ),
        (json!({"path": "no-slash"}), "rules[0].match.path"),
        (json!({"prefix": "/", "grpc": {}}), "rules[0].match.grpc"),
    ];
    for (m, path) in cases {
        let e = compile_json(json!({
            "providers": {"a": remote("https://a/k")},
            "rules": [{"match": m}]
        }))
        .unwrap_err();
        assert_eq!(e.path, path, "{e}");
    }
}
