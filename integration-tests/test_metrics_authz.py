"""Metrics, the verified-token cache, claims authorization, revocation and what the filter
logs (issue 6), end to end through real Envoy.

COUNT: a fresh Envoy (two workers: their VMs' counters add up) gets a known sequence of
requests; admin `/stats` (`wasmcustom.` prefix) and `/stats/prometheus` (no prefix) must show
exactly those numbers. AUTHZ (module-scoped, one worker, local keys, `jwt_cache_size`): scope
and claim requirements, the deny-list, cache hits and misses (as deltas), and the debug log.
"""

from __future__ import annotations

import json
import re

import pytest

from harness import client, wasmlog
from harness.expect import assert_denied, assert_passed, realm
from harness.keys import jwks
from harness.tokens import EXP_EXPIRED, claims, mint, segments
from harness.waits import wait_until

IDP_ISS = "https://idp.test/"


def get(envoy, path: str = "/", token: str | None = None, headers=()):
    hdrs = list(headers)
    if token is not None:
        hdrs.append(("authorization", f"Bearer {token}"))
    return client.request(envoy.url(path), headers=hdrs, timeout=30)


def jwt_edge_stats(envoy) -> dict:
    """Every jwt-edge metric in admin `/stats`, without the `wasmcustom.` prefix."""
    return {k.removeprefix("wasmcustom."): v for k, v in envoy.stats().items()
            if k.startswith("wasmcustom.jwt_edge.")}


# ---------------------------------------------------------------------------------------
# COUNT: exact counters on a fresh Envoy
# ---------------------------------------------------------------------------------------
def test_counters_equal_a_known_request_sequence(envoy_factory, idp, keys):
    cfg = {
        "providers": {"idp": {
            "issuer": IDP_ISS, "audiences": ["api"],
            "remote_jwks": {"http_uri": {"uri": idp.jwks_uri, "cluster": "idp", "timeout": "5s"},
                            "cache_duration": "600s"}}},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "idp"}}],
    }
    # Two workers: counters of every worker's VM add up to one stat.
    envoy = envoy_factory(cfg, concurrency=2)
    # Keys first, in every VM (admin stats and the log, no traffic), so no request pauses.
    assert wait_until(lambda: jwt_edge_stats(envoy).get("jwt_edge.jwks.idp.fetch_success"), 15)
    assert wait_until(lambda: wasmlog.all_vms_hold(envoy.log_text(), 1), 5)
    first = jwt_edge_stats(envoy)
    # The stale_serving gauge (0: the last fetch succeeded) may reach the admin view a little
    # after the counters; it is checked exactly below.
    assert first.pop("jwt_edge.jwks.idp.stale_serving", 0) == 0
    assert first == {"jwt_edge.jwks.idp.fetch_success": 1, "jwt_edge.jwks.idp.keys": 4}

    sequence = (
        [(mint(keys[kid]), 200) for kid in ("rsa-1", "ec-p256", "ed-1")]
        + [(mint(keys["rsa-1"], claims(exp=EXP_EXPIRED)), "token_expired")] * 2
        + [(None, "token_missing")]
        + [(mint(keys["rsa-1"], signing_key=keys["rsa-evil"]), "bad_signature")]
    )
    for token, expect in sequence:
        resp = get(envoy, "/", token)
        if expect == 200:
            assert_passed(resp)
        else:
            assert_denied(resp, expect, authority=envoy.authority, path="/")

    expected = {
        "jwt_edge.allowed": 3,
        "jwt_edge.denied": 4,
        "jwt_edge.denied.token_expired": 2,
        "jwt_edge.denied.token_missing": 1,
        "jwt_edge.denied.bad_signature": 1,
        "jwt_edge.provider.idp.allowed": 3,
        "jwt_edge.provider.idp.denied.token_expired": 2,
        "jwt_edge.provider.idp.denied.token_missing": 1,
        "jwt_edge.provider.idp.denied.bad_signature": 1,
        "jwt_edge.jwks.idp.fetch_success": 1,
        "jwt_edge.jwks.idp.keys": 4,
        "jwt_edge.jwks.idp.stale_serving": 0,
    }
    # Exactly these, and nothing else (no pause, no cache counters without a cache, no
    # failed fetch).
    assert jwt_edge_stats(envoy) == expected

    text = envoy.admin("/stats/prometheus").body.decode()
    prom = {}
    types = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            types[name] = kind
        elif line.startswith("jwt_edge"):
            series, value = line.rsplit(" ", 1)
            name, _, labels = series.partition("{")
            assert labels in ("", "}"), f"unexpected labels: {line}"
            prom[name] = float(value)
    assert prom == {k.replace(".", "_"): float(v) for k, v in expected.items()}, prom
    assert types["jwt_edge_allowed"] == "counter"
    assert types["jwt_edge_denied_token_expired"] == "counter"
    assert types["jwt_edge_jwks_idp_keys"] == "gauge"
    assert "wasmcustom" not in text


