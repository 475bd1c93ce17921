"""Remote revocation lists end to end (issue 6): a provider's `revocation_list` is fetched
through a cluster, shared by every worker, refreshed like a key set, enforced on every
request (verified-token cache hits included), kept when a refresh brings something unusable,
and fails closed (503 `revocation_unavailable`) when there is none to consult.

The IdP serves the list at /revoked.json with its own switch (`Idp.set_revocation`), so the
key set keeps working while the list misbehaves. Waits are computed from the lifecycle's
constants, as in test_lifecycle.py: a refresh is due at 85-95 % of `cache_duration` and is
started within a tick (100 ms); failures are retried after 1 s, 2 s, 4 s ...
"""

from __future__ import annotations

import time


from harness import client
from harness.expect import assert_denied, assert_passed
from harness.tokens import claims, mint
from harness.waits import stat, wait_until

IDP_ISS = "https://idp.test/"
CLIENT_TIMEOUT_S = 30
TICK_BOUND_S = 1.0
SCHED_SLACK_S = 0.5


def config(idp, *, cache_duration="2s", max_stale="3600s", wait="3s", jwt_cache=0,
           inline=None) -> dict:
    provider = {
        "issuer": IDP_ISS,
        "audiences": ["api"],
        "remote_jwks": {"http_uri": {"uri": idp.jwks_uri, "cluster": "idp", "timeout": "5s"},
                        "cache_duration": "600s"},
        "revocation_list": {
            "http_uri": {"uri": idp.revocation_uri, "cluster": "idp", "timeout": "5s"},
            "cache_duration": cache_duration,
            "max_stale": max_stale,
            "request_wait_timeout": wait,
        },
        "claim_to_headers": [{"header_name": "x-jwt-sub", "claim_name": "sub"}],
    }
    if jwt_cache:
        provider["jwt_cache_config"] = {"jwt_cache_size": jwt_cache}
    if inline:
        provider["revoked"] = inline
    return {
        "providers": {"idp": provider},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "idp"}}],
    }


def get(envoy, token: str | None, path: str = "/"):
    headers = [("authorization", f"Bearer {token}")] if token else []
    return client.request(envoy.url(path), headers=headers, timeout=CLIENT_TIMEOUT_S)


def wait_stat(envoy, name: str, at_least: int, timeout: float = 15) -> None:
    assert wait_until(lambda: stat(envoy, name) >= at_least, timeout), \
        f"{name} never reached {at_least}: {stat(envoy, name)}"


def tok(keys, **c) -> str:
    return mint(keys["rsa-1"], claims(**c))


def denied(envoy, resp, code: str) -> None:
    assert_denied(resp, code, authority=envoy.authority, path="/")


# ---------------------------------------------------------------------------------------
def test_list_is_fetched_once_per_proxy_enforced_and_refreshed(envoy_factory, own_idp, keys):
    """A jti or sub put on the list at the IdP is refused within one refresh period, on every
    worker, cache hits included; taking it off lets the token through again."""
    own_idp.set_revocation({"jti": ["j-old"], "sub": []})
    envoy = envoy_factory(config(own_idp, jwt_cache=100), concurrency=2, idp=own_idp)
    a, b, old = tok(keys, jti="j-a"), tok(keys, jti="j-b", sub="bob"), tok(keys, jti="j-old")
    wait_stat(envoy, "jwt_edge.revocation.idp.fetch_success", 1)
    for _ in range(4):  # both workers, and the verified-token cache warm
        assert assert_passed(get(envoy, a))["headers"]["x-jwt-sub"] == "alice"
        assert_passed(get(envoy, b))
        denied(envoy, get(envoy, old), "token_revoked")
    assert stat(envoy, "jwt_edge.revocation.idp.entries") == 1
    assert stat(envoy, "jwt_edge.jwt_cache_hit") >= 4

    # Revoke a's jti and b's subject at the IdP.
    fetched = stat(envoy, "jwt_edge.revocation.idp.fetch_success")
    changed_at = time.monotonic()
    own_idp.set_revocation({"jti": ["j-old", "j-a"], "sub": ["bob"]})
    wait_stat(envoy, "jwt_edge.revocation.idp.fetch_success", fetched + 1, timeout=5)
    time.sleep(0.3)  # every worker's VM picks the new list up on its next tick (100 ms)
    for _ in range(4):
        denied(envoy, get(envoy, a), "token_revoked")
        denied(envoy, get(envoy, b), "token_revoked")
    assert time.monotonic() - changed_at < 0.95 * 2 + TICK_BOUND_S + 0.3 + SCHED_SLACK_S + 1.0
    assert stat(envoy, "jwt_edge.revocation.idp.entries") == 3
    assert stat(envoy, "jwt_edge.provider.idp.denied.token_revoked") == 4 + 8

    # Lifted again.
    fetched = stat(envoy, "jwt_edge.revocation.idp.fetch_success")
    own_idp.set_revocation({})
    wait_stat(envoy, "jwt_edge.revocation.idp.fetch_success", fetched + 1, timeout=5)
    time.sleep(0.3)
    assert_passed(get(envoy, a))
    assert_passed(get(envoy, b))

    # One fetch per refresh for the whole Envoy (2 workers + the main thread's VM).
    wait_until(lambda: stat(envoy, "jwt_edge.revocation.idp.fetch_success")
               == own_idp.count("/revoked.json"), 3)
    assert stat(envoy, "jwt_edge.revocation.idp.fetch_success") == own_idp.count("/revoked.json")
    assert stat(envoy, "jwt_edge.revocation.idp.fetch_failed") == 0
    assert own_idp.count("/jwks.json") == 1, "the list's refreshes do not refetch keys"


