"""Certificate-bound access tokens (RFC 8705 §3) in Envoy: `sender_constraint.mtls`.

The test makes a CA, a server certificate for 127.0.0.1 and two client certificates (A and B)
with `cryptography`. Envoy's listener speaks TLS and asks for a client certificate issued by
the CA; the filter reads `connection.sha256_peer_certificate_digest` and compares it with the
token's `cnf["x5t#S256"]`. Tokens are signed by the fixture IdP key `ec-p256` (local_jwks).

Providers `bound` (mtls required, every path but /optional) and `optional` (mtls optional,
/optional) share the issuer and keys. Three Envoys: one that requires client certificates,
one that only asks for them (a client may come without), and one on plain HTTP.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import json
import os
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from harness import client
from harness.config import REPO, tls_transport_socket
from harness.expect import assert_denied, assert_passed, realm
from harness.keys import b64url, jwks
from harness.tokens import claims, mint
from harness.waits import stat

ERROR_DESCRIPTIONS = {
    "mtls_certificate_missing": "the token is certificate-bound and no client certificate was presented",
    "mtls_thumbprint_mismatch": "the token is bound to another client certificate",
    "mtls_token_unbound": "the access token is not bound to a client certificate",
}
NOT_BEFORE = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
NOT_AFTER = datetime.datetime(2100, 1, 1, tzinfo=datetime.timezone.utc)


# -- a small PKI ----------------------------------------------------------------------------
@dataclass
class Issued:
    cert: Path
    key: Path
    der: bytes

    @property
    def x5t(self) -> str:
        """RFC 8705 §3.1: base64url SHA-256 of the certificate's DER."""
        return b64url(hashlib.sha256(self.der).digest())


