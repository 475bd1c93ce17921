//! Table-driven decisions: request → outcome, through the compiled config and the core,
//! with the fixture key set and tokens (tests/fixtures, made by make_fixtures.py).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::type_complexity
)]

use std::sync::Arc;

use jwt_edge::authn::authenticate::{decide, decide_recorded, Decision, KeyLookup, KeyState};
use jwt_edge::authn::config;
use jwt_edge::authn::jwk::{parse_jwks, JwksOptions, KeySet};
use jwt_edge::authn::policy::{JwksId, Policy};
use jwt_edge::authn::request::RequestView;
use jwt_edge::authn::token_cache::TokenCache;
use jwt_edge::authn::trace::{Check, Met, Outcome, Recorder, Selection, Step};
use jwt_edge::time::{Millis, UnixMillis};
use serde_json::{json, Value};

const NOW: UnixMillis = UnixMillis::from_secs(1_800_000_000);

fn fixtures() -> Value {
    serde_json::from_str(include_str!("fixtures/tokens.json")).unwrap()
}

fn token(name: &str) -> String {
    fixtures()["tokens"][name]
        .as_str()
        .unwrap_or_else(|| panic!("no fixture {name}"))
        .to_owned()
}

struct Keys(Arc<KeySet>);

impl KeyLookup for Keys {
    fn keys(&self, _id: JwksId) -> KeyState<'_> {
        KeyState::Ready(&self.0)
    }
}

struct NoKeys(bool);

impl KeyLookup for NoKeys {
    fn keys(&self, _id: JwksId) -> KeyState<'_> {
        if self.0 {
            KeyState::Pending
        } else {
            KeyState::Unavailable
        }
    }
}

fn fixture_keys() -> Keys {
    let load = parse_jwks(
        include_bytes!("fixtures/jwks.json"),
        JwksOptions {
            allow_symmetric: false,
        },
    )
    .unwrap();
    Keys(Arc::new(load.keys))
}

fn remote_provider(extra: Value) -> Value {
    let mut p = json!({
        "issuer": "https://issuer.test",
        "audiences": ["api"],
        "remote_jwks": {"http_uri": {"uri": "https://idp.test/jwks.json", "cluster": "idp", "timeout": "1s"}},
        "claim_to_headers": [{"header_name": "x-jwt-sub", "claim_name": "sub"}]
    });
    if let (Some(p), Some(extra)) = (p.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            p.insert(k.clone(), v.clone());
        }
    }
    p
}

fn policy(cfg: Value) -> Policy {
    config::parse(&cfg.to_string()).unwrap_or_else(|e| panic!("config: {e}"))
}

fn headers(path: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut h = vec![
        (":method".to_string(), "GET".to_string()),
        (":path".to_string(), path.to_string()),
        (":authority".to_string(), "api.test".to_string()),
        (":scheme".to_string(), "https".to_string()),
    ];
    h.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    h
}

/// "allow", "wait", or the denial code.
fn outcome(d: &Decision) -> String {
    match d {
        Decision::Allow(_) => "allow".into(),
        Decision::WaitForKeys(_) => "wait".into(),
        Decision::Deny(den) => format!("{} {}", den.status, den.error.code()),
    }
}

/// Decides, and checks on the way that recording the decision's steps changes nothing and
/// ends with the decision itself.
fn run(p: &Policy, path: &str, extra: &[(&str, &str)], keys: &dyn KeyLookup) -> Decision {
    let h = headers(path, extra);
    let req = RequestView::new(&h, None);
    let d = decide(p, &req, keys, NOW);
    let mut steps = Steps::default();
    let recorded = decide_recorded(p, &req, keys, &TokenCache::disabled(), NOW, &mut steps);
    assert_eq!(recorded, d, "recording changed the decision");
    assert_eq!(
        steps.verdict.as_ref(),
        Some(&d),
        "the last step is the verdict"
    );
    d
}

/// A recorder that writes each step as a short line (never the token: a found token is
/// written as its length).
#[derive(Default)]
struct Steps {
    lines: Vec<String>,
    verdict: Option<Decision>,
}

impl Recorder for Steps {
    fn step(&mut self, step: Step<'_>) {
        let line = match step {
            Step::CorsPreflight => "cors".to_owned(),
            Step::Selected(Selection::Rule { index, .. }) => format!("rule {index}"),
            Step::Selected(Selection::PerRoute { route, .. }) => format!("per_route {route}"),
            Step::Selected(Selection::NoRule) => "no rule".to_owned(),
            Step::AllowMissing { providers, .. } => format!("allow_missing {providers:?}"),
            Step::Token { provider, found } => match found {
                Ok(Some(f)) => format!("{provider} token {} bytes", f.token.len()),
                Ok(None) => format!("{provider} no token"),
                Err(e) => format!("{provider} token {}", e.code()),
            },
            Step::CacheHit { provider } => format!("{provider} cache hit"),
            Step::Parsed { provider, token } => {
                format!("{provider} parsed {}", token.header().alg)
            }
            Step::Keys { provider, .. } => format!("{provider} keys"),
            Step::Refetch { provider, .. } => format!("{provider} refetch"),
            Step::KeysTried {
                provider,
                candidates,
                verified_by,
            } => format!(
                "{provider} tried {} verified_by {verified_by:?}",
                candidates.len()
            ),
            Step::RevocationList { provider, .. } => format!("{provider} list"),
            Step::Check {
                provider,
                check,
                outcome,
            } => {
                let name = match check {
                    Check::Parse => "parse",
                    Check::Alg => "alg",
                    Check::Issuer => "issuer",
                    Check::Times => "times",
                    Check::KeySelection => "key selection",
                    Check::Signature => "signature",
                    Check::Subject => "subject",
                    Check::InlineRevocation => "inline revocation",
                    Check::RemoteRevocation => "remote revocation",
                    Check::SenderConstraint => "sender constraint",
                    Check::CertificateBinding => "certificate binding",
                    Check::Audience { .. } => "audience",
                    Check::Scopes(_) => "scopes",
                    Check::Claims(_) => "claims",
                };
                let result = outcome.map_or_else(|e| e.code(), |()| "ok");
                format!("{provider} {name} {result}")
            }
            Step::Result { provider, outcome } => match outcome {
                Outcome::Missing => format!("{provider} = missing"),
                Outcome::Verified => format!("{provider} = verified"),
                Outcome::Failed(e) => format!("{provider} = {}", e.code()),
                Outcome::Pending(j) => format!("{provider} = pending {j}"),
            },
            Step::Requirement { met, .. } => match met {
                Met::Yes(ids) => format!("met {ids:?}"),
                Met::No { error, .. } => format!("not met {}", error.code()),
                Met::Pending(ids) => format!("pending {ids:?}"),
            },
            Step::PresentToken {
                provider,
                error,
                vouched,
            } => format!("{provider} present {} vouched {vouched}", error.code()),
            Step::Verdict(d) => {
                self.verdict = Some(d.clone());
                format!("verdict {}", outcome(d))
            }
        };
        self.lines.push(line);
    }
}

