"""End-to-end decisions of the jwt-edge filter inside real Envoy.

One Envoy per filter config (module-scoped): MAIN (remote JWKS via the `idp` cluster, rules,
requirement tree, per-route overrides, identity headers), STRIP (`strip_failure_response`) and
LOCAL (`local_jwks`, custom token locations, per-provider options). Tables list request ->
expected outcome; denials are checked field by field against src/authn/error.rs.
"""

from __future__ import annotations

import base64
import json
import time

import pytest

from cryptography.hazmat.primitives import serialization

from harness import client
from harness.backend import Backend
from harness.expect import assert_denied, assert_passed
from harness.keys import b64url, jwks, load_all
from harness.tokens import (EXP_EXPIRED, IAT, NBF_FUTURE, claims, compact_json, mint,
                            segments)

IDP_ISS = "https://idp.test/"
OTHER_ISS = "https://other.test/"
LOCAL_ISS = "https://local.test/"
HMAC_SECRET = b"jwt-edge integration test secret, 32+ bytes long"

IDENTITY_HEADERS = ["x-jwt-sub", "x-jwt-num", "x-jwt-flag", "x-jwt-roles", "x-jwt-tenant",
                    "x-jwt-payload", "x-other-sub"]


# ---------------------------------------------------------------------------------------
# Filter configs
# ---------------------------------------------------------------------------------------
def remote_jwks(idp, cache_duration: str = "600s") -> dict:
    return {"http_uri": {"uri": idp.jwks_uri, "cluster": "idp", "timeout": "5s"},
            "cache_duration": cache_duration}


def provider(name: str, audiences: list[str] | None = None) -> dict:
    req = {"provider_name": name}
    if audiences is not None:
        req = {"provider_and_audiences": {"provider_name": name, "audiences": audiences}}
    return req


def main_config(idp, keys) -> dict:
    remote = remote_jwks(idp)
    return {
        "providers": {
            "idp": {
                "issuer": IDP_ISS,
                "audiences": ["api"],
                "remote_jwks": remote,
                "claim_to_headers": [
                    {"header_name": "x-jwt-sub", "claim_name": "sub"},
                    {"header_name": "x-jwt-num", "claim_name": "num"},
                    {"header_name": "x-jwt-flag", "claim_name": "flag"},
                    {"header_name": "x-jwt-roles", "claim_name": "roles"},
                    {"header_name": "x-jwt-tenant", "claim_name": "org.tenant"},
                ],
                "forward_payload_header": "x-jwt-payload",
            },
            # A second issuer with its own local key set and its own header, forwarded as is.
            "other": {
                "issuer": OTHER_ISS,
                "audiences": ["other-api"],
                "local_jwks": {"inline_string": json.dumps(jwks([keys["rsa-2"]]))},
                "from_headers": [{"name": "x-other-token"}],
                "forward": True,
                "claim_to_headers": [{"header_name": "x-other-sub", "claim_name": "sub"}],
            },
            # Same key source as `idp` (same uri, cluster, timeout and cache_duration).
            "svc": {"issuer": IDP_ISS, "audiences": ["api"], "subjects": {"prefix": "svc-"},
                    "remote_jwks": remote},
            "short": {"issuer": IDP_ISS, "max_lifetime": "3600s", "remote_jwks": remote},
        },
        "rules": [
            {"match": {"prefix": "/public"}},
            {"match": {"path": "/exact"}},
            {"match": {"safe_regex": {"regex": "/items/[0-9]+"}}},
            {"match": {"prefix": "/hdr", "headers": [{"name": "x-mode", "string_match": {"exact": "open"}}]}},
            {"match": {"prefix": "/qp", "query_parameters": [{"name": "mode", "string_match": {"exact": "open"}}]}},
            {"match": {"prefix": "/admin"}, "requires": provider("idp", ["admin"])},
            {"match": {"prefix": "/named"}, "requirement_name": "admin_only"},
            {"match": {"prefix": "/any"}, "requires": {"requires_any": {"requirements": [
                provider("idp"), provider("other")]}}},
            {"match": {"prefix": "/all"}, "requires": {"requires_all": {"requirements": [
                provider("idp"), provider("other")]}}},
            {"match": {"prefix": "/optional"}, "requires": {"requires_any": {"requirements": [
                provider("idp"), {"allow_missing": {}}]}}},
            {"match": {"prefix": "/lenient"}, "requires": {"requires_any": {"requirements": [
                provider("idp"), {"allow_missing_or_failed": {}}]}}},
            {"match": {"prefix": "/svc"}, "requires": provider("svc")},
            {"match": {"prefix": "/short"}, "requires": provider("short")},
            {"match": {"prefix": "/"}, "requires": provider("idp")},
        ],
        "requirement_map": {"admin_only": provider("idp", ["admin"])},
        # Envoy route names (see harness/config.py ROUTES): `health` -> /health, `strict` -> /strict.
        "per_route": {"health": {"disabled": True}, "strict": {"requirement_name": "admin_only"}},
        "bypass_cors_preflight": True,
    }


