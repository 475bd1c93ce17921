"""An echo upstream: every request gets 200 and a JSON description of what arrived."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler

from .server import LoopbackServer


class _EchoHandler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so `stop()` really cuts the backend off (a
    # keep-alive connection would outlive the listener and keep serving).
    protocol_version = "HTTP/1.0"

    def _handle(self) -> None:
        owner: Backend = self.server.owner  # type: ignore[attr-defined]
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        headers: dict[str, str | list[str]] = {}
        for name, value in self.headers.items():
            name = name.lower()
            if name in headers:
                prev = headers[name]
                headers[name] = (prev if isinstance(prev, list) else [prev]) + [value]
            else:
                headers[name] = value
        seen = {
            "backend": owner.name,
            "method": self.command,
            "path": self.path,
            "headers": headers,
            "body": body.decode("utf-8", "replace"),
        }
        with owner.lock:
            owner.requests.append(seen)
        data = json.dumps(seen).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("x-backend", owner.name)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _handle

    def log_message(self, format, *args):  # noqa: A002 - keep test output quiet
        pass


class Backend(LoopbackServer):
    def __init__(self, name: str, port: int = 0):
        super().__init__(_EchoHandler, port)
        self.name = name
        self.requests: list[dict] = []

    @property
    def count(self) -> int:
        with self.lock:
            return len(self.requests)

    def last(self) -> dict | None:
        with self.lock:
            return self.requests[-1] if self.requests else None
