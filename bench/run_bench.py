"""`make bench`: Envoy passthrough vs Envoy's native jwt_authn vs jwt-edge, on 127.0.0.1.

Throughput part (bench/README.md has the details). For each round, mode, workload and variant, a
fresh Envoy (`--concurrency 1`, `taskset -c 0`, `--log-level warn`) answers `200` itself
(mode `direct`: `direct_response`, no upstream) or proxies to nginx (mode `upstream`: nginx
from Debian, one worker pinned to CPU 1 beside wrk), behind
  passthrough: no auth filter;
  noop:        a do-nothing proxy-wasm filter (bench/noop-filter): what any Wasm filter
               costs per request in Envoy's V8 before it does anything (the floor);
  noop-min:    the same module trimmed to the exports jwt-edge ships (wasm-metadce): the
               floor when the host skips the callbacks the module does not export;
  jwt_authn:   envoy.filters.http.jwt_authn, typed config = the provider JSON below;
  jwt-edge:    the Wasm filter (V8), configuration = the same provider JSON.
wrk (`taskset -c 1 wrk -t1 -c16 -d<S>s --latency -s bench/bench.lua`) sends every request with
the next token of a pool; a warm-up run from the far end of the pool precedes each measured run.
Workloads: distinct RS256 tokens, distinct ES256 tokens (verified-token caches off), and 16
repeated RS256 tokens with `jwt_cache_config: {jwt_cache_size: 100}` on both filters.
Rounds are interleaved (every variant of every workload once per round, variant order rotated
per round); the table shows medians over rounds and medians of per-round ratios.

Memory part: Envoy VmRSS at 1, 2 and 4 workers for passthrough, a do-nothing proxy-wasm filter
(bench/noop-filter) and jwt-edge with `jwt_cache_size: 10000`, after each worker received
BENCH_FILL distinct valid RS256 tokens on its own connection (exact connection balancing).

Environment: BENCH_ROUNDS (3), BENCH_SECONDS (10), BENCH_WARMUP (2), BENCH_QUICK=1 (1 round of
3 s, memory at 1-2 workers with 2,000 tokens), BENCH_TOKENS (token pool per algorithm,
160,000), BENCH_FILL (10,000), BENCH_QUIET_WAIT (600), BENCH_MEMORY=0 (skip the memory part),
BENCH_MODES (`direct,upstream`), BENCH_WORKLOADS (all, comma-separated names),
BENCH_BASELINE_WASM (another jwt-edge module, run as the variant `baseline` beside jwt-edge in
the same rounds: an A/B of two builds, printed as `jwt-edge / baseline`), BENCH_VARIANTS (a
comma-separated subset of the variants, in order; the floors are needed for the columns over
the floor).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import benchlib as bl
from harness.keys import Key, jwks
from harness.tokens import IAT, EXP_VALID, mint

QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", 1 if QUICK else 3))
SECONDS = int(os.environ.get("BENCH_SECONDS", 3 if QUICK else 10))
WARMUP = int(os.environ.get("BENCH_WARMUP", 1 if QUICK else 2))
POOL = int(os.environ.get("BENCH_TOKENS", 40_000 if QUICK else 160_000))
FILL = int(os.environ.get("BENCH_FILL", 2_000 if QUICK else 10_000))
MEMORY_WORKERS = (1, 2) if QUICK else (1, 2, 4)
QUIET_WAIT = float(os.environ.get("BENCH_QUIET_WAIT", 0 if QUICK else 600))
MEMORY = os.environ.get("BENCH_MEMORY", "1") != "0"
MODES = tuple(m for m in os.environ.get("BENCH_MODES", "direct,upstream").split(",") if m)
MODE_TEXT = {"direct": "direct_response (no upstream)",
             "upstream": "nginx upstream (1 worker, taskset -c 1, keep-alive)"}
CONNECTIONS = 16
REPEATED_TOKENS = 16
CACHE_SIZE = 100
MEMORY_CACHE_SIZE = 10_000
# name -> the snapshot of the built module that every run loads (see benchlib.snapshot)
MODULES: dict[str, Path] = {}

ISSUER = "https://idp.bench.test/"
AUDIENCE = "bench-api"
KEYS = {"rsa": ("rsa", "RS256"), "ec": ("p256", "ES256")}  # kid -> (kind, alg)
# Keys only `make bench-instructions` uses (its ES384 and EdDSA workloads; PS256 signs with the
# RSA key, whose JWK names no algorithm): kept out of the other benches' key set, whose
# figures (per-VM key tables above all) stay comparable across sessions.
EXTRA_KEYS = {"p384": ("p384", "ES384"), "ed": ("ed25519", "EdDSA")}
ALG_KID = {alg: kid for kid, (_, alg) in (KEYS | EXTRA_KEYS).items()} | {"PS256": "rsa"}
WRK_SCRIPT = bl.BENCH / "bench.lua"
VARIANTS = ("passthrough", "noop", "noop-min", "jwt_authn", "jwt-edge")
BASELINE = os.environ.get("BENCH_BASELINE_WASM")
if BASELINE:
    VARIANTS += ("baseline",)
_CHOSEN = tuple(v for v in os.environ.get("BENCH_VARIANTS", "").split(",") if v)
if _CHOSEN:
    if set(_CHOSEN) - set(VARIANTS):
        sys.exit(f"BENCH_VARIANTS: unknown {sorted(set(_CHOSEN) - set(VARIANTS))}; "
                 f"variants: {', '.join(VARIANTS)}")
    VARIANTS = _CHOSEN
FLOORS = ("noop", "noop-min")
# name -> (description, token file alg, verified-token cache size or None)
WORKLOADS = {
    "rs256-distinct": ("distinct RS256 tokens, caches off", "RS256", None),
    "es256-distinct": ("distinct ES256 tokens, caches off", "ES256", None),
    "rs256-cached16": (f"{REPEATED_TOKENS} repeated RS256 tokens, jwt_cache_size {CACHE_SIZE}",
                       "RS256", CACHE_SIZE),
}
if os.environ.get("BENCH_WORKLOADS"):
    WORKLOADS = {w: WORKLOADS[w] for w in os.environ["BENCH_WORKLOADS"].split(",") if w}


def snapshot_modules(with_micro: bool = True) -> dict[str, dict]:
    """Snapshots the modules every run loads into MODULES (so a rebuild during a run changes
    nothing) and returns what each snapshot is (path, size, sha256, build time)."""
    modules = {}
    paths = [("jwt_edge", bl.JWT_EDGE_WASM), ("noop", bl.NOOP_WASM), ("noop-min", bl.NOOP_MIN_WASM)]
    if with_micro:
        paths.append(("micro", bl.MICRO_WASM))
    if BASELINE:  # under its own name: snapshots are named after the file
        base = bl.WORK / "baseline.wasm"
        base.parent.mkdir(parents=True, exist_ok=True)
        base.write_bytes(Path(BASELINE).read_bytes())
        paths.append(("baseline", base))
    for name, path in paths:
        MODULES[name], modules[name] = bl.snapshot(path)
    return modules


# -- keys and tokens (made once, under target/bench/) -----------------------------------
def load_keys(extra: bool = False) -> dict[str, Key]:
    """RSA-2048 (kid `rsa`) and P-256 (kid `ec`); with `extra`, P-384 (`p384`) and Ed25519
    (`ed`) too; generated on first use. A new key invalidates the token pools it signs."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    kdir = bl.WORK / "keys"
    kdir.mkdir(parents=True, exist_ok=True)
    keys = {}
    generate = {"rsa": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
                "p256": lambda: ec.generate_private_key(ec.SECP256R1()),
                "p384": lambda: ec.generate_private_key(ec.SECP384R1()),
                "ed25519": ed25519.Ed25519PrivateKey.generate}
    for kid, (kind, _) in {**KEYS, **(EXTRA_KEYS if extra else {})}.items():
        pem = kdir / f"{kid}.pem"
        if not pem.exists():
            priv = generate[kind]()
            pem.write_bytes(priv.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
            for alg in (a for a, k in ALG_KID.items() if k == kid):
                pool_file(alg).unlink(missing_ok=True)
        keys[kid] = Key(kid, kind, serialization.load_pem_private_key(pem.read_bytes(), None))
    return keys


def repeated_pool(keys: dict[str, Key]) -> Path:
    """The repeated-token workload's file: the RS256 pool's first REPEATED_TOKENS tokens."""
    ensure_pool(keys, "RS256", REPEATED_TOKENS)
    tokens = pool_file("RS256").read_text().split()[:REPEATED_TOKENS]
    path = bl.WORK / f"tokens-RS256-repeated{REPEATED_TOKENS}.txt"
    path.write_text("\n".join(tokens) + "\n")
    return path


def token_files(keys: dict[str, Key], workloads) -> dict:
    """Per workload its token file, and under `<workload>:n` how many tokens it holds; a
    distinct-token pool is made (or extended to POOL tokens) only for a workload asked for."""
    files: dict = {}
    for w in workloads:
        _, alg, cache = WORKLOADS[w]
        if cache is None:
            ensure_pool(keys, alg, POOL)
            files[w] = pool_file(alg)
        else:
            files[w] = repeated_pool(keys)
        files[f"{w}:n"] = sum(1 for line in open(files[w]) if line.strip())
    return files


def pool_file(alg: str) -> Path:
    return bl.WORK / f"tokens-{alg}.txt"


_WORKER_KEY: Key | None = None


def _init_worker(kid: str, kind: str, pem: bytes) -> None:
    from cryptography.hazmat.primitives import serialization

    global _WORKER_KEY
    _WORKER_KEY = Key(kid, kind, serialization.load_pem_private_key(pem, None))


def _mint_range(args: tuple[str, int, int]) -> list[str]:
    alg, start, stop = args
    # `jti` and `sub` make every token distinct; times are fixed (exp 2100-01-01).
    return [mint(_WORKER_KEY, {"iss": ISSUER, "aud": AUDIENCE, "sub": f"user-{i}",
                               "jti": f"{alg}-{i}", "iat": IAT, "exp": EXP_VALID}, alg=alg)
            for i in range(start, stop)]


def ensure_pool(keys: dict[str, Key], alg: str, count: int) -> int:
    """Makes the token pool file of `alg` hold at least `count` tokens (appending to what is
    there) and returns how many it holds."""
    path = pool_file(alg)
    have = sum(1 for _ in open(path)) if path.exists() else 0
    if have >= count:
        return have
    key = keys[ALG_KID[alg]]
    from cryptography.hazmat.primitives import serialization
    pem = key.private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    print(f"  minting {count - have} {alg} tokens (once; kept in {path.relative_to(bl.REPO)})",
          flush=True)
    chunks = [(alg, s, min(s + 2000, count)) for s in range(have, count, 2000)]
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2, initializer=_init_worker,
                             initargs=(key.kid, key.kind, pem)) as ex, open(path, "a") as f:
        for tokens in ex.map(_mint_range, chunks):
            f.write("\n".join(tokens) + "\n")
    return count


