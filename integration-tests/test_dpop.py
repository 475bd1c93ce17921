"""DPoP-bound tokens (RFC 9449) in Envoy: a provider with `sender_constraint.dpop: required`.

The client key is made by the test; the access token is signed by the fixture IdP key
`ec-p256` (local_jwks) and bound to the client key by `cnf.jkt`. The listener is plain HTTP,
so proofs name `http://<authority><path>` (`:scheme` is `http`).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from harness import client
from harness.expect import assert_denied, assert_passed, realm
from harness.keys import Key, b64url, jwks
from harness.tokens import claims, mint
from harness.waits import stat

ALGS = "ES256 EdDSA"


def config(published_keys, **sender) -> dict:
    """One provider `idp` requiring DPoP, with `sender` added to its `sender_constraint`."""
    return {
        "providers": {
            "idp": {
                "issuer": "https://idp.test/",
                "audiences": ["api"],
                "local_jwks": {"inline_string": json.dumps(jwks(published_keys))},
                "sender_constraint": {"dpop": "required", "dpop_algorithms": ["ES256", "EdDSA"],
                                      **sender},
            }
        },
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "idp"}}],
    }


@pytest.fixture(scope="module")
def envoy(module_envoy_factory, published_keys):
    return module_envoy_factory(config(published_keys))


@pytest.fixture(scope="module")
def client_key() -> Key:
    return Key("client", "p256", ec.generate_private_key(ec.SECP256R1()))


def jkt(key: Key) -> str:
    jwk = key.public_jwk()
    members = {k: jwk[k] for k in ("crv", "kty", "x", "y")}
    return b64url(hashlib.sha256(json.dumps(members, separators=(",", ":"), sort_keys=True).encode()).digest())


def bound_token(keys, client_key, **extra) -> str:
    return mint(keys["ec-p256"], claims(cnf={"jkt": jkt(client_key)}, **extra))


def proof(client_key: Key, token: str, htu: str, htm: str = "GET", iat: int | None = None,
          nonce=None) -> str:
    """A fresh proof (new `jti`); `nonce`, when given, is its `nonce` claim as is."""
    jwk = {k: v for k, v in client_key.public_jwk().items() if k not in ("kid", "use")}
    payload = {
        "jti": str(uuid.uuid4()),
        "htm": htm,
        "htu": htu,
        "iat": int(time.time()) if iat is None else iat,
        "ath": b64url(hashlib.sha256(token.encode()).digest()),
    }
    if nonce is not None:
        payload["nonce"] = nonce
    return mint(client_key, payload, header={"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk})


def send(envoy, path: str, authorization: str | None, proofs: list[str], method: str = "GET"):
    headers = [("dpop", p) for p in proofs]
    if authorization is not None:
        headers.append(("authorization", authorization))
    return client.request(envoy.url(path), method=method, headers=headers)


def challenge(envoy, path: str, code: str, description: str, error: str) -> str:
    return (f'DPoP realm="{realm(envoy.authority, path)}", error="{error}", '
            f'error_description="{description}", algs="{ALGS}"')


def test_bound_token_with_a_valid_proof_passes_once(envoy, keys, client_key):
    token = bound_token(keys, client_key)
    p = proof(client_key, token, f"http://{envoy.authority}/items")
    assert_passed(send(envoy, "/items?page=2", f"DPoP {token}", [p]))
    before = stat(envoy, "jwt_edge.denied.dpop_replayed")
    resp = send(envoy, "/items", f"DPoP {token}", [p])
    assert_denied(resp, "dpop_replayed", authority=envoy.authority, path="/items")
    assert resp.header_all("www-authenticate") == [challenge(
        envoy, "/items", "dpop_replayed", "the DPoP proof has been used before", "invalid_dpop_proof")]
    assert stat(envoy, "jwt_edge.denied.dpop_replayed") == before + 1


@pytest.mark.parametrize("case, code", [
    ("wrong_method", "dpop_htm_mismatch"),
    ("wrong_uri", "dpop_htu_mismatch"),
    ("stale", "dpop_iat_out_of_window"),
    ("missing", "dpop_proof_missing"),
    ("two", "dpop_proof_multiple"),
])
def test_proof_failures(envoy, keys, client_key, case, code):
    token = bound_token(keys, client_key)
    htu = f"http://{envoy.authority}/items"
    proofs = {
        "wrong_method": [proof(client_key, token, htu, htm="POST")],
        "wrong_uri": [proof(client_key, token, f"http://{envoy.authority}/other")],
        "stale": [proof(client_key, token, htu, iat=int(time.time()) - 600)],
        "missing": [],
        "two": [proof(client_key, token, htu), proof(client_key, token, htu)],
    }[case]
    before = stat(envoy, f"jwt_edge.denied.{code}")
    resp = send(envoy, "/items", f"DPoP {token}", proofs)
    assert_denied(resp, code, authority=envoy.authority, path="/items")
    assert resp.header_all("www-authenticate")[0].endswith(f', algs="{ALGS}"'), resp
    assert stat(envoy, f"jwt_edge.denied.{code}") == before + 1


def test_bearer_use_of_a_bound_token_is_refused(envoy, keys, client_key):
    token = bound_token(keys, client_key)
    resp = send(envoy, "/items", f"Bearer {token}", [proof(client_key, token, f"http://{envoy.authority}/items")])
    assert resp.status == 401, resp
    assert resp.json()["error"] == "dpop_bound_token_as_bearer"
    assert resp.header_all("www-authenticate") == [challenge(
        envoy, "/items", "dpop_bound_token_as_bearer",
        "a DPoP-bound token was presented as a bearer token", "invalid_token")]


def test_no_credentials_get_a_dpop_challenge(envoy):
    resp = send(envoy, "/items", None, [])
    assert resp.status == 401, resp
    assert resp.json()["error"] == "token_missing"
    assert resp.header_all("www-authenticate") == [
        f'DPoP realm="{realm(envoy.authority, "/items")}", algs="{ALGS}"']
