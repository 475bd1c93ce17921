"""The verified identity in Envoy's access log (issue 17): `payload_in_metadata`,
`header_in_metadata` (with `normalize_payload_in_metadata`) and the extension
`outcome_in_metadata` publish through `proxy_set_property`, which Envoy keeps as filter state
`wasm.<name>`; a file access log prints them with `%FILTER_STATE(wasm.<name>:PLAIN)%`.

Exact lines for an accepted token (the claims, `sub` among them), refusals (the denial code,
also on a local reply), a report-only would-deny, and a request no rule covers (nothing
published: `-`). No token material (header, payload or signature segment) reaches the log."""

from __future__ import annotations

import json

import pytest
import yaml

from harness import envoy as envoy_harness
from harness.keys import jwks
from harness.tokens import EXP_EXPIRED, EXP_VALID, IAT, claims, mint, segments
from harness.waits import wait_until
from test_metrics_authz import get

FORMAT = ("%REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE% "
          "outcome=%FILTER_STATE(wasm.jwt_outcome:PLAIN)% "
          "payload=%FILTER_STATE(wasm.jwt_payload:PLAIN)% "
          "header=%FILTER_STATE(wasm.jwt_header:PLAIN)%\n")


def config(published_keys) -> dict:
    return {
        "providers": {"p": {
            "issuer": "https://idp.test/", "audiences": ["api"],
            "local_jwks": {"inline_string": json.dumps(jwks(published_keys))},
            "payload_in_metadata": "jwt_payload",
            "normalize_payload_in_metadata": {"space_delimited_claims": ["scope"]},
            "header_in_metadata": "jwt_header",
        }},
        "rules": [
            {"match": {"prefix": "/open"}},
            {"match": {"prefix": "/try"}, "requires": {"provider_name": "p"},
             "report_only": True},
            {"match": {"prefix": "/"}, "requires": {"provider_name": "p"}},
        ],
        "outcome_in_metadata": "jwt_outcome",
    }


def with_access_log(config_text: str, path: str) -> str:
    """The harness's Envoy config with a file access log on the HTTP connection manager."""
    doc = yaml.safe_load(config_text)
    hcm = doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    hcm["typed_config"]["access_log"] = [{
        "name": "envoy.access_loggers.file",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": path,
            "log_format": {"text_format_source": {"inline_string": FORMAT}},
        },
    }]
    return yaml.safe_dump(doc)


@pytest.fixture(scope="module")
def logged_envoy(module_envoy_factory, tmp_path_factory, published_keys):
    workdir = tmp_path_factory.mktemp("envoy-access-log")
    log_path = workdir / "access.log"
    text = with_access_log(module_envoy_factory.config_text(config(published_keys)),
                           str(log_path))
    proc = envoy_harness.EnvoyProcess(text, workdir, concurrency=1)
    module_envoy_factory.started.append(proc)  # stopped with the module's Envoys
    proc.start()
    return proc, log_path


def test_identity_and_denial_code_in_access_log(logged_envoy, keys):
    envoy, log_path = logged_envoy
    good = mint(keys["rsa-1"], claims(sub="log-alice", scope="read  write"))
    expired = mint(keys["rsa-1"], claims(sub="log-bob", exp=EXP_EXPIRED))
    forged = mint(keys["rsa-1"], claims(sub="log-eve"), signing_key=keys["rsa-evil"])

    assert get(envoy, "/ok", good).status == 200
    assert get(envoy, "/a", expired).status == 401
    assert get(envoy, "/b", forged).status == 401
    assert get(envoy, "/c").status == 401
    assert get(envoy, "/try", expired).status == 200
    assert get(envoy, "/open", good).status == 200

    payload = ('{"aud":"api","exp":%d,"iat":%d,"iss":"https://idp.test/",'
               '"scope":["read","write"],"sub":"log-alice"}' % (EXP_VALID, IAT))
    expected = [
        f'GET /ok 200 outcome=p payload={payload} '
        'header={"alg":"RS256","kid":"rsa-1","typ":"JWT"}',
        "GET /a 401 outcome=token_expired payload=- header=-",
        "GET /b 401 outcome=bad_signature payload=- header=-",
        "GET /c 401 outcome=token_missing payload=- header=-",
        "GET /try 200 outcome=would_deny:token_expired payload=- header=-",
        # No rule requires a token here: nothing is published (the token is not even read).
        "GET /open 200 outcome=- payload=- header=-",
    ]

    def lines():
        return log_path.read_text().splitlines() if log_path.exists() else []

    # Envoy flushes file access logs about once a second.
    assert wait_until(lambda: len(lines()) >= len(expected), 10), lines()
    assert lines() == expected

    text = log_path.read_text() + envoy.log_text()
    for token in (good, expired, forged):
        assert token not in text
        for seg in segments(token):
            assert seg not in text, "a log carries token material"
