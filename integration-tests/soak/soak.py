#!/usr/bin/env python3
"""Soak: jwt-edge in Envoy under steady mixed load while the IdP rotates keys and goes down.

    make soak                                  # 120 s, 250 req/s, Envoy --concurrency 2
    make soak SOAK_SECONDS=600 SOAK_RATE=300
    .venv/bin/python integration-tests/soak/soak.py --help

Everything runs on 127.0.0.1: the test IdP (harness.idp), two keep-alive echo backends, and
Envoy (`--concurrency N`) with jwt-edge: one provider, remote JWKS with `cache_duration` 10 s,
a verified-token cache of 256 entries. A load generator (threads, one keep-alive
http.client connection each, paced to a fixed total rate, bounded in time and count) sends:

    valid    50 %  signed by the current minting key (80 %) or the previous one (20 %)
    invalid  35 %  forged (attacker key, real kid), expired, tampered payload, alg none,
                   unknown kid (attacker key, a kid the IdP never publishes)
    missing  15 %  no Authorization header

Timeline (t = 0 once a first valid token passes):
- every ROTATE_EVERY_S the IdP publishes a new key (fixture key material under a new kid,
  cycling RSA, P-256, P-384, Ed25519) and drops the oldest of the three it keeps; the load
  generator starts minting with the new key PUBLISH_LEAD_S later (longer than
  `cache_duration`, so the filter has had a scheduled refresh to learn it). Rotations whose
  publish..mint interval would overlap the IdP outage are skipped: a key nobody can fetch is
  not published.
- the IdP is down (listener closed) for DOWN_S in the middle of the run.

Checks (exit status 1 if any fails, everything printed either way):
- no valid token refused: every valid request got 200 (its key was published for at least
  PUBLISH_LEAD_S when it was sent);
- no invalid or missing-token request got 200;
- no 5xx and no transport error (reset, timeout) at all;
- Envoy's RSS (VmRSS from /proc/<pid>/status, sampled every RSS_EVERY_S) is flat: the median
  of the last quarter of samples is within max(+10 %, +8 MiB) of the median of the second
  quarter (the first quarter is warm-up: V8 tiers code up, caches fill);
- Envoy is still running, its Wasm VMs never failed or reloaded (admin /stats), and a valid
  token still gets 200 at the end.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import client  # noqa: E402
from harness import config as envoy_config  # noqa: E402
from harness import envoy as envoy_harness  # noqa: E402
from harness.idp import Idp  # noqa: E402
from harness.keys import Key, load_all  # noqa: E402
from harness.server import LoopbackServer  # noqa: E402
from harness.tokens import EXP_EXPIRED, claims, mint, segments  # noqa: E402

ISS = "https://idp.test/"
CACHE_DURATION_S = 10
ROTATE_EVERY_S = 20
PUBLISH_LEAD_S = 12  # > CACHE_DURATION_S
DOWN_S = 15
RSS_EVERY_S = 2.0
RSS_GROWTH_RATIO = 1.10
RSS_GROWTH_BYTES = 8 * 1024 * 1024
VALID_POOL = 300  # distinct valid tokens per key (more than the 256-entry token cache)
INVALID_POOL = 40
REQUEST_TIMEOUT_S = 10
WARMUP_DEADLINE_S = 30
# Rotation cycles through the fixture key material under fresh kids.
ROTATION_MATERIAL = ["rsa-1", "ec-p256", "ec-p384", "ed-1", "rsa-2"]
INVALID_KINDS = ["forged", "expired", "tampered", "alg-none", "unknown-kid"]


# ---------------------------------------------------------------------------------------
# Keep-alive echo backend
# ---------------------------------------------------------------------------------------
class _KeepAliveHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # Envoy pools upstream connections

    def do_GET(self):  # noqa: N802
        owner: SoakBackend = self.server.owner  # type: ignore[attr-defined]
        with owner.lock:
            owner.count += 1
        body = b'{"ok":true}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # noqa: A002
        pass


class SoakBackend(LoopbackServer):
    def __init__(self):
        super().__init__(_KeepAliveHandler)
        self.count = 0


# ---------------------------------------------------------------------------------------
# Keys and token pools
# ---------------------------------------------------------------------------------------
def rotation_key(index: int, material: dict[str, Key]) -> Key:
    base = material[ROTATION_MATERIAL[index % len(ROTATION_MATERIAL)]]
    return Key(f"soak-{index}-{base.kind}", base.kind, base.private)


@dataclass
class Pools:
    """Tokens the load generator draws from; replaced as a whole on each mint switch."""
    current: list[str]
    previous: list[str]
    invalid: dict[str, list[str]]
    label: str


def valid_tokens(key: Key, n: int) -> list[str]:
    return [mint(key, claims(sub=f"user-{i}", jti=f"{key.kid}-{i}")) for i in range(n)]


def invalid_tokens(key: Key, evil: Key, n: int) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    out["forged"] = [mint(Key(key.kid, "rsa", evil.private), claims(sub=f"admin-{i}")) for i in range(n)]
    out["expired"] = [mint(key, claims(sub=f"old-{i}", exp=EXP_EXPIRED)) for i in range(n)]
    tampered = []
    for i in range(n):
        h, _, s = segments(mint(key, claims(sub=f"user-{i}")))
        _, p, _ = segments(mint(key, claims(sub="admin")))
        tampered.append(f"{h}.{p}.{s}")
    out["tampered"] = tampered
    out["alg-none"] = [mint(None, claims(sub=f"admin-{i}"), alg="none", header={"alg": "none", "kid": key.kid},
                            signature_b64="AA") for i in range(n)]
    # A handful of ghost kids: enough to keep the filter's unknown-kid refetch limiter busy.
    out["unknown-kid"] = [mint(Key(f"ghost-{i % 4}", "rsa", evil.private), claims(sub=f"admin-{i}")) for i in range(n)]
    return out


# ---------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------
@dataclass
class Results:
    lock: threading.Lock = field(default_factory=threading.Lock)
    by_class: dict[str, dict[str, int]] = field(default_factory=dict)  # class -> outcome -> n
    latencies: list[float] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    refused_valid: list[tuple[float, str, int, str]] = field(default_factory=list)
    accepted_invalid: list[tuple[float, str]] = field(default_factory=list)
    server_errors: list[tuple[float, str, int, str]] = field(default_factory=list)
    transport_errors: list[tuple[float, str, str]] = field(default_factory=list)
    total: int = 0

    def record(self, t: float, cls: str, kind: str, status: int | None, code: str, latency: float,
               error: str | None = None) -> None:
        with self.lock:
            self.total += 1
            outcome = f"{status} {code}".strip() if status is not None else "transport-error"
            self.by_class.setdefault(cls, {}).setdefault(outcome, 0)
            self.by_class[cls][outcome] += 1
            if status is not None:
                self.latencies.append(latency)
            if status is None:
                self.transport_errors.append((t, kind, error or ""))
            elif status >= 500:
                self.server_errors.append((t, kind, status, code))
            elif cls == "valid" and status != 200:
                self.refused_valid.append((t, kind, status, code))
            elif cls != "valid" and status == 200:
                self.accepted_invalid.append((t, kind))


# ---------------------------------------------------------------------------------------
# Load generator
# ---------------------------------------------------------------------------------------
class LoadGen:
    def __init__(self, port: int, rate: float, workers: int, seconds: float, results: Results,
                 pools_ref: list[Pools], t0: float):
        self.port = port
        self.per_worker_interval = workers / rate
        self.workers = workers
        self.deadline = t0 + seconds
        self.max_per_worker = int(rate * seconds * 1.05 / workers) + 1
        self.results = results
        self.pools_ref = pools_ref
        self.t0 = t0
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        for w in range(self.workers):
            t = threading.Thread(target=self._run, args=(w,), name=f"load-{w}", daemon=True)
            t.start()
            self.threads.append(t)

    def join(self) -> None:
        for t in self.threads:
            t.join(timeout=REQUEST_TIMEOUT_S * 3)

    def _pick(self, rng: random.Random) -> tuple[str, str, str | None]:
        pools = self.pools_ref[0]
        x = rng.random()
        if x < 0.50:
            if pools.previous and rng.random() < 0.2:
                return "valid", "valid-previous-key", rng.choice(pools.previous)
            return "valid", "valid-current-key", rng.choice(pools.current)
        if x < 0.85:
            kind = rng.choice(INVALID_KINDS)
            return "invalid", kind, rng.choice(pools.invalid[kind])
        return "missing", "missing", None

    def _run(self, worker: int) -> None:
        rng = random.Random(1000 + worker)
        conn: http.client.HTTPConnection | None = None
        next_at = time.monotonic() + rng.random() * self.per_worker_interval
        for _ in range(self.max_per_worker):
            now = time.monotonic()
            if now >= self.deadline:
                break
            if next_at > now:
                time.sleep(next_at - now)
            next_at += self.per_worker_interval
            cls, kind, token = self._pick(rng)
            headers = {"authorization": f"Bearer {token}"} if token else {}
            started = time.monotonic()
            t = started - self.t0
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=REQUEST_TIMEOUT_S)
                conn.request("GET", f"/soak/{kind}", headers=headers)
                resp = conn.getresponse()
                body = resp.read()
                code = ""
                if resp.status != 200 and body.startswith(b"{"):
                    try:
                        code = json.loads(body).get("error", "")
                    except ValueError:
                        code = "?"
                if resp.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = None
                self.results.record(t, cls, kind, resp.status, code, time.monotonic() - started)
            except (OSError, http.client.HTTPException) as e:
                self.results.record(t, cls, kind, None, "", 0.0, f"{type(e).__name__}: {e}")
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()


# ---------------------------------------------------------------------------------------
# RSS sampling
# ---------------------------------------------------------------------------------------
def vm_rss_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class RssSampler(threading.Thread):
    def __init__(self, pid: int, t0: float, stop: threading.Event):
        super().__init__(name="rss", daemon=True)
        self.pid, self.t0, self.stop_event = pid, t0, stop
        self.samples: list[tuple[float, int]] = []

    def run(self) -> None:
        while not self.stop_event.is_set():
            rss = vm_rss_bytes(self.pid)
            if rss is not None:
                self.samples.append((time.monotonic() - self.t0, rss))
            self.stop_event.wait(RSS_EVERY_S)


def mib(n: float) -> str:
    return f"{n / 1024 / 1024:.1f} MiB"


# ---------------------------------------------------------------------------------------
# Envoy
# ---------------------------------------------------------------------------------------
def filter_config(idp: Idp) -> dict:
    return {
        "providers": {"idp": {
            "issuer": ISS,
            "audiences": ["api"],
            "remote_jwks": {"http_uri": {"uri": idp.jwks_uri, "cluster": "idp", "timeout": "2s"},
                            "cache_duration": f"{CACHE_DURATION_S}s"},
            "jwt_cache_config": {"jwt_cache_size": 256},
        }},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "idp"}}],
    }


def envoy_yaml(idp: Idp, backends: list[SoakBackend], wasm: Path) -> str:
    route = envoy_config.route("default", "/")
    return envoy_harness.render(
        [route],
        [envoy_config.wasm_filter(filter_config(idp), wasm), envoy_config.router_filter()],
        [envoy_config.static_cluster("backend", [("127.0.0.1", b.port) for b in backends]),
         envoy_config.static_cluster("idp", [("127.0.0.1", idp.port)])],
    )


def wasm_failures(stats: dict) -> dict:
    return {k: v for k, v in stats.items()
            if k.startswith("wasm.") and any(m in k for m in ("fail", "reload", "crash")) and v}


# ---------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------
def plan(seconds: float) -> tuple[list[tuple[float, float, int]], tuple[float, float]]:
    """Rotations as (publish_at, mint_at, key index) and the outage (down_at, up_at)."""
    down_at = max(seconds * 0.5, 1.0)
    up_at = down_at + DOWN_S
    rotations = []
    index = 1
    t = ROTATE_EVERY_S / 2
    while t < seconds:
        mint_at = t + PUBLISH_LEAD_S
        # Skip a rotation whose key could not be fetched between publish and first use.
        if not (t < up_at + 2 and mint_at > down_at - 2):
            rotations.append((t, mint_at, index))
            index += 1
        t += ROTATE_EVERY_S
    return rotations, (down_at, up_at)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", 120)))
    ap.add_argument("--rate", type=float, default=float(os.environ.get("SOAK_RATE", 250)),
                    help="total requests per second (default 250)")
    ap.add_argument("--workers", type=int, default=8, help="load threads / keep-alive connections")
    ap.add_argument("--concurrency", type=int, default=int(os.environ.get("SOAK_CONCURRENCY", 2)),
                    help="Envoy --concurrency (default 2)")
    ap.add_argument("--wasm", type=Path, default=Path(os.environ.get("JWT_EDGE_WASM", envoy_config.WASM_PATH)))
    args = ap.parse_args()
    if args.seconds < 20 or args.rate <= 0 or args.rate > 2000 or args.workers < 1:
        ap.error("need --seconds >= 20, 0 < --rate <= 2000, --workers >= 1")
    if not args.wasm.is_file():
        ap.error(f"{args.wasm} does not exist: run `make build`")

    material = load_all()
    evil = material["rsa-evil"]
    keys = {0: rotation_key(0, material)}
    rotations, (down_at, up_at) = plan(args.seconds)
    for _, _, index in rotations:
        keys[index] = rotation_key(index, material)

    print(f"soak: {args.seconds:.0f} s, {args.rate:.0f} req/s over {args.workers} connections, "
          f"Envoy --concurrency {args.concurrency}, wasm {args.wasm}")
    print(f"soak: cache_duration {CACHE_DURATION_S} s, publish lead {PUBLISH_LEAD_S} s, IdP down "
          f"{down_at:.0f}-{up_at:.0f} s, rotations (publish/mint/kid): "
          + ", ".join(f"{p:.0f}/{m:.0f}/{keys[i].kid}" for p, m, i in rotations))

    idp = Idp([keys[0]]).start()
    backends = [SoakBackend().start(), SoakBackend().start()]
    workdir = Path(tempfile.mkdtemp(prefix="jwt-edge-soak-"))
    envoy = envoy_harness.EnvoyProcess(envoy_yaml(idp, backends, args.wasm.resolve()), workdir,
                                       concurrency=args.concurrency)
    results = Results()
    events: list[str] = []
    stop = threading.Event()
    sampler: RssSampler | None = None
    try:
        envoy.start()
        pools_ref = [Pools(valid_tokens(keys[0], VALID_POOL), [],
                           invalid_tokens(keys[0], evil, INVALID_POOL), keys[0].kid)]
        probe = pools_ref[0].current[0]
        deadline = time.monotonic() + WARMUP_DEADLINE_S
        while client.request(envoy.url("/"), headers={"authorization": f"Bearer {probe}"}).status != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("the first key set never loaded")
            time.sleep(0.2)

        t0 = time.monotonic()
        sampler = RssSampler(envoy.proc.pid, t0, stop)
        sampler.start()
        load = LoadGen(envoy.listener_port, args.rate, args.workers, args.seconds, results, pools_ref, t0)
        load.start()

        published: list[Key] = [keys[0]]
        # Orchestrator: a sorted list of timed actions.
        actions: list[tuple[float, str, int]] = [(down_at, "down", -1), (up_at, "up", -1)]
        for p, m, i in rotations:
            actions += [(p, "publish", i), (m, "mint", i)]
        actions.sort()
        next_pools: dict[int, Pools] = {}
        minting = 0
        for at, what, index in actions:
            if at >= args.seconds:
                break
            if what == "publish":
                # Mint the new key's pools before publishing (CPU spent off the clock).
                next_pools[index] = Pools(valid_tokens(keys[index], VALID_POOL), [],
                                          invalid_tokens(keys[index], evil, INVALID_POOL), keys[index].kid)
            delay = t0 + at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            now = time.monotonic() - t0
            if what == "down":
                idp.set_mode("down")
            elif what == "up":
                idp.set_mode("normal")
            elif what == "publish":
                published = (published + [keys[index]])[-3:]
                idp.set_keys(published)
            elif what == "mint":
                pools = next_pools.pop(index)
                pools.previous = pools_ref[0].current
                pools_ref[0] = pools
                minting = index
            events.append(f"{now:6.1f} s  {what:7s} {keys[index].kid if index >= 0 else ''}"
                          f"{'  (published: ' + ', '.join(k.kid for k in published) + ')' if what == 'publish' else ''}")
            print(f"soak: {events[-1]}", flush=True)
        load.join()
        elapsed = time.monotonic() - t0
        stop.set()
        sampler.join(timeout=5)

        # -- after-checks -----------------------------------------------------------------
        alive = envoy.alive
        stats = envoy.stats() if alive else {}
        failures = wasm_failures(stats)
        final_ok = alive and client.request(
            envoy.url("/"), headers={"authorization": f"Bearer {pools_ref[0].current[1]}"}).status == 200
        log = envoy.log_text()
        panics = [line for line in log.splitlines() if "panicked at" in line or "[critical]" in line][:5]
    finally:
        stop.set()
        envoy.stop()
        idp.stop()
        for b in backends:
            b.stop()

    # -- report -----------------------------------------------------------------------------
    ok = True

    def verdict(name: str, passed: bool, detail: str) -> None:
        nonlocal ok
        ok &= passed
        print(f"  [{'PASS' if passed else 'FAIL'}] {name}: {detail}")

    print(f"\nsoak: {results.total} requests in {elapsed:.1f} s ({results.total / elapsed:.0f} req/s); "
          f"last minting key {keys[minting].kid}; IdP fetches {idp.count()}")
    for cls in ("valid", "invalid", "missing"):
        outcomes = results.by_class.get(cls, {})
        print(f"  {cls:8s} {sum(outcomes.values()):7d}  " + ", ".join(f"{k}: {v}" for k, v in sorted(outcomes.items())))
    if results.latencies:
        lat = sorted(results.latencies)
        print(f"  latency ms: p50 {lat[len(lat) // 2] * 1000:.1f}, p99 {lat[int(len(lat) * 0.99)] * 1000:.1f}, "
              f"max {lat[-1] * 1000:.1f}")
    valid_n = sum(results.by_class.get("valid", {}).values())
    invalid_n = sum(results.by_class.get("invalid", {}).values()) + sum(results.by_class.get("missing", {}).values())
    verdict("valid tokens refused", not results.refused_valid,
            f"{len(results.refused_valid)} of {valid_n}" + (f"; first: {results.refused_valid[:5]}" if results.refused_valid else ""))
    verdict("invalid or missing accepted", not results.accepted_invalid,
            f"{len(results.accepted_invalid)} of {invalid_n}" + (f"; first: {results.accepted_invalid[:5]}" if results.accepted_invalid else ""))
    verdict("5xx responses", not results.server_errors,
            f"{len(results.server_errors)}" + (f"; first: {results.server_errors[:5]}" if results.server_errors else ""))
    verdict("transport errors", not results.transport_errors,
            f"{len(results.transport_errors)}" + (f"; first: {results.transport_errors[:5]}" if results.transport_errors else ""))
    verdict("load reached", results.total >= 0.8 * args.rate * args.seconds,
            f"{results.total} sent, {0.8 * args.rate * args.seconds:.0f} required (80 % of the target)")

    samples = sampler.samples if sampler else []
    if len(samples) >= 8:
        n = len(samples)
        q2 = statistics.median(r for _, r in samples[n // 4: n // 2])
        q4 = statistics.median(r for _, r in samples[3 * n // 4:])
        limit = max(q2 * RSS_GROWTH_RATIO, q2 + RSS_GROWTH_BYTES)
        print(f"  RSS: {n} samples every {RSS_EVERY_S:.0f} s; start {mib(samples[0][1])}, second-quarter median "
              f"{mib(q2)}, last-quarter median {mib(q4)}, end {mib(samples[-1][1])}, max "
              f"{mib(max(r for _, r in samples))}")
        verdict("RSS flat", q4 <= limit,
                f"last-quarter median {mib(q4)} <= max(second-quarter median x {RSS_GROWTH_RATIO:.2f}, "
                f"+ {mib(RSS_GROWTH_BYTES)}) = {mib(limit)}")
    else:
        verdict("RSS flat", False, f"only {len(samples)} RSS samples")
    verdict("Envoy alive, Wasm VMs never failed", alive and not failures and not panics,
            f"alive={alive}, wasm failure counters {failures or 'none'}, log panics/criticals {panics or 'none'}")
    verdict("valid token accepted at the end", final_ok, "200" if final_ok else "refused")
    print("\nsoak: timeline\n  " + "\n  ".join(events))
    if ok:
        shutil.rmtree(workdir, ignore_errors=True)
        print("\nsoak: PASS")
    else:
        print(f"\nsoak: FAIL (Envoy config and log kept in {workdir})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
