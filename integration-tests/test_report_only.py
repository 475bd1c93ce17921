"""Report-only rollout (issue 17), end to end through real Envoy: a `report_only` rule decides
as an enforcing one would, lets a would-deny through without identity headers (client copies
still stripped, an unforwarded token still taken out), counts `jwt_edge.would_deny` and
`jwt_edge.provider.<name>.would_deny.<code>`, and logs one info line without the token.
An enforcing rule in the same filter refuses the same requests."""

from __future__ import annotations

import json

import pytest

from harness.expect import assert_denied, assert_passed
from harness.keys import jwks
from harness.tokens import EXP_EXPIRED, claims, mint, segments
from harness.waits import wait_until
from test_metrics_authz import get, jwt_edge_stats

IDP_ISS = "https://idp.test/"


def config(published_keys) -> dict:
    return {
        "providers": {"p": {
            "issuer": IDP_ISS, "audiences": ["api"],
            "local_jwks": {"inline_string": json.dumps(jwks(published_keys))},
            "claim_to_headers": [{"header_name": "x-jwt-sub", "claim_name": "sub"}],
        }},
        "rules": [
            {"match": {"prefix": "/try"}, "requires": {"provider_name": "p"},
             "report_only": True},
            {"match": {"prefix": "/"}, "requires": {"provider_name": "p"}},
        ],
    }


@pytest.fixture(scope="module")
def envoy(module_envoy_factory, published_keys):
    return module_envoy_factory(config(published_keys), concurrency=1)


def stats(envoy) -> dict:
    return {k: v for k, v in jwt_edge_stats(envoy).items() if ".jwks." not in k}


def test_report_only_rule(envoy, keys):
    start = envoy.log_size()
    good = mint(keys["rsa-1"], claims(sub="ro-alice"))
    expired = mint(keys["rsa-1"], claims(sub="ro-bob", exp=EXP_EXPIRED))
    forged = mint(keys["rsa-1"], claims(sub="ro-eve"), signing_key=keys["rsa-evil"])

    # A good token: as on an enforcing rule (identity header set, token not forwarded).
    seen = assert_passed(get(envoy, "/try", good, [("x-jwt-sub", "admin")]))["headers"]
    assert seen.get("x-jwt-sub") == "ro-alice"
    assert "authorization" not in seen

    # Would-deny: through, no identity, client copies stripped, token still taken out.
    for token, path in ((expired, "/try/a"), (forged, "/try/b"), (None, "/try/c")):
        seen = assert_passed(get(envoy, path, token,
                                 [("x-jwt-sub", "admin"), ("x_jwt_sub", "root")]))["headers"]
        assert "x-jwt-sub" not in seen and "x_jwt_sub" not in seen, seen
        assert "authorization" not in seen, seen

    # The same requests on an enforcing rule are refused.
    assert_denied(get(envoy, "/a", expired), "token_expired", authority=envoy.authority,
                  path="/a")
    assert_denied(get(envoy, "/a"), "token_missing", authority=envoy.authority, path="/a")

    expected = {
        "jwt_edge.allowed": 4,
        "jwt_edge.provider.p.allowed": 1,
        "jwt_edge.would_deny": 3,
        "jwt_edge.provider.p.would_deny.token_expired": 1,
        "jwt_edge.provider.p.would_deny.bad_signature": 1,
        "jwt_edge.provider.p.would_deny.token_missing": 1,
        "jwt_edge.denied": 2,
        "jwt_edge.denied.token_expired": 1,
        "jwt_edge.denied.token_missing": 1,
        "jwt_edge.provider.p.denied.token_expired": 1,
        "jwt_edge.provider.p.denied.token_missing": 1,
    }
    assert wait_until(lambda: stats(envoy) == expected, 5), stats(envoy)

    lines = [
        "would deny (report_only): code=token_expired status=401 provider=p "
        "iss=https://idp.test/ kid=rsa-1 sub=ro-bob path=/try/a",
        "would deny (report_only): code=bad_signature status=401 provider=p "
        "iss=https://idp.test/ kid=rsa-1 sub=ro-eve path=/try/b",
        "would deny (report_only): code=token_missing status=401 provider=p iss=- kid=- sub=- "
        "path=/try/c",
    ]
    assert wait_until(lambda: all(line in envoy.log_text(start) for line in lines), 5), \
        [line for line in lines if line not in envoy.log_text(start)]
    text = envoy.log_text(start)
    for token in (good, expired, forged):
        for seg in segments(token):
            assert seg not in text, "the log carries token material"
