"""Where Envoy's CPU goes per request, by the code it ran (`make bench-profile`).

One fresh Envoy per run (`--concurrency 1`, `taskset -c 0`, in front of `direct_response`),
the workloads and filters of `make bench` (run_bench.py): a warm-up, then wrk (`-t1 -c16`,
CPU 1) for BENCH_SECONDS while `perf record -e cpu-clock` samples the Envoy process at
BENCH_PROFILE_HZ. Each sample is counted by the object its instruction pointer fell in:

  envoy binary   Envoy's C++, tcmalloc, V8's runtime, builtins and wrappers (one stripped
                 binary: perf cannot tell them apart)
  V8 code        code V8 generated at run time: the module's functions as TurboFan compiled
                 them (perf's `[JIT]` / `perf-<pid>.map`)
  kernel, libc, other

and printed as µs per request (the CPU time the samples stand for / requests). Sampling
costs time itself: the column sums run ~1.1-1.6x above `make bench`'s CPU per request for the same run,
so compare within a column and between runs of this script, not with other benchmarks.

What it answers (bench/README.md, "Distinct tokens"): how much of a request's cost is the
module's code, and whether the rest of Envoy runs slower around it (the envoy binary's
column of a jwt-edge run against a do-nothing filter's, and a cache hit's against a
distinct token's).

Environment: BENCH_PROFILE (comma-separated `variant:workload` runs; variants of run_bench.py:
passthrough, noop, noop-min, jwt_authn, jwt-edge; workloads rs256-distinct, es256-distinct,
rs256-cached16), BENCH_SECONDS (6), BENCH_WARMUP (2), BENCH_PROFILE_HZ (2000),
BENCH_QUICK=1 (3 s runs). Needs `perf` (Debian's linux-perf) allowed to sample a process of
this user (kernel.perf_event_paranoid <= 2).
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import time
from pathlib import Path

QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
os.environ.setdefault("BENCH_SECONDS", "3" if QUICK else "6")
os.environ.setdefault("BENCH_WARMUP", "1" if QUICK else "2")

import benchlib as bl  # noqa: E402
import run_bench as rb  # noqa: E402
from harness.keys import jwks  # noqa: E402

HZ = int(os.environ.get("BENCH_PROFILE_HZ", "2000"))
DEFAULT_RUNS = ("noop-min:rs256-distinct", "jwt-edge:rs256-cached16", "jwt-edge:rs256-distinct",
                "jwt-edge:es256-distinct", "jwt_authn:rs256-distinct", "jwt_authn:es256-distinct")
COLUMNS = ("envoy binary", "V8 code", "kernel", "libc", "other")
VARIANTS = ("passthrough", "noop", "noop-min", "jwt_authn", "jwt-edge")


def parse_runs(text: str) -> list[tuple[str, str]]:
    runs = []
    for item in (i.strip() for i in text.split(",") if i.strip()):
        variant, sep, workload = item.partition(":")
        if not sep or variant not in VARIANTS or workload not in rb.WORKLOADS:
            sys.exit(f"BENCH_PROFILE: {item!r} is not variant:workload (variants "
                     f"{', '.join(VARIANTS)}; workloads {', '.join(rb.WORKLOADS)})")
        runs.append((variant, workload))
    return runs


def column(dso: str) -> str:
    """The column of a sample, from the object `perf script -F ip,dso` names."""
    d = dso.strip().rstrip(")")
    if d.endswith("/envoy"):
        return "envoy binary"
    if d.startswith("[JIT]") or ("/perf-" in d and d.endswith(".map")):
        return "V8 code"
    if d.startswith("[kernel") or d == "[vdso]":
        return "kernel"
    if "/libc.so" in d or "/libc-" in d:
        return "libc"
    return "other"


def cpu_ns_by_column(data: Path) -> collections.Counter:
    """Nanoseconds of CPU time sampled per column: each sample stands for its period."""
    # One line per sample: the period (ns of cpu-clock), the instruction pointer, then the
    # object in parentheses.
    proc = subprocess.run(["perf", "script", "-i", str(data), "-F", "period,ip,dso"],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"perf script failed ({proc.returncode}): {proc.stderr[-2000:]}")
    ns: collections.Counter = collections.Counter()
    for line in proc.stdout.splitlines():
        head, paren, dso = line.partition("(")
        fields = head.split()
        if paren and fields and fields[0].isdigit():
            ns[column(dso)] += int(fields[0])
    return ns


def profile(variant: str, workload: str, jwks_text: str, files: dict, workdir: Path) -> dict:
    _, _, cache = rb.WORKLOADS[workload]
    config = bl.envoy_config(rb.http_filters(variant, jwks_text, cache))
    token_file, pool = files[workload], files[f"{workload}:n"]
    with bl.Envoy(config, workdir, concurrency=1, cpus="0") as envoy:
        rb.probe_and_warm(envoy, variant, token_file, pool, workdir)
        data = workdir / "perf.data"
        perf = subprocess.Popen(
            ["perf", "record", "-q", "-e", "cpu-clock", "-F", str(HZ), "-p", str(envoy.proc.pid),
             "-o", str(data), "--", "sleep", str(rb.SECONDS + 1)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(0.3)
        c0 = envoy.cpu_seconds()
        w = rb.wrk(envoy.url("/"), rb.SECONDS, token_file, 0, workdir / "wrk.txt")
        c1 = envoy.cpu_seconds()
        _, err = perf.communicate(timeout=rb.SECONDS + 60)
        if perf.returncode != 0 or not data.exists():
            raise RuntimeError(f"perf record failed ({perf.returncode}): {err[-2000:]}\n"
                               "perf must be allowed to sample this user's processes "
                               "(kernel.perf_event_paranoid <= 2)")
        s = envoy.stats()
    requests = w["requests"]
    non2xx = sum(v for c, v in bl.response_classes(s).items() if c != "2xx")
    if requests <= 0 or non2xx or w["status_errors"]:
        raise RuntimeError(f"{variant} {workload}: {requests} requests, {non2xx} non-2xx")
    ns = cpu_ns_by_column(data)
    return {"variant": variant, "workload": workload, "requests": requests,
            "cpu_us_per_req": (c1 - c0) * 1e6 / requests,
            "sampled_ns": dict(ns),
            "us_per_req": {c: ns.get(c, 0) / 1e3 / requests for c in COLUMNS}}


def main() -> None:
    for path in (bl.JWT_EDGE_WASM, bl.NOOP_WASM, bl.NOOP_MIN_WASM):
        if not path.exists():
            sys.exit(f"{path} is missing: run `make bench-profile`")
    runs = parse_runs(os.environ.get("BENCH_PROFILE", ",".join(DEFAULT_RUNS)))
    started = time.time()
    modules = rb.snapshot_modules(with_micro=False)
    keys = rb.load_keys()
    jwks_text = json.dumps(jwks(list(keys.values())), separators=(",", ":"))
    files = rb.token_files(keys, dict.fromkeys(w for _, w in runs))

    results = []
    for variant, workload in runs:
        workdir = bl.WORK / "profile" / f"{variant}-{workload}"
        r = profile(variant, workload, jwks_text, files, workdir)
        results.append(r)
        print(f"  {variant:10s} {workload:15s} {r['requests']:8.0f} requests  "
              f"{r['cpu_us_per_req']:6.1f} CPU µs/req  "
              + "  ".join(f"{c} {r['us_per_req'][c]:.1f}" for c in COLUMNS), flush=True)

    print(f"\n== make bench-profile: Envoy {bl.envoy_version()} --concurrency 1 (taskset -c 0), "
          f"direct_response; wrk -t1 -c{rb.CONNECTIONS} -d{rb.SECONDS}s; perf cpu-clock at {HZ} Hz; "
          "µs per request by where the samples fell (sampling inflates them: compare within a "
          "column)")
    head = f"{'run':36s} | " + " | ".join(f"{c:>12s}" for c in COLUMNS) + " |   sum | CPU µs/req"
    print(head)
    print("-" * len(head))
    for r in results:
        u = r["us_per_req"]
        print(f"{r['variant'] + ' ' + r['workload']:36s} | "
              + " | ".join(f"{u[c]:12.1f}" for c in COLUMNS)
              + f" | {sum(u.values()):5.1f} | {r['cpu_us_per_req']:10.1f}")
    out = bl.RESULTS / "profile-latest.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"envoy": bl.envoy_version(), "hz": HZ, "seconds": rb.SECONDS,
                               "modules": modules, "git": bl.git_state(), "runs": results},
                              indent=2) + "\n")
    print(f"\nwritten: {out.relative_to(bl.REPO)} ({time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
