"""Runs the same filter configs through Envoy's native jwt_authn and through jwt-edge, side by
side in ONE Envoy process, and reduces each answer to what can be compared.

For config *i*, the Envoy has two listeners: `authn_i` (envoy.filters.http.jwt_authn with the
config as its typed_config, i.e. the JSON config converted to jwt_authn's proto form) and
`edge_i` (the Wasm filter with the same JSON). Both route every path to one echo backend,
which sends back what reached it, so an answer says what the upstream saw.

Configs given here must use only fields both filters know (the jwt_authn subset): keys are
inline (`local_jwks.inline_string`) so no fetch timing enters the comparison.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from . import client
from . import config as envoy_config
from . import envoy as envoy_harness

JWT_AUTHN_TYPE = "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication"


def jwt_authn_filter(cfg: dict) -> dict:
    return {"name": "envoy.filters.http.jwt_authn",
            "typed_config": {"@type": JWT_AUTHN_TYPE, **cfg}}


def _listener(name: str, http_filter: dict) -> dict:
    return {
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network."
                         "http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": name,
                "codec_type": "AUTO",
                "route_config": {"name": name, "virtual_hosts": [{
                    "name": "all", "domains": ["*"],
                    "routes": [{"name": "default", "match": {"prefix": "/"},
                                "route": {"cluster": "backend", "timeout": "15s"}}],
                }]},
                "http_filters": [http_filter, envoy_config.router_filter()],
            },
        }]}],
    }


def render(configs: list[dict], wasm_path: str | Path, backend_port: int) -> str:
    # `main`: no auth filter; the harness waits for a listener of that name.
    listeners = [_listener("main", envoy_config.router_filter())]
    listeners[0]["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"].pop()
    for i, cfg in enumerate(configs):
        listeners.append(_listener(f"authn_{i}", jwt_authn_filter(cfg)))
        listeners.append(_listener(f"edge_{i}", envoy_config.wasm_filter(cfg, wasm_path)))
    doc = {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": listeners,
            "clusters": [envoy_config.static_cluster("backend", [("127.0.0.1", backend_port)])],
        },
    }
    return json.dumps(doc, indent=1)  # JSON is YAML


@dataclass(frozen=True)
class Outcome:
    """What a client and the upstream saw, reduced to what both filters promise alike."""

    status: int
    # The `error=` parameter of WWW-Authenticate ("" without one, None without the header).
    www_error: str | None
    # Upstream view (only for requests that reached it): the watched headers' values, and
    # which token locations still held something.
    upstream: tuple | None = None

    def __str__(self) -> str:
        return f"{self.status} www_error={self.www_error!r} upstream={self.upstream}"


@dataclass
class Request:
    path: str = "/"
    headers: list[tuple[str, str]] = field(default_factory=list)
    method: str = "GET"
    # A named deviation (a key of the test's DEVIATIONS) when the answers may differ.
    deviation: str | None = None


class ParityEnvoy:
    """One Envoy, a jwt_authn and a jwt-edge listener per config."""

    def __init__(self, configs: list[dict], wasm_path: str | Path, backend_port: int,
                 workdir: Path):
        self.configs = configs
        self.proc = envoy_harness.EnvoyProcess(render(configs, wasm_path, backend_port), workdir)
        self.ports: dict[str, int] = {}

    def start(self) -> "ParityEnvoy":
        self.proc.start(timeout=120)
        data = self.proc.admin("/listeners?format=json").json()
        for status in data.get("listener_statuses", []):
            self.ports[status["name"]] = int(
                status["local_address"]["socket_address"]["port_value"])
        missing = [f"{kind}_{i}" for i in range(len(self.configs)) for kind in ("authn", "edge")
                   if f"{kind}_{i}" not in self.ports]
        if missing:
            raise envoy_harness.EnvoyError(f"listeners not found: {missing}")
        return self

    def stop(self) -> None:
        self.proc.stop()

    def send(self, kind: str, i: int, req: Request) -> client.Response:
        url = f"http://127.0.0.1:{self.ports[f'{kind}_{i}']}{req.path}"
        return client.request(url, method=req.method, headers=req.headers, timeout=15)


_ERROR_RE = re.compile(r'error="([^"]*)"')


def outcome(resp: client.Response, watched_headers: list[str], token_headers: list[str],
            token_params: list[str]) -> Outcome:
    www = resp.header("www-authenticate")
    www_error = None if www is None else (m.group(1) if (m := _ERROR_RE.search(www)) else "")
    upstream = None
    if resp.status == 200 and resp.header("x-backend") is not None:
        seen = resp.json()
        headers = seen["headers"]
        watched = tuple((h, _norm(headers.get(h))) for h in watched_headers)
        query = seen["path"].partition("?")[2]
        names = {pair.partition("=")[0] for pair in query.split("&") if pair}
        tokens = tuple(sorted(
            [f"header:{h}" for h in token_headers if headers.get(h) is not None]
            + [f"param:{p}" for p in token_params if p in names]))
        upstream = (watched, tokens)
    return Outcome(resp.status, www_error, upstream)


def _norm(v):
    return tuple(v) if isinstance(v, list) else v


def token_locations(cfg: dict) -> tuple[list[str], list[str]]:
    """Every header and query parameter a provider of `cfg` reads tokens from."""
    headers: set[str] = set()
    params: set[str] = set()
    for p in cfg.get("providers", {}).values():
        hs = [h["name"].lower() for h in p.get("from_headers", [])]
        ps = list(p.get("from_params", []))
        if not hs and not ps and not p.get("from_cookies"):
            hs, ps = ["authorization"], ["access_token"]
        headers.update(hs)
        params.update(ps)
    return sorted(headers), sorted(params)


def identity_headers(cfg: dict) -> list[str]:
    out: set[str] = set()
    for p in cfg.get("providers", {}).values():
        if p.get("forward_payload_header"):
            out.add(p["forward_payload_header"].lower())
        for c in p.get("claim_to_headers", []):
            out.add(c["header_name"].lower())
    return sorted(out)
