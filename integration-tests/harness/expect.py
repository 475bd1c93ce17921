"""What a denial from jwt-edge must look like (mirrors src/authn/error.rs; test_harness.py
`test_expect_mirrors_error_codes` checks the codes and status classes against it)."""

from __future__ import annotations

import re

from .client import Response

# error code -> HTTP status and response class (AuthError::status).
UNAUTHORIZED = {"token_missing"}
FORBIDDEN = {"audience_mismatch", "subject_mismatch", "insufficient_scope", "claim_mismatch"}
UNAVAILABLE = {"jwks_unavailable", "revocation_unavailable", "dpop_replay_cache_full",
               "dpop_nonce_unavailable", "header_change_refused"}
# 401 with `DPoP ... error="invalid_dpop_proof"` (RFC 9449 §7.1).
INVALID_DPOP_PROOF = {
    "dpop_proof_missing", "dpop_proof_multiple", "dpop_proof_malformed", "dpop_proof_typ",
    "dpop_proof_alg", "dpop_proof_key", "dpop_proof_signature", "dpop_htm_mismatch",
    "dpop_htu_mismatch", "dpop_iat_out_of_window", "dpop_ath_mismatch", "dpop_jkt_mismatch",
    "dpop_replayed",
}
# 401 with `DPoP ... error="use_dpop_nonce"` and a `DPoP-Nonce` header (RFC 9449 §8).
USE_DPOP_NONCE = {"dpop_nonce_missing", "dpop_nonce_invalid"}
# 400 `invalid_request`: only on hosts whose header removal cannot be trusted (ngx_wasm_module).
INVALID_REQUEST = {"identity_header_present", "token_in_query"}

# error code -> full-match pattern of the description (AuthError's Display).
DESCRIPTIONS = {
    "token_missing": re.escape("no token in the request"),
    "token_too_large": r"token is larger than \d+ bytes",
    "multiple_tokens": re.escape("the request carries more than one token"),
    "token_is_jwe": re.escape("encrypted tokens (JWE) are not accepted"),
    "token_malformed": r"token is not a JWS compact serialization: .+",
    "bad_base64": r"token \w+ is not unpadded base64url",
    "bad_json": r"token \w+ is not a JSON object",
    "duplicate_member": r"token \w+ has a duplicate member name",
    "alg_missing": re.escape("token header has no alg"),
    "alg_not_allowed": re.escape("the token's algorithm is not allowed"),
    "crit_unsupported": re.escape("token header crit names an unsupported extension"),
    "unknown_kid": re.escape("the key set has no key with the token's kid"),
    "no_matching_key": re.escape("no key in the key set fits the token's kid and algorithm"),
    "bad_signature": re.escape("signature verification failed"),
    "claim_malformed": r"claim \S+ has the wrong type",
    "exp_missing": re.escape("token has no exp claim"),
    "token_expired": re.escape("token is expired"),
    "token_not_yet_valid": re.escape("token is not yet valid"),
    "lifetime_too_long": re.escape("token lifetime exceeds max_lifetime"),
    "issuer_mismatch": re.escape("issuer is not accepted"),
    "audience_mismatch": re.escape("audience is not accepted"),
    "subject_mismatch": re.escape("subject is not accepted"),
    "jwks_unavailable": re.escape("signing keys are not available"),
    "insufficient_scope": r"token lacks required scope .+",
    "claim_mismatch": r"claim \S+ does not have a required value",
    "token_revoked": re.escape("token has been revoked"),
    "revocation_unavailable": re.escape("the revocation list is not available"),
    "header_change_refused": re.escape("the proxy refused a header change the request needs"),
    "dpop_proof_missing": re.escape("the request has no DPoP proof"),
    "dpop_proof_multiple": re.escape("the request carries more than one DPoP proof"),
    "dpop_proof_malformed": r"the DPoP proof is malformed: .+",
    "dpop_proof_typ": re.escape("the DPoP proof's typ is not dpop+jwt"),
    "dpop_proof_alg": re.escape("the DPoP proof's algorithm is not allowed"),
    "dpop_proof_key": r"the DPoP proof's key is not accepted: .+",
    "dpop_proof_signature": re.escape("the DPoP proof's signature does not verify"),
    "dpop_htm_mismatch": re.escape("the DPoP proof is for another method"),
    "dpop_htu_mismatch": re.escape("the DPoP proof is for another URI"),
    "dpop_iat_out_of_window": re.escape("the DPoP proof is too old or too far in the future"),
    "dpop_ath_mismatch": re.escape("the DPoP proof is not bound to this access token"),
    "dpop_jkt_mismatch": re.escape("the DPoP proof's key is not the key the token is bound to"),
    "dpop_replayed": re.escape("the DPoP proof has been used before"),
    "dpop_replay_cache_full": re.escape("the DPoP replay cache cannot take this proof"),
    "dpop_token_unbound": re.escape("the access token is not bound to a DPoP key"),
    "dpop_bound_token_as_bearer": re.escape("a DPoP-bound token was presented as a bearer token"),
    "dpop_nonce_missing": re.escape("the DPoP proof has no nonce: use the one in DPoP-Nonce"),
    "dpop_nonce_invalid": re.escape(
        "the DPoP proof's nonce is not valid or has expired: use the one in DPoP-Nonce"),
    "dpop_nonce_unavailable": re.escape("the DPoP nonce secret is unavailable"),
    "mtls_certificate_missing": re.escape(
        "the token is certificate-bound and no client certificate was presented"),
    "mtls_thumbprint_mismatch": re.escape("the token is bound to another client certificate"),
    "mtls_token_unbound": re.escape("the access token is not bound to a client certificate"),
    "identity_header_present": re.escape("the request carries a header that only the filter may set"),
    "token_in_query": re.escape("the token cannot be taken out of the query string here: send it in a header"),
}


