#!/usr/bin/env python3
"""A demo upstream: answers every request with JSON naming itself and echoing what it got,
so the demo shows which backend served a request and which identity headers Envoy added.
Standard library only."""

from __future__ import annotations

import argparse
import json
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def make_handler(name: str):
    class Handler(BaseHTTPRequestHandler):
        # Buffered: the status line, headers and body leave in one write when the handler
        # returns, so a backend killed mid-request never sends headers without their body.
        wbufsize = 1 << 16

        def _handle(self):
            length = int(self.headers.get("content-length") or 0)
            if length:
                self.rfile.read(length)
            body = json.dumps({
                "backend": name,
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
            }, indent=2).encode() + b"\n"
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _handle

        def log_message(self, format, *args):  # noqa: A002
            pass

    return Handler


def serve(host: str, port: int, name: str) -> ThreadingHTTPServer:
    """Starts a backend in a background thread; returns the server (call `shutdown()`)."""
    server = ThreadingHTTPServer((host, port), make_handler(name))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True, name=name).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--name", default="backend-1")
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), make_handler(args.name))
    server.daemon_threads = False  # so that server_close() waits for them
    # `docker stop` sends SIGTERM: stop accepting, answer the requests already accepted, exit.
    # (Connections still in the listen backlog are reset, which Envoy retries elsewhere; a
    # response cut after its headers could not be retried.) shutdown() waits for
    # serve_forever, which runs on this thread, so it runs on another.
    signal.signal(signal.SIGTERM,
                  lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    print(f"{args.name} on {args.host}:{args.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()  # joins the handler threads (block_on_close)


if __name__ == "__main__":
    main()