/// The steps `decide_recorded` reports for a request.
fn recorded(p: &Policy, path: &str, extra: &[(&str, String)]) -> Vec<String> {
    let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let h = headers(path, &extra);
    let mut steps = Steps::default();
    decide_recorded(
        p,
        &RequestView::new(&h, None),
        &fixture_keys(),
        &TokenCache::disabled(),
        NOW,
        &mut steps,
    );
    steps.lines
}

#[test]
fn recorded_steps_are_the_filters_checks_in_its_order() {
    let p = policy(json!({
        "providers": {
            "a": remote_provider(json!({})),
            "b": remote_provider(json!({"from_headers": [{"name": "x-b"}]}))
        },
        "rules": [
            {"match": {"prefix": "/open"}, "requires": {"requires_any": {"requirements": [
                {"provider_name": "a"}, {"allow_missing": {}}]}}},
            {"match": {"prefix": "/"}, "requires": {"provider_name": "a", "scopes": []}}
        ]
    }));
    let bearer = |name: &str| vec![("authorization", format!("Bearer {}", token(name)))];
    let len = |name: &str| token(name).len();
    assert_eq!(
        recorded(&p, "/", &bearer("rs256")),
        [
            "rule 1".to_owned(),
            format!("0 token {} bytes", len("rs256")),
            "0 parsed RS256".into(),
            "0 alg ok".into(),
            "0 issuer ok".into(),
            "0 times ok".into(),
            "0 keys".into(),
            "0 tried 1 verified_by Some(0)".into(),
            "0 signature ok".into(),
            "0 subject ok".into(),
            "0 inline revocation ok".into(),
            "0 = verified".into(),
            "0 audience ok".into(),
            "0 scopes ok".into(),
            "0 claims ok".into(),
            "met [0]".into(),
            "verdict allow".into(),
        ]
    );
    // The filter stops at the first failure: nothing after the time check is reported.
    assert_eq!(
        recorded(&p, "/", &bearer("expired")),
        [
            "rule 1".to_owned(),
            format!("0 token {} bytes", len("expired")),
            "0 parsed RS256".into(),
            "0 alg ok".into(),
            "0 issuer ok".into(),
            "0 times token_expired".into(),
            "0 = token_expired".into(),
            "not met token_expired".into(),
            "verdict 401 token_expired".into(),
        ]
    );
    assert_eq!(
        recorded(&p, "/", &bearer("forged_kid"))[6..9],
        [
            "0 keys".to_owned(),
            "0 tried 1 verified_by None".into(),
            "0 signature bad_signature".into(),
        ]
    );
    assert_eq!(
        recorded(&p, "/", &bearer("unknown_kid"))[6..8],
        ["0 keys".to_owned(), "0 key selection unknown_kid".into()]
    );
    // allow_missing inside requires_any looks at its siblings' providers only (a, not b);
    // b's token is then not looked at at all.
    assert_eq!(
        recorded(&p, "/open", &[("x-b", token("expired"))]),
        [
            "rule 0",
            "0 no token",
            "0 = missing",
            "not met token_missing",
            "allow_missing [0]",
            "met []",
            "met []",
            "verdict allow",
        ]
    );
    // Once the requirement passed, a present token that did not verify refuses the request.
    let mut with_bad_b = bearer("rs256");
    with_bad_b.push(("x-b", token("expired")));
    let p_all = policy(json!({
        "providers": {
            "a": remote_provider(json!({})),
            "b": remote_provider(json!({"from_headers": [{"name": "x-b"}]}))
        },
        "rules": [{"match": {"prefix": "/"}, "requires": {"requires_any": {"requirements": [
            {"provider_name": "a"}, {"provider_name": "b"}]}}}]
    }));
    let lines = recorded(&p_all, "/", &with_bad_b);
    assert_eq!(
        lines[lines.len() - 2..],
        [
            "1 present token_expired vouched false",
            "verdict 401 token_expired"
        ]
    );
}

