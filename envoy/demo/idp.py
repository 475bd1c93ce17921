#!/usr/bin/env python3
"""A demo identity provider: OAuth 2.0 client credentials and a JWKS. Demo only.

    POST /oauth/token                      grant_type=client_credentials&client_id=..&client_secret=..&audience=..
    GET  /.well-known/jwks.json            the public signing key
    GET  /.well-known/openid-configuration issuer metadata
    GET  /revoked.json                     the revocation list: {"jti": [...], "sub": [...]}

Tokens are RS256 with a `kid`, `iss` = --issuer, `sub` = client_id, `aud`, `scope`, and
`iat`/`exp` from the real clock (valid one hour). The signing key is --key (a PEM, e.g. from
`jwt-edge keygen`, with --kid) or, without it, made at start-up and kept only in memory.
Tokens with `jti` "demo-revoked" and the subject "demo-banned" (the client `demo-banned`) are on
the revocation list.
Needs `pyjwt` and `cryptography`.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

TOKEN_LIFETIME_S = 3600

# client_id -> secret, audiences it may ask for, scope it gets.
CLIENTS = {
    "demo-client": {"secret": "demo-secret", "audiences": ["api", "admin"], "scope": "orders:read"},
    "admin-client": {"secret": "admin-secret", "audiences": ["api", "admin"], "scope": "orders:read admin"},
    # Its tokens' subject is on the revocation list: a revoked token from /oauth/token alone.
    "demo-banned": {"secret": "banned-secret", "audiences": ["api"], "scope": "orders:read"},
}


def _b64url_uint(n: int) -> str:
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# The revocation list /revoked.json serves.
REVOKED = {"jti": ["demo-revoked"], "sub": ["demo-banned"]}


class DemoIdp:
    def __init__(self, issuer: str, key_pem: bytes | None = None, kid: str | None = None):
        self.issuer = issuer
        if key_pem is None:
            self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            self._key = load_pem_private_key(key_pem, password=None)
            if not isinstance(self._key, rsa.RSAPrivateKey):
                raise ValueError("the demo IdP signs RS256: --key must be an RSA key")
        nums = self._key.public_key().public_numbers()
        self.jwk = {"kty": "RSA", "n": _b64url_uint(nums.n), "e": _b64url_uint(nums.e),
                    "alg": "RS256", "use": "sig"}
        if kid is None:
            # RFC 7638 thumbprint as kid.
            canonical = json.dumps({k: self.jwk[k] for k in ("e", "kty", "n")},
                                   separators=(",", ":"), sort_keys=True).encode()
            kid = base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()
        self.jwk["kid"] = kid

    def jwks(self) -> dict:
        return {"keys": [self.jwk]}

    def issue(self, client_id: str, audience: str, scope: str) -> str:
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": client_id, "aud": audience, "scope": scope,
                  "iat": now, "exp": now + TOKEN_LIFETIME_S}
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.jwk["kid"]})

    def token_response(self, form: dict[str, str]) -> tuple[int, dict]:
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type"}
        client = CLIENTS.get(form.get("client_id", ""))
        if client is None or not hmac.compare_digest(client["secret"], form.get("client_secret", "")):
            return 401, {"error": "invalid_client"}
        audience = form.get("audience", "api")
        if audience not in client["audiences"]:
            return 400, {"error": "invalid_target", "error_description": f"audience {audience!r} not allowed"}
        token = self.issue(form["client_id"], audience, client["scope"])
        return 200, {"access_token": token, "token_type": "Bearer", "expires_in": TOKEN_LIFETIME_S,
                     "scope": client["scope"]}


def make_handler(idp: DemoIdp):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            path = self.path.split("?", 1)[0]
            if path == "/.well-known/jwks.json":
                self._json(200, idp.jwks())
            elif path == "/.well-known/openid-configuration":
                base = idp.issuer.rstrip("/")
                self._json(200, {"issuer": idp.issuer, "jwks_uri": f"{base}/.well-known/jwks.json",
                                 "token_endpoint": f"{base}/oauth/token",
                                 "grant_types_supported": ["client_credentials"],
                                 "id_token_signing_alg_values_supported": ["RS256"]})
            elif path == "/revoked.json":
                self._json(200, REVOKED)
            elif path == "/healthz":
                self._json(200, {"status": "ok"})
            else:
                self._json(404, {"error": "not_found"})

        def do_POST(self):  # noqa: N802
            if self.path.split("?", 1)[0] != "/oauth/token":
                return self._json(404, {"error": "not_found"})
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length).decode("utf-8", "replace")
            form = {k: v[0] for k, v in parse_qs(body).items()}
            status, payload = idp.token_response(form)
            self._json(status, payload)

        def _json(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("cache-control", "no-store")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format, *args):  # noqa: A002
            pass

    return Handler


def serve(host: str, port: int, issuer: str, key_pem: bytes | None = None,
          kid: str | None = None) -> tuple[ThreadingHTTPServer, DemoIdp]:
    """Starts the IdP in a background thread; returns the server (call `shutdown()`)."""
    idp = DemoIdp(issuer, key_pem, kid)
    server = ThreadingHTTPServer((host, port), make_handler(idp))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True, name="demo-idp").start()
    return server, idp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--issuer", default="http://127.0.0.1:9000/")
    parser.add_argument("--key", help="PEM private key (RSA) to sign with")
    parser.add_argument("--kid", help="its kid (default: the RFC 7638 thumbprint)")
    args = parser.parse_args()
    key_pem = open(args.key, "rb").read() if args.key else None
    idp = DemoIdp(args.issuer, key_pem, args.kid)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(idp))
    print(f"demo IdP on {args.host}:{args.port}, issuer {args.issuer}, kid {idp.jwk['kid']}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
