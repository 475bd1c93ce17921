"""A small HTTP/1.1 client on http.client: repeated headers, exact paths, no retries."""

from __future__ import annotations

import http.client
import json
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]  # names lower-cased, in order, repeats kept
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of `name`, or None."""
        name = name.lower()
        return next((v for k, v in self.headers if k == name), None)

    def header_all(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self.headers if k == name]

    def json(self):
        return json.loads(self.body)

    def __repr__(self) -> str:  # shows up in assertion messages
        body = self.body[:500]
        return f"Response({self.status}, headers={self.headers!r}, body={body!r})"


def request(
    url: str,
    method: str = "GET",
    headers: list[tuple[str, str]] | dict[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 30.0,
    tls: ssl.SSLContext | None = None,
) -> Response:
    """Sends one request on a fresh connection. `url` is `http://host:port/path?query` (or
    `https://`, over `tls`); the path is sent as is."""
    parts = urlsplit(url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    if isinstance(headers, dict):
        headers = list(headers.items())
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout, context=tls)
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers or []:
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("content-length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        data = resp.read()
        return Response(resp.status, [(k.lower(), v) for k, v in resp.getheaders()], data)
    finally:
        conn.close()


def bearer(token: str, scheme: str = "Bearer") -> list[tuple[str, str]]:
    return [("authorization", f"{scheme} {token}")]
