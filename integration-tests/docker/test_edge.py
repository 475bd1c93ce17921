"""A three-proxy edge in Docker: three Envoy containers with jwt-edge (--concurrency 2 each),
one IdP, two echo backends, on a Compose network of their own (edge-compose.yml). Traffic
comes from the host through ports published on 127.0.0.1; the IdP logs every request with its
source address, so key-set fetches are counted per proxy.

cache_duration is CACHE_S seconds, so a refresh is due 85-95 % of that after each fetch.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import string
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from harness.keys import jwks, load_all
from harness.tokens import claims, mint

from . import dockerlib
from .conftest import HERE, LOG_DIR

CACHE_S = 5.0
PROXIES = ("edge1", "edge2", "edge3")
READY_TIMEOUT_S = 90
# A proxy's fetch lands on a 100 ms tick after it is due, plus the round trip.
REFRESH_MIN_S, REFRESH_MAX_S = 0.85 * CACHE_S - 0.1, 0.95 * CACHE_S + 0.6
OUTAGE_S = CACHE_S + 8
BASE_KIDS = ("rsa-1", "ec-p256")
KEYS_DELAY_S = 0.6


@dataclass
class Fetch:
    at: float     # the IdP's time.time() when it answered
    source: str   # source address


class Edge:
    def __init__(self, project: dockerlib.Project, net: str, ports: dict, admin: dict,
                 state_dir: Path, keys: dict):
        self.project = project
        self.net = net
        self.ports = ports          # proxy -> listener port on 127.0.0.1
        self.admin = admin          # proxy -> admin port on 127.0.0.1
        self.ips = {"edge1": f"{net}.21", "edge2": f"{net}.22", "edge3": f"{net}.23"}
        self.idp_ip = f"{net}.10"
        self.state_dir = state_dir
        self.keys = keys
        self._cids: dict[str, str] = {}

    def cid(self, service: str) -> str:
        if service not in self._cids:
            self._cids[service] = self.project.container(service)
        return self._cids[service]

    def publish(self, kids) -> float:
        """Replaces the IdP's key set (atomically); returns when."""
        tmp = self.state_dir / "jwks.json.tmp"
        tmp.write_text(json.dumps(jwks([self.keys[k] for k in kids])))
        tmp.chmod(0o644)
        os.replace(tmp, self.state_dir / "jwks.json")
        return time.time()

    def set_delay(self, seconds: float) -> None:
        """Makes the IdP wait this long before answering a key-set request."""
        tmp = self.state_dir / "delay.tmp"
        tmp.write_text(f"{seconds}")
        tmp.chmod(0o644)
        os.replace(tmp, self.state_dir / "delay")

    def requests(self) -> list[tuple[float, str, str, int]]:
        """Every request the IdP answered: (time, source, path, status)."""
        out = []
        for line in dockerlib.container_logs(self.cid("idp")).splitlines():
            parts = line.split()
            if len(parts) == 6 and parts[0] == "req":
                out.append((float(parts[1]), parts[2], parts[4], int(parts[5])))
        return out

    def fetches(self, proxy: str, since: float = 0.0, until: float = float("inf")) -> list[float]:
        ip = self.ips[proxy]
        return sorted(t for t, src, path, _ in self.requests()
                      if src == ip and path == "/jwks.json" and since <= t <= until)

    def wait_fetch_after(self, since: float, timeout: float, proxies=PROXIES) -> dict[str, float]:
        """Waits until every proxy fetched after `since`; returns each one's first such fetch."""
        deadline = time.monotonic() + timeout
        while True:
            firsts = {p: f[0] for p in proxies if (f := self.fetches(p, since))}
            if len(firsts) == len(proxies) or time.monotonic() > deadline:
                return firsts
            time.sleep(0.2)

    def stat(self, proxy: str, name: str) -> int:
        full = f"wasmcustom.jwt_edge.jwks.edge.{name}"
        return dockerlib.envoy_stats(self.admin[proxy], full.replace(".", r"\.") + "$").get(full, 0)

    def get(self, proxy: str, token: str, path: str = "/orders") -> dockerlib.Reply:
        return dockerlib.request("GET", self.ports[proxy], path, {"authorization": f"Bearer {token}"})

    def settle(self) -> float:
        """Publishes the base key set and waits until every proxy fetched it: the next test
        starts from a known state whatever the last one did."""
        t = self.publish(BASE_KIDS)
        firsts = self.wait_fetch_after(t, timeout=CACHE_S + 15)
        assert set(firsts) == set(PROXIES), f"proxies that never fetched the key set: {firsts}"
        return t


