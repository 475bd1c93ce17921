//! The shipped filter configurations: every example under `filter-config/examples/` loads and
//! conforms to `filter-config/schema.json`; every case under `filter-config/invalid/` is
//! refused with exactly its expected JSON path and a message containing the expected text.
//!
//! The RSA key in `examples/minimal-local.json` is a public key made once with Python
//! `cryptography` (`rsa.generate_private_key(public_exponent=65537, key_size=2048)`, n and e
//! written as unpadded base64url); the private half was discarded.
//!
//! Schema conformance uses a small validator below (the keywords schema.json uses) instead of
//! the `jsonschema` crate, which would add ~75 crates to the dev build.

// Helpers outside `#[test]` functions are test code too; clippy.toml's allow-*-in-tests
// covers only the test functions themselves.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fs;
use std::path::{Path, PathBuf};

use jwt_edge::authn::config::{self, ConfigError};
use jwt_edge::authn::policy::{JwksSource, RouteOverride};
use proptest::prelude::*;
use serde_json::Value;

fn dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("filter-config")
        .join(name)
}

fn json_files(name: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = fs::read_dir(dir(name))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let text = fs::read_to_string(&p).unwrap();
            (p.file_name().unwrap().to_string_lossy().into_owned(), text)
        })
        .collect();
    out.sort();
    out
}

fn example(name: &str) -> String {
    fs::read_to_string(dir("examples").join(name)).unwrap()
}

#[test]
fn every_example_parses() {
    let examples = json_files("examples");
    assert!(examples.len() >= 7, "{examples:?}");
    for (name, text) in examples {
        let policy = config::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!policy.providers.is_empty(), "{name}");
    }
}

#[test]
fn examples_compile_to_what_they_say() {
    let multi = config::parse(&example("multi-provider.json")).unwrap();
    assert_eq!(multi.providers.len(), 3);
    assert_eq!(
        multi.jwks_sources.len(),
        2,
        "employees and partners share one fetch"
    );
    let jwks_of = |name: &str| {
        multi
            .providers
            .iter()
            .find(|p| p.name == name)
            .unwrap()
            .jwks
    };
    assert_eq!(jwks_of("employees"), jwks_of("partners"));
    assert_ne!(jwks_of("employees"), jwks_of("google"));

    let per_route = config::parse(&example("per-route.json")).unwrap();
    assert_eq!(
        per_route.per_route.get("public_docs"),
        Some(&RouteOverride::Disabled)
    );
    assert!(matches!(
        per_route.per_route.get("orders"),
        Some(RouteOverride::Require(_))
    ));

    let claims = config::parse(&example("claim-headers.json")).unwrap();
    assert_eq!(
        claims.identity_headers,
        ["x-email", "x-jwt-payload", "x-tenant", "x-user-id"]
    );
    assert!(claims.strip_failure_response);

    let migrated = config::parse(&example("jwt-authn-migrated.json")).unwrap();
    let keycloak = migrated
        .providers
        .iter()
        .find(|p| p.name == "keycloak")
        .unwrap();
    assert_eq!(keycloak.jwt_cache_size, 1000);
    assert!(keycloak.forward);
    assert_eq!(migrated.rules.len(), 4);
    assert!(migrated.rules[0].requires.is_none());
    match &migrated.jwks_sources[keycloak.jwks] {
        JwksSource::Remote(r) => {
            assert_eq!(r.authority, "sso.example.com");
            assert_eq!(r.path, "/realms/prod/protocol/openid-connect/certs");
            assert_eq!(r.cluster, "keycloak");
        }
        JwksSource::Local(_) => panic!("keycloak is remote"),
    }
}

