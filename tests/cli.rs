//! The `jwt-edge` binary end to end: keygen → jwks → mint → explain round trips, explain's
//! denials and its promise never to print a token, check-config on every shipped example and
//! invalid case, warnings, and bad arguments.
//!
//! Keys are generated per test run (only their round trip is asserted), except in the
//! cross-checks, which use the committed PEM keys and JWKS in `integration-tests/fixtures/`.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_jwt-edge");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// A fixed clock: 2027-01-15T08:00:00Z.
const NOW: u64 = 1_800_000_000;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

fn run_with(args: &[&str], stdin: Option<&str>) -> Run {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    let r = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    };
    assert!(
        !r.stderr.contains("panicked"),
        "{args:?} panicked: {}",
        r.stderr
    );
    r
}

fn run(args: &[&str]) -> Run {
    run_with(args, None)
}

/// A fresh directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn fixture(name: &str) -> String {
    format!("{ROOT}/integration-tests/fixtures/{name}")
}

/// A remote-JWKS provider config (keys come from `explain --jwks`).
fn remote_config(dir: &Path, name: &str, extra: Value) -> PathBuf {
    let mut provider = json!({
        "issuer": "https://issuer.test",
        "audiences": ["api"],
        "remote_jwks": {"http_uri": {"uri": "https://idp.test/jwks.json", "cluster": "idp", "timeout": "1s"}},
        "claim_to_headers": [{"header_name": "x-jwt-sub", "claim_name": "sub"}]
    });
    for (k, v) in extra.as_object().unwrap() {
        provider[k] = v.clone();
    }
    let cfg = json!({
        "providers": {"p": provider},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "p"}}]
    });
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, cfg.to_string()).unwrap();
    path
}

fn mint(key: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "mint",
        "--key",
        key,
        "--iss",
        "https://issuer.test",
        "--aud",
        "api",
    ];
    if !extra.contains(&"--sub") {
        args.extend(["--sub", "alice"]);
    }
    if !extra.contains(&"--now") {
        args.extend(["--now", "1800000000"]);
    }
    args.extend_from_slice(extra);
    let r = run(&args);
    assert_eq!(r.code, 0, "mint failed: {}", r.stderr);
    let token = r.stdout.trim().to_owned();
    assert_eq!(token.split('.').count(), 3, "{token}");
    token
}

fn explain(config: &Path, token: &str, jwks: Option<&str>, extra: &[&str]) -> Run {
    let mut args = vec![
        "explain",
        "--config",
        s(config),
        "--token",
        token,
        "--now",
        "1800000100",
    ];
    if let Some(j) = jwks {
        args.extend(["--jwks", j]);
    }
    args.extend_from_slice(extra);
    let r = run(&args);
    assert_no_secret(&r, token);
    r
}

/// Neither the token nor its signature segment appears anywhere in the output.
fn assert_no_secret(r: &Run, token: &str) {
    let all = r.all();
    assert!(!all.contains(token), "token printed:\n{all}");
    let sig = token.rsplit('.').next().unwrap();
    assert!(!all.contains(sig), "signature printed:\n{all}");
}

#[test]
fn round_trip_keygen_jwks_mint_explain() {
    let dir = scratch("roundtrip");
    for (alg, bits) in [
        ("RS256", None),
        ("PS256", Some("3072")),
        ("ES256", None),
        ("ES384", None),
        ("EdDSA", None),
    ] {
        let key = dir.join(format!("{alg}.pem"));
        let mut args = vec!["keygen", "--alg", alg, "--out", s(&key)];
        if let Some(b) = bits {
            args.extend(["--bits", b]);
        }
        let gen = run(&args);
        assert_eq!(gen.code, 0, "{alg}: {}", gen.stderr);
        let kid = gen.stdout.trim().to_owned();
        assert_eq!(kid.len(), 43, "{alg}: kid is a SHA-256 thumbprint: {kid}");
        let pem = std::fs::read_to_string(&key).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{alg}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{alg}: private key readable by others");
        }

        let jwks = run(&["jwks", "--alg", alg, s(&key)]);
        assert_eq!(jwks.code, 0, "{alg}: {}", jwks.stderr);
        let doc: Value = serde_json::from_str(&jwks.stdout).unwrap();
        let jwk = &doc["keys"][0];
        assert_eq!(
            jwk["kid"],
            kid.as_str(),
            "{alg}: jwks and keygen agree on the kid"
        );
        assert_eq!(jwk["alg"], alg);
        assert_eq!(jwk["use"], "sig");
        assert!(jwk.get("d").is_none(), "{alg}: private member exported");
        let jwks_path = dir.join(format!("{alg}.jwks.json"));
        std::fs::write(&jwks_path, &jwks.stdout).unwrap();

        // Remote provider, keys from --jwks.
        let cfg = remote_config(&dir, "config", json!({}));
        let token = mint(s(&key), &["--alg", alg]);
        let header: Value =
            serde_json::from_slice(&b64url(token.split('.').next().unwrap())).unwrap();
        assert_eq!(
            header["kid"],
            kid.as_str(),
            "{alg}: mint and keygen agree on the kid"
        );
        let r = explain(&cfg, &token, Some(s(&jwks_path)), &[]);
        assert_eq!(r.code, 0, "{alg}:\n{}", r.all());
        assert!(r.stdout.contains("decision: ALLOW"), "{alg}:\n{}", r.stdout);
        assert!(r.stdout.contains("[ok]   signature: verified"), "{alg}");
        assert!(
            r.stdout.contains("set header x-jwt-sub: \"alice\""),
            "{alg}"
        );
        assert!(r.stdout.contains("remove header authorization"), "{alg}");

        // The same key set inline (local_jwks): no --jwks needed.
        let local = json!({
            "providers": {"p": {
                "issuer": "https://issuer.test",
                "audiences": ["api"],
                "local_jwks": {"inline_string": jwks.stdout}
            }},
            "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "p"}}]
        });
        let local_path = dir.join(format!("{alg}.local.json"));
        std::fs::write(&local_path, local.to_string()).unwrap();
        let r = explain(&local_path, &token, None, &[]);
        assert_eq!(r.code, 0, "{alg} local:\n{}", r.all());
    }
}

