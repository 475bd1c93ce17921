"""`make bench-instructions`: instructions per request in the whole Envoy process, counted by
valgrind's callgrind (issue #13). Unlike CPU time, an instruction count does not depend on
what else the machine is doing: the same build and requests give the same count to a few
parts per thousand, so the steps of the ladder can be told apart on a busy 2-core machine
where `make bench-ladder`'s ±2 µs per step cannot. It is not time: a cache or TLB miss costs
no instruction (that is what `make bench` and `make bench-ladder` measure); read both.

Envoy (`--concurrency 1`) runs under `valgrind --tool=callgrind --smc-check=all` (V8 writes
the code it compiles) with instrumentation off while it starts and compiles every module,
with one listener per variant (each its own filter, its own Wasm VM, in front of
`direct_response`), at most four Wasm VMs per process (valgrind's address space holds only
a few 8-GiB Wasm memory reservations), so the variants run in a few successive processes. Each variant first gets WARM requests uninstrumented (V8 tiers up, caches
fill), then, instrumentation on, WARM more, the counters are zeroed, N requests are sent on
one keep-alive connection and the counts are dumped. Every response must be 200.

Per variant it prints instructions per request, in all and by where they ran: Envoy's C++
(the symbolized part of the `envoy` binary: HTTP codec, router, the Wasm host functions,
BoringSSL for jwt_authn), tcmalloc (Envoy's allocator: the binary's `google_malloc`
section, which callgrind cannot name under valgrind's load address, so counted as the code
with no object below 4 GiB), the code V8 generated (anonymous executable memory above
4 GiB: the module's functions as TurboFan compiled them and V8's wrappers into and out of
Wasm), and libc. Then each variant over the lowest do-nothing floor and each step over the
one before it.

Variants: the cache-hit ladder of `make bench-ladder` (passthrough, noop, noop-min, the
micro module's rungs floor .. counters, micro:jwt-edge, jwt-edge, jwt_authn, and the side
rungs remove, set, add, get) with 16 repeated RS256 tokens and `jwt_cache_size` 100, then
jwt-edge and jwt_authn on distinct RS256, ES256, PS256, ES384 and EdDSA tokens with caches off
(the last three with a P-384 and an Ed25519 key added to the key set).

Environment: BENCH_INSTR_N (300 requests per variant), BENCH_INSTR_WARM (100),
BENCH_INSTR_VARIANTS (comma-separated subset, in order), BENCH_QUICK=1 (N 100, WARM 50),
BENCH_BASELINE_WASM (another jwt-edge module: the `baseline` variant, as in run_ladder.py),
BENCH_INSTR_CACHE=1 (simulated cache misses too: see CACHE below), BENCH_INSTR_ONCE (a
comma-separated list of the micro filter's `GET /once` lines, `alg/op`, e.g.
`RS256/none,RS256/spin,RS256/jwk,RS256/token,RS256/decide`: one operation per request, the
session 14 control, counted the same way in an Envoy of their own), BENCH_INSTR_VALGRIND_ARGS
(more callgrind options; the dumps stay in target/bench/instructions/).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Callable

import benchlib as bl
import run_bench as rb
import run_ladder as rl
from harness.keys import jwks

QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
N = int(os.environ.get("BENCH_INSTR_N", 100 if QUICK else 300))
WARM = int(os.environ.get("BENCH_INSTR_WARM", 50 if QUICK else 100))
# Starting Envoy under valgrind compiles every module at valgrind's pace.
READY_TIMEOUT_S = 1800.0
WASM_PER_ENVOY = 4

# Distinct-token workloads: (filter) (alg)-distinct, every request a token never seen. RS256 and
# ES256 use the throughput benchmark's key set (RSA + P-256); PS256 (the same RSA key), ES384
# and EdDSA one with a P-384 and an Ed25519 key added.
DISTINCT_ALGS = ("RS256", "ES256", "PS256", "ES384", "EdDSA")
DISTINCT = tuple(f"{f} {alg.lower()}-distinct" for alg in DISTINCT_ALGS for f in ("jwt-edge", "jwt_authn"))
VARIANTS = (*rl.LADDER, *DISTINCT)
if os.environ.get("BENCH_INSTR_VARIANTS"):
    VARIANTS = tuple(v for v in os.environ["BENCH_INSTR_VARIANTS"].split(",") if v)
STEP_FROM = {**rl.STEP_FROM, "jwt-edge": "micro:jwt-edge"}
KINDS = ("envoy C++", "tcmalloc", "V8 code", "libc", "other")
# BENCH_INSTR_CACHE=1: callgrind also simulates a cache like one core of the AMD EPYC machines
# this was measured on (32 KiB L1i and L1d, a 512 KiB 8-way L2 as the last level; no
# prefetching), and a second table counts, per request, the lines each kind of code missed in
# it: how much code and data a request runs through that the rest of the request had pushed
# out (or never had in). Not time either: a real core prefetches and overlaps some misses.
CACHE = os.environ.get("BENCH_INSTR_CACHE", "") not in ("", "0")
CACHE_ARGS = ("--cache-sim=yes", "--I1=32768,8,64", "--D1=32768,8,64", "--LL=524288,8,64")
# (event, column): instructions, then the simulated last-level misses: instruction fetches,
# data reads, data writes.
EVENTS = ("Ir", "ILmr", "DLmr", "DLmw") if CACHE else ("Ir",)


def groups(variants: tuple[str, ...]) -> list[list[str]]:
    """The variants split over Envoy processes of at most WASM_PER_ENVOY Wasm VMs each:
    every VM reserves its linear memory's 8 GiB or more of address space, and valgrind's
    client address space runs out after a handful (Envoy then fails to create the VM)."""
    out: list[list[str]] = [[]]
    wasm = 0
    for v in variants:
        is_wasm = not (v == "passthrough" or v.startswith("jwt_authn"))
        if is_wasm and wasm == WASM_PER_ENVOY:
            out.append([])
            wasm = 0
        out[-1].append(v)
        wasm += is_wasm
    return out


def filters(variant: str, jwks_text: str) -> list[dict]:
    if variant in DISTINCT:
        name = variant.split()[0]
        return rb.http_filters(name, jwks_text, None)
    return rl.filters(variant, jwks_text)


def kind(obj: str, fn: str) -> str:
    """Where a function of callgrind's profile ran (see the module docstring)."""
    if obj.endswith("/envoy"):
        return "envoy C++"
    if "libc.so" in obj or "libm.so" in obj:
        return "libc"
    if obj == "???" and fn.startswith("0x"):
        return "V8 code" if int(fn.split("'")[0], 16) >= 1 << 32 else "tcmalloc"
    return "other"


