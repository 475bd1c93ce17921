"""Shared pieces of `make bench` and `make bench-micro`: Envoy configs and processes, /proc
readings, wrk runs, the machine-quiet check.

Reuses the integration harness (integration-tests/harness) for the Envoy binary, the jwt-edge
Wasm filter block and the HTTP client, but starts Envoy its own way: pinned with `taskset`, at
`--log-level warn` (the harness runs `wasm:debug`, whose logging would be measured too).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO / "integration-tests"))

from harness import client  # noqa: E402
from harness.config import router_filter, wasm_filter  # noqa: E402
from harness.envoy import envoy_binary, random_base_id, tail  # noqa: E402

RESULTS = BENCH / "results"
WORK = REPO / "target" / "bench"  # keys, token pools, Envoy working dirs (not committed)


def cargo_target_dir(package: Path) -> Path:
    """Where Cargo puts `package`'s builds: $CARGO_TARGET_DIR (one directory for every package,
    as Cargo does; the Makefile exports it as an absolute path) or the package's `target/`."""
    env = os.environ.get("CARGO_TARGET_DIR")
    return Path(env).resolve() if env else package / "target"


# The module `make build` ships ($JWT_EDGE_WASM, as for the integration tests).
JWT_EDGE_WASM = Path(os.environ.get("JWT_EDGE_WASM")
                     or cargo_target_dir(REPO) / "wasm32-wasip1" / "release" / "jwt_edge.wasm")
NOOP_WASM = cargo_target_dir(BENCH / "noop-filter") / "wasm32-wasip1" / "release" / "jwt_edge_bench_noop.wasm"
# The same module trimmed by wasm-metadce to the exports jwt-edge ships (mk/bench.mk).
NOOP_MIN_WASM = NOOP_WASM.with_name("jwt_edge_bench_noop_min.wasm")
MICRO_WASM = cargo_target_dir(BENCH / "micro") / "wasm32-wasip1" / "release" / "jwt_edge_bench_micro.wasm"
MICRO_NATIVE = cargo_target_dir(BENCH / "micro") / "release" / "micro-native"

CLK_TCK = os.sysconf("SC_CLK_TCK")
READY_TIMEOUT_S = 60.0


# -- Envoy configuration ------------------------------------------------------------------
def envoy_config(http_filters: list[dict], *, balance_workers: bool = False,
                 upstream_port: int | None = None) -> dict:
    """Listener 127.0.0.1:<free> -> HCM -> `http_filters` -> router. Without `upstream_port`
    the only route answers `200 ok` itself (`direct_response`), so there is no upstream to
    measure; with it, the route proxies to 127.0.0.1:`upstream_port` (bench's nginx, HTTP/1.1
    keep-alive connections).

    `balance_workers`: exact connection balancing (reuse_port off), so that N connections
    opened one after another land on N different workers (the memory part relies on it).
    """
    if upstream_port is None:
        action = {"direct_response": {"status": 200, "body": {"inline_string": "ok\n"}}}
        clusters = []
    else:
        action = {"route": {"cluster": "upstream"}}
        clusters = [{
            "name": "upstream",
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": {"cluster_name": "upstream", "endpoints": [{"lb_endpoints": [{
                "endpoint": {"address": {"socket_address": {
                    "address": "127.0.0.1", "port_value": upstream_port}}}}]}]},
        }]
    listener = {
        "name": "main",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
        "filter_chains": [{
            "filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network."
                             "http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": "ingress",
                    "codec_type": "AUTO",
                    "route_config": {
                        "name": "local",
                        "virtual_hosts": [{
                            "name": "all",
                            "domains": ["*"],
                            "routes": [{"name": "default", "match": {"prefix": "/"}, **action}],
                        }],
                    },
                    "http_filters": [*http_filters, router_filter()],
                },
            }],
        }],
    }
    if balance_workers:
        listener["enable_reuse_port"] = False
        listener["connection_balance_config"] = {"exact_balance": {}}
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {"listeners": [listener], "clusters": clusters},
    }


