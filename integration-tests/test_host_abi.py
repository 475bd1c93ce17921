"""The module's imports against the hosts' function tables (mk/wasm_imports.py, run by
`make build`): the shipped module passes for Envoy and ngx_wasm_module, and a module importing
`proxy_get_log_level` with the ABI's signature is refused for ngx_wasm_module, as that host
refuses to instantiate it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHECK = REPO / "mk" / "wasm_imports.py"
ENVOY = REPO / "mk" / "host-abi" / "envoy.tsv"
NGX = REPO / "mk" / "host-abi" / "ngx_wasm_module.tsv"


def leb(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def name(s: str) -> bytes:
    return leb(len(s)) + s.encode()


def section(sid: int, body: bytes) -> bytes:
    return bytes([sid]) + leb(len(body)) + body


def module(imports: list[tuple[str, str, int, int]]) -> bytes:
    """A module importing functions (module, name, i32 params, i32 results)."""
    types = b"".join(b"\x60" + leb(p) + b"\x7f" * p + leb(r) + b"\x7f" * r
                     for _, _, p, r in imports)
    entries = b"".join(name(m) + name(n) + b"\x00" + leb(i)
                       for i, (m, n, _, _) in enumerate(imports))
    return (b"\0asm\x01\0\0\0" + section(1, leb(len(imports)) + types)
            + section(2, leb(len(imports)) + entries))


def check(wasm: Path, *tables: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CHECK), str(wasm), *map(str, tables)],
                          capture_output=True, text=True, timeout=60)


def test_the_shipped_module_imports_only_what_both_hosts_provide(wasm_path):
    result = check(wasm_path, ENVOY, NGX)
    assert result.returncode == 0, result.stderr
    assert "each provided with its signature by envoy, ngx_wasm_module" in result.stdout
    listed = subprocess.run([sys.executable, str(CHECK), "--list", str(wasm_path)],
                            capture_output=True, text=True, timeout=60, check=True).stdout
    assert "proxy_get_log_level" not in listed
    assert "env\tproxy_log\ti32,i32,i32\ti32" in listed.splitlines()


def test_proxy_get_log_level_is_refused_for_ngx_wasm_module(tmp_path):
    wasm = tmp_path / "m.wasm"
    wasm.write_bytes(module([("env", "proxy_log", 3, 1), ("env", "proxy_get_log_level", 1, 1)]))
    assert check(wasm, ENVOY).returncode == 0
    result = check(wasm, ENVOY, NGX)
    assert result.returncode == 1
    assert ("ngx_wasm_module.tsv: env.proxy_get_log_level is imported as (i32) -> (i32), "
            "the host declares (i32, i32) -> (i32)") in result.stderr


def test_an_import_no_host_has_is_refused(tmp_path):
    wasm = tmp_path / "m.wasm"
    wasm.write_bytes(module([("env", "proxy_made_up", 2, 1)]))
    result = check(wasm, ENVOY)
    assert result.returncode == 1
    assert "envoy.tsv: env.proxy_made_up (i32, i32) -> (i32) is not a host function there" \
        in result.stderr