@pytest.fixture(scope="module")
def tokens():
    keys = load_all()
    return {
        "rs256": mint(keys["rsa-1"], claims(sub="alice")),
        "es256": mint(keys["ec-p256"], claims(sub="bob")),
        # kid rsa-1, signed with a key the IdP never published
        "forged": mint(keys["rsa-1"], claims(sub="mallory"), signing_key=keys["rsa-evil"]),
        "rotated": mint(keys["rsa-2"], claims(sub="carol")),
    }


def _render_config(config_dir: Path, net: str, wasm: Path) -> None:
    template = string.Template((HERE / "envoy-edge.yaml").read_text())
    text = template.substitute(IDP=f"{net}.10", BACKEND1=f"{net}.11", BACKEND2=f"{net}.12",
                               CACHE_DURATION=f"{CACHE_S:g}")
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "envoy.yaml").write_text(text)
    shutil.copyfile(wasm, config_dir / "jwt_edge.wasm")
    # Envoy runs as uid 101 in the image: the mounted files must be world-readable.
    config_dir.chmod(0o755)
    for f in config_dir.iterdir():
        f.chmod(0o644)


@pytest.fixture(scope="module")
def edge(request, images, wasm_file, project_name, tmp_path_factory):
    keys = load_all()
    base = tmp_path_factory.mktemp("edge")
    config_dir, state_dir = base / "envoy", base / "state"
    state_dir.mkdir()
    state_dir.chmod(0o755)
    rng = random.Random()
    failed_before = request.session.testsfailed
    project = None
    try:
        for attempt in range(3):
            net = dockerlib.free_subnet_prefix(rng)
            _render_config(config_dir, net, wasm_file)
            listen, admin = dockerlib.free_ports(3), dockerlib.free_ports(3)
            ports = dict(zip(PROXIES, listen))
            admins = dict(zip(PROXIES, admin))
            env = {"ENVOY_IMAGE": images["envoy"], "PYTHON_IMAGE": images["python"],
                   "EDGE_NET": net, "EDGE_CONFIG_DIR": str(config_dir),
                   "EDGE_STATE_DIR": str(state_dir)}
            for i, p in enumerate(PROXIES, start=1):
                env[f"EDGE{i}_PORT"], env[f"EDGE{i}_ADMIN"] = str(ports[p]), str(admins[p])
            project = dockerlib.Project(project_name("edge"), HERE / "edge-compose.yml", env)
            edge = Edge(project, net, ports, admins, state_dir, keys)
            edge.publish(BASE_KIDS)
            try:
                project.up()
                break
            except dockerlib.DockerError as e:
                # Another network may have taken the subnet (or a port) since we looked.
                project.down()
                if attempt == 2 or "overlap" not in str(e).lower() and "address already" not in str(e):
                    raise
        for p in PROXIES:
            if not dockerlib.wait_ready(admins[p], READY_TIMEOUT_S):
                raise AssertionError(f"{p} not ready within {READY_TIMEOUT_S}s:\n{project.logs(p, tail=80)}")
        yield edge
    finally:
        if project is not None:
            if request.session.testsfailed > failed_before:
                _report_logs(project)
            project.down()


def _report_logs(project: dockerlib.Project) -> None:
    """Saves every container's log; prints where, and jwt-edge's own lines."""
    path = project.save_logs(LOG_DIR)
    lines = [line for line in path.read_text().splitlines() if "wasm log" in line or "idp_1" in line]
    print(f"\n===== {project.name}: full logs in {path}; jwt-edge's lines and the IdP's (last 150) =====")
    print("\n".join(lines[-150:]))


def _by(results, **match):
    return [r for r in results if all(getattr(r, k) == v for k, v in match.items())]


def _statuses(results) -> dict[int, int]:
    out: dict[int, int] = {}
    for r in results:
        out[r.status] = out.get(r.status, 0) + 1
    return out


def _odd(results, want: int = 200) -> list[str]:
    """What the answers other than `want` were, for assertion messages."""
    return [f"{r.target} {r.kind} {r.status} {r.error} sent {r.sent:.3f} done {r.done:.3f}"
            for r in results if r.status != want][:20]


def test_one_fetch_per_proxy_per_refresh(edge, tokens):
    start = time.time()
    with dockerlib.Load(edge.ports, {"rs256": tokens["rs256"], "es256": tokens["es256"]},
                        pause=0.05) as load:
        time.sleep(2.4 * CACHE_S)
    results = load.stop()
    end = time.time()
    assert _statuses(results) == {200: len(results)}, _odd(results)
    for p in PROXIES:
        assert {r.backend for r in _by(results, target=p)} == {"backend-1", "backend-2"}, p
    for p in PROXIES:
        # Every fetch of this proxy since it started: one at start-up, then one per refresh.
        times = edge.fetches(p)
        during = [t for t in times if start <= t <= end]
        assert len(during) >= 2, (p, times)
        gaps = [round(b - a, 2) for a, b in zip(times, times[1:])]
        assert all(REFRESH_MIN_S <= g <= REFRESH_MAX_S for g in gaps), \
            f"{p}: fetches {gaps} s apart; one per refresh is {REFRESH_MIN_S}-{REFRESH_MAX_S} s"
    # Nothing but key-set fetches reached the IdP, and only from the three proxies.
    sources = {(src, path) for _, src, path, _ in edge.requests()}
    assert sources == {(edge.ips[p], "/jwks.json") for p in PROXIES}, sources


