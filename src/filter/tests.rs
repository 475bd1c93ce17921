//! The adapter against the fake host: outcomes, not call scripts.

use std::cell::RefCell;
use std::rc::Rc;

use serde_json::{json, Value};

use crate::authn::config;
use crate::authn::outcome::HostProfile;
use crate::authn::policy::DEFAULT_WAIT_TIMEOUT_MS as KEY_WAIT_MS;
use crate::filter::fake::{FakeHost, SharedStore, ROOT};
use crate::filter::state::{Action, FilterState};
use crate::sources::lease::Lease;
use crate::sources::record::Binding;
use crate::time::{Millis, UnixMillis};

pub(super) const T0: u64 = 1_800_000_000_000;
pub(super) const JWKS: &str = include_str!("../../tests/fixtures/jwks.json");

pub(super) fn token(name: &str) -> String {
    let v: Value = serde_json::from_str(include_str!("../../tests/fixtures/tokens.json")).unwrap();
    v["tokens"][name].as_str().unwrap().to_owned()
}

fn remote_config() -> String {
    json!({
        "providers": {"p": {
            "issuer": "https://issuer.test",
            "audiences": ["api"],
            "remote_jwks": {"http_uri": {"uri": "https://idp.test/keys?x=1", "cluster": "idp", "timeout": "2s"}, "cache_duration": "60s"},
            "claim_to_headers": [{"header_name": "x-jwt-sub", "claim_name": "sub"}]
        }},
        "rules": [
            {"match": {"prefix": "/public"}},
            {"match": {"prefix": "/"}, "requires": {"provider_name": "p"}}
        ]
    })
    .to_string()
}

fn vm(shared: &Rc<RefCell<SharedStore>>) -> (FakeHost, FilterState) {
    vm_with(shared, &remote_config(), false)
}

/// A VM for `cfg` on Envoy's profile, or on ngx_wasm_module's with `ngx`.
pub(super) fn vm_with(
    shared: &Rc<RefCell<SharedStore>>,
    cfg: &str,
    ngx: bool,
) -> (FakeHost, FilterState) {
    let (host, profile) = if ngx {
        (
            FakeHost::ngx(shared.clone(), UnixMillis(T0), &["idp"]),
            HostProfile::NGX_WASM_MODULE,
        )
    } else {
        (
            FakeHost::new(shared.clone(), UnixMillis(T0), &["idp"]),
            HostProfile::ENVOY,
        )
    };
    let state = FilterState::new(config::parse(cfg).unwrap(), cfg, profile);
    (host, state)
}

pub(super) fn request(
    host: &FakeHost,
    state: &mut FilterState,
    id: u32,
    path: &str,
    extra: &[(&str, &str)],
) -> Action {
    let mut h = vec![
        (":method", "GET"),
        (":path", path),
        (":authority", "api.test"),
    ];
    h.extend_from_slice(extra);
    host.open_stream(id, &h);
    host.in_stream_callback.set(true);
    let action = state.on_request_headers(host, id);
    host.in_stream_callback.set(false);
    assert_eq!(
        host.dispatches_from_streams.get(),
        0,
        "a stream callback dispatched a call"
    );
    action
}

/// The first value of `name` that reaches the upstream.
fn header(host: &FakeHost, id: u32, name: &str) -> Option<String> {
    host.stream(id)
        .upstream_values(name)
        .first()
        .map(|v| v.to_string())
}

/// Answers every outstanding call of `host` with `status` and `body`, to the context that
/// dispatched it (the root context: the adapter's only call handler).
pub(super) fn answer(host: &FakeHost, state: &mut FilterState, status: &str, body: &[u8]) {
    let calls: Vec<_> = host.calls.borrow_mut().drain(..).collect();
    for c in calls {
        assert_eq!(c.from, ROOT, "a call answered to a stream is lost");
        host.respond(status, body);
        state.on_http_call_response(host, c.token, body.len());
    }
}

/// F1: the body (and trailers) of a stream that waits for keys, or that was refused, is held;
/// only the stream an allow decision resumed lets its body go on.
#[test]
fn body_and_trailers_are_held_while_waiting_and_after_a_refusal() {
    let shared = Rc::new(RefCell::new(SharedStore::default()));
    let (host, mut state) = vm(&shared);
    let good = format!("Bearer {}", token("rs256"));
    let forged = format!("Bearer {}", token("forged_kid"));
    assert_eq!(
        request(&host, &mut state, 1, "/a", &[("authorization", &good)]),
        Action::Pause
    );
    assert_eq!(
        request(&host, &mut state, 2, "/a", &[("authorization", &forged)]),
        Action::Pause
    );
    // No token: refused at once.
    assert_eq!(request(&host, &mut state, 3, "/a", &[]), Action::Pause);
    // No requirement: let through at once.
    assert_eq!(
        request(&host, &mut state, 4, "/public", &[]),
        Action::Continue
    );
    for id in [1, 2, 3] {
        assert_eq!(state.on_request_data(id), Action::Pause, "stream {id}");
    }
    assert_eq!(state.on_request_data(4), Action::Continue);

    state.on_tick(&host);
    answer(&host, &mut state, "200", JWKS.as_bytes());
    assert!(host.stream(1).resumed);
    assert_eq!(state.on_request_data(1), Action::Continue);
    // Refused after the wait (bad signature) or at once (no token): held until the end.
    assert_eq!(host.stream(2).reply.map(|r| r.status), Some(401));
    assert_eq!(state.on_request_data(2), Action::Pause);
    assert_eq!(state.on_request_data(3), Action::Pause);
    state.on_stream_done(2);
    state.on_stream_done(3);
    // A context id the host reuses later starts clean.
    assert_eq!(state.on_request_data(3), Action::Continue);
}

