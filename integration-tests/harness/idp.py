"""A controllable JWKS server (the test IdP).

Serves `/jwks.json` (the current key set), `/.well-known/openid-configuration` and
`/revoked.json` (a revocation list, see `set_revocation`), counts
requests per path (and records when each arrived, `time.monotonic()`), and can misbehave on
demand:

    normal     answer with the key set
    down       listener closed: connections are refused (`set_mode("normal")` re-binds the port)
    status500  500 with a JSON error body
    garbage    200 with a body that is not JSON
    oversized  200 with a JSON body larger than 256 KiB
    slow       sleep `delay` seconds, then answer normally
"""

from __future__ import annotations

import json
import time
from http.server import BaseHTTPRequestHandler

from .keys import Key, jwks
from .server import LoopbackServer

MODES = ("normal", "down", "status500", "garbage", "oversized", "slow")
OVERSIZED_BYTES = 300 * 1024


class _IdpHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:  # noqa: N802
        owner: Idp = self.server.owner  # type: ignore[attr-defined]
        path = self.path.split("?", 1)[0]
        with owner.lock:
            owner.counts[path] = owner.counts.get(path, 0) + 1
            owner.arrivals.setdefault(path, []).append(time.monotonic())
            mode, delay, document = owner.mode, owner.delay, owner.jwks_document()
        if mode == "slow":
            time.sleep(delay)
        if path == "/.well-known/openid-configuration":
            base = f"http://{owner.address}"
            self._send(200, json.dumps({"issuer": owner.issuer, "jwks_uri": base + "/jwks.json"}).encode())
        elif path == "/revoked.json":
            with owner.lock:
                status, body = owner.revocation
            self._send(status, body)
        elif path == "/jwks.json":
            if mode == "status500":
                self._send(500, b'{"error":"internal"}')
            elif mode == "garbage":
                self._send(200, b"<html>this is not a key set</html>")
            elif mode == "oversized":
                doc = dict(document)
                doc["padding"] = "x" * OVERSIZED_BYTES
                self._send(200, json.dumps(doc).encode())
            else:
                self._send(200, json.dumps(document).encode())
        else:
            self._send(404, b'{"error":"not_found"}')

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # noqa: A002
        pass


class Idp(LoopbackServer):
    def __init__(self, keys: list[Key], issuer: str = "https://idp.test/", port: int = 0):
        super().__init__(_IdpHandler, port)
        self.issuer = issuer
        self.mode = "normal"
        self.delay = 0.0
        self.counts: dict[str, int] = {}
        self.arrivals: dict[str, list[float]] = {}  # path -> time.monotonic() of each request
        self._keys: list[Key] = list(keys)
        self._raw: dict | None = None
        # /revoked.json: (status, body). Its own switch: the key set keeps working meanwhile.
        self.revocation: tuple[int, bytes] = (200, b'{"jti":[],"sub":[]}')

    # -- key set -------------------------------------------------------------------------
    def set_keys(self, keys: list[Key]) -> None:
        with self.lock:
            self._keys, self._raw = list(keys), None

    def set_document(self, document: dict) -> None:
        """Serve `document` verbatim (for malformed or hand-built key sets)."""
        with self.lock:
            self._raw = document

    def rotate(self, new_key: Key, drop_kid: str | None = None) -> None:
        """Publish `new_key`; with `drop_kid`, also stop publishing that key."""
        with self.lock:
            self._keys = [k for k in self._keys if k.kid != drop_kid and k.kid != new_key.kid]
            self._keys.append(new_key)
            self._raw = None

    def set_revocation(self, document: dict | bytes, status: int = 200) -> None:
        """Serve `document` (JSON-encoded unless bytes) at /revoked.json with `status`."""
        body = document if isinstance(document, bytes) else json.dumps(document).encode()
        with self.lock:
            self.revocation = (status, body)

    @property
    def revocation_uri(self) -> str:
        return f"http://{self.address}/revoked.json"

    def jwks_document(self) -> dict:
        return self._raw if self._raw is not None else jwks(self._keys)

    # -- behaviour -----------------------------------------------------------------------
    def set_mode(self, mode: str, delay: float = 0.0) -> None:
        if mode not in MODES:
            raise ValueError(mode)
        with self.lock:
            self.mode, self.delay = mode, delay
        if mode == "down":
            self.stop()
        elif not self.running:
            self.start()

    def count(self, path: str = "/jwks.json") -> int:
        with self.lock:
            return self.counts.get(path, 0)

    def times(self, path: str = "/jwks.json") -> list[float]:
        """When each request for `path` arrived (`time.monotonic()`), oldest first."""
        with self.lock:
            return list(self.arrivals.get(path, []))

    @property
    def discovery_uri(self) -> str:
        return f"http://{self.address}/.well-known/openid-configuration"

    @property
    def jwks_path(self) -> str:
        return "/jwks.json"

    @property
    def jwks_uri(self) -> str:
        return f"http://{self.address}{self.jwks_path}"
