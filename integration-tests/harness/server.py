"""A stoppable, restartable ThreadingHTTPServer on a loopback port."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class LoopbackServer:
    """Runs `handler_class` on 127.0.0.1. Port 0 picks a free port once; `stop()` closes the
    listener (connections are then refused) and `start()` binds the same port again.

    The handler gets this object as `self.server.owner`.
    """

    def __init__(self, handler_class: type[BaseHTTPRequestHandler], port: int = 0,
                 host: str = "127.0.0.1"):
        self._handler_class = handler_class
        self.host = host
        self.port = port
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self.lock = threading.Lock()

    @property
    def running(self) -> bool:
        return self._httpd is not None

    def start(self) -> "LoopbackServer":
        if self._httpd is not None:
            return self
        httpd = _Server((self.host, self.port), self._handler_class)
        httpd.owner = self  # type: ignore[attr-defined]
        self.port = httpd.server_address[1]
        thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                  name=f"{type(self).__name__}:{self.port}", daemon=True)
        thread.start()
        self._httpd, self._thread = httpd, thread
        return self

    def stop(self) -> None:
        httpd, thread = self._httpd, self._thread
        self._httpd = self._thread = None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
