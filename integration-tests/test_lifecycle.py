"""The remote key-set lifecycle end to end (issue 4): one fetch per Envoy per refresh, requests
held while keys are missing, stale-while-error, unknown-`kid` refetch, OIDC discovery and
`max_stale` (with and without the verified-token cache, which must not outlive its keys).

Every test has its own IdP and its own Envoy, because the shared key-set record is what is
under test. Counts are exact: fetches are counted at the IdP (which also records when each
arrived) and in the filter's `jwt_edge.jwks.<provider>.*` metrics. Waits are computed from
the lifecycle's constants (src/sources/lease.rs, src/sources/mod.rs) rather than guessed:

- a refresh is due at 85-95 % of `cache_duration` after a fetch, and is started by the next
  VM tick; a key set fetched by one VM is picked up by the others on their next tick, and a
  waiting request's deadline is noticed on the next tick. The documented bound for all three
  is 1 s; the current tick is 100 ms (sources/mod.rs TICK_MS), so the bounds below are loose;
- a failed fetch is retried after 1 s, 2 s, 4 s ... (minus up to 20 % jitter), but every
  250 ms (lease.rs STARVED_RETRY_MS, started by the next tick) while requests wait for a key
  set that is not usable;
- a refresh that brings the same document keeps its version (`unchanged (version N)`);
- a request waits at most `request_wait_timeout` (then 503 `jwks_unavailable`).
"""

from __future__ import annotations

import re
import threading
import time

import pytest

from harness import client, wasmlog
from harness.expect import assert_denied, assert_passed
from harness.idp import Idp
from harness.keys import Key
from harness.tokens import EXP_EXPIRED, claims, mint
from harness.waits import stat, wait_until

IDP_ISS = "https://idp.test/"
CLIENT_TIMEOUT_S = 30

# Lifecycle constants the waits are computed from.
REFRESH_LOW, REFRESH_HIGH = 0.85, 0.95  # refresh due at this fraction of cache_duration
TICK_BOUND_S = 1.0  # documented: due refreshes start, other VMs pick key sets up, within this
DEADLINE_TICK_S = 0.1  # a waiting request's deadline is noticed within this (TICK_MS)
STARVED_RETRY_S = 0.25  # retry period while requests wait for keys (lease.rs STARVED_RETRY_MS)
SCHED_SLACK_S = 0.25  # scheduling noise (2-CPU machines, other suites running)


# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------
def remote(idp, *, cache_duration="600s", timeout="5s", uri=None, **extensions) -> dict:
    block = {"http_uri": {"uri": uri or idp.jwks_uri, "cluster": "idp", "timeout": timeout},
             "cache_duration": cache_duration}
    block.update(extensions)
    return block


def config(idp, **remote_kw) -> dict:
    return {
        "providers": {"idp": {"issuer": IDP_ISS, "audiences": ["api"],
                              "remote_jwks": remote(idp, **remote_kw)}},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "idp"}}],
    }


def get(envoy, token: str | None, path: str = "/"):
    headers = [("authorization", f"Bearer {token}")] if token else []
    return client.request(envoy.url(path), headers=headers, timeout=CLIENT_TIMEOUT_S)


def timed_get(envoy, token: str | None, path: str = "/"):
    t0 = time.monotonic()
    resp = get(envoy, token, path)
    return resp, t0, time.monotonic() - t0


def wait_for_fetches(envoy, n: int = 1, provider: str = "idp", timeout: float = 15) -> None:
    """Waits (admin stats only, no traffic) until `n` key-set fetches have succeeded."""
    name = f"jwt_edge.jwks.{provider}.fetch_success"
    assert wait_until(lambda: stat(envoy, name) >= n, timeout), \
        f"{name} never reached {n}: {stat(envoy, name)}"


def wait_all_vms_installed(envoy, version: int, timeout: float = 5) -> None:
    """Waits until every VM of `envoy` holds key-set `version` or a later one (debug log), so
    that no later request pauses merely because its worker has not synced yet."""
    assert wait_until(lambda: wasmlog.all_vms_hold(envoy.log_text(), version), timeout), \
        f"not every VM installed version {version}"