# ---------------------------------------------------------------------------------------
# AUTHZ: scopes, claims, revocation, cache, logs
# ---------------------------------------------------------------------------------------
def provider_req(**extra) -> dict:
    return {"provider_name": "p", **extra}


def authz_config(published_keys) -> dict:
    return {
        "providers": {"p": {
            "issuer": IDP_ISS, "audiences": ["api"],
            "local_jwks": {"inline_string": json.dumps(jwks(published_keys))},
            "jwt_cache_config": {"jwt_cache_size": 100},
            "revoked": {"jti": ["jti-revoked-1", "jti-revoked-2"], "sub": ["mallory"]},
            "claim_to_headers": [{"header_name": "x-jwt-sub", "claim_name": "sub"}],
        }},
        "rules": [
            {"match": {"prefix": "/risk2"},
             "requires": provider_req(scopes=["risk:score", "risk:write"])},
            {"match": {"prefix": "/risk"}, "requires": provider_req(scopes=["risk:score"])},
            {"match": {"prefix": "/org"},
             "requires": provider_req(claims=[{"name": "org.id", "values": [7]}])},
            {"match": {"prefix": "/both"},
             "requires": provider_req(scopes=["risk:score"],
                                      claims=[{"name": "role", "values": ["admin", "ops"]},
                                              {"name": "active", "values": [True]}])},
            {"match": {"prefix": "/admin-risk"},
             "requires": {"provider_and_audiences": {"provider_name": "p", "audiences": ["admin"]},
                          "scopes": ["risk:score"]}},
            {"match": {"prefix": "/either"}, "requires": {"requires_any": {"requirements": [
                provider_req(scopes=["risk:score"]), provider_req(scopes=["risk:read"])]}}},
            {"match": {"prefix": "/"}, "requires": provider_req()},
        ],
    }


@pytest.fixture(scope="module")
def authz(module_envoy_factory, published_keys):
    return module_envoy_factory(authz_config(published_keys), concurrency=1)


def scope_header(path: str, envoy, description: str, scope: str | None) -> str:
    value = (f'Bearer realm="{realm(envoy.authority, path)}", error="insufficient_scope", '
             f'error_description="{description}"')
    return value + (f', scope="{scope}"' if scope is not None else "")


