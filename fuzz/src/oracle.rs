//! What every fuzz target checks, shared by the libFuzzer targets (`fuzz/fuzz_targets/`) and by
//! the plain `cargo test` replay of corpora and regressions (`tests/fuzz_regressions.rs`, which
//! includes this file by path, so it may use only `jwt_edge`, `serde` and `serde_json`).
//!
//! Beyond "never panics", each check has a forgery oracle: the only tokens that may verify are
//! the fixture tokens signed with the real test keys (`tests/fixtures/tokens.json`), compared as
//! exact strings. Base64url is canonical and the signatures are deterministic or unique per
//! key, so any other string that verifies is a forgery or a malleability bug.

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};

use jwt_edge::authn::alg::{Algorithm, KeyFamily};
use jwt_edge::authn::authenticate::{
    decide, decide_cached, requirement_for, AllowReason, Decision, KeyLookup, KeyState,
};
use jwt_edge::authn::config;
use jwt_edge::authn::extract::extract;
use jwt_edge::authn::jwk::{parse_jwks, JwksOptions, KeySet};
use jwt_edge::authn::jws::UntrustedToken;
use jwt_edge::authn::policy::{
    JwksId, JwksSource, Policy, Requirement, RouteOverride, DEFAULT_MAX_TOKEN_BYTES,
};
use jwt_edge::authn::request::RequestView;
use jwt_edge::authn::token_cache::TokenCache;
use jwt_edge::time::UnixMillis;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The fixed "now" of every decision: the fixture tokens are valid from 2023 to 2100.
pub const NOW: UnixMillis = UnixMillis::from_secs(1_800_000_000);

const TOKENS_JSON: &str = include_str!("../../tests/fixtures/tokens.json");
const JWKS_JSON: &[u8] = include_bytes!("../../tests/fixtures/jwks.json");

/// Fixture tokens not signed by a key of `jwks.json` (or the HS256 secret): never verify.
const FORGED: [&str; 5] = [
    "unknown_kid",
    "forged_kid",
    "forged_no_kid",
    "hs256_confusion",
    "embedded_jwk",
];
/// Genuinely signed, but no provider of the decision policy may accept them.
const CLAIMS_REFUSED: [&str; 3] = ["expired", "not_yet_valid", "wrong_iss"];
/// Genuinely signed for another audience (`["other", "more"]`): no provider or requirement of
/// the decision policy accepts it, so it must never yield an identity or identity headers.
const WRONG_AUDIENCE: &str = "wrong_aud";

/// Open findings the fuzz targets may step over, from `JWT_EDGE_FUZZ_KNOWN` (comma-separated),
/// so that a long run can look for other bugs while a known one awaits its fix. `cargo test`
/// never sets it: the regression files fail until the fix lands.
/// - `audience`: identities from a token whose audience fails (fuzz/README.md, finding 1).
fn known_open(finding: &str) -> bool {
    static KNOWN: OnceLock<Vec<String>> = OnceLock::new();
    KNOWN
        .get_or_init(|| {
            std::env::var("JWT_EDGE_FUZZ_KNOWN")
                .unwrap_or_default()
                .split(',')
                .map(|s| s.trim().to_owned())
                .collect()
        })
        .iter()
        .any(|k| k == finding)
}

/// Every fixture token, `(name, token)`, in file order of names.
pub fn fixture_tokens() -> &'static [(String, String)] {
    static TOKENS: OnceLock<Vec<(String, String)>> = OnceLock::new();
    TOKENS.get_or_init(|| {
        let doc: Value = serde_json::from_str(TOKENS_JSON).expect("tokens.json is JSON");
        doc.get("tokens")
            .and_then(Value::as_object)
            .expect("tokens.json has a tokens object")
            .iter()
            .filter_map(|(name, t)| Some((name.clone(), t.as_str()?.to_owned())))
            .collect()
    })
}

/// The fixture token called `name`.
pub fn fixture_token(name: &str) -> &'static str {
    fixture_tokens()
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, t)| t.as_str())
        .expect("fixture token exists")
}

