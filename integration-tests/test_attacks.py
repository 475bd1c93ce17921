"""Attack table through real Envoy: forged, confused, malformed and smuggled tokens.

One Envoy (module-scoped) runs jwt-edge with one provider: issuer `https://idp.test/`,
audience `api`, the default algorithm list (every asymmetric algorithm, no HS*, no `none`),
and a remote JWKS (rsa-1, ec-p256, ec-p384, ed-1) fetched from the test IdP through the `idp`
cluster. An extra cluster `attacker` points at a canary server that serves a JWKS holding the
attacker's key: if the filter ever followed a token's `jku`/`x5u`, the canary would see it.

Every row of ATTACKS asserts the exact outcome: jwt-edge's status and `error` code (checked
field by field against src/authn/error.rs by `assert_denied`), a 200 from a backend for the
few inputs that are valid, or Envoy's own codec reply (400/431) for bytes that never reach
the filter. The attack classes come from RFC 8725 (JWT Best Current Practices), the published
advisories against JWT libraries and gateways (alg `none` and RS256→HS256 confusion, e.g.
CVE-2015-9235 and CVE-2022-29217; ECDSA r = s = 0, CVE-2022-21449; `jku`/`x5u`/`kid`
injection; Istio CVE-2019-12995), jwt_tool's `-X` attack modes, and Project Wycheproof's
`doc/json_web_crypto.md`.

After the table: a bit-flip sweep over one RS256 and one ES256 token, then checks that the
canary and the IdP saw no request driven by a token header, that Envoy counted no Wasm VM
failure or reload, and that a valid token still gets 200 (the VM is alive).
"""

from __future__ import annotations

import base64
import datetime
import json
import random
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from harness import client
from harness import config as envoy_config
from harness.expect import DESCRIPTIONS, assert_denied, assert_passed
from harness.keys import Key, b64url, load_all
from harness.server import LoopbackServer
from harness.tokens import EXP_EXPIRED, NBF_FUTURE, claims, compact_json, mint, segments

IDP_ISS = "https://idp.test/"
PATH = "/resource"

# Group orders (SEC 2 / RFC 8032): ECDSA r and s must be in [1, n-1]; Ed25519 S < L.
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
P384_N = int("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973", 16)
ED25519_L = 2**252 + 27742317777372353535851937790883648493
B64URL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

ENVOY_WASM_FAILURE_MARKERS = ("fail", "reload", "crash", "abort")


# ---------------------------------------------------------------------------------------
# The canary: any request a token's jku/x5u caused would land here
# ---------------------------------------------------------------------------------------
class _CanaryHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def do_GET(self):  # noqa: N802
        owner: Canary = self.server.owner  # type: ignore[attr-defined]
        with owner.lock:
            owner.requests.append(self.path)
        body = json.dumps(owner.document).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_HEAD = do_GET

    def log_message(self, format, *args):  # noqa: A002
        pass


class Canary(LoopbackServer):
    def __init__(self, document: dict):
        super().__init__(_CanaryHandler)
        self.document = document
        self.requests: list[str] = []


# ---------------------------------------------------------------------------------------
# Token helpers
# ---------------------------------------------------------------------------------------
def unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def sig_of(token: str) -> bytes:
    return unb64(segments(token)[2])


def with_sig(token: str, sig: bytes) -> str:
    h, p, _ = segments(token)
    return f"{h}.{p}.{b64url(sig)}"


def std_b64(segment: str) -> str:
    return segment.replace("-", "+").replace("_", "/")


def non_canonical(segment: str) -> str:
    """`segment` with a non-zero unused low bit in its last character: lenient decoders give
    the same bytes, a canonical one refuses it. Needs len % 4 in (2, 3)."""
    assert len(segment) % 4 in (2, 3), segment
    last = B64URL_ALPHABET.index(segment[-1])
    assert last & 1 == 0
    return segment[:-1] + B64URL_ALPHABET[last | 1]


def header_json(key: Key, **extra) -> dict:
    return {"alg": {"rsa": "RS256", "p256": "ES256", "p384": "ES384", "ed25519": "EdDSA"}[key.kind],
            "typ": "JWT", "kid": key.kid, **extra}


def header_with_b64_len(key: Key, want_mod: tuple[int, ...]) -> dict:
    """A header for `key` whose base64url length mod 4 is in `want_mod` (padding member)."""
    for n in range(8):
        h = header_json(key, x="a" * n)
        if len(b64url(compact_json(h))) % 4 in want_mod:
            return h
    raise AssertionError("no header length found")


def claims_with_b64_len(want_mod: tuple[int, ...]) -> dict:
    for n in range(8):
        c = claims(x="a" * n)
        if len(b64url(compact_json(c))) % 4 in want_mod:
            return c
    raise AssertionError("no payload length found")


def with_std_chars(make: Callable[[int], bytes]) -> bytes:
    """The first `make(i)` whose base64url form has `-` or `_` (so standard base64 differs)."""
    for i in range(2000):
        data = make(i)
        if set(b64url(data)) & {"-", "_"}:
            return data
    raise AssertionError("no candidate found")


def raw_payload(extra: str) -> bytes:
    """The default claims with `extra` JSON text inserted before the closing brace."""
    return compact_json(claims())[:-1] + b"," + extra.encode() + b"}"


def payload_without(name: str, extra: str) -> bytes:
    """The default claims without `name`, with `extra` inserted."""
    base = compact_json(claims(**{name: None}))
    return base[:-1] + b"," + extra.encode() + b"}"


