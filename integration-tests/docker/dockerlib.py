"""Docker and Compose from the tests: a project that always comes down, free ports and subnets,
HTTP to 127.0.0.1, and a bounded load generator.

Every command has a time-out; every project is removed with `down -v` by its fixture, and
`sweep()` removes whatever is left under a name prefix (make test-docker runs it at exit, also
after a time-out or an interrupt).
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import random
import shlex
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

COMMAND_TIMEOUT_S = 120


class DockerError(RuntimeError):
    pass


def run(args: list[str], *, timeout: float = COMMAND_TIMEOUT_S, env: dict | None = None,
        cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    try:
        result = subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                                env=None if env is None else {**os.environ, **env}, cwd=cwd)
    except subprocess.TimeoutExpired as e:
        raise DockerError(f"timed out after {timeout}s: {shlex.join(args)}") from e
    if check and result.returncode != 0:
        raise DockerError(f"{shlex.join(args)} exited {result.returncode}:\n"
                          f"{result.stdout[-3000:]}{result.stderr[-3000:]}")
    return result


def compose_command() -> list[str]:
    """`docker compose` (v2) or `docker-compose` (v1), or $DOCKER_COMPOSE as given."""
    if os.environ.get("DOCKER_COMPOSE"):
        return shlex.split(os.environ["DOCKER_COMPOSE"])
    for cmd in (["docker", "compose"], ["docker-compose"]):
        try:
            if run([*cmd, "version"], timeout=30, check=False).returncode == 0:
                return cmd
        except (DockerError, FileNotFoundError):
            continue
    raise DockerError("neither `docker compose` nor `docker-compose` works: install Docker Compose")


def engine_problem() -> str | None:
    """None when the Docker engine answers, else why not."""
    try:
        result = run(["docker", "info", "--format", "{{.ServerVersion}}"], timeout=30, check=False)
    except FileNotFoundError:
        return "the `docker` command is not installed"
    except DockerError as e:
        return str(e)
    if result.returncode != 0 or not result.stdout.strip():
        return f"the Docker engine does not answer: {result.stderr.strip()}"
    return None


def image_exists(ref: str) -> bool:
    return run(["docker", "image", "inspect", ref], timeout=30, check=False).returncode == 0


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 now (held open together so they differ)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _used_networks() -> list[ipaddress.IPv4Network]:
    used = []
    ids = run(["docker", "network", "ls", "-q"], timeout=30).stdout.split()
    if ids:
        out = run(["docker", "network", "inspect", "--format",
                   "{{range .IPAM.Config}}{{.Subnet}} {{end}}", *ids], timeout=30).stdout
        for word in out.split():
            try:
                net = ipaddress.ip_network(word, strict=False)
            except ValueError:
                continue
            if isinstance(net, ipaddress.IPv4Network):
                used.append(net)
    # The host's own routes (its LAN, VPNs): a /24 inside one would shadow it.
    try:
        for line in Path("/proc/net/route").read_text().splitlines()[1:]:
            cols = line.split()
            dest, mask = (ipaddress.IPv4Address(int(c, 16).to_bytes(4, "little")) for c in (cols[1], cols[7]))
            if int(mask):
                used.append(ipaddress.IPv4Network(f"{dest}/{mask}", strict=False))
    except (OSError, ValueError, IndexError):
        pass
    return used


def free_subnet_prefix(rng: random.Random) -> str:
    """'10.A.B' such that 10.A.B.0/24 overlaps no Docker network and no host route."""
    used = _used_networks()
    for _ in range(200):
        prefix = f"10.{rng.randint(200, 250)}.{rng.randint(0, 255)}"
        candidate = ipaddress.IPv4Network(f"{prefix}.0/24")
        if not any(candidate.overlaps(u) for u in used):
            return prefix
    raise DockerError("no free 10.200-250.x.0/24 subnet for the test network")


class Project:
    """One Compose project: `up` and `down -v`, `ps`, `logs`, container ids."""

    def __init__(self, name: str, compose_file: Path, env: dict[str, str]):
        self.name = name
        self.file = compose_file
        self.env = env
        self.cmd = compose_command()

    def compose(self, *args: str, timeout: float = COMMAND_TIMEOUT_S, check: bool = True):
        return run([*self.cmd, "-f", str(self.file), "-p", self.name, *args], timeout=timeout,
                   env=self.env, cwd=self.file.parent, check=check)

    def up(self, *services: str, timeout: float = 180) -> None:
        self.compose("up", "-d", "--no-build", *services, timeout=timeout)

    def down(self) -> None:
        """Stops and removes every container, network and volume of the project; falls back
        to removing them by label if Compose fails."""
        try:
            self.compose("down", "-v", "--remove-orphans", "-t", "3", timeout=120)
        except DockerError:
            pass
        sweep(self.name, exact=True)

    def container(self, service: str) -> str:
        cid = self.compose("ps", "-q", service, timeout=30).stdout.strip()
        if not cid:
            raise DockerError(f"no container for service {service} in {self.name}")
        return cid.splitlines()[0]

    def logs(self, *services: str, tail: int | None = None) -> str:
        args = ["logs", "--no-color"]
        if tail is not None:
            args += ["--tail", str(tail)]
        result = self.compose(*args, *services, timeout=60, check=False)
        return result.stdout + result.stderr

    def save_logs(self, directory: Path) -> Path:
        """Writes every service's log to DIRECTORY/<project>.log; returns the path."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.name}.log"
        path.write_text(self.logs())
        return path

    def network(self, key: str) -> str:
        """The Docker name of the project's network `key`."""
        out = run(["docker", "network", "ls", "--format", "{{.Name}}", "--filter",
                   f"label=com.docker.compose.project={self.name}"], timeout=30).stdout.split()
        for name in out:
            if name.endswith("_" + key):
                return name
        raise DockerError(f"network {key} of {self.name} not found among {out}")