#[test]
fn every_outcome_code_single_provider() {
    let p = policy(json!({
        "providers": {"p": remote_provider(json!({"algorithms": ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"]}))},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "p"}}]
    }));
    let keys = fixture_keys();
    let bearer = |name: &str| format!("Bearer {}", token(name));
    let h = |v: String| v;
    let cases: Vec<(&str, Vec<(&str, String)>, &str)> = vec![
        ("rs256", vec![("authorization", bearer("rs256"))], "allow"),
        ("rs384", vec![("authorization", bearer("rs384"))], "allow"),
        ("rs512", vec![("authorization", bearer("rs512"))], "allow"),
        ("ps256", vec![("authorization", bearer("ps256"))], "allow"),
        ("ps384", vec![("authorization", bearer("ps384"))], "allow"),
        ("ps512", vec![("authorization", bearer("ps512"))], "allow"),
        ("es256", vec![("authorization", bearer("es256"))], "allow"),
        ("es384", vec![("authorization", bearer("es384"))], "allow"),
        ("eddsa", vec![("authorization", bearer("eddsa"))], "allow"),
        (
            "no kid rsa",
            vec![("authorization", bearer("rs256_no_kid"))],
            "allow",
        ),
        (
            "no kid ec",
            vec![("authorization", bearer("es256_no_kid"))],
            "allow",
        ),
        (
            "lower-case scheme",
            vec![("authorization", h(format!("bearer {}", token("rs256"))))],
            "allow",
        ),
        ("missing", vec![], "401 token_missing"),
        (
            "basic",
            vec![("authorization", h("Basic YTpi".into()))],
            "401 token_missing",
        ),
        (
            "expired",
            vec![("authorization", bearer("expired"))],
            "401 token_expired",
        ),
        (
            "nbf",
            vec![("authorization", bearer("not_yet_valid"))],
            "401 token_not_yet_valid",
        ),
        (
            "no exp",
            vec![("authorization", bearer("no_exp"))],
            "401 exp_missing",
        ),
        (
            "exp string",
            vec![("authorization", bearer("exp_string"))],
            "401 claim_malformed",
        ),
        (
            "issuer",
            vec![("authorization", bearer("wrong_iss"))],
            "401 issuer_mismatch",
        ),
        (
            "audience",
            vec![("authorization", bearer("wrong_aud"))],
            "403 audience_mismatch",
        ),
        (
            "no audience",
            vec![("authorization", bearer("no_aud"))],
            "403 audience_mismatch",
        ),
        (
            "unknown kid",
            vec![("authorization", bearer("unknown_kid"))],
            "401 unknown_kid",
        ),
        (
            "forged",
            vec![("authorization", bearer("forged_kid"))],
            "401 bad_signature",
        ),
        (
            "forged no kid",
            vec![("authorization", bearer("forged_no_kid"))],
            "401 bad_signature",
        ),
        (
            "embedded jwk",
            vec![("authorization", bearer("embedded_jwk"))],
            "401 unknown_kid",
        ),
        (
            "hs256 confusion",
            vec![("authorization", bearer("hs256_confusion"))],
            "401 alg_not_allowed",
        ),
        (
            "alg none",
            vec![("authorization", bearer("alg_none"))],
            "401 alg_not_allowed",
        ),
        (
            "jwe",
            vec![("authorization", h("Bearer a.b.c.d.e".into()))],
            "401 token_is_jwe",
        ),
        (
            "two segments",
            vec![("authorization", h("Bearer a.b".into()))],
            "401 token_malformed",
        ),
        (
            "padded",
            vec![("authorization", h(format!("Bearer {}=", token("rs256"))))],
            "401 bad_base64",
        ),
        (
            "two headers",
            vec![
                ("authorization", bearer("rs256")),
                ("authorization", bearer("rs256")),
            ],
            "401 multiple_tokens",
        ),
        // Envoy's HTTP/1 codec joins repeated headers with ',': whatever surrounds the
        // comma, that is more than one credential.
        (
            "two headers joined",
            vec![(
                "authorization",
                h(format!(
                    "Bearer {}, Bearer {}",
                    token("rs256"),
                    token("rs256")
                )),
            )],
            "401 multiple_tokens",
        ),
        (
            "token and a comma",
            vec![("authorization", h(format!("Bearer {},", token("rs256"))))],
            "401 multiple_tokens",
        ),
        (
            "another scheme joined",
            vec![("authorization", h("Basic dXNlcg==,Basic eA==".into()))],
            "401 multiple_tokens",
        ),
        (
            "too large",
            vec![("authorization", h(format!("Bearer {}", "a".repeat(9000))))],
            "401 token_too_large",
        ),
    ];
    for (name, extra, want) in cases {
        let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let d = run(&p, "/x", &extra, &keys);
        assert_eq!(outcome(&d), want, "case {name}");
    }
    // Query parameter fallback, and header + query with two different tokens.
    let q = format!("/x?access_token={}", token("es256"));
    assert_eq!(outcome(&run(&p, &q, &[], &keys)), "allow");
    let both = [("authorization", format!("Bearer {}", token("rs256")))];
    let both: Vec<(&str, &str)> = both.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(outcome(&run(&p, &q, &both, &keys)), "401 multiple_tokens");
    // Keys not there yet: wait; fetch failed for good: 503.
    let auth = format!("Bearer {}", token("rs256"));
    assert_eq!(
        outcome(&run(&p, "/x", &[("authorization", &auth)], &NoKeys(true))),
        "wait"
    );
    assert_eq!(
        outcome(&run(&p, "/x", &[("authorization", &auth)], &NoKeys(false))),
        "503 jwks_unavailable"
    );
    // A missing token does not wait for keys.
    assert_eq!(
        outcome(&run(&p, "/x", &[], &NoKeys(true))),
        "401 token_missing"
    );
}

#[test]
fn algorithm_allow_list_is_per_provider() {
    let p = policy(json!({
        "providers": {"p": remote_provider(json!({"algorithms": ["ES256"]}))},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "p"}}]
    }));
    let keys = fixture_keys();
    let t = |n: &str| format!("Bearer {}", token(n));
    assert_eq!(
        outcome(&run(&p, "/", &[("authorization", &t("es256"))], &keys)),
        "allow"
    );
    assert_eq!(
        outcome(&run(&p, "/", &[("authorization", &t("rs256"))], &keys)),
        "401 alg_not_allowed"
    );
    assert_eq!(
        outcome(&run(&p, "/", &[("authorization", &t("eddsa"))], &keys)),
        "401 alg_not_allowed"
    );
}

#[test]
fn local_hmac_only_when_listed() {
    let secret = fixtures()["hs256_secret_b64url"]
        .as_str()
        .unwrap()
        .to_owned();
    let jwks =
        json!({"keys": [{"kty": "oct", "kid": "hs-1", "k": secret, "alg": "HS256"}]}).to_string();
    let p = policy(json!({
        "providers": {"p": {"issuer": "https://issuer.test", "algorithms": ["HS256"], "local_jwks": {"inline_string": jwks}}},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "p"}}]
    }));
    let keys = NoKeys(false); // local sources never ask the lookup… but the policy carries them
    let _ = keys;
    struct Local<'a>(&'a Policy);
    impl KeyLookup for Local<'_> {
        fn keys(&self, id: JwksId) -> KeyState<'_> {
            match self.0.jwks_sources.get(id) {
                Some(jwt_edge::authn::policy::JwksSource::Local(k)) => KeyState::Ready(k),
                _ => KeyState::Unavailable,
            }
        }
    }
    let t = format!("Bearer {}", token("hs256_local"));
    assert_eq!(
        outcome(&run(&p, "/", &[("authorization", &t)], &Local(&p))),
        "allow"
    );
    let rs = format!("Bearer {}", token("rs256"));
    assert_eq!(
        outcome(&run(&p, "/", &[("authorization", &rs)], &Local(&p))),
        "401 alg_not_allowed"
    );
}

