"""`make bench-memory`: where Envoy's RSS goes, per process, with one worker (issue #13).

For each variant a fresh Envoy (`--concurrency 1`) is started, left idle for a moment, sent a
few requests with valid RS256 tokens, and read:
- VmRSS (/proc/<pid>/status);
- Envoy's allocator (admin `/memory`, tcmalloc): bytes in use by the process's C++ heap
  (`allocated`), the heap's size, and what tcmalloc holds free without returning it to the OS
  (`pageheap_free`, thread caches): the allocator's high-water mark;
- /proc/<pid>/smaps summed by kind: file-backed mappings (Envoy's binary, libraries),
  executable anonymous mappings (V8's compiled code: Wasm compiled by TurboFan), the Wasm
  linear memories (V8 reserves each 32-bit memory as one mapping of >= 4 GiB; only touched
  pages are resident), and the rest of anonymous memory (C++ heap, V8 heap, thread stacks).

Variants: passthrough; noop and noop-min (the do-nothing filter, 110 KB and 81 KB);
`floor-rsa` (the ~1 MiB micro module, jwt-edge's code linked in, doing nothing per request,
configured with an RSA-only key set: the cost of the module's size and compilation); jwt-edge
with an RSA-only key set; jwt-edge with the bench's RSA + P-256 key set (per-VM P-256 tables).

Environment: BENCH_MEMORY_REPEAT (3: rounds, medians); BENCH_MEMORY_BASELINE_WASM (other builds
of jwt-edge, comma-separated, e.g. an earlier commit's: each measured as a variant `baseline`
(`baseline-1`, `baseline-2`, ... for several) with jwt-edge's key set and printed against
jwt-edge: a module change's effect within one run); BENCH_MEMORY_CPUS (4,16: noop and jwt-edge again
with Envoy seeing that many processors, `noop@16`, `jwt-edge@16`; empty for none).

Why the processor count: V8 compiles the module when the VM starts, on the main thread and on
its platform's worker threads, one fewer than sysconf(_SC_NPROCESSORS_ONLN) reports, at most 16.
Each compile thread allocates TurboFan's zones, and Envoy's tcmalloc keeps what they free (in
its page heap and in each thread's cache). The bench machine has 2 cores, so 1 worker thread; a
production node has more, and sysconf reports the node's processors whatever a container's CPU
limit. bench/cpus/cpus.c (LD_PRELOAD, path in BENCH_CPUS_SHIM, built by `make bench-memory`)
makes sysconf report BENCH_CPUS processors to Envoy and nothing else: the threads still share
the two pinned cores, so the figures are the memory of that many compile threads, not a
faster machine's timing.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import benchlib as bl
import run_bench as rb
from harness.keys import jwks

REPEAT = int(os.environ.get("BENCH_MEMORY_REPEAT", 3))
BASELINES = [p for p in os.environ.get("BENCH_MEMORY_BASELINE_WASM", "").split(",") if p]


def processor_counts(text: str) -> list[int]:
    """BENCH_MEMORY_CPUS: counts above 0, comma-separated; empty for none."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not all(p.isascii() and p.isdigit() and int(p) > 0 for p in parts):
        raise SystemExit(f"BENCH_MEMORY_CPUS={text!r}: want processor counts above 0, "
                         "comma-separated (e.g. 4,16), or empty for none")
    return [int(p) for p in parts]


CPUS = processor_counts(os.environ.get("BENCH_MEMORY_CPUS", "4,16"))
MiB = 1024 * 1024


def smaps_by_kind(pid: int) -> dict[str, float]:
    """Resident MiB by kind of mapping (see the module docstring)."""
    kinds = {"file": 0, "anon_exec": 0, "wasm_memory": 0, "anon_other": 0}
    cur = None
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ (\d+)\s*(.*)$", line)
        if m:
            size = int(m.group(2), 16) - int(m.group(1), 16)
            perms, inode, path = m.group(3), int(m.group(4)), m.group(5)
            if inode != 0:
                cur = "file"
            elif "x" in perms:
                cur = "anon_exec"
            elif size >= 4 * 1024 ** 3:
                cur = "wasm_memory"
            else:
                cur = "anon_other"
            continue
        if line.startswith("Rss:") and cur:
            kinds[cur] += int(line.split()[1]) * 1024
    return {k: v / MiB for k, v in kinds.items()}


def allocator(envoy: bl.Envoy) -> dict[str, float]:
    """Envoy's admin /memory (tcmalloc), MiB."""
    m = envoy.admin("/memory").json()
    return {k: int(v) / MiB for k, v in m.items() if str(v).isdigit()}


# Envoy's bootstrap `memory_allocator_manager`: tcmalloc returns up to this many free bytes to
# the OS every second (Envoy's default is to return nothing).
RELEASE = {"memory_allocator_manager": {"bytes_to_release": 64 * MiB, "memory_release_interval": "1s"}}


def cpus_wrapper(cpus: int) -> tuple[str, ...]:
    """The command Envoy runs under to see `cpus` processors (module docstring)."""
    shim = os.environ.get("BENCH_CPUS_SHIM", "")
    if not shim or not Path(shim).is_file():
        raise SystemExit(f"BENCH_MEMORY_CPUS needs the shim built by `make bench-memory` "
                         f"(BENCH_CPUS_SHIM={shim!r} is not a file); or set BENCH_MEMORY_CPUS=")
    return ("env", f"LD_PRELOAD={shim}", f"BENCH_CPUS={cpus}")