def strip_config(published_keys) -> dict:
    return {
        "providers": {"p": {"issuer": IDP_ISS, "audiences": ["api"],
                            "local_jwks": {"inline_string": json.dumps(jwks(published_keys))}}},
        "rules": [{"match": {"prefix": "/"}, "requires": provider("p")}],
        "strip_failure_response": True,
    }


def local_config(published_keys) -> dict:
    asymmetric = {"inline_string": json.dumps(jwks(published_keys))}
    with_secret = jwks(published_keys)
    with_secret["keys"].append({"kty": "oct", "kid": "hs-1", "k": b64url(HMAC_SECRET)})

    def p(**extra):
        return {"issuer": LOCAL_ISS, "local_jwks": asymmetric, **extra}

    return {
        "providers": {
            "local": p(algorithms=["RS256", "PS256", "ES256", "ES384", "EdDSA", "HS256"],
                       forward=True, local_jwks={"inline_string": json.dumps(with_secret)}),
            "cookie": p(from_cookies=["session"]),
            "param": p(from_params=["token"]),
            "custom": p(from_headers=[{"name": "x-api-token", "value_prefix": "Token "}]),
            "noexp": p(require_expiration=False),
            "skew0": p(clock_skew_seconds=0),
            "small": p(max_token_bytes=1024),
        },
        "rules": [
            {"match": {"prefix": f"/{name}"}, "requires": provider(name)}
            for name in ("cookie", "param", "custom", "noexp", "skew0", "small")
        ] + [{"match": {"prefix": "/"}, "requires": provider("local")}],
    }


# ---------------------------------------------------------------------------------------
# Fixtures and helpers
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def main_envoy(module_envoy_factory, idp, keys):
    envoy = module_envoy_factory(main_config(idp, keys))
    # The decision tables are about verification, not about the first fetch (test_jwks.py
    # covers requests that arrive before the keys): let the key set load first. Bounded, and
    # never fails by itself; a filter that cannot load keys fails the tests that need them.
    token = mint(keys["rsa-1"])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and get(envoy, "/", token).status != 200:
        time.sleep(0.2)
    return envoy


@pytest.fixture(scope="module")
def strip_envoy(module_envoy_factory, published_keys):
    return module_envoy_factory(strip_config(published_keys))


@pytest.fixture(scope="module")
def local_envoy(module_envoy_factory, published_keys):
    return module_envoy_factory(local_config(published_keys))


def get(envoy, path: str, token: str | None = None, headers=None, method: str = "GET"):
    hdrs = list(headers or [])
    if token is not None:
        hdrs.append(("authorization", f"Bearer {token}"))
    return client.request(envoy.url(path), method=method, headers=hdrs)


def denied(envoy, resp, code: str, path: str, **kw) -> None:
    assert_denied(resp, code, authority=envoy.authority, path=path, **kw)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def payload_with_std_b64_chars() -> bytes:
    """Claims whose standard-base64 encoding contains `+` or `/` (not base64url)."""
    for i in range(1000):
        data = compact_json(claims(sub=f"alice-{i}~~~"))
        if set(b64(data)) & {"+", "/"}:
            return data
    raise AssertionError("no payload found")


