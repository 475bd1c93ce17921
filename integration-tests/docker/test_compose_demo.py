"""The user's Docker Compose demo, for real: envoy/docker-compose.yml as the README starts it
(`cd envoy && docker compose up`, here detached), pointed at the locally built images with
ENVOY_IMAGE and DEMO_PYTHON_IMAGE and at free ports on 127.0.0.1. Through the published port:
200s spread over both backends, 401 without a token, 403 for the wrong audience, 401 for a
revoked token, exactly what `make run` shows.
"""

from __future__ import annotations

import urllib.parse

import pytest

from . import dockerlib
from .conftest import DEFAULT_WASM, LOG_DIR, REPO

COMPOSE_FILE = REPO / "envoy" / "docker-compose.yml"
READY_TIMEOUT_S = 90


@pytest.fixture(scope="module")
def demo(request, images, wasm_file, project_name):
    # The compose file mounts ../target/wasm32-wasip1/release/jwt_edge.wasm, as a user's
    # `make build` leaves it; a module built elsewhere would not be the one under test.
    if wasm_file != DEFAULT_WASM.resolve():
        pytest.fail(f"envoy/docker-compose.yml loads {DEFAULT_WASM}, but the module under test "
                    f"is {wasm_file}: run without CARGO_TARGET_DIR", pytrace=False)
    envoy_port, admin_port, idp_port = dockerlib.free_ports(3)
    project = dockerlib.Project(project_name("demo"), COMPOSE_FILE, {
        "ENVOY_IMAGE": images["envoy"], "DEMO_PYTHON_IMAGE": images["python"],
        "DEMO_ENVOY_PORT": str(envoy_port), "DEMO_ADMIN_PORT": str(admin_port),
        "DEMO_IDP_PORT": str(idp_port)})
    failed_before = request.session.testsfailed
    try:
        project.up()
        if not dockerlib.wait_ready(admin_port, READY_TIMEOUT_S):
            raise AssertionError(f"Envoy not ready within {READY_TIMEOUT_S}s:\n{project.logs(tail=100)}")
        yield {"envoy": envoy_port, "idp": idp_port, "project": project}
        if request.session.testsfailed > failed_before:
            path = project.save_logs(LOG_DIR)
            print(f"\n===== {project.name} logs (all in {path}) =====\n{project.logs(tail=100)}")
    finally:
        project.down()


def token(demo, client_id: str, secret: str, audience: str = "api") -> str:
    form = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": client_id,
                                   "client_secret": secret, "audience": audience}).encode()
    reply = dockerlib.request("POST", demo["idp"], "/oauth/token",
                              {"content-type": "application/x-www-form-urlencoded"}, form)
    assert reply.status == 200, reply.body
    return reply.json()["access_token"]


def get(demo, path: str, tok: str | None = None) -> dockerlib.Reply:
    headers = {"authorization": f"Bearer {tok}"} if tok else {}
    return dockerlib.request("GET", demo["envoy"], path, headers)


def test_valid_token_is_served_by_both_backends(demo):
    tok = token(demo, "demo-client", "demo-secret")
    served = []
    for _ in range(6):
        reply = get(demo, "/orders", tok)
        assert reply.status == 200, reply.body
        doc = reply.json()
        assert doc["headers"]["x-jwt-sub"] == "demo-client"
        assert doc["headers"]["x-jwt-scope"] == "orders:read"
        assert "authorization" not in doc["headers"]  # forward: false removes the token
        served.append(doc["backend"])
    assert set(served) == {"backend-1", "backend-2"}, served


def test_no_token_is_401(demo):
    reply = get(demo, "/orders")
    assert reply.status == 401
    assert reply.json()["error"] == "token_missing"
    assert reply.headers["www-authenticate"].startswith('Bearer realm="')


def test_wrong_audience_is_403_and_right_one_200(demo):
    api = token(demo, "demo-client", "demo-secret", "api")
    reply = get(demo, "/admin", api)
    assert reply.status == 403
    assert reply.json()["error"] == "audience_mismatch"
    assert 'error="insufficient_scope"' in reply.headers["www-authenticate"]
    admin = token(demo, "demo-client", "demo-secret", "admin")
    assert get(demo, "/admin", admin).status == 200


def test_revoked_token_is_401(demo):
    banned = token(demo, "demo-banned", "banned-secret")
    reply = get(demo, "/orders", banned)
    assert reply.status == 401
    assert reply.json()["error"] == "token_revoked"


def test_forged_and_garbage_tokens_are_401(demo):
    tok = token(demo, "demo-client", "demo-secret")
    head, payload, sig = tok.split(".")
    flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
    reply = get(demo, "/orders", f"{head}.{payload}.{flipped}")
    assert reply.status == 401
    assert reply.json()["error"] == "bad_signature"
    assert get(demo, "/orders", "not.a.token").status == 401


def test_health_needs_no_token(demo):
    reply = get(demo, "/health")
    assert reply.status == 200
    assert reply.json()["backend"] in ("backend-1", "backend-2")