def send_concurrently(envoy, named_tokens: list[tuple[str, str | None]]) -> dict:
    """Sends one request per (name, token) at once; returns name -> (response, elapsed,
    time.monotonic() when the answer came)."""
    results: dict[str, tuple] = {}

    def send(name, token):
        resp, t0, elapsed = timed_get(envoy, token)
        results[name] = (resp, elapsed, t0 + elapsed)

    threads = [threading.Thread(target=send, args=nt) for nt in named_tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=CLIENT_TIMEOUT_S + 5)
    assert set(results) == {n for n, _ in named_tokens}, f"requests did not finish: {results}"
    return results


def paced_traffic(envoy, schedule: list[tuple[float, str, str]], hooks=(), limit_s: float = 30):
    """Sends `schedule` (offset seconds, kind, token) sequentially, each at its offset (or at
    once when behind); runs `hooks` (offset, fn) at their offsets, before requests due at the
    same time. Bounded in count (the schedule) and in time (`limit_s`). Returns
    [(offset sent, kind, response)]."""
    events = [(at, 0, fn, None) for at, fn in hooks]
    events += [(at, 1, kind, token) for at, kind, token in schedule]
    events.sort(key=lambda e: (e[0], e[1]))
    t0 = time.monotonic()
    out = []
    for at, is_request, what, token in events:
        now = time.monotonic() - t0
        assert now < limit_s, f"traffic ran past {limit_s}s"
        if at > now:
            time.sleep(at - now)
        if is_request:
            out.append((time.monotonic() - t0, what, get(envoy, token)))
        else:
            what()
    return out


# ---------------------------------------------------------------------------------------
# 1. One fetch per Envoy per refresh, whatever the number of workers
# ---------------------------------------------------------------------------------------
def test_one_fetch_at_startup_and_one_per_refresh_across_workers(envoy_factory, own_idp, keys):
    duration = 2.0
    refreshes = 3
    envoy = envoy_factory(config(own_idp, cache_duration=f"{duration:g}s"), concurrency=4,
                          idp=own_idp)
    token = mint(keys["rsa-1"])
    wait_for_fetches(envoy)
    first = own_idp.times()[0]
    # Each refresh is due by 95 % of cache_duration and started by the next tick.
    longest_gap = REFRESH_HIGH * duration + TICK_BOUND_S + SCHED_SLACK_S
    shortest_gap = REFRESH_LOW * duration - 0.05
    deadline = first + refreshes * longest_gap + 0.2
    statuses = []
    while time.monotonic() < deadline and len(statuses) < 200:  # some traffic meanwhile
        statuses.append(get(envoy, token).status)
        time.sleep(0.1)
    # Let a fetch that is under way right now finish, so the counts below are settled.
    wait_until(lambda: stat(envoy, "jwt_edge.jwks.idp.fetch_success") == own_idp.count(), 3)
    times = own_idp.times()
    assert wait_until(lambda: envoy.log_text().count("unchanged (version 1)") == len(times) - 1, 3)
    gaps = [round(b - a, 3) for a, b in zip(times, times[1:])]
    # Startup: one fetch for the whole Envoy (4 worker VMs and the main thread's VM share
    # one lease), i.e. nothing else before the first refresh could be due.
    assert len([t for t in times if t < first + shortest_gap]) == 1, gaps
    # Each refresh: exactly one fetch. No two fetches closer than a refresh period (no VM
    # fetched twice, no second VM joined in), none further apart than the latest refresh.
    assert len(times) >= 1 + refreshes, \
        f"only {len(times)} fetches in {deadline - first:.1f}s: {gaps}"
    assert all(shortest_gap <= g <= longest_gap for g in gaps), \
        f"fetch gaps {gaps} outside [{shortest_gap:.2f}, {longest_gap:.2f}]"
    assert set(statuses) == {200}, statuses
    log = envoy.log_text()
    assert stat(envoy, "jwt_edge.jwks.idp.fetch_success") == len(times), "fetches vs IdP count"
    assert stat(envoy, "jwt_edge.jwks.idp.fetch_failed") == 0
    assert stat(envoy, "jwt_edge.jwks.idp.stale_serving") == 0
    assert stat(envoy, "jwt_edge.jwks.idp.keys") == 4
    # Every VM holds the key set; exactly one VM fetched it, the others installed it from
    # shared data within about one tick of the fetch. The IdP serves the same document on
    # every refresh: it keeps version 1 (issue 15, F2), so no VM parses it again, rebuilds
    # its key tables or empties its token cache.
    vms = wasmlog.vm_threads(log)
    assert len(vms) == 4 + 1, f"expected 4 workers + the main thread, got {vms}"
    loaded = [(ts, tid, int(re.search(r"version (\d+)", msg).group(1)))
              for ts, tid, msg in wasmlog.lines(log) if "keys loaded" in msg]
    installed = [(ts, tid, int(re.search(r"installed version (\d+)", msg).group(1)))
                 for ts, tid, msg in wasmlog.lines(log) if "installed version" in msg]
    unchanged = [msg for _, _, msg in wasmlog.lines(log) if "unchanged (version" in msg]
    assert [v for _, _, v in loaded] == [1], loaded
    assert unchanged == ["jwks idp: unchanged (version 1)"] * (len(times) - 1), unchanged
    assert len(installed) == len(vms) - 1, installed
    for ts_load, fetcher, version in loaded:
        others = {tid: ts for ts, tid, v in installed if v == version}
        assert set(others) == vms - {fetcher}, (version, fetcher, others)
        late = {tid: round(ts - ts_load, 3) for tid, ts in others.items()
                if ts - ts_load > TICK_BOUND_S + SCHED_SLACK_S}
        assert late == {}, f"version {version}: VMs picked it up late: {late}"