# ---------------------------------------------------------------------------------------
# MAIN: rejected tokens (route `/`, provider `idp`)
# ---------------------------------------------------------------------------------------
def bad_token_cases(k) -> list[tuple[str, str, str]]:
    rsa, ec = k["rsa-1"], k["ec-p256"]
    good = mint(rsa)
    h, p, s = segments(good)
    std_payload = payload_with_std_b64_chars()
    return [
        ("jwe-five-segments", f"{h}.{p}.{s}.{s}.{s}", "token_is_jwe"),
        ("two-segments", f"{h}.{p}", "token_malformed"),
        ("four-segments", f"{h}.{p}.{s}.{s}", "token_malformed"),
        ("empty-signature", f"{h}.{p}.", "token_malformed"),
        # An empty segment decodes to zero bytes, which are not a JSON object.
        ("empty-header", f".{p}.{s}", "bad_json"),
        ("padded-payload", mint(rsa, payload_b64=p + "=="), "bad_base64"),
        ("padded-signature", f"{h}.{p}.{s}=", "bad_base64"),
        ("standard-alphabet-payload",
         mint(rsa, payload_b64=b64(std_payload).rstrip("=")), "bad_base64"),
        ("header-not-json", mint(rsa, alg="RS256", header_bytes=b"RS256"), "bad_json"),
        ("payload-array", mint(rsa, payload_bytes=b'["iss","sub"]'), "bad_json"),
        ("payload-not-utf8", mint(rsa, payload_bytes=b'{"sub":"\xff"}'), "bad_json"),
        ("duplicate-alg-in-header",
         mint(rsa, alg="RS256", header_bytes=b'{"alg":"RS256","kid":"rsa-1","alg":"RS256"}'),
         "duplicate_member"),
        ("duplicate-sub-in-payload",
         mint(rsa, payload_bytes=compact_json(claims())[:-1] + b',"sub":"admin"}'),
         "duplicate_member"),
        ("no-alg", mint(rsa, alg="RS256", header={"kid": "rsa-1", "typ": "JWT"}), "alg_missing"),
        ("alg-not-a-string", mint(rsa, alg="RS256", header={"alg": 256, "kid": "rsa-1"}), "alg_missing"),
        ("alg-none", mint(None, alg="none", header={"alg": "none"}, signature_b64=s), "alg_not_allowed"),
        ("alg-lowercase", mint(rsa, alg="RS256", header={"alg": "rs256", "kid": "rsa-1"}), "alg_not_allowed"),
        # Key confusion: HS256 keyed with the RSA public key's PEM.
        ("hs256-with-rsa-public-key",
         mint(None, alg="HS256", header={"alg": "HS256", "kid": "rsa-1"},
              hmac_secret=rsa.private.public_key().public_bytes(
                  serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)),
         "alg_not_allowed"),
        ("crit-unknown-extension",
         mint(rsa, alg="RS256", header={"alg": "RS256", "kid": "rsa-1", "crit": ["x-ext"], "x-ext": 1}),
         "crit_unsupported"),
        ("unknown-kid", mint(rsa, kid="no-such-key"), "unknown_kid"),
        ("rs256-with-ec-kid", mint(rsa, alg="RS256", kid="ec-p256"), "no_matching_key"),
        ("forged-with-other-rsa-key", mint(rsa, signing_key=k["rsa-evil"]), "bad_signature"),
        ("tampered-payload", f"{h}.{segments(mint(rsa, claims(sub='admin')))[1]}.{s}", "bad_signature"),
        ("ecdsa-der-signature", mint(ec, der_signature=True), "bad_signature"),
        ("ecdsa-r-and-s-swapped", mint(ec, signature=swap_halves(mint(ec))), "bad_signature"),
        ("exp-as-string", mint(rsa, claims(exp=str(4102444800))), "claim_malformed"),
        ("nbf-as-bool", mint(rsa, claims(nbf=True)), "claim_malformed"),
        ("no-exp", mint(rsa, claims(exp=None)), "exp_missing"),
        ("expired", mint(rsa, claims(exp=EXP_EXPIRED)), "token_expired"),
        ("not-yet-valid", mint(rsa, claims(nbf=NBF_FUTURE)), "token_not_yet_valid"),
        ("wrong-issuer", mint(rsa, claims(iss="https://evil.test/")), "issuer_mismatch"),
        ("no-issuer", mint(rsa, claims(iss=None)), "issuer_mismatch"),
        ("wrong-audience", mint(rsa, claims(aud="not-api")), "audience_mismatch"),
        ("audience-list-without-api", mint(rsa, claims(aud=["x", "y"])), "audience_mismatch"),
        ("no-audience", mint(rsa, claims(aud=None)), "audience_mismatch"),
        ("token-over-8192-bytes", mint(rsa, claims(pad="x" * 9000)), "token_too_large"),
    ]


