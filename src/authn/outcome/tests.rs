//! The plan for a request under both host profiles: header changes, counters, log lines and
//! replies, without a host.

use serde_json::{json, Value};

use super::*;
use crate::authn::config;
use crate::sources::Sources;

const NOW_MS: UnixMillis = UnixMillis(1_800_000_000_000);

fn token(name: &str) -> String {
    let v: Value =
        serde_json::from_str(include_str!("../../../tests/fixtures/tokens.json")).unwrap();
    v["tokens"][name].as_str().unwrap().to_owned()
}

fn config_text() -> String {
    let jwks = include_str!("../../../tests/fixtures/jwks.json");
    json!({
        "providers": {
            "p": {
                "issuer": "https://issuer.test",
                "audiences": ["api"],
                "local_jwks": {"inline_string": jwks},
                "claim_to_headers": [{"header_name": "x-jwt-sub", "claim_name": "sub"}]
            },
            "q": {
                "issuer": "https://other.test",
                "local_jwks": {"inline_string": jwks},
                "from_headers": [{"name": "x-token"}]
            }
        },
        "rules": [
            {"match": {"prefix": "/public"}},
            {"match": {"prefix": "/lenient"}, "requires": {"requires_any": {"requirements": [
                {"provider_name": "q"}, {"allow_missing_or_failed": {}}]}}},
            {"match": {"prefix": "/try"}, "requires": {"provider_name": "p"}, "report_only": true},
            {"match": {"prefix": "/"}, "requires": {"provider_name": "p"}}
        ]
    })
    .to_string()
}

fn headers(path: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut h = vec![
        (":method".to_owned(), "GET".to_owned()),
        (":path".to_owned(), path.to_owned()),
        (":authority".to_owned(), "api.test".to_owned()),
    ];
    h.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    h
}

/// What a plan says, as plain data.
#[derive(Debug, PartialEq)]
struct Seen {
    ops: Vec<Op>,
    counters: Vec<(String, i64)>,
    logs: Vec<String>,
    reply: Option<(u32, Option<String>, String)>,
    allowed: bool,
}

fn run(profile: HostProfile, path: &str, extra: &[(&str, &str)]) -> Seen {
    run_plan(profile, path, extra, false)
}

/// `give_up`: the plan as it is once waiting for keys is over ([`Plan::unavailable`]).
fn run_plan(profile: HostProfile, path: &str, extra: &[(&str, &str)], give_up: bool) -> Seen {
    run_logged(profile, path, extra, give_up, log::LevelFilter::Trace)
}

/// [`run_plan`] with the logger printing `max` and more severe.
fn run_logged(
    profile: HostProfile,
    path: &str,
    extra: &[(&str, &str)],
    give_up: bool,
    max: log::LevelFilter,
) -> Seen {
    let cfg = config_text();
    let policy = config::parse(&cfg).unwrap();
    let sources = Sources::new(&policy, cfg.as_bytes(), 1);
    let auth = Authenticator::new(policy, profile);
    let h = headers(path, extra);
    let keys = sources.lookup(auth.policy(), NOW_MS, &[], false);
    let plan = auth.plan(
        Request {
            headers: &h,
            route_name: None,
            client_certificate: None,
        },
        &keys,
        NOW_MS,
    );
    let plan = if give_up { plan.unavailable() } else { plan };
    let ops = plan
        .header_ops()
        .map(|op| match op {
            HeaderOp::Remove(n) => remove(n),
            HeaderOp::Set(n, v) => set(n, v),
            HeaderOp::Add(n, v) => add(n, v),
        })
        .collect();
    let mut counters = Vec::new();
    plan.counters(|n, d| counters.push((n.to_owned(), d)));
    let mut logs = Vec::new();
    plan.log_lines(max, |level, line| logs.push(format!("{level} {line}")));
    let reply = plan.reply().map(|d| {
        let www = d
            .headers
            .iter()
            .find(|(k, _)| k == "www-authenticate")
            .map(|(_, v)| v.clone());
        (d.status, www, d.body.clone())
    });
    Seen {
        ops,
        counters,
        logs,
        reply,
        allowed: plan.allowed(),
    }
}