def self_signed_cert_der(key: Key) -> bytes:
    """A self-signed certificate for the attacker's key (for an embedded `x5c`)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idp.test")])
    when = datetime.datetime(2023, 11, 14, tzinfo=datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.private.public_key()).serial_number(1)
            .not_valid_before(when).not_valid_after(when + datetime.timedelta(days=36500))
            .sign(key.private, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


def hmac_secrets(key: Key) -> dict[str, bytes]:
    """Every public form of `key` an HS* confusion attack uses as the HMAC secret."""
    pub = key.private.public_key()
    spki_pem = pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    out = {
        "spki-pem": spki_pem,
        "spki-pem-no-newline": spki_pem.rstrip(b"\n"),
        "spki-der": pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
        "jwk-json": compact_json(key.public_jwk()),
    }
    if key.kind == "rsa":
        nums = pub.public_numbers()
        out["pkcs1-pem"] = pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
        out["pkcs1-der"] = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
        out["jwk-n-bytes"] = nums.n.to_bytes((nums.n.bit_length() + 7) // 8, "big")
    if key.kind == "ed25519":
        out["raw"] = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return out


# ---------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------
@dataclass
class Ctx:
    k: dict[str, Key]
    canary_url: str
    idp_base: str


@dataclass
class Attack:
    id: str
    # ctx -> (path, headers). Headers are (name, str | bytes) pairs, sent as given.
    request: Callable[[Ctx], tuple[str, list]]
    # An error code (jwt-edge denial), 200 (reaches a backend), or ("envoy", status) for a
    # request Envoy's HTTP codec refuses before any filter runs.
    expect: str | int | tuple[str, int]


def bearer(make: Callable[[Ctx], str], scheme: str = "Bearer") -> Callable[[Ctx], tuple[str, list]]:
    return lambda c: (PATH, [("authorization", f"{scheme} {make(c)}")])


def row(id_: str, make: Callable[[Ctx], str], expect) -> Attack:
    return Attack(id_, bearer(make), expect)


def raw_auth(value: Callable[[Ctx], bytes | str], expect, id_: str) -> Attack:
    return Attack(id_, lambda c: (PATH, [("authorization", value(c))]), expect)


def query(make: Callable[[Ctx], str], expect, id_: str, headers=None) -> Attack:
    return Attack(id_, lambda c: (f"{PATH}?{make(c)}", list(headers(c)) if headers else []), expect)


def rsa_tok(c: Ctx, **kw) -> str:
    return mint(c.k["rsa-1"], **kw)


def attacks() -> list[Attack]:
    A: list[Attack] = []

    # -- 1.1 alg: none in every casing, with an empty or a non-empty signature -------------
    for alg in ("none", "None", "NONE", "nOnE"):
        # An empty third segment is refused by structure, before alg is even read.
        A.append(row(f"alg-{alg}-empty-sig",
                     lambda c, a=alg: mint(None, alg="none", header={"alg": a, "typ": "JWT"}),
                     "token_malformed"))
        A.append(row(f"alg-{alg}-with-kid-empty-sig",
                     lambda c, a=alg: mint(None, alg="none", header={"alg": a, "kid": "rsa-1"}),
                     "token_malformed"))
        A.append(row(f"alg-{alg}-rsa-sig",
                     lambda c, a=alg: mint(None, alg="none", header={"alg": a, "kid": "rsa-1"},
                                           signature=sig_of(rsa_tok(c))),
                     "alg_not_allowed"))
        A.append(row(f"alg-{alg}-junk-sig",
                     lambda c, a=alg: mint(None, alg="none", header={"alg": a}, signature_b64="AA"),
                     "alg_not_allowed"))
    A.append(row("alg-none-two-segments",
                 lambda c: ".".join(segments(mint(None, alg="none", header={"alg": "none"}))[:2]),
                 "token_malformed"))

    # -- other alg values -------------------------------------------------------------------
    for id_, alg_value, code in [
        ("alg-missing", None, "alg_missing"),
        ("alg-null", "null", "alg_missing"),
        ("alg-number", 256, "alg_missing"),
        ("alg-array", ["RS256"], "alg_missing"),
        ("alg-empty-string", "", "alg_not_allowed"),
        ("alg-lowercase-rs256", "rs256", "alg_not_allowed"),
        ("alg-trailing-space", "RS256 ", "alg_not_allowed"),
        ("alg-es512-unsupported", "ES512", "alg_not_allowed"),
        ("alg-ed25519-fully-specified", "Ed25519", "alg_not_allowed"),
        ("alg-rsa-oaep-jwe-alg", "RSA-OAEP", "alg_not_allowed"),
    ]:
        def make(c, v=alg_value):
            h = {"kid": "rsa-1", "typ": "JWT"}
            if v is not None:
                h["alg"] = None if v == "null" else v
            return mint(c.k["rsa-1"], alg="RS256", header=h)
        A.append(row(id_, make, code))

    # -- RS256 -> HS* confusion: HMAC keyed with the public key, every encoding ---------------
    for kid in ("rsa-1", "ec-p256", "ed-1"):
        for secret_name in hmac_secrets(load_all()[kid]):
            for alg in (("HS256", "HS384", "HS512") if kid == "rsa-1" else ("HS256",)):
                A.append(row(
                    f"hmac-confusion-{alg}-{kid}-{secret_name}",
                    lambda c, a=alg, kd=kid, s=secret_name: mint(
                        None, alg=a, header={"alg": a, "typ": "JWT", "kid": kd},
                        hmac_secret=hmac_secrets(c.k[kd])[s]),
                    "alg_not_allowed"))
    A.append(row("hmac-confusion-HS256-no-kid-spki-pem",
                 lambda c: mint(None, alg="HS256", header={"alg": "HS256"},
                                hmac_secret=hmac_secrets(c.k["rsa-1"])["spki-pem"]),
                 "alg_not_allowed"))

    # -- alg / key-type binding ---------------------------------------------------------------
    A += [
        row("rs256-with-ec-kid", lambda c: mint(c.k["rsa-1"], kid="ec-p256"), "no_matching_key"),
        row("es256-with-rsa-kid", lambda c: mint(c.k["ec-p256"], kid="rsa-1"), "no_matching_key"),
        row("es256-with-p384-kid", lambda c: mint(c.k["ec-p256"], kid="ec-p384"), "no_matching_key"),
        row("es384-with-p256-kid", lambda c: mint(c.k["ec-p384"], kid="ec-p256"), "no_matching_key"),
        row("eddsa-with-ec-kid", lambda c: mint(c.k["ed-1"], kid="ec-p256"), "no_matching_key"),
        # The header says PS256; the bytes are an RS256 signature over the same input.
        row("ps256-header-rs256-signature",
            lambda c: mint(c.k["rsa-1"], alg="RS256", header={"alg": "PS256", "kid": "rsa-1"}), "bad_signature"),
        row("rs256-header-ps256-signature",
            lambda c: mint(c.k["rsa-1"], alg="PS256", header={"alg": "RS256", "kid": "rsa-1"}), "bad_signature"),
    ]

    # -- ECDSA: psychic signatures, out-of-range scalars, lengths, DER -----------------------
    def ec_raw(key: str, r: int | None, s: int | None) -> Callable[[Ctx], str]:
        """A token claiming sub=admin whose raw r || s uses the given scalars (None: keep the
        one from a real signature over the same input)."""
        def make(c: Ctx) -> str:
            good = mint(c.k[key], claims(sub="admin"))
            sig = sig_of(good)
            half = len(sig) // 2
            rr = int.from_bytes(sig[:half], "big") if r is None else r
            ss = int.from_bytes(sig[half:], "big") if s is None else s
            return with_sig(good, rr.to_bytes(half, "big") + ss.to_bytes(half, "big"))
        return make

    def ec_sig_edit(key: str, edit: Callable[[bytes], bytes]) -> Callable[[Ctx], str]:
        def make(c: Ctx) -> str:
            good = mint(c.k[key], claims(sub="admin"))
            return with_sig(good, edit(sig_of(good)))
        return make

    for key, n in (("ec-p256", P256_N), ("ec-p384", P384_N)):
        A += [
            row(f"{key}-psychic-r-s-zero-all-zero-sig", ec_raw(key, 0, 0), "bad_signature"),
            row(f"{key}-psychic-der-MAYCAQACAQA",
                lambda c, k_=key: mint(c.k[k_], claims(sub="admin"), signature_b64="MAYCAQACAQA"), "bad_signature"),
            row(f"{key}-r-s-equal-n", ec_raw(key, n, n), "bad_signature"),
            row(f"{key}-r-s-equal-n-minus-1", ec_raw(key, n - 1, n - 1), "bad_signature"),
            row(f"{key}-r-s-one", ec_raw(key, 1, 1), "bad_signature"),
            row(f"{key}-r-zero", ec_raw(key, 0, None), "bad_signature"),
            row(f"{key}-s-zero", ec_raw(key, None, 0), "bad_signature"),
            row(f"{key}-r-equal-n", ec_raw(key, n, None), "bad_signature"),
            row(f"{key}-s-equal-n", ec_raw(key, None, n), "bad_signature"),
            row(f"{key}-truncated-sig", ec_sig_edit(key, lambda s: s[:-1]), "bad_signature"),
            row(f"{key}-sig-plus-trailing-byte", ec_sig_edit(key, lambda s: s + b"\x00"), "bad_signature"),
            row(f"{key}-sig-plus-leading-zero", ec_sig_edit(key, lambda s: b"\x00" + s), "bad_signature"),
            row(f"{key}-r-s-swapped", ec_sig_edit(key, lambda s: s[len(s) // 2:] + s[:len(s) // 2]),
                "bad_signature"),
            row(f"{key}-der-signature",
                lambda c, k_=key: mint(c.k[k_], claims(sub="admin"), der_signature=True), "bad_signature"),
            row(f"{key}-signature-of-other-payload", lambda c, k_=key: with_sig(
                mint(c.k[k_], claims(sub="admin")), sig_of(mint(c.k[k_], claims(sub="alice")))),
                "bad_signature"),
        ]
    A += [
        row("ec-p256-63-byte-sig", lambda c: mint(c.k["ec-p256"], signature=bytes(63)), "bad_signature"),
        row("ec-p256-65-byte-sig", lambda c: mint(c.k["ec-p256"], signature=bytes(65)), "bad_signature"),
        row("ec-p256-one-byte-sig", lambda c: mint(c.k["ec-p256"], signature_b64="AA"), "bad_signature"),
        row("ec-p256-p384-sized-sig", lambda c: mint(c.k["ec-p256"], signature=sig_of(mint(c.k["ec-p384"]))),
            "bad_signature"),
        # High-S is a valid ECDSA signature (RFC 7518 has no low-S rule): the filter must accept it.
        Attack("ec-p256-high-s-is-valid", bearer(ec_sig_edit("ec-p256", lambda s: s[:32] + (
            P256_N - int.from_bytes(s[32:], "big")).to_bytes(32, "big"))), 200),
        row("es256-forged-by-other-p256-key",
            lambda c: mint(c.k["ec-p256"], signing_key=Key("ec-p256", "p256", ATTACKER_P256)), "bad_signature"),
        row("es256-no-kid-forged-by-other-p256-key",
            lambda c: mint(c.k["ec-p256"], kid=None, signing_key=Key("x", "p256", ATTACKER_P256)), "bad_signature"),
    ]

    # -- Ed25519 ------------------------------------------------------------------------------
    A += [
        row("ed25519-all-zero-sig", lambda c: mint(c.k["ed-1"], signature=bytes(64)), "bad_signature"),
        row("ed25519-63-byte-sig", lambda c: mint(c.k["ed-1"], signature=sig_of(mint(c.k["ed-1"]))[:63]),
            "bad_signature"),
        row("ed25519-65-byte-sig", lambda c: mint(c.k["ed-1"], signature=sig_of(mint(c.k["ed-1"])) + b"\x00"),
            "bad_signature"),
        # S + L: the same signature for a lenient verifier (malleability), refused by S < L.
        row("ed25519-s-plus-l", lambda c: (lambda sig: mint(c.k["ed-1"], signature=sig[:32] + (
            int.from_bytes(sig[32:], "little") + ED25519_L).to_bytes(32, "little")))(sig_of(mint(c.k["ed-1"]))),
            "bad_signature"),
    ]

    # -- RSA signature stripping, truncation, padding ------------------------------------------
    A += [
        row("rsa-signature-stripped", lambda c: ".".join(segments(rsa_tok(c))[:2]) + ".", "token_malformed"),
        row("rsa-signature-stripped-no-dot", lambda c: ".".join(segments(rsa_tok(c))[:2]), "token_malformed"),
        row("rsa-sig-truncated-one-byte", lambda c: with_sig(rsa_tok(c), sig_of(rsa_tok(c))[:-1]), "bad_signature"),
        row("rsa-sig-leading-zero-byte", lambda c: with_sig(rsa_tok(c), b"\x00" + sig_of(rsa_tok(c))), "bad_signature"),
        row("rsa-sig-trailing-zero-byte", lambda c: with_sig(rsa_tok(c), sig_of(rsa_tok(c)) + b"\x00"), "bad_signature"),
        row("rsa-sig-all-zero", lambda c: with_sig(rsa_tok(c), bytes(256)), "bad_signature"),
        row("rsa-sig-equals-modulus", lambda c: with_sig(rsa_tok(c), hmac_secrets(c.k["rsa-1"])["jwk-n-bytes"]),
            "bad_signature"),
        row("rsa-sig-one", lambda c: with_sig(rsa_tok(c), (1).to_bytes(256, "big")), "bad_signature"),
        row("rsa-forged-with-reused-kid", lambda c: mint(c.k["rsa-1"], signing_key=c.k["rsa-evil"]), "bad_signature"),
        row("rsa-forged-no-kid", lambda c: mint(c.k["rsa-1"], kid=None, signing_key=c.k["rsa-evil"]), "bad_signature"),
        row("rsa-tampered-payload", lambda c: with_sig(mint(c.k["rsa-1"], claims(sub="admin")), sig_of(rsa_tok(c))),
            "bad_signature"),
    ]

    # -- kid tricks ---------------------------------------------------------------------------
    A += [
        row("kid-path-traversal", lambda c: mint(c.k["rsa-1"], kid="../../etc/passwd"), "unknown_kid"),
        row("kid-dev-null", lambda c: mint(c.k["rsa-1"], kid="../../../../../../dev/null"), "unknown_kid"),
        row("kid-sql-injection", lambda c: mint(c.k["rsa-1"], kid="x' UNION SELECT 'rsa-1' --"), "unknown_kid"),
        row("kid-sql-or-true", lambda c: mint(c.k["rsa-1"], kid="' OR '1'='1"), "unknown_kid"),
        row("kid-command-injection", lambda c: mint(c.k["rsa-1"], kid="rsa-1|cat /etc/passwd"), "unknown_kid"),
        row("kid-url", lambda c: mint(c.k["rsa-1"], kid=c.canary_url), "unknown_kid"),
        row("kid-4096-chars", lambda c: mint(c.k["rsa-1"], kid="k" * 4096), "unknown_kid"),
        row("kid-case-variant", lambda c: mint(c.k["rsa-1"], kid="RSA-1"), "unknown_kid"),
        row("kid-trailing-nul", lambda c: mint(c.k["rsa-1"], kid="rsa-1\u0000"), "unknown_kid"),
        row("kid-trailing-space", lambda c: mint(c.k["rsa-1"], kid="rsa-1 "), "unknown_kid"),
        row("kid-empty-string", lambda c: mint(c.k["rsa-1"], kid=""), "unknown_kid"),
        row("kid-of-other-key-type", lambda c: mint(c.k["rsa-1"], kid="ed-1"), "no_matching_key"),
        row("kid-number", lambda c: mint(c.k["rsa-1"], header={"alg": "RS256", "kid": 1}), "token_malformed"),
        row("kid-null", lambda c: mint(c.k["rsa-1"], header={"alg": "RS256", "kid": None}), "token_malformed"),
        row("kid-array", lambda c: mint(c.k["rsa-1"], header={"alg": "RS256", "kid": ["rsa-1"]}), "token_malformed"),
        row("kid-object", lambda c: mint(c.k["rsa-1"], header={"alg": "RS256", "kid": {"kid": "rsa-1"}}),
            "token_malformed"),
        row("typ-number", lambda c: mint(c.k["rsa-1"], header={"alg": "RS256", "kid": "rsa-1", "typ": 1}),
            "token_malformed"),
    ]

    # -- embedded and remote keys: jwk, jku, x5u, x5c (never trusted, never fetched) ----------
    def evil(c: Ctx, kid: str | None = "rsa-1", **members) -> str:
        h = {"alg": "RS256", "typ": "JWT", **members}
        if kid is not None:
            h["kid"] = kid
        return mint(c.k["rsa-evil"], claims(sub="admin"), header=h)

    A += [
        row("embedded-jwk-reused-kid", lambda c: evil(c, jwk=c.k["rsa-evil"].public_jwk()), "bad_signature"),
        row("embedded-jwk-no-kid", lambda c: evil(c, None, jwk=c.k["rsa-evil"].public_jwk()), "bad_signature"),
        row("embedded-jwk-own-kid", lambda c: evil(c, "rsa-evil", jwk=c.k["rsa-evil"].public_jwk()), "unknown_kid"),
        row("jku-canary-reused-kid", lambda c: evil(c, jku=c.canary_url), "bad_signature"),
        row("jku-canary-own-kid", lambda c: evil(c, "rsa-evil", jku=c.canary_url), "unknown_kid"),
        row("jku-idp-host-own-kid", lambda c: evil(c, "rsa-evil", jku=c.idp_base + "/attacker-jwks.json"),
            "unknown_kid"),
        row("x5u-canary-reused-kid", lambda c: evil(c, x5u=c.canary_url + "?x5u"), "bad_signature"),
        row("x5u-idp-host-no-kid", lambda c: evil(c, None, x5u=c.idp_base + "/attacker-cert.pem"), "bad_signature"),
        row("x5c-self-signed-reused-kid",
            lambda c: evil(c, x5c=[base64.b64encode(self_signed_cert_der(c.k["rsa-evil"])).decode()]),
            "bad_signature"),
        row("x5c-self-signed-no-kid",
            lambda c: evil(c, None, x5c=[base64.b64encode(self_signed_cert_der(c.k["rsa-evil"])).decode()]),
            "bad_signature"),
    ]

    # -- crit, b64, JWE members in a JWS -------------------------------------------------------
    def hdr(c: Ctx, **members) -> str:
        return mint(c.k["rsa-1"], header={"alg": "RS256", "kid": "rsa-1", **members})

    A += [
        row("crit-unknown-extension", lambda c: hdr(c, crit=["x-ext"], **{"x-ext": 1}), "crit_unsupported"),
        row("crit-empty-array", lambda c: hdr(c, crit=[]), "crit_unsupported"),
        row("crit-not-an-array", lambda c: hdr(c, crit="x-ext"), "crit_unsupported"),
        row("crit-registered-name-exp", lambda c: hdr(c, crit=["exp"], exp=1), "crit_unsupported"),
        row("crit-b64-false", lambda c: hdr(c, crit=["b64"], b64=False), "crit_unsupported"),
        row("b64-false-without-crit", lambda c: hdr(c, b64=False), "crit_unsupported"),
        row("zip-in-jws", lambda c: hdr(c, zip="DEF"), "token_malformed"),
        row("enc-in-jws", lambda c: hdr(c, enc="A256GCM"), "token_malformed"),
    ]

    # -- duplicate JSON members (incl. names that are equal after unescaping) ------------------
    def dup_header(c: Ctx, text: str) -> str:
        return mint(c.k["rsa-1"], alg="RS256", header_bytes=text.encode())

    def dup_payload(c: Ctx, raw: bytes) -> str:
        return mint(c.k["rsa-1"], payload_bytes=raw)

    A += [
        row("dup-header-alg", lambda c: dup_header(c, '{"alg":"RS256","kid":"rsa-1","alg":"RS256"}'), "duplicate_member"),
        row("dup-header-alg-none-last", lambda c: dup_header(c, '{"alg":"RS256","kid":"rsa-1","alg":"none"}'),
            "duplicate_member"),
        row("dup-header-alg-escaped", lambda c: dup_header(c, '{"alg":"RS256","kid":"rsa-1","\\u0061lg":"HS256"}'),
            "duplicate_member"),
        row("dup-header-kid", lambda c: dup_header(c, '{"alg":"RS256","kid":"rsa-evil","kid":"rsa-1"}'),
            "duplicate_member"),
        row("dup-payload-exp", lambda c: dup_payload(c, raw_payload(f'"exp":{EXP_EXPIRED}')), "duplicate_member"),
        row("dup-payload-exp-valid-last",
            lambda c: dup_payload(c, payload_without("exp", f'"exp":{EXP_EXPIRED},"exp":4102444800')),
            "duplicate_member"),
        row("dup-payload-sub", lambda c: dup_payload(c, raw_payload('"sub":"admin"')), "duplicate_member"),
        row("dup-payload-sub-escaped", lambda c: dup_payload(c, raw_payload('"\\u0073ub":"admin"')), "duplicate_member"),
        row("dup-payload-iss-escaped-solidus",
            lambda c: dup_payload(c, raw_payload('"\\u0069ss":"https://evil.test/"')), "duplicate_member"),
        row("dup-payload-nested", lambda c: dup_payload(c, raw_payload('"org":{"role":"user","role":"admin"}')),
            "duplicate_member"),
    ]

    # -- JSON strictness -------------------------------------------------------------------------
    A += [
        row("payload-bom", lambda c: dup_payload(c, b"\xef\xbb\xbf" + compact_json(claims())), "bad_json"),
        row("payload-trailing-garbage", lambda c: dup_payload(c, compact_json(claims()) + b"x"), "bad_json"),
        row("payload-two-objects", lambda c: dup_payload(c, compact_json(claims()) + b"{}"), "bad_json"),
        row("payload-comment", lambda c: dup_payload(c, raw_payload('"a":1/*c*/')), "bad_json"),
        row("payload-nan", lambda c: dup_payload(c, raw_payload('"a":NaN')), "bad_json"),
        row("payload-lone-surrogate", lambda c: dup_payload(c, raw_payload('"a":"\\ud800"')), "bad_json"),
        row("payload-raw-control-char", lambda c: dup_payload(c, raw_payload('"a":"x\x01y"')), "bad_json"),
        row("payload-deep-nesting", lambda c: dup_payload(c, raw_payload('"a":' + "[" * 40 + "]" * 40)), "bad_json"),
        row("payload-null", lambda c: dup_payload(c, b"null"), "bad_json"),
        row("payload-array", lambda c: dup_payload(c, b"[]"), "bad_json"),
        row("payload-not-utf8", lambda c: dup_payload(c, compact_json(claims())[:-1] + b',"a":"\xc0\xaf"}'),
            "bad_json"),
        row("header-array", lambda c: dup_header(c, '["RS256"]'), "bad_json"),
        row("header-not-json", lambda c: dup_header(c, "RS256"), "bad_json"),
    ]

    # -- base64url canonical form -------------------------------------------------------------
    A += [
        row("padded-header", lambda c: (lambda h, p, s: f"{h}=.{p}.{s}")(*segments(rsa_tok(c))), "bad_base64"),
        # Correct padding for the length (one `=` for len % 4 == 3, two for 2), re-signed over
        # the padded text: a lenient decoder would accept this token.
        row("padded-header-resigned", lambda c: mint(c.k["rsa-1"], header_b64=b64url(compact_json(
            header_with_b64_len(c.k["rsa-1"], (3,)))) + "="), "bad_base64"),
        row("padded-payload-resigned", lambda c: mint(c.k["rsa-1"], payload_b64=b64url(compact_json(
            claims_with_b64_len((2,)))) + "=="), "bad_base64"),
        row("padded-signature", lambda c: rsa_tok(c) + "==", "bad_base64"),
        row("std-alphabet-header-resigned", lambda c: mint(c.k["rsa-1"], header_b64=std_b64(b64url(
            with_std_chars(lambda i: compact_json(header_json(c.k["rsa-1"], x=odd_text(i))))))), "bad_base64"),
        row("std-alphabet-payload-resigned", lambda c: mint(c.k["rsa-1"], payload_b64=std_b64(b64url(
            with_std_chars(lambda i: compact_json(claims(x=odd_text(i))))))), "bad_base64"),
        row("std-alphabet-signature", lambda c: std_alphabet_sig_token(c), "bad_base64"),
        row("noncanonical-bits-header-resigned", lambda c: mint(c.k["rsa-1"], header_b64=non_canonical(b64url(
            compact_json(header_with_b64_len(c.k["rsa-1"], (2, 3)))))), "bad_base64"),
        row("noncanonical-bits-payload-resigned", lambda c: mint(c.k["rsa-1"], payload_b64=non_canonical(b64url(
            compact_json(claims_with_b64_len((2, 3)))))), "bad_base64"),
        row("noncanonical-bits-signature", lambda c: (lambda h, p, s: f"{h}.{p}.{non_canonical(s)}")(
            *segments(rsa_tok(c))), "bad_base64"),
        row("invalid-b64-char-in-payload", lambda c: (lambda h, p, s: f"{h}.{p[:5]}~{p[6:]}.{s}")(*segments(rsa_tok(c))),
            "bad_base64"),
        # 342 + 3 characters: a length no base64 encoding has (len % 4 == 1).
        row("b64-length-1-mod-4", lambda c: rsa_tok(c) + "AAA", "bad_base64"),
        row("space-inside-token", lambda c: (lambda h, p, s: f"{h}.{p} .{s}")(*segments(rsa_tok(c))), "token_malformed"),
        row("tab-inside-token", lambda c: (lambda h, p, s: f"{h}.{p}\t.{s}")(*segments(rsa_tok(c))), "token_malformed"),
        # obs-fold (CRLF + space) inside the header value: Envoy's codec accepts it and hands
        # the filter a value with a space in the middle.
        raw_auth(lambda c: ("Bearer " + rsa_tok(c)[:40] + "\r\n " + rsa_tok(c)[40:]).encode(),
                 "token_malformed", "newline-obs-fold-inside-token"),
    ]

    # -- structure: segment counts and empty segments ------------------------------------------
    def segs(c: Ctx):
        return segments(rsa_tok(c))

    A += [
        row("one-segment", lambda c: segs(c)[0], "token_malformed"),
        row("two-segments", lambda c: ".".join(segs(c)[:2]), "token_malformed"),
        row("four-segments", lambda c: ".".join(segs(c) + [segs(c)[2]]), "token_malformed"),
        row("five-segments-jwe", lambda c: ".".join(segs(c) + [segs(c)[2]] * 2), "token_is_jwe"),
        row("real-jwe-shape", lambda c: ".".join([b64url(b'{"alg":"RSA-OAEP","enc":"A256GCM","kid":"rsa-1"}'),
                                                  b64url(bytes(256)), b64url(bytes(12)), b64url(b"ciphertext"),
                                                  b64url(bytes(16))]), "token_is_jwe"),
        row("six-segments", lambda c: ".".join(segs(c) + [segs(c)[2]] * 3), "token_malformed"),
        row("empty-header-segment", lambda c: "." + ".".join(segs(c)[1:]), "bad_json"),
        row("empty-payload-segment", lambda c: f"{segs(c)[0]}..{segs(c)[2]}", "bad_json"),
        row("all-segments-empty", lambda c: "..", "token_malformed"),
        row("only-dots-five-segments", lambda c: "....", "token_is_jwe"),
        row("leading-dot", lambda c: "." + rsa_tok(c), "token_malformed"),
        row("trailing-dot", lambda c: rsa_tok(c) + ".", "token_malformed"),
        row("doubled-dot", lambda c: rsa_tok(c).replace(".", "..", 1), "token_malformed"),
    ]

    # -- sizes ---------------------------------------------------------------------------------
    A += [
        row("token-over-8-KiB", lambda c: mint(c.k["rsa-1"], claims(pad="x" * 9000)), "token_too_large"),
        row("token-exactly-over-cap", lambda c: "a" * 8193, "token_too_large"),
        raw_auth(lambda c: "Bearer " + "a" * 40_000, "token_too_large", "authorization-40-KB"),
        raw_auth(lambda c: "Bearer " + "a.b." * 10_000, "token_too_large", "authorization-40-KB-of-dots"),
        # Envoy's default max_request_headers_kb is 60: the codec answers 431 and the filter
        # never sees the request.
        raw_auth(lambda c: "Bearer " + "a" * 60 * 1024, ("envoy", 431), "authorization-60-KB"),
        query(lambda c: "access_token=" + mint(c.k["rsa-1"], claims(pad="x" * 9000)), "token_too_large",
              "query-token-over-8-KiB"),
    ]

    # -- claims: types and times ---------------------------------------------------------------
    def signed(c: Ctx, raw: bytes) -> str:
        return mint(c.k["rsa-1"], payload_bytes=raw)

    A += [
        row("exp-numeric-string", lambda c: mint(c.k["rsa-1"], claims(exp="9999999999")), "claim_malformed"),
        row("exp-bool", lambda c: mint(c.k["rsa-1"], claims(exp=True)), "claim_malformed"),
        row("exp-null", lambda c: signed(c, payload_without("exp", '"exp":null')), "claim_malformed"),
        row("exp-array", lambda c: mint(c.k["rsa-1"], claims(exp=[4102444800])), "claim_malformed"),
        row("exp-object", lambda c: mint(c.k["rsa-1"], claims(exp={"$date": 4102444800})), "claim_malformed"),
        row("exp-1e400-overflow", lambda c: signed(c, payload_without("exp", '"exp":1e400')), "bad_json"),
        Attack("exp-float-future-is-valid", bearer(lambda c: mint(c.k["rsa-1"], claims(exp=4102444800.5))), 200),
        row("exp-float-past", lambda c: mint(c.k["rsa-1"], claims(exp=1000000000.5)), "token_expired"),
        row("exp-zero-is-a-time-not-absent", lambda c: mint(c.k["rsa-1"], claims(exp=0)), "token_expired"),
        row("exp-negative", lambda c: mint(c.k["rsa-1"], claims(exp=-1)), "token_expired"),
        row("exp-expired", lambda c: mint(c.k["rsa-1"], claims(exp=EXP_EXPIRED)), "token_expired"),
        row("exp-missing", lambda c: mint(c.k["rsa-1"], claims(exp=None)), "exp_missing"),
        row("nbf-future", lambda c: mint(c.k["rsa-1"], claims(nbf=NBF_FUTURE)), "token_not_yet_valid"),
        row("nbf-numeric-string", lambda c: mint(c.k["rsa-1"], claims(nbf="0")), "claim_malformed"),
        row("iat-string", lambda c: mint(c.k["rsa-1"], claims(iat="1700000000")), "claim_malformed"),
        row("iss-array", lambda c: mint(c.k["rsa-1"], claims(iss=[IDP_ISS])), "claim_malformed"),
        row("iss-number", lambda c: mint(c.k["rsa-1"], claims(iss=1)), "claim_malformed"),
        row("iss-object", lambda c: mint(c.k["rsa-1"], claims(iss={"iss": IDP_ISS})), "claim_malformed"),
        row("iss-no-trailing-slash", lambda c: mint(c.k["rsa-1"], claims(iss="https://idp.test")), "issuer_mismatch"),
        row("iss-uppercase", lambda c: mint(c.k["rsa-1"], claims(iss="HTTPS://IDP.TEST/")), "issuer_mismatch"),
        row("iss-trailing-space", lambda c: mint(c.k["rsa-1"], claims(iss=IDP_ISS + " ")), "issuer_mismatch"),
        row("iss-substring", lambda c: mint(c.k["rsa-1"], claims(iss="https://idp.test/.evil")), "issuer_mismatch"),
        # Escaped equivalents decode to the configured issuer: compared after decoding.
        Attack("iss-json-escaped-equivalent-is-valid", bearer(lambda c: signed(
            c, payload_without("iss", '"iss":"https:\\/\\/idp.test\\/"'))), 200),
        row("aud-object", lambda c: mint(c.k["rsa-1"], claims(aud={"api": True})), "claim_malformed"),
        row("aud-number", lambda c: mint(c.k["rsa-1"], claims(aud=1)), "claim_malformed"),
        row("aud-null", lambda c: signed(c, payload_without("aud", '"aud":null')), "claim_malformed"),
        row("aud-array-with-number", lambda c: mint(c.k["rsa-1"], claims(aud=["api", 1])), "claim_malformed"),
        row("aud-nested-array", lambda c: mint(c.k["rsa-1"], claims(aud=[["api"]])), "claim_malformed"),
        row("aud-empty-array", lambda c: mint(c.k["rsa-1"], claims(aud=[])), "audience_mismatch"),
        row("aud-case-variant", lambda c: mint(c.k["rsa-1"], claims(aud="API")), "audience_mismatch"),
    ]

    # -- multiple tokens -----------------------------------------------------------------------
    def t1(c: Ctx) -> str:
        return rsa_tok(c)

    def t2(c: Ctx) -> str:
        return mint(c.k["ec-p256"])

    A += [
        Attack("header-and-query-different", lambda c: (f"{PATH}?access_token={t2(c)}",
                                                        [("authorization", f"Bearer {t1(c)}")]), "multiple_tokens"),
        Attack("header-valid-query-forged", lambda c: (
            f"{PATH}?access_token={mint(c.k['rsa-1'], signing_key=c.k['rsa-evil'])}",
            [("authorization", f"Bearer {t1(c)}")]), "multiple_tokens"),
        Attack("header-and-query-same-token", lambda c: (f"{PATH}?access_token={t1(c)}",
                                                         [("authorization", f"Bearer {t1(c)}")]), 200),
        Attack("two-authorization-headers-same", lambda c: (PATH, [("authorization", f"Bearer {t1(c)}")] * 2),
               "multiple_tokens"),
        Attack("two-authorization-headers-valid-then-forged", lambda c: (PATH, [
            ("authorization", f"Bearer {t1(c)}"),
            ("authorization", f"Bearer {mint(c.k['rsa-1'], signing_key=c.k['rsa-evil'])}")]), "multiple_tokens"),
        raw_auth(lambda c: f"Bearer {t1(c)}, Bearer {t2(c)}", "multiple_tokens", "bearer-list-comma-space"),
        raw_auth(lambda c: f"Bearer {t1(c)},{t2(c)}", "multiple_tokens", "bearer-comma-two-tokens"),
        raw_auth(lambda c: f"Bearer {t1(c)},", "multiple_tokens", "bearer-trailing-comma"),
        raw_auth(lambda c: f"Basic dXNlcjpwYXNz, Bearer {t1(c)}", "multiple_tokens", "basic-then-bearer-list"),
        query(lambda c: f"access_token={t1(c)}&access_token={t2(c)}", "multiple_tokens", "two-query-tokens"),
    ]

    # -- scheme ----------------------------------------------------------------------------------
    A += [
        Attack("scheme-lowercase-bearer", bearer(t1, "bearer"), 200),
        Attack("scheme-uppercase-bearer", bearer(t1, "BEARER"), 200),
        Attack("scheme-mixed-case-bearer", bearer(t1, "bEaReR"), 200),
        Attack("scheme-two-spaces", bearer(t1, "Bearer "), 200),
        # F4 (issue #15): not "no token" (which allow_missing would pass on, header and all).
        raw_auth(lambda c: f"Bearer\t{t1(c)}", "token_malformed", "scheme-tab-separator"),
        raw_auth(lambda c: f"Bearer{t1(c)}", "token_missing", "scheme-no-separator"),
        raw_auth(lambda c: f"xBearer {t1(c)}", "token_missing", "scheme-prefix-search"),
        raw_auth(lambda c: f"Token {t1(c)}", "token_missing", "scheme-other"),
        raw_auth(lambda c: f'Bearer "{t1(c)}"', "token_malformed", "scheme-quoted-token"),
        raw_auth(lambda c: f"Bearer {t1(c)} extra", "token_malformed", "scheme-two-words"),
        raw_auth(lambda c: f"Bearer {t1(c)};", "token_malformed", "token-with-semicolon"),
    ]

    # -- query parameter encodings -----------------------------------------------------------------
    A += [
        query(lambda c: "access_token=" + t1(c).replace(".", "%2E"), 200, "query-percent-encoded-dots"),
        query(lambda c: "access_token=" + "".join(f"%{b:02X}" for b in t1(c).encode()), 200,
              "query-fully-percent-encoded"),
        query(lambda c: "access%5Ftoken=" + mint(c.k["rsa-1"], signing_key=c.k["rsa-evil"]), "bad_signature",
              "query-percent-encoded-name-forged"),
        query(lambda c: "access_token=" + t1(c) + "%00", "bad_base64", "query-token-with-nul"),
        query(lambda c: "access_token=" + t1(c).replace(".", "%0A.", 1), "bad_base64", "query-token-with-newline"),
        # `+` in a query decodes to a space: never a base64url character.
        query(lambda c: "access_token=" + std_alphabet_sig_token(c), "bad_base64", "query-token-std-alphabet"),
        query(lambda c: "access_token=" + t1(c) + "%zz", "token_missing", "query-bad-percent-escape-is-no-token"),
    ]

    # -- raw bytes in the Authorization header (sent as is by http.client) -----------------------
    A += [
        raw_auth(lambda c: b"Bearer " + t1(c).encode()[:20] + b"\x00" + t1(c).encode()[20:], ("envoy", 400),
                 "nul-byte-inside-token"),
        raw_auth(lambda c: b"Bearer " + t1(c).encode() + b"\x00", ("envoy", 400), "nul-byte-after-token"),
        raw_auth(lambda c: b"Bearer " + t1(c).encode() + b"\x01", ("envoy", 400), "control-byte-after-token"),
        raw_auth(lambda c: b"Bearer " + t1(c).encode() + b"\x7f", ("envoy", 400), "del-byte-after-token"),
        raw_auth(lambda c: b"Bearer " + t1(c).encode() + b"\xff", "token_malformed", "non-utf8-byte-after-token"),
        raw_auth(lambda c: b"Bearer " + t1(c).encode()[:30] + b"\xc0\xaf" + t1(c).encode()[30:], "token_malformed",
                 "overlong-utf8-inside-token"),
        raw_auth(lambda c: b"Bearer \xc3\xa9" + t1(c).encode(), "token_malformed", "utf8-letter-before-token"),
        raw_auth(lambda c: b"\xff\xfe Bearer " + t1(c).encode(), "token_missing", "non-utf8-scheme"),
        Attack("non-utf8-in-other-header-valid-token", lambda c: (PATH, [
            ("x-junk", b"\xff\xfe\xfd"), ("authorization", f"Bearer {t1(c)}")]), 200),
    ]
    return A


def odd_text(i: int) -> str:
    """Text whose JSON encoding varies with `i` (to find one with `-`/`_` in base64url)."""
    return "~" * (i % 7) + "?" * (i // 7)


def std_alphabet_sig_token(c: Ctx) -> str:
    """A valid RS256 token whose signature segment is rewritten in the standard alphabet."""
    for i in range(100):
        h, p, s = segments(mint(c.k["rsa-1"], claims(sub=f"u{i}")))
        if "-" in s and "_" in s:
            return f"{h}.{p}.{std_b64(s)}"
    raise AssertionError("no signature with both - and _")


# A P-256 key the IdP never published; derived from a fixed scalar, so tokens are
# reproducible without another fixture file. It only signs forgeries.
ATTACKER_P256 = ec.derive_private_key(0x6A77742D65646765, ec.SECP256R1())

ATTACKS = attacks()
_ids = [a.id for a in ATTACKS]
assert len(_ids) == len(set(_ids)), sorted(i for i in _ids if _ids.count(i) > 1)


# ---------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------
def attack_config(idp) -> dict:
    return {
        "providers": {"idp": {
            "issuer": IDP_ISS,
            "audiences": ["api"],
            "remote_jwks": {"http_uri": {"uri": idp.jwks_uri, "cluster": "idp", "timeout": "5s"},
                            "cache_duration": "600s"},
        }},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "idp"}}],
    }


@pytest.fixture(scope="module")
def canary(keys):
    server = Canary({"keys": [keys["rsa-evil"].public_jwk(), {**keys["rsa-evil"].public_jwk(), "kid": "rsa-1"}]})
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def attack_envoy(module_envoy_factory, idp, canary, keys):
    envoy = module_envoy_factory(
        attack_config(idp),
        extra_clusters=[envoy_config.static_cluster("attacker", [("127.0.0.1", canary.port)])])
    # Let the key set load first (bounded; a filter that never loads keys fails the rows).
    token = mint(keys["rsa-1"])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and send(envoy, PATH, [("authorization", f"Bearer {token}")]).status != 200:
        time.sleep(0.2)
    return envoy


@pytest.fixture(scope="module")
def ctx(keys, canary, idp) -> Ctx:
    return Ctx(keys, f"http://{canary.address}/jwks.json", f"http://{idp.address}")


def send(envoy, path: str, headers: list) -> client.Response:
    return client.request(envoy.url(path), headers=headers, timeout=30)


def check(envoy, backends, path: str, headers: list, expect) -> None:
    before = sum(b.count for b in backends)
    resp = send(envoy, path, headers)
    if expect == 200:
        assert_passed(resp)
        return
    reached = sum(b.count for b in backends) - before
    if isinstance(expect, tuple):
        _, status = expect
        assert resp.status == status, f"want Envoy's own {status}, got {resp!r}"
        assert resp.header("server") == "envoy" and resp.header("www-authenticate") is None, resp
        assert (resp.header("content-type") or "").startswith("text/plain"), resp
    else:
        assert_denied(resp, expect, authority=envoy.authority, path=path)
    assert reached == 0, f"a refused request reached a backend: {resp!r}"


# ---------------------------------------------------------------------------------------
# Tests (in file order: the table, the sweep, then the after-checks)
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("attack", ATTACKS, ids=_ids)
def test_attack(attack_envoy, backends, ctx, attack):
    path, headers = attack.request(ctx)
    check(attack_envoy, backends, path, headers, attack.expect)


def flipped_tokens(token: str, count: int, seed: int) -> list[tuple[str, str]]:
    """`count` tokens, each `token` with one bit of a decoded segment flipped (re-encoded
    canonically, so the change reaches JSON parsing and verification). Positions are drawn
    with a fixed seed, spread over header, payload and signature by their size."""
    parts = [bytearray(unb64(s)) for s in segments(token)]
    names = ("header", "payload", "signature")
    positions = [(i, bit) for i, p in enumerate(parts) for bit in range(len(p) * 8)]
    rng = random.Random(seed)
    # At least a quarter of the sample from each segment: the header is short but matters most.
    chosen: list[tuple[int, int]] = []
    for i in range(3):
        seg = [p for p in positions if p[0] == i]
        chosen += rng.sample(seg, min(len(seg), count // 4))
    rest = [p for p in positions if p not in set(chosen)]
    chosen += rng.sample(rest, count - len(chosen))
    out = []
    for i, bit in sorted(chosen):
        copy = [bytearray(p) for p in parts]
        copy[i][bit // 8] ^= 0x80 >> (bit % 8)
        out.append((f"{names[i]}:bit{bit}", ".".join(b64url(bytes(p)) for p in copy)))
    return out


@pytest.mark.parametrize("kid", ["rsa-1", "ec-p256"])
def test_bit_flip_sweep(attack_envoy, backends, keys, kid):
    token = mint(keys[kid], claims(sub="sweep"))
    assert_passed(send(attack_envoy, PATH, [("authorization", f"Bearer {token}")]))
    before = sum(b.count for b in backends)
    outcomes: dict[str, int] = {}
    accepted, server_errors = [], []
    flips = flipped_tokens(token, 200, seed=7 if kid == "rsa-1" else 11)
    assert len(flips) == 200
    for where, bad in flips:
        resp = send(attack_envoy, PATH, [("authorization", f"Bearer {bad}")])
        if resp.status == 200:
            accepted.append(where)
        elif resp.status >= 500:
            server_errors.append((where, resp.status))
        else:
            code = resp.json().get("error") if resp.body.startswith(b"{") else None
            # Every refusal is a well-formed jwt-edge denial (status, code, description, header).
            assert code in DESCRIPTIONS, f"{where}: not a jwt-edge denial: {resp!r}"
            assert_denied(resp, code, authority=attack_envoy.authority, path=PATH)
            outcomes[code] = outcomes.get(code, 0) + 1
    print(f"\nbit-flip sweep {kid}: 200 flips -> {dict(sorted(outcomes.items()))}")
    assert accepted == [], f"bit-flipped tokens accepted: {accepted}"
    assert server_errors == [], f"5xx on bit-flipped tokens: {server_errors}"
    assert sum(b.count for b in backends) == before


def test_token_urls_were_never_fetched(attack_envoy, canary, idp):
    """No jku/x5u/kid URL from a token caused a request: the canary saw nothing, and the IdP
    saw only key-set fetches from the configured `http_uri`."""
    assert canary.requests == [], f"the filter fetched a URL taken from a token: {canary.requests}"
    with idp.lock:
        paths = dict(idp.counts)
    assert set(paths) <= {"/jwks.json"}, f"the IdP got requests for token-supplied URLs: {paths}"


def test_vm_alive_and_no_wasm_failures(attack_envoy, keys):
    stats = attack_envoy.stats()
    failures = {k: v for k, v in stats.items()
                if k.startswith("wasm.") and any(m in k for m in ENVOY_WASM_FAILURE_MARKERS) and v}
    assert failures == {}, f"Wasm VM failures after the attack table: {failures}"
    assert stats.get("wasm.jwt_edge.vm_reload", 0) == 0
    assert stats.get("wasmcustom.jwt_edge.denied", 0) >= len([a for a in ATTACKS if isinstance(a.expect, str)])
    log = attack_envoy.log_text()
    for marker in ("panicked at", "[critical]", "wasm trap", "Function: proxy_on"):
        assert marker not in log, f"Envoy log has {marker!r}"
    assert attack_envoy.alive
    for kid in ("rsa-1", "ec-p256", "ec-p384", "ed-1"):
        assert_passed(send(attack_envoy, PATH, [("authorization", f"Bearer {mint(keys[kid])}")]))