/// F1, deadline path: a request that waited until `request_wait_timeout` and was refused
/// (503) keeps its body held.
#[test]
fn body_is_held_when_the_wait_ends_in_a_refusal() {
    let shared = Rc::new(RefCell::new(SharedStore::default()));
    let (host, mut state) = vm(&shared);
    let good = format!("Bearer {}", token("rs256"));
    assert_eq!(
        request(&host, &mut state, 1, "/a", &[("authorization", &good)]),
        Action::Pause
    );
    host.now_ms.set(UnixMillis(T0 + KEY_WAIT_MS + 1));
    state.on_tick(&host);
    assert_eq!(host.stream(1).reply.map(|r| r.status), Some(503));
    assert!(!host.stream(1).resumed);
    assert_eq!(state.pending_len(), 0);
    assert_eq!(state.on_request_data(1), Action::Pause);
}

#[test]
fn cold_start_pauses_then_resumes_with_the_right_answers() {
    let shared = Rc::new(RefCell::new(SharedStore::default()));
    let (host, mut state) = vm(&shared);
    let good = format!("Bearer {}", token("rs256"));
    let forged = format!("Bearer {}", token("forged_kid"));
    assert_eq!(
        request(&host, &mut state, 1, "/a", &[("authorization", &good)]),
        Action::Pause
    );
    assert_eq!(
        request(&host, &mut state, 2, "/a", &[("authorization", &forged)]),
        Action::Pause
    );
    // A missing token needs no keys.
    assert_eq!(request(&host, &mut state, 3, "/a", &[]), Action::Pause);
    assert_eq!(host.stream(3).reply.map(|r| r.status), Some(401));
    // A route without a requirement needs nothing.
    assert_eq!(
        request(&host, &mut state, 4, "/public", &[]),
        Action::Continue
    );

    state.on_tick(&host);
    let calls = host.calls.borrow().clone();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        (
            calls[0].cluster.as_str(),
            calls[0].path.as_str(),
            calls[0].authority.as_str()
        ),
        ("idp", "/keys?x=1", "idp.test")
    );
    answer(&host, &mut state, "200", JWKS.as_bytes());

    let s1 = host.stream(1);
    assert!(s1.resumed && s1.reply.is_none());
    assert_eq!(header(&host, 1, "x-jwt-sub").as_deref(), Some("alice"));
    assert_eq!(
        header(&host, 1, "authorization"),
        None,
        "token not forwarded by default"
    );
    let s2 = host.stream(2);
    assert!(!s2.resumed);
    assert_eq!(
        s2.reply.map(|r| (r.status, r.body)),
        Some((
            401,
            r#"{"error":"bad_signature","error_description":"signature verification failed"}"#
                .into()
        ))
    );
    assert_eq!(state.pending_len(), 0);
    assert_eq!(host.counter("jwt_edge.allowed"), 2);
    assert_eq!(host.counter("jwt_edge.denied.bad_signature"), 1);
    assert_eq!(host.counter("jwt_edge.jwks.p.fetch_success"), 1);
}

#[test]
fn waiting_requests_fail_closed_after_the_deadline() {
    let shared = Rc::new(RefCell::new(SharedStore::default()));
    let (host, mut state) = vm(&shared);
    let good = format!("Bearer {}", token("rs256"));
    assert_eq!(
        request(&host, &mut state, 1, "/a", &[("authorization", &good)]),
        Action::Pause
    );
    state.on_tick(&host);
    answer(&host, &mut state, "503", b"upstream connect error");
    assert!(
        host.stream(1).reply.is_none(),
        "waits for a retry until the deadline"
    );
    host.now_ms.set(UnixMillis(T0 + KEY_WAIT_MS));
    state.on_tick(&host);
    let reply = host.stream(1).reply.unwrap();
    assert_eq!(reply.status, 503);
    assert_eq!(
        reply.body,
        r#"{"error":"jwks_unavailable","error_description":"signing keys are not available"}"#
    );
    assert!(!reply.headers.iter().any(|(k, _)| k == "www-authenticate"));
    assert_eq!(host.counter("jwt_edge.jwks.p.fetch_failed"), 1);
}

