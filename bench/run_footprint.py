"""`make bench-footprint`: the machine code one verification runs through, by function
(issue #13: what a distinct token costs beyond its instructions).

A distinct token's request costs Envoy more than its instructions: `make bench-instructions`
with BENCH_INSTR_CACHE=1 counts the last-level (L2) lines a request misses, and a verification
adds about as many misses in Envoy's own code as in the module's (the module's code pushes
Envoy's out, and is itself fetched cold on every request, since Envoy's work for the other
requests runs in between). This names the module's side, function by function.

bench/micro/src/bin/footprint.rs, compiled for wasm32-wasip1 with the micro module's library,
runs under Node's V8 (`--no-liftoff --no-wasm-lazy-compilation`, TurboFan only, as in Envoy)
inside valgrind's callgrind with a simulated cache: the 512 KiB L2 of `make
bench-instructions` as the last level, a 1 KiB L1i (see CACHE). Each of FOOTPRINT_N rounds
writes over 2 MiB first, so every round starts with nothing of the module's code in the
L2, then runs one operation of
`GET /once`: `jwk` (KeySet::select + Jwk::verify), `token` (UntrustedToken::parse + verify),
`decide` (the whole decision, no cache), or `none` (the sweep alone, subtracted from the
others). Node writes a perf map (`--perf-basic-prof`) giving each compiled Wasm function's
address range; callgrind's per-instruction counts (`--dump-instr=yes`) are summed into them.
A function's "lines" are the 64-byte lines of its machine code that missed per round: the
part of it the operation ran. Node 20's V8 is not Envoy 1.40's (14.6): machine code sizes
and inlining differ, the shape does not.

Environment: FOOTPRINT_N (rounds, 30), FOOTPRINT_ALGS (RS256,ES256), FOOTPRINT_TOP (functions
listed per algorithm, 30), FOOTPRINT_WASM (the harness, default: the newest build under
bench/micro/target), NODE_FLAGS (extra Node flags: the Makefile passes relaxed SIMD's on
Node 20).
"""

from __future__ import annotations

import bisect
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchlib as bl

sys.path.insert(0, str(bl.REPO / "mk"))
from indirect_calls import demangle  # noqa: E402

N = int(os.environ.get("FOOTPRINT_N", 30))
ALGS = tuple(a for a in os.environ.get("FOOTPRINT_ALGS", "RS256,ES256").split(",") if a)
TOP = int(os.environ.get("FOOTPRINT_TOP", 30))
OPS = ("none", "jwk", "token", "decide")
# A 1 KiB L1i: the sweep writes data only, so a 32 KiB L1i would keep the code of a small
# operation from one round to the next and hide it from the L2 the sweep empties; with a tiny
# one, every line of code a round runs reaches the L2 and misses there once.
CACHE = ("--I1=1024,2,64", "--D1=32768,8,64", "--LL=524288,8,64")
EVENTS = ("Ir", "ILmr", "DLmr", "DLmw")
LINE = 64


def harness() -> Path:
    if os.environ.get("FOOTPRINT_WASM"):
        return Path(os.environ["FOOTPRINT_WASM"])
    # mk/bench.mk's FOOTPRINT_TARGET_DIR.
    wasm = bl.cargo_target_dir(bl.BENCH / "micro") / "footprint" / "wasm32-wasip1" / "release" / "footprint.wasm"
    if not wasm.exists():
        sys.exit(f"{wasm} is missing: run `make bench-footprint`")
    return wasm


class PerfMap:
    """Node's perf map: (start, size, name) of each piece of generated code."""

    def __init__(self, path: Path) -> None:
        entries = []
        for line in path.read_text().splitlines():
            start, size, name = line.split(" ", 2)
            entries.append((int(start, 16), int(size, 16), name))
        entries.sort()
        self.entries = entries
        self.starts = [e[0] for e in entries]

    def find(self, addr: int) -> tuple[str, int] | None:
        i = bisect.bisect_right(self.starts, addr) - 1
        if i >= 0 and addr < self.entries[i][0] + self.entries[i][1]:
            return self.entries[i][2], self.entries[i][1]
        return None