def swap_halves(token: str) -> bytes:
    """The raw ECDSA signature of `token` as s || r."""
    sig = base64.urlsafe_b64decode(segments(token)[2] + "==")
    half = len(sig) // 2
    return sig[half:] + sig[:half]


BAD_TOKENS = bad_token_cases(load_all())


@pytest.mark.parametrize("token, code", [c[1:] for c in BAD_TOKENS], ids=[c[0] for c in BAD_TOKENS])
def test_rejected_token(main_envoy, backends, token, code):
    before = [b.count for b in backends]
    resp = get(main_envoy, "/resource", token)
    denied(main_envoy, resp, code, "/resource")
    assert [b.count for b in backends] == before, "a denied request must not reach a backend"


@pytest.mark.parametrize("headers, path, code", [
    ([], "/", "token_missing"),
    ([("authorization", "Basic dXNlcjpwYXNz")], "/", "token_missing"),
    ([("authorization", "Bearer")], "/", "token_missing"),
    ([], "/?access_token=", "token_missing"),
    ([], "/some/path?x=1&y=2", "token_missing"),
    ([("authorization", "Bearer a.b.c extra")], "/", "token_malformed"),
], ids=["none", "basic-scheme", "bearer-without-token", "empty-query-token", "realm-drops-query",
        "two-words"])
def test_missing_or_unusable_credentials(main_envoy, headers, path, code):
    resp = get(main_envoy, path, headers=headers)
    denied(main_envoy, resp, code, path)


def test_realm_is_cut_to_256_characters(main_envoy):
    path = "/" + "x" * 400 + "?q=1"
    resp = get(main_envoy, path)
    denied(main_envoy, resp, "token_missing", path)
    realm = resp.header("www-authenticate").removeprefix('Bearer realm="').removesuffix('"')
    assert len(realm) == 256
    assert realm == f"http://{main_envoy.authority}/{'x' * 400}"[:256]


@pytest.mark.parametrize("same", [True, False], ids=["same-token", "different-tokens"])
def test_two_authorization_headers_are_refused(main_envoy, keys, same):
    # Envoy's HTTP/1 codec folds repeated `authorization` headers into one value joined with
    # "," before any filter sees them ("Bearer a.b.c,Bearer d.e.f"), so the filter must
    # recognise the folded form as well as two separate header entries.
    t1 = mint(keys["rsa-1"])
    t2 = t1 if same else mint(keys["ec-p256"])
    resp = get(main_envoy, "/", headers=[("authorization", f"Bearer {t1}"),
                                         ("authorization", f"Bearer {t2}")])
    denied(main_envoy, resp, "multiple_tokens", "/")


def test_header_and_query_with_different_tokens_are_refused(main_envoy, keys):
    t1, t2 = mint(keys["rsa-1"]), mint(keys["ec-p256"])
    path = f"/?access_token={t2}"
    resp = get(main_envoy, path, t1)
    denied(main_envoy, resp, "multiple_tokens", path)


# ---------------------------------------------------------------------------------------
# MAIN: accepted tokens
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kid, alg", [
    ("rsa-1", "RS256"), ("rsa-1", "RS384"), ("rsa-1", "RS512"),
    ("rsa-1", "PS256"), ("rsa-1", "PS384"), ("rsa-1", "PS512"),
    ("ec-p256", "ES256"), ("ec-p384", "ES384"), ("ed-1", "EdDSA"),
])
def test_every_algorithm_verifies(main_envoy, keys, kid, alg):
    seen = assert_passed(get(main_envoy, "/resource", mint(keys[kid], alg=alg)))
    assert seen["headers"]["x-jwt-sub"] == "alice"