fn b64url(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

#[test]
fn cross_check_with_committed_fixture_keys() {
    // Tokens minted by the CLI with the committed PEM keys verify against the committed
    // (Python-made) JWKS: the signatures and the key export agree with another implementation.
    let dir = scratch("cross");
    let cfg = remote_config(&dir, "config", json!({}));
    let jwks = fixture("jwks.json");
    let published: Value = serde_json::from_str(&std::fs::read_to_string(&jwks).unwrap()).unwrap();
    for (pem, kid, algs) in [
        (
            "rsa-1.pem",
            "rsa-1",
            &["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"][..],
        ),
        ("ec-p256.pem", "ec-p256", &["ES256"]),
        ("ec-p384.pem", "ec-p384", &["ES384"]),
        ("ed-1.pem", "ed-1", &["EdDSA"]),
    ] {
        for alg in algs {
            let token = mint(&fixture(pem), &["--alg", alg, "--kid", kid]);
            let r = explain(&cfg, &token, Some(&jwks), &[]);
            assert_eq!(r.code, 0, "{pem} {alg}:\n{}", r.all());
            assert!(r.stdout.contains("decision: ALLOW"), "{pem} {alg}");
        }
        // `jwks` exports the same public members the committed set has.
        let ours = run(&["jwks", "--kid", kid, &fixture(pem)]);
        assert_eq!(ours.code, 0, "{}", ours.stderr);
        let ours: Value = serde_json::from_str(&ours.stdout).unwrap();
        let theirs = published["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid)
            .unwrap();
        for member in ["kty", "crv", "n", "e", "x", "y"] {
            assert_eq!(
                ours["keys"][0].get(member),
                theirs.get(member),
                "{pem} {member}"
            );
        }
    }
}

#[test]
fn explain_denials_carry_the_right_code() {
    let dir = scratch("deny");
    let cfg = remote_config(&dir, "config", json!({}));
    let jwks = fixture("jwks.json");
    let rsa = fixture("rsa-1.pem");
    let kid = ["--kid", "rsa-1"];

    // Expired: minted a day before the explain clock.
    let expired = run(&[
        "mint",
        "--key",
        &rsa,
        "--kid",
        "rsa-1",
        "--iss",
        "https://issuer.test",
        "--aud",
        "api",
        "--now",
        "1799900000",
        "--ttl",
        "1h",
    ]);
    let token = expired.stdout.trim();
    let r = explain(&cfg, token, Some(&jwks), &[]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stdout.contains("decision: DENY 401 token_expired"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("[FAIL] time: token_expired"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("error=\"invalid_token\""), "{}", r.stdout);

    // Wrong audience: 403.
    let token = run(&[
        "mint",
        "--key",
        &rsa,
        "--kid",
        "rsa-1",
        "--iss",
        "https://issuer.test",
        "--aud",
        "other",
        "--now",
        "1800000000",
    ])
    .stdout
    .trim()
    .to_owned();
    let r = explain(&cfg, &token, Some(&jwks), &[]);
    assert_eq!(r.code, 1);
    assert!(
        r.stdout.contains("decision: DENY 403 audience_mismatch"),
        "{}",
        r.stdout
    );

    // Forged: signed by another key under a published kid.
    let token = mint(&fixture("rsa-evil.pem"), &kid);
    let r = explain(&cfg, &token, Some(&jwks), &[]);
    assert_eq!(r.code, 1);
    assert!(
        r.stdout.contains("decision: DENY 401 bad_signature"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("[FAIL] signature: bad_signature"),
        "{}",
        r.stdout
    );

    // Tampered payload of a genuine token.
    let good = mint(&rsa, &kid);
    let parts: Vec<&str> = good.split('.').collect();
    let evil_payload = {
        use base64::Engine;
        let mut claims: Value = serde_json::from_slice(&b64url(parts[1])).unwrap();
        claims["sub"] = json!("admin");
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string())
    };
    let tampered = format!("{}.{}.{}", parts[0], evil_payload, parts[2]);
    let r = explain(&cfg, &tampered, Some(&jwks), &[]);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("bad_signature"), "{}", r.stdout);

    // Unknown kid.
    let token = mint(&rsa, &["--kid", "nope"]);
    let r = explain(&cfg, &token, Some(&jwks), &[]);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("DENY 401 unknown_kid"), "{}", r.stdout);

    // Wrong issuer.
    let token = run(&[
        "mint",
        "--key",
        &rsa,
        "--kid",
        "rsa-1",
        "--iss",
        "https://evil.test",
        "--aud",
        "api",
        "--now",
        "1800000000",
    ])
    .stdout
    .trim()
    .to_owned();
    let r = explain(&cfg, &token, Some(&jwks), &[]);
    assert!(
        r.stdout.contains("DENY 401 issuer_mismatch"),
        "{}",
        r.stdout
    );

    // Alg off the allow-list.
    let cfg_rs = remote_config(&dir, "es-only", json!({"algorithms": ["ES256"]}));
    let r = explain(&cfg_rs, &good, Some(&jwks), &[]);
    assert!(
        r.stdout.contains("DENY 401 alg_not_allowed"),
        "{}",
        r.stdout
    );

    // No keys without --jwks: 503, and no WWW-Authenticate.
    let r = explain(&cfg, &good, None, &[]);
    assert_eq!(r.code, 1);
    assert!(
        r.stdout.contains("DENY 503 jwks_unavailable"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("keys unavailable"), "{}", r.stdout);

    // No token at all.
    let r = run(&[
        "explain",
        "--config",
        s(&cfg),
        "--jwks",
        &jwks,
        "--now",
        "1800000000",
    ]);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("DENY 401 token_missing"), "{}", r.stdout);
    assert!(
        r.stdout.contains("Bearer realm=\"https://localhost/\""),
        "{}",
        r.stdout
    );

    // Not a JWS.
    let r = explain(&cfg, "not-a-token", Some(&jwks), &[]);
    assert_eq!(r.code, 1);
    assert!(
        r.stdout.contains("DENY 401 token_malformed"),
        "{}",
        r.stdout
    );
}

#[test]
fn explain_follows_rules_routes_and_locations() {
    let dir = scratch("routes");
    let jwks = fixture("jwks.json");
    let token = mint(
        &fixture("ec-p256.pem"),
        &["--kid", "ec-p256", "--alg", "ES256"],
    );
    let cfg = json!({
        "providers": {"p": {
            "issuer": "https://issuer.test",
            "remote_jwks": {"http_uri": {"uri": "https://idp.test/jwks.json", "cluster": "idp"}},
            "from_params": ["jwt"],
            "claim_to_headers": [{"header_name": "x-user", "claim_name": "sub"}]
        }},
        "requirement_map": {"user": {"provider_name": "p"}, "open": {"allow_missing_or_failed": {}}},
        "per_route": {"docs": {"disabled": true}, "catalog": {"requirement_name": "open"}},
        "rules": [
            {"match": {"prefix": "/healthz"}},
            {"match": {"prefix": "/"}, "requirement_name": "user"}
        ]
    });
    let path = dir.join("config.json");
    std::fs::write(&path, cfg.to_string()).unwrap();

    let r = explain(&path, &token, Some(&jwks), &["--path", "/orders?x=1"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        r.stdout
            .contains("rules[1] prefix \"/\" matched → requirement \"user\""),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("placed in query parameter \"jwt\""),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("set :path \"/orders?x=1\""),
        "{}",
        r.stdout
    );

    let r = explain(&path, &token, Some(&jwks), &["--path", "/healthz"]);
    assert!(
        r.stdout
            .contains("rules[0] prefix \"/healthz\" matched → no token required"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("decision: ALLOW (no requirement applies)"),
        "{}",
        r.stdout
    );

    let r = explain(&path, "garbage", Some(&jwks), &["--route-name", "catalog"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("per_route \"catalog\""), "{}", r.stdout);

    let r = explain(&path, "garbage", None, &["--route-name", "docs"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("disabled"), "{}", r.stdout);

    // A client-sent identity header is reported as stripped.
    let r = explain(&path, &token, Some(&jwks), &["--header", "X-User: mallory"]);
    assert!(r.stdout.contains("header x-user removed"), "{}", r.stdout);

    // The token read from a file, with a Bearer prefix and a trailing newline.
    let token_file = dir.join("token.txt");
    std::fs::write(&token_file, format!("Bearer {token}\n")).unwrap();
    let at = format!("@{}", s(&token_file));
    let r = run(&[
        "explain",
        "--config",
        s(&path),
        "--token",
        &at,
        "--jwks",
        &jwks,
        "--now",
        "1800000100",
    ]);
    assert_no_secret(&r, &token);
    assert_eq!(r.code, 0, "{}", r.all());
}

#[test]
fn explain_never_prints_the_token_or_signature() {
    let dir = scratch("secret");
    let jwks = fixture("jwks.json");
    let token = mint(&fixture("rsa-1.pem"), &["--kid", "rsa-1"]);
    let expired = mint(
        &fixture("rsa-1.pem"),
        &["--kid", "rsa-1", "--now", "1000000000"],
    );
    let forged = mint(&fixture("rsa-evil.pem"), &["--kid", "rsa-1"]);
    let configs = [
        remote_config(&dir, "c0", json!({})),
        remote_config(
            &dir,
            "c1",
            json!({"forward": true, "forward_payload_header": "x-payload"}),
        ),
        remote_config(
            &dir,
            "c2",
            json!({"from_params": ["t"], "forward_payload_header": "x-payload", "pad_forward_payload_header": true}),
        ),
        remote_config(&dir, "c3", json!({"from_cookies": ["session"]})),
    ];
    for cfg in &configs {
        for t in [&token, &expired, &forged] {
            for extra in [&[][..], &["--header", "x-debug: 1"][..]] {
                let r = explain(cfg, t, Some(&jwks), extra);
                assert!(r.stdout.contains("decision:"), "{}", r.all());
                assert!(r.stdout.contains("sha256:"), "fingerprint shown");
            }
        }
    }
    // The token given again in a header of its own, and as a query parameter in --path.
    let cfg = dir.join("c0.json");
    let auth = format!("authorization: Bearer {token}");
    let r = run(&[
        "explain",
        "--config",
        s(&cfg),
        "--jwks",
        &jwks,
        "--header",
        &auth,
    ]);
    assert_no_secret(&r, &token);
    let p = format!("/x?access_token={token}");
    let r = run(&[
        "explain",
        "--config",
        s(&cfg),
        "--jwks",
        &jwks,
        "--path",
        &p,
    ]);
    assert_no_secret(&r, &token);
}

#[test]
fn check_config_lists_published_entries() {
    let path = format!("{ROOT}/filter-config/examples/access-log.json");
    let r = run(&["check-config", &path]);
    assert_eq!(r.code, 0, "{}", r.all());
    let line = "published per request (Envoy filter state wasm.<name>): \
                jwt_payload (payload of \"main\"), jwt_header (JOSE header of \"main\"), \
                jwt_outcome (outcome)";
    assert!(r.stdout.lines().any(|l| l == line), "{}", r.stdout);
    let plain = run(&[
        "check-config",
        &format!("{ROOT}/filter-config/examples/claim-headers.json"),
    ]);
    assert!(!plain.stdout.contains("published"), "{}", plain.stdout);
}

#[test]
fn check_config_accepts_every_example() {
    let dir = format!("{ROOT}/filter-config/examples");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let r = run(&["check-config", s(&path)]);
        assert_eq!(r.code, 0, "{}: {}", path.display(), r.all());
        assert!(r.stdout.contains(": valid"), "{}", r.stdout);
        assert!(r.stdout.contains("providers ("), "{}", r.stdout);
        for line in r.stderr.lines() {
            assert!(line.starts_with("warning: "), "{}: {line}", path.display());
        }
        n += 1;
    }
    assert!(n >= 5, "only {n} examples");
}

#[test]
fn check_config_refuses_every_invalid_case_with_its_path() {
    let dir = scratch("invalid");
    let cases = format!("{ROOT}/filter-config/invalid");
    let mut n = 0;
    for entry in std::fs::read_dir(&cases).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let case: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let text = match &case["config"] {
            Value::String(raw) => raw.clone(),
            other => other.to_string(),
        };
        let file = dir.join(path.file_name().unwrap());
        std::fs::write(&file, &text).unwrap();
        let expect_path = case["expect_path"].as_str().unwrap();
        let r = run(&["check-config", s(&file)]);
        assert_eq!(r.code, 1, "{}: {}", path.display(), r.all());
        assert!(
            r.stderr.starts_with(&format!("error: {expect_path}: ")),
            "{}: expected path {expect_path}, got {}",
            path.display(),
            r.stderr
        );
        assert_eq!(
            r.stderr.lines().count(),
            1,
            "{}: one line: {}",
            path.display(),
            r.stderr
        );
        if let Some(msg) = case["expect_message_contains"].as_str() {
            assert!(r.stderr.contains(msg), "{}: {}", path.display(), r.stderr);
        }
        // The same through stdin.
        let r = run_with(&["check-config", "-"], Some(&text));
        assert_eq!(r.code, 1, "{} via stdin", path.display());
        n += 1;
    }
    assert!(n >= 10, "only {n} invalid cases");
}

#[test]
fn check_config_warnings() {
    let dir = scratch("warn");
    let risky = json!({
        "providers": {
            "loose": {
                "local_jwks": {"inline_string": "{\"keys\":[{\"kty\":\"oct\",\"k\":\"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0\"}]}"},
                "algorithms": ["HS256"],
                "forward": true,
                "require_expiration": false,
                "clock_skew_seconds": 600,
                "sender_constraint": {"dpop": "optional", "mtls": "optional"}
            },
            "cached": {
                "issuer": "https://issuer.test",
                "audiences": ["api"],
                "remote_jwks": {
                    "http_uri": {"uri": "https://idp.test/jwks", "cluster": "idp"},
                    "cache_duration": "172800s"
                },
                "revocation_list": {
                    "http_uri": {"uri": "https://idp.test/revoked", "cluster": "idp"},
                    "max_stale": "86400s"
                }
            }
        },
        "requirement_map": {"open": {"requires_any": {"requirements": [
            {"provider_name": "cached"}, {"allow_missing_or_failed": {}}
        ]}}},
        "per_route": {"public": {"requirement_name": "open"}},
        "rules": [
            {"match": {"prefix": "/a"}, "requires": {"allow_missing_or_failed": {}}},
            {"match": {"prefix": "/"}, "requirement_name": "open"}
        ]
    });
    let path = dir.join("risky.json");
    std::fs::write(&path, risky.to_string()).unwrap();
    let r = run(&["check-config", s(&path)]);
    assert_eq!(r.code, 0, "{}", r.all());
    for want in [
        "warning: providers.loose.issuer: ",
        "warning: providers.loose.audiences: ",
        "warning: providers.loose.algorithms[0]: HS256",
        "warning: providers.loose.forward: ",
        "warning: providers.loose.require_expiration: ",
        "warning: providers.loose.clock_skew_seconds: 600",
        "warning: providers.loose.sender_constraint.dpop: \"optional\": unbound Bearer",
        "warning: providers.loose.sender_constraint.mtls: \"optional\": tokens without cnf.x5t#S256",
        "warning: providers.cached.remote_jwks.cache_duration: 2d",
        "warning: providers.cached.revocation_list: cache_duration + max_stale is 1d: a newly revoked",
        "warning: rules[0].requires.allow_missing_or_failed: ",
        "warning: requirement_map.open.requires_any.requirements[1].allow_missing_or_failed: ",
        "warning: rules[1].requirement_name: ",
        "warning: per_route.public.requirement_name: ",
    ] {
        assert!(
            r.stderr.contains(want),
            "missing {want:?} in:\n{}",
            r.stderr
        );
    }
    assert!(r.stdout.contains("warnings: 14"), "{}", r.stdout);
    assert!(
        r.stdout.contains("remote revocation lists: 1"),
        "{}",
        r.stdout
    );
    assert_eq!(run(&["check-config", "--strict", s(&path)]).code, 2);
    let quiet = run(&["check-config", "--quiet", s(&path)]);
    assert!(quiet.stdout.is_empty(), "{}", quiet.stdout);

    // A tight config: no warnings, and --strict passes.
    let tight = format!("{ROOT}/filter-config/examples/remote-jwks.json");
    let r = run(&["check-config", "--strict", &tight]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stderr.is_empty(), "{}", r.stderr);
    assert!(r.stdout.contains("warnings: 0"), "{}", r.stdout);
}

#[test]
fn bad_arguments_are_clear_one_line_errors() {
    let dir = scratch("badargs");
    let not_pem = dir.join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let rsa = fixture("rsa-1.pem");
    let cfg = remote_config(&dir, "config", json!({}));
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec![], "no command"),
        (vec!["frobnicate"], "unknown command"),
        (vec!["check-config"], "give a config FILE"),
        (
            vec!["check-config", "/nonexistent.json"],
            "cannot read /nonexistent.json",
        ),
        (
            vec!["check-config", "--bogus", "x"],
            "unknown option --bogus",
        ),
        (vec!["check-config", "a", "b"], "unexpected argument"),
        (vec!["explain"], "--config is required"),
        (
            vec!["explain", "--config", s(&cfg), "--now", "soon"],
            "--now: \"soon\" is not",
        ),
        (
            vec!["explain", "--config", s(&cfg), "--jwks", s(&not_pem)],
            "--jwks",
        ),
        (vec!["explain", "--config", s(&not_pem)], "--config"),
        (
            vec!["explain", "--config", s(&cfg), "--header", "nocolon"],
            "expected 'name: value'",
        ),
        (
            vec!["explain", "--config", s(&cfg), "--token", "@/nonexistent"],
            "cannot read /nonexistent",
        ),
        (
            vec!["explain", "--config", s(&cfg), "--token"],
            "--token needs a value",
        ),
        (
            vec!["keygen", "--alg", "HS256", "--out", "x.pem"],
            "shared secret",
        ),
        (
            vec!["keygen", "--alg", "none", "--out", "x.pem"],
            "not an algorithm",
        ),
        (
            vec![
                "keygen", "--alg", "RS256", "--bits", "1024", "--out", "x.pem",
            ],
            "--bits must be",
        ),
        (
            vec![
                "keygen", "--alg", "ES256", "--bits", "2048", "--out", "x.pem",
            ],
            "RSA keys only",
        ),
        (vec!["keygen", "--alg", "ES256"], "--out is required"),
        (vec!["jwks"], "at least one KEY.pem"),
        (vec!["jwks", s(&not_pem)], "not a PEM file"),
        (vec!["jwks", "/nonexistent.pem"], "cannot read key"),
        (
            vec!["jwks", "--kid", "a", "--kid", "b", &rsa],
            "2 --kid values for 1 key files",
        ),
        (vec!["jwks", "--alg", "ES256", &rsa], "does not fit"),
        (
            vec!["mint", "--key", &rsa, "--alg", "ES256"],
            "cannot sign ES256",
        ),
        (vec!["mint", "--key", &rsa, "--ttl", "forever"], "--ttl"),
        (
            vec!["mint", "--key", &rsa, "--claim", "novalue"],
            "NAME=VALUE",
        ),
        (
            vec!["mint", "--key", &rsa, "--claims-json", "[1]"],
            "JSON object",
        ),
        (
            vec!["mint", "--key", &rsa, "--claims-json", "{"],
            "not valid JSON",
        ),
        (vec!["mint", "--key", s(&not_pem)], "not a PEM file"),
        (vec!["mint"], "--key is required"),
    ];
    for (args, want) in cases {
        let r = run(&args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.all());
        let last = r.stderr.lines().last().unwrap_or("");
        assert!(last.starts_with("error: "), "{args:?}: {}", r.stderr);
        assert!(last.contains(want), "{args:?}: want {want:?} in {last:?}");
    }
    // A key file is never overwritten.
    let r = run(&["keygen", "--alg", "ES256", "--out", &rsa]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("already exists"), "{}", r.stderr);
}

#[test]
fn help_and_version() {
    let r = run(&["--help"]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("Commands:"));
    let r = run(&["--version"]);
    assert_eq!(r.code, 0);
    assert_eq!(
        r.stdout.trim(),
        format!("jwt-edge {}", env!("CARGO_PKG_VERSION"))
    );
    for cmd in ["check-config", "explain", "keygen", "jwks", "mint"] {
        let r = run(&[cmd, "--help"]);
        assert_eq!(r.code, 0, "{cmd}");
        assert!(
            r.stdout.starts_with(&format!("Usage: jwt-edge {cmd}")),
            "{cmd}: {}",
            r.stdout
        );
    }
}

#[test]
fn mint_claims() {
    let rsa = fixture("rsa-1.pem");
    let token = mint(
        &rsa,
        &[
            "--aud",
            "b",
            "--scope",
            "read write",
            "--ttl",
            "90m",
            "--claim",
            "admin=true",
            "--claim",
            "n=42",
            "--claim",
            "name=Alice",
            "--claim",
            "obj={\"a\":[1]}",
            "--claims-json",
            "{\"tenant\":\"t1\",\"sub\":\"bob\"}",
        ],
    );
    let claims: Value = serde_json::from_slice(&b64url(token.split('.').nth(1).unwrap())).unwrap();
    assert_eq!(claims["iat"], NOW);
    assert_eq!(claims["exp"], NOW + 5400);
    assert_eq!(claims["aud"], json!(["api", "b"]));
    assert_eq!(claims["scope"], "read write");
    assert_eq!(claims["admin"], true);
    assert_eq!(claims["n"], 42);
    assert_eq!(claims["name"], "Alice");
    assert_eq!(claims["obj"], json!({"a": [1]}));
    assert_eq!(claims["tenant"], "t1");
    assert_eq!(claims["sub"], "alice", "--sub wins over --claims-json");
    let header: Value = serde_json::from_slice(&b64url(token.split('.').next().unwrap())).unwrap();
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["typ"], "JWT");

    let bare = mint(&rsa, &["--no-kid", "--no-exp", "--no-iat"]);
    let header: Value = serde_json::from_slice(&b64url(bare.split('.').next().unwrap())).unwrap();
    assert!(header.get("kid").is_none());
    let claims: Value = serde_json::from_slice(&b64url(bare.split('.').nth(1).unwrap())).unwrap();
    assert!(claims.get("exp").is_none() && claims.get("iat").is_none());
}

#[test]
fn explain_scopes_claims_and_revocation() {
    let dir = scratch("scopes");
    let jwks = fixture("jwks.json");
    let cfg = json!({
        "providers": {"p": {
            "issuer": "https://issuer.test",
            "remote_jwks": {"http_uri": {"uri": "https://idp.test/jwks.json", "cluster": "idp"}},
            "revoked": {"sub": ["mallory"]}
        }},
        "rules": [{"match": {"prefix": "/"}, "requires": {
            "provider_name": "p",
            "scopes": ["orders:read"],
            "claims": [{"name": "tenant", "values": ["acme"]}]
        }}]
    });
    let path = dir.join("config.json");
    std::fs::write(&path, cfg.to_string()).unwrap();
    let rsa = fixture("rsa-1.pem");
    let with = |extra: &[&str]| {
        let mut args = vec!["--kid", "rsa-1"];
        args.extend_from_slice(extra);
        mint(&rsa, &args)
    };

    let ok = with(&["--scope", "orders:read other", "--claim", "tenant=acme"]);
    let r = explain(&path, &ok, Some(&jwks), &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        r.stdout.contains("needing scopes [\"orders:read\"]"),
        "{}",
        r.stdout
    );

    let no_scope = with(&["--scope", "other", "--claim", "tenant=acme"]);
    let r = explain(&path, &no_scope, Some(&jwks), &[]);
    assert_eq!(r.code, 1);
    assert!(
        r.stdout.contains("decision: DENY 403 insufficient_scope"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("[FAIL] scopes: insufficient_scope"),
        "{}",
        r.stdout
    );

    let wrong_tenant = with(&["--scope", "orders:read", "--claim", "tenant=umbrella"]);
    let r = explain(&path, &wrong_tenant, Some(&jwks), &[]);
    assert!(
        r.stdout.contains("decision: DENY 403 claim_mismatch"),
        "{}",
        r.stdout
    );

    let revoked = with(&[
        "--scope",
        "orders:read",
        "--claim",
        "tenant=acme",
        "--sub",
        "mallory",
    ]);
    let r = explain(&path, &revoked, Some(&jwks), &[]);
    assert!(
        r.stdout.contains("decision: DENY 401 token_revoked"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("[FAIL] revocation: token_revoked"),
        "{}",
        r.stdout
    );
}

#[test]
fn explain_checks_a_remote_revocation_list_given_as_a_file() {
    let dir = scratch("revocation-list");
    let jwks = fixture("jwks.json");
    let cfg = json!({
        "providers": {"p": {
            "issuer": "https://issuer.test",
            "remote_jwks": {"http_uri": {"uri": "https://idp.test/jwks.json", "cluster": "idp"}},
            "revocation_list": {"http_uri": {"uri": "https://idp.test/revoked.json", "cluster": "idp"}}
        }},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "p"}}]
    });
    let path = dir.join("config.json");
    std::fs::write(&path, cfg.to_string()).unwrap();
    let list = dir.join("revoked.json");
    std::fs::write(&list, r#"{"jti":["j-1"],"sub":["mallory"]}"#).unwrap();
    let bad_list = dir.join("bad.json");
    std::fs::write(&bad_list, r#"{"jti":"j-1"}"#).unwrap();
    let rsa = fixture("rsa-1.pem");
    let fine = mint(&rsa, &["--kid", "rsa-1", "--claim", "jti=j-2"]);
    let by_jti = mint(&rsa, &["--kid", "rsa-1", "--claim", "jti=j-1"]);
    let by_sub = mint(&rsa, &["--kid", "rsa-1", "--sub", "mallory"]);
    let l = ["--revocation-list", s(&list)];

    let r = explain(&path, &fine, Some(&jwks), &l);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        r.stdout
            .contains("jti and sub are not on the remote revocation list (2 entries"),
        "{}",
        r.stdout
    );
    for t in [&by_jti, &by_sub] {
        let r = explain(&path, t, Some(&jwks), &l);
        assert_eq!(r.code, 1, "{}", r.all());
        assert!(
            r.stdout.contains("decision: DENY 401 token_revoked"),
            "{}",
            r.stdout
        );
    }
    // Without the list: what the filter does when it has none (fail closed).
    let r = explain(&path, &fine, Some(&jwks), &[]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stdout
            .contains("decision: DENY 503 revocation_unavailable"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("pass --revocation-list FILE"),
        "{}",
        r.stdout
    );
    // A list the filter would refuse is refused here too, with the reason.
    let r = explain(
        &path,
        &fine,
        Some(&jwks),
        &["--revocation-list", s(&bad_list)],
    );
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.stderr.contains("jti is not an array of strings"),
        "{}",
        r.stderr
    );
}

#[test]
fn explain_prints_the_steps_the_core_took() {
    let dir = scratch("core-steps");
    let jwks = fixture("jwks.json");
    let provider = |extra: Value| {
        let mut p = json!({
            "issuer": "https://issuer.test",
            "audiences": ["api"],
            "remote_jwks": {"http_uri": {"uri": "https://idp.test/jwks.json", "cluster": "idp"}}
        });
        for (k, v) in extra.as_object().unwrap() {
            p[k] = v.clone();
        }
        p
    };
    let cfg = json!({
        "providers": {"a": provider(json!({})), "b": provider(json!({"from_headers": [{"name": "x-b"}]}))},
        "rules": [{"match": {"prefix": "/"}, "requires": {"requires_any": {"requirements": [
            {"provider_name": "a"}, {"allow_missing": {}}]}}}]
    });
    let path = dir.join("config.json");
    std::fs::write(&path, cfg.to_string()).unwrap();
    let rsa = fixture("rsa-1.pem");
    let expired = mint(
        &rsa,
        &["--kid", "rsa-1", "--now", "1799900000", "--ttl", "1h"],
    );

    // allow_missing inside requires_any looks at its siblings' providers only: b's token
    // (expired) is not looked at, and no token for a lets the request through.
    let x_b = format!("x-b: {expired}");
    let r = run(&[
        "explain",
        "--config",
        s(&path),
        "--jwks",
        &jwks,
        "--now",
        "1800000100",
        "--header",
        &x_b,
    ]);
    assert_no_secret(&r, &expired);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        r.stdout
            .contains("\nallow_missing: looks at the tokens of provider \"a\"\n"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("provider \"b\":"), "{}", r.stdout);
    assert!(
        r.stdout.contains("decision: ALLOW (allow_missing"),
        "{}",
        r.stdout
    );

    // The expired token in a's place: the steps stop where the filter stops.
    let r = explain(&path, &expired, Some(&jwks), &[]);
    assert_eq!(r.code, 1, "{}", r.all());
    let from = r.stdout.find("  [ok]   issuer:").expect("issuer step");
    let tail: Vec<&str> = r.stdout[from..].lines().take(8).collect();
    assert_eq!(
        tail,
        [
            "  [ok]   issuer: iss is \"https://issuer.test\"",
            "  [FAIL] time: token_expired: token is expired (clock skew 60s, exp required)",
            "  result: token_expired (the filter stops at the first failure)",
            "requirement provider \"a\": not met: token_expired (provider \"a\")",
            "allow_missing: looks at the tokens of provider \"a\"",
            "requirement allow_missing (no token is fine; a token must be valid): not met: token_expired (provider \"a\")",
            "requirement any of (provider \"a\", allow_missing): not met: token_expired (provider \"a\")",
            "decision: DENY 401 token_expired",
        ],
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("signature: verified"), "{}", r.stdout);
}

/// `mint --dpop-key`: a token bound to the key (`cnf.jkt`) and a proof the core accepts for
/// exactly the request it names, once per key type; and the options' usage errors.
/// The claims of a compact JWS.
fn claims_of(jws: &str) -> Value {
    let payload = jws.split('.').nth(1).unwrap();
    serde_json::from_slice(&jwt_edge::authn::b64::decode(payload).unwrap()).unwrap()
}

#[test]
fn mint_dpop_bound_token_and_proof() {
    use jwt_edge::authn::alg::Algorithm;
    use jwt_edge::authn::sender::dpop::{check_proof, DpopPolicy, ProofRequest};
    use jwt_edge::time::{Millis, UnixMillis};

    let policy = DpopPolicy {
        algs: Algorithm::DEFAULT_ALLOWED.to_vec(),
        max_age: Millis::from_secs(60),
        max_future: Millis::from_secs(5),
    };
    for (pem, alg) in [
        ("ec-p256.pem", "ES256"),
        ("ec-p384.pem", "ES384"),
        ("ed-1.pem", "EdDSA"),
        ("rsa-2.pem", "RS256"),
    ] {
        let r = run(&[
            "mint",
            "--key",
            &fixture("rsa-1.pem"),
            "--now",
            "1800000000",
            "--dpop-key",
            &fixture(pem),
            "--htm",
            "POST",
            "--htu",
            "https://api.example.com/orders?x=1",
            "--dpop-jti",
            "jti-1",
        ]);
        assert_eq!(r.code, 0, "{pem}: {}", r.all());
        let lines: Vec<&str> = r.stdout.lines().collect();
        let [token, proof] = lines[..] else {
            panic!("{pem}: want two lines, got {}", r.stdout)
        };
        let header: Value = serde_json::from_slice(
            &jwt_edge::authn::b64::decode(proof.split('.').next().unwrap()).unwrap(),
        )
        .unwrap();
        assert_eq!(header["typ"], "dpop+jwt", "{pem}");
        assert_eq!(header["alg"], alg, "{pem}");
        assert_eq!(claims_of(proof)["jti"], "jti-1");
        let cnf = claims_of(token)["cnf"].clone();
        let request = ProofRequest {
            method: "POST",
            scheme: "https",
            authority: "api.example.com",
            path: "/orders",
        };
        let facts = check_proof(
            &[proof],
            &request,
            token,
            Some(&cnf),
            &policy,
            UnixMillis::from_secs(NOW + 10),
        )
        .unwrap_or_else(|e| panic!("{pem}: {}", e.code()));
        assert_eq!(json!(facts.jkt), cnf["jkt"], "{pem}");
        let get = ProofRequest {
            method: "GET",
            ..request
        };
        let err = check_proof(
            &[proof],
            &get,
            token,
            Some(&cnf),
            &policy,
            UnixMillis::from_secs(NOW),
        )
        .unwrap_err();
        assert_eq!(err.code(), "dpop_htm_mismatch");
    }

    let key = fixture("ec-p256.pem");
    for args in [
        &["--htu", "https://a.example/"][..],
        &["--htm", "GET"],
        &["--dpop-key", &key],
        &["--dpop-key", &key, "--htu", "/relative"],
        &["--dpop-key", &key, "--htu", "ftp://a.example/"],
        &[
            "--dpop-key",
            &key,
            "--htu",
            "https://a.example/",
            "--htm",
            "G T",
        ],
        &[
            "--dpop-key",
            &key,
            "--htu",
            "https://a.example/",
            "--dpop-jti",
            "",
        ],
        &["--dpop-nonce", "AAAAAQAAAAAAAAAAAAAAAAAAAAA"],
        &[
            "--dpop-key",
            &key,
            "--htu",
            "https://a.example/",
            "--dpop-nonce",
            "",
        ],
    ] {
        let mut full = vec!["mint", "--key", &key];
        full.extend_from_slice(args);
        let r = run(&full);
        assert_eq!(r.code, 2, "{args:?}: {}", r.all());
    }
}

/// `mint --dpop-nonce`: the proof carries the server's nonce as its `nonce` claim, which
/// the core reads back as a nonce of the right shape.
#[test]
fn mint_dpop_proof_with_a_nonce() {
    use jwt_edge::authn::sender::nonce::NonceClaim;
    let key = fixture("ec-p256.pem");
    let nonce = "AAAAAQAAAAAAAAAAAAAAAAAAAAA";
    let r = run(&[
        "mint",
        "--key",
        &key,
        "--now",
        "1800000000",
        "--dpop-key",
        &key,
        "--htu",
        "https://api.example.com/orders",
        "--dpop-nonce",
        nonce,
    ]);
    assert_eq!(r.code, 0, "{}", r.all());
    let lines: Vec<&str> = r.stdout.lines().collect();
    let [token, proof] = lines[..] else {
        panic!("want two lines, got {}", r.stdout)
    };
    assert_eq!(claims_of(proof)["nonce"], nonce);
    assert!(matches!(
        NonceClaim::parse(claims_of(proof).get("nonce")),
        NonceClaim::Present(_)
    ));
    assert_eq!(claims_of(token)["cnf"].as_object().unwrap().len(), 1);
    // Without the option, no nonce claim.
    let r = run(&[
        "mint",
        "--key",
        &key,
        "--dpop-key",
        &key,
        "--htu",
        "https://api.example.com/",
    ]);
    assert_eq!(r.code, 0, "{}", r.all());
    let proof = r.stdout.lines().nth(1).unwrap();
    assert_eq!(claims_of(proof).get("nonce"), None);
    // Usage errors: `mint_dpop_bound_token_and_proof`.
}

/// `explain --client-cert`: a provider with `sender_constraint.mtls` checks the token's binding
/// against that certificate, and without one the connection has none.
#[test]
fn explain_a_certificate_bound_token() {
    let dir = scratch("explain-mtls");
    let cfg = remote_config(
        &dir,
        "config",
        json!({"sender_constraint": {"mtls": "required"}}),
    );
    let jwks = fixture("jwks.json");
    let cert = format!("{ROOT}/tests/fixtures/mtls-client.pem");
    let token = mint(
        &fixture("rsa-1.pem"),
        &["--kid", "rsa-1", "--mtls-cert", &cert],
    );
    let r = explain(&cfg, &token, Some(&jwks), &["--client-cert", &cert]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        r.stdout
            .contains("client certificate: x5t#S256 mGX-ozHURKGhNt1eI-C6ktL5yvWfCJO7z69Ka6kaWMA"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("certificate binding"), "{}", r.stdout);
    let r = explain(&cfg, &token, Some(&jwks), &[]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stdout.contains("DENY 401 mtls_certificate_missing"),
        "{}",
        r.stdout
    );
    let unbound = mint(&fixture("rsa-1.pem"), &["--kid", "rsa-1"]);
    let r = explain(&cfg, &unbound, Some(&jwks), &["--client-cert", &cert]);
    assert!(
        r.stdout.contains("DENY 401 mtls_token_unbound"),
        "{}",
        r.stdout
    );
}

/// `mint --mtls-cert`: the token carries the certificate's RFC 8705 thumbprint (the value
/// OpenSSL gives, tests/fixtures/README.md), next to `cnf.jkt` with `--dpop-key`; a file that
/// is not a certificate is a usage error.
#[test]
fn mint_certificate_bound_token() {
    const X5T: &str = "mGX-ozHURKGhNt1eI-C6ktL5yvWfCJO7z69Ka6kaWMA";
    let cert = format!("{ROOT}/tests/fixtures/mtls-client.pem");
    let key = fixture("ec-p256.pem");
    let claims_of = |jws: &str| -> Value {
        let payload = jws.split('.').nth(1).unwrap();
        serde_json::from_slice(&jwt_edge::authn::b64::decode(payload).unwrap()).unwrap()
    };
    let r = run(&["mint", "--key", &key, "--mtls-cert", &cert]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(claims_of(r.stdout.trim())["cnf"], json!({"x5t#S256": X5T}));

    let r = run(&[
        "mint",
        "--key",
        &key,
        "--mtls-cert",
        &cert,
        "--dpop-key",
        &fixture("ed-1.pem"),
        "--htu",
        "https://a.example/",
    ]);
    assert_eq!(r.code, 0, "{}", r.all());
    let cnf = claims_of(r.stdout.lines().next().unwrap())["cnf"].clone();
    assert_eq!(cnf["x5t#S256"], X5T);
    assert!(cnf["jkt"].is_string(), "{cnf}");

    let garbage = scratch("mtls-cert").join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    for (path, says) in [
        (key.clone(), "is \"PRIVATE KEY\", not a CERTIFICATE"),
        (format!("{ROOT}/tests/fixtures/jwks.json"), "not a PEM file"),
        (s(&garbage).to_owned(), "not a valid PEM block"),
        (format!("{ROOT}/no-such.pem"), "cannot read certificate"),
    ] {
        let r = run(&["mint", "--key", &key, "--mtls-cert", &path]);
        assert_eq!(r.code, 2, "{path}: {}", r.all());
        assert!(r.stderr.contains(says), "{path}: {}", r.all());
        assert!(r.stdout.is_empty(), "{path}: {}", r.all());
    }
}
