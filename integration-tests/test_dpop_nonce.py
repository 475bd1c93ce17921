"""DPoP server nonces (RFC 9449 §8) in Envoy: a provider with `sender_constraint.dpop_nonce:
required` and a 2-second nonce window, on two workers that share the nonce secret.

A proof without a nonce gets `401 use_dpop_nonce` with a `DPoP-Nonce` header; the client's
next proofs carry that nonce and pass, until the nonce is two windows old.
"""

from __future__ import annotations

import base64
import re
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from harness.expect import assert_denied, assert_passed, realm
from harness.keys import Key
from harness.waits import stat
from test_dpop import ALGS, bound_token, config, proof, send

LIFETIME_S = 2
NONCE = re.compile(r"[A-Za-z0-9_-]{27}")


@pytest.fixture(scope="module")
def envoy(module_envoy_factory, published_keys):
    return module_envoy_factory(
        config(published_keys, dpop_nonce="required", dpop_nonce_lifetime=f"{LIFETIME_S}s"),
        concurrency=2)


@pytest.fixture(scope="module")
def client_key() -> Key:
    return Key("nonce-client", "p256", ec.generate_private_key(ec.SECP256R1()))


def window_of(nonce: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(nonce + "=")[:4], "big")


def expect_use_dpop_nonce(envoy, resp, code: str, description: str) -> str:
    """`resp` is the exact `use_dpop_nonce` refusal; returns its fresh nonce."""
    assert_denied(resp, code, authority=envoy.authority, path="/items")
    assert resp.header_all("www-authenticate") == [
        f'DPoP realm="{realm(envoy.authority, "/items")}", error="use_dpop_nonce", '
        f'error_description="{description}", algs="{ALGS}"'], resp
    nonces = resp.header_all("dpop-nonce")
    assert len(nonces) == 1 and NONCE.fullmatch(nonces[0]), resp
    # Issued for the window the request was answered in.
    assert abs(window_of(nonces[0]) - int(time.time()) // LIFETIME_S) <= 1, nonces
    return nonces[0]


MISSING = "the DPoP proof has no nonce: use the one in DPoP-Nonce"
INVALID = "the DPoP proof's nonce is not valid or has expired: use the one in DPoP-Nonce"


def test_no_nonce_then_retry_with_the_servers(envoy, keys, client_key):
    token = bound_token(keys, client_key)
    htu = f"http://{envoy.authority}/items"
    before = {name: stat(envoy, f"jwt_edge.{name}") for name in
              ("denied.dpop_nonce_missing", "provider.idp.denied.dpop_nonce_missing", "allowed",
               "denied.dpop_replayed")}
    resp = send(envoy, "/items", f"DPoP {token}", [proof(client_key, token, htu)])
    nonce = expect_use_dpop_nonce(envoy, resp, "dpop_nonce_missing", MISSING)
    assert stat(envoy, "jwt_edge.denied.dpop_nonce_missing") == before["denied.dpop_nonce_missing"] + 1
    assert stat(envoy, "jwt_edge.provider.idp.denied.dpop_nonce_missing") == \
        before["provider.idp.denied.dpop_nonce_missing"] + 1
    # The same client retries with new proofs carrying the nonce: every one passes, on
    # whichever worker takes the connection (both read one secret).
    retries = 4
    for _ in range(retries):
        assert_passed(send(envoy, "/items", f"DPoP {token}", [proof(client_key, token, htu, nonce=nonce)]))
    assert stat(envoy, "jwt_edge.allowed") == before["allowed"] + retries
    # A replay of a proof with a good nonce is still a replay, and carries no nonce.
    p = proof(client_key, token, htu, nonce=nonce)
    assert_passed(send(envoy, "/items", f"DPoP {token}", [p]))
    resp = send(envoy, "/items", f"DPoP {token}", [p])
    assert_denied(resp, "dpop_replayed", authority=envoy.authority, path="/items")
    assert resp.header_all("dpop-nonce") == [], resp
    assert stat(envoy, "jwt_edge.denied.dpop_replayed") == before["denied.dpop_replayed"] + 1


def test_a_nonce_two_windows_old_is_refused_with_a_new_one(envoy, keys, client_key):
    token = bound_token(keys, client_key)
    htu = f"http://{envoy.authority}/items"
    resp = send(envoy, "/items", f"DPoP {token}", [proof(client_key, token, htu)])
    nonce = expect_use_dpop_nonce(envoy, resp, "dpop_nonce_missing", MISSING)
    # Good to the end of the window after its own; wait until just past that.
    expires = (window_of(nonce) + 2) * LIFETIME_S
    time.sleep(max(0.0, expires - time.time()) + 0.2)
    before = stat(envoy, "jwt_edge.denied.dpop_nonce_invalid")
    resp = send(envoy, "/items", f"DPoP {token}", [proof(client_key, token, htu, nonce=nonce)])
    newer = expect_use_dpop_nonce(envoy, resp, "dpop_nonce_invalid", INVALID)
    assert window_of(newer) >= window_of(nonce) + 2, (nonce, newer)
    assert stat(envoy, "jwt_edge.denied.dpop_nonce_invalid") == before + 1
    assert_passed(send(envoy, "/items", f"DPoP {token}", [proof(client_key, token, htu, nonce=newer)]))


@pytest.mark.parametrize("bad", ["x", "A" * 27, 7])
def test_not_a_nonce_of_ours(envoy, keys, client_key, bad):
    token = bound_token(keys, client_key)
    htu = f"http://{envoy.authority}/items"
    before = stat(envoy, "jwt_edge.denied.dpop_nonce_invalid")
    resp = send(envoy, "/items", f"DPoP {token}", [proof(client_key, token, htu, nonce=bad)])
    expect_use_dpop_nonce(envoy, resp, "dpop_nonce_invalid", INVALID)
    assert stat(envoy, "jwt_edge.denied.dpop_nonce_invalid") == before + 1


def test_other_proof_failures_come_first_and_carry_no_nonce(envoy, keys, client_key):
    token = bound_token(keys, client_key)
    resp = send(envoy, "/items", f"DPoP {token}",
                [proof(client_key, token, f"http://{envoy.authority}/other")])
    assert_denied(resp, "dpop_htu_mismatch", authority=envoy.authority, path="/items")
    assert resp.header_all("dpop-nonce") == [], resp