#[test]
fn one_fetch_per_proxy_and_every_vm_gets_the_keys() {
    let shared = Rc::new(RefCell::new(SharedStore::default()));
    let vms: Vec<(FakeHost, FilterState)> = (0..4).map(|_| vm(&shared)).collect();
    let mut vms = vms;
    for (host, state) in vms.iter_mut() {
        state.on_tick(host);
    }
    let fetches: usize = vms.iter().map(|(h, _)| h.calls.borrow().len()).sum();
    assert_eq!(fetches, 1, "the CAS lease lets one VM fetch");
    for (host, state) in vms.iter_mut() {
        answer(host, state, "200", JWKS.as_bytes());
    }
    host_ticks(&mut vms, 100);
    let good = format!("Bearer {}", token("es256"));
    for (i, (host, state)) in vms.iter_mut().enumerate() {
        assert_eq!(
            request(
                host,
                state,
                10 + i as u32,
                "/a",
                &[("authorization", &good)]
            ),
            Action::Continue,
            "vm {i}"
        );
    }
    // Refresh: due after 85-95 % of cache_duration (60 s); again exactly one fetch.
    host_ticks(&mut vms, 58_000);
    let fetches: usize = vms.iter().map(|(h, _)| h.calls.borrow().len()).sum();
    assert_eq!(fetches, 1);
}

fn host_ticks(vms: &mut [(FakeHost, FilterState)], advance_ms: u64) {
    for (host, state) in vms.iter_mut() {
        host.now_ms.set(host.now_ms.get() + Millis(advance_ms));
        state.on_tick(host);
    }
}

#[test]
fn bad_responses_never_replace_good_keys() {
    let shared = Rc::new(RefCell::new(SharedStore::default()));
    let (host, mut state) = vm(&shared);
    state.on_tick(&host);
    answer(&host, &mut state, "200", JWKS.as_bytes());
    let good = format!("Bearer {}", token("rs256"));
    let big = vec![b' '; 300 * 1024];
    for (status, body) in [
        ("500", &b"oops"[..]),
        ("200", b"<html>"),
        ("200", br#"{"keys":[]}"#),
        ("200", &big[..]),
    ] {
        host.now_ms.set(host.now_ms.get() + Millis(120_000));
        state.on_tick(&host);
        assert_eq!(host.calls.borrow().len(), 1, "refresh due");
        answer(&host, &mut state, status, body);
        assert_eq!(
            request(&host, &mut state, 7, "/a", &[("authorization", &good)]),
            Action::Continue,
            "{status}"
        );
    }
    assert_eq!(host.counter("jwt_edge.jwks.p.fetch_failed"), 4);
    let (raw, _) = host_shared_meta(&shared, &state, &remote_config());
    assert_eq!(raw.failures, 4);
    assert_eq!(raw.doc_version, 1);
}

fn host_shared_meta(
    shared: &Rc<RefCell<SharedStore>>,
    state: &FilterState,
    cfg: &str,
) -> (Lease, ()) {
    let host = FakeHost::new(shared.clone(), UnixMillis(0), &[]);
    let key = state.meta_key(0).unwrap();
    let (raw, _) = crate::sources::SharedData::read(&host, key);
    let raw = raw.unwrap();
    let payload = Binding::new(cfg.as_bytes()).open(key, &raw).unwrap();
    (Lease::decode(payload).unwrap(), ())
}

#[test]
fn unknown_kid_waits_for_one_early_refetch() {
    let shared = Rc::new(RefCell::new(SharedStore::default()));
    let (host, mut state) = vm(&shared);
    state.on_tick(&host);
    // The provider has only rsa-2 at first... then publishes the rest.
    let rotated = json!({"keys": serde_json::from_str::<Value>(JWKS).unwrap()["keys"].as_array().unwrap()[1..]}).to_string();
    answer(&host, &mut state, "200", rotated.as_bytes());
    host.now_ms.set(UnixMillis(T0 + 20_000));
    let good = format!("Bearer {}", token("rs256"));
    assert_eq!(
        request(&host, &mut state, 1, "/a", &[("authorization", &good)]),
        Action::Pause
    );
    assert_eq!(
        host.calls.borrow().len(),
        0,
        "the root's tick fetches, not the stream"
    );
    host.now_ms.set(UnixMillis(T0 + 20_100));
    state.on_tick(&host);
    assert_eq!(host.calls.borrow().len(), 1, "an early refetch started");
    answer(&host, &mut state, "200", JWKS.as_bytes());
    assert!(
        host.stream(1).resumed,
        "the new key verifies the waiting token"
    );
    // A kid that is still unknown after the refetch is refused at once (rate limit).
    let unknown = format!("Bearer {}", token("unknown_kid"));
    assert_eq!(
        request(&host, &mut state, 2, "/a", &[("authorization", &unknown)]),
        Action::Pause
    );
    assert_eq!(host.stream(2).reply.map(|r| r.status), Some(401));
    assert_eq!(host.calls.borrow().len(), 0);
}

#[test]
fn forged_identity_headers_are_removed_on_every_route() {
    let shared = Rc::new(RefCell::new(SharedStore::default()));
    let (host, mut state) = vm(&shared);
    state.on_tick(&host);
    answer(&host, &mut state, "200", JWKS.as_bytes());
    assert_eq!(
        request(&host, &mut state, 1, "/public", &[("x-jwt-sub", "admin")]),
        Action::Continue
    );
    assert_eq!(header(&host, 1, "x-jwt-sub"), None);
    let good = format!("Bearer {}", token("rs256"));
    assert_eq!(
        request(
            &host,
            &mut state,
            2,
            "/a",
            &[
                ("x-jwt-sub", "admin"),
                ("authorization", &good),
                ("x-jwt-sub", "root")
            ]
        ),
        Action::Continue
    );
    assert_eq!(host.stream(2).upstream_values("x-jwt-sub"), ["alice"]);
}

#[test]
fn a_closed_stream_is_never_resumed() {
    let shared = Rc::new(RefCell::new(SharedStore::default()));
    let (host, mut state) = vm(&shared);
    let good = format!("Bearer {}", token("rs256"));
    assert_eq!(
        request(&host, &mut state, 1, "/a", &[("authorization", &good)]),
        Action::Pause
    );
    host.close_stream(1);
    state.on_stream_done(1);
    state.on_tick(&host);
    answer(&host, &mut state, "200", JWKS.as_bytes());
    assert_eq!(state.pending_len(), 0);
    assert_eq!(host.counter("jwt_edge.allowed"), 0);
}

#[test]
fn oidc_discovery_then_keys_through_the_same_cluster() {
    let cfg = json!({
        "providers": {"p": {
            "issuer": "https://issuer.test",
            "remote_jwks": {"http_uri": {"uri": "https://issuer.test/.well-known/openid-configuration", "cluster": "idp"}, "discovery": true}
        }},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "p"}}]
    })
    .to_string();
    let shared = Rc::new(RefCell::new(SharedStore::default()));
    let host = FakeHost::new(shared, UnixMillis(T0), &["idp"]);
    let mut state = FilterState::new(config::parse(&cfg).unwrap(), &cfg, HostProfile::ENVOY);
    state.on_tick(&host);
    let first = host.calls.borrow()[0].clone();
    assert_eq!(
        (first.path.as_str(), first.authority.as_str()),
        ("/.well-known/openid-configuration", "issuer.test")
    );

    // A document for another issuer is refused: no key fetch follows.
    answer(
        &host,
        &mut state,
        "200",
        br#"{"issuer":"https://evil.test","jwks_uri":"https://evil.test/k"}"#,
    );
    assert_eq!(host.calls.borrow().len(), 0);
    assert_eq!(host.counter("jwt_edge.jwks.p.fetch_failed"), 1);

    host.now_ms.set(UnixMillis(T0 + 1_000));
    state.on_tick(&host);
    answer(
        &host,
        &mut state,
        "200",
        br#"{"issuer":"https://issuer.test","jwks_uri":"https://keys.issuer.test/v1/jwks"}"#,
    );
    let second = host.calls.borrow()[0].clone();
    assert_eq!(
        (
            second.cluster.as_str(),
            second.path.as_str(),
            second.authority.as_str()
        ),
        ("idp", "/v1/jwks", "keys.issuer.test")
    );
    answer(&host, &mut state, "200", JWKS.as_bytes());
    let good = format!("Bearer {}", token("es256"));
    assert_eq!(
        request(&host, &mut state, 1, "/", &[("authorization", &good)]),
        Action::Continue
    );
}