#[test]
fn rules_requirements_and_headers() {
    let p = policy(json!({
        "providers": {
            "p": remote_provider(json!({
                "forward_payload_header": "x-jwt-payload",
                "claim_to_headers": [
                    {"header_name": "x-jwt-sub", "claim_name": "sub"},
                    {"header_name": "x-org", "claim_name": "org.id"},
                    {"header_name": "x-roles", "claim_name": "roles"},
                    {"header_name": "x-admin", "claim_name": "admin"}
                ]
            })),
            "other": {"issuer": "https://other.test", "remote_jwks": {"http_uri": {"uri": "https://other.test/jwks", "cluster": "other", "timeout": "1s"}}}
        },
        "requirement_map": {"either": {"requires_any": {"requirements": [{"provider_name": "other"}, {"provider_name": "p"}]}}},
        "rules": [
            {"match": {"prefix": "/public"}},
            {"match": {"path": "/exact", "headers": [{"name": ":method", "exact_match": "POST"}]}, "requires": {"provider_name": "p"}},
            {"match": {"prefix": "/any"}, "requirement_name": "either"},
            {"match": {"prefix": "/all"}, "requires": {"requires_all": {"requirements": [{"provider_name": "other"}, {"provider_name": "p"}]}}},
            {"match": {"prefix": "/optional"}, "requires": {"allow_missing": {}}},
            {"match": {"prefix": "/failed-ok"}, "requires": {"allow_missing_or_failed": {}}},
            {"match": {"prefix": "/aud"}, "requires": {"provider_and_audiences": {"provider_name": "p", "audiences": ["other"]}}},
            {"match": {"prefix": "/"}, "requires": {"provider_name": "p"}}
        ]
    }));
    let keys = fixture_keys();
    let good = format!("Bearer {}", token("claims"));
    let bad = format!("Bearer {}", token("forged_kid"));
    let wrong_aud = format!("Bearer {}", token("wrong_aud"));
    let auth = |v: &str| vec![("authorization", v.to_owned())];
    let cases: Vec<(&str, Vec<(&str, String)>, &str)> = vec![
        ("/public", vec![], "allow"),
        ("/public/x?y", auth(&bad), "allow"),
        ("/exact", vec![], "401 token_missing"),
        ("/any", auth(&good), "allow"),
        ("/any", auth(&bad), "401 bad_signature"),
        ("/any", vec![], "401 token_missing"),
        ("/all", auth(&good), "401 issuer_mismatch"),
        ("/optional", vec![], "allow"),
        ("/optional", auth(&good), "allow"),
        ("/optional", auth(&bad), "401 bad_signature"),
        ("/failed-ok", auth(&bad), "allow"),
        ("/failed-ok", vec![], "allow"),
        ("/aud", auth(&good), "403 audience_mismatch"),
        ("/aud", auth(&wrong_aud), "allow"),
        ("/else", auth(&good), "allow"),
    ];
    for (path, extra, want) in cases {
        let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(
            outcome(&run(&p, path, &extra, &keys)),
            want,
            "{path} {extra:?}"
        );
    }
    // Method in a header matcher: GET /exact falls through to the catch-all, which also needs p.
    let mut h = headers("/exact", &[]);
    h[0].1 = "POST".into();
    h.push(("authorization".into(), good.clone()));
    let Decision::Allow(allow) = decide(&p, &RequestView::new(&h, None), &keys, NOW) else {
        panic!("POST /exact with a good token must pass");
    };
    let get = |n: &str| {
        allow
            .set_headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("x-jwt-sub"), Some("svc-payments"));
    assert_eq!(get("x-org"), Some("7"));
    // jwt_authn's format: an array claim is the base64 of its JSON (`["a","b"]`).
    assert_eq!(get("x-roles"), Some("WyJhIiwiYiJd"));
    assert_eq!(get("x-admin"), Some("true"));
    let payload = token("claims").split('.').nth(1).unwrap().to_owned();
    assert_eq!(get("x-jwt-payload"), Some(payload.as_str()));
    assert_eq!(allow.remove_headers, vec!["authorization".to_string()]);
    assert_eq!(allow.identities.len(), 1);
    assert_eq!(allow.identities[0].sub(), Some("svc-payments"));
    assert_eq!(
        p.identity_headers
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .len(),
        5,
        "every header the filter can set is sanitised"
    );
}

#[test]
fn failure_response_shape() {
    let cfg = |strip: bool| {
        policy(json!({
            "providers": {"p": remote_provider(json!({}))},
            "strip_failure_response": strip,
            "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "p"}}]
        }))
    };
    let keys = fixture_keys();
    let expired = format!("Bearer {}", token("expired"));
    let Decision::Deny(d) = run(
        &cfg(false),
        "/v1/x?secret=zzz",
        &[("authorization", &expired)],
        &keys,
    ) else {
        panic!("expired must be denied")
    };
    assert_eq!(d.status, 401);
    assert_eq!(
        d.headers,
        vec![
            ("content-type".to_string(), "application/json".to_string()),
            (
                "www-authenticate".to_string(),
                "Bearer realm=\"https://api.test/v1/x\", error=\"invalid_token\", error_description=\"token is expired\"".to_string()
            )
        ]
    );
    assert_eq!(
        d.body,
        r#"{"error":"token_expired","error_description":"token is expired"}"#
    );
    assert_eq!(d.sub.as_deref(), Some("alice"));
    assert!(!d.body.contains(&token("expired")[..20]));
    let Decision::Deny(s) = run(&cfg(true), "/", &[("authorization", &expired)], &keys) else {
        panic!()
    };
    assert_eq!((s.status, s.headers.len(), s.body.as_str()), (401, 0, ""));
}

#[test]
fn cors_preflight_bypass_and_per_route() {
    let p = policy(json!({
        "providers": {"p": remote_provider(json!({}))},
        "bypass_cors_preflight": true,
        "requirement_map": {"need-p": {"provider_name": "p"}},
        "per_route": {"health": {"disabled": true}, "payments": {"requirement_name": "need-p"}},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "p"}}]
    }));
    let keys = fixture_keys();
    let mut h = headers(
        "/x",
        &[
            ("origin", "https://app.test"),
            ("access-control-request-method", "POST"),
        ],
    );
    h[0].1 = "OPTIONS".into();
    assert_eq!(
        outcome(&decide(&p, &RequestView::new(&h, None), &keys, NOW)),
        "allow"
    );
    let h = headers("/x", &[]);
    assert_eq!(
        outcome(&decide(
            &p,
            &RequestView::new(&h, Some("health")),
            &keys,
            NOW
        )),
        "allow"
    );
    assert_eq!(
        outcome(&decide(
            &p,
            &RequestView::new(&h, Some("payments")),
            &keys,
            NOW
        )),
        "401 token_missing"
    );
    assert_eq!(
        outcome(&decide(
            &p,
            &RequestView::new(&h, Some("unnamed")),
            &keys,
            NOW
        )),
        "401 token_missing"
    );
}

