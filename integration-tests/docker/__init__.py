"""The Docker suites (make test-docker): a package, so its conftest is `docker.conftest` and
never shadows integration-tests/conftest.py when `make integration` walks past it."""