def envoy_config_multi(listeners: dict[str, list[dict]], *, upstream_port: int | None = None) -> dict:
    """One listener per entry of `listeners` (name -> http filters), each as `envoy_config`
    builds its one listener: `make bench-ladder` measures every variant in one Envoy."""
    config = envoy_config([], upstream_port=upstream_port)
    template = config["static_resources"]["listeners"][0]
    config["static_resources"]["listeners"] = []
    for name, filters in listeners.items():
        one = envoy_config(filters, upstream_port=upstream_port)["static_resources"]["listeners"][0]
        one["name"] = name
        assert one.keys() == template.keys()
        config["static_resources"]["listeners"].append(one)
    return config


def jwt_authn_filter(filter_json: dict) -> dict:
    """Envoy's native `envoy.filters.http.jwt_authn` with `filter_json` as its typed config
    (jwt-edge's configuration is jwt_authn's `JwtAuthentication` in proto JSON)."""
    return {
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            **filter_json,
        },
    }


def jwt_edge_filter(filter_json: dict, wasm: Path = JWT_EDGE_WASM) -> dict:
    """jwt-edge in `envoy.filters.http.wasm`, loaded as the integration tests load it but at
    the filter's default log level, as a user runs it: the tests' `debug` (which they read)
    formats and hands Envoy one line per request (~10K instructions, `make
    bench-instructions`), a cost jwt_authn at Envoy's default level does not pay either."""
    return wasm_filter({"log_level": "info", **filter_json}, wasm)


def plain_wasm_filter(name: str, wasm: Path, configuration: str | None = None,
                      env: dict[str, str] | None = None) -> dict:
    """Another proxy-wasm module in `envoy.filters.http.wasm`, with an optional plugin
    configuration (a string) and VM environment variables (read through WASI)."""
    config = {
        "name": name,
        "root_id": name,
        "vm_config": {
            "vm_id": name,
            "runtime": "envoy.wasm.runtime.v8",
            "code": {"local": {"filename": str(wasm)}},
        },
        "failure_policy": "FAIL_CLOSED",
    }
    if configuration is not None:
        config["configuration"] = {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                   "value": configuration}
    if env:
        config["vm_config"]["environment_variables"] = {"key_values": env}
    return {
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": config,
        },
    }