/// Flips every bit of valid tokens: every flip must be refused (jwt-compact does the same).
#[test]
fn every_bit_flip_is_rejected() {
    let p = policy(json!({
        "providers": {"p": remote_provider(json!({}))},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "p"}}]
    }));
    let keys = fixture_keys();
    let mut total = 0;
    for name in ["rs256", "es256", "eddsa", "ps256"] {
        let t = token(name);
        assert_eq!(
            outcome(&run(
                &p,
                "/",
                &[("authorization", &format!("Bearer {t}"))],
                &keys
            )),
            "allow"
        );
        let bytes = t.as_bytes();
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut m = bytes.to_vec();
                m[i] ^= 1 << bit;
                let Ok(s) = String::from_utf8(m) else {
                    continue;
                };
                let auth = format!("Bearer {s}");
                let h = headers("/", &[("authorization", &auth)]);
                let d = decide(&p, &RequestView::new(&h, None), &keys, NOW);
                assert!(
                    matches!(d, Decision::Deny(_)),
                    "{name}: flipping bit {bit} of byte {i} was accepted"
                );
                total += 1;
            }
        }
    }
    println!("bit flips rejected: {total}");
    assert!(total > 10_000);
}

#[test]
fn verified_token_cache_hits_and_still_checks_claims() {
    use jwt_edge::authn::authenticate::decide_cached;
    use jwt_edge::authn::token_cache::TokenCache;
    let p = policy(json!({
        "providers": {"p": remote_provider(json!({"jwt_cache_config": {"jwt_cache_size": 4}}))},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "p"}}]
    }));
    let cache = TokenCache::new(p.providers.iter().map(|p| p.jwt_cache_size));
    let keys = fixture_keys();
    let run_at = |name: &str, now: UnixMillis| {
        let auth = format!("Bearer {}", token(name));
        let h = headers("/", &[("authorization", &auth)]);
        outcome(&decide_cached(
            &p,
            &RequestView::new(&h, None),
            &keys,
            &cache,
            now,
        ))
    };
    assert_eq!(run_at("rs256", NOW), "allow");
    assert_eq!(cache.take_stats(), (0, 1));
    assert_eq!(run_at("rs256", NOW), "allow");
    assert_eq!(cache.take_stats(), (1, 0));
    // A cached token still expires.
    assert_eq!(
        run_at("rs256", UnixMillis::from_secs(4_102_444_800 + 61)),
        "401 token_expired"
    );
    // Refused tokens are never stored.
    assert_eq!(run_at("forged_kid", NOW), "401 bad_signature");
    assert_eq!(run_at("forged_kid", NOW), "401 bad_signature");
    assert_eq!(cache.take_stats(), (1, 2));
    // Bounded: 4 entries at most, whatever the traffic.
    for name in ["es256", "es384", "eddsa", "ps256", "rs384", "rs512"] {
        assert_eq!(run_at(name, NOW), "allow");
    }
    assert!(cache.len(0) <= 4, "{}", cache.len(0));
    // A token differing in one byte is a different entry (the whole token is the key).
    let t = token("es256");
    let (head, sig) = t.rsplit_once('.').unwrap();
    let mut sig = sig.to_owned();
    let last = sig.pop().unwrap();
    sig.push(if last == 'A' { 'B' } else { 'A' });
    let auth = format!("Bearer {head}.{sig}");
    let h = headers("/", &[("authorization", &auth)]);
    assert!(outcome(&decide_cached(
        &p,
        &RequestView::new(&h, None),
        &keys,
        &cache,
        NOW
    ))
    .starts_with("401"));
}

/// The M2M case: "payments may call the risk engine with risk:score".
#[test]
fn scopes_and_claims_requirements() {
    let p = policy(json!({
        "providers": {"p": remote_provider(json!({}))},
        "rules": [
            {"match": {"prefix": "/risk"}, "requires": {"provider_name": "p", "scopes": ["risk:score"], "claims": [{"name": "sub", "values": ["svc-payments"]}]}},
            {"match": {"prefix": "/two"}, "requires": {"provider_name": "p", "scopes": ["risk:score", "write"]}},
            {"match": {"prefix": "/org"}, "requires": {"provider_name": "p", "claims": [{"name": "org.id", "values": [7]}, {"name": "roles", "values": ["b", "z"]}]}},
            {"match": {"prefix": "/org-str"}, "requires": {"provider_name": "p", "claims": [{"name": "org.id", "values": ["7"]}]}},
            {"match": {"prefix": "/admin"}, "requires": {"provider_and_audiences": {"provider_name": "p", "audiences": ["api"]}, "claims": [{"name": "admin", "values": [true]}]}}
        ]
    }));
    let keys = fixture_keys();
    let claims = format!("Bearer {}", token("claims"));
    let plain = format!("Bearer {}", token("rs256"));
    let at = |path: &str, auth: &str| outcome(&run(&p, path, &[("authorization", auth)], &keys));
    assert_eq!(at("/risk", &claims), "allow");
    assert_eq!(at("/risk", &plain), "403 insufficient_scope");
    assert_eq!(at("/two", &claims), "403 insufficient_scope");
    assert_eq!(at("/org", &claims), "allow");
    assert_eq!(
        at("/org-str/x", &claims),
        "allow",
        "prefix /org matches first"
    );
    assert_eq!(at("/admin", &claims), "allow");
    assert_eq!(at("/admin", &plain), "403 claim_mismatch");
    let Decision::Deny(d) = run(&p, "/two", &[("authorization", &claims)], &keys) else {
        panic!()
    };
    let www = d
        .headers
        .iter()
        .find(|(k, _)| k == "www-authenticate")
        .unwrap();
    assert_eq!(
        www.1,
        "Bearer realm=\"https://api.test/two\", error=\"insufficient_scope\", error_description=\"token lacks required scope risk:score write\", scope=\"risk:score write\""
    );
    let strict = policy(json!({
        "providers": {"p": remote_provider(json!({}))},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "p", "claims": [{"name": "org.id", "values": ["7"]}]}}]
    }));
    assert_eq!(
        outcome(&run(&strict, "/", &[("authorization", &claims)], &keys)),
        "403 claim_mismatch",
        "7 is not \"7\""
    );
}

#[test]
fn revoked_jti_and_sub_are_refused() {
    let p = policy(json!({
        "providers": {"p": remote_provider(json!({"revoked": {"jti": ["tok-123"], "sub": ["svc-payments"]}, "jwt_cache_config": {"jwt_cache_size": 10}}))},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "p"}}]
    }));
    let keys = fixture_keys();
    let at = |name: &str| {
        outcome(&run(
            &p,
            "/",
            &[("authorization", &format!("Bearer {}", token(name)))],
            &keys,
        ))
    };
    assert_eq!(at("with_jti"), "401 token_revoked");
    assert_eq!(at("claims"), "401 token_revoked");
    assert_eq!(at("rs256"), "allow");
    // A forged token naming a revoked jti is a bad signature first: revocation is checked
    // only on verified tokens.
    assert_eq!(at("forged_kid"), "401 bad_signature");
}