SCOPE_CASES = [
    # path, claim overrides, expected (200, or (code, required scope named in scope=))
    ("/risk", {"scope": "risk:score"}, 200),
    ("/risk", {"scope": "openid risk:score profile"}, 200),
    ("/risk", {"scp": ["profile", "risk:score"]}, 200),
    ("/risk", {"scp": "risk:score other"}, 200),
    ("/risk", {"scope": "risk:read", "scp": ["risk:score"]}, 200),  # either claim counts
    ("/risk", {}, ("insufficient_scope", "risk:score")),
    ("/risk", {"scope": "risk:read"}, ("insufficient_scope", "risk:score")),
    ("/risk", {"scope": "risk:scores"}, ("insufficient_scope", "risk:score")),
    ("/risk", {"scope": "RISK:SCORE"}, ("insufficient_scope", "risk:score")),
    ("/risk", {"scope": "risk:score,openid"}, ("insufficient_scope", "risk:score")),
    ("/risk", {"scope": ["risk:score"]}, ("claim_malformed", None)),  # scope is a string
    ("/risk", {"scp": [1]}, ("claim_malformed", None)),
    ("/risk2", {"scope": "risk:score"}, ("insufficient_scope", "risk:score risk:write")),
    ("/risk2", {"scope": "risk:write risk:score"}, 200),
    ("/org", {"org": {"id": 7}}, 200),
    ("/org", {"org": {"id": [3, 7]}}, 200),
    ("/org", {"org": {"id": "7"}}, ("claim_mismatch", None)),  # JSON equality: "7" is not 7
    ("/org", {"org": {"id": 8}}, ("claim_mismatch", None)),
    ("/org", {"org": {"name": "acme"}}, ("claim_mismatch", None)),
    ("/org", {"org": 7}, ("claim_mismatch", None)),
    ("/org", {}, ("claim_mismatch", None)),
    ("/both", {"scope": "risk:score", "role": "ops", "active": True}, 200),
    ("/both", {"scope": "risk:score", "role": ["viewer", "admin"], "active": True}, 200),
    ("/both", {"scope": "risk:score", "role": "viewer", "active": True}, ("claim_mismatch", None)),
    ("/both", {"scope": "risk:score", "role": "ops", "active": "true"}, ("claim_mismatch", None)),
    ("/both", {"role": "ops", "active": True}, ("insufficient_scope", "risk:score")),
    ("/admin-risk", {"aud": "admin", "scope": "risk:score"}, 200),
    ("/admin-risk", {"aud": "api", "scope": "risk:score"}, ("audience_mismatch", None)),
    ("/admin-risk", {"aud": "admin"}, ("insufficient_scope", "risk:score")),
    ("/either", {"scope": "risk:read"}, 200),
    ("/either", {"scope": "risk:score"}, 200),
    ("/either", {"scope": "openid"}, ("insufficient_scope", "risk:score")),
    # Authentication comes first: an expired token with the right scope is 401.
    ("/risk", {"scope": "risk:score", "exp": EXP_EXPIRED}, ("token_expired", None)),
]


@pytest.mark.parametrize("path, overrides, expect", SCOPE_CASES,
                         ids=[f"{p}-{i}" for i, (p, _, _) in enumerate(SCOPE_CASES)])
def test_scope_and_claim_requirements(authz, keys, path, overrides, expect):
    # Every case twice: the second time the token comes from the verified-token cache, which
    # must not skip the authorization checks.
    token = mint(keys["rsa-1"], claims(**overrides))
    for attempt in ("verified", "cached"):
        resp = get(authz, path, token)
        if expect == 200:
            assert assert_passed(resp)["headers"]["x-jwt-sub"] == "alice", attempt
            continue
        code, scope = expect
        assert_denied(resp, code, authority=authz.authority, path=path)
        if code == "insufficient_scope":
            description = f"token lacks required scope {scope}"
            assert resp.json()["error_description"] == description
            assert resp.header_all("www-authenticate") == [
                scope_header(path, authz, description, scope)], (attempt, resp)
        elif code in ("claim_mismatch", "audience_mismatch"):
            assert resp.header_all("www-authenticate") == [
                scope_header(path, authz, resp.json()["error_description"], None)], resp


