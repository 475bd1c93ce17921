"""The harness itself, without the Wasm filter: Envoy starts and proxies round robin, the IdP
misbehaves on demand, tokens are built as intended. These pass before the filter exists."""

from __future__ import annotations

import base64
import json
import re
import time
from pathlib import Path

import jwt as pyjwt
import pytest

from conftest import EnvoyFactory
from harness import client, expect
from harness.idp import OVERSIZED_BYTES
from harness.tokens import claims, mint, segments


@pytest.fixture(scope="module")
def plain_envoy(tmp_path_factory, idp, backends):
    factory = EnvoyFactory(tmp_path_factory, None, idp, backends)
    yield factory(None)
    factory.stop_all()


def test_envoy_without_filter_round_robins(plain_envoy, backends):
    before = [b.count for b in backends]
    for _ in range(10):
        resp = client.request(plain_envoy.url("/x"))
        assert resp.status == 200
    assert [b.count - n for b, n in zip(backends, before)] == [5, 5]
    assert plain_envoy.stats()["server.state"] == 0  # LIVE
    assert "starting main dispatch loop" in plain_envoy.log_text()


def test_backend_echoes_repeated_headers(plain_envoy):
    resp = client.request(plain_envoy.url("/echo?q=1"), headers=[("x-a", "1"), ("x-a", "2"), ("X-B", "b")])
    seen = resp.json()
    assert seen["path"] == "/echo?q=1"
    assert seen["headers"]["x-a"] == ["1", "2"]
    assert seen["headers"]["x-b"] == "b"


def test_idp_modes(idp, published_keys):
    url = f"http://{idp.address}/jwks.json"
    n = idp.count()
    doc = client.request(url).json()
    assert [k["kid"] for k in doc["keys"]] == [k.kid for k in published_keys]
    assert idp.count() == n + 1
    oidc = client.request(f"http://{idp.address}/.well-known/openid-configuration").json()
    assert oidc["jwks_uri"] == url
    try:
        idp.set_mode("status500")
        assert client.request(url).status == 500
        idp.set_mode("garbage")
        with pytest.raises(ValueError):
            client.request(url).json()
        idp.set_mode("oversized")
        assert len(client.request(url).body) > OVERSIZED_BYTES
        idp.set_mode("slow", delay=0.3)
        t0 = time.monotonic()
        assert client.request(url).status == 200
        assert time.monotonic() - t0 >= 0.3
        idp.set_mode("down")
        with pytest.raises(ConnectionRefusedError):
            client.request(url, timeout=2)
    finally:
        idp.set_mode("normal")
    assert client.request(url).status == 200


def test_tokens_verify_with_pyjwt(keys):
    # Independent check that hand-built tokens are standard JWS for every key type.
    for kid, alg in [("rsa-1", "RS256"), ("rsa-1", "PS384"), ("ec-p256", "ES256"),
                     ("ec-p384", "ES384"), ("ed-1", "EdDSA")]:
        key = keys[kid]
        token = mint(key, alg=alg)
        pub = key.private.public_key()
        decoded = pyjwt.decode(token, pub, algorithms=[alg], audience="api")
        assert decoded == claims()
        assert pyjwt.get_unverified_header(token)["kid"] == kid
    header = json.loads(base64.urlsafe_b64decode(segments(mint(keys["ec-p256"]))[0] + "=="))
    assert header == {"alg": "ES256", "typ": "JWT", "kid": "ec-p256"}
    assert len(base64.urlsafe_b64decode(segments(mint(keys["ec-p256"]))[2] + "==")) == 64


def _rust_fn_body(source: str, signature: str) -> str:
    """The text of one `fn` in `source`, from its signature to the closing brace at column 4."""
    start = source.index(signature)
    return source[start:source.index("\n    }\n", start)]


def test_expect_mirrors_error_codes():
    # harness/expect.py hand-copies the error codes and their status classes; a code renamed
    # or removed in the filter must fail here, not linger in the mirror (it once kept
    # `bad_scheme`, which the filter no longer has).
    rust = (Path(__file__).resolve().parent.parent / "src" / "authn" / "error.rs").read_text()
    code_of = dict(re.findall(r'AuthError::(\w+)[^=\n]*=> "(\w+)"',
                              _rust_fn_body(rust, "pub fn code(&self)")))
    status_of = {}
    arms = re.findall(r"((?:\s*\|?\s*AuthError::\w+(?:\s*\{ \.\. \}|\(_\))?)+)\s*=> Status::(\w+)",
                      _rust_fn_body(rust, "pub fn status(&self)"))
    for variants, status in arms:
        for variant in re.findall(r"AuthError::(\w+)", variants):
            status_of[code_of[variant]] = status
    assert len(code_of) >= 25, code_of
    assert set(status_of) == set(code_of.values())
    assert set(expect.DESCRIPTIONS) == set(code_of.values())
    assert expect.UNAUTHORIZED == {c for c, s in status_of.items() if s == "Unauthorized"}
    assert expect.FORBIDDEN == {c for c, s in status_of.items() if s == "Forbidden"}
    assert expect.UNAVAILABLE == {c for c, s in status_of.items() if s == "Unavailable"}
    assert expect.INVALID_DPOP_PROOF == {c for c, s in status_of.items() if s == "InvalidDpopProof"}
    assert expect.INVALID_REQUEST == {c for c, s in status_of.items() if s == "InvalidRequest"}
    assert expect.USE_DPOP_NONCE == {c for c, s in status_of.items() if s == "UseDpopNonce"}