def test_two_providers_sharing_a_jwks_uri_share_one_fetch(envoy_factory, own_idp, keys):
    shared = remote(own_idp)
    cfg = {
        "providers": {
            "a": {"issuer": IDP_ISS, "audiences": ["api"], "remote_jwks": shared},
            "b": {"issuer": IDP_ISS, "audiences": ["api-b"], "remote_jwks": dict(shared)},
        },
        "rules": [{"match": {"prefix": "/b"}, "requires": {"provider_name": "b"}},
                  {"match": {"prefix": "/"}, "requires": {"provider_name": "a"}}],
    }
    envoy = envoy_factory(cfg, concurrency=2, idp=own_idp)
    for _ in range(3):
        assert_passed(get(envoy, mint(keys["rsa-1"]), "/a"))
        assert_passed(get(envoy, mint(keys["ec-p256"], claims(aud="api-b")), "/b"))
    assert_denied(get(envoy, mint(keys["rsa-1"]), "/b"), "audience_mismatch",
                  authority=envoy.authority, path="/b")
    assert own_idp.count() == 1, own_idp.counts
    stats = envoy.stats()
    fetches = {k: v for k, v in stats.items()
               if k.startswith("wasmcustom.jwt_edge.jwks.") and k.endswith(".fetch_success")}
    assert sum(fetches.values()) == 1, fetches


# ---------------------------------------------------------------------------------------
# 2. Cold start: requests wait for the first key set, up to request_wait_timeout
# ---------------------------------------------------------------------------------------
def test_cold_start_requests_are_held_until_the_idp_comes_up(envoy_factory, own_idp, keys):
    own_idp.set_mode("down")
    wait_s = 3.0  # the default request_wait_timeout
    envoy = envoy_factory(config(own_idp), concurrency=2, idp=own_idp)
    up_after = 0.6
    t_up = []

    def come_up():
        own_idp.set_mode("normal")
        t_up.append(time.monotonic())

    timer = threading.Timer(up_after, come_up)
    timer.start()
    try:
        results = send_concurrently(envoy, [
            ("rsa", mint(keys["rsa-1"])), ("ec", mint(keys["ec-p256"])),
            ("ed", mint(keys["ed-1"])),
            ("forged", mint(keys["rsa-1"], signing_key=keys["rsa-evil"])),
            ("missing", None)])
    finally:
        timer.join()
    for name in ("rsa", "ec", "ed", "forged"):
        resp, elapsed, answered = results[name]
        if name == "forged":
            assert_denied(resp, "bad_signature", authority=envoy.authority, path="/")
        else:
            assert_passed(resp)
        assert answered >= t_up[0], f"{name} answered before the IdP was up"
        assert elapsed < wait_s, f"{name} waited {elapsed:.2f}s, over request_wait_timeout"
    # No key set is needed to see that there is no token: answered at once.
    resp, elapsed, _ = results["missing"]
    assert_denied(resp, "token_missing", authority=envoy.authority, path="/")
    assert elapsed < up_after, elapsed
    assert stat(envoy, "jwt_edge.paused") == 4, "each request with a token paused once"
    assert stat(envoy, "jwt_edge.jwks.idp.fetch_failed") >= 1
    assert stat(envoy, "jwt_edge.jwks.idp.fetch_success") == 1
    assert stat(envoy, "jwt_edge.denied.jwks_unavailable") == 0