@pytest.mark.parametrize("make_headers, path", [
    (lambda t: [("authorization", f"bearer {t}")], "/"),
    (lambda t: [("authorization", f"BEARER {t}")], "/"),
    (lambda t: [("Authorization", f"Bearer   {t}")], "/"),
    (lambda t: [], "/?access_token={t}"),
    (lambda t: [("authorization", f"Bearer {t}")], "/?access_token={t}"),
], ids=["lowercase-scheme", "uppercase-scheme", "extra-spaces", "query-param", "same-token-twice"])
def test_token_locations(main_envoy, keys, make_headers, path):
    token = mint(keys["rsa-1"])
    resp = get(main_envoy, path.format(t=token), headers=make_headers(token))
    assert assert_passed(resp)["headers"]["x-jwt-sub"] == "alice"


@pytest.mark.parametrize("token_claims", [
    claims(aud=["x", "api"]),
    claims(aud="api", nbf=IAT),
    claims(extra={"nested": [1, {"a": None}]}),
], ids=["audience-list", "nbf-in-past", "unknown-claims"])
def test_valid_claim_variants(main_envoy, keys, token_claims):
    assert_passed(get(main_envoy, "/", mint(keys["rsa-1"], token_claims)))


def test_token_without_kid_uses_keys_of_its_alg(main_envoy, keys):
    for kid in ("rsa-1", "ec-p256", "ed-1"):
        assert_passed(get(main_envoy, "/", mint(keys[kid], kid=None)))


def test_claims_become_headers(main_envoy, keys):
    token = mint(keys["ec-p256"], claims(sub="carol", num=42, flag=True, roles=["reader", "writer"],
                                         org={"tenant": "t-1", "region": "eu"}))
    seen = assert_passed(get(main_envoy, "/", token))
    h = seen["headers"]
    assert h["x-jwt-sub"] == "carol"
    assert h["x-jwt-num"] == "42"
    assert h["x-jwt-flag"] == "true"
    # jwt_authn's format (issue #19.4): an array claim is the padded base64 of its JSON.
    assert h["x-jwt-roles"] == "WyJyZWFkZXIiLCJ3cml0ZXIiXQ=="
    assert h["x-jwt-tenant"] == "t-1"
    payload_segment = segments(token)[1]
    assert h["x-jwt-payload"] == payload_segment
    assert json.loads(base64.urlsafe_b64decode(payload_segment + "=" * (-len(payload_segment) % 4)))["sub"] == "carol"
    assert "authorization" not in h, "the token must not be forwarded (forward: false)"


def test_absent_claims_set_no_header(main_envoy, keys):
    seen = assert_passed(get(main_envoy, "/", mint(keys["rsa-1"])))
    for name in ("x-jwt-num", "x-jwt-flag", "x-jwt-roles", "x-jwt-tenant"):
        assert name not in seen["headers"]


def test_query_token_is_removed_from_forwarded_path(main_envoy, keys):
    token = mint(keys["rsa-1"])
    seen = assert_passed(get(main_envoy, f"/q?x=1&access_token={token}&y=2"))
    assert seen["path"] == "/q?x=1&y=2"


@pytest.mark.parametrize("path", ["/public/x", "/health", "/"])
def test_client_identity_headers_never_reach_backend(main_envoy, keys, path):
    spoofed = [(name.upper() if i % 2 else name, "admin") for i, name in enumerate(IDENTITY_HEADERS)]
    token = mint(keys["rsa-1"]) if path == "/" else None
    seen = assert_passed(get(main_envoy, path, token, headers=spoofed))
    h = seen["headers"]
    if path == "/":
        assert h["x-jwt-sub"] == "alice"  # the token's, not the client's
        assert h["x-jwt-payload"] == segments(token)[1]
        absent = ["x-jwt-num", "x-jwt-flag", "x-jwt-roles", "x-jwt-tenant", "x-other-sub"]
    else:
        absent = IDENTITY_HEADERS
    for name in absent:
        assert name not in h, f"{name} from the client reached the backend on {path}: {h}"