def wasm_name(perf_name: str) -> str | None:
    """`JS:<symbol>-<index>-turbofan` (a Wasm function) as the Rust path; None otherwise."""
    m = re.fullmatch(r"JS:(.*)-\d+-turbofan", perf_name)
    return demangle(m.group(1)) if m else None


def per_function(dump: Path, perf: PerfMap) -> dict[str, dict]:
    """Events per Wasm function (and `other` for everything else) of a callgrind dump written
    with --dump-instr=yes --dump-line=no, plus each function's machine-code size."""
    out: dict[str, dict] = collections.defaultdict(lambda: {"size": 0, **dict.fromkeys(EVENTS, 0)})
    events: list[str] = []
    obj = ""
    names: dict[str, str] = {}
    last = 0
    skip = False
    with dump.open(errors="replace") as f:
        for raw in f:
            line = raw.rstrip("\n")
            if line.startswith("events:"):
                events = line.split()[1:]
                continue
            m = re.match(r"^(c?ob)=\((\d+)\)(?: (.*))?$", line)
            if m:
                if m.group(3):
                    names[m.group(2)] = m.group(3)
                if m.group(1) == "ob":
                    obj = names.get(m.group(2), "")
                continue
            if line.startswith("calls="):
                skip = True  # the next cost line is the call's inclusive cost
                continue
            if not line or line[0] not in "0123456789+-*":
                continue
            pos, *values = line.split()
            if pos.startswith("0x"):
                addr = int(pos, 16)
            elif pos[0] in "+-":
                step = int(pos[1:], 16) if pos[1:].startswith("0x") else int(pos[1:])
                addr = last + step if pos[0] == "+" else last - step
            elif pos == "*":
                addr = last
            else:
                addr = int(pos)
            last = addr
            if skip:
                skip = False
                continue
            key, size = "other", 0
            if obj == "???":
                found = perf.find(addr)
                name = wasm_name(found[0]) if found else None
                if name and found:
                    key, size = name, found[1]
            row = out[key]
            row["size"] = size
            for event, value in zip(events, values):
                if event in row:
                    row[event] += int(value)
    return out


def run(wasm: Path, alg: str, op: str, workdir: Path) -> dict[str, dict]:
    for stale in ("ready", "go"):
        (workdir / stale).unlink(missing_ok=True)
    dump = workdir / f"callgrind.{alg}.{op}"
    env = {**os.environ, "FOOTPRINT_ALG": alg, "FOOTPRINT_OP": op, "FOOTPRINT_N": str(N),
           "FOOTPRINT_DIR": str(workdir)}
    cmd = ["valgrind", "--tool=callgrind", "--smc-check=all", "--instr-atstart=no",
           "--dump-instr=yes", "--dump-line=no", "--cache-sim=yes", *CACHE,
           f"--callgrind-out-file={dump}", "node", "--perf-basic-prof", "--no-liftoff",
           "--no-wasm-lazy-compilation", *os.environ.get("NODE_FLAGS", "").split(),
           str(bl.REPO / "mk" / "wasi-runner.mjs"), str(wasm)]
    with (workdir / f"{alg}.{op}.log").open("w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                cwd=workdir)
        try:
            deadline = time.monotonic() + 900
            while not (workdir / "ready").exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{alg} {op}: the harness stopped before it was ready "
                                       f"(see {workdir / f'{alg}.{op}.log'})")
                time.sleep(0.2)
            subprocess.run(["callgrind_control", "-i", "on", str(proc.pid)], check=True,
                           capture_output=True, timeout=300)
            (workdir / "go").touch()
            if proc.wait(timeout=1800) != 0:
                raise RuntimeError(f"{alg} {op}: the harness failed "
                                   f"(see {workdir / f'{alg}.{op}.log'})")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    perf_map = Path(f"/tmp/perf-{proc.pid}.map")
    try:
        return per_function(dump, PerfMap(perf_map))
    finally:
        perf_map.unlink(missing_ok=True)