def _write_pem(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _issue(directory: Path, name: str, subject: str, issuer_cert, issuer_key, *, ca=False,
           server=False) -> tuple[Issued, x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (x509.CertificateBuilder()
               .subject_name(subject_name)
               .issuer_name(issuer_cert.subject if issuer_cert is not None else subject_name)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(NOT_BEFORE)
               .not_valid_after(NOT_AFTER)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    if not ca:
        usage = x509.oid.ExtendedKeyUsageOID.SERVER_AUTH if server else x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    cert = builder.sign(issuer_key if issuer_key is not None else key, hashes.SHA256())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    issued = Issued(
        cert=_write_pem(directory / f"{name}.pem", cert.public_bytes(serialization.Encoding.PEM)),
        key=_write_pem(directory / f"{name}-key.pem", key_pem),
        der=cert.public_bytes(serialization.Encoding.DER),
    )
    return issued, cert, key


@dataclass
class Pki:
    ca: Issued
    server: Issued
    client_a: Issued
    client_b: Issued

    def context(self, client_cert: Issued | None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca.cert))
        if client_cert is not None:
            ctx.load_cert_chain(str(client_cert.cert), str(client_cert.key))
        return ctx

    def listener(self, require_client_certificate: bool) -> dict:
        return tls_transport_socket(self.server.cert, self.server.key, self.ca.cert,
                                    require_client_certificate)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca, ca_cert, ca_key = _issue(d, "ca", "jwt-edge test CA", None, None, ca=True)
    server, _, _ = _issue(d, "server", "127.0.0.1", ca_cert, ca_key, server=True)
    client_a, _, _ = _issue(d, "client-a", "client A", ca_cert, ca_key)
    client_b, _, _ = _issue(d, "client-b", "client B", ca_cert, ca_key)
    return Pki(ca, server, client_a, client_b)


# -- Envoys ---------------------------------------------------------------------------------
def config(published_keys) -> dict:
    def provider(mode: str) -> dict:
        return {
            "issuer": "https://idp.test/",
            "audiences": ["api"],
            "local_jwks": {"inline_string": json.dumps(jwks(published_keys))},
            "claim_to_headers": [{"header_name": "x-jwt-sub", "claim_name": "sub"}],
            "sender_constraint": {"mtls": mode},
        }

    return {
        "providers": {"bound": provider("required"), "optional": provider("optional")},
        "rules": [
            {"match": {"prefix": "/optional"}, "requires": {"provider_name": "optional"}},
            {"match": {"prefix": "/"}, "requires": {"provider_name": "bound"}},
        ],
    }


@pytest.fixture(scope="module")
def strict(module_envoy_factory, published_keys, pki):
    """A listener that requires a client certificate from the CA."""
    return module_envoy_factory(config(published_keys), transport_socket=pki.listener(True))


@pytest.fixture(scope="module")
def lenient(module_envoy_factory, published_keys, pki):
    """A listener that asks for a client certificate but lets a client in without one."""
    return module_envoy_factory(config(published_keys), transport_socket=pki.listener(False))


@pytest.fixture(scope="module")
def plain(module_envoy_factory, published_keys):
    return module_envoy_factory(config(published_keys))


def send(envoy, pki: Pki, path: str, token: str | None, cert: Issued | None, *, tls=True):
    headers = [] if token is None else client.bearer(token)
    if not tls:
        return client.request(envoy.url(path), headers=headers)
    return client.request(f"https://{envoy.authority}{path}", headers=headers,
                          tls=pki.context(cert))


def bound_to(keys, cert: Issued) -> str:
    return mint(keys["ec-p256"], claims(cnf={"x5t#S256": cert.x5t}))


def assert_refused(envoy, resp, code: str, path: str, before: int, scheme: str = "https"):
    """A 401 `code` with its exact challenge, counted once as `denied.<code>`."""
    assert_denied(resp, code, authority=envoy.authority, path=path, scheme=scheme)
    assert resp.header_all("www-authenticate") == [
        f'Bearer realm="{realm(envoy.authority, path, scheme)}", error="invalid_token", '
        f'error_description="{ERROR_DESCRIPTIONS[code]}"']
    assert stat(envoy, f"jwt_edge.denied.{code}") == before + 1
    provider = "optional" if path.startswith("/optional") else "bound"
    assert stat(envoy, f"jwt_edge.provider.{provider}.denied.{code}") >= 1


# -- cases ----------------------------------------------------------------------------------
def test_the_bound_certificate_passes_and_the_backend_gets_the_identity(strict, keys, pki):
    before = stat(strict, "jwt_edge.allowed")
    seen = assert_passed(send(strict, pki, "/items?page=2", bound_to(keys, pki.client_a),
                              pki.client_a))
    assert seen["headers"]["x-jwt-sub"] == "alice", seen
    assert "authorization" not in seen["headers"], seen
    assert stat(strict, "jwt_edge.allowed") == before + 1
    assert stat(strict, "jwt_edge.provider.bound.allowed") >= 1


def test_a_token_minted_by_the_cli_for_the_certificate_passes(strict, keys, pki):
    cli = Path(os.environ.get("JWT_EDGE_CLI", REPO / "target" / "release" / "jwt-edge"))
    assert cli.is_file(), f"{cli}: run `make cli` (make integration builds it)"
    out = subprocess.run(
        [str(cli), "mint", "--key", str(REPO / "integration-tests/fixtures/ec-p256.pem"),
         "--kid", keys["ec-p256"].kid, "--iss", "https://idp.test/", "--aud", "api",
         "--sub", "carol", "--mtls-cert", str(pki.client_a.cert)],
        capture_output=True, text=True, timeout=60, check=True)
    token = out.stdout.strip()
    seen = assert_passed(send(strict, pki, "/items", token, pki.client_a))
    assert seen["headers"]["x-jwt-sub"] == "carol", seen
    before = stat(strict, "jwt_edge.denied.mtls_thumbprint_mismatch")
    resp = send(strict, pki, "/items", token, pki.client_b)
    assert_refused(strict, resp, "mtls_thumbprint_mismatch", "/items", before)


def test_another_client_certificate_is_refused(strict, keys, pki):
    before = stat(strict, "jwt_edge.denied.mtls_thumbprint_mismatch")
    resp = send(strict, pki, "/items", bound_to(keys, pki.client_a), pki.client_b)
    assert_refused(strict, resp, "mtls_thumbprint_mismatch", "/items", before)


def test_an_unbound_token_is_refused_where_mtls_is_required(strict, keys, pki):
    before = stat(strict, "jwt_edge.denied.mtls_token_unbound")
    resp = send(strict, pki, "/items", mint(keys["ec-p256"], claims()), pki.client_a)
    assert_refused(strict, resp, "mtls_token_unbound", "/items", before)


def test_optional_takes_an_unbound_token_but_checks_a_bound_one(strict, lenient, keys, pki):
    unbound = mint(keys["ec-p256"], claims(sub="bob"))
    seen = assert_passed(send(strict, pki, "/optional/x", unbound, pki.client_b))
    assert seen["headers"]["x-jwt-sub"] == "bob", seen
    assert_passed(send(lenient, pki, "/optional/x", unbound, None))
    assert_passed(send(strict, pki, "/optional/x", bound_to(keys, pki.client_a), pki.client_a))
    before = stat(strict, "jwt_edge.denied.mtls_thumbprint_mismatch")
    resp = send(strict, pki, "/optional/x", bound_to(keys, pki.client_a), pki.client_b)
    assert_refused(strict, resp, "mtls_thumbprint_mismatch", "/optional/x", before)


def test_no_client_certificate_is_refused(lenient, keys, pki):
    token = bound_to(keys, pki.client_a)
    # The listener takes the certificate when one is sent...
    assert_passed(send(lenient, pki, "/items", token, pki.client_a))
    # ...and without one the attribute is absent: fail closed.
    before = stat(lenient, "jwt_edge.denied.mtls_certificate_missing")
    resp = send(lenient, pki, "/items", token, None)
    assert_refused(lenient, resp, "mtls_certificate_missing", "/items", before)
    before = stat(lenient, "jwt_edge.denied.mtls_certificate_missing")
    resp = send(lenient, pki, "/optional/x", token, None)
    assert_refused(lenient, resp, "mtls_certificate_missing", "/optional/x", before)


def test_plain_http_has_no_certificate(plain, keys, pki):
    before = stat(plain, "jwt_edge.denied.mtls_certificate_missing")
    resp = send(plain, pki, "/items", bound_to(keys, pki.client_a), None, tls=False)
    assert_refused(plain, resp, "mtls_certificate_missing", "/items", before, scheme="http")


def test_a_listener_without_a_validation_context_never_asks_for_a_certificate(
        envoy_factory, published_keys, keys, pki):
    """What the README says an operator must configure: without `validation_context` Envoy
    requests no client certificate, so a client's certificate never reaches the filter."""
    socket = pki.listener(False)
    del socket["typed_config"]["common_tls_context"]["validation_context"]
    envoy = envoy_factory(config(published_keys), transport_socket=socket)
    before = stat(envoy, "jwt_edge.denied.mtls_certificate_missing")
    resp = send(envoy, pki, "/items", bound_to(keys, pki.client_a), pki.client_a)
    assert_refused(envoy, resp, "mtls_certificate_missing", "/items", before)


def test_the_strict_listener_refuses_a_client_without_a_certificate(strict, keys, pki):
    with pytest.raises((ssl.SSLError, ConnectionError)):
        send(strict, pki, "/items", bound_to(keys, pki.client_a), None)
