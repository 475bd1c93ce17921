"""`make bench-micro`: jwt-edge's verification step alone, inside Envoy's V8 and natively.

Envoy (`--concurrency 1`, `taskset -c 0`) loads bench/micro's filter; for each algorithm one
request `GET /bench?alg=ALG&n=N&reps=R` runs, inside the request callback, 20 warm-up calls
then R repetitions of N calls, timed with the host clock (`proxy_get_current_time`), and the
median repetition is reported in µs per call. The native binary (same crate, same profile)
runs the same function timed with `Instant`, pinned to the same CPU.

Then the same operations one per request (`GET /once?alg=ALG&op=OP`, RS256 and ES256): wrk
(`-t1 -c16`, CPU 1) sends them for BENCH_MICRO_ONCE_SECONDS, so Envoy's work for the other
requests runs between two calls, as in `make bench`; each request times its one call and
`GET /once_report` gives the median. The difference from the loop is what a call pays for
starting cold.

Environment: BENCH_MICRO_N (200), BENCH_MICRO_REPS (5), BENCH_QUIET_WAIT (seconds to wait for a
quiet machine, 600; 0 = do not wait), BENCH_QUICK=1 (n=50, reps=3, no wait),
BENCH_MICRO_ONCE_SECONDS (3; 0 = skip the one-per-request part).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import benchlib as bl

QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
N = int(os.environ.get("BENCH_MICRO_N", 50 if QUICK else 200))
REPS = int(os.environ.get("BENCH_MICRO_REPS", 3 if QUICK else 5))
QUIET_WAIT = float(os.environ.get("BENCH_QUIET_WAIT", 0 if QUICK else 600))
ALGS = ("RS256", "PS256", "ES256", "ES384", "EdDSA")
ONCE_SECONDS = int(os.environ.get("BENCH_MICRO_ONCE_SECONDS", 3))
ONCE_ALGS = ("RS256", "ES256")
ONCE_OPS = (("none", None), ("spin", None), ("jwk", "jwk_verify_us"), ("token", "token_verify_us"),
            ("decide", "decide_us"))
OPS = (("jwk_verify_us", "select+Jwk::verify"), ("token_verify_us", "parse+verify (full)"),
       ("decide_us", "decide (no cache)"))


# The host calls jwt-edge makes per request, timed by the micro filter in a request whose
# headers look like the throughput benchmark's (a 551-byte RS256 bearer token).
HOSTCALL_HEADERS = {"authorization": "Bearer " + "a" * 551, "user-agent": "wrk"}
HOSTCALLS = (("get_current_time", "proxy_get_current_time_nanoseconds"),
             ("get_map_bytes_request_headers", "proxy_get_header_map_pairs (all)"),
             ("get_map_value_authorization", "proxy_get_header_map_value"),
             ("set_map_value_header", "proxy_replace_header_map_value"),
             ("remove_map_value_header", "proxy_remove_header_map_value"),
             ("increment_metric", "proxy_increment_metric"))


def wasm_reports(module) -> tuple[dict[str, dict], dict]:
    config = bl.envoy_config([bl.plain_wasm_filter("jwt_edge_micro", module)])
    out = {}
    with bl.Envoy(config, bl.WORK / "micro-envoy", concurrency=1, cpus="0") as envoy:
        for alg in ALGS:
            resp = bl.client.request(envoy.url(f"/bench?alg={alg}&n={N}&reps={REPS}"), timeout=300)
            if resp.status != 200:
                sys.exit(f"{alg}: Envoy answered {resp.status}: {resp.body[:300]!r}\n"
                         f"{bl.tail(envoy.log(), 30)}")
            out[alg] = resp.json()
        # RSAVP1 alone on each RSA arithmetic (bench/micro/src/lib.rs `rsa_arithmetic`).
        resp = bl.client.request(envoy.url(f"/rsa?n={N}&reps={REPS}"), timeout=300)
        if resp.status != 200:
            sys.exit(f"rsa: Envoy answered {resp.status}: {resp.body[:300]!r}")
        out["rsa_arithmetic"] = resp.json()
        # Envoy's verify_signature foreign function (BoringSSL through the host): a reference.
        foreign = []
        for _ in range(REPS):
            resp = bl.client.request(envoy.url(f"/foreign?n={N}"), timeout=300)
            if resp.status != 200:
                sys.exit(f"foreign: Envoy answered {resp.status}: {resp.body[:300]!r}")
            foreign.append(resp.json()["verify_signature_us"])
        out["verify_signature_us"] = bl.median(foreign)
        out["verify_signature_us_reps"] = foreign
        reps = []
        for _ in range(REPS):
            resp = bl.client.request(envoy.url(f"/hostcalls?n={N * 10}"), headers=HOSTCALL_HEADERS,
                                     timeout=60)
            if resp.status != 200:
                sys.exit(f"hostcalls: Envoy answered {resp.status}: {resp.body[:300]!r}")
            reps.append(resp.json())
        hostcalls = {key: bl.median([r[key] for r in reps]) for key, _ in HOSTCALLS}
        out["once"] = once_reports(envoy) if ONCE_SECONDS > 0 else {}
    return out, hostcalls


def once_reports(envoy) -> dict[str, float]:
    """`alg/op` -> median µs of one call per request, under wrk's load (see the module doc)."""
    medians = {}
    for alg in ONCE_ALGS:
        for op, _ in ONCE_OPS:
            url = envoy.url(f"/once?alg={alg}&op={op}")
            resp = bl.client.request(url, timeout=60)  # loads the cases, untimed
            if resp.status != 200:
                sys.exit(f"once {alg}/{op}: Envoy answered {resp.status}: {resp.body[:300]!r}")
            cpu0 = envoy.worker_cpu_ns()
            run = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c16", f"-d{ONCE_SECONDS}s", url],
                                 capture_output=True, text=True, timeout=ONCE_SECONDS + 60)
            cpu1 = envoy.worker_cpu_ns()
            if run.returncode != 0 or "Non-2xx" in run.stdout or "Socket errors" in run.stdout:
                sys.exit(f"once {alg}/{op}: wrk failed or saw errors:\n{run.stdout}{run.stderr}")
            m = re.search(r"(\d+) requests in", run.stdout)
            if not m:
                sys.exit(f"once {alg}/{op}: no request count in wrk's output:\n{run.stdout}")
            # The worker's CPU per request (the requests wrk counted; the report request is
            # sent after cpu1).
            medians[f"{alg}/{op}:cpu"] = (cpu1 - cpu0) / 1000 / int(m.group(1))
            resp = bl.client.request(envoy.url("/once_report"), timeout=60)
            if resp.status != 200:
                sys.exit(f"once_report: Envoy answered {resp.status}: {resp.body[:300]!r}")
            report = resp.json()[f"{alg}/{op}"]
            medians[f"{alg}/{op}"] = report["median_us"]
            medians[f"{alg}/{op}:samples"] = report["samples"]
    return medians