#[test]
fn a_key_set_change_empties_the_token_cache() {
    let cfg = remote_config().replace(
        r#""audiences":["api"],"#,
        r#""audiences":["api"],"jwt_cache_config":{"jwt_cache_size":100},"#,
    );
    assert!(cfg.contains("jwt_cache_size"));
    let shared = Rc::new(RefCell::new(SharedStore::default()));
    let host = FakeHost::new(shared, UnixMillis(T0), &["idp"]);
    let mut state = FilterState::new(config::parse(&cfg).unwrap(), &cfg, HostProfile::ENVOY);
    state.on_tick(&host);
    answer(&host, &mut state, "200", JWKS.as_bytes());
    let good = format!("Bearer {}", token("rs256"));
    assert_eq!(
        request(&host, &mut state, 1, "/a", &[("authorization", &good)]),
        Action::Continue
    );
    assert_eq!(
        request(&host, &mut state, 2, "/a", &[("authorization", &good)]),
        Action::Continue
    );
    assert_eq!(
        (
            host.counter("jwt_edge.jwt_cache_miss"),
            host.counter("jwt_edge.jwt_cache_hit")
        ),
        (1, 1)
    );
    // The provider drops rsa-1: the cached token must not outlive its key.
    let without_rsa1 = json!({"keys": serde_json::from_str::<Value>(JWKS).unwrap()["keys"].as_array().unwrap()[1..]}).to_string();
    host.now_ms.set(UnixMillis(T0 + 120_000));
    state.on_tick(&host);
    answer(&host, &mut state, "200", without_rsa1.as_bytes());
    host.now_ms.set(UnixMillis(T0 + 125_000));
    assert_eq!(
        request(&host, &mut state, 3, "/a", &[("authorization", &good)]),
        Action::Pause
    );
    // The unknown kid waits for one early refetch; the key is still gone, so 401.
    state.on_tick(&host);
    assert_eq!(host.calls.borrow().len(), 1);
    answer(&host, &mut state, "200", without_rsa1.as_bytes());
    assert_eq!(
        host.stream(3).reply.map(|r| (r.status, r.body)),
        Some((401, r#"{"error":"unknown_kid","error_description":"the key set has no key with the token's kid"}"#.into()))
    );
}

#[test]
fn a_vm_that_dies_mid_fetch_loses_the_lease_within_a_second() {
    let shared = Rc::new(RefCell::new(SharedStore::default()));
    let (dying, mut dying_state) = vm(&shared);
    let (worker, mut worker_state) = vm(&shared);
    dying_state.on_tick(&dying);
    assert_eq!(dying.calls.borrow().len(), 1);
    // The fetching VM goes away (Envoy's short-lived main-thread VM): no answer, no renewal.
    let good = format!("Bearer {}", token("rs256"));
    assert_eq!(
        request(
            &worker,
            &mut worker_state,
            1,
            "/a",
            &[("authorization", &good)]
        ),
        Action::Pause
    );
    for t in [100, 500, 900] {
        worker.now_ms.set(UnixMillis(T0 + t));
        worker_state.on_tick(&worker);
        assert_eq!(
            worker.calls.borrow().len(),
            0,
            "lease still held at +{t} ms"
        );
    }
    worker.now_ms.set(UnixMillis(T0 + 1_000));
    worker_state.on_tick(&worker);
    assert_eq!(worker.calls.borrow().len(), 1, "taken over");
    answer(&worker, &mut worker_state, "200", JWKS.as_bytes());
    assert!(worker.stream(1).resumed);
    drop(dying_state);
}

#[test]
fn a_live_fetcher_keeps_its_lease() {
    let shared = Rc::new(RefCell::new(SharedStore::default()));
    let (a, mut a_state) = vm(&shared);
    let (b, mut b_state) = vm(&shared);
    a_state.on_tick(&a);
    for t in (100..=1_900).step_by(100) {
        a.now_ms.set(UnixMillis(T0 + t));
        a_state.on_tick(&a);
        b.now_ms.set(UnixMillis(T0 + t));
        b_state.on_tick(&b);
    }
    assert_eq!((a.calls.borrow().len(), b.calls.borrow().len()), (1, 0));
}

fn revocation_vm(shared: &Rc<RefCell<SharedStore>>) -> (FakeHost, FilterState) {
    let cfg = json!({
        "providers": {"p": {
            "issuer": "https://issuer.test",
            "audiences": ["api"],
            "remote_jwks": {"http_uri": {"uri": "https://idp.test/keys", "cluster": "idp", "timeout": "2s"}, "cache_duration": "600s"},
            "revocation_list": {"http_uri": {"uri": "https://idp.test/revoked", "cluster": "idp", "timeout": "2s"}, "cache_duration": "10s", "max_stale": "20s"},
            "jwt_cache_config": {"jwt_cache_size": 10}
        }},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "p"}}]
    });
    let host = FakeHost::new(shared.clone(), UnixMillis(T0), &["idp"]);
    let cfg = cfg.to_string();
    let state = FilterState::new(config::parse(&cfg).unwrap(), &cfg, HostProfile::ENVOY);
    (host, state)
}