class Nginx:
    """nginx from Debian (`/usr/sbin/nginx`) as the upstream of the `upstream` mode: one
    worker pinned with `taskset -c CPUS`, answering `200 ok` to everything, keep-alive
    connections that are never closed during a run, no access log. Everything (config, pid,
    temp files, error log) lives in `workdir`."""

    def __init__(self, workdir: Path, cpus: str = "1"):
        self.workdir = Path(workdir)
        self.cpus = cpus
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None

    def start(self) -> "Nginx":
        import shutil
        import socket

        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(binary).exists():
            raise RuntimeError("nginx is missing: `make bench` installs nginx-light (Debian)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        with socket.socket() as s:  # a free port (nginx cannot report one it picked itself)
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        w = self.workdir
        conf = w / "nginx.conf"
        conf.write_text(f"""daemon off;
master_process off;
worker_processes 1;
pid {w}/nginx.pid;
error_log {w}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {w}/body; proxy_temp_path {w}/proxy; fastcgi_temp_path {w}/fastcgi;
  uwsgi_temp_path {w}/uwsgi; scgi_temp_path {w}/scgi;
  keepalive_requests 100000000;
  keepalive_timeout 600s;
  server {{
    listen 127.0.0.1:{self.port};
    location / {{ return 200 "ok\n"; }}
  }}
}}
""")
        self.proc = subprocess.Popen(["taskset", "-c", self.cpus, binary, "-p", str(w), "-c", str(conf)],
                                     stdout=subprocess.DEVNULL, stderr=open(w / "stderr.log", "wb"),
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {(w / 'stderr.log').read_text()}"
                                   f"{(w / 'error.log').read_text() if (w / 'error.log').exists() else ''}")
            try:
                if client.request(f"http://127.0.0.1:{self.port}/", timeout=2).status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("nginx did not answer within 10 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def __enter__(self) -> "Nginx":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# -- Envoy process ------------------------------------------------------------------------
class Envoy:
    """One Envoy, pinned with `taskset -c CPUS` (taskset execs Envoy, so `pid` is Envoy's)."""

    def __init__(self, config: dict, workdir: Path, *, concurrency: int = 1, cpus: str = "0",
                 wrapper: tuple[str, ...] = (), ready_timeout_s: float | None = None):
        """`wrapper`: a command Envoy runs under (e.g. valgrind), exec'ing it in place so
        that `pid` stays Envoy's; `ready_timeout_s` replaces READY_TIMEOUT_S for it."""
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.workdir / "envoy.yaml"
        self.config_path.write_text(json.dumps(config, indent=1))  # JSON is YAML
        self.log_path = self.workdir / "envoy.log"
        self.admin_path = self.workdir / "admin-address"
        self.concurrency = concurrency
        self.cpus = cpus
        self.wrapper = tuple(wrapper)
        self.ready_timeout_s = ready_timeout_s or READY_TIMEOUT_S
        self.proc: subprocess.Popen | None = None
        self.admin_port: int | None = None
        self.port: int | None = None
        self.ports: dict[str, int] = {}

    def start(self) -> "Envoy":
        self.admin_path.unlink(missing_ok=True)
        cmd = ["taskset", "-c", self.cpus, *self.wrapper, envoy_binary(), "-c", str(self.config_path),
               "--concurrency", str(self.concurrency), "--base-id", str(random_base_id()),
               "--log-level", "warn", "--admin-address-path", str(self.admin_path)]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"envoy exited ({self.proc.returncode}):\n{tail(self.log(), 40)}")
            if self.admin_port is None and self.admin_path.exists():
                text = self.admin_path.read_text().strip()
                if text:
                    self.admin_port = int(text.rsplit(":", 1)[1])
            if self.admin_port is not None:
                try:
                    if self.admin("/ready").status == 200:
                        self.ports = {
                            st["name"]: int(st["local_address"]["socket_address"]["port_value"])
                            for st in self.admin("/listeners?format=json").json()["listener_statuses"]}
                        self.port = self.ports.get("main")
                        return
                except OSError:
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"envoy not ready after {self.ready_timeout_s}s:\n{tail(self.log(), 40)}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def __enter__(self) -> "Envoy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def admin(self, path: str) -> client.Response:
        return client.request(f"http://127.0.0.1:{self.admin_port}{path}", timeout=10)

    def stats(self) -> dict[str, float]:
        """Counters and gauges by name (admin `/stats?format=json`), after three ticks of
        jwt-edge's VMs (they hand their counters to Envoy on each 100 ms tick)."""
        time.sleep(0.3)
        return {s["name"]: s["value"] for s in self.admin("/stats?format=json").json()["stats"]
                if "value" in s and isinstance(s["value"], (int, float))}

    def cpu_seconds(self) -> float:
        """utime + stime of every Envoy thread so far (/proc/<pid>/stat fields 14 and 15)."""
        text = Path(f"/proc/{self.proc.pid}/stat").read_text()
        fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def worker_cpu_ns(self) -> int:
        """CPU time of Envoy's worker threads (`wrk:worker_N`) so far, in ns, from
        /proc/<pid>/task/<tid>/schedstat (nanosecond resolution, unlike utime/stime's clock
        ticks; the main thread's stats flushes and the like are left out)."""
        total = 0
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            try:
                if (task / "comm").read_text().startswith("wrk:worker"):
                    total += int((task / "schedstat").read_text().split()[0])
            except (FileNotFoundError, ProcessLookupError):
                pass
        return total

    def rss_mib(self) -> float:
        """VmRSS from /proc/<pid>/status, in MiB."""
        m = re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{self.proc.pid}/status").read_text(), re.M)
        return int(m.group(1)) / 1024 if m else float("nan")


def response_classes(stats: dict[str, float]) -> dict[str, float]:
    """Downstream responses by class (`http.ingress.downstream_rq_2xx` …)."""
    return {c: stats.get(f"http.ingress.downstream_rq_{c}", 0) for c in ("1xx", "2xx", "3xx", "4xx", "5xx")}


def envoy_version() -> str:
    out = subprocess.run([envoy_binary(), "--version"], capture_output=True, text=True, timeout=30).stdout
    m = re.search(r"version: \S+/(\d+\.\d+\.\d+)", out)
    return m.group(1) if m else "?"


def snapshot(module: Path) -> tuple[Path, dict]:
    """Copies a built module into target/bench/modules/ and returns the copy and its identity.

    Runs load the copy: `target/` is shared with whoever else builds in this tree, and a
    rebuild in the middle of a benchmark must not change what the later runs measure."""
    import hashlib
    import shutil

    dest = WORK / "modules" / module.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(module, dest)
    data = dest.read_bytes()
    # Relative to the repository unless $CARGO_TARGET_DIR put it elsewhere (changed_since
    # reads it back either way: REPO / an absolute path is that path).
    file = module.relative_to(REPO) if module.is_relative_to(REPO) else module
    return dest, {"file": str(file), "bytes": len(data),
                  "sha256": hashlib.sha256(data).hexdigest()[:16],
                  "built": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(module.stat().st_mtime))}