@pytest.mark.parametrize("signed_by, code", [(None, "token_missing"), ("rsa-evil", "bad_signature")])
def test_forged_identity_header_on_envoy_is_stripped_not_refused(main_envoy, keys, signed_by, code):
    # Envoy removes a header for real: a client's copy goes and the request is decided on its
    # token alone. `identity_header_present` (400) is for hosts whose removal cannot be
    # trusted (ngx_wasm_module), told apart at configuration.
    token = mint(keys["rsa-1"], signing_key=keys[signed_by]) if signed_by else None
    resp = get(main_envoy, "/", token, headers=[("x-jwt-sub", "admin"), ("X_JWT_SUB", "root")])
    denied(main_envoy, resp, code, "/")


def test_spoofed_header_stripped_when_lenient_route_lets_bad_token_through(main_envoy, keys):
    bad = mint(keys["rsa-1"], signing_key=keys["rsa-evil"])
    seen = assert_passed(get(main_envoy, "/lenient", bad, headers=[("x-jwt-sub", "admin")]))
    assert "x-jwt-sub" not in seen["headers"]


# ---------------------------------------------------------------------------------------
# MAIN: rules, requirements, per-route overrides, CORS
# ---------------------------------------------------------------------------------------
ADMIN = {"aud": "admin"}


@pytest.mark.parametrize("path, headers_fn, expect", [
    # no requirement
    ("/public", None, 200),
    ("/exact", None, 200),
    ("/exact/more", None, "token_missing"),
    ("/items/123", None, 200),
    ("/items/abc", None, "token_missing"),
    ("/hdr", lambda k: [("x-mode", "open")], 200),
    ("/hdr", lambda k: [("x-mode", "closed")], "token_missing"),
    ("/qp?mode=open", None, 200),
    ("/qp?mode=shut", None, "token_missing"),
    # provider_and_audiences, requirement_name
    ("/admin", lambda k: bearer(k, aud="api"), "audience_mismatch"),
    ("/admin", lambda k: bearer(k, aud="admin"), 200),
    ("/named", lambda k: bearer(k, aud="api"), "audience_mismatch"),
    ("/named", lambda k: bearer(k, aud="admin"), 200),
    ("/", lambda k: bearer(k, aud="admin"), "audience_mismatch"),
    # requires_any / requires_all
    ("/any", lambda k: bearer(k), 200),
    ("/any", lambda k: other(k), 200),
    ("/any", None, "token_missing"),
    ("/any", lambda k: other(k, iss=IDP_ISS), "issuer_mismatch"),
    ("/all", lambda k: bearer(k) + other(k), 200),
    ("/all", lambda k: bearer(k), "token_missing"),
    ("/all", lambda k: bearer(k) + other(k, exp=EXP_EXPIRED), "token_expired"),
    # allow_missing / allow_missing_or_failed
    ("/optional", None, 200),
    ("/optional", lambda k: bearer(k), 200),
    ("/optional", lambda k: bearer(k, exp=EXP_EXPIRED), "token_expired"),
    ("/lenient", None, 200),
    ("/lenient", lambda k: bearer(k, exp=EXP_EXPIRED), 200),
    # subjects, max_lifetime
    ("/svc", lambda k: bearer(k, sub="alice"), "subject_mismatch"),
    ("/svc", lambda k: bearer(k, sub="svc-billing"), 200),
    ("/short", lambda k: bearer(k), "lifetime_too_long"),
    # per_route by Envoy route name
    ("/health", None, 200),
    ("/health/deep", lambda k: bearer(k, exp=EXP_EXPIRED), 200),
    ("/strict", lambda k: bearer(k, aud="api"), "audience_mismatch"),
    ("/strict", lambda k: bearer(k, aud="admin"), 200),
    ("/strict", None, "token_missing"),
])
def test_requirements(main_envoy, keys, path, headers_fn, expect):
    resp = get(main_envoy, path, headers=headers_fn(keys) if headers_fn else [])
    if expect == 200:
        assert_passed(resp)
    else:
        denied(main_envoy, resp, expect, path)


def bearer(k, **claim_overrides):
    return [("authorization", f"Bearer {mint(k['rsa-1'], claims(**claim_overrides))}")]