def test_key_rotation_seen_by_all_three(edge, tokens):
    """The rotation an IdP does: publish the new key, sign with it once every proxy has it,
    then retire the old one. Not one valid token is refused on any proxy."""
    edge.settle()
    with dockerlib.Load(edge.ports, {"rs256": tokens["rs256"]}, pause=0.05) as load:
        published = edge.publish(("rsa-1", "ec-p256", "rsa-2"))
        # (+0.1 s: a fetch the IdP logged just after `published` may have read the old file)
        seen = edge.wait_fetch_after(published + 0.1, timeout=CACHE_S + 5)
        assert set(seen) == set(PROXIES), f"proxies that never fetched the new key: {seen}"
        time.sleep(0.3)  # every worker picks a new key set up within a tick (100 ms)
        switched = time.time()
        with dockerlib.Load(edge.ports, {"rotated": tokens["rotated"]}, pause=0.05) as new_load:
            time.sleep(1.0)
            retired = edge.publish(("ec-p256", "rsa-2"))
            gone = edge.wait_fetch_after(retired + 0.1, timeout=CACHE_S + 5)
            assert set(gone) == set(PROXIES), f"proxies that never fetched the retirement: {gone}"
            time.sleep(0.5)
        new_results = new_load.stop()
    old_results = load.stop()

    assert _statuses(new_results) == {200: len(new_results)}, f"new-key tokens refused: {_odd(new_results)}"
    for p in PROXIES:
        served = _by(new_results, target=p)
        assert served and served[0].sent >= switched, p
    # The old key: accepted until each proxy fetched the set without it, refused after.
    for p in PROXIES:
        mine = _by(old_results, target=p)
        before = [r for r in mine if r.done < retired]
        after = [r for r in mine if r.sent > gone[p] + 0.2]
        assert before and _statuses(before) == {200: len(before)}, (p, _odd(before))
        assert after and {(r.status, r.error) for r in after} == {(401, "unknown_kid")}, \
            (p, _odd(after, 401))


def test_idp_cut_off_longer_than_cache_duration(edge, tokens):
    edge.settle()
    network = edge.project.network("edge")
    idp = edge.cid("idp")
    samples: dict[str, list[tuple[float, int]]] = {p: [] for p in PROXIES}
    stop = threading.Event()

    def sample(p):
        # One thread per proxy, every 100 ms: failure times are known to ~0.1 s.
        while not stop.is_set():
            try:
                samples[p].append((time.time(), edge.stat(p, "fetch_failed")))
            except OSError:
                pass
            stop.wait(0.1)

    samplers = [threading.Thread(target=sample, args=(p,), daemon=True) for p in PROXIES]
    before_ok = {p: edge.stat(p, "fetch_success") for p in PROXIES}
    load = dockerlib.Load(edge.ports, {"rs256": tokens["rs256"], "es256": tokens["es256"],
                                       "forged": tokens["forged"]}, pause=0.05)
    reconnected = None
    with load:
        for t in samplers:
            t.start()
        try:
            dockerlib.run(["docker", "network", "disconnect", network, idp])
            # From when the disconnect has taken effect (the command returns then; under load
            # it takes a few hundred ms, and a fetch may still get through meanwhile).
            cut = time.time()
            time.sleep(OUTAGE_S)
        finally:
            dockerlib.run(["docker", "network", "connect", "--ip", edge.idp_ip, network, idp])
            reconnected = time.time()
        # The next retry is at most one backoff step away (here under 16 s).
        back = edge.wait_fetch_after(reconnected, timeout=25)
        time.sleep(0.5)
        stop.set()
        for t in samplers:
            t.join(timeout=10)
    results = load.stop()

    valid = [r for r in results if r.kind != "forged"]
    forged = _by(results, kind="forged")
    assert _statuses(valid) == {200: len(valid)}, f"valid tokens refused: {_odd(valid)}"
    assert _statuses(forged) == {401: len(forged)}, f"forged tokens: {_odd(forged, 401)}"
    assert [r for r in valid if cut + CACHE_S < r.sent < reconnected], "no traffic past cache_duration"

    assert set(back) == set(PROXIES), f"proxies that did not refresh after reconnect: {back}"
    for p in PROXIES:
        assert edge.fetches(p, cut + 0.05, reconnected) == [], p  # nothing got through
        # When each failed attempt was counted (sampled every 100 ms).
        failures, last = [], None
        for t, value in samples[p]:
            if last is not None and value > last:
                failures += [t] * (value - last)
            last = value
        in_outage = [t for t in failures if t < reconnected + 1.2]
        gaps = [round(b - a, 2) for a, b in zip(in_outage, in_outage[1:])]
        # 1 s time-out + 1 s, 2 s, 4 s ... backoff (minus up to 20 %): at least 3 attempts fail
        # in OUTAGE_S, at most 5; retrying without backoff would fail ~10 times.
        assert 3 <= len(in_outage) <= 5, (p, len(in_outage), gaps)
        # Each gap is the time-out plus a backoff twice the last one's: 1.8-2.0 s, 2.6-3.0 s,
        # 4.2-5.0 s, so each is at least 0.6 s longer than the one before.
        assert all(b > a + 0.2 for a, b in zip(gaps, gaps[1:])), f"{p}: not backing off: {gaps}"
        assert edge.stat(p, "fetch_success") > before_ok[p], p
        assert edge.stat(p, "stale_serving") == 0, p