/// Keys always ready; the remote revocation list in whatever state the test sets.
struct WithList<'a> {
    keys: &'a Keys,
    list: std::cell::RefCell<Option<jwt_edge::authn::revocation::Revocation>>,
    pending: std::cell::Cell<bool>,
    asked: std::cell::Cell<Option<JwksId>>,
}

impl KeyLookup for WithList<'_> {
    fn keys(&self, id: JwksId) -> KeyState<'_> {
        self.keys.keys(id)
    }
    fn revocation_list(&self, id: JwksId) -> jwt_edge::authn::authenticate::ListState<'_> {
        use jwt_edge::authn::authenticate::ListState;
        self.asked.set(Some(id));
        // Leaked for the test's lifetime: the list is swapped between requests.
        match &*self.list.borrow() {
            Some(r) => ListState::Ready(Box::leak(Box::new(r.clone()))),
            None if self.pending.get() => ListState::Pending,
            None => ListState::Unavailable,
        }
    }
}

#[test]
fn remote_revocation_list_is_waited_for_enforced_and_fails_closed() {
    use jwt_edge::authn::authenticate::decide_cached;
    use jwt_edge::authn::policy::{Document, JwksSource};
    use jwt_edge::authn::revocation::parse_revocation_list;
    use jwt_edge::authn::token_cache::TokenCache;
    let p = policy(json!({
        "providers": {"p": remote_provider(json!({
            "revoked": {"sub": ["svc-payments"]},
            "revocation_list": {"http_uri": {"uri": "https://idp.test/revoked.json", "cluster": "idp"}},
            "jwt_cache_config": {"jwt_cache_size": 10}
        }))},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "p"}}]
    }));
    let list_id = p.providers[0].revocation_list.expect("a list source");
    assert_ne!(list_id, p.providers[0].jwks);
    match &p.jwks_sources[list_id] {
        JwksSource::Remote(r) => {
            assert_eq!(r.document, Document::RevocationList);
            assert_eq!(
                (r.cache_duration, r.max_stale_ms),
                (Millis::from_secs(60), Millis(3_600_000))
            );
        }
        other => panic!("{other:?}"),
    }
    let keys = fixture_keys();
    let lookup = WithList {
        keys: &keys,
        list: Default::default(),
        pending: std::cell::Cell::new(true),
        asked: Default::default(),
    };
    let cache = TokenCache::new(p.providers.iter().map(|p| p.jwt_cache_size));
    let at = |name: &str| {
        let h = headers(
            "/",
            &[("authorization", &format!("Bearer {}", token(name)))],
        );
        decide_cached(&p, &RequestView::new(&h, None), &lookup, &cache, NOW)
    };
    // Cold start: a verified token waits for the list (and is verified only once).
    assert_eq!(at("with_jti"), Decision::WaitForKeys(vec![list_id]));
    assert_eq!(lookup.asked.get(), Some(list_id));
    // The inline list needs no wait.
    assert_eq!(outcome(&at("claims")), "401 token_revoked");
    // A forgery is refused before any list is consulted.
    lookup.asked.set(None);
    assert_eq!(outcome(&at("forged_kid")), "401 bad_signature");
    assert_eq!(lookup.asked.get(), None);
    // No list and none coming: fail closed.
    lookup.pending.set(false);
    let d = at("rs256");
    assert_eq!(outcome(&d), "503 revocation_unavailable");
    let Decision::Deny(den) = d else {
        unreachable!()
    };
    assert!(!den.headers.iter().any(|(k, _)| k == "www-authenticate"));
    assert_eq!(
        den.body,
        r#"{"error":"revocation_unavailable","error_description":"the revocation list is not available"}"#
    );
    // The list arrives: with_jti's jti is on it, rs256's is not.
    *lookup.list.borrow_mut() = Some(parse_revocation_list(br#"{"jti":["tok-123"]}"#).unwrap());
    assert_eq!(outcome(&at("with_jti")), "401 token_revoked");
    assert_eq!(outcome(&at("rs256")), "allow");
    let (hits, _) = cache.take_stats();
    assert!(
        hits >= 2,
        "verified once, then served from the cache: {hits}"
    );
    // Revoked later: the cached token is refused on its next hit.
    *lookup.list.borrow_mut() = Some(parse_revocation_list(br#"{"sub":["alice"]}"#).unwrap());
    assert_eq!(
        outcome(&at("rs256")),
        "401 token_revoked",
        "rs256's sub is alice"
    );
    // Un-revoked: accepted again.
    *lookup.list.borrow_mut() = Some(parse_revocation_list(b"{}").unwrap());
    assert_eq!(outcome(&at("rs256")), "allow");
    assert_eq!(outcome(&at("with_jti")), "allow");
}

/// Found by fuzzing: a genuinely signed token for another audience is no identity.
#[test]
fn only_providers_that_met_the_requirement_vouch_for_the_request() {
    let p = policy(json!({
        "providers": {
            "p": remote_provider(json!({"forward_payload_header": "x-jwt-payload"})),
            "q": {"issuer": "https://issuer.test", "audiences": ["other"],
                  "remote_jwks": {"http_uri": {"uri": "https://idp.test/jwks.json", "cluster": "idp", "timeout": "1s"}},
                  "claim_to_headers": [{"header_name": "x-q-sub", "claim_name": "sub"}]}
        },
        "rules": [
            {"match": {"prefix": "/optional"}, "requires": {"allow_missing": {}}},
            {"match": {"prefix": "/lenient"}, "requires": {"allow_missing_or_failed": {}}},
            {"match": {"prefix": "/any"}, "requires": {"requires_any": {"requirements": [{"provider_name": "p"}, {"provider_name": "q"}]}}}
        ]
    }));
    let keys = fixture_keys();
    // aud ["other", "more"]: valid for q, not for p.
    let wrong_for_p = format!("Bearer {}", token("wrong_aud"));
    let set = |path: &str| -> Option<Vec<(String, String)>> {
        match run(&p, path, &[("authorization", &wrong_for_p)], &keys) {
            Decision::Allow(a) => Some(a.set_headers),
            _ => None,
        }
    };
    let names = |h: Vec<(String, String)>| h.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    assert_eq!(
        set("/optional").map(names),
        Some(vec!["x-q-sub".to_string()])
    );
    assert_eq!(
        set("/lenient").map(names),
        Some(vec!["x-q-sub".to_string()])
    );
    assert_eq!(set("/any").map(names), Some(vec!["x-q-sub".to_string()]));
    // With only p configured, allow_missing refuses the token, and allow_missing_or_failed
    // lets the request through without any identity.
    let only_p = policy(json!({
        "providers": {"p": remote_provider(json!({}))},
        "rules": [
            {"match": {"prefix": "/optional"}, "requires": {"allow_missing": {}}},
            {"match": {"prefix": "/lenient"}, "requires": {"allow_missing_or_failed": {}}}
        ]
    }));
    let d = run(
        &only_p,
        "/optional",
        &[("authorization", &wrong_for_p)],
        &keys,
    );
    assert_eq!(outcome(&d), "403 audience_mismatch");
    let Decision::Allow(a) = run(
        &only_p,
        "/lenient",
        &[("authorization", &wrong_for_p)],
        &keys,
    ) else {
        panic!("allow_missing_or_failed passes")
    };
    assert!(a.set_headers.is_empty() && a.identities.is_empty());
    // F4: with `forward: false`, a token the filter looked at does not reach the upstream,
    // even one that vouched for nothing (jwt_authn forwards it: a listed deviation).
    assert_eq!(a.remove_headers, vec!["authorization".to_string()]);
}

/// Found end to end: a cached token must not outlive the usability of its key set.
#[test]
fn cached_tokens_need_usable_keys() {
    use jwt_edge::authn::authenticate::decide_cached;
    use jwt_edge::authn::token_cache::TokenCache;
    let p = policy(json!({
        "providers": {"p": remote_provider(json!({"jwt_cache_config": {"jwt_cache_size": 4}}))},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "p"}}]
    }));
    let cache = TokenCache::new(p.providers.iter().map(|p| p.jwt_cache_size));
    let auth = format!("Bearer {}", token("rs256"));
    let h = headers("/", &[("authorization", &auth)]);
    let req = RequestView::new(&h, None);
    assert_eq!(
        outcome(&decide_cached(&p, &req, &fixture_keys(), &cache, NOW)),
        "allow"
    );
    assert_eq!(
        outcome(&decide_cached(&p, &req, &NoKeys(false), &cache, NOW)),
        "503 jwks_unavailable"
    );
    assert_eq!(
        outcome(&decide_cached(&p, &req, &NoKeys(true), &cache, NOW)),
        "wait"
    );
    assert_eq!(
        cache.take_stats(),
        (0, 1),
        "no lookups while keys are unusable"
    );
}