def other(k, **claim_overrides):
    c = claims(iss=OTHER_ISS, aud="other-api", sub="bob")
    c.update(claim_overrides)
    return [("x-other-token", mint(k["rsa-2"], {x: v for x, v in c.items() if v is not None}))]


def test_lenient_route_still_sets_identity_for_valid_token(main_envoy, keys):
    seen = assert_passed(get(main_envoy, "/lenient", headers=bearer(keys, sub="dave")))
    assert seen["headers"]["x-jwt-sub"] == "dave"


def test_requires_all_forwards_only_tokens_marked_forward(main_envoy, keys):
    hdrs = bearer(keys) + other(keys)
    seen = assert_passed(get(main_envoy, "/all", headers=hdrs))
    h = seen["headers"]
    assert h["x-jwt-sub"] == "alice" and h["x-other-sub"] == "bob"
    assert "authorization" not in h
    assert h["x-other-token"] == hdrs[1][1]


def test_cors_preflight_bypasses_authentication(main_envoy):
    preflight = [("origin", "https://app.test"), ("access-control-request-method", "POST")]
    seen = assert_passed(get(main_envoy, "/", headers=preflight, method="OPTIONS"))
    assert seen["method"] == "OPTIONS"
    resp = get(main_envoy, "/", headers=[("origin", "https://app.test")], method="OPTIONS")
    denied(main_envoy, resp, "token_missing", "/")


# ---------------------------------------------------------------------------------------
# MAIN: load balancing across the two backends
# ---------------------------------------------------------------------------------------
def test_accepted_traffic_round_robins_over_both_backends(main_envoy, keys, backends):
    token = mint(keys["rsa-1"])
    before = [b.count for b in backends]
    names = [assert_passed(get(main_envoy, "/rr", token))["backend"] for _ in range(10)]
    assert [b.count - n for b, n in zip(backends, before)] == [5, 5], names
    assert all(a != b for a, b in zip(names, names[1:])), f"not alternating: {names}"


def test_no_wasm_vm_failures(main_envoy):
    """Runs after the MAIN tests above: no Wasm trap, reload or failed VM happened."""
    stats = main_envoy.stats()
    failures = {k: v for k, v in stats.items()
                if k.startswith("wasm.") and ("fail" in k or "reload" in k) and v}
    assert failures == {}, failures
    assert stats.get("wasm.envoy.wasm.runtime.v8.created", 0) >= 1
    assert stats.get("wasmcustom.jwt_edge.allowed", 0) > 0, "allowed-requests metric missing"
    assert stats.get("wasmcustom.jwt_edge.denied", 0) > 0, "denied-requests metric missing"


def test_failover_when_one_backend_is_stopped(envoy_factory, keys):
    """Route retry policy: `connect-failure` + `previous_hosts` (see harness/config.py)."""
    a, b = Backend("backend-a").start(), Backend("backend-b").start()
    try:
        config = {
            "providers": {"p": {"issuer": IDP_ISS, "audiences": ["api"],
                                "local_jwks": {"inline_string": json.dumps(jwks([keys["rsa-1"]]))}}},
            "rules": [{"match": {"prefix": "/"}, "requires": provider("p")}],
        }
        envoy = envoy_factory(config, backends=[a, b])
        token = mint(keys["rsa-1"])
        for _ in range(4):
            assert_passed(get(envoy, "/", token))
        assert a.count == 2 and b.count == 2
        b.stop()
        served = [assert_passed(get(envoy, "/", token))["backend"] for _ in range(10)]
        assert served == ["backend-a"] * 10
        assert a.count == 12
        denied(envoy, get(envoy, "/"), "token_missing", "/")
    finally:
        a.stop()
        b.stop()


# ---------------------------------------------------------------------------------------
# STRIP: strip_failure_response
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("make_token, status", [
    (lambda k: None, 401),
    (lambda k: mint(k["rsa-1"], claims(exp=EXP_EXPIRED)), 401),
    (lambda k: "not-a-token", 401),
    (lambda k: mint(k["rsa-1"], claims(aud="other")), 403),
], ids=["missing", "expired", "malformed", "wrong-audience"])
def test_strip_failure_response(strip_envoy, keys, make_token, status):
    resp = get(strip_envoy, "/", make_token(keys))
    assert resp.status == status, resp
    assert resp.body == b""
    assert resp.header_all("www-authenticate") == []