def filter_json(jwks_text: str, cache_size: int | None) -> dict:
    """The one provider config both filters get (jwt_authn `JwtAuthentication` proto JSON)."""
    provider = {
        "issuer": ISSUER,
        "audiences": [AUDIENCE],
        "local_jwks": {"inline_string": jwks_text},
        # jwt_authn's default is false, jwt-edge's true: set for both.
        "require_expiration": True,
        "claim_to_headers": [{"header_name": "x-jwt-sub", "claim_name": "sub"}],
    }
    if cache_size:
        provider["jwt_cache_config"] = {"jwt_cache_size": cache_size}
    return {"providers": {"bench": provider},
            "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "bench"}}]}


def http_filters(variant: str, jwks_text: str, cache_size: int | None) -> list[dict]:
    if variant == "passthrough":
        return []
    if variant == "jwt_authn":
        return [bl.jwt_authn_filter(filter_json(jwks_text, cache_size))]
    if variant == "jwt-edge":
        return [bl.jwt_edge_filter(filter_json(jwks_text, cache_size), MODULES["jwt_edge"])]
    if variant == "baseline":
        return [bl.jwt_edge_filter(filter_json(jwks_text, cache_size), MODULES["baseline"])]
    if variant in ("noop", "noop-min"):
        return [bl.plain_wasm_filter("noop", MODULES[variant])]
    raise ValueError(variant)


# -- one throughput run ------------------------------------------------------------------
def wrk(url: str, seconds: int, token_file: Path, start: int, out: Path) -> dict:
    cmd = ["taskset", "-c", "1", "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency",
           "-s", str(WRK_SCRIPT), url, "--", str(token_file), str(start)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    out.write_text(" ".join(cmd) + "\n" + proc.stdout + proc.stderr)
    m = re.search(r"^JWTBENCH (.*)$", proc.stdout, re.M)
    if proc.returncode != 0 or not m:
        raise RuntimeError(f"wrk failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return {k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split())}


def jwt_stats(stats: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in stats.items() if "jwt" in k and isinstance(v, (int, float))}


def throughput_run(rnd: int, mode: str, workload: str, variant: str, jwks_text: str, files: dict,
                   upstream_port: int | None) -> dict:
    _, alg, cache = WORKLOADS[workload]
    return measure(rnd, mode, workload, variant, http_filters(variant, jwks_text, cache),
                   files[workload], files[f"{workload}:n"], upstream_port)


def probe_and_warm(envoy: bl.Envoy, variant: str, token_file: Path, pool: int,
                   workdir: Path) -> None:
    """The pool's first token must pass (200); then a warm-up from the far end of the pool,
    so that the measured run starts on unused tokens."""
    first = token_file.read_text().split("\n", 1)[0]
    probe = bl.client.request(envoy.url("/"), headers=bl.client.bearer(first))
    if probe.status != 200:
        raise RuntimeError(f"{variant}: probe answered {probe.status} {probe.body[:200]!r}\n"
                           f"{bl.tail(envoy.log(), 30)}")
    wrk(envoy.url("/"), WARMUP, token_file, max(0, pool - 30_000), workdir / "wrk-warmup.txt")


def measure(rnd: int, mode: str, workload: str, variant: str, filters: list[dict], token_file: Path,
            pool: int, upstream_port: int | None) -> dict:
    """One measured run: a fresh Envoy with `filters`, a warm-up, then wrk for SECONDS."""
    config = bl.envoy_config(filters, upstream_port=upstream_port if mode == "upstream" else None)
    workdir = bl.WORK / "runs" / f"{mode}-{workload}-{variant}".replace(":", "-")
    with bl.Envoy(config, workdir, concurrency=1, cpus="0") as envoy:
        probe_and_warm(envoy, variant, token_file, pool, workdir)
        s0, c0, t0 = envoy.stats(), envoy.cpu_seconds(), time.monotonic()
        w = wrk(envoy.url("/"), SECONDS, token_file, 0, workdir / "wrk.txt")
        c1, t1 = envoy.cpu_seconds(), time.monotonic()
        s1 = envoy.stats()
        rss = envoy.rss_mib()
    r0, r1 = bl.response_classes(s0), bl.response_classes(s1)
    classes = {c: r1[c] - r0[c] for c in r0}
    non2xx = sum(v for c, v in classes.items() if c != "2xx")
    j0, j1 = jwt_stats(s0), jwt_stats(s1)
    requests = w["requests"]
    problems = []
    if non2xx or w["status_errors"]:
        problems.append(f"{int(max(non2xx, w['status_errors']))} non-2xx")
    sock = w["connect_errors"] + w["read_errors"] + w["write_errors"] + w["timeouts"]
    if sock:
        problems.append(f"{int(sock)} socket errors/timeouts")
    if requests <= 0:
        problems.append("no requests")
    return {
        "round": rnd, "mode": mode, "workload": workload, "variant": variant,
        "rps": requests / (w["duration_us"] / 1e6),
        "p50_ms": w["p50_us"] / 1000, "p99_ms": w["p99_us"] / 1000,
        "cpu_us_per_req": (c1 - c0) * 1e6 / requests if requests else float("nan"),
        "envoy_cpu_pct": (c1 - c0) / (t1 - t0) * 100,
        "rss_mib": rss, "requests": requests, "non2xx": non2xx, "responses": classes,
        "token_wraps": w["wraps"], "pool": pool,
        "jwt_stats_delta": {k: j1[k] - j0.get(k, 0) for k in j1 if j1[k] - j0.get(k, 0)},
        "invalid": problems,
    }


# -- memory part -------------------------------------------------------------------------
def fill(envoy: bl.Envoy, workers: int, tokens: list[str], per_conn: int) -> dict:
    """Opens one connection per worker (exact balancing puts each on its own worker), then
    sends `per_conn` distinct tokens on each, concurrently. Returns statuses seen."""
    import http.client

    conns = []
    for _ in range(workers):
        c = http.client.HTTPConnection("127.0.0.1", envoy.port, timeout=30)
        c.connect()
        conns.append(c)
        time.sleep(0.05)
    time.sleep(0.3)
    stats = envoy.stats()
    per_worker = {k: v for k, v in stats.items()
                  if re.match(r"listener\.127\.0\.0\.1_\d+\.worker_\d+\.downstream_cx_active$", k)}
    statuses: dict[int, int] = {}
    lock = threading.Lock()

    def send(j: int) -> None:
        seen: dict[int, int] = {}
        for tok in tokens[j * per_conn:(j + 1) * per_conn]:
            conns[j].request("GET", "/", headers={"authorization": f"Bearer {tok}"})
            resp = conns[j].getresponse()
            resp.read()
            seen[resp.status] = seen.get(resp.status, 0) + 1
        with lock:
            for k, v in seen.items():
                statuses[k] = statuses.get(k, 0) + v

    threads = [threading.Thread(target=send, args=(j,)) for j in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    for c in conns:
        c.close()
    return {"statuses": statuses, "connections_per_worker": sorted(per_worker.values())}


def memory_part(jwks_text: str, rs_tokens: list[str]) -> dict:
    out = {"fill_per_worker": FILL, "token_bytes": len(rs_tokens[0]), "rows": []}
    variants = {
        "passthrough": [],
        "noop": http_filters("noop", jwks_text, None),
        "noop-min": http_filters("noop-min", jwks_text, None),
        "jwt-edge": [bl.jwt_edge_filter(filter_json(jwks_text, MEMORY_CACHE_SIZE), MODULES["jwt_edge"])],
    }
    for workers in MEMORY_WORKERS:
        for name, filters in variants.items():
            config = bl.envoy_config(filters, balance_workers=True)
            with bl.Envoy(config, bl.WORK / "mem" / f"{name}-{workers}", concurrency=workers,
                          cpus="0,1") as envoy:
                time.sleep(1.0)
                idle = envoy.rss_mib()
                s0 = envoy.stats()
                t0 = time.monotonic()
                f = fill(envoy, workers, rs_tokens, FILL)
                took = time.monotonic() - t0
                s1 = envoy.stats()
                time.sleep(1.0)
                rss = envoy.rss_mib()
            misses = s1.get("wasmcustom.jwt_edge.jwt_cache_miss", 0) - s0.get("wasmcustom.jwt_edge.jwt_cache_miss", 0)
            hits = s1.get("wasmcustom.jwt_edge.jwt_cache_hit", 0) - s0.get("wasmcustom.jwt_edge.jwt_cache_hit", 0)
            problems = []
            if set(f["statuses"]) != {200} or sum(f["statuses"].values()) != workers * FILL:
                problems.append(f"statuses {f['statuses']}")
            if f["connections_per_worker"] != [1] * workers:
                problems.append(f"connections per worker {f['connections_per_worker']}")
            if name == "jwt-edge" and (misses != workers * FILL or hits):
                problems.append(f"cache misses {misses:.0f} hits {hits:.0f}, expected "
                                f"{workers * FILL} and 0")
            row = {"workers": workers, "variant": name, "rss_idle_mib": idle, "rss_mib": rss,
                   "fill_s": took, "cache_misses": misses, "invalid": problems}
            out["rows"].append(row)
            print(f"  memory {name:<11} workers={workers}: RSS {idle:6.1f} MiB idle, {rss:6.1f} MiB "
                  f"after {workers}x{FILL} requests ({took:.0f} s)"
                  + (f"  INVALID: {'; '.join(problems)}" if problems else ""), flush=True)
    return out


def schedule(rounds: int, modes, workloads, variants):
    """(round, mode, workload, variant) in run order: every combination once per round, the
    variant order rotated each round, so that no variant always runs first or last."""
    for rnd in range(rounds):
        for mode in modes:
            for workload in workloads:
                shift = rnd % len(variants)
                for variant in variants[shift:] + variants[:shift]:
                    yield rnd, mode, workload, variant


# -- report ------------------------------------------------------------------------------
def fmt_ratio(x: float) -> str:
    return f"{x:.2f}x" if x == x else "-"


def summarise(runs: list[dict]) -> dict:
    """Per mode and workload: medians per variant, medians of per-round ratios, and CPU µs per
    request over passthrough and over the lowest floor (the lower of noop and noop-min in the
    same round)."""
    summary = {}
    for mode in MODES:
        for workload in WORKLOADS:
            sel = [r for r in runs if r["mode"] == mode and r["workload"] == workload]
            if sel:
                summary[f"{mode}/{workload}"] = summarise_one(sel, VARIANTS)
    return summary


def per_round(runs: list[dict], variant: str) -> dict[int, dict]:
    return {r["round"]: r for r in runs if r["variant"] == variant}


def summarise_one(runs: list[dict], variants: tuple[str, ...]) -> dict:
    """`runs`: one mode and workload. Medians per variant, per-round ratios, extra CPU."""
    per_variant = {}
    for v in variants:
        rs = [r for r in runs if r["variant"] == v]
        per_variant[v] = {
            k: bl.median([r[k] for r in rs])
            for k in ("rps", "p50_ms", "p99_ms", "cpu_us_per_req", "envoy_cpu_pct", "rss_mib")
        }
        per_variant[v]["non2xx"] = sum(r["non2xx"] for r in rs)
        per_variant[v]["runs"] = len(rs)
        per_variant[v]["invalid_runs"] = sum(1 for r in rs if r["invalid"])
        per_variant[v]["token_wraps"] = sum(r["token_wraps"] for r in rs)
    ratios = {}
    for num, den in (("jwt-edge", "jwt_authn"), ("jwt_authn", "passthrough"),
                     ("jwt-edge", "passthrough"), ("noop", "passthrough"),
                     ("noop-min", "noop"), ("jwt-edge", "noop"), ("jwt-edge", "baseline"),
                     ("baseline", "jwt_authn")):
        if num not in variants or den not in variants:
            continue
        rr = {}
        a, b = per_round(runs, num), per_round(runs, den)
        for k in ("rps", "p50_ms", "p99_ms", "cpu_us_per_req"):
            rr[k] = bl.median([a[n][k] / b[n][k] for n in a if n in b and b[n][k]])
        ratios[f"{num} / {den}"] = rr
    base = per_round(runs, "passthrough")
    floors = [per_round(runs, f) for f in FLOORS if f in variants]
    lowest = {n: min(f[n]["cpu_us_per_req"] for f in floors) for n in (floors[0] if floors else {})
              if all(n in f for f in floors)}
    extra, over_floor = {}, {}
    for v in variants:
        rv = per_round(runs, v)
        extra[v] = bl.median([rv[n]["cpu_us_per_req"] - base[n]["cpu_us_per_req"]
                              for n in rv if n in base])
        over_floor[v] = bl.median([rv[n]["cpu_us_per_req"] - lowest[n] for n in rv if n in lowest])
    return {"variants": per_variant, "ratios": ratios, "extra_cpu_us": extra,
            "over_lowest_floor_us": over_floor}


def print_tables(summary: dict, memory: dict | None, sizes: dict, meta: dict) -> None:
    print(f"\n== make bench: Envoy {meta['envoy']} --concurrency 1 (taskset -c 0); "
          f"wrk -t1 -c{CONNECTIONS} -d{SECONDS}s (taskset -c 1); {ROUNDS} round(s), medians; "
          f"modes: {', '.join(MODE_TEXT[m] for m in MODES)}")
    g, m = meta["git"], meta["modules"]["jwt_edge"]
    print(f"   {meta['quiet_note']}; load at end {meta['load_end']:.2f}")
    print(f"   jwt_edge.wasm sha256 {m['sha256']}, built {m['built']}; tree at start: commit "
          f"{g['commit']}" + (f" + {g['src_dirty_files']} uncommitted src/Cargo files"
                              if g["src_dirty_files"] else " (clean)"))
    if meta["rebuilt_during_run"]:
        print(f"   note: {', '.join(meta['rebuilt_during_run'])} was rebuilt in target/ during the "
              f"run; every run loaded the snapshot taken at the start")
    for key, s in summary.items():
        mode, workload = key.split("/")
        print(f"\n-- {workload}, {MODE_TEXT[mode]}: {WORKLOADS[workload][0]}")
        print_table(s, WORKLOADS[workload][2] is None)
    if memory:
        print_memory(memory)
    print(f"\n-- module size: jwt_edge.wasm {sizes['jwt_edge']:,} B = {sizes['jwt_edge'] / 2**20:.2f} MiB "
          f"(goal < 1 MiB: {'met' if sizes['jwt_edge'] < 2**20 else 'NOT met'}); "
          f"noop {sizes['noop']:,} B, noop-min {sizes['noop-min']:,} B")


def print_table(s: dict, distinct: bool) -> None:
    """One mode and workload: the variants, the ratios, CPU over passthrough and the floor."""
    w = max(12, *(len(v) for v in s["variants"]))
    head = (f"{'variant':<{w}} | {'req/s':>8} | {'p50 ms':>7} | {'p99 ms':>7} | {'CPU µs/req':>10} | "
            f"{'Envoy CPU':>9} | {'RSS MiB':>7} | {'non-2xx':>7} | note")
    print(head)
    print("-" * len(head))
    for v, m in s["variants"].items():
        note = []
        if m["invalid_runs"]:
            note.append(f"INVALID ({m['invalid_runs']}/{m['runs']} runs)")
        if m["token_wraps"] and distinct and v != "passthrough":
            note.append("tokens repeated (pool too small)")
        print(f"{v:<{w}} | {m['rps']:8.0f} | {m['p50_ms']:7.2f} | {m['p99_ms']:7.2f} | "
              f"{m['cpu_us_per_req']:10.1f} | {m['envoy_cpu_pct']:8.0f}% | {m['rss_mib']:7.1f} | "
              f"{m['non2xx']:7.0f} | {' '.join(note)}")
    print(f"{'ratio':<24} | {'req/s':>6} | {'p50':>6} | {'p99':>6} | {'CPU/req':>7}")
    for name, rr in s["ratios"].items():
        print(f"{name:<24} | {fmt_ratio(rr['rps']):>6} | {fmt_ratio(rr['p50_ms']):>6} | "
              f"{fmt_ratio(rr['p99_ms']):>6} | {fmt_ratio(rr['cpu_us_per_req']):>7}")
    e, f = s["extra_cpu_us"], s["over_lowest_floor_us"]
    if "passthrough" in s["variants"]:
        print("Envoy CPU µs/request over passthrough: "
              + ", ".join(f"{v} {e[v]:.1f}" for v in s["variants"] if v != "passthrough"))
    print("Envoy CPU µs/request over the lowest floor (min of noop, noop-min, same round): "
          + ", ".join(f"{v} {f[v]:+.1f}" for v in s["variants"] if v not in FLOORS))


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs."""
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else float("nan")


def print_memory(memory: dict) -> None:
    """RSS per worker count, and what a worker VM adds (the slope over worker counts: the
    module's code and Envoy's per-process Wasm set-up are paid once, not per VM)."""
    by = {(r["workers"], r["variant"]): r for r in memory["rows"]}
    ws = sorted({r["workers"] for r in memory["rows"]})
    cols = {"passthrough": lambda w: by[(w, "passthrough")]["rss_mib"],
            "noop wasm": lambda w: by[(w, "noop")]["rss_mib"],
            "jwt-edge idle": lambda w: by[(w, "jwt-edge")]["rss_idle_mib"],
            "jwt-edge filled": lambda w: by[(w, "jwt-edge")]["rss_mib"]}
    print(f"\n-- memory: Envoy VmRSS (MiB); 'filled': after each worker's VM verified and cached "
          f"{memory['fill_per_worker']} distinct RS256 tokens ({memory['token_bytes']} B each), "
          f"jwt_cache_size {MEMORY_CACHE_SIZE}")
    head = f"{'workers':>7} | " + " | ".join(f"{c:>15}" for c in cols) + " | filled - noop"
    print(head)
    print("-" * len(head))
    for w in ws:
        bad = any(by[(w, v)]["invalid"] for v in ("passthrough", "noop", "noop-min", "jwt-edge"))
        print(f"{w:>7} | " + " | ".join(f"{f(w):15.1f}" for f in cols.values())
              + f" | {cols['jwt-edge filled'](w) - cols['noop wasm'](w):13.1f}"
              + ("  INVALID" if bad else ""))
    if len(ws) > 1:
        sl = {c: slope(ws, [f(w) for w in ws]) for c, f in cols.items()}
        print("MiB per extra worker VM (slope over " + "/".join(map(str, ws)) + " workers): "
              + ", ".join(f"{c} {v:.2f}" for c, v in sl.items()))
        print(f"=> jwt-edge over the do-nothing filter, per VM: idle {sl['jwt-edge idle'] - sl['noop wasm']:.2f} MiB, "
              f"with {memory['fill_per_worker']} cached tokens {sl['jwt-edge filled'] - sl['noop wasm']:.2f} MiB "
              f"(goal <= 4 MiB); once per process: "
              f"{cols['jwt-edge idle'](ws[0]) - cols['noop wasm'](ws[0]) - ws[0] * (sl['jwt-edge idle'] - sl['noop wasm']):.1f} MiB")
    fills = [(by[(w, "jwt-edge")]["rss_mib"] - by[(w, "jwt-edge")]["rss_idle_mib"]) / w for w in ws]
    print("cache fill, (filled - idle) / workers, MiB per VM: "
          + ", ".join(f"{w} workers {f:.2f}" for w, f in zip(ws, fills)))


def main() -> None:
    for path in (bl.JWT_EDGE_WASM, bl.NOOP_WASM, bl.NOOP_MIN_WASM):
        if not path.exists():
            sys.exit(f"{path} is missing: run `make bench`")
    bl.WORK.mkdir(parents=True, exist_ok=True)
    started = time.time()
    modules = snapshot_modules(with_micro=False)
    git_at_start = bl.git_state()
    keys = load_keys()
    jwks_text = json.dumps(jwks(list(keys.values())), separators=(",", ":"))
    ensure_pool(keys, "RS256", POOL)  # the memory part's tokens too
    files = token_files(keys, WORKLOADS)
    rs_tokens = pool_file("RS256").read_text().split()

    print("checking that the machine is quiet (1-min load average < 1.0) ...", flush=True)
    quiet = bl.wait_for_quiet(QUIET_WAIT)
    print(f"  {bl.quiet_note(quiet)}", flush=True)

    runs = []
    with contextlib.ExitStack() as stack:
        nginx = (stack.enter_context(bl.Nginx(bl.WORK / "nginx")) if "upstream" in MODES else None)
        for rnd, mode, workload, variant in schedule(ROUNDS, MODES, WORKLOADS, VARIANTS):
            r = throughput_run(rnd, mode, workload, variant, jwks_text, files,
                               nginx.port if nginx else None)
            runs.append(r)
            print(f"  round {rnd + 1}/{ROUNDS} {mode:<8} {workload:<15} {variant:<12} {r['rps']:7.0f} req/s "
                  f"p50 {r['p50_ms']:6.2f} ms p99 {r['p99_ms']:6.2f} ms "
                  f"{r['cpu_us_per_req']:7.1f} CPU µs/req ({r['envoy_cpu_pct']:.0f}% CPU) "
                  f"RSS {r['rss_mib']:.0f} MiB"
                  + (f"  INVALID: {'; '.join(r['invalid'])}" if r["invalid"] else ""), flush=True)

    memory = memory_part(jwks_text, rs_tokens) if MEMORY else None
    sizes = {name: m["bytes"] for name, m in modules.items()}
    summary = summarise(runs)
    meta = {"envoy": bl.envoy_version(), "quiet": quiet, "quiet_note": bl.quiet_note(quiet),
            "load_end": bl.load1(), "git": git_at_start, "modules": modules,
            "rebuilt_during_run": [n for n, m in modules.items() if bl.changed_since(m)]}
    print_tables(summary, memory, sizes, meta)

    bl.RESULTS.mkdir(exist_ok=True)
    out = bl.RESULTS / "latest.json"
    out.write_text(json.dumps({
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_s": round(time.time() - started),
        "settings": {"rounds": ROUNDS, "seconds": SECONDS, "warmup_s": WARMUP, "quick": QUICK,
                     "modes": MODES,
                     "connections": CONNECTIONS, "pool": {w: files[f"{w}:n"] for w in WORKLOADS},
                     "fill": FILL, "memory_workers": MEMORY_WORKERS},
        "meta": meta, "summary": summary, "memory": memory, "wasm_bytes": sizes, "runs": runs,
        "filter_json_example": filter_json("<JWKS>", None),
    }, indent=1) + "\n")
    print(f"\nwritten: {out.relative_to(bl.REPO)} ({round(time.time() - started)} s)")
    if any(r["invalid"] for r in runs) or (memory and any(r["invalid"] for r in memory["rows"])):
        print("SOME RUNS ARE INVALID (see INVALID above)")


if __name__ == "__main__":
    main()