def test_insufficient_scope_answer_exactly(authz, keys):
    resp = get(authz, "/risk/score?x=1", mint(keys["ec-p256"], claims(scope="openid")))
    assert resp.status == 403
    assert resp.json() == {"error": "insufficient_scope",
                           "error_description": "token lacks required scope risk:score"}
    assert resp.header_all("www-authenticate") == [
        f'Bearer realm="http://{authz.authority}/risk/score", error="insufficient_scope", '
        'error_description="token lacks required scope risk:score", scope="risk:score"']
    resp = get(authz, "/org", mint(keys["ec-p256"], claims(org={"id": 8})))
    assert resp.status == 403
    assert resp.json() == {"error": "claim_mismatch",
                           "error_description": "claim org.id does not have a required value"}
    assert resp.header_all("www-authenticate") == [
        f'Bearer realm="http://{authz.authority}/org", error="insufficient_scope", '
        'error_description="claim org.id does not have a required value"']


@pytest.mark.parametrize("overrides, expect", [
    ({"jti": "jti-revoked-1"}, "token_revoked"),
    ({"jti": "jti-revoked-2", "sub": "bob"}, "token_revoked"),
    ({"sub": "mallory"}, "token_revoked"),
    ({"sub": "mallory", "jti": "jti-fine"}, "token_revoked"),
    ({"jti": "jti-fine"}, 200),
    ({"jti": "JTI-REVOKED-1"}, 200),  # exact match only
    ({"sub": "mallory2"}, 200),
    ({"jti": 12345}, 200),  # not a string: cannot be on the list
], ids=["jti", "jti-other-sub", "sub", "sub-other-jti", "fine", "jti-case", "sub-prefix",
        "jti-number"])
def test_revocation(authz, keys, overrides, expect):
    token = mint(keys["ed-1"], claims(**overrides))
    for path in ("/", "/risk"):
        resp = get(authz, path, token)
        if expect == 200:
            if path == "/":
                assert_passed(resp)
            else:
                assert_denied(resp, "insufficient_scope", authority=authz.authority, path=path)
        else:
            # Revocation is part of authentication: 401 before any scope check.
            assert_denied(resp, expect, authority=authz.authority, path=path)
            assert resp.header_all("www-authenticate") == [
                f'Bearer realm="{realm(authz.authority, path)}", error="invalid_token", '
                'error_description="token has been revoked"']


def test_verified_token_cache_counts_hits_and_misses(authz, keys):
    def counts():
        s = jwt_edge_stats(authz)
        return s.get("jwt_edge.jwt_cache_hit", 0), s.get("jwt_edge.jwt_cache_miss", 0)

    token = mint(keys["rsa-1"], claims(sub="cache-once"))
    hits0, misses0 = counts()
    for _ in range(5):
        assert assert_passed(get(authz, "/", token))["headers"]["x-jwt-sub"] == "cache-once"
    hits, misses = counts()
    assert (hits - hits0, misses - misses0) == (4, 1)
    # Another token is another entry; a refused token is never stored.
    other = mint(keys["rsa-1"], claims(sub="cache-twice"))
    assert_passed(get(authz, "/", other))
    assert_passed(get(authz, "/", other))
    forged = mint(keys["rsa-1"], claims(sub="cache-forged"), signing_key=keys["rsa-evil"])
    for _ in range(2):
        assert_denied(get(authz, "/", forged), "bad_signature", authority=authz.authority, path="/")
    hits2, misses2 = counts()
    assert (hits2 - hits, misses2 - misses) == (1, 3)
    # A cached token is still held to each route's requirement.
    assert_denied(get(authz, "/risk", token), "insufficient_scope", authority=authz.authority,
                  path="/risk")
    assert counts() == (hits2 + 1, misses2)


