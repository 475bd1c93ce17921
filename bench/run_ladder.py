"""`make bench-ladder`: the ablation ladder of a jwt-edge cache hit (issue #13).

One Envoy (`--concurrency 1`, `taskset -c 0`, `--log-level warn`) with one listener per
variant, each with its own filter (its own Wasm VM) in front of `direct_response` (or of nginx
with BENCH_MODES=upstream). wrk (`-t1 -c16`, CPU 1) sends 16 repeated RS256 tokens
(jwt_cache_size 100) to one listener at a time, BENCH_SECONDS each, every variant once per
round in an order rotated each round, BENCH_ROUNDS rounds after one warm-up pass. The CPU per
request is the Envoy worker thread's CPU time (schedstat, ns) over the run divided by the
requests: every variant runs in the same process, interleaved at a few seconds' granularity,
so the machine's other load falls on all of them alike, and Envoy's start-up (compiling each
module) is paid once, outside any measurement.

Variants, each a step on top of the one before (bench/micro/src/ladder.rs):
  passthrough, noop, noop-min          no filter, and the two do-nothing floors
  floor                                the micro module (jwt-edge's code linked in, ~1 MiB)
                                       whose callback returns Continue
  clock, headers, extract, cache,      one step of FilterState::handle's cache-hit path each
  decide, write, counters
  micro:jwt-edge                       jwt-edge's own root context in the micro module
  jwt-edge                             the shipped module
  jwt_authn                            Envoy's native filter with its cache
  remove, set, add, get                side rungs: `floor` plus one host call
  baseline                             (only with BENCH_BASELINE_WASM) another jwt-edge module,
                                       e.g. an earlier commit's build, with the same config:
                                       an A/B of two builds in one process

Prints, per variant, medians over rounds of: req/s, worker CPU µs per request, that over the
lowest floor (min of noop and noop-min, same round), and the step over the variant before it
(same round).

Environment: BENCH_ROUNDS (7), BENCH_SECONDS (3), BENCH_QUICK=1 (2 rounds of 2 s), BENCH_MODES
(`direct`), BENCH_LADDER (comma-separated variant names: a subset, in order),
BENCH_QUIET_WAIT (120), BENCH_BASELINE_WASM (a module for the `baseline` variant).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from pathlib import Path

QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
os.environ.setdefault("BENCH_SECONDS", "2" if QUICK else "3")
os.environ.setdefault("BENCH_ROUNDS", "2" if QUICK else "7")
os.environ.setdefault("BENCH_MODES", "direct")
os.environ.setdefault("BENCH_QUIET_WAIT", "120")

import benchlib as bl  # noqa: E402
import run_bench as rb  # noqa: E402
from harness.keys import jwks  # noqa: E402

RUNGS = ("floor", "clock", "headers", "extract", "cache", "decide", "write", "counters")
SIDE = ("remove", "set", "add", "get")
LADDER = ("passthrough", "noop", "noop-min", *RUNGS, "micro:jwt-edge", "jwt-edge", "jwt_authn", *SIDE)
BASELINE = os.environ.get("BENCH_BASELINE_WASM")
if BASELINE:
    LADDER = (*LADDER, "baseline")
if os.environ.get("BENCH_LADDER"):
    LADDER = tuple(v for v in os.environ["BENCH_LADDER"].split(",") if v)
# The variant each step is measured against (the rung before it).
STEP_FROM = {"noop-min": "noop", "floor": "noop-min", **{r: RUNGS[i - 1] for i, r in enumerate(RUNGS) if i},
             "micro:jwt-edge": "counters", "jwt-edge": "micro:jwt-edge",
             **{s: "floor" for s in SIDE}}


def filters(variant: str, jwks_text: str) -> list[dict]:
    config = rb.filter_json(jwks_text, rb.CACHE_SIZE)
    if variant in ("passthrough", "jwt_authn", "jwt-edge"):
        return rb.http_filters(variant, jwks_text, rb.CACHE_SIZE)
    if variant == "baseline":
        return [bl.plain_wasm_filter("baseline", rb.MODULES["baseline"], json.dumps(config))]
    if variant in ("noop", "noop-min"):
        return [bl.plain_wasm_filter(variant, rb.MODULES[variant])]
    mode = "jwt-edge" if variant == "micro:jwt-edge" else f"ladder:{variant}"
    # Its own vm_id: one VM per variant.
    return [bl.plain_wasm_filter(re.sub(r"\W", "_", variant), rb.MODULES["micro"],
                                 json.dumps(config), {"JWT_EDGE_BENCH": mode})]


def run(envoy: bl.Envoy, mode: str, rnd: int, variant: str, token_file, seconds: int) -> dict:
    url = f"http://127.0.0.1:{envoy.ports[variant]}/"
    workdir = bl.WORK / "ladder"
    c0 = envoy.worker_cpu_ns()
    safe = re.sub(r"[^\w-]", "_", variant)
    w = rb.wrk(url, seconds, token_file, 0, workdir / f"wrk-{safe}.txt")
    c1 = envoy.worker_cpu_ns()
    problems = []
    if w["status_errors"]:
        problems.append(f"{int(w['status_errors'])} non-2xx")
    if w["connect_errors"] + w["read_errors"] + w["write_errors"] + w["timeouts"]:
        problems.append("socket errors/timeouts")
    if w["requests"] <= 0:
        problems.append("no requests")
    return {"round": rnd, "mode": mode, "variant": variant, "requests": w["requests"],
            "rps": w["requests"] / (w["duration_us"] / 1e6),
            "cpu_us_per_req": (c1 - c0) / 1000 / w["requests"] if w["requests"] else float("nan"),
            "invalid": problems}


def snapshot_baseline(modules: dict) -> None:
    """With BENCH_BASELINE_WASM, a copy of that module for the `baseline` variant."""
    if BASELINE:
        base = bl.WORK / "baseline-src" / "baseline.wasm"
        base.parent.mkdir(parents=True, exist_ok=True)
        base.write_bytes(Path(BASELINE).read_bytes())
        rb.MODULES["baseline"], modules["baseline"] = bl.snapshot(base)


def main() -> None:
    started = time.time()
    modules = rb.snapshot_modules()
    snapshot_baseline(modules)
    keys = rb.load_keys()
    jwks_text = json.dumps(jwks(list(keys.values())), separators=(",", ":"))
    token_file = rb.repeated_pool(keys)
    first_token = token_file.read_text().split("\n", 1)[0]

    quiet = bl.wait_for_quiet(rb.QUIET_WAIT)
    up_start = os.popen("uptime").read().strip()
    print(f"  {bl.quiet_note(quiet)}; uptime: {up_start}", flush=True)
    runs = []
    with contextlib.ExitStack() as stack:
        nginx = stack.enter_context(bl.Nginx(bl.WORK / "nginx")) if "upstream" in rb.MODES else None
        for mode in rb.MODES:
            config = bl.envoy_config_multi({v: filters(v, jwks_text) for v in LADDER},
                                           upstream_port=nginx.port if mode == "upstream" else None)
            with bl.Envoy(config, bl.WORK / "ladder" / mode, concurrency=1, cpus="0") as envoy:
                for v in LADDER:
                    r = bl.client.request(f"http://127.0.0.1:{envoy.ports[v]}/",
                                          headers=bl.client.bearer(first_token))
                    if r.status != 200:
                        raise RuntimeError(f"{v}: probe answered {r.status} {r.body[:200]!r}\n"
                                           f"{bl.tail(envoy.log(), 30)}")
                for v in LADDER:  # warm-up: fills the caches, lets V8 settle
                    run(envoy, mode, -1, v, token_file, 1)
                for rnd, _, _, v in rb.schedule(rb.ROUNDS, [mode], ["ladder"], LADDER):
                    r = run(envoy, mode, rnd, v, token_file, rb.SECONDS)
                    runs.append(r)
                    print(f"  round {rnd + 1}/{rb.ROUNDS} {mode:<8} {v:<15} {r['rps']:7.0f} req/s "
                          f"{r['cpu_us_per_req']:7.2f} worker CPU µs/req"
                          + (f"  INVALID: {'; '.join(r['invalid'])}" if r["invalid"] else ""), flush=True)
    load_end = os.popen("uptime").read().strip()

    print(f"\n== make bench-ladder: Envoy {bl.envoy_version()}, one process, one listener per variant; "
          f"16 repeated RS256 tokens, jwt_cache_size {rb.CACHE_SIZE}; {rb.ROUNDS} rounds of "
          f"{rb.SECONDS} s per variant, medians")
    print(f"   {bl.quiet_note(quiet)}\n   uptime at start: {up_start}\n   uptime at end:   {load_end}")
    out = {}
    for mode in rb.MODES:
        sel = [r for r in runs if r["mode"] == mode]
        floors = [rb.per_round(sel, f) for f in rb.FLOORS if f in LADDER]
        rounds = sorted({r["round"] for r in sel})
        lowest = {n: min(f[n]["cpu_us_per_req"] for f in floors) for n in rounds
                  if floors and all(n in f for f in floors)}
        print(f"\n-- {rb.MODE_TEXT[mode]}")
        print(f"{'variant':<15} | {'req/s':>7} | {'CPU µs/req':>10} | {'over floor':>10} | "
              f"{'step':>6} | step from")
        rows = {}
        for v in LADDER:
            rv = rb.per_round(sel, v)
            base = rb.per_round(sel, STEP_FROM[v]) if STEP_FROM.get(v) in LADDER else {}
            row = {
                "rps": bl.median([r["rps"] for r in rv.values()]),
                "cpu_us": bl.median([r["cpu_us_per_req"] for r in rv.values()]),
                "over_floor_us": bl.median([rv[n]["cpu_us_per_req"] - lowest[n] for n in rv if n in lowest]),
                "step_us": bl.median([rv[n]["cpu_us_per_req"] - base[n]["cpu_us_per_req"]
                                      for n in rv if n in base]),
                "step_from": STEP_FROM.get(v) if base else None,
                "invalid_runs": sum(1 for r in rv.values() if r["invalid"]),
            }
            rows[v] = row
            step = f"{row['step_us']:+6.2f}" if row["step_from"] else f"{'':>6}"
            print(f"{v:<15} | {row['rps']:7.0f} | {row['cpu_us']:10.2f} | {row['over_floor_us']:+10.2f} | "
                  f"{step} | {row['step_from'] or ''}"
                  + ("  INVALID" if row["invalid_runs"] else ""))
        out[mode] = rows
    bl.RESULTS.mkdir(exist_ok=True)
    dest = bl.RESULTS / "ladder-latest.json"
    dest.write_text(json.dumps({"started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
                                "quiet": quiet, "uptime_start": up_start, "uptime_end": load_end,
                                "modules": modules, "git": bl.git_state(), "summary": out,
                                "runs": runs}, indent=1) + "\n")
    print(f"\nwritten: {dest.relative_to(bl.REPO)} ({round(time.time() - started)} s)")
    if any(r["invalid"] for r in runs):
        print("SOME RUNS ARE INVALID (see INVALID above)")


if __name__ == "__main__":
    main()