def test_cold_start_first_success_within_half_a_second_of_the_idp_answering(
        envoy_factory, own_idp, keys):
    """Issue 15: the IdP is down when Envoy starts and comes back 3 s later. The fetch backoff
    (1 s, 2 s, 4 s ...) alone would sleep through the recovery; while requests wait, failed
    fetches are retried every 250 ms instead, still one at a time for the whole Envoy."""
    own_idp.set_mode("down")
    envoy = envoy_factory(config(own_idp, request_wait_timeout="10s"), concurrency=2,
                          idp=own_idp)
    t_up = []

    def come_up():
        own_idp.set_mode("normal")
        t_up.append(time.monotonic())

    timer = threading.Timer(3.0, come_up)
    timer.start()
    try:
        results = send_concurrently(envoy, [
            (f"valid-{i}", mint(keys["rsa-1"], claims(sub=f"cold-{i}"))) for i in range(4)])
    finally:
        timer.join()
    for resp, _, _ in results.values():
        assert_passed(resp)
    first = min(answered for _, _, answered in results.values()) - t_up[0]
    last = max(answered for _, _, answered in results.values()) - t_up[0]
    # Target 0.5 s: a retry within STARVED_RETRY_S, started by the next tick, plus the fetch
    # (0.3-0.5 s when the machine is quiet; 0.76 s seen with 2 CPUs fully loaded). Before
    # the fix, the backoff made it 4.4 s here.
    assert 0 < first <= STARVED_RETRY_S + DEADLINE_TICK_S + 0.15 + 2 * SCHED_SLACK_S, \
        f"first 2xx {first:.2f}s after the IdP came up"
    # The other worker's VM installs the key set on its next tick (and builds its key tables).
    assert last <= first + TICK_BOUND_S / 2, f"last 2xx {last:.2f}s after the IdP came up"
    assert own_idp.count() == 1, "one fetch once the IdP answered"
    assert stat(envoy, "jwt_edge.jwks.idp.fetch_success") == 1
    assert stat(envoy, "jwt_edge.denied") == 0


@pytest.mark.parametrize("mode, remote_kw, wait_s", [
    ("down", {"request_wait_timeout": "1s"}, 1.0),
    # The IdP answers after 3 s, the fetch gives up after 1 s and is retried: no key set
    # within the 2 s a request may wait.
    ("slow", {"request_wait_timeout": "2s", "timeout": "1s"}, 2.0),
], ids=["idp-down", "idp-slower-than-fetch-timeout"])
def test_cold_start_without_keys_gives_503_after_request_wait_timeout(
        envoy_factory, own_idp, keys, mode, remote_kw, wait_s):
    own_idp.set_mode(mode, delay=3.0)
    envoy = envoy_factory(config(own_idp, **remote_kw), concurrency=2, idp=own_idp)
    results = send_concurrently(envoy, [
        ("valid-1", mint(keys["rsa-1"])), ("valid-2", mint(keys["ec-p256"])),
        ("forged", mint(keys["rsa-1"], signing_key=keys["rsa-evil"])),
        ("expired", mint(keys["rsa-1"], claims(exp=EXP_EXPIRED))), ("missing", None)])
    for name in ("valid-1", "valid-2", "forged"):
        resp, elapsed, _ = results[name]
        # 503, not 401: nothing is known about the token without keys.
        assert_denied(resp, "jwks_unavailable", authority=envoy.authority, path="/")
        assert wait_s - 0.05 <= elapsed <= wait_s + DEADLINE_TICK_S + 3 * SCHED_SLACK_S, \
            f"{name}: 503 after {elapsed:.2f}s, request_wait_timeout is {wait_s}s"
    # Checks that need no key come first: these are answered at once.
    for name, code in (("expired", "token_expired"), ("missing", "token_missing")):
        resp, elapsed, _ = results[name]
        assert_denied(resp, code, authority=envoy.authority, path="/")
        assert elapsed < wait_s - 0.05, (name, elapsed)
    assert stat(envoy, "jwt_edge.denied.jwks_unavailable") == 3
    assert stat(envoy, "jwt_edge.jwks.idp.fetch_success") == 0
    if mode == "slow":
        # The first fetch timed out at 1 s and failed; the IdP saw it.
        assert stat(envoy, "jwt_edge.jwks.idp.fetch_failed") >= 1
        assert own_idp.count() >= 1