/// Answers every outstanding call by its path.
fn answer_by_path(
    host: &FakeHost,
    state: &mut FilterState,
    answers: &[(&str, &str, &[u8])],
) -> Vec<String> {
    let calls: Vec<_> = host.calls.borrow_mut().drain(..).collect();
    let mut paths = Vec::new();
    for c in calls {
        let (_, status, body) = answers
            .iter()
            .find(|(p, _, _)| *p == c.path)
            .unwrap_or_else(|| panic!("unexpected fetch of {}", c.path));
        host.respond(status, body);
        state.on_http_call_response(host, c.token, body.len());
        paths.push(c.path);
    }
    paths.sort();
    paths
}

#[test]
fn a_remote_revocation_list_is_fetched_shared_enforced_and_fails_closed() {
    let shared = Rc::new(RefCell::new(SharedStore::default()));
    let (host, mut state) = revocation_vm(&shared);
    let good = format!("Bearer {}", token("rs256"));
    let listed = format!("Bearer {}", token("with_jti")); // jti tok-123, sub bob
    assert_eq!(
        request(&host, &mut state, 1, "/a", &[("authorization", &good)]),
        Action::Pause
    );
    state.on_tick(&host);
    let calls: Vec<_> = host.calls.borrow_mut().drain(..).collect();
    let paths: Vec<&str> = calls.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(
        paths,
        ["/keys", "/revoked"],
        "both fetched on the first tick"
    );
    // Keys first: the request is verified, then waits on for the list.
    host.respond("200", JWKS.as_bytes());
    state.on_http_call_response(&host, calls[0].token, JWKS.len());
    assert!(
        host.stream(1).reply.is_none() && !host.stream(1).resumed,
        "still waiting for the list"
    );
    assert_eq!(state.pending_len(), 1);
    let list = br#"{"jti":["tok-123"]}"#;
    host.respond("200", list);
    state.on_http_call_response(&host, calls[1].token, list.len());
    assert!(host.stream(1).resumed, "allowed once the list arrived");
    assert_eq!(
        request(&host, &mut state, 2, "/a", &[("authorization", &listed)]),
        Action::Pause
    );
    assert_eq!(
        host.stream(2).reply.map(|r| (r.status, r.body)),
        Some((
            401,
            r#"{"error":"token_revoked","error_description":"token has been revoked"}"#.into()
        ))
    );
    assert_eq!(host.counter("jwt_edge.revocation.p.fetch_success"), 1);
    assert_eq!(
        host.gauges.borrow().get("jwt_edge.revocation.p.entries"),
        Some(&1)
    );

    // Another VM gets both documents from shared data: no fetch of its own.
    let (host2, mut state2) = revocation_vm(&shared);
    state2.on_tick(&host2);
    assert!(host2.calls.borrow().is_empty());
    assert_eq!(
        request(&host2, &mut state2, 1, "/a", &[("authorization", &listed)]),
        Action::Pause
    );
    assert_eq!(host2.stream(1).reply.map(|r| r.status), Some(401));

    // Refreshes that bring no usable list keep the last good one.
    for (status, body) in [
        ("500", &b"oops"[..]),
        ("200", &b"<html>"[..]),
        ("200", &br#"{"jti":["tok-123"],"jtis":[]}"#[..]),
        ("200", &br#"{"jti":"tok-123"}"#[..]),
    ] {
        // First refresh at 85-95 % of 10 s, then retries with backoff (1 s, 2 s, 4 s).
        for _ in 0..40 {
            if !host.calls.borrow().is_empty() {
                break;
            }
            host.now_ms.set(host.now_ms.get() + Millis(250));
            state.on_tick(&host);
        }
        assert_eq!(
            answer_by_path(&host, &mut state, &[("/revoked", status, body)]),
            ["/revoked"]
        );
        assert!(
            host.now_ms.get() < UnixMillis(T0 + 30_000),
            "still within max_stale"
        );
        assert_eq!(
            request(&host, &mut state, 3, "/a", &[("authorization", &listed)]),
            Action::Pause,
            "{status} {}",
            String::from_utf8_lossy(body)
        );
        assert_eq!(host.stream(3).reply.map(|r| r.status), Some(401));
        assert_eq!(
            request(&host, &mut state, 4, "/a", &[("authorization", &good)]),
            Action::Continue
        );
    }
    assert_eq!(host.counter("jwt_edge.revocation.p.fetch_failed"), 4);
    assert_eq!(
        host.gauges
            .borrow()
            .get("jwt_edge.revocation.p.stale_serving"),
        Some(&1)
    );
    assert_eq!(host.counter("jwt_edge.jwks.p.fetch_failed"), 0);

    // Past cache_duration + max_stale (10 s + 20 s) with no good list: fail closed, after
    // the request waited for a fetch that never succeeds.
    host.now_ms.set(UnixMillis(T0 + 31_000));
    assert_eq!(
        request(&host, &mut state, 6, "/a", &[("authorization", &good)]),
        Action::Pause
    );
    assert!(host.stream(6).reply.is_none(), "waits first");
    host.now_ms.set(UnixMillis(T0 + 31_000 + KEY_WAIT_MS));
    state.on_tick(&host);
    let reply = host.stream(6).reply.expect("decided at the deadline");
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (
            503,
            r#"{"error":"revocation_unavailable","error_description":"the revocation list is not available"}"#
        )
    );
    assert_eq!(host.counter("jwt_edge.denied.revocation_unavailable"), 1);
    // A good list again: accepted again.
    host.calls.borrow_mut().clear();
    host.now_ms.set(UnixMillis(T0 + 120_000));
    state.on_tick(&host);
    answer_by_path(&host, &mut state, &[("/revoked", "200", b"{}")]);
    assert_eq!(
        request(&host, &mut state, 7, "/a", &[("authorization", &listed)]),
        Action::Continue
    );
    assert_eq!(
        host.gauges
            .borrow()
            .get("jwt_edge.revocation.p.stale_serving"),
        Some(&0)
    );
}

/// ngx_wasm_module's profile: `set_effective_context` does nothing, so a request decided from
/// the root context would act on no request (a crashed worker there). With `can_wait` off no
/// request waits: a cold-start request is refused at once (503), an unknown `kid` at once
/// (401), the root context never switches to a stream, and keys still load on the tick.
#[test]
fn a_host_that_cannot_switch_contexts_never_holds_a_request_for_keys() {
    let shared = Rc::new(RefCell::new(SharedStore::default()));
    let (host, mut state) = vm_with(&shared, &remote_config(), true);
    let good = format!("Bearer {}", token("rs256"));
    assert_eq!(
        request(&host, &mut state, 1, "/a", &[("authorization", &good)]),
        Action::Pause
    );
    assert_eq!(host.stream(1).reply.map(|r| r.status), Some(503));
    assert_eq!(state.pending_len(), 0);
    assert_eq!(
        state.on_request_data(1),
        Action::Pause,
        "refused: body held"
    );
    assert_eq!(host.counter("jwt_edge.denied.jwks_unavailable"), 1);

    state.on_tick(&host);
    answer(&host, &mut state, "200", JWKS.as_bytes());
    assert_eq!(
        request(&host, &mut state, 2, "/a", &[("authorization", &good)]),
        Action::Continue
    );
    assert_eq!(header(&host, 2, "x-jwt-sub").as_deref(), Some("alice"));
    let unknown = format!("Bearer {}", token("unknown_kid"));
    assert_eq!(
        request(&host, &mut state, 3, "/a", &[("authorization", &unknown)]),
        Action::Pause
    );
    assert_eq!(host.stream(3).reply.map(|r| r.status), Some(401));
    host.now_ms.set(UnixMillis(T0 + 5_000));
    state.on_tick(&host);
    assert_eq!(state.pending_len(), 0);
    assert_eq!(
        (host.context_switches.get(), host.root_stream_ops.get()),
        (0, 0),
        "the root context touched a stream"
    );
}

/// #18 under both profiles: a client's copy of an identity header is stripped on Envoy and
/// refused (400) on ngx_wasm_module, where a removed header still reaches the upstream; a
/// token that is not forwarded never reaches the upstream on either.
#[test]
fn identity_headers_and_unforwarded_tokens_under_both_profiles() {
    let good = format!("Bearer {}", token("rs256"));
    for ngx in [false, true] {
        let shared = Rc::new(RefCell::new(SharedStore::default()));
        let (host, mut state) = vm_with(&shared, &remote_config(), ngx);
        state.on_tick(&host);
        answer(&host, &mut state, "200", JWKS.as_bytes());

        // Accepted: the upstream gets the identity header, never the token.
        assert_eq!(
            request(&host, &mut state, 1, "/a", &[("authorization", &good)]),
            Action::Continue
        );
        let s1 = host.stream(1);
        assert_eq!(s1.upstream_values("x-jwt-sub"), ["alice"], "ngx={ngx}");
        let expected: &[&str] = if ngx { &[""] } else { &[] };
        assert_eq!(s1.upstream_values("authorization"), expected, "ngx={ngx}");
        assert!(!format!("{:?}", s1.upstream()).contains(&good[7..]));

        // A forged copy, with a good token and on a route without a requirement.
        for (id, path) in [(2, "/a"), (3, "/public")] {
            let action = request(
                &host,
                &mut state,
                id,
                path,
                &[("x-jwt-sub", "admin"), ("authorization", &good)],
            );
            let s = host.stream(id);
            if ngx {
                assert_eq!(action, Action::Pause);
                let reply = s.reply.expect("refused");
                assert_eq!(
                    (reply.status, reply.body.as_str()),
                    (
                        400,
                        r#"{"error":"identity_header_present","error_description":"the request carries a header that only the filter may set"}"#
                    )
                );
                assert_eq!(
                    state.on_request_data(id),
                    Action::Pause,
                    "refused: body held"
                );
            } else {
                assert_eq!(action, Action::Continue);
                let expected: &[&str] = if path == "/a" { &["alice"] } else { &[] };
                assert_eq!(s.upstream_values("x-jwt-sub"), expected, "{path}");
            }
        }
        let refused = host.counter("jwt_edge.denied.identity_header_present");
        assert_eq!(refused, if ngx { 2 } else { 0 });
        assert_eq!(host.root_stream_ops.get(), 0);
    }
}

/// The fake's ngx profile itself: removal hides a header from the filter but not from the
/// upstream, a replace rewrites the entry in place, and stream host calls from the root
/// context are counted (each one a crashed worker there).
#[test]
fn the_fake_ngx_host_keeps_removed_headers_upstream() {
    use crate::filter::Host;
    let host = FakeHost::ngx(
        Rc::new(RefCell::new(SharedStore::default())),
        UnixMillis(T0),
        &[],
    );
    host.open_stream(1, &[("x-a", "1"), ("x-b", "2"), ("x-b", "3")]);
    host.in_stream_callback.set(true);
    host.remove_request_header("x-a");
    host.set_request_header("x-b", "9");
    host.set_request_header("x-c", "4");
    assert_eq!(host.request_headers(), [("x-c".to_owned(), "4".to_owned())]);
    assert_eq!(
        host.stream(1).upstream(),
        [("x-a", "1"), ("x-b", "9"), ("x-b", "3"), ("x-c", "4")]
    );
    host.in_stream_callback.set(false);
    assert!(!host.resume_request());
    assert_eq!(host.root_stream_ops.get(), 1);
    assert!(
        host.set_effective_context(u32::MAX),
        "a no-op that answers Ok"
    );
}

/// Issue #13: an identity header the request does not carry is added (the host searches for
/// no copies to replace), also after a forged copy was removed; `authorization`'s erasure on
/// ngx_wasm_module and a `:path` rewrite replace what is there. Either way exactly one value
/// reaches the upstream.
#[test]
fn absent_headers_are_added_and_present_ones_replaced() {
    let good = format!("Bearer {}", token("rs256"));
    let cfg = json!({
        "providers": {"p": {
            "issuer": "https://issuer.test",
            "audiences": ["api"],
            "remote_jwks": {"http_uri": {"uri": "https://idp.test/keys", "cluster": "idp", "timeout": "2s"}},
            "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
            "from_params": ["access_token"],
            "claim_to_headers": [{"header_name": "x-jwt-sub", "claim_name": "sub"}]
        }},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "p"}}]
    })
    .to_string();
    for ngx in [false, true] {
        let shared = Rc::new(RefCell::new(SharedStore::default()));
        let (host, mut state) = vm_with(&shared, &cfg, ngx);
        state.on_tick(&host);
        answer(&host, &mut state, "200", JWKS.as_bytes());
        assert_eq!(
            request(&host, &mut state, 1, "/a", &[("authorization", &good)]),
            Action::Continue
        );
        assert_eq!(host.header_adds.get(), 1, "ngx={ngx}");
        let s1 = host.stream(1);
        assert_eq!(s1.upstream_values("x-jwt-sub"), ["alice"], "ngx={ngx}");
        let erased: &[&str] = if ngx { &[""] } else { &[] };
        assert_eq!(s1.upstream_values("authorization"), erased, "ngx={ngx}");

        // The token in the query (Envoy: ngx_wasm_module refuses it, it cannot rewrite the
        // path): the path is rewritten in place, never a second `:path`.
        if !ngx {
            let path = format!("/b?x=1&access_token={}", token("rs256"));
            let action = request(&host, &mut state, 2, &path, &[]);
            assert_eq!(action, Action::Continue, "{:?}", host.stream(2).reply);
            assert_eq!(host.header_adds.get(), 2);
            let s2 = host.stream(2);
            assert_eq!(s2.upstream_values(":path"), ["/b?x=1"]);
            assert_eq!(s2.upstream_values("x-jwt-sub"), ["alice"]);
        }
    }
    // Envoy: forged copies, in any case, are removed, then ours is added: one value.
    let shared = Rc::new(RefCell::new(SharedStore::default()));
    let (host, mut state) = vm_with(&shared, &cfg, false);
    state.on_tick(&host);
    answer(&host, &mut state, "200", JWKS.as_bytes());
    let forged = [
        ("x-jwt-sub", "admin"),
        ("x-jwt-sub", "root"),
        ("authorization", &good),
    ];
    assert_eq!(
        request(&host, &mut state, 3, "/a", &forged),
        Action::Continue
    );
    assert_eq!(host.header_adds.get(), 1);
    assert_eq!(host.stream(3).upstream_values("x-jwt-sub"), ["alice"]);
}

