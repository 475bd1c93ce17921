"""Test signing keys: generation (once, committed), loading, and JWK export.

The fixture keys in ``integration-tests/fixtures/`` were made with::

    .venv/bin/python integration-tests/harness/keys.py generate integration-tests/fixtures

and are committed; tests only load them. Re-running the command replaces every key (and
``jwks.json``), so do that only on purpose.
"""

from __future__ import annotations

import base64
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

# kid -> (kind, in the published jwks.json?)
#   rsa-1, ec-p256, ec-p384, ed-1: the IdP's normal key set.
#   rsa-2: a second RSA key, published only after `rotate()`-style tests add it.
#   rsa-evil: never published; signs forgeries that claim another key's kid.
KEY_SPECS: dict[str, tuple[str, bool]] = {
    "rsa-1": ("rsa", True),
    "ec-p256": ("p256", True),
    "ec-p384": ("p384", True),
    "ed-1": ("ed25519", True),
    "rsa-2": ("rsa", False),
    "rsa-evil": ("rsa", False),
}


def b64url(data: bytes) -> str:
    """Unpadded base64url (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _int_bytes(n: int, length: int | None = None) -> bytes:
    length = length or max(1, (n.bit_length() + 7) // 8)
    return n.to_bytes(length, "big")


@dataclass(frozen=True)
class Key:
    kid: str
    kind: str  # rsa | p256 | p384 | ed25519
    private: object

    def public_jwk(self, *, with_alg: bool = False) -> dict:
        """The public JWK (RFC 7517/7518/8037), `kid` and `use: sig` included."""
        pub = self.private.public_key()
        if self.kind == "rsa":
            nums = pub.public_numbers()
            jwk = {"kty": "RSA", "n": b64url(_int_bytes(nums.n)), "e": b64url(_int_bytes(nums.e))}
            alg = "RS256"
        elif self.kind in ("p256", "p384"):
            size = 32 if self.kind == "p256" else 48
            nums = pub.public_numbers()
            jwk = {
                "kty": "EC",
                "crv": "P-256" if self.kind == "p256" else "P-384",
                "x": b64url(_int_bytes(nums.x, size)),
                "y": b64url(_int_bytes(nums.y, size)),
            }
            alg = "ES256" if self.kind == "p256" else "ES384"
        elif self.kind == "ed25519":
            raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw)}
            alg = "EdDSA"
        else:  # pragma: no cover
            raise ValueError(self.kind)
        jwk["kid"] = self.kid
        jwk["use"] = "sig"
        if with_alg:
            jwk["alg"] = alg
        return jwk


def _generate(kind: str):
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "p384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(kind)


def load_key(kid: str, directory: Path = FIXTURES) -> Key:
    kind, _ = KEY_SPECS[kid]
    pem = (directory / f"{kid}.pem").read_bytes()
    return Key(kid, kind, serialization.load_pem_private_key(pem, password=None))


def load_all(directory: Path = FIXTURES) -> dict[str, Key]:
    return {kid: load_key(kid, directory) for kid in KEY_SPECS}


def jwks(keys: list[Key]) -> dict:
    """A JWKS document holding the public halves of `keys`."""
    return {"keys": [k.public_jwk() for k in keys]}


def generate(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for kid, (kind, _) in KEY_SPECS.items():
        pem = _generate(kind).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        (directory / f"{kid}.pem").write_bytes(pem)
    keys = load_all(directory)
    published = [keys[kid] for kid, (_, pub) in KEY_SPECS.items() if pub]
    (directory / "jwks.json").write_text(json.dumps(jwks(published), indent=2) + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "generate":
        sys.exit(f"usage: {sys.argv[0]} generate DIR")
    generate(Path(sys.argv[2]))