def totals(rows: dict[str, dict]) -> dict[str, float]:
    """Per round: the module's code lines, instructions and data lines (Wasm functions only)."""
    wasm = [r for k, r in rows.items() if k != "other"]
    return {"code_lines": sum(r["ILmr"] for r in wasm) / N, "instructions": sum(r["Ir"] for r in wasm) / N,
            "data_lines": sum(r["DLmr"] + r["DLmw"] for r in wasm) / N}


def main() -> None:
    for tool in ("valgrind", "callgrind_control", "node"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: make bench-footprint needs valgrind and node")
    wasm = harness()
    started = time.time()
    workdir = Path(tempfile.mkdtemp(prefix="footprint-", dir=bl.WORK if bl.WORK.exists() else None))
    results: dict[str, dict] = {}
    try:
        for alg in ALGS:
            for op in OPS:
                t0 = time.monotonic()
                rows = run(wasm, alg, op, workdir)
                results[f"{alg}/{op}"] = {"totals": totals(rows), "functions": rows}
                t = results[f"{alg}/{op}"]["totals"]
                print(f"  {alg} {op:<6} {t['code_lines']:7.1f} code lines, {t['instructions']:9.0f} "
                      f"instructions, {t['data_lines']:6.1f} data lines per round "
                      f"({time.monotonic() - t0:.0f} s)", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"\n== make bench-footprint: the module's machine code one operation runs through, "
          f"cold (Node {subprocess.run(['node', '--version'], capture_output=True, text=True).stdout.strip()}'s V8, "
          f"TurboFan; callgrind, 512 KiB L2; {N} rounds)")
    print("   code lines: 64-byte lines of the module's machine code missed per operation, "
          "over the sweep alone (`none`)")
    head = f"{'alg':<6} | {'operation':<8} | {'code lines':>10} | {'KiB':>5} | {'step':>6} | {'instructions':>12} | {'data lines':>10}"
    print(head)
    print("-" * len(head))
    for alg in ALGS:
        base = results[f"{alg}/none"]["totals"]
        before = None
        for op in OPS[1:]:
            t = results[f"{alg}/{op}"]["totals"]
            lines = t["code_lines"] - base["code_lines"]
            step = "" if before is None else f"{lines - before:+6.0f}"
            print(f"{alg:<6} | {op:<8} | {lines:10.0f} | {lines * LINE / 1024:5.1f} | {step:>6} | "
                  f"{t['instructions'] - base['instructions']:12.0f} | "
                  f"{t['data_lines'] - base['data_lines']:10.1f}")
            before = lines
    for alg in ALGS:
        none = results[f"{alg}/none"]["functions"]
        rows = results[f"{alg}/decide"]["functions"]
        listed = sorted(((k, r["ILmr"] - none.get(k, {}).get("ILmr", 0), r)
                         for k, r in rows.items() if k != "other"), key=lambda x: -x[1])
        print(f"\n{alg} decide, by function (lines per round; instructions per round; the "
              f"function's machine code in bytes):")
        for name, lines, r in listed[:TOP]:
            if lines / N < 0.5:
                break
            print(f"  {lines / N:6.1f} {r['Ir'] / N:9.0f} {r['size']:7d}  {name[:110]}")

    bl.RESULTS.mkdir(exist_ok=True)
    dest = bl.RESULTS / "footprint-latest.json"
    dest.write_text(json.dumps({
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "n": N, "git": bl.git_state(),
        "totals": {k: v["totals"] for k, v in results.items()},
    }, indent=1) + "\n")
    print(f"\nwritten: {dest.relative_to(bl.REPO)} ({round(time.time() - started)} s)")


if __name__ == "__main__":
    main()