# ---------------------------------------------------------------------------------------
# 3. IdP outage with keys cached: traffic is unaffected
# ---------------------------------------------------------------------------------------
def test_idp_outage_mid_traffic_keeps_serving_with_cached_keys(envoy_factory, own_idp, keys):
    envoy = envoy_factory(config(own_idp, cache_duration="2s"), concurrency=2, idp=own_idp)
    valid, forged = mint(keys["rsa-1"]), mint(keys["rsa-1"], signing_key=keys["rsa-evil"])
    wait_for_fetches(envoy)
    wait_all_vms_installed(envoy, 1)
    before, down_for, after = 1.0, 6.0, 1.0
    total = before + down_for + after
    schedule = [(i / 20, "valid", valid) for i in range(int(total * 20))]
    schedule += [(i / 5 + 0.025, "forged", forged) for i in range(int(total * 5))]
    marks = {}

    def down():
        own_idp.set_mode("down")

    def up():
        own_idp.set_mode("normal")
        marks["failed_while_down"] = stat(envoy, "jwt_edge.jwks.idp.fetch_failed")

    sent = paced_traffic(envoy, schedule, hooks=[(before, down), (before + down_for, up)],
                         limit_s=total + 20)
    assert len(sent) == 160 + 40
    bad = [(round(t, 2), kind, r.status) for t, kind, r in sent
           if (kind == "valid" and r.status != 200) or (kind == "forged" and r.status != 401)]
    assert bad == [], f"{len(bad)} unexpected answers: {bad[:10]}"
    for _, kind, resp in sent:
        if kind == "valid":
            assert_passed(resp)
        else:
            assert_denied(resp, "bad_signature", authority=envoy.authority, path="/")
    assert marks["failed_while_down"] > 0, "no refresh was attempted while the IdP was down"
    assert stat(envoy, "jwt_edge.paused") == 0, "no request had to wait for keys"
    assert stat(envoy, "jwt_edge.denied.jwks_unavailable") == 0
    # The IdP is back: a later refresh succeeds (retries back off 1, 2, 4 s, so within ~9 s).
    fetched = stat(envoy, "jwt_edge.jwks.idp.fetch_success")
    assert wait_until(lambda: stat(envoy, "jwt_edge.jwks.idp.fetch_success") > fetched, 12), \
        "no successful refresh after the IdP came back"
    assert stat(envoy, "jwt_edge.jwks.idp.keys") == 4


