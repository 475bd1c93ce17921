"""Remote JWKS through the `idp` cluster: first fetch, held requests, IdP failures, rotation.

Each test gets its own IdP and its own Envoy (2 workers, so 2 worker VMs plus the main-thread
VM share one key cache), because the key cache's state is what is under test.
"""

from __future__ import annotations

import threading
import time

import pytest

from harness import client
from harness.expect import assert_denied, assert_passed
from harness.tokens import mint
from harness.waits import wait_until

IDP_ISS = "https://idp.test/"
UNAVAILABLE_DEADLINE_S = 20  # the filter holds requests for a few seconds at most
INSTALL_SETTLE_S = 0.5  # five ticks: every VM has synced from shared data
CONCURRENCY = 2  # two worker VMs plus the main-thread VM share one key cache


def config(idp, cache_duration: str = "600s", timeout: str = "5s") -> dict:
    return {
        "providers": {"idp": {
            "issuer": IDP_ISS,
            "audiences": ["api"],
            "remote_jwks": {"http_uri": {"uri": idp.jwks_uri, "cluster": "idp", "timeout": timeout},
                            "cache_duration": cache_duration},
            "claim_to_headers": [{"header_name": "x-jwt-sub", "claim_name": "sub"}],
        }},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "idp"}}],
    }


def get(envoy, token: str | None, path: str = "/"):
    headers = [("authorization", f"Bearer {token}")] if token else []
    return client.request(envoy.url(path), headers=headers, timeout=UNAVAILABLE_DEADLINE_S + 10)


def poll(fn, timeout: float, interval: float = 0.25):
    """`wait_until` with this suite's slower default interval."""
    return wait_until(fn, timeout, interval)


def wait_for_keys(envoy, token: str, timeout: float = 20) -> None:
    """Lets the first fetch finish, for tests about what happens after it (only
    test_requests_at_startup_wait_for_slow_jwks is about requests that arrive before it)."""
    poll(lambda: get(envoy, token).status == 200, timeout=timeout)


def test_requests_at_startup_wait_for_slow_jwks(envoy_factory, own_idp, keys):
    own_idp.set_mode("slow", delay=1.0)
    envoy = envoy_factory(config(own_idp), concurrency=CONCURRENCY, idp=own_idp)
    good, forged = mint(keys["rsa-1"]), mint(keys["rsa-1"], signing_key=keys["rsa-evil"])
    results: dict[str, object] = {}

    def send(name, token):
        t0 = time.monotonic()
        results[name] = (get(envoy, token), time.monotonic() - t0)

    threads = [threading.Thread(target=send, args=(n, t)) for n, t in
               (("good", good), ("forged", forged), ("ec", mint(keys["ec-p256"])))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=UNAVAILABLE_DEADLINE_S + 15)
    resp, _elapsed = results["good"]
    assert assert_passed(resp)["headers"]["x-jwt-sub"] == "alice"
    assert_passed(results["ec"][0])
    assert_denied(results["forged"][0], "bad_signature", authority=envoy.authority, path="/")
    assert own_idp.count() >= 1
    # Once loaded, the keys answer at once.
    t0 = time.monotonic()
    assert_passed(get(envoy, good))
    assert time.monotonic() - t0 < 0.9


def test_jwks_is_fetched_once_for_many_requests(envoy_factory, own_idp, keys):
    envoy = envoy_factory(config(own_idp), concurrency=CONCURRENCY, idp=own_idp)
    token = mint(keys["rsa-1"])
    wait_for_keys(envoy, token)
    for _ in range(20):
        assert_passed(get(envoy, token))
    # One fetch per refresh period for the whole Envoy (a shared-data lease elects the
    # fetcher); allow one per VM in case two VMs raced at startup.
    assert 1 <= own_idp.count() <= 3, own_idp.counts


@pytest.mark.parametrize("mode", ["down", "status500", "garbage", "oversized"])
def test_unusable_idp_gives_503(envoy_factory, own_idp, keys, mode):
    own_idp.set_mode(mode)
    envoy = envoy_factory(config(own_idp), concurrency=CONCURRENCY, idp=own_idp)
    t0 = time.monotonic()
    resp = get(envoy, mint(keys["rsa-1"]))
    assert time.monotonic() - t0 < UNAVAILABLE_DEADLINE_S
    assert_denied(resp, "jwks_unavailable", authority=envoy.authority, path="/")
    # A request with no token is still a plain 401: no keys are needed to see that.
    assert_denied(get(envoy, None), "token_missing", authority=envoy.authority, path="/")
    if mode != "down":
        assert own_idp.count() >= 1


def test_recovers_when_idp_comes_back(envoy_factory, own_idp, keys):
    own_idp.set_mode("down")
    envoy = envoy_factory(config(own_idp), concurrency=CONCURRENCY, idp=own_idp)
    token = mint(keys["rsa-1"])
    assert get(envoy, token).status == 503
    own_idp.set_mode("normal")
    # Fetch retries back off (1 s doubling, capped at 30 s): recovery within ~35 s.
    resp = poll(lambda: (r := get(envoy, token)).status == 200 and r, timeout=45)
    assert resp, f"still failing after the IdP came back; last: {get(envoy, token)!r}"
    assert_passed(resp)


def test_key_rotation(envoy_factory, own_idp, keys):
    envoy = envoy_factory(config(own_idp, cache_duration="2s"), concurrency=CONCURRENCY, idp=own_idp)
    old, new = mint(keys["rsa-1"]), mint(keys["rsa-2"])
    wait_for_keys(envoy, old)
    assert_passed(get(envoy, old))
    assert_denied(get(envoy, new), "unknown_kid", authority=envoy.authority, path="/")

    own_idp.rotate(keys["rsa-2"])
    assert poll(lambda: get(envoy, new).status == 200, timeout=25), "new key never accepted"
    assert_passed(get(envoy, old))

    own_idp.rotate(keys["rsa-2"], drop_kid="rsa-1")
    assert poll(lambda: get(envoy, old).status == 401, timeout=25), "retired key still accepted"
    # One VM fetched and installed the new set; every other VM installs it on its next tick
    # (100 ms), so a request to another worker may still pass for that long: then none does.
    time.sleep(INSTALL_SETTLE_S)
    for _ in range(2 * CONCURRENCY + 2):
        assert_denied(get(envoy, old), "unknown_kid", authority=envoy.authority, path="/")
    assert_passed(get(envoy, new))


def test_broken_refresh_keeps_last_good_keys(envoy_factory, own_idp, keys):
    envoy = envoy_factory(config(own_idp, cache_duration="1s"), concurrency=CONCURRENCY, idp=own_idp)
    token = mint(keys["rsa-1"])
    wait_for_keys(envoy, token)
    assert_passed(get(envoy, token))
    own_idp.set_mode("garbage")
    fetched = own_idp.count()
    assert poll(lambda: own_idp.count() > fetched, timeout=15), "no refresh attempted"
    for _ in range(5):
        assert_passed(get(envoy, token))