def native_reports() -> dict[str, dict]:
    proc = subprocess.run(["taskset", "-c", "0", str(bl.MICRO_NATIVE), str(N), str(REPS)],
                          capture_output=True, text=True, timeout=300, check=True)
    return {d["alg"]: d for d in map(json.loads, proc.stdout.splitlines())}


def main() -> None:
    for path in (bl.MICRO_WASM, bl.MICRO_NATIVE):
        if not path.exists():
            sys.exit(f"{path} is missing: run `make bench-micro`")
    module, module_info = bl.snapshot(bl.MICRO_WASM)
    git = bl.git_state()
    quiet = bl.wait_for_quiet(QUIET_WAIT)
    started = time.time()
    wasm, hostcalls = wasm_reports(module)
    native = native_reports()

    print(f"\n== jwt-edge verification micro-benchmark: µs per call, median of {REPS} "
          f"repetitions of {N} calls after 20 warm-up calls")
    print(f"   wasm: Envoy {bl.envoy_version()} V8, --concurrency 1, taskset -c 0; "
          f"native: same crate and profile, taskset -c 0")
    print(f"   {bl.quiet_note(quiet)}")
    print(f"   micro module sha256 {module_info['sha256']}, built {module_info['built']}; tree: commit "
          f"{git['commit']}" + (f" + {git['src_dirty_files']} uncommitted src/Cargo files"
                                if git["src_dirty_files"] else " (clean)"))
    header = f"{'alg':<6} | {'operation':<20} | {'wasm µs':>9} | {'native µs':>9} | {'wasm/native':>11} | wasm reps (µs)"
    print(header)
    print("-" * len(header))
    rows = []
    for alg in ALGS:
        for key, label in OPS:
            w, n = wasm[alg][key], native[alg][key]
            reps = " ".join(f"{v:.0f}" for v in wasm[alg][key + "_reps"])
            print(f"{alg:<6} | {label:<20} | {w:9.1f} | {n:9.1f} | {w / n:10.2f}x | {reps}")
            rows.append({"alg": alg, "op": key, "wasm_us": w, "native_us": n, "ratio": w / n})
    jw = bl.median([wasm[a]["jwks_parse_us"] for a in ALGS])
    jn = bl.median([native[a]["jwks_parse_us"] for a in ALGS])
    print(f"{'-':<6} | {'parse_jwks (4 keys)':<20} | {jw:9.1f} | {jn:9.1f} | {jw / jn:10.2f}x |")

    ra = wasm["rsa_arithmetic"]
    fma = f"{ra['fma_us']:.1f}" if ra["fma_us"] is not None else "n/a (not fused here)"
    print(f"\n== RSA arithmetic in Envoy's V8: {ra['arithmetic']} (fused probe {ra['fused']}, "
          f"known answer {ra['known_answer']}, {ra['probe_us']:.0f} µs once per VM)")
    print(f"   RSAVP1 (s^65537 mod n, 2048-bit) µs: integer {ra['integer_us']:.1f}, "
          f"f64 FMA {fma}; reps integer {ra['integer_us_reps']}, f64 FMA {ra['fma_us_reps']}")

    print(f"   reference, not used: Envoy's verify_signature foreign function (BoringSSL through "
          f"the host, DER key parsed on every call), RS256: {wasm['verify_signature_us']:.1f} µs "
          f"(reps {' '.join(f'{v:.1f}' for v in wasm['verify_signature_us_reps'])})")

    print(f"\n== host calls, inside a request callback in Envoy's V8: µs per call, median of {REPS} "
          f"repetitions of {N * 10} calls")
    for key, label in HOSTCALLS:
        print(f"   {label:<40} {hostcalls[key]:6.3f}")

    once = wasm["once"]
    if once:
        print(f"\n== one call per request in Envoy's V8 (wrk -c16 for {ONCE_SECONDS} s per line, median), "
              f"against the loop above")
        print("   and Envoy's worker CPU per request: over the same request without a call (`none`),")
        print("   what is not the call's own time is the rest of Envoy running slower after it")
        print(f"{'alg':<6} | {'operation':<20} | {'one/request µs':>14} | {'loop µs':>8} | {'extra µs':>8} | "
              f"{'CPU µs/req':>10} | {'Envoy extra':>11} | samples")
        for alg in ONCE_ALGS:
            base = once[f"{alg}/none:cpu"]
            for op, key in ONCE_OPS:
                label = next((lbl for k, lbl in OPS if k == key),
                             {"none": "none (reply only)", "spin": "spin (registers)"}.get(op, op))
                one, cpu = once[f"{alg}/{op}"], once[f"{alg}/{op}:cpu"]
                loop = wasm[alg][key] if key else 0.0
                print(f"{alg:<6} | {label:<20} | {one:14.1f} | {loop:8.1f} | {one - loop:+8.1f} | "
                      f"{cpu:10.1f} | {cpu - base - one:+11.1f} | {once[f'{alg}/{op}:samples']}")

    bl.RESULTS.mkdir(exist_ok=True)
    out = bl.RESULTS / "micro-latest.json"
    out.write_text(json.dumps({
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "n": N, "reps": REPS, "quiet": quiet, "module": module_info, "git": git, "rows": rows,
        "jwks_parse_us": {"wasm": jw, "native": jn},
        "wasm": wasm, "native": native, "hostcalls_us": hostcalls,
    }, indent=1) + "\n")
    print(f"\nwritten: {out.relative_to(bl.REPO)}")


if __name__ == "__main__":
    main()
