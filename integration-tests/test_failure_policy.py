"""What Envoy's Wasm `failure_policy` does when the filter's VM is missing or broken.

Two moments matter:

- **Load time.** A plugin that cannot start (jwt-edge refusing its configuration in
  `on_configure`, a module file that is missing or not Wasm) is refused by Envoy under every
  policy, FAIL_OPEN included: `--mode validate` fails and a real start exits before it is
  ready. A bad jwt-edge config can never come up "open".
- **Run time.** Once a VM has trapped, the policy decides. jwt-edge is written never to trap
  and no request in test_attacks.py (or the soak) makes it, so a stand-in filter is used:
  `trap_filter/trap_filter.rs` answers 401 without an `authorization` header, lets requests
  with one through, and traps on `x-trap`. The tests pin what follows a trap:
  FAIL_CLOSED (and the unset default) answers 503 to everything until Envoy gets a new
  config; FAIL_OPEN skips the filter, so requests **without credentials reach the backend**;
  FAIL_RELOAD answers 503 during the reload backoff and then runs a fresh VM, which
  authenticates again.

See docs/failure-policy.md for the recommendation drawn from this.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from harness import client
from harness import config as envoy_config
from harness import envoy as envoy_harness
from harness.envoy import EnvoyExited
from harness.keys import jwks

HERE = Path(__file__).resolve().parent
TRAP_FILTER_SRC = HERE / "trap_filter" / "trap_filter.rs"

# None: the field is left out (Envoy's default, which is FAIL_CLOSED).
POLICIES = [None, "FAIL_CLOSED", "FAIL_OPEN", "FAIL_RELOAD"]
POLICY_IDS = ["unset", "FAIL_CLOSED", "FAIL_OPEN", "FAIL_RELOAD"]

CREDENTIALS = [("authorization", "Bearer anything")]
TRAP = [("x-trap", "1"), *CREDENTIALS]
# Longer than Envoy's default reload backoff (1 s base interval, ReloadConfig).
OBSERVE_S = 3.0
RELOAD_DEADLINE_S = 15.0


def plugin(wasm: str | Path, configuration: dict | str, policy: str | None) -> dict:
    """The Wasm HTTP filter block with `failure_policy` set to `policy` (or left out)."""
    block = envoy_config.wasm_filter(configuration, wasm)
    cfg = block["typed_config"]["config"]
    cfg.pop("failure_policy", None)
    if policy is not None:
        cfg["failure_policy"] = policy
    return block


def render(wasm, configuration, policy, backends) -> str:
    return envoy_harness.render(
        envoy_config.default_routes(),
        [plugin(wasm, configuration, policy), envoy_config.router_filter()],
        [envoy_config.static_cluster("backend", [("127.0.0.1", b.port) for b in backends])],
    )


def valid_jwt_edge_config(published_keys) -> dict:
    return {"providers": {"p": {"issuer": "https://idp.test/", "audiences": ["api"],
                                "local_jwks": {"inline_string": json.dumps(jwks(published_keys))}}},
            "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "p"}}]}


@pytest.fixture(scope="session")
def trap_wasm(tmp_path_factory) -> Path:
    rustc = shutil.which("rustc")
    if rustc is None:
        pytest.fail("rustc not found: `make toolchain` installs the wasm32-wasip1 target", pytrace=False)
    out = tmp_path_factory.mktemp("trap-filter") / "trap_filter.wasm"
    subprocess.run([rustc, "--edition", "2021", "--target", "wasm32-wasip1", "--crate-type", "cdylib",
                    "-C", "opt-level=s", "-C", "strip=debuginfo", "-o", str(out), str(TRAP_FILTER_SRC)],
                   check=True, capture_output=True, timeout=300)
    return out


# ---------------------------------------------------------------------------------------
# Load time: a plugin that cannot start is refused under every policy
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def not_wasm(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("not-wasm") / "jwt_edge.wasm"
    path.write_bytes(b"\x00asm this is not a module")
    return path


BREAKAGES = ["config-rejected", "module-missing", "module-not-wasm"]


def broken_plugin(breakage: str, wasm_path: Path, not_wasm: Path, published_keys) -> tuple[Path, dict | str]:
    if breakage == "config-rejected":
        return wasm_path, {"providers": {}}  # on_configure returns false
    if breakage == "module-missing":
        return wasm_path.parent / "no-such-module.wasm", valid_jwt_edge_config(published_keys)
    return not_wasm, valid_jwt_edge_config(published_keys)


@pytest.mark.parametrize("policy", POLICIES, ids=POLICY_IDS)
@pytest.mark.parametrize("breakage", BREAKAGES)
def test_broken_plugin_fails_validation(tmp_path, wasm_path, not_wasm, published_keys, backends,
                                        breakage, policy):
    wasm, configuration = broken_plugin(breakage, wasm_path, not_wasm, published_keys)
    config_path = tmp_path / "envoy.yaml"
    config_path.write_text(render(wasm, configuration, policy, backends))
    result = envoy_harness.validate(config_path)
    log = result.stdout + result.stderr
    assert result.returncode != 0, f"Envoy accepted a broken plugin under {policy}:\n{envoy_harness.tail(log, 40)}"
    if breakage == "config-rejected":
        assert "jwt-edge configuration rejected: providers" in log, envoy_harness.tail(log, 40)
        assert "Unable to create Wasm plugin jwt_edge" in log, envoy_harness.tail(log, 40)


@pytest.mark.parametrize("policy", POLICIES, ids=POLICY_IDS)
def test_rejected_config_stops_envoy_at_start(tmp_path, wasm_path, backends, policy):
    proc = envoy_harness.EnvoyProcess(render(wasm_path, {"providers": {}}, policy, backends), tmp_path)
    with pytest.raises(EnvoyExited) as exited:
        proc.start(timeout=60)
    assert exited.value.returncode != 0
    assert "jwt-edge configuration rejected" in exited.value.log
    assert "Plugin jwt_edge failed to load" in exited.value.log


def test_valid_config_loads_under_every_policy(tmp_path, wasm_path, published_keys, backends):
    """The control for the tests above: the same blocks with a good config validate."""
    for policy, name in zip(POLICIES, POLICY_IDS):
        path = tmp_path / f"{name}.yaml"
        path.write_text(render(wasm_path, valid_jwt_edge_config(published_keys), policy, backends))
        result = envoy_harness.validate(path)
        assert result.returncode == 0, envoy_harness.tail(result.stdout + result.stderr, 40)


# ---------------------------------------------------------------------------------------
# Run time: after a trap
# ---------------------------------------------------------------------------------------
def get(envoy, headers) -> client.Response:
    return client.request(envoy.url("/"), headers=headers, timeout=10)


def observe(envoy, seconds: float) -> list[tuple[str, int]]:
    """Alternates requests without and with credentials for `seconds`; (kind, status) each."""
    out = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        out.append(("no-credentials", get(envoy, []).status))
        out.append(("credentials", get(envoy, CREDENTIALS).status))
        time.sleep(0.1)
    return out


@pytest.fixture
def trap_envoy(tmp_path, trap_wasm, backends):
    started = []

    def start(policy):
        proc = envoy_harness.EnvoyProcess(render(trap_wasm, "{}", policy, backends), tmp_path / str(policy))
        started.append(proc)
        proc.start()
        # Healthy VM: the stand-in authenticates.
        assert get(proc, []).status == 401
        assert get(proc, CREDENTIALS).status == 200
        # Break it: the request that traps is answered 503 under every policy.
        assert get(proc, TRAP).status == 503
        assert "Function: proxy_on_request_headers failed: Uncaught RuntimeError: unreachable" in proc.log_text()
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.mark.parametrize("policy", [None, "FAIL_CLOSED"], ids=["unset", "FAIL_CLOSED"])
def test_fail_closed_answers_503_until_restart(trap_envoy, policy):
    envoy = trap_envoy(policy)
    seen = observe(envoy, OBSERVE_S)
    assert {status for _, status in seen} == {503}, seen
    stats = envoy.stats()
    assert stats.get("wasm.jwt_edge.vm_reload_success", 0) == 0


def test_fail_open_skips_the_filter_and_lets_unauthenticated_requests_through(trap_envoy, backends):
    """The reason FAIL_OPEN must never be used for an authentication filter."""
    envoy = trap_envoy("FAIL_OPEN")
    before = sum(b.count for b in backends)
    seen = observe(envoy, OBSERVE_S)
    assert {status for _, status in seen} == {200}, seen
    assert sum(b.count for b in backends) - before == len(seen), "requests without credentials reached a backend"


def test_fail_reload_answers_503_then_authenticates_again(trap_envoy):
    envoy = trap_envoy("FAIL_RELOAD")
    seen: list[tuple[str, int]] = []
    deadline = time.monotonic() + RELOAD_DEADLINE_S
    while time.monotonic() < deadline:
        status = get(envoy, []).status
        seen.append(("no-credentials", status))
        if status == 401:
            break
        time.sleep(0.1)
    assert seen[-1] == ("no-credentials", 401), f"the VM was not reloaded: {seen}"
    # Until the reload, fail closed: nothing without credentials got through.
    assert {s for _, s in seen[:-1]} <= {503}, seen
    assert get(envoy, CREDENTIALS).status == 200
    stats = envoy.stats()
    assert stats.get("wasm.jwt_edge.vm_reload_success", 0) >= 1, stats
    # It can break again, and reload again.
    assert get(envoy, TRAP).status == 503
    seen2 = []
    deadline = time.monotonic() + RELOAD_DEADLINE_S
    while time.monotonic() < deadline:
        seen2.append(get(envoy, []).status)
        if seen2[-1] == 401:
            break
        time.sleep(0.1)
    assert seen2[-1] == 401 and set(seen2[:-1]) <= {503}, seen2
    assert envoy.stats().get("wasm.jwt_edge.vm_reload_success", 0) >= 2