def test_cold_start_waits_for_the_list_then_fails_closed(envoy_factory, own_idp, keys):
    own_idp.set_revocation({"error": "internal"}, status=500)
    envoy = envoy_factory(config(own_idp, wait="1s"), idp=own_idp)
    token = tok(keys, jti="j-1")
    # Keys first (a request that arrives before them waits up to the key set's own 3 s).
    wait_stat(envoy, "jwt_edge.jwks.idp.fetch_success", 1)
    time.sleep(0.3)
    t0 = time.monotonic()
    resp = get(envoy, token)
    waited = time.monotonic() - t0
    denied(envoy, resp, "revocation_unavailable")
    assert 0.9 <= waited < 1.0 + TICK_BOUND_S + SCHED_SLACK_S, waited
    assert stat(envoy, "jwt_edge.denied.revocation_unavailable") == 1
    assert stat(envoy, "jwt_edge.paused") == 1
    assert stat(envoy, "jwt_edge.revocation.idp.fetch_failed") >= 1
    # A forgery is still a forgery, and answered at once: it never waits for the list.
    t0 = time.monotonic()
    denied(envoy, get(envoy, mint(keys["rsa-1"], claims(), signing_key=keys["rsa-evil"])),
           "bad_signature")
    assert time.monotonic() - t0 < 0.5
    # The list comes back: the next retry (backoff 1 s, 2 s, 4 s ...) installs it.
    own_idp.set_revocation({"jti": ["j-1"]})
    wait_stat(envoy, "jwt_edge.revocation.idp.fetch_success", 1, timeout=10)
    time.sleep(0.3)
    denied(envoy, get(envoy, token), "token_revoked")
    assert_passed(get(envoy, tok(keys, jti="j-2")))


def test_unusable_lists_never_replace_the_last_good_one(envoy_factory, own_idp, keys):
    own_idp.set_revocation({"jti": ["j-bad"]})
    envoy = envoy_factory(config(own_idp, cache_duration="1s"), idp=own_idp)
    bad, good = tok(keys, jti="j-bad"), tok(keys, jti="j-good")
    wait_stat(envoy, "jwt_edge.revocation.idp.fetch_success", 1)
    # (Every other way a list is refused is covered by src/authn/revocation.rs's tests.)
    bodies = [
        (500, b'{"error":"internal"}'),
        (200, b"<html>maintenance</html>"),
        (200, b'{"jti":[],"jtis":["x"]}'),  # an unknown member (a typo): refused whole
        (200, b'{"jti":["' + b"x" * (4 * 1024 * 1024) + b'"]}'),  # over 4 MiB
    ]
    for i, (status, body) in enumerate(bodies, start=1):
        own_idp.set_revocation(body, status=status)
        # Backoff after failures: 1 s, 2 s, 4 s ... capped at 30 s; wait for one more failure.
        wait_stat(envoy, "jwt_edge.revocation.idp.fetch_failed", i, timeout=40)
        denied(envoy, get(envoy, bad), "token_revoked")
        assert_passed(get(envoy, good))
    assert stat(envoy, "jwt_edge.revocation.idp.fetch_success") == 1
    assert stat(envoy, "jwt_edge.revocation.idp.stale_serving") == 1
    assert stat(envoy, "jwt_edge.revocation.idp.entries") == 1
    log = envoy.log_text()
    assert "revocation idp: fetch from cluster idp failed: not a revocation list: unknown " \
           'member "jtis"' in log
    assert "keeping the last good one" in log


def test_past_max_stale_requests_fail_closed_until_the_list_is_back(envoy_factory, own_idp,
                                                                     keys):
    own_idp.set_revocation({"sub": ["mallory"]})
    envoy = envoy_factory(config(own_idp, cache_duration="1s", max_stale="2s", wait="0.5s"),
                          idp=own_idp)
    token = tok(keys)
    wait_stat(envoy, "jwt_edge.revocation.idp.fetch_success", 1)
    fetched_at = own_idp.times("/revoked.json")[0]
    assert_passed(get(envoy, token))
    own_idp.set_revocation(b"", status=503)
    # Usable until cache_duration + max_stale (3 s) after the fetch; then 503.
    while time.monotonic() < fetched_at + 3.0 - 0.4:
        assert_passed(get(envoy, token))
        time.sleep(0.2)
    time.sleep(0.4 + TICK_BOUND_S)
    denied(envoy, get(envoy, token), "revocation_unavailable")
    denied(envoy, get(envoy, tok(keys, sub="mallory")), "revocation_unavailable")
    own_idp.set_revocation({"sub": ["mallory"]})
    wait_stat(envoy, "jwt_edge.revocation.idp.fetch_success", 2, timeout=40)
    time.sleep(0.3)
    assert_passed(get(envoy, token))
    denied(envoy, get(envoy, tok(keys, sub="mallory")), "token_revoked")


def test_a_list_of_100000_entries_loads_and_is_enforced(envoy_factory, own_idp, keys):
    jtis = [f"jti-{i:08d}-{'x' * 16}" for i in range(99_999)]
    own_idp.set_revocation({"jti": jtis, "sub": ["mallory"]})
    envoy = envoy_factory(config(own_idp, cache_duration="600s"), concurrency=2, idp=own_idp)
    wait_stat(envoy, "jwt_edge.revocation.idp.fetch_success", 1, timeout=20)
    assert stat(envoy, "jwt_edge.revocation.idp.entries") == 100_000
    time.sleep(0.5)  # the other VMs parse their copy on their next tick
    for jti in (jtis[0], jtis[50_000], jtis[-1]):
        denied(envoy, get(envoy, tok(keys, jti=jti)), "token_revoked")
    denied(envoy, get(envoy, tok(keys, sub="mallory")), "token_revoked")
    assert_passed(get(envoy, tok(keys, jti="jti-not-listed")))