/// Tokens with a real signature: the only strings that may ever verify.
fn genuine() -> &'static BTreeSet<&'static str> {
    static SET: OnceLock<BTreeSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| {
        fixture_tokens()
            .iter()
            .filter(|(n, _)| n != "alg_none" && !FORGED.contains(&n.as_str()))
            .map(|(_, t)| t.as_str())
            .collect()
    })
}

fn is_claims_refused(token: &str) -> bool {
    CLAIMS_REFUSED
        .iter()
        .any(|name| fixture_token(name) == token)
}

fn hs256_jwks() -> String {
    let doc: Value = serde_json::from_str(TOKENS_JSON).expect("tokens.json is JSON");
    let secret = doc
        .get("hs256_secret_b64url")
        .and_then(Value::as_str)
        .expect("tokens.json has the HS256 secret");
    json!({"keys": [{"kty": "oct", "kid": "hs-1", "k": secret, "alg": "HS256"}]}).to_string()
}

/// The fixture public keys (`jwks.json`).
pub fn fixture_keys() -> &'static Arc<KeySet> {
    static KEYS: OnceLock<Arc<KeySet>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let load = parse_jwks(JWKS_JSON, JwksOptions::default()).expect("jwks.json loads");
        Arc::new(load.keys)
    })
}

/// The fixture public keys plus the HS256 secret, so that every algorithm family is reached.
fn all_fixture_keys() -> &'static KeySet {
    static KEYS: OnceLock<KeySet> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut doc: Value = serde_json::from_slice(JWKS_JSON).expect("jwks.json is JSON");
        let oct: Value = serde_json::from_str(&hs256_jwks()).expect("oct JWKS is JSON");
        if let (Some(keys), Some(more)) = (
            doc.get_mut("keys").and_then(Value::as_array_mut),
            oct.get("keys").and_then(Value::as_array),
        ) {
            keys.extend(more.iter().cloned());
        }
        let load = parse_jwks(
            doc.to_string().as_bytes(),
            JwksOptions {
                allow_symmetric: true,
            },
        )
        .expect("fixture keys with the HS256 secret load");
        assert_eq!(load.keys.len(), 5, "every fixture key loads");
        load.keys
    })
}

fn as_text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}

// ---------------------------------------------------------------------------------------------
// token_parse

/// Parses `data` as a compact JWS and, if it parses, verifies it against the fixture keys
/// with every algorithm allowed. Only a genuine fixture token may verify.
pub fn check_token(data: &[u8]) {
    let text = as_text(data);
    let Ok(token) = UntrustedToken::parse(&text, DEFAULT_MAX_TOKEN_BYTES) else {
        return;
    };
    let header = token.header().clone();
    let claims = token.unverified_claims().clone();
    let _ = token.allowed_alg(&Algorithm::ALL);
    if let Ok(verified) = token.verify(all_fixture_keys(), &Algorithm::ALL) {
        assert!(
            genuine().contains(text.as_ref()),
            "FORGERY: a token that is not a genuine fixture verified: {text:?}"
        );
        assert_eq!(verified.header(), &header);
        assert_eq!(verified.claims(), &claims);
    }
}

// ---------------------------------------------------------------------------------------------
// jwks_parse

/// A fixed message: with attacker-chosen keys, a signature over an unknown message is what a
/// forger would need.
const SIGNING_INPUT: &[u8] = b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJmdXp6In0";

/// `len` bytes taken cyclically from `data` (or zeros when `data` is empty).
fn stretch(data: &[u8], len: usize) -> Vec<u8> {
    if data.is_empty() {
        return vec![0; len];
    }
    data.iter().copied().cycle().take(len).collect()
}

fn signature_lengths(family: KeyFamily) -> &'static [usize] {
    match family {
        KeyFamily::Rsa => &[256, 384, 512],
        KeyFamily::EcP256 | KeyFamily::Ed25519 => &[64],
        KeyFamily::EcP384 => &[96],
        KeyFamily::Oct => &[32, 48, 64],
    }
}

