#!/usr/bin/env python3
"""The identity provider of the three-proxy edge (test_edge.py), run in a container.

Standard library only. GET /jwks.json answers with the file STATE/jwks.json as it is at that
moment, after waiting the seconds in STATE/delay if that file exists: the test rotates keys and
slows the IdP by replacing files on the host (a bind-mounted directory), so nothing has to
reach the IdP over the network while it is cut off. Every request is one line on stdout, written
when the answer has been sent,

    req <unix time, s> <source address> <method> <path> <status>

which the test reads with `docker logs` to count key-set fetches per proxy by source address.
HTTP/1.0: each connection closes after its response, so Envoy keeps no pooled connection to
the IdP across a cut-off.
"""

from __future__ import annotations

import argparse
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def _delay(state: Path) -> float:
    """Seconds to wait before answering a key-set request: STATE/delay if present, else 0."""
    try:
        return max(0.0, float((state / "delay").read_text()))
    except (OSError, ValueError):
        return 0.0


def make_handler(state: Path):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def do_GET(self):  # noqa: N802
            path = self.path.split("?", 1)[0]
            if path == "/jwks.json":
                try:
                    status, body = 200, (state / "jwks.json").read_bytes()
                except OSError:
                    status, body = 500, b'{"error":"no key set"}'
                time.sleep(_delay(state))
            elif path == "/healthz":
                status, body = 200, b'{"status":"ok"}'
            else:
                status, body = 404, b'{"error":"not_found"}'
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            print(f"req {time.time():.3f} {self.client_address[0]} GET {path} {status}", flush=True)

        def log_message(self, format, *args):  # noqa: A002
            pass

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--state", type=Path, default=Path("/state"))
    args = parser.parse_args()
    server = ThreadingHTTPServer(("0.0.0.0", args.port), make_handler(args.state))
    server.daemon_threads = True
    print(f"edge idp on :{args.port}, key set {args.state / 'jwks.json'}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
