"""Fixtures of the Docker suites (`make test-docker`): the engine, the locally built images,
the module, and unique Compose project names.

These suites need a running Docker engine with Compose and the images `make docker-images`
builds (no registry is used). A missing engine is a failure, never a skip: it is part of every
machine the project tests on, CI included.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE.parent))  # the integration harness: keys and tokens

from . import dockerlib  # noqa: E402

DEFAULT_WASM = REPO / "target" / "wasm32-wasip1" / "release" / "jwt_edge.wasm"
# Where a failed suite leaves its containers' logs.
LOG_DIR = REPO / "target" / "docker" / "logs"


def _docker_session(config) -> bool:
    return config.inipath is not None and Path(config.inipath).resolve() == HERE / "pytest.ini"


def pytest_ignore_collect(collection_path, config):
    # `make integration` runs pytest on integration-tests/, which would recurse into this
    # directory: these suites are `make test-docker`'s alone (run with this directory's
    # pytest.ini), so they never run twice.
    return None if _docker_session(config) else True


def _interrupted(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config):
    # make test-docker's time-out sends SIGTERM: end like Ctrl-C, so that every fixture's
    # `compose down -v` runs (and a failed suite's logs are saved) before the KILL.
    if _docker_session(config):
        signal.signal(signal.SIGTERM, _interrupted)


@pytest.fixture(scope="session")
def docker_ready():
    problem = dockerlib.engine_problem()
    if problem:
        pytest.fail(f"the Docker suites need a running Docker engine: {problem}", pytrace=False)
    try:
        dockerlib.compose_command()
    except dockerlib.DockerError as e:
        pytest.fail(str(e), pytrace=False)
    return True


@pytest.fixture(scope="session")
def images(docker_ready) -> dict[str, str]:
    """The local images (names from make test-docker's environment)."""
    refs = {"envoy": os.environ.get("ENVOY_IMAGE_LOCAL", ""),
            "python": os.environ.get("PYTHON_IMAGE_LOCAL", "")}
    for what, ref in refs.items():
        if not ref:
            pytest.fail(f"no {what} image given: run these suites with `make test-docker`, which "
                        "builds the images and sets ENVOY_IMAGE_LOCAL / PYTHON_IMAGE_LOCAL",
                        pytrace=False)
        if not dockerlib.image_exists(ref):
            pytest.fail(f"image {ref} does not exist: run `make docker-images`", pytrace=False)
    return refs


@pytest.fixture(scope="session")
def wasm_file() -> Path:
    path = Path(os.environ.get("JWT_EDGE_WASM", DEFAULT_WASM)).resolve()
    if not path.is_file():
        pytest.fail(f"{path} does not exist: run `make build`", pytrace=False)
    return path


_serial = iter(range(1_000_000))


@pytest.fixture(scope="session")
def project_name():
    """project_name("demo") -> a Compose project name no other run uses: make test-docker's
    prefix (it sweeps whatever is left under it at exit), else one made from the pid."""
    prefix = os.environ.get("DOCKER_PROJECT_PREFIX") or f"jwtedge{os.getpid()}"

    def make(what: str) -> str:
        return f"{prefix}-{what}{next(_serial)}"

    return make