def test_strip_failure_response_still_accepts(strip_envoy, keys):
    assert_passed(get(strip_envoy, "/", mint(keys["ed-1"])))


# ---------------------------------------------------------------------------------------
# LOCAL: local_jwks, token locations, per-provider options
# ---------------------------------------------------------------------------------------
def local_claims(**kw) -> dict:
    return claims(iss=LOCAL_ISS, **kw)


def test_local_jwks_needs_no_fetch(local_envoy, keys, idp):
    before = idp.count()
    for kid in ("rsa-1", "ec-p256", "ec-p384", "ed-1"):
        seen = assert_passed(get(local_envoy, "/", mint(keys[kid], local_claims())))
        assert seen["headers"]["authorization"].startswith("Bearer "), "forward: true keeps the token"
    assert idp.count() == before


def test_local_hs256_with_oct_key(local_envoy):
    token = mint(None, local_claims(), alg="HS256", header={"alg": "HS256", "kid": "hs-1"},
                 hmac_secret=HMAC_SECRET)
    assert_passed(get(local_envoy, "/", token))
    forged = mint(None, local_claims(), alg="HS256", header={"alg": "HS256", "kid": "hs-1"},
                  hmac_secret=b"another secret of sufficient length!!")
    denied(local_envoy, get(local_envoy, "/", forged), "bad_signature", "/")


def test_algorithm_allow_list(local_envoy, keys):
    for alg in ("RS384", "RS512", "PS384"):
        resp = get(local_envoy, "/", mint(keys["rsa-1"], local_claims(), alg=alg))
        denied(local_envoy, resp, "alg_not_allowed", "/")
    assert_passed(get(local_envoy, "/", mint(keys["rsa-1"], local_claims(), alg="PS256")))


@pytest.mark.parametrize("path, headers_fn, expect", [
    ("/cookie", lambda t: [("cookie", f"a=1; session={t}; b=2")], 200),
    ("/cookie", lambda t: [("authorization", f"Bearer {t}")], "token_missing"),
    ("/cookie", lambda t: [("cookie", f"session={t}"), ("cookie", "session=x.y.z")], "multiple_tokens"),
    ("/param?token={t}", lambda t: [], 200),
    ("/param?access_token={t}", lambda t: [], "token_missing"),
    ("/custom", lambda t: [("x-api-token", f"Token {t}")], 200),
    ("/custom", lambda t: [("x-api-token", t)], "token_missing"),
    ("/custom", lambda t: [("authorization", f"Bearer {t}")], "token_missing"),
])
def test_configured_token_locations(local_envoy, keys, path, headers_fn, expect):
    token = mint(keys["rsa-1"], local_claims())
    path = path.format(t=token)
    resp = get(local_envoy, path, headers=headers_fn(token))
    if expect == 200:
        assert_passed(resp)
    else:
        denied(local_envoy, resp, expect, path)


def test_require_expiration(local_envoy, keys):
    token = mint(keys["rsa-1"], local_claims(exp=None))
    assert_passed(get(local_envoy, "/noexp", token))
    denied(local_envoy, get(local_envoy, "/", token), "exp_missing", "/")


def test_max_token_bytes(local_envoy, keys):
    token = mint(keys["rsa-1"], local_claims(pad="x" * 1200))
    denied(local_envoy, get(local_envoy, "/small", token), "token_too_large", "/small")
    assert_passed(get(local_envoy, "/", token))
    assert_passed(get(local_envoy, "/small", mint(keys["ec-p256"], local_claims())))


def test_clock_skew(local_envoy, keys):
    """The only clock-relative test: `exp`/`nbf` 30 s on the wrong side of now are inside the
    default 60 s skew and outside a skew of 0 (margins of 30 s each way)."""
    now = int(time.time())
    for c in (local_claims(exp=now - 30), local_claims(nbf=now + 30)):
        token = mint(keys["rsa-1"], c)
        assert_passed(get(local_envoy, "/", token))
        code = "token_expired" if "nbf" not in c else "token_not_yet_valid"
        denied(local_envoy, get(local_envoy, "/skew0", token), code, "/skew0")
