"""The shipped module runs RSA on fused multiply-add where the host can (issue 13): it
contains `f64x2.relaxed_madd` (cargo feature `rsa-fma`, on by default), the Envoy under test
loads it, and the probe at VM start picks the path the CPU allows. V8 emits `relaxed_madd` as
one fused instruction on x86-64 with FMA3 and on arm64, and as a multiply then an add on x86-64
without FMA3, where the known answer fails and the integer code runs. `make test-matrix` runs
this against every Envoy version the project claims."""

from __future__ import annotations

import platform
import re
import subprocess
import sys
from pathlib import Path

from harness import envoy as envoy_harness
from harness.config import REPO

FMA = "f64x2.relaxed_madd (fused), 52-bit limbs"
INTEGER = "integer, 28-bit limbs"


def cpu_fuses_madd() -> bool:
    machine = platform.machine().lower()
    if machine in ("aarch64", "arm64"):
        return True
    flags = Path("/proc/cpuinfo").read_text()
    return re.search(r"^flags\s*:.*\bfma\b", flags, re.M) is not None


def test_module_carries_relaxed_madd(wasm_path, tmp_path):
    # mk/relaxed_simd.py decodes every function body and counts the instructions it swaps.
    out = subprocess.run([sys.executable, str(REPO / "mk" / "relaxed_simd.py"), "to-legacy",
                          str(wasm_path), str(tmp_path / "legacy.wasm")],
                         capture_output=True, text=True, check=True).stdout
    count = int(re.search(r": (\d+) instructions", out).group(1))
    assert count > 0, out


def test_vm_start_picks_the_fused_path_where_the_cpu_has_fma(wasm_path, tmp_path):
    text = (REPO / "envoy" / "envoy.yaml").read_text()
    text, n = re.subn(r"(filename:\s*)\S*jwt_edge\.wasm", rf"\g<1>{wasm_path}", text)
    assert n == 1
    config = tmp_path / "envoy.yaml"
    config.write_text(text)
    result = envoy_harness.validate(config)
    output = result.stdout + result.stderr
    assert result.returncode == 0, envoy_harness.tail(output, 60)
    reported = re.findall(r"RSA arithmetic: ([^\n]*?)\s*$", output, re.M)
    assert reported, envoy_harness.tail(output, 60)
    want = FMA if cpu_fuses_madd() else INTEGER
    assert set(reported) == {want}, reported