# ---------------------------------------------------------------------------------------
# 4. Rotation: a new kid is fetched on demand, once per interval
# ---------------------------------------------------------------------------------------
def test_key_rotation_unknown_kid_refetches_once_per_interval(envoy_factory, own_idp, keys):
    interval = 4.0
    wait_s = 3.0  # the default request_wait_timeout
    envoy = envoy_factory(config(own_idp, unknown_kid_refetch_interval=f"{interval:g}s"),
                          concurrency=2, idp=own_idp)
    wait_for_fetches(envoy)
    wait_all_vms_installed(envoy, 1)
    assert_passed(get(envoy, mint(keys["rsa-1"])))
    assert own_idp.count() == 1

    # The IdP publishes rsa-2 and tokens signed with it arrive at once: the first one waits
    # for one early refetch, and none is refused.
    own_idp.rotate(keys["rsa-2"])
    answers = []
    for i in range(8):
        resp, t0, elapsed = timed_get(envoy, mint(keys["rsa-2"], claims(sub=f"rotated-{i}")))
        answers.append(resp)
        if i == 0:
            # The refetch was requested (and the interval began) before this answer.
            interval_ends = t0 + elapsed + interval
            assert elapsed < wait_s, f"the first new-kid request waited {elapsed:.2f}s"
    assert [r.status for r in answers] == [200] * 8, answers
    assert own_idp.count() == 2, "exactly one refetch for the new kid"
    assert stat(envoy, "jwt_edge.jwks.idp.fetch_success") == 2
    assert stat(envoy, "jwt_edge.denied.unknown_kid") == 0
    assert_passed(get(envoy, mint(keys["rsa-1"])))  # the old key still works

    # A second new kid within the interval: refused (401 unknown_kid), no fetch.
    rsa3 = Key("rsa-3", "rsa", keys["rsa-evil"].private)
    own_idp.rotate(rsa3)
    token3 = mint(rsa3)
    assert time.monotonic() < interval_ends - 1.5, "test too slow to be within the interval"
    assert_denied(get(envoy, token3), "unknown_kid", authority=envoy.authority, path="/")
    time.sleep(0.3)
    assert own_idp.count() == 2, "the rate limit allows one refetch per interval"
    assert stat(envoy, "jwt_edge.jwks.idp.fetch_success") == 2

    # Once the interval has passed, an unknown kid triggers one more refetch. A kid the IdP
    # never publishes waits for that one refetch only (not for request_wait_timeout), then
    # is refused; the refetch brought rsa-3 along, which now passes without another fetch.
    time.sleep(max(0.0, interval_ends + 0.1 - time.monotonic()))
    bogus = mint(keys["rsa-evil"], kid="never-published")
    resp, _, elapsed = timed_get(envoy, bogus)
    assert_denied(resp, "unknown_kid", authority=envoy.authority, path="/")
    assert elapsed < wait_s - 0.5, f"waited {elapsed:.2f}s: longer than one refetch"
    assert own_idp.count() == 3
    assert stat(envoy, "jwt_edge.jwks.idp.fetch_success") == 3
    assert_passed(get(envoy, token3))
    assert_denied(get(envoy, bogus), "unknown_kid", authority=envoy.authority, path="/")
    time.sleep(0.3)
    assert own_idp.count() == 3
    assert stat(envoy, "jwt_edge.denied.unknown_kid") == 3


def test_rotation_refuses_no_valid_token_on_any_worker(envoy_factory, own_idp, keys):
    """Issue 15: at the switch to a new key, tokens with the new kid arrive on every worker at
    once. Only one VM may start the refetch; the others' requests must wait for it too (it
    is under way, or has landed and they have not synced yet) rather than be refused."""
    envoy = envoy_factory(config(own_idp), concurrency=4, idp=own_idp)
    wait_for_fetches(envoy)
    wait_all_vms_installed(envoy, 1)
    assert_passed(get(envoy, mint(keys["rsa-1"])))
    own_idp.rotate(keys["rsa-2"])
    clients, per_client, gap_s = 8, 6, 0.025
    tokens = [[mint(keys["rsa-2"], claims(sub=f"rotated-{c}-{i}")) for i in range(per_client)]
              for c in range(clients)]
    # (seconds since the rotation, status, WWW-Authenticate): a refusal names its error code.
    statuses: list[tuple[float, int, str]] = []
    lock = threading.Lock()
    t0 = time.monotonic()

    def client_loop(mine):
        for token in mine:  # a new connection per request: spread over the workers
            resp = get(envoy, token)
            with lock:
                statuses.append((round(time.monotonic() - t0, 3), resp.status,
                                 resp.header("www-authenticate") or ""))
            time.sleep(gap_s)

    threads = [threading.Thread(target=client_loop, args=(t,)) for t in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=CLIENT_TIMEOUT_S + 5)
    assert len(statuses) == clients * per_client, statuses
    assert [s for _, s, _ in statuses if s != 200] == [], sorted(statuses)
    assert stat(envoy, "jwt_edge.denied") == 0
    assert own_idp.count() == 2, "exactly one refetch for the new kid"


def test_retired_key_refuses_tokens_from_the_verified_token_cache(envoy_factory, own_idp, keys):
    cfg = config(own_idp, cache_duration="2s")
    cfg["providers"]["idp"]["jwt_cache_config"] = {"jwt_cache_size": 100}
    envoy = envoy_factory(cfg, concurrency=2, idp=own_idp)
    wait_for_fetches(envoy)
    wait_all_vms_installed(envoy, 1)
    old = mint(keys["rsa-1"])
    for _ in range(6):  # verified once per VM, then served from each VM's cache
        assert_passed(get(envoy, old))
    assert stat(envoy, "jwt_edge.jwt_cache_hit") >= 1
    own_idp.rotate(keys["rsa-2"], drop_kid="rsa-1")
    retired_from = own_idp.count() + 1  # the first key-set version without rsa-1
    assert wait_until(lambda: stat(envoy, "jwt_edge.jwks.idp.fetch_success") >= retired_from,
                      REFRESH_HIGH * 2 + TICK_BOUND_S + 2), "no refresh after the rotation"
    wait_all_vms_installed(envoy, retired_from)
    for _ in range(6):
        assert_denied(get(envoy, old), "unknown_kid", authority=envoy.authority, path="/")
    assert_passed(get(envoy, mint(keys["rsa-2"])))