def by_kind(dump: Path, events: tuple[str, ...] = ("Ir",)) -> dict[str, dict[str, int]]:
    """Each of `events` in a callgrind dump, summed by `kind` (callgrind_annotate's flat list,
    every function: threshold 100 %)."""
    out = subprocess.run(["callgrind_annotate", "--threshold=100", f"--show={','.join(events)}",
                          str(dump)], capture_output=True, text=True, check=True).stdout
    totals = {e: dict.fromkeys(KINDS, 0) for e in events}
    count = r"(?:[\d,]+(?: \([ \d.]+%\))?|\.)"
    for line in out.splitlines():
        m = re.match(rf"^\s*((?:{count}\s+){{{len(events)}}})(.*?) \[(.*)\]\s*$", line)
        if not m or ":" not in m.group(2):
            continue
        where = kind(m.group(3), m.group(2).split(":", 1)[1])
        values = re.sub(r"\([ \d.]+%\)", "", m.group(1)).split()
        for event, value in zip(events, values):
            totals[event][where] += 0 if value == "." else int(value.replace(",", ""))
    return totals


def print_misses(rows: dict[str, dict]) -> None:
    """The second table of BENCH_INSTR_CACHE=1: simulated L2 misses per request by kind."""
    kinds = ("envoy C++", "tcmalloc", "V8 code", "libc")
    print("\n== simulated L2 misses per request (callgrind: 32 KiB L1i/L1d, 512 KiB 8-way L2 as "
          "the last level, no prefetching): code lines fetched (I) and data lines read and "
          "written (D)")
    head = f"{'variant':<26} | {'all':>6} | " + " | ".join(f"{k + ' I':>11} | {k + ' D':>11}"
                                                         for k in kinds)
    print(head)
    print("-" * len(head))
    for v, r in rows.items():
        m = r["misses"]
        code = {k: m["ILmr"][k] for k in KINDS}
        data = {k: m["DLmr"][k] + m["DLmw"][k] for k in KINDS}
        every = sum(code.values()) + sum(data.values())
        print(f"{v:<26} | {every:6.0f} | "
              + " | ".join(f"{code[k]:11.0f} | {data[k]:11.0f}" for k in kinds))


