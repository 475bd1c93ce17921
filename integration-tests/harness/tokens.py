"""Compact JWS tokens built by hand, so tests control every byte.

`mint()` base64url-encodes the exact header and payload bytes it is given (or the compact JSON
of dicts), signs ``header_b64 + "." + payload_b64`` with `cryptography`, and joins the parts.
ECDSA signatures are converted from DER to the raw ``r || s`` form JWS requires, unless
``der_signature=True`` asks for the (invalid) DER form. Overrides for each segment let tests
build malformed tokens (padding, duplicate members, wrong segment counts, ...).

Times are fixed, never derived from today's date.
"""

from __future__ import annotations

import json

from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from .keys import Key, b64url

IAT = 1700000000  # 2023-11-14
EXP_VALID = 4102444800  # 2100-01-01
EXP_EXPIRED = 1000000000  # 2001-09-09
NBF_FUTURE = 4102444800

_HASHES = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}

DEFAULT_ALG = {"rsa": "RS256", "p256": "ES256", "p384": "ES384", "ed25519": "EdDSA"}


def compact_json(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def sign(key: Key | None, alg: str, signing_input: bytes, *, der_signature: bool = False,
         hmac_secret: bytes | None = None) -> bytes:
    """The JWS signature of `signing_input` with `alg` (RFC 7518 §3)."""
    if alg == "none":
        return b""
    if alg.startswith("HS"):
        if hmac_secret is None:
            raise ValueError("HS* needs hmac_secret")
        mac = hmac.HMAC(hmac_secret, _HASHES[alg[2:]]())
        mac.update(signing_input)
        return mac.finalize()
    if key is None:
        raise ValueError(f"{alg} needs a key")
    priv = key.private
    if alg.startswith("RS"):
        return priv.sign(signing_input, padding.PKCS1v15(), _HASHES[alg[2:]]())
    if alg.startswith("PS"):
        h = _HASHES[alg[2:]]()
        return priv.sign(signing_input, padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size), h)
    if alg in ("ES256", "ES384", "ES512"):
        der = priv.sign(signing_input, ec.ECDSA(_HASHES[alg[2:]]()))
        if der_signature:
            return der
        r, s = decode_dss_signature(der)
        size = (priv.curve.key_size + 7) // 8
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    if alg == "EdDSA":
        return priv.sign(signing_input)
    raise ValueError(f"unsupported alg {alg}")


def claims(**overrides) -> dict:
    """A valid claim set for the default provider; `None` values delete a claim."""
    base = {
        "iss": "https://idp.test/",
        "aud": "api",
        "sub": "alice",
        "iat": IAT,
        "exp": EXP_VALID,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def mint(
    key: Key | None,
    payload: dict | bytes | None = None,
    *,
    alg: str | None = None,
    kid: str | None | bool = True,
    header: dict | None = None,
    header_bytes: bytes | None = None,
    payload_bytes: bytes | None = None,
    header_b64: str | None = None,
    payload_b64: str | None = None,
    signature: bytes | None = None,
    signature_b64: str | None = None,
    der_signature: bool = False,
    hmac_secret: bytes | None = None,
    signing_key: Key | None = None,
) -> str:
    """A compact JWS.

    - `alg` defaults to the key's natural algorithm; `kid=True` uses the key's kid, a string
      overrides it, `None`/`False` leaves it out.
    - `header` replaces the whole header dict; `*_bytes` replace the JSON bytes; `*_b64`
      replace the encoded segment verbatim.
    - `signing_key` signs with another key than the one named in the header (forgeries).
    - The signature is computed over the final encoded segments unless `signature` /
      `signature_b64` is given.
    """
    if alg is None:
        alg = DEFAULT_ALG[key.kind] if key is not None else "none"
    if header is None:
        header = {"alg": alg, "typ": "JWT"}
        if kid is True and key is not None:
            header["kid"] = key.kid
        elif isinstance(kid, str):
            header["kid"] = kid
    if payload is None:
        payload = claims()
    if isinstance(payload, bytes):
        payload_bytes = payload if payload_bytes is None else payload_bytes
    h64 = header_b64 if header_b64 is not None else b64url(
        header_bytes if header_bytes is not None else compact_json(header))
    p64 = payload_b64 if payload_b64 is not None else b64url(
        payload_bytes if payload_bytes is not None else compact_json(payload))
    signing_input = f"{h64}.{p64}".encode()
    if signature_b64 is None:
        if signature is None:
            signature = sign(signing_key or key, alg, signing_input,
                             der_signature=der_signature, hmac_secret=hmac_secret)
        signature_b64 = b64url(signature)
    return f"{h64}.{p64}.{signature_b64}"


def segments(token: str) -> list[str]:
    return token.split(".")