/// What a decision did, in one line: the outcome, then (for an allowed request) the
/// identity headers set and the token locations cleared.
fn summary(d: &Decision) -> String {
    match d {
        Decision::Allow(a) => {
            let mut set: Vec<String> = a
                .set_headers
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            set.sort();
            let mut removed = a.remove_headers.clone();
            if let Some(path) = &a.new_path {
                removed.push(format!(":path={path}"));
            }
            format!(
                "allow set[{}] removed[{}]",
                set.join(" "),
                removed.join(" ")
            )
        }
        other => outcome(other),
    }
}

fn table(p: &Policy, cases: &[(&str, Vec<(&str, String)>, &str)], why: &str) {
    let keys = fixture_keys();
    for (path, extra, want) in cases {
        let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(
            summary(&run(p, path, &extra, &keys)),
            *want,
            "{why}: {path} {extra:?}"
        );
    }
}

/// Issue #19.1 / F4: a token that is present must be valid. jwt_authn's answers (Envoy 1.40,
/// measured by integration-tests/test_jwt_authn_parity.py) are in the comments.
#[test]
fn a_present_token_must_be_valid() {
    let located = |loc: Value, header: &str| {
        let mut p = remote_provider(loc);
        p["claim_to_headers"] = json!([{"header_name": header, "claim_name": "sub"}]);
        p
    };
    let p = policy(json!({
        "providers": {
            "corp": located(json!({"from_headers": [{"name": "x-corp-token"}]}), "x-corp-sub"),
            "partner": located(json!({"from_params": ["access_token"]}), "x-partner-sub")
        },
        "rules": [
            {"match": {"prefix": "/optional"}, "requires": {"allow_missing": {}}},
            {"match": {"prefix": "/any"}, "requires": {"requires_any": {"requirements": [
                {"provider_name": "corp"}, {"provider_name": "partner"}]}}},
            {"match": {"prefix": "/lenient"}, "requires": {"allow_missing_or_failed": {}}}
        ]
    }));
    let good = token("rs256");
    let corp = |t: &str| ("x-corp-token", t.to_owned());
    let optional = format!("/optional?access_token={good}");
    let any = format!("/any?access_token={good}");
    let lenient = format!("/lenient?access_token={good}&x=1");
    let cases: Vec<(&str, Vec<(&str, String)>, &str)> = vec![
        // jwt_authn: 401 "Jwt is expired" (was 200 here, with the expired token forwarded).
        (
            &optional,
            vec![corp(&token("expired"))],
            "401 token_expired",
        ),
        (
            &optional,
            vec![corp(&token("forged_kid"))],
            "401 bad_signature",
        ),
        (
            &optional,
            vec![],
            "allow set[x-partner-sub=alice] removed[:path=/optional]",
        ),
        // jwt_authn: 200 (the first branch passes); here refused: a listed deviation.
        (&any, vec![corp(&token("expired"))], "401 token_expired"),
        (
            "/any",
            vec![corp(&good)],
            "allow set[x-corp-sub=alice] removed[x-corp-token]",
        ),
        // allow_missing_or_failed lets the bad token pass but never forwards it (forward: false).
        (
            &lenient,
            vec![corp(&token("expired"))],
            "allow set[x-partner-sub=alice] removed[x-corp-token :path=/lenient?x=1]",
        ),
        ("/lenient", vec![], "allow set[] removed[]"),
    ];
    table(&p, &cases, "two providers");

    // `Bearer<TAB>token` is a malformed credential, not "no token".
    let d = policy(json!({
        "providers": {"p": remote_provider(json!({}))},
        "rules": [
            {"match": {"prefix": "/optional"}, "requires": {"allow_missing": {}}},
            {"match": {"prefix": "/lenient"}, "requires": {"allow_missing_or_failed": {}}}
        ]
    }));
    let tab = format!("Bearer\t{good}");
    let cases: Vec<(&str, Vec<(&str, String)>, &str)> = vec![
        // jwt_authn: 200 with the header forwarded (it sees no token): a listed deviation.
        (
            "/optional",
            vec![("authorization", tab.clone())],
            "401 token_malformed",
        ),
        (
            "/lenient",
            vec![("authorization", tab.clone())],
            "allow set[] removed[authorization]",
        ),
        (
            "/lenient",
            vec![("authorization", "Basic dXNlcjpwYXNz".into())],
            "allow set[] removed[]",
        ),
    ];
    table(&d, &cases, "Bearer<TAB>");
}