/// A host that refuses a header change: an accepted request must not reach the upstream with
/// a client's identity header or a token it should not carry, so it is answered `503
/// header_change_refused` and its body is held; a refusal stays the refusal it was.
#[test]
fn a_refused_header_change_refuses_an_accepted_request() {
    let good = format!("Bearer {}", token("rs256"));
    let shared = Rc::new(RefCell::new(SharedStore::default()));
    let (host, mut state) = vm(&shared);
    state.on_tick(&host);
    answer(&host, &mut state, "200", JWKS.as_bytes());
    host.refuse_header_changes.set(true);
    let refused = r#"{"error":"header_change_refused","error_description":"the proxy refused a header change the request needs"}"#;
    // A valid token (its header to remove, the identity header to add), and a forged
    // identity header on a route without a requirement (the copy to remove).
    for (id, path, extra) in [
        (1, "/a", vec![("authorization", good.as_str())]),
        (2, "/public", vec![("x-jwt-sub", "admin")]),
    ] {
        assert_eq!(request(&host, &mut state, id, path, &extra), Action::Pause);
        let reply = host.stream(id).reply.expect("refused");
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (503, refused),
            "{path}"
        );
        assert_eq!(
            state.on_request_data(id),
            Action::Pause,
            "{path}: body held"
        );
    }
    // No token: the 401 goes out as it was.
    assert_eq!(request(&host, &mut state, 3, "/a", &[]), Action::Pause);
    assert_eq!(host.stream(3).reply.expect("refused").status, 401);
    assert_eq!(host.counter("jwt_edge.denied.header_change_refused"), 2);
    // The host changes headers again: the same request goes on, as it should.
    host.refuse_header_changes.set(false);
    assert_eq!(
        request(&host, &mut state, 4, "/a", &[("authorization", &good)]),
        Action::Continue
    );
    assert_eq!(host.stream(4).upstream_values("x-jwt-sub"), ["alice"]);
}