def once_lines(wrapper: tuple[str, ...], workdir: Path) -> dict[str, dict]:
    """BENCH_INSTR_ONCE: the micro filter's `/once` lines, counted like the variants."""
    lines = [tuple(line.split("/")) for line in os.environ["BENCH_INSTR_ONCE"].split(",") if line]
    config = bl.envoy_config([bl.plain_wasm_filter("jwt_edge_micro", bl.MICRO_WASM)])
    out = {}
    with bl.Envoy(config, workdir, concurrency=1, cpus="0,1", wrapper=wrapper,
                  ready_timeout_s=READY_TIMEOUT_S) as envoy:
        port = envoy.port
        pid = envoy.proc.pid

        def send_once(path: str, count: int) -> None:
            get(port, count, lambda _: (path, {}))

        for alg, op in lines:  # the first request loads an algorithm's fixtures
            send_once(f"/once?alg={alg}&op={op}", WARM)
        callgrind_control(pid, "--instr=on")
        for alg, op in lines:
            path = f"/once?alg={alg}&op={op}"
            send_once(path, WARM)
            out[f"once {alg}/{op}"] = counted(pid, workdir, f"once {alg}/{op}",
                                              lambda: send_once(path, N))
        callgrind_control(pid, "--instr=off")
    return out


def counted(pid: int, workdir: Path, label: str, requests: Callable[[], None]) -> dict:
    """Callgrind's counts while `requests` sends its N requests, per request: by kind, in all
    (`total`) and, with BENCH_INSTR_CACHE, the simulated misses (`misses`)."""
    callgrind_control(pid, "--zero")
    requests()
    dump_name = re.sub(r"[^\w-]", "_", label)
    callgrind_control(pid, f"--dump={dump_name}")
    dump = max(workdir.glob(f"callgrind.out.{pid}.*"), key=lambda p: p.stat().st_mtime)
    events = by_kind(dump, EVENTS)
    row: dict = {k: c / N for k, c in events["Ir"].items()}
    row["total"] = sum(events["Ir"].values()) / N
    if CACHE:
        row["misses"] = {e: {k: c / N for k, c in events[e].items()} for e in EVENTS[1:]}
    print(f"  {label:<26} {row['total']:10.0f} instructions/request", flush=True)
    return row


def callgrind_control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True,
                   timeout=600)


