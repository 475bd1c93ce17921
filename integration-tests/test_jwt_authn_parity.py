"""Differential: the same configs and requests through Envoy's jwt_authn and through jwt-edge.

One Envoy runs every config twice (harness/parity.py): once under envoy.filters.http.jwt_authn,
once under jwt-edge. For each request the status, the `error=` of `WWW-Authenticate`, and what
reached the upstream (identity headers, which token locations still held a token) must be
equal, except for requests marked with a named deviation from DEVIATIONS below, each of which
points at its line in the README (checked) and must really differ (a deviation that no longer
shows is an error: remove it).

Envoy's own jwt_authn cases are included: the configs of test_common.h (ExampleConfig,
RequiresAllConfig, RequiresAnyConfig) and its tokens (fixtures/envoy_jwt_authn/, Apache-2.0).

The four fixes of issue #19 each have a test below that states jwt_authn's answer next to
ours (`test_19_*`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import tokens as tk
from harness.backend import Backend
from harness.parity import (Outcome, ParityEnvoy, Request, identity_headers, outcome,
                            token_locations)

HERE = Path(__file__).resolve().parent
README = (HERE.parent / "README.md").read_text()
FIXTURES = HERE / "fixtures"
ENVOY_FIX = FIXTURES / "envoy_jwt_authn"
ENVOY_JWKS = (ENVOY_FIX / "jwks.json").read_text()
ENVOY_TOKENS = json.loads((ENVOY_FIX / "tokens.json").read_text())["tokens"]
OUR_JWKS = (FIXTURES / "jwks.json").read_text()
ISS = "https://idp.test/"

# name -> the README text that documents it (must be present verbatim).
DEVIATIONS = {
    "exp_required": "`require_expiration` | **default `true`**",
    "present_token_must_be_valid": "A token that is present must be valid, under every requirement",
    "forward_false_removes_every_token": "With `forward: false`, no token jwt-edge looked at reaches the upstream",
    "bearer_whitespace_malformed": "`Bearer<TAB>token` is a malformed credential",
    "underscore_identity_headers": "client copies of identity headers are removed also when spelled with `_`",
    "signature_before_audience": "the signature is checked before `aud`",
    "times_before_audience": "`exp`, `nbf` and `max_lifetime` are checked before `aud`",
    "provider_by_location": "a token is judged by the provider whose location it was found in",
    # Applies to every 403: jwt_authn says error="invalid_token" there.
    "403_insufficient_scope": 'a 403 says `error="insufficient_scope"` (RFC 6750 §3.1)',
}


# jwt_authn's side of these changes between processes: a difference may or may not show.
NONDETERMINISTIC = {"provider_by_location"}


def same(authn: Outcome, edge: Outcome) -> bool:
    """Equal, up to the one response-wide deviation (403_insufficient_scope)."""
    if authn.status == edge.status == 403 and (authn.www_error, edge.www_error) == (
            "invalid_token", "insufficient_scope"):
        return authn.upstream == edge.upstream
    return authn == edge


def provider(**extra) -> dict:
    p = {"issuer": ISS, "audiences": ["api"], "local_jwks": {"inline_string": OUR_JWKS}}
    p.update(extra)
    return p


def envoy_provider(issuer: str, **extra) -> dict:
    p = {"issuer": issuer, "local_jwks": {"inline_string": ENVOY_JWKS}}
    p.update(extra)
    return p


def bearer(t: str) -> tuple[str, str]:
    return ("authorization", f"Bearer {t}")


@pytest.fixture(scope="module")
def tokens(keys):
    rsa = keys["rsa-1"]
    good = tk.mint(rsa)
    return {
        "good": good,
        "expired": tk.mint(rsa, tk.claims(exp=tk.EXP_EXPIRED)),
        "forged": tk.mint(keys["rsa-1"], signing_key=keys["rsa-evil"]),
        "es256": tk.mint(keys["ec-p256"], tk.claims(sub="bob")),
        "other_iss": tk.mint(rsa, tk.claims(iss="https://other.test/")),
        "wrong_aud": tk.mint(rsa, tk.claims(aud="nope")),
        "forged_wrong_aud": tk.mint(rsa, tk.claims(aud="nope"), signing_key=keys["rsa-evil"]),
        "claims": tk.mint(rsa, tk.claims(roles=["reader", "writer"], org={"id": 7}, neg=-5,
                                         ratio=1.5, n=5, admin=True, off=False,
                                         commas=["user,admin"], empty="")),
        "future_iat": tk.mint(rsa, tk.claims(iat=4_000_000_000, exp=4_000_003_600)),
    }


def cases(t: dict) -> list[tuple[str, dict, list[Request]]]:
    """(name, config, requests). Built from the minted tokens `t`."""
    good, expired, forged = t["good"], t["expired"], t["forged"]
    e = ENVOY_TOKENS
    two = {
        "corp": provider(from_headers=[{"name": "x-corp-token"}],
                         claim_to_headers=[{"header_name": "x-corp-sub", "claim_name": "sub"}]),
        "partner": provider(from_params=["access_token"],
                            claim_to_headers=[{"header_name": "x-partner-sub", "claim_name": "sub"}]),
    }
    tenant = lambda *vs: [("x-tenant", v) for v in vs]  # noqa: E731
    rule = lambda prefix, m: {"match": {"prefix": prefix, "headers": [m]},  # noqa: E731
                              "requires": {"provider_name": "p"}}
    return [
        # ---- #19.1 / F4: allow_missing with a valid and an invalid token
        ("allow_missing_two_providers", {
            "providers": two,
            "rules": [{"match": {"prefix": "/"}, "requires": {"allow_missing": {}}}],
        }, [
            Request(f"/?access_token={good}", [("x-corp-token", expired)]),
            Request(f"/?access_token={good}", [("x-corp-token", forged)]),
            Request(f"/?access_token={good}", deviation="provider_by_location"),
            Request("/", [("x-corp-token", good)], deviation="provider_by_location"),
            Request("/"),
        ]),
        ("requires_any_two_providers", {
            "providers": two,
            "rules": [{"match": {"prefix": "/"}, "requires": {"requires_any": {"requirements": [
                {"provider_name": "corp"}, {"provider_name": "partner"}]}}}],
        }, [
            Request(f"/?access_token={expired}", [("x-corp-token", good)],
                    deviation="present_token_must_be_valid"),
            Request("/", [("x-corp-token", good)]),
            Request("/", [("x-corp-token", expired)]),
            Request("/"),
        ]),
        ("lenient_and_whitespace", {
            "providers": {"p": provider()},
            "rules": [
                {"match": {"prefix": "/lenient"}, "requires": {"allow_missing_or_failed": {}}},
                {"match": {"prefix": "/"}, "requires": {"allow_missing": {}}},
            ],
        }, [
            Request("/", [("authorization", f"Bearer\t{good}")],
                    deviation="bearer_whitespace_malformed"),
            Request("/lenient", [bearer(expired)], deviation="forward_false_removes_every_token"),
            Request("/lenient", [bearer(good)]),
            Request("/", [bearer(expired)]),
            Request("/", [bearer(good)]),
            Request("/", [("authorization", "Basic dXNlcjpwYXNz")]),
        ]),
        # ---- #19.2: header matchers on repeated headers
        ("header_matchers", {
            "providers": {"p": provider()},
            "rules": [
                rule("/exact", {"name": "x-tenant", "string_match": {"exact": "t1"}}),
                rule("/not-t1", {"name": "x-tenant", "string_match": {"exact": "t1"},
                                 "invert_match": True}),
                rule("/present", {"name": "x-tenant", "present_match": True}),
                rule("/absent", {"name": "x-tenant", "present_match": False}),
                rule("/inverted-present", {"name": "x-tenant", "present_match": True,
                                           "invert_match": True}),
                rule("/prefix", {"name": "x-tenant", "prefix_match": "t"}),
                rule("/regex", {"name": "x-tenant",
                                "safe_regex_match": {"regex": "t[0-9]"}}),
            ],
        }, [Request(path, tenant(*vs)) for path in
            ("/exact", "/not-t1", "/present", "/absent", "/inverted-present", "/prefix", "/regex")
            for vs in ((), ("t1",), ("t1", "t2"), ("t2", "t1"), ("t2",), ("t1,t2",), ("",))]),
        # ---- #19.3: allow_missing inside requires_any
        ("allow_missing_scope", {
            "providers": {
                "svc": provider(issuer="https://svc.test/",
                                claim_to_headers=[{"header_name": "x-svc-sub", "claim_name": "sub"}]),
                "other": provider(claim_to_headers=[{"header_name": "x-other-sub",
                                                     "claim_name": "sub"}]),
            },
            "rules": [
                {"match": {"prefix": "/svc-or-missing"}, "requires": {"requires_any": {
                    "requirements": [{"provider_name": "svc"}, {"allow_missing": {}}]}}},
                {"match": {"prefix": "/svc-or-failed"}, "requires": {"requires_any": {
                    "requirements": [{"provider_name": "svc"}, {"allow_missing_or_failed": {}}]}}},
                {"match": {"prefix": "/optional"}, "requires": {"allow_missing": {}}},
            ],
        }, [
            Request("/svc-or-missing", [bearer(good)]),
            Request("/svc-or-missing"),
            Request("/svc-or-failed", [bearer(good)], deviation="forward_false_removes_every_token"),
            Request("/svc-or-failed"),
            Request("/optional", [bearer(good)]),
        ]),
        # ---- #19.4 / F5 / F6: claim formats, forged identity headers, max_lifetime
        ("claims_and_lifetime", {
            "providers": {"p": provider(
                forward_payload_header="x-payload",
                claim_to_headers=[{"header_name": h, "claim_name": c} for h, c in (
                    ("x-sub", "sub"), ("x-roles", "roles"), ("x-org", "org"),
                    ("x-org-id", "org.id"), ("x-neg", "neg"), ("x-ratio", "ratio"),
                    ("x-n", "n"), ("x-admin", "admin"), ("x-off", "off"),
                    ("x-commas", "commas"), ("x-empty", "empty"), ("x-missing", "nope"))])},
            "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "p"}}],
        }, [
            Request("/", [bearer(t["claims"])]),
            Request("/", [bearer(good), ("x-sub", "mallory"), ("x-roles", "admin")]),
            Request("/", [bearer(good), ("x_sub", "mallory")],
                    deviation="underscore_identity_headers"),
            Request("/", [bearer(t["es256"])]),
            Request("/", [bearer(t["wrong_aud"])]),
            Request("/", [bearer(t["forged_wrong_aud"])], deviation="signature_before_audience"),
            Request("/", [bearer(t["other_iss"])]),
            Request("/", [bearer(forged)]),
            Request("/", [bearer(expired)]),
            Request("/"),
        ]),
        ("max_lifetime", {
            "providers": {"p": provider(max_lifetime="86400s")},
            "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "p"}}],
        }, [
            # F6: a future iat does not stretch max_lifetime (jwt_authn refuses it too).
            Request("/", [bearer(t["future_iat"])]),
            Request("/", [bearer(good)]),
            Request("/", [bearer(t["wrong_aud"])], deviation="times_before_audience"),
        ]),
        # ---- Envoy's own cases: test_common.h ExampleConfig (remote_jwks made local)
        ("envoy_example_config", {
            "providers": {"example_provider": envoy_provider(
                "https://example.com",
                audiences=["example_service", "http://example_service1", "https://example_service2/"],
                forward_payload_header="sec-istio-auth-userinfo",
                claim_to_headers=[{"header_name": h, "claim_name": c} for h, c in (
                    ("x-jwt-claim-sub", "sub"), ("x-jwt-claim-nested", "nested.key-1"),
                    ("x-jwt-claim-nested-wrong", "nested.wrong.claim"),
                    ("x-jwt-unsupported-type-claim", "nested.nested-2.key-5[0]"),
                    ("x-jwt-bool-claim", "nested.nested-2.key-3"),
                    ("x-jwt-int-claim", "nested.nested-2.key-4"),
                    ("x-jwt-claim-object-key", "nested.nested-2.key-5"))])},
            "rules": [{"match": {"path": "/"}, "requires": {"provider_name": "example_provider"}}],
            "bypass_cors_preflight": True,
        }, [
            Request("/", [bearer(e["GoodToken"])]),
            Request("/", [bearer(e["NestedGoodToken"])]),
            Request("/", [bearer(e["ExpiredToken"])]),
            Request("/", [bearer(e["NotYetValidToken"])]),
            Request("/", [bearer(e["InvalidAudToken"])]),
            Request("/", [bearer(e["NonExistKidToken"])]),
            Request("/", [bearer(e["OtherGoodToken"])]),
            Request("/", [bearer(e["NonExpiringToken"])], deviation="exp_required"),
            Request("/"),
            Request("/", [bearer(e["GoodToken"])], method="OPTIONS"),
            Request("/", [("origin", "https://a.test"), ("access-control-request-method", "GET")],
                    method="OPTIONS"),
            Request("/other-path"),
        ]),
        ("envoy_requires_all_config", {
            "providers": {
                "example_provider": envoy_provider(
                    "https://example.com", from_params=["jwt_a"],
                    audiences=["example_service", "http://example_service1",
                               "https://example_service2/"],
                    forward_payload_header="example-auth-userinfo"),
                "other_provider": envoy_provider(
                    "https://other.com", from_params=["jwt_b"], audiences=["other_service"],
                    forward_payload_header="other-auth-userinfo"),
            },
            "rules": [{"match": {"path": "/requires-all"}, "requires": {"requires_all": {
                "requirements": [{"provider_name": "example_provider"},
                                 {"provider_name": "other_provider"}]}}}],
        }, [
            Request(f"/requires-all?jwt_a={e['GoodToken']}&jwt_b={e['OtherGoodToken']}"),
            Request(f"/requires-all?jwt_a={e['GoodToken']}"),
            Request(f"/requires-all?jwt_b={e['OtherGoodToken']}"),
            Request(f"/requires-all?jwt_a={e['OtherGoodToken']}&jwt_b={e['GoodToken']}"),
            Request("/requires-all"),
        ]),
        ("envoy_requires_any_config", {
            "providers": {
                name: envoy_provider(
                    iss, audiences=auds,
                    from_headers=[{"name": "a", "value_prefix": "Bearer "},
                                  {"name": "b", "value_prefix": "Bearer "}],
                    forward_payload_header=f"{name.split('_')[0]}-auth-userinfo")
                for name, iss, auds in (
                    ("example_provider", "https://example.com",
                     ["example_service", "http://example_service1", "https://example_service2/"]),
                    ("other_provider", "https://other.com", ["other_service"]))
            },
            "rules": [{"match": {"path": "/requires-any"}, "requires": {"requires_any": {
                "requirements": [{"provider_name": "example_provider"},
                                 {"provider_name": "other_provider"}]}}}],
        }, [
            Request("/requires-any", [("a", f"Bearer {e['GoodToken']}")]),
            Request("/requires-any", [("b", f"Bearer {e['OtherGoodToken']}")]),
            Request("/requires-any", [("a", f"Bearer {e['ExpiredToken']}")]),
            Request("/requires-any"),
        ]),
    ]


@pytest.fixture(scope="module")
def parity(tokens, wasm_path, tmp_path_factory):
    NAMES.update({v: k for k, v in tokens.items()})
    NAMES.update({v: k for k, v in ENVOY_TOKENS.items()})
    table = cases(tokens)
    backend = Backend("upstream").start()
    envoy = ParityEnvoy([cfg for _, cfg, _ in table], wasm_path, backend.port,
                        tmp_path_factory.mktemp("parity"))
    try:
        envoy.start()
        yield table, envoy
    finally:
        envoy.stop()
        backend.stop()


def run_both(envoy: ParityEnvoy, i: int, cfg: dict, req: Request) -> tuple[Outcome, Outcome]:
    hdrs, params = token_locations(cfg)
    # Watch the identity headers and the client-forged spellings the requests use.
    watched = identity_headers(cfg) + ["x_sub"]
    got = []
    for kind in ("authn", "edge"):
        resp = envoy.send(kind, i, req)
        got.append(outcome(resp, watched, hdrs, params))
    return got[0], got[1]


NAMES: dict[str, str] = {}


def shorten(text: str) -> str:
    """`text` with every known token replaced by its name (messages stay readable)."""
    for token, name in NAMES.items():
        text = text.replace(token, f"<{name}>")
    return text[:120]


def test_readme_names_every_deviation():
    for name, text in DEVIATIONS.items():
        assert text in README, f"deviation {name}: README lacks {text!r}"


def test_same_decision_as_jwt_authn(parity):
    table, envoy = parity
    mismatches, stale, compared = [], [], 0
    for i, (name, cfg, requests) in enumerate(table):
        for req in requests:
            authn, edge = run_both(envoy, i, cfg, req)
            compared += 1
            label = f"{name}: {req.method} {shorten(req.path)} {[(k, shorten(v)) for k, v in req.headers]}"
            if req.deviation is None and not same(authn, edge):
                mismatches.append(f"{label}\n    jwt_authn: {authn}\n    jwt-edge:  {edge}")
            if req.deviation is not None:
                assert req.deviation in DEVIATIONS, req.deviation
                if same(authn, edge) and req.deviation not in NONDETERMINISTIC:
                    stale.append(f"{label}: deviation {req.deviation} no longer differs ({edge})")
    assert not mismatches, f"{len(mismatches)} of {compared} differ:\n" + "\n".join(mismatches)
    assert not stale, "\n".join(stale)


def _one(parity, name: str, req: Request) -> tuple[Outcome, Outcome]:
    table, envoy = parity
    i = next(k for k, (n, _, _) in enumerate(table) if n == name)
    return run_both(envoy, i, table[i][1], req)


def test_19_1_valid_token_plus_invalid_token_of_another_provider(parity, tokens):
    """allow_missing, valid partner token + expired corp token: jwt_authn 401 "Jwt is expired";
    jwt-edge used to answer 200 and forward the expired token."""
    req = Request(f"/?access_token={tokens['good']}", [("x-corp-token", tokens["expired"])])
    authn, edge = _one(parity, "allow_missing_two_providers", req)
    assert authn == Outcome(401, "invalid_token")
    assert edge == Outcome(401, "invalid_token")


def test_19_2_repeated_header_cannot_skip_a_rule(parity):
    """x-tenant: t1 and x-tenant: t2, no token, rule for t1: jwt_authn 401 (any value matches);
    jwt-edge used to answer 200 (it matched the joined `t1,t2`)."""
    req = Request("/exact", [("x-tenant", "t1"), ("x-tenant", "t2")])
    authn, edge = _one(parity, "header_matchers", req)
    assert authn == Outcome(401, "")
    assert edge == Outcome(401, "")


def test_19_3_allow_missing_in_requires_any_sees_only_siblings(parity, tokens):
    """requires_any [svc, allow_missing], a valid token of another provider's issuer in svc's
    location: jwt_authn 401 "Jwt issuer is not configured"; jwt-edge used to accept it."""
    authn, edge = _one(parity, "allow_missing_scope", Request("/svc-or-missing",
                                                              [bearer(tokens["good"])]))
    assert authn == Outcome(401, "invalid_token")
    assert edge == Outcome(401, "invalid_token")


def test_19_4_claim_headers_in_jwt_authn_format(parity, tokens):
    """Arrays and objects as base64 of their JSON, numbers as jwt_authn prints doubles."""
    authn, edge = _one(parity, "claims_and_lifetime", Request("/", [bearer(tokens["claims"])]))
    assert authn == edge
    watched = dict(edge.upstream[0])
    assert watched["x-roles"] == "WyJyZWFkZXIiLCJ3cml0ZXIiXQ=="  # Envoy's TestClaimToHeader
    assert watched["x-org"] == "eyJpZCI6N30="  # {"id":7}
    assert (watched["x-neg"], watched["x-ratio"], watched["x-n"]) == ("-5.000000", "1.500000", "5")
    assert (watched["x-admin"], watched["x-off"]) == ("true", "false")
    assert watched["x-empty"] is None and watched["x-missing"] is None
    assert edge.upstream[1] == (), "the token was not forwarded (forward: false)"


def test_f5_underscored_identity_header_is_stripped(parity, tokens):
    """A client's `x_sub` (read as `x-sub` by CGI/WSGI backends): jwt_authn forwards it;
    jwt-edge removes it (deviation underscore_identity_headers)."""
    req = Request("/", [bearer(tokens["good"]), ("x_sub", "mallory"), ("X-Sub", "mallory")])
    authn, edge = _one(parity, "claims_and_lifetime", req)
    assert (authn.status, edge.status) == (200, 200)
    assert dict(authn.upstream[0])["x_sub"] == "mallory"
    assert dict(edge.upstream[0])["x_sub"] is None
    assert dict(edge.upstream[0])["x-sub"] == dict(authn.upstream[0])["x-sub"] == "alice"


def test_f4_bearer_tab_is_not_no_token(parity, tokens):
    """`Authorization: Bearer<TAB>token` under allow_missing: jwt_authn 200 and forwards it
    (it sees no token); jwt-edge 401 token_malformed. Under allow_missing_or_failed jwt-edge
    lets it through but does not forward it."""
    tab = [("authorization", f"Bearer\t{tokens['good']}")]
    authn, edge = _one(parity, "lenient_and_whitespace", Request("/", tab))
    assert authn.status == 200 and authn.upstream[1] == ("header:authorization",)
    assert edge == Outcome(401, "invalid_token")
    authn, edge = _one(parity, "lenient_and_whitespace", Request("/lenient", tab))
    assert authn.upstream[1] == ("header:authorization",)
    assert edge.status == 200 and edge.upstream[1] == ()