/// Loads `data` as a JWKS with and without symmetric keys; every kept key is selected and
/// asked to verify signatures made of the input's own bytes, which must never succeed.
pub fn check_jwks(data: &[u8]) {
    for allow_symmetric in [false, true] {
        let Ok(load) = parse_jwks(data, JwksOptions { allow_symmetric }) else {
            continue;
        };
        let keys = load.keys;
        assert!(!keys.is_empty(), "a loaded key set has a key");
        for key in keys.iter() {
            assert!(
                allow_symmetric || key.family() != KeyFamily::Oct,
                "an oct key loaded with allow_symmetric = false"
            );
            for alg in Algorithm::ALL {
                let selected = keys.select(key.kid.as_deref(), alg);
                let _ = keys.select(None, alg);
                if let Ok(selected) = &selected {
                    assert!(!selected.is_empty(), "select returned Ok with no key");
                }
                let mut signatures: Vec<Vec<u8>> = signature_lengths(key.family())
                    .iter()
                    .map(|len| stretch(data, *len))
                    .collect();
                signatures.push(data.get(..data.len().min(600)).unwrap_or(data).to_vec());
                signatures.push(Vec::new());
                for sig in &signatures {
                    let outcome = key.verify(alg, SIGNING_INPUT, sig);
                    assert!(
                        outcome.is_err(),
                        "FORGERY: {alg} verified a signature made of input bytes with key {:?}",
                        key.kid
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// config_parse

/// Parses `data` as a filter configuration. A policy that compiles must be internally
/// consistent and must decide a few plain requests without panicking.
pub fn check_config(data: &[u8]) {
    let text = as_text(data);
    let Ok(policy) = config::parse(&text) else {
        return;
    };
    check_policy_invariants(&policy);
    let requests: [(&str, &str, Option<&str>); 4] = [
        ("GET", "/", None),
        ("POST", "/api/v1/orders/17?access_token=x", Some("route")),
        ("OPTIONS", "/healthz", None),
        ("GET", "/%zz?q=%C3%A9", Some("public_docs")),
    ];
    for (method, path, route) in requests {
        let headers = vec![
            (":method".to_string(), method.to_string()),
            (":path".to_string(), path.to_string()),
            (":authority".to_string(), "api.test".to_string()),
            (
                "authorization".to_string(),
                format!("Bearer {}", fixture_token("rs256")),
            ),
            ("origin".to_string(), "https://app.test".to_string()),
            ("access-control-request-method".to_string(), "GET".into()),
        ];
        for remote in [RemoteKeys::Ready, RemoteKeys::Pending] {
            let keys = Keys {
                policy: &policy,
                remote,
                may_refetch: false,
            };
            let _ = decide(&policy, &RequestView::new(&headers, route), &keys, NOW);
        }
    }
}

fn check_policy_invariants(policy: &Policy) {
    for p in &policy.providers {
        assert!(
            p.jwks < policy.jwks_sources.len(),
            "provider key source out of range"
        );
        assert!(
            !p.locations.is_empty(),
            "provider {} has no token location",
            p.name
        );
        assert!(
            !p.algorithms.is_empty(),
            "provider {} allows no algorithm",
            p.name
        );
    }
    let mut requirements: Vec<&Requirement> = policy
        .rules
        .iter()
        .filter_map(|r| r.requires.as_ref())
        .collect();
    requirements.extend(policy.per_route.values().filter_map(|o| match o {
        RouteOverride::Require(r) => Some(r),
        RouteOverride::Disabled => None,
    }));
    while let Some(r) = requirements.pop() {
        match r {
            Requirement::Provider { provider, .. } => assert!(
                *provider < policy.providers.len(),
                "requirement names provider {provider} of {}",
                policy.providers.len()
            ),
            Requirement::Any(list) | Requirement::All(list) => requirements.extend(list),
            Requirement::AllowMissing | Requirement::AllowMissingOrFailed => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// extract_and_decide

/// What the remote key sources say (local ones always have their keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemoteKeys {
    Ready,
    Pending,
    Unavailable,
}

/// One request, as plain data: what `extract_and_decide` builds from its structured input,
/// and the form its regressions are stored in (JSON), so that `cargo test` can replay them
/// without the `arbitrary` crate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Case {
    pub route_name: Option<String>,
    pub headers: Vec<(String, String)>,
    pub remote_keys: RemoteKeys,
    pub may_refetch: bool,
}

struct Keys<'p> {
    policy: &'p Policy,
    remote: RemoteKeys,
    may_refetch: bool,
}

impl KeyLookup for Keys<'_> {
    fn keys(&self, id: JwksId) -> KeyState<'_> {
        match (self.policy.jwks_sources.get(id), self.remote) {
            (Some(JwksSource::Local(keys)), _) => KeyState::Ready(keys),
            (_, RemoteKeys::Ready) => KeyState::Ready(fixture_keys()),
            (_, RemoteKeys::Pending) => KeyState::Pending,
            (_, RemoteKeys::Unavailable) => KeyState::Unavailable,
        }
    }

    /// As the adapter does (`src/filter/state.rs`): only a remote source can be refetched.
    fn may_refetch(&self, id: JwksId) -> bool {
        self.may_refetch
            && matches!(
                self.policy.jwks_sources.get(id),
                Some(JwksSource::Remote(_))
            )
    }
}

/// The policy every `extract_and_decide` case runs against: providers with every token
/// location, requirement trees of every kind, regex and header matchers, and per-route
/// overrides. Paths: `/public`, `/strict`, `/rsa`, `/any`, `/all`, `/optional`, `/lenient`,
/// `/orders/<n>` (POST), `/mixed`, `?debug` (lenient), anything else (`rsa`).
pub fn decision_policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| {
        let fixture_jwks = String::from_utf8_lossy(JWKS_JSON).into_owned();
        let idp = |path: &str| {
            json!({"http_uri": {"uri": format!("https://idp.test/{path}"), "cluster": "idp", "timeout": "1s"}})
        };
        let cfg = json!({
            "providers": {
                "rsa": {
                    "issuer": "https://issuer.test",
                    "audiences": ["api"],
                    "remote_jwks": idp("jwks.json"),
                    "algorithms": ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"],
                    "claim_to_headers": [{"header_name": "x-jwt-sub", "claim_name": "sub"},
                                         {"header_name": "x-jwt-org", "claim_name": "org.name"}],
                    "forward_payload_header": "x-jwt-payload"
                },
                "strict": {
                    "issuer": "https://issuer.test",
                    "audiences": ["api"],
                    "subjects": {"prefix": "ali"},
                    "require_expiration": true,
                    "max_lifetime": "4000000000s",
                    "remote_jwks": idp("strict.json"),
                    "from_headers": [{"name": "authorization", "value_prefix": "Bearer "},
                                     {"name": "x-token"}],
                    "max_token_bytes": 2048
                },
                "hs": {
                    "issuer": "https://issuer.test",
                    "algorithms": ["HS256"],
                    "local_jwks": {"inline_string": hs256_jwks()},
                    "from_headers": [{"name": "x-hs-token"}],
                    "forward": true
                },
                "params": {
                    "issuer": "https://issuer.test",
                    "audiences": ["api"],
                    "local_jwks": {"inline_string": fixture_jwks},
                    "from_params": ["access_token"],
                    "from_cookies": ["session"],
                    "pad_forward_payload_header": true,
                    "forward_payload_header": "x-params-payload"
                }
            },
            "rules": [
                {"match": {"prefix": "/public"}},
                {"match": {"prefix": "/strict"}, "requires": {"provider_name": "strict"}},
                {"match": {"prefix": "/rsa"}, "requires": {"provider_name": "rsa"}},
                {"match": {"prefix": "/any"}, "requires": {"requires_any": {"requirements": [
                    {"provider_name": "rsa"}, {"provider_name": "hs"}, {"provider_name": "params"}]}}},
                {"match": {"prefix": "/all"}, "requires": {"requires_all": {"requirements": [
                    {"provider_name": "rsa"}, {"provider_name": "params"}]}}},
                {"match": {"prefix": "/optional"}, "requires": {"allow_missing": {}}},
                {"match": {"prefix": "/lenient"}, "requires": {"allow_missing_or_failed": {}}},
                {"match": {"safe_regex": {"google_re2": {}, "regex": "/orders/[0-9]+"},
                           "headers": [{"name": ":method", "exact_match": "POST"}]},
                 "requires": {"provider_and_audiences": {"provider_name": "rsa", "audiences": ["api", "orders"]}}},
                {"match": {"prefix": "/mixed"}, "requires": {"requires_any": {"requirements": [
                    {"requires_all": {"requirements": [{"provider_name": "strict"}, {"provider_name": "hs"}]}},
                    {"allow_missing": {}}]}}},
                {"match": {"prefix": "/", "query_parameters": [{"name": "debug", "present_match": true}]},
                 "requirement_name": "lenient"},
                {"match": {"prefix": "/"}, "requirement_name": "default"}
            ],
            "requirement_map": {
                "default": {"provider_name": "rsa"},
                "lenient": {"allow_missing_or_failed": {}},
                "user": {"requires_any": {"requirements": [{"provider_name": "strict"}, {"provider_name": "params"}]}}
            },
            "per_route": {
                "docs": {"disabled": true},
                "user": {"requirement_name": "user"}
            },
            "bypass_cors_preflight": true
        });
        config::parse(&cfg.to_string()).expect("the decision policy compiles")
    })
}

/// True when `identities` meet `requirement` (lenient requirements always are).
fn satisfied(requirement: &Requirement, policy: &Policy, verified: &BTreeSet<String>) -> bool {
    match requirement {
        Requirement::Provider { provider, .. } => policy
            .providers
            .get(*provider)
            .is_some_and(|p| verified.contains(&p.name)),
        Requirement::Any(list) => list.iter().any(|r| satisfied(r, policy, verified)),
        Requirement::All(list) => list.iter().all(|r| satisfied(r, policy, verified)),
        Requirement::AllowMissing | Requirement::AllowMissingOrFailed => true,
    }
}

/// Decides `case` under [`decision_policy`] and checks the decision:
/// - the verified-token cache does not change it;
/// - every identity's provider found a genuine, claims-valid fixture token in the request;
/// - a non-lenient requirement is met by the identities (no Allow without tokens);
/// - CORS and no-requirement allows happen only when they should;
/// - waiting happens only when a remote source is pending or may be refetched;
/// - a denial has its error's status (503 only when keys are unavailable) and never echoes a
///   token's signature.
pub fn check_case(case: &Case) {
    let policy = decision_policy();
    let keys = Keys {
        policy,
        remote: case.remote_keys,
        may_refetch: case.may_refetch,
    };
    let req = RequestView::new(&case.headers, case.route_name.as_deref());
    let decision = decide(policy, &req, &keys, NOW);
    // The verified-token cache must not change a decision: once filled, once hit.
    let cache = TokenCache::new(policy.providers.iter().map(|_| 4));
    for round in ["filling", "hitting"] {
        let cached = decide_cached(policy, &req, &keys, &cache, NOW);
        assert_eq!(cached, decision, "the cache changed the decision ({round})");
    }
    match &decision {
        Decision::Allow(allow) => {
            let mut verified = BTreeSet::new();
            for identity in &allow.identities {
                let provider = policy
                    .providers
                    .iter()
                    .find(|p| p.name == identity.provider)
                    .expect("identity names a configured provider");
                let found = extract(&req, provider);
                let token = match &found {
                    Ok(Some(found)) => found.token.as_ref(),
                    other => panic!(
                        "identity for {} but its extraction gives {other:?}",
                        provider.name
                    ),
                };
                assert!(
                    genuine().contains(token),
                    "FORGERY: {} accepted a token that is not a genuine fixture: {token:?}",
                    provider.name
                );
                assert!(
                    !is_claims_refused(token),
                    "{} accepted an expired/not-yet-valid/wrong-iss token",
                    provider.name
                );
                assert!(
                    token != fixture_token(WRONG_AUDIENCE) || known_open("audience"),
                    "identity for {} from a token for another audience (identity headers {:?})",
                    provider.name,
                    allow.set_headers
                );
                verified.insert(identity.provider.clone());
            }
            let requirement = requirement_for(policy, &req);
            match allow.reason {
                AllowReason::CorsPreflight => assert!(req.is_cors_preflight()),
                AllowReason::NoRequirement => assert!(requirement.is_none()),
                AllowReason::Verified | AllowReason::Allowed => {
                    let requirement = requirement.expect("allowed under a requirement");
                    assert!(
                        satisfied(requirement, policy, &verified),
                        "allowed, but {requirement:?} is not met by {verified:?}"
                    );
                }
                // A `report_only` rule's would-deny: no token vouches, no identity header.
                AllowReason::ReportOnly => assert!(
                    allow.would_deny.is_some()
                        && allow.identities.is_empty()
                        && allow.set_headers.is_empty(),
                    "report-only allow with identity or without its denial: {allow:?}"
                ),
            }
            assert!(
                allow.set_headers.is_empty() || !allow.identities.is_empty(),
                "identity headers set without an identity: {:?}",
                allow.set_headers
            );
        }
        Decision::WaitForKeys(ids) => {
            assert!(!ids.is_empty(), "waiting for no key source");
            for id in ids {
                assert!(
                    matches!(policy.jwks_sources.get(*id), Some(JwksSource::Remote(_))),
                    "waiting for key source {id}, which is not remote"
                );
            }
            assert!(
                case.remote_keys == RemoteKeys::Pending || case.may_refetch,
                "waiting although every key source is settled"
            );
        }
        Decision::Deny(denial) => {
            assert_eq!(
                denial.status,
                denial.error.status().http_code(),
                "denial status is not the one mapping's"
            );
            assert!(
                denial.status != 503 || case.remote_keys == RemoteKeys::Unavailable,
                "503 although no key source is unavailable"
            );
            // The realm echoes scheme, authority and path by design: text that is also there
            // proves nothing.
            let echoed_by_design = realm_parts(&req);
            for signature in signatures_in_token_locations(&case.headers, &req) {
                if echoed_by_design.iter().any(|part| part.contains(signature)) {
                    continue;
                }
                let leaked = denial.body.contains(signature)
                    || denial.headers.iter().any(|(_, v)| v.contains(signature));
                assert!(!leaked, "denial echoes a token signature: {denial:?}");
            }
        }
    }
}

/// The signature segments (24 characters or more) of every three-segment word in the places
/// tokens are read from: the token headers, cookies, and the query string. Other places (the
/// path, `:authority`) are echoed in the realm by design.
fn signatures_in_token_locations<'a>(
    headers: &'a [(String, String)],
    req: &RequestView<'a>,
) -> Vec<&'a str> {
    const TOKEN_HEADERS: [&str; 4] = ["authorization", "x-token", "x-hs-token", "cookie"];
    let values = headers
        .iter()
        .filter(|(name, _)| TOKEN_HEADERS.contains(&name.as_str()))
        .map(|(_, value)| value.as_str())
        .chain(req.query());
    values
        .flat_map(|value| value.split([' ', '\t', '=', ';', '&', ',', '"']))
        .filter(|word| word.matches('.').count() == 2)
        .filter_map(|word| word.rsplit('.').next())
        .filter(|signature| signature.len() >= 24)
        .collect()
}

/// What `authenticate::realm` copies from the request.
fn realm_parts<'a>(req: &RequestView<'a>) -> Vec<&'a str> {
    let mut parts = vec![req.path_without_query()];
    parts.extend(req.header_values(":scheme"));
    parts.extend(req.header_values(":authority"));
    parts.extend(req.header_values("host"));
    parts
}