def container_logs(cid: str) -> str:
    result = run(["docker", "logs", cid], timeout=60, check=False)
    return result.stdout + result.stderr


def sweep(prefix: str, *, exact: bool = False) -> list[str]:
    """Removes containers, networks and volumes of Compose projects named `prefix` (or, unless
    `exact`, named `prefix-...`). Returns what it removed."""
    removed = []
    label = "com.docker.compose.project"

    def matches(project: str) -> bool:
        return project == prefix if exact else project.startswith(prefix + "-")

    for kind, ls, rm in (("container", ["docker", "ps", "-a"], ["docker", "rm", "-f", "-v"]),
                         ("network", ["docker", "network", "ls"], ["docker", "network", "rm"]),
                         ("volume", ["docker", "volume", "ls"], ["docker", "volume", "rm", "-f"])):
        fmt = "{{.ID}} {{.Label \"%s\"}}" if kind != "volume" else "{{.Name}} {{.Label \"%s\"}}"
        out = run([*ls, "--filter", f"label={label}", "--format", fmt % label],
                  timeout=60, check=False).stdout
        ids = [line.split()[0] for line in out.splitlines()
               if len(line.split()) == 2 and matches(line.split()[1])]
        if ids:
            run([*rm, *ids], timeout=120, check=False)
            removed += [f"{kind} {i}" for i in ids]
    return removed


# -- HTTP to 127.0.0.1 -----------------------------------------------------------------------
@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


def request(method: str, port: int, path: str, headers: dict | None = None, body: bytes | None = None,
         timeout: float = 10) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def wait_ready(admin_port: int, timeout: float) -> bool:
    """True once Envoy's admin /ready answers 200 (LIVE) within `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if request("GET", admin_port, "/ready", timeout=2).status == 200:
                return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def envoy_stats(admin_port: int, filter_re: str) -> dict[str, int]:
    # jwt-edge hands its counters to Envoy on each VM's 100 ms tick: wait out a few.
    time.sleep(0.3)
    reply = request("GET", admin_port, f"/stats?filter={filter_re}", timeout=5)
    out = {}
    for line in reply.body.decode().splitlines():
        name, _, value = line.partition(": ")
        try:
            out[name.strip()] = int(value)
        except ValueError:
            continue
    return out


# -- load ------------------------------------------------------------------------------------
@dataclass
class Result:
    target: str           # which proxy
    kind: str             # which token kind was sent
    status: int           # HTTP status, 0 for a transport error
    sent: float           # time.time() before the request
    done: float           # time.time() when the answer (or the error) came
    backend: str = ""     # the echo backend that answered, for 200s
    error: str = ""       # the error code of a local reply, or the transport error


@dataclass
class Load:
    """Sequential requests from one thread per (target, token kind), on a kept-alive
    connection (a new one after an error), until stopped or `max_seconds` pass."""

    targets: dict[str, int]           # name -> port on 127.0.0.1
    tokens: dict[str, str]            # kind -> token
    pause: float = 0.02
    max_seconds: float = 120
    results: list[Result] = field(default_factory=list)

    def __post_init__(self):
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._loop, args=(t, k), daemon=True)
                         for t in self.targets for k in self.tokens]

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self) -> list[Result]:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=15)
        with self._lock:
            return list(self.results)

    def snapshot(self) -> list[Result]:
        with self._lock:
            return list(self.results)

    def _loop(self, target: str, kind: str) -> None:
        port, token = self.targets[target], self.tokens[kind]
        deadline = time.monotonic() + self.max_seconds
        conn = None
        while not self._stop.is_set() and time.monotonic() < deadline:
            sent = time.time()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("GET", f"/orders/{kind}", headers={"authorization": f"Bearer {token}"})
                resp = conn.getresponse()
                body = resp.read()
                backend = error = ""
                try:
                    doc = json.loads(body)
                    # 200: the echo backend's name; a local reply: its error code
                    backend, error = (doc.get("backend", ""), "") if resp.status == 200 \
                        else ("", doc.get("error", ""))
                except (ValueError, AttributeError):
                    error = body[:80].decode("utf-8", "replace")
                result = Result(target, kind, resp.status, sent, time.time(), backend, error)
                if resp.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                result = Result(target, kind, 0, sent, time.time(), error=f"{type(e).__name__}: {e}")
                if conn is not None:
                    conn.close()
                conn = None
                self._stop.wait(0.1)
            with self._lock:
                self.results.append(result)
            self._stop.wait(self.pause)
        if conn is not None:
            conn.close()


if __name__ == "__main__":
    # make test-docker's exit trap: `python dockerlib.py sweep PREFIX`.
    if len(sys.argv) != 3 or sys.argv[1] != "sweep":
        sys.exit("usage: dockerlib.py sweep PREFIX")
    for what in sweep(sys.argv[2]):
        print(f"test-docker: removed leftover {what}")