#[test]
fn every_invalid_case_fails_where_it_says() {
    let cases = json_files("invalid");
    assert!(cases.len() >= 12, "{}", cases.len());
    let mut failures = Vec::new();
    for (name, text) in cases {
        let case: Value = serde_json::from_str(&text).unwrap();
        let config_text = match &case["config"] {
            // A string is used verbatim (for documents JSON values cannot express, such as a
            // repeated key or a syntax error).
            Value::String(s) => s.clone(),
            other => serde_json::to_string_pretty(other).unwrap(),
        };
        let want_path = case["expect_path"].as_str().unwrap();
        let want_text = case["expect_message_contains"].as_str().unwrap();
        match config::parse(&config_text) {
            Ok(_) => failures.push(format!("{name}: parsed, expected {want_path}")),
            Err(ConfigError { path, message }) => {
                if path != want_path || !message.contains(want_text) {
                    failures.push(format!(
                        "{name}: got `{path}: {message}`, expected `{want_path}: …{want_text}…`"
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn error_display_is_path_then_message() {
    let e = config::parse(r#"{"providers": {"a": {"issure": "x"}}}"#).unwrap_err();
    assert_eq!(e.path, "providers.a.issure");
    assert!(e
        .to_string()
        .starts_with("providers.a.issure: unknown field `issure`"));
}

// ---------------------------------------------------------------- schema

fn schema() -> Value {
    serde_json::from_str(&fs::read_to_string(dir("schema.json")).unwrap()).unwrap()
}

/// Every property the schema declares has a description.
fn check_descriptions(node: &Value, at: &str, missing: &mut Vec<String>) {
    match node {
        Value::Object(map) => {
            if let Some(Value::Object(props)) = map.get("properties") {
                for (name, prop) in props {
                    if prop.get("description").is_none() {
                        missing.push(format!("{at}.{name}"));
                    }
                }
            }
            for (k, v) in map {
                check_descriptions(v, &format!("{at}.{k}"), missing);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                check_descriptions(v, &format!("{at}[{i}]"), missing);
            }
        }
        _ => {}
    }
}

#[test]
fn schema_documents_every_field() {
    let s = schema();
    assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
    let mut missing = Vec::new();
    check_descriptions(&s, "", &mut missing);
    assert!(missing.is_empty(), "no description: {missing:?}");
    // Extensions say so.
    for ext in [
        &s["properties"]["per_route"],
        &s["$defs"]["JwtProvider"]["properties"]["algorithms"],
        &s["$defs"]["JwtProvider"]["properties"]["max_token_bytes"],
        &s["$defs"]["JwtProvider"]["properties"]["revoked"],
        &s["$defs"]["JwtProvider"]["properties"]["revocation_list"],
        &s["$defs"]["RevocationList"],
        &s["$defs"]["RouteMatch"]["properties"]["methods"],
    ] {
        assert!(
            ext["description"]
                .as_str()
                .unwrap()
                .contains("jwt-edge extension"),
            "{ext}"
        );
    }
    let p = &s["$defs"]["JwtProvider"]["properties"];
    assert_eq!(p["require_expiration"]["default"], true);
    assert_eq!(p["clock_skew_seconds"]["default"], 60);
    assert_eq!(p["max_token_bytes"]["default"], 8192);
}

/// A validator for the JSON Schema keywords schema.json uses. Returns the first error.
struct Validator<'a> {
    root: &'a Value,
}

impl Validator<'_> {
    fn validate(&self, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
        let Value::Object(s) = schema else {
            return Ok(());
        };
        let fail = |what: String| Err(format!("{at}: {what}"));
        if let Some(Value::String(r)) = s.get("$ref") {
            let name = r.strip_prefix("#/$defs/").unwrap();
            self.validate(&self.root["$defs"][name], v, at)?;
        }
        if let Some(t) = s.get("type") {
            let ok = match t.as_str().unwrap() {
                "object" => v.is_object(),
                "array" => v.is_array(),
                "string" => v.is_string(),
                "boolean" => v.is_boolean(),
                "integer" => v.is_u64() || v.is_i64(),
                "null" => v.is_null(),
                other => panic!("type {other} not handled"),
            };
            if !ok {
                return fail(format!("expected {t}, got {v}"));
            }
        }
        if let Some(c) = s.get("const") {
            if c != v {
                return fail(format!("expected {c}"));
            }
        }
        if let Some(Value::Array(options)) = s.get("enum") {
            if !options.contains(v) {
                return fail(format!("{v} is not one of {options:?}"));
            }
        }
        if let Some(Value::Array(options)) = s.get("oneOf") {
            let n = options
                .iter()
                .filter(|o| self.validate(o, v, at).is_ok())
                .count();
            if n != 1 {
                return fail(format!("{n} of oneOf match"));
            }
        }
        if let Value::String(text) = v {
            let len = text.chars().count() as u64;
            if s.get("minLength")
                .and_then(Value::as_u64)
                .is_some_and(|m| len < m)
            {
                return fail("too short".into());
            }
            if s.get("maxLength")
                .and_then(Value::as_u64)
                .is_some_and(|m| len > m)
            {
                return fail("too long".into());
            }
            if let Some(Value::String(p)) = s.get("pattern") {
                let re = regex_lite::Regex::new(p).unwrap();
                if !re.is_match(text) {
                    return fail(format!("{text:?} does not match {p}"));
                }
            }
        }
        if let Some(n) = v.as_f64() {
            if s.get("minimum")
                .and_then(Value::as_f64)
                .is_some_and(|m| n < m)
            {
                return fail("below minimum".into());
            }
            if s.get("maximum")
                .and_then(Value::as_f64)
                .is_some_and(|m| n > m)
            {
                return fail("above maximum".into());
            }
        }
        if let Value::Array(items) = v {
            let len = items.len() as u64;
            if s.get("minItems")
                .and_then(Value::as_u64)
                .is_some_and(|m| len < m)
            {
                return fail("too few items".into());
            }
            if s.get("maxItems")
                .and_then(Value::as_u64)
                .is_some_and(|m| len > m)
            {
                return fail("too many items".into());
            }
            if s.get("uniqueItems") == Some(&Value::Bool(true)) {
                for (i, a) in items.iter().enumerate() {
                    if items.iter().skip(i + 1).any(|b| a == b) {
                        return fail(format!("{a} repeated"));
                    }
                }
            }
            if let Some(item_schema) = s.get("items") {
                for (i, item) in items.iter().enumerate() {
                    self.validate(item_schema, item, &format!("{at}[{i}]"))?;
                }
            }
        }
        if let Value::Object(obj) = v {
            let len = obj.len() as u64;
            if s.get("minProperties")
                .and_then(Value::as_u64)
                .is_some_and(|m| len < m)
            {
                return fail("too few properties".into());
            }
            if s.get("maxProperties")
                .and_then(Value::as_u64)
                .is_some_and(|m| len > m)
            {
                return fail("too many properties".into());
            }
            if let Some(Value::Array(req)) = s.get("required") {
                for r in req {
                    if !obj.contains_key(r.as_str().unwrap()) {
                        return fail(format!("missing {r}"));
                    }
                }
            }
            let props = s.get("properties").and_then(Value::as_object);
            for (k, val) in obj {
                let path = format!("{at}.{k}");
                match (props.and_then(|p| p.get(k)), s.get("additionalProperties")) {
                    (Some(ps), _) => self.validate(ps, val, &path)?,
                    (None, Some(Value::Bool(false))) => {
                        return fail(format!("unknown property {k}"))
                    }
                    (None, Some(extra)) => self.validate(extra, val, &path)?,
                    (None, None) => {}
                }
            }
        }
        Ok(())
    }
}

#[test]
fn every_example_conforms_to_the_schema() {
    let s = schema();
    let validator = Validator { root: &s };
    for (name, text) in json_files("examples") {
        let v: Value = serde_json::from_str(&text).unwrap();
        if let Err(e) = validator.validate(&s, &v, "") {
            panic!("{name}: {e}");
        }
    }
}

#[test]
fn the_schema_validator_rejects_shape_errors() {
    let s = schema();
    let validator = Validator { root: &s };
    for (name, text) in json_files("invalid") {
        let case: Value = serde_json::from_str(&text).unwrap();
        let shape_error = [
            "unknown-field",
            "unknown-top-level-field",
            "wrong-type",
            "negative-number",
            "bad-duration",
            "both-jwks",
            "no-jwks",
            "no-providers",
            "missing-providers",
            "unknown-algorithm",
            "alg-none",
            "requires-any-one-child",
            "requirement-two-fields",
            "requirement-empty",
            "local-jwks-filename",
            "filter-state-rules",
            "payload-in-metadata",
            "bad-uri-scheme",
            "missing-cluster",
            "max-token-bytes-too-large",
            "bad-type-url",
            "route-match-two-paths",
            "rule-missing-match",
            "method-lower-case",
            "bad-header-name",
            "identity-header-pseudo",
            "per-route-disabled-false",
        ]
        .iter()
        .any(|n| name == format!("{n}.json"));
        if shape_error {
            assert!(
                validator.validate(&s, &case["config"], "").is_err(),
                "schema accepts {name}"
            );
        }
    }
}

// ---------------------------------------------------------------- robustness

proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let _ = config::parse(&text);
    }

    #[test]
    fn damaged_examples_never_panic(
        which in 0usize..7,
        at in 0usize..4000,
        cut in 0usize..40,
        insert in "[\\[\\]{}\":,0-9a-z_. -]{0,12}",
    ) {
        let examples = json_files("examples");
        let text = &examples[which % examples.len()].1;
        let bytes = text.as_bytes();
        let start = at.min(bytes.len());
        let end = (start + cut).min(bytes.len());
        let mut damaged = bytes[..start].to_vec();
        damaged.extend_from_slice(insert.as_bytes());
        damaged.extend_from_slice(&bytes[end..]);
        if let Ok(s) = String::from_utf8(damaged) {
            let _ = config::parse(&s);
        }
    }
}
