"""A paused request's body must never release it (hardening issue, F1).

With `allow_on_headers_stop_iteration: true` (Envoy >= 1.35; guides for auth and WAF plugins
recommend it) Envoy honours the filter's StopIteration on the request headers as such and goes
on delivering the body. If the body callback answered `Continue` (the SDK's default), Envoy
would send the paused headers and the body upstream with no decision taken. These tests pause
requests that carry a body (cold start with the IdP down; an unknown `kid` waiting for a
refetch the IdP cannot answer in time) and assert that nothing reaches the upstream and the
client gets the filter's refusal; then that an allowed request's buffered body arrives whole.
Each case runs with the setting on and with Envoy's default (StopIteration converted to
StopAllIteration), where the body is never delivered while the headers wait.
"""

from __future__ import annotations

import threading
import time

import pytest

from harness import client, config as envoy_config
from harness.expect import assert_denied, assert_passed
from harness.keys import Key
from harness.tokens import mint
from harness.waits import stat, wait_until

IDP_ISS = "https://idp.test/"
SMALL = b"0123456789"  # 10 bytes
# Over one read of Envoy's codec and over the 64 KiB of a default HTTP/2 window: the body
# arrives in several data callbacks.
LARGE = b"0123456789abcdef" * 4375  # 70,000 bytes


def filter_config(idp, **remote) -> dict:
    return {
        "providers": {"idp": {
            "issuer": IDP_ISS, "audiences": ["api"],
            "remote_jwks": {"http_uri": {"uri": idp.jwks_uri, "cluster": "idp", "timeout": "1s"},
                            "cache_duration": "600s", **remote},
            "claim_to_headers": [{"header_name": "x-jwt-sub", "claim_name": "sub"}]}},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "idp"}}],
    }


@pytest.fixture(params=[True, False], ids=["stop-iteration-honoured", "envoy-default"])
def start_envoy(request, envoy_factory, monkeypatch):
    """Starts Envoy with `allow_on_headers_stop_iteration` set as the parameter says."""
    honour = request.param
    plain = envoy_config.wasm_filter

    def wasm_filter(filter_config, wasm_path):
        block = plain(filter_config, wasm_path)
        block["typed_config"]["config"]["allow_on_headers_stop_iteration"] = honour
        return block

    monkeypatch.setattr(envoy_config, "wasm_filter", wasm_filter)

    def start(cfg, idp):
        envoy = envoy_factory(cfg, concurrency=1, idp=idp)
        text = envoy.config_path.read_text()
        assert f'"allow_on_headers_stop_iteration": {str(honour).lower()}' in text
        return envoy
    return start


def post(envoy, token: str, body: bytes):
    headers = [("authorization", f"Bearer {token}"), ("content-type", "application/octet-stream")]
    return client.request(envoy.url("/orders"), method="POST", headers=headers, body=body,
                          timeout=20)


@pytest.mark.parametrize("body", [SMALL, LARGE], ids=["10-bytes", "70000-bytes"])
def test_cold_start_body_does_not_release_a_paused_request(start_envoy, own_idp, keys, backends,
                                                          body):
    own_idp.set_mode("down")
    envoy = start_envoy(filter_config(own_idp, request_wait_timeout="1s"), own_idp)
    before = sum(b.count for b in backends)
    # Well formed, signed by a key the IdP would publish: unverifiable while no keys load.
    resp = post(envoy, mint(keys["rsa-1"]), body)
    assert_denied(resp, "jwks_unavailable", authority=envoy.authority, path="/orders")
    assert sum(b.count for b in backends) == before, "the paused request reached the upstream"
    assert stat(envoy, "jwt_edge.paused") == 1
    assert stat(envoy, "jwt_edge.denied.jwks_unavailable") == 1
    assert stat(envoy, "jwt_edge.allowed") == 0


@pytest.mark.parametrize("body", [SMALL, LARGE], ids=["10-bytes", "70000-bytes"])
def test_unknown_kid_refetch_body_does_not_release_a_paused_request(start_envoy, own_idp, keys,
                                                                   backends, body):
    envoy = start_envoy(filter_config(own_idp, request_wait_timeout="1s"), own_idp)
    assert wait_until(lambda: stat(envoy, "jwt_edge.jwks.idp.fetch_success") == 1, 15)
    # The refetch the unknown kid asks for cannot finish within the request's wait.
    own_idp.set_mode("slow", delay=3.0)
    before = sum(b.count for b in backends)
    stranger = Key("not-published", "rsa", keys["rsa-evil"].private)
    resp = post(envoy, mint(stranger), body)
    assert_denied(resp, "unknown_kid", authority=envoy.authority, path="/orders")
    assert sum(b.count for b in backends) == before, "the paused request reached the upstream"
    assert stat(envoy, "jwt_edge.paused") == 1
    assert stat(envoy, "jwt_edge.allowed") == 0


def test_allowed_after_a_wait_forwards_the_buffered_body_once(start_envoy, own_idp, keys,
                                                             backends):
    own_idp.set_mode("down")
    envoy = start_envoy(filter_config(own_idp, request_wait_timeout="3s"), own_idp)
    timer = threading.Timer(0.5, own_idp.set_mode, args=("normal",))
    timer.start()
    try:
        t0 = time.monotonic()
        before = sum(b.count for b in backends)
        resp = post(envoy, mint(keys["rsa-1"]), LARGE)
        elapsed = time.monotonic() - t0
    finally:
        timer.join()
    seen = assert_passed(resp)
    assert elapsed >= 0.45, f"answered after {elapsed:.2f}s, before the IdP was up"
    assert sum(b.count for b in backends) == before + 1
    assert seen["method"] == "POST"
    assert seen["body"] == LARGE.decode()
    assert seen["headers"]["x-jwt-sub"] == "alice"
    assert "authorization" not in seen["headers"]
    assert stat(envoy, "jwt_edge.paused") == 1
    assert stat(envoy, "jwt_edge.allowed") == 1