def test_log_has_decision_facts_and_never_a_token(authz, keys):
    start = authz.log_size()
    allowed = mint(keys["rsa-1"], claims(sub="log-alice"))
    expired = mint(keys["ec-p256"], claims(sub="log-bob", exp=EXP_EXPIRED))
    forged = mint(keys["rsa-1"], claims(sub="log-eve"), signing_key=keys["rsa-evil"])
    no_scope = mint(keys["ed-1"], claims(sub="log-carol", scope="openid"))
    revoked = mint(keys["ec-p384"], claims(sub="mallory"))
    h, p, s = segments(mint(keys["rsa-1"], claims(sub="log-dave")))
    malformed = f"{h}.{p}.{s}.{s}"
    sent = [
        ("/logs", allowed, None, 200),
        ("/logs", expired, None, 401),
        ("/logs", forged, None, 401),
        ("/risk/logs", no_scope, None, 403),
        ("/logs", revoked, None, 401),
        ("/logs", malformed, None, 401),
        ("/logs", None, None, 401),
        # In the query string: the logged path must not carry it.
        (f"/logs/q?access_token={expired}", None, None, 401),
        (f"/logs/q?access_token={allowed}", None, None, 200),
    ]
    for path, token, headers, status in sent:
        assert get(authz, path, token, headers or ()).status == status, path
    expected_lines = [
        "allowed: provider=p iss=https://idp.test/ sub=log-alice kid=rsa-1",
        "denied: code=token_expired status=401 provider=p iss=https://idp.test/ kid=ec-p256 "
        "sub=log-bob path=/logs",
        "denied: code=bad_signature status=401 provider=p iss=https://idp.test/ kid=rsa-1 "
        "sub=log-eve path=/logs",
        "denied: code=insufficient_scope status=403 provider=p iss=https://idp.test/ kid=ed-1 "
        "sub=log-carol path=/risk/logs",
        "denied: code=token_revoked status=401 provider=p iss=https://idp.test/ kid=ec-p384 "
        "sub=mallory path=/logs",
        "denied: code=token_malformed status=401 provider=p iss=- kid=- sub=- path=/logs",
        "denied: code=token_missing status=401 provider=p iss=- kid=- sub=- path=/logs",
        "denied: code=token_expired status=401 provider=p iss=https://idp.test/ kid=ec-p256 "
        "sub=log-bob path=/logs/q",
    ]

    def log():
        return authz.log_text(start)

    assert wait_until(lambda: all(line in log() for line in expected_lines), 5), \
        [line for line in expected_lines if line not in log()]
    text = log()
    assert text.count("allowed: provider=p iss=https://idp.test/ sub=log-alice kid=rsa-1") == 2
    tokens = [allowed, expired, forged, no_scope, revoked, malformed]
    secrets = set(tokens)
    secrets |= {f"Bearer {t}" for t in tokens}
    secrets |= {seg for t in tokens for seg in segments(t)}  # header, payload and signature
    leaked = [x[:40] + "..." for x in secrets if x in text]
    assert leaked == [], f"the log carries token material: {leaked}"
    # Nor any long base64url run that is a piece of a signature (e.g. a truncated one).
    for t in tokens:
        sig = segments(t)[-1]
        for i in range(0, len(sig) - 24, 8):
            assert sig[i:i + 24] not in text, "a piece of a signature is in the log"
    assert not re.search(r"(?i)authorization", text), "the log mentions the Authorization header"


def test_metrics_false_makes_no_metrics_host_calls(envoy_factory, idp, keys):
    """`metrics: false` (for hosts without metrics calls): the filter still decides, and Envoy
    shows no jwt-edge stat at all."""
    cfg = {
        "metrics": False,
        "providers": {"idp": {
            "issuer": IDP_ISS, "audiences": ["api"],
            "remote_jwks": {"http_uri": {"uri": idp.jwks_uri, "cluster": "idp", "timeout": "5s"}}}},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "idp"}}],
    }
    envoy = envoy_factory(cfg, concurrency=1)
    assert_passed(get(envoy, "/", mint(keys["rsa-1"])))
    assert_denied(get(envoy, "/", None), "token_missing", authority=envoy.authority, path="/")
    assert jwt_edge_stats(envoy) == {}