def get(port: int, count: int, request: Callable[[int], tuple[str, dict[str, str]]]) -> None:
    """`count` GETs on one keep-alive connection, the i-th to the path and with the headers
    `request(i)` gives; every answer must be 200."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        for i in range(count):
            path, headers = request(i)
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                raise RuntimeError(f"port {port}, {path}: {resp.status} {body[:200]!r}")
    finally:
        conn.close()


def send(port: int, tokens: list[str], count: int, start: int) -> None:
    """`count` requests cycling through `tokens` from `start`."""
    get(port, count, lambda i: ("/", {"authorization": f"Bearer {tokens[(start + i) % len(tokens)]}",
                                      "user-agent": "bench-instructions"}))


def main() -> None:
    started = time.time()
    modules = rb.snapshot_modules()
    rl.snapshot_baseline(modules)
    keys = rb.load_keys(extra=True)
    jwks_text = json.dumps(jwks([keys[k] for k in rb.KEYS]), separators=(",", ":"))
    jwks_extra = json.dumps(jwks(list(keys.values())), separators=(",", ":"))
    # Distinct workloads: every request of a variant carries a token it has not seen.
    per_variant = 2 * WARM + N
    pools = {}
    for alg in DISTINCT_ALGS:
        if any(v.endswith(f" {alg.lower()}-distinct") for v in VARIANTS) or alg == "RS256":
            rb.ensure_pool(keys, alg, per_variant)
            pools[alg] = rb.pool_file(alg).read_text().split()[:per_variant]
    repeated = pools["RS256"][:rb.REPEATED_TOKENS]

    def alg_of(variant: str) -> str | None:
        return next((a for a in DISTINCT_ALGS if variant.endswith(f" {a.lower()}-distinct")), None)

    def tokens_of(variant: str) -> list[str]:
        alg = alg_of(variant)
        return pools[alg] if alg else repeated

    def jwks_of(variant: str) -> str:
        return jwks_text if alg_of(variant) in (None, "RS256", "ES256") else jwks_extra

    workdir = bl.WORK / "instructions"
    workdir.mkdir(parents=True, exist_ok=True)
    for old in workdir.glob("callgrind.out*"):
        old.unlink()
    wrapper = ("valgrind", "--tool=callgrind", "--smc-check=all", "--instr-atstart=no",
               *(CACHE_ARGS if CACHE else ()),
               *os.environ.get("BENCH_INSTR_VALGRIND_ARGS", "").split(),
               f"--callgrind-out-file={workdir}/callgrind.out.%p")
    rows = {}
    for group in groups(VARIANTS):
        config = bl.envoy_config_multi({v: filters(v, jwks_of(v)) for v in group})
        t0 = time.monotonic()
        with bl.Envoy(config, workdir, concurrency=1, cpus="0,1", wrapper=wrapper,
                      ready_timeout_s=READY_TIMEOUT_S) as envoy:
            print(f"  Envoy under callgrind with {len(group)} listeners: ready after "
                  f"{time.monotonic() - t0:.0f} s", flush=True)
            pid = envoy.proc.pid
            for v in group:  # uninstrumented warm-up: V8 tiers up, caches fill
                send(envoy.ports[v], tokens_of(v), WARM, 0)
            callgrind_control(pid, "--instr=on")
            for v in group:
                tokens = tokens_of(v)
                send(envoy.ports[v], tokens, WARM, WARM)
                rows[v] = counted(pid, workdir, v,
                                  lambda: send(envoy.ports[v], tokens, N, 2 * WARM))
            callgrind_control(pid, "--instr=off")

    floors = [rows[f]["total"] for f in rb.FLOORS if f in rows]
    floor = min(floors) if floors else None
    print(f"\n== make bench-instructions: Envoy {bl.envoy_version()}, --concurrency 1, under "
          f"callgrind; {N} requests per variant on one keep-alive connection after {2 * WARM} "
          f"warm-up; instructions per request (thousands)")
    head = (f"{'variant':<26} | {'total':>7} | " + " | ".join(f"{k:>9}" for k in KINDS)
            + f" | {'over floor':>10} | {'step':>7} | step from")
    print(head)
    print("-" * len(head))
    for v, r in rows.items():
        base = STEP_FROM.get(v)
        step = r["total"] - rows[base]["total"] if base in rows else None
        over = r["total"] - floor if floor is not None else None
        r["over_floor"], r["step"], r["step_from"] = over, step, base if step is not None else None
        print(f"{v:<26} | {r['total'] / 1000:7.1f} | "
              + " | ".join(f"{r[k] / 1000:9.1f}" for k in KINDS)
              + f" | {'' if over is None else f'{over / 1000:+10.1f}':>10}"
              + f" | {'' if step is None else f'{step / 1000:+7.1f}':>7} | {r['step_from'] or ''}")
    if os.environ.get("BENCH_INSTR_ONCE"):
        once = once_lines(wrapper, workdir)
        print("\n== the micro filter's GET /once lines: instructions per request (thousands)")
        for name, r in once.items():
            print(f"{name:<26} | {r['total'] / 1000:7.1f} | "
                  + " | ".join(f"{r[k] / 1000:9.1f}" for k in KINDS))
        rows.update(once)
    if CACHE:
        print_misses(rows)
    bl.RESULTS.mkdir(exist_ok=True)
    dest = bl.RESULTS / "instructions-latest.json"
    dest.write_text(json.dumps({
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "envoy": bl.envoy_version(), "n": N, "warm": WARM, "modules": modules,
        "git": bl.git_state(), "rows": rows}, indent=1) + "\n")
    print(f"\nwritten: {dest.relative_to(bl.REPO)} ({round(time.time() - started)} s)")


if __name__ == "__main__":
    main()