@dataclass
class Variant:
    filters: list[dict]
    bootstrap: dict = field(default_factory=dict)  # merged into Envoy's bootstrap
    cpus: int | None = None  # processors Envoy sees (cpus_wrapper), or the machine's


def one(name: str, v: Variant, tokens: list[str]) -> dict:
    wrapper = cpus_wrapper(v.cpus) if v.cpus else ()
    config = {**bl.envoy_config(v.filters), **v.bootstrap}
    with bl.Envoy(config, bl.WORK / "memory" / name, concurrency=1, cpus="0,1",
                  wrapper=wrapper) as envoy:
        time.sleep(1.0)
        for tok in tokens:
            r = bl.client.request(envoy.url("/"), headers=bl.client.bearer(tok))
            if r.status != 200:
                raise RuntimeError(f"{name}: {r.status} {r.body[:200]!r}")
        time.sleep(3.0 if v.bootstrap else 1.0)
        return {"rss": envoy.rss_mib(), **smaps_by_kind(envoy.proc.pid),
                **{f"alloc_{k}": v for k, v in allocator(envoy).items()}}


def main() -> None:
    modules = rb.snapshot_modules()
    keys = rb.load_keys()
    both = json.dumps(jwks(list(keys.values())), separators=(",", ":"))
    rsa_only = json.dumps(jwks([keys["rsa"]]), separators=(",", ":"))
    rb.ensure_pool(keys, "RS256", 8)
    tokens = rb.pool_file("RS256").read_text().split()[:8]
    noop = rb.http_filters("noop", both, None)
    jwt_edge = [bl.jwt_edge_filter(rb.filter_json(both, None), rb.MODULES["jwt_edge"])]
    variants = {
        "passthrough": Variant([]),
        "noop": Variant(noop),
        "noop-min": Variant(rb.http_filters("noop-min", both, None)),
        "floor-rsa": Variant([bl.plain_wasm_filter("ladder", rb.MODULES["micro"],
                                                   json.dumps(rb.filter_json(rsa_only, None)),
                                                   {"JWT_EDGE_BENCH": "ladder:floor"})]),
        "jwt-edge-rsa": Variant([bl.jwt_edge_filter(rb.filter_json(rsa_only, None),
                                                    rb.MODULES["jwt_edge"])]),
        "jwt-edge": Variant(jwt_edge),
        # The same, with Envoy told to hand free heap back to the OS (RELEASE above).
        "noop+release": Variant(noop, RELEASE),
        "jwt-edge+release": Variant(jwt_edge, RELEASE),
    }
    for n in CPUS:
        variants[f"noop@{n}"] = Variant(noop, cpus=n)
        variants[f"jwt-edge@{n}"] = Variant(jwt_edge, cpus=n)
    baselines = {("baseline" if len(BASELINES) == 1 else f"baseline-{i + 1}"): Path(p)
                 for i, p in enumerate(BASELINES)}
    for name, path in baselines.items():
        variants[name] = Variant([bl.jwt_edge_filter(rb.filter_json(both, None), path)])
        print(f"{name}: {path} ({path.stat().st_size} bytes)", flush=True)
    print(f"uptime: {os.popen('uptime').read().strip()}", flush=True)
    rows: dict[str, list[dict]] = {v: [] for v in variants}
    for rnd in range(REPEAT):
        for name, variant in variants.items():
            r = one(name, variant, tokens)
            rows[name].append(r)
            print(f"  round {rnd + 1}/{REPEAT} {name:<17} RSS {r['rss']:6.1f} MiB", flush=True)
    med = {v: {k: bl.median([r[k] for r in rs]) for k in rs[0]} for v, rs in rows.items()}
    cols = ["rss", "file", "anon_exec", "wasm_memory", "anon_other", "alloc_allocated",
            "alloc_heap_size", "alloc_pageheap_free", "alloc_total_thread_cache",
            "alloc_pageheap_unmapped"]
    cols = [c for c in cols if c in med["passthrough"]]
    print(f"\n== make bench-memory: Envoy {bl.envoy_version()} --concurrency 1, MiB, medians of "
          f"{REPEAT}; columns: VmRSS, then RSS by mapping kind, then tcmalloc (admin /memory)")
    print(f"{'variant':<29} | " + " | ".join(f"{c.replace('alloc_', ''):>12}" for c in cols))
    for v, m in med.items():
        print(f"{v:<29} | " + " | ".join(f"{m[c]:12.1f}" for c in cols))
    pairs = [("jwt-edge", "noop"), ("jwt-edge+release", "noop+release")]
    pairs += [(f"jwt-edge@{n}", f"noop@{n}") for n in CPUS]
    for name in baselines:
        pairs += [(name, "noop"), ("jwt-edge", name)]
    for a, b in pairs:
        print(f"{a + ' - ' + b:<29} | "
              + " | ".join(f"{med[a][c] - med[b][c]:+12.1f}" for c in cols))
    bl.RESULTS.mkdir(exist_ok=True)
    (bl.RESULTS / "memory-latest.json").write_text(json.dumps(
        {"modules": modules, "medians": med, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