# ---------------------------------------------------------------------------------------
# 5, 6. A refresh that fails in any way keeps the last good key set
# ---------------------------------------------------------------------------------------
NO_USABLE_KEY = {"keys": [
    {"kty": "oct", "kid": "hs", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"},  # symmetric: refused
    {"kty": "RSA", "kid": "tiny", "n": "AQAB", "e": "AQAB"},  # far too short
    {"kty": "EC", "kid": "bad-crv", "crv": "P-999", "x": "AA", "y": "AA"},
]}


@pytest.mark.parametrize("mode", ["slow", "garbage", "oversized", "status500", "no-usable-key"])
def test_failed_refresh_keeps_last_good_keys(envoy_factory, own_idp, keys, mode):
    envoy = envoy_factory(config(own_idp, cache_duration="2s", timeout="1s"), concurrency=2,
                          idp=own_idp)
    token = mint(keys["rsa-1"])
    wait_for_fetches(envoy)
    wait_all_vms_installed(envoy, 1)
    assert_passed(get(envoy, token))
    if mode == "no-usable-key":
        own_idp.set_document(NO_USABLE_KEY)
    else:
        own_idp.set_mode(mode, delay=2.5)  # slow: answers 1.5 s after the fetch gave up
    time.sleep(0.2)  # a fetch that began before the switch has finished by now
    n0 = own_idp.count()
    ok0 = stat(envoy, "jwt_edge.jwks.idp.fetch_success")
    failed0 = stat(envoy, "jwt_edge.jwks.idp.fetch_failed")
    assert failed0 == 0
    statuses = []

    def failures() -> int:
        statuses.append(get(envoy, token).status)
        return stat(envoy, "jwt_edge.jwks.idp.fetch_failed") - failed0

    # Two failed refreshes: the first is due within one refresh period, the retry 1 s later.
    limit = 2.0 + TICK_BOUND_S + 2 * (1.0 + 1.0 + TICK_BOUND_S) + 2
    assert wait_until(lambda: failures() >= 2, limit, interval=0.1), \
        f"fewer than 2 failed refreshes in {limit}s: {failures()}"
    assert set(statuses) == {200}, statuses
    # Each IdP answer that arrived since the switch was counted as one failed fetch.
    assert wait_until(lambda: failures() == own_idp.count() - n0, 4, interval=0.1), \
        (failures(), own_idp.count() - n0)
    assert stat(envoy, "jwt_edge.jwks.idp.fetch_success") == ok0, "a refresh succeeded?"
    assert stat(envoy, "jwt_edge.jwks.idp.keys") == 4
    assert stat(envoy, "jwt_edge.jwks.idp.stale_serving") == 1
    assert stat(envoy, "jwt_edge.denied") == 0
    for _ in range(5):
        assert_passed(get(envoy, token))
    assert_denied(get(envoy, mint(keys["rsa-1"], signing_key=keys["rsa-evil"])), "bad_signature",
                  authority=envoy.authority, path="/")


# ---------------------------------------------------------------------------------------
# 7. OIDC discovery
# ---------------------------------------------------------------------------------------
def discovery_config(idp, **kw) -> dict:
    return config(idp, uri=idp.discovery_uri, discovery=True, **kw)


def test_oidc_discovery_end_to_end(envoy_factory, own_idp, keys):
    envoy = envoy_factory(discovery_config(own_idp), concurrency=2, idp=own_idp)
    for kid in ("rsa-1", "ec-p256", "ed-1"):
        assert_passed(get(envoy, mint(keys[kid])))
    assert_denied(get(envoy, mint(keys["rsa-1"], signing_key=keys["rsa-evil"])), "bad_signature",
                  authority=envoy.authority, path="/")
    # One discovery document, then the key set it names, through the same cluster.
    assert own_idp.counts == {"/.well-known/openid-configuration": 1, "/jwks.json": 1}
    assert stat(envoy, "jwt_edge.jwks.idp.fetch_success") == 1


def test_oidc_discovery_with_another_issuer_loads_no_keys(envoy_factory, published_keys, keys):
    impostor = Idp(published_keys, issuer="https://impostor.test/").start()
    try:
        envoy = envoy_factory(discovery_config(impostor, request_wait_timeout="1s"),
                              concurrency=2, idp=impostor)
        resp, _, elapsed = timed_get(envoy, mint(keys["rsa-1"]))
        assert_denied(resp, "jwks_unavailable", authority=envoy.authority, path="/")
        assert 0.95 <= elapsed <= 1.0 + DEADLINE_TICK_S + 3 * SCHED_SLACK_S, elapsed
        assert impostor.count("/.well-known/openid-configuration") >= 1
        assert impostor.count("/jwks.json") == 0, "the key set of another issuer was fetched"
        assert stat(envoy, "jwt_edge.jwks.idp.fetch_failed") >= 1
        assert stat(envoy, "jwt_edge.jwks.idp.fetch_success") == 0
        assert "is not the configured issuer" in envoy.log_text()
    finally:
        impostor.stop()


# ---------------------------------------------------------------------------------------
# 8. max_stale: how long a key set that cannot be refreshed stays in use
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("jwt_cache", [False, True], ids=["no-token-cache", "token-cache"])
def test_max_stale_bounds_use_of_unrefreshable_keys(envoy_factory, own_idp, keys, jwt_cache):
    """With the verified-token cache on, the same token is a cache hit on every probe: the
    cache must not keep a token valid longer than the key set that verified it."""
    duration, max_stale, wait = 1.0, 2.0, 1.0
    cfg = config(own_idp, cache_duration="1s", max_stale="2s", request_wait_timeout="1s")
    if jwt_cache:
        cfg["providers"]["idp"]["jwt_cache_config"] = {"jwt_cache_size": 100}
    envoy = envoy_factory(cfg, concurrency=2, idp=own_idp)
    token = mint(keys["rsa-1"])
    wait_for_fetches(envoy, 2)  # past the first refresh: steady state
    wait_all_vms_installed(envoy, 1)  # the refresh brought the same keys: still version 1
    own_idp.set_mode("down")
    last_fetch = own_idp.times()[-1]
    usable_until = last_fetch + duration + max_stale
    probes = []  # (sent, response, elapsed)
    t_end = usable_until + 2.0
    while time.monotonic() < t_end and len(probes) < 60:
        resp, sent, elapsed = timed_get(envoy, token)
        probes.append((sent, resp, elapsed))
        time.sleep(0.15)
    # The filter's clock starts at its own receipt of the last key set, a little after the
    # IdP answered, and decides each request a little after it was sent: on a loaded machine
    # both lags reach a few hundred ms.
    margin = 0.5
    passed = [s - last_fetch for s, r, _ in probes if r.status == 200]
    refused = [s - last_fetch for s, r, _ in probes if r.status != 200]
    summary = " ".join(f"{s - last_fetch:.2f}s:{r.status}" for s, r, _ in probes)
    assert passed, summary
    assert refused, (f"valid tokens still passed {max(passed):.2f}s after the last good fetch; "
                     f"cache_duration + max_stale is {duration + max_stale:g}s. "
                     f"Probes (time since last good fetch: status): {summary}")
    assert max(passed) < min(refused), f"keys usable again after being refused: {summary}"
    # Valid tokens pass for cache_duration + max_stale after the last good fetch...
    assert all(s <= duration + max_stale + margin for s in passed), summary
    assert max(passed) >= duration + max_stale - margin - 0.2, summary
    # ...then get 503 jwks_unavailable, after waiting request_wait_timeout for keys.
    assert min(refused) >= duration + max_stale - margin, summary
    for sent, resp, elapsed in probes:
        if resp.status != 200:
            assert_denied(resp, "jwks_unavailable", authority=envoy.authority, path="/")
            assert wait - 0.05 <= elapsed <= wait + DEADLINE_TICK_S + 3 * SCHED_SLACK_S, elapsed
    assert stat(envoy, "jwt_edge.jwks.idp.fetch_failed") >= 1
    if jwt_cache:
        assert stat(envoy, "jwt_edge.jwt_cache_hit") > 0, "the probes never hit the cache"