def status_for(code: str) -> int:
    if code in FORBIDDEN:
        return 403
    if code in UNAVAILABLE:
        return 503
    if code in INVALID_REQUEST:
        return 400
    return 401


def realm(authority: str, path: str, scheme: str = "http") -> str:
    """`<scheme>://<authority><path without query>`, cut to 256 characters, quote-safe."""
    path = re.split(r"[?#]", path, maxsplit=1)[0]
    value = f"{scheme}://{authority}{path}"[:256]
    return "".join(c for c in value if c not in '"\\' and c.isprintable())


def assert_denied(resp: Response, code: str, *, authority: str, path: str,
                  stripped: bool = False, scheme: str = "http") -> None:
    """`resp` is jwt-edge's denial for `code` on a request to `path`."""
    expected_status = status_for(code)
    assert resp.status == expected_status, f"want {expected_status} {code}, got {resp!r}"
    assert "backend" not in (resp.header("x-backend") or ""), f"request reached a backend: {resp!r}"
    www = resp.header_all("www-authenticate")
    if stripped:
        assert resp.body == b"", f"strip_failure_response must send no body: {resp!r}"
        assert www == [], f"strip_failure_response must send no WWW-Authenticate: {resp!r}"
        return
    assert (resp.header("content-type") or "").split(";")[0].strip() == "application/json", resp
    body = resp.json()
    assert set(body) == {"error", "error_description"}, body
    assert body["error"] == code, f"want {code}, got {body}"
    description = body["error_description"]
    assert re.fullmatch(DESCRIPTIONS[code], description), f"{code}: unexpected description {description!r}"
    r = realm(authority, path, scheme)
    if expected_status == 503:
        assert www == [], f"503 must not carry WWW-Authenticate: {resp!r}"
    elif code in INVALID_DPOP_PROOF:
        # A provider with DPoP on adds `, algs="…"` (test_dpop.py checks it).
        assert len(www) == 1 and www[0].startswith(
            f'DPoP realm="{r}", error="invalid_dpop_proof", error_description="{description}"'), resp
    elif code in USE_DPOP_NONCE:
        # With `, algs="…"` and a `DPoP-Nonce` header (test_dpop_nonce.py checks both).
        assert len(www) == 1 and www[0].startswith(
            f'DPoP realm="{r}", error="use_dpop_nonce", error_description="{description}"'), resp
    elif code in UNAUTHORIZED:
        assert www == [f'Bearer realm="{r}"'], resp
    elif expected_status == 401:
        assert www == [f'Bearer realm="{r}", error="invalid_token", error_description="{description}"'], resp
    elif expected_status == 400:
        assert www == [f'Bearer realm="{r}", error="invalid_request", error_description="{description}"'], resp
    else:
        assert len(www) == 1 and www[0].startswith(
            f'Bearer realm="{r}", error="insufficient_scope", error_description="{description}"'), resp


def assert_passed(resp: Response) -> dict:
    """`resp` came from a backend; returns what the backend saw."""
    assert resp.status == 200, f"want 200 from a backend, got {resp!r}"
    seen = resp.json()
    assert "backend" in seen, seen
    return seen