/// A header op as plain data: its kind, the name, the value.
type Op = (&'static str, String, Option<String>);

fn remove(n: &str) -> Op {
    ("remove", n.to_owned(), None)
}

fn set(n: &str, v: &str) -> Op {
    ("set", n.to_owned(), Some(v.to_owned()))
}

/// A header the request no longer carries when the op runs ([`HeaderOp::Add`]).
fn add(n: &str, v: &str) -> Op {
    ("add", n.to_owned(), Some(v.to_owned()))
}

fn counters(names: &[&str]) -> Vec<(String, i64)> {
    names.iter().map(|n| (n.to_string(), 1)).collect()
}

#[test]
fn an_accepted_token_on_envoy() {
    let bearer = format!("Bearer {}", token("rs256"));
    let seen = run(HostProfile::ENVOY, "/a", &[("authorization", &bearer)]);
    assert_eq!(
        seen,
        Seen {
            ops: vec![remove("authorization"), add("x-jwt-sub", "alice")],
            counters: counters(&["jwt_edge.allowed", "jwt_edge.provider.p.allowed"]),
            logs: vec![
                "DEBUG allowed: provider=p iss=https://issuer.test sub=alice kid=rsa-1".into()
            ],
            reply: None,
            allowed: true,
        }
    );
}

/// `forward: false` on ngx_wasm_module: the value goes first (the replace rewrites the
/// entry NGINX's proxy module sends), then the header.
#[test]
fn an_accepted_token_on_ngx_is_emptied_before_it_is_removed() {
    let bearer = format!("Bearer {}", token("rs256"));
    let seen = run(
        HostProfile::NGX_WASM_MODULE,
        "/a",
        &[("authorization", &bearer)],
    );
    assert_eq!(
        seen.ops,
        [
            set("authorization", ""),
            remove("authorization"),
            add("x-jwt-sub", "alice")
        ]
    );
    assert!(seen.allowed);
}

#[test]
fn client_copies_of_identity_headers_are_stripped_on_envoy_on_every_route() {
    let bearer = format!("Bearer {}", token("rs256"));
    let seen = run(
        HostProfile::ENVOY,
        "/a",
        &[
            ("x-jwt-sub", "admin"),
            ("authorization", &bearer),
            ("X_JWT_SUB", "root"),
        ],
    );
    assert_eq!(
        seen.ops,
        [
            remove("x-jwt-sub"),
            remove("X_JWT_SUB"),
            remove("authorization"),
            add("x-jwt-sub", "alice")
        ]
    );
    assert!(seen.allowed);
    let public = run(HostProfile::ENVOY, "/public", &[("x-jwt-sub", "admin")]);
    assert_eq!(
        (public.ops, public.allowed),
        (vec![remove("x-jwt-sub")], true)
    );
    // Also while the request is refused.
    let refused = run(HostProfile::ENVOY, "/a", &[("x-jwt-sub", "admin")]);
    assert_eq!(refused.ops, [remove("x-jwt-sub")]);
    assert_eq!(refused.reply.map(|r| r.0), Some(401));
}

/// On ngx_wasm_module a client's copy cannot be taken out: the request is refused, on every
/// route, whatever its token.
#[test]
fn client_copies_of_identity_headers_are_refused_on_ngx() {
    let bearer = format!("Bearer {}", token("rs256"));
    for (path, extra) in [
        (
            "/a",
            vec![("authorization", bearer.as_str()), ("x-jwt-sub", "admin")],
        ),
        ("/public", vec![("x_jwt_sub", "admin")]),
        ("/lenient", vec![("X-Jwt-Sub", "admin")]),
    ] {
        let seen = run(HostProfile::NGX_WASM_MODULE, path, &extra);
        assert_eq!(
            seen,
            Seen {
                ops: vec![],
                counters: counters(&[
                    "jwt_edge.denied",
                    "jwt_edge.denied.identity_header_present"
                ]),
                logs: vec![format!(
                    "DEBUG denied: code=identity_header_present status=400 provider=- iss=- \
                     kid=- sub=- path={path}"
                )],
                reply: Some((
                    400,
                    Some(format!(
                        "Bearer realm=\"http://api.test{path}\", error=\"invalid_request\", \
                         error_description=\"the request carries a header that only the \
                         filter may set\""
                    )),
                    r#"{"error":"identity_header_present","error_description":"the request carries a header that only the filter may set"}"#.into()
                )),
                allowed: false,
            },
            "{path}"
        );
    }
}

/// A header the filter must take out twice over cannot be emptied on ngx_wasm_module (its
/// replace rewrites the first copy only): refused there, removed on Envoy.
#[test]
fn a_repeated_header_to_remove_is_refused_on_ngx_only() {
    let two = [("x-token", "a.b.c"), ("x-token", "d.e.f")];
    let envoy = run(HostProfile::ENVOY, "/lenient", &two);
    assert_eq!((envoy.ops, envoy.allowed), (vec![remove("x-token")], true));
    let ngx = run(HostProfile::NGX_WASM_MODULE, "/lenient", &two);
    assert_eq!((ngx.ops, ngx.allowed), (vec![], false));
    assert_eq!(ngx.reply.map(|r| r.0), Some(401));
    assert_eq!(
        ngx.counters,
        counters(&["jwt_edge.denied", "jwt_edge.denied.multiple_tokens"])
    );
    let one = run(HostProfile::NGX_WASM_MODULE, "/lenient", &two[..1]);
    assert_eq!(
        (one.ops, one.allowed),
        (vec![set("x-token", ""), remove("x-token")], true)
    );
}

/// Lines the logger would not print are not made: at Info, neither an accepted request's
/// nor a denial's Debug line (nothing else of the plan changes).
#[test]
fn log_lines_above_the_logger_level_are_skipped() {
    let good = format!("Bearer {}", token("rs256"));
    let bad = format!("Bearer {}", token("forged_kid"));
    for bearer in [&good, &bad] {
        let h = [("authorization", bearer.as_str())];
        let debug = run_logged(HostProfile::ENVOY, "/a", &h, false, log::LevelFilter::Debug);
        let info = run_logged(HostProfile::ENVOY, "/a", &h, false, log::LevelFilter::Info);
        assert_eq!(debug.logs.len(), 1);
        assert!(debug.logs[0].starts_with("DEBUG "), "{:?}", debug.logs);
        assert_eq!(info.logs, Vec::<String>::new());
        assert_eq!(
            Seen {
                logs: vec![],
                ..debug
            },
            info
        );
    }
}

#[test]
fn a_denial_counts_per_provider_and_logs_no_token() {
    let bad = token("forged_kid");
    let bearer = format!("Bearer {bad}");
    let seen = run(HostProfile::ENVOY, "/a?x=1", &[("authorization", &bearer)]);
    assert_eq!(
        seen.counters,
        counters(&[
            "jwt_edge.denied",
            "jwt_edge.denied.bad_signature",
            "jwt_edge.provider.p.denied.bad_signature"
        ])
    );
    assert_eq!(seen.logs.len(), 1);
    assert!(seen.logs[0].ends_with(" path=/a"), "{:?}", seen.logs);
    let signature = bad.rsplit('.').next().unwrap();
    assert!(!seen.logs[0].contains(signature));
}

#[test]
fn safe_log_text() {
    assert_eq!(Safe(None).to_string(), "-");
    assert_eq!(Safe(Some("a b\n\u{e9}")).to_string(), "a?b??");
    assert_eq!(Safe(Some(&"x".repeat(100))).to_string(), "x".repeat(64));
}

/// A token that must not be forwarded, in the query string: taken out of `:path` on Envoy,
/// refused on ngx_wasm_module (NGINX's proxy module sends the original request line).
#[test]
fn a_query_token_is_removed_on_envoy_and_refused_on_ngx() {
    let path = format!("/a?x=1&access_token={}", token("rs256"));
    let envoy = run(HostProfile::ENVOY, &path, &[]);
    assert_eq!(
        (envoy.ops, envoy.allowed),
        (
            vec![add("x-jwt-sub", "alice"), set(":path", "/a?x=1")],
            true
        )
    );
    let ngx = run(HostProfile::NGX_WASM_MODULE, &path, &[]);
    assert_eq!((ngx.ops, ngx.allowed), (vec![], false));
    assert_eq!(
        ngx.counters,
        counters(&["jwt_edge.denied", "jwt_edge.denied.token_in_query"])
    );
    let (status, www, _) = ngx.reply.unwrap();
    assert_eq!(status, 400);
    assert!(www.unwrap().contains("error=\"invalid_request\""));
}

/// A `report_only` rule: the same decision, counted and logged as a would-deny, and the
/// request goes on without identity headers; unforwarded tokens and client copies of identity
/// headers still go. A good token is handled as on an enforcing rule.
#[test]
fn report_only_lets_a_would_deny_through_without_identity() {
    let bad = token("forged_kid");
    let bearer = format!("Bearer {bad}");
    let seen = run(
        HostProfile::ENVOY,
        "/try?x=1",
        &[("authorization", &bearer), ("x-jwt-sub", "admin")],
    );
    assert_eq!(
        seen,
        Seen {
            ops: vec![remove("x-jwt-sub"), remove("authorization")],
            counters: counters(&[
                "jwt_edge.allowed",
                "jwt_edge.would_deny",
                "jwt_edge.provider.p.would_deny.bad_signature"
            ]),
            logs: vec![
                "INFO would deny (report_only): code=bad_signature status=401 provider=p \
                 iss=https://issuer.test kid=rsa-1 sub=alice path=/try"
                    .into()
            ],
            reply: None,
            allowed: true,
        }
    );
    let signature = bad.rsplit('.').next().unwrap();
    assert!(!seen.logs[0].contains(signature));

    let missing = run(HostProfile::ENVOY, "/try", &[]);
    assert_eq!(
        (missing.ops, missing.allowed, missing.reply),
        (vec![], true, None)
    );
    assert_eq!(
        missing.counters,
        counters(&[
            "jwt_edge.allowed",
            "jwt_edge.would_deny",
            "jwt_edge.provider.p.would_deny.token_missing"
        ])
    );
    assert_eq!(
        missing.logs,
        [
            "INFO would deny (report_only): code=token_missing status=401 provider=p iss=- kid=- \
          sub=- path=/try"
        ]
    );

    let good = format!("Bearer {}", token("rs256"));
    let ok = run(HostProfile::ENVOY, "/try", &[("authorization", &good)]);
    assert_eq!(
        (ok.ops, ok.counters, ok.allowed),
        (
            vec![remove("authorization"), add("x-jwt-sub", "alice")],
            counters(&["jwt_edge.allowed", "jwt_edge.provider.p.allowed"]),
            true
        )
    );
    // An enforcing rule still refuses the same token.
    let enforced = run(HostProfile::ENVOY, "/a", &[("authorization", &bearer)]);
    assert_eq!(enforced.reply.map(|r| r.0), Some(401));
}

/// On ngx_wasm_module a client's copy of an identity header cannot be taken out, so it is
/// refused under a `report_only` rule too; an unforwarded token is emptied, then removed.
#[test]
fn report_only_on_ngx_still_refuses_forged_identity_headers() {
    let bad = format!("Bearer {}", token("forged_kid"));
    let forged = run(
        HostProfile::NGX_WASM_MODULE,
        "/try",
        &[("authorization", &bad), ("x-jwt-sub", "admin")],
    );
    assert_eq!(
        (forged.reply.map(|r| r.0), forged.allowed),
        (Some(400), false)
    );
    let seen = run(
        HostProfile::NGX_WASM_MODULE,
        "/try",
        &[("authorization", &bad)],
    );
    assert_eq!(
        (seen.ops, seen.allowed),
        (
            vec![set("authorization", ""), remove("authorization")],
            true
        )
    );
}

/// Waiting for keys is over: a `report_only` rule lets the request through as a would-deny
/// (`jwks_unavailable`), an enforcing one refuses it (503).
#[test]
fn report_only_after_waiting_for_keys() {
    let good = format!("Bearer {}", token("rs256"));
    let seen = run_plan(
        HostProfile::ENVOY,
        "/try",
        &[("authorization", &good)],
        true,
    );
    assert_eq!(
        (seen.ops, seen.counters, seen.allowed),
        (
            vec![remove("authorization")],
            counters(&[
                "jwt_edge.allowed",
                "jwt_edge.would_deny",
                "jwt_edge.provider.p.would_deny.jwks_unavailable"
            ]),
            true
        )
    );
    let enforced = run_plan(HostProfile::ENVOY, "/a", &[("authorization", &good)], true);
    assert_eq!(
        (enforced.reply.map(|r| r.0), enforced.allowed),
        (Some(503), false)
    );
}