def changed_since(info: dict) -> bool:
    """Whether the module at `info["file"]` differs from the snapshot described by `info`."""
    import hashlib

    path = REPO / info["file"]
    return not path.exists() or hashlib.sha256(path.read_bytes()).hexdigest()[:16] != info["sha256"]


def git_state() -> dict:
    """The commit benchmarked and whether the tree had uncommitted changes under src/."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                              timeout=30).stdout.strip()
    dirty = git("status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock")
    return {"commit": git("rev-parse", "--short", "HEAD") or "unknown (not a git checkout)",
            "src_dirty_files": len(dirty.splitlines())}


# -- machine -------------------------------------------------------------------------------
def load1() -> float:
    return os.getloadavg()[0]


def wait_for_quiet(max_wait_s: float, threshold: float = 1.0, poll_s: float = 15.0) -> dict:
    """Waits (polling) until the 1-minute load average is below `threshold`, at most
    `max_wait_s`. Returns what happened, for the output."""
    start = time.monotonic()
    first = load1()
    while True:
        now = load1()
        waited = time.monotonic() - start
        if now < threshold:
            return {"quiet": True, "load1_first": first, "load1": now, "waited_s": round(waited)}
        if waited >= max_wait_s:
            return {"quiet": False, "load1_first": first, "load1": now, "waited_s": round(waited)}
        print(f"  machine busy: load average {now:.2f} (1 min) >= {threshold}; waiting "
              f"({waited:.0f}/{max_wait_s:.0f} s)", flush=True)
        time.sleep(poll_s)


def quiet_note(q: dict) -> str:
    if q["quiet"]:
        return f"machine quiet: 1-min load {q['load1']:.2f} (waited {q['waited_s']} s)"
    return (f"MACHINE BUSY: 1-min load still {q['load1']:.2f} after waiting {q['waited_s']} s; "
            f"ran anyway, expect noisy numbers")


def median(values: list[float]) -> float:
    vals = sorted(v for v in values if v == v)  # drop NaN
    if not vals:
        return float("nan")
    mid = len(vals) // 2
    return vals[mid] if len(vals) % 2 else (vals[mid - 1] + vals[mid]) / 2