def test_backend_stopped_mid_traffic(edge, tokens):
    edge.settle()
    backend1 = edge.cid("backend1")
    with dockerlib.Load(edge.ports, {"rs256": tokens["rs256"], "es256": tokens["es256"]},
                        pause=0.02) as load:
        time.sleep(2.0)
        stopped = time.time()
        dockerlib.run(["docker", "stop", "-t", "2", backend1])
        time.sleep(5.0)
    results = load.stop()
    dockerlib.run(["docker", "start", backend1])
    assert _statuses(results) == {200: len(results)}, f"valid requests not 2xx: {_odd(results)}"
    before = {r.backend for r in results if r.done < stopped}
    assert before == {"backend-1", "backend-2"}, before
    # Once health checks (1 s) have seen it gone, backend-1 gets nothing.
    settled = {r.backend for r in results if r.sent > stopped + 3.0}
    assert settled == {"backend-2"}, settled
    # It comes back into rotation once it answers health checks again.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        seen = {edge.get(p, tokens["es256"]).json()["backend"] for p in PROXIES for _ in range(2)}
        if "backend-1" in seen:
            break
        time.sleep(0.5)
    assert "backend-1" in seen, seen


def test_proxy_killed_and_restarted_under_load(edge, tokens):
    edge.settle()
    victim = "edge2"
    cid = edge.cid(victim)
    with dockerlib.Load(edge.ports, {"rs256": tokens["rs256"], "es256": tokens["es256"]},
                        pause=0.02) as load:
        time.sleep(1.0)
        dockerlib.run(["docker", "kill", cid])
        killed = time.time()  # SIGKILL delivered: nothing answers from here on
        # The IdP answers key-set requests after KEYS_DELAY_S (under the 1 s fetch time-out),
        # so the restarted proxy surely listens for a while without keys.
        edge.set_delay(KEYS_DELAY_S)
        try:
            time.sleep(1.0)
            starting = time.time()
            dockerlib.run(["docker", "start", cid])
            assert dockerlib.wait_ready(edge.admin[victim], READY_TIMEOUT_S), \
                edge.project.logs(victim, tail=80)
            first = edge.wait_fetch_after(starting, timeout=15, proxies=(victim,))
        finally:
            edge.set_delay(0)
        assert victim in first, "the restarted proxy never fetched the key set"
        # Stay past the earliest refresh, so a second start-up fetch would show.
        time.sleep(max(0.0, first[victim] + REFRESH_MIN_S - time.time()) + 0.3)
    results = load.stop()

    fetched = first[victim]  # when the IdP sent the key set
    # Fetches once on start-up: nothing else until the first refresh.
    assert edge.fetches(victim, starting, fetched + REFRESH_MIN_S) == [fetched]
    down = [r for r in _by(results, target=victim) if killed < r.sent < starting]
    assert down and {r.status for r in down} == {0}, f"answers from a killed proxy: {_statuses(down)}"
    restarted = [r for r in _by(results, target=victim) if r.sent >= starting]
    # Until it listens: transport errors; then 200s only: requests that came before the key
    # set waited for it, and not one was answered 2xx before it arrived.
    assert {r.status for r in restarted} <= {0, 200}, _statuses(restarted)
    early = [round(fetched - r.done, 3) for r in restarted if r.status == 200 and r.done <= fetched]
    assert early == [], f"2xx answered this many seconds before the key set arrived: {early}"
    waited = [r for r in restarted if r.status == 200 and r.sent < fetched]
    assert waited, "no request reached the restarted proxy before its key set"
    assert dockerlib.envoy_stats(edge.admin[victim], "paused")["wasmcustom.jwt_edge.paused"] >= len(waited)
    others = [r for r in results if r.target != victim]
    assert _statuses(others) == {200: len(others)}, _odd(others)