/// Issue #19.2: a rule's header matcher on a repeated header, as Envoy 1.40 matches it (any
/// value matches; a value matcher never matches an absent header, even inverted).
#[test]
fn header_matchers_on_repeated_headers() {
    let rule = |prefix: &str, matcher: Value| json!({"match": {"prefix": prefix, "headers": [matcher]}, "requires": {"provider_name": "p"}});
    let p = policy(json!({
        "providers": {"p": remote_provider(json!({}))},
        "rules": [
            rule("/exact", json!({"name": "x-tenant", "string_match": {"exact": "t1"}})),
            rule("/not-t1", json!({"name": "x-tenant", "string_match": {"exact": "t1"}, "invert_match": true})),
            rule("/present", json!({"name": "x-tenant", "present_match": true})),
            rule("/absent", json!({"name": "x-tenant", "present_match": false})),
            rule("/inv-present", json!({"name": "x-tenant", "present_match": true, "invert_match": true})),
            rule("/prefix", json!({"name": "x-tenant", "prefix_match": "t"}))
        ]
    }));
    let t = |vs: &[&str]| {
        vs.iter()
            .map(|v| ("x-tenant", v.to_string()))
            .collect::<Vec<_>>()
    };
    let need = "401 token_missing";
    let free = "allow set[] removed[]";
    // The answers are jwt_authn's (Envoy 1.40), measured.
    let cases: Vec<(&str, Vec<(&str, String)>, &str)> = vec![
        ("/exact", t(&["t1"]), need),
        ("/exact", t(&["t1", "t2"]), need),
        ("/exact", t(&["t2", "t1"]), need),
        ("/exact", t(&["t2"]), free),
        ("/exact", t(&["t1,t2"]), free),
        ("/exact", t(&[]), free),
        ("/not-t1", t(&["t1"]), free),
        ("/not-t1", t(&["t1", "t2"]), free),
        ("/not-t1", t(&["t2"]), need),
        ("/not-t1", t(&[]), free),
        ("/present", t(&[]), free),
        ("/present", t(&["a", "b"]), need),
        ("/present", t(&[""]), need),
        ("/absent", t(&[]), need),
        ("/absent", t(&["a"]), free),
        ("/inv-present", t(&[]), need),
        ("/inv-present", t(&["a"]), free),
        ("/prefix", t(&["x", "t9"]), need),
        ("/prefix", t(&[""]), free),
    ];
    table(&p, &cases, "header matcher");
}

/// Issue #19.3: `allow_missing` / `allow_missing_or_failed` inside `requires_any` consider
/// only their siblings' providers (jwt_authn since Envoy PR #15194).
#[test]
fn allow_missing_in_requires_any_sees_only_its_siblings() {
    let mut svc = remote_provider(json!({"issuer": "https://svc.test"}));
    svc["claim_to_headers"] = json!([{"header_name": "x-svc-sub", "claim_name": "sub"}]);
    let mut other = remote_provider(json!({}));
    other["claim_to_headers"] = json!([{"header_name": "x-other-sub", "claim_name": "sub"}]);
    let any_with = |bypass: &str| json!({"requires_any": {"requirements": [{"provider_name": "svc"}, {bypass: {}}]}});
    let p = policy(json!({
        "providers": {"svc": svc, "other": other},
        "rules": [
            {"match": {"prefix": "/svc-or-missing"}, "requires": any_with("allow_missing")},
            {"match": {"prefix": "/svc-or-failed"}, "requires": any_with("allow_missing_or_failed")},
            {"match": {"prefix": "/optional"}, "requires": {"allow_missing": {}}}
        ]
    }));
    // A valid token of `other`'s issuer, in the location svc reads.
    let other_token = vec![("authorization", format!("Bearer {}", token("rs256")))];
    let cases: Vec<(&str, Vec<(&str, String)>, &str)> = vec![
        // jwt_authn: 401 "Jwt issuer is not configured" (was 200 with other's identity).
        (
            "/svc-or-missing",
            other_token.clone(),
            "401 issuer_mismatch",
        ),
        ("/svc-or-missing", vec![], "allow set[] removed[]"),
        // jwt_authn: 200 without other's identity (and the token forwarded: here removed,
        // svc has forward: false; a listed deviation).
        (
            "/svc-or-failed",
            other_token.clone(),
            "allow set[] removed[authorization]",
        ),
        // Top level: every provider, as jwt_authn.
        (
            "/optional",
            other_token.clone(),
            "allow set[x-other-sub=alice] removed[authorization]",
        ),
    ];
    table(&p, &cases, "allow_missing scope");
}

/// Issue #19.4 / F9: claim headers in jwt_authn's format by default, the joined form on
/// request (unambiguous).
#[test]
fn claim_header_formats() {
    let mut p = remote_provider(json!({}));
    p["claim_to_headers"] = json!([
        {"header_name": "x-sub", "claim_name": "sub"},
        {"header_name": "x-roles", "claim_name": "roles"},
        {"header_name": "x-org", "claim_name": "org"},
        {"header_name": "x-org-id", "claim_name": "org.id"},
        {"header_name": "x-admin", "claim_name": "admin"},
        {"header_name": "x-roles-joined", "claim_name": "roles", "value_format": "joined"},
        {"header_name": "x-org-joined", "claim_name": "org", "value_format": "joined"}
    ]);
    let pol = policy(json!({
        "providers": {"p": p},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "p"}}]
    }));
    let auth = vec![("authorization", format!("Bearer {}", token("claims")))];
    let cases: Vec<(&str, Vec<(&str, String)>, &str)> = vec![(
        "/",
        auth,
        // `{"id":7,"name":"acme"}` and `["a","b"]` as standard padded base64.
        "allow set[x-admin=true x-org-id=7 x-org=eyJpZCI6NywibmFtZSI6ImFjbWUifQ== \
         x-roles-joined=a,b x-roles=WyJhIiwiYiJd x-sub=svc-payments] removed[authorization]",
    )];
    table(&pol, &cases, "claim formats");
}
