# Benchmarks (bench/README.md). Included by the Makefile:
#
#   make bench                  throughput (passthrough / jwt_authn / jwt-edge), memory, module
#                               size, then the micro-benchmark; ~10 min plus up to
#                               BENCH_QUIET_WAIT seconds waiting for a quiet machine
#   make bench BENCH_QUICK=1    one short round: a smoke check (~2 min)
#   make bench-micro            verification alone, in Envoy's V8 and natively
#
# Results go to bench/results/ (not committed). Traffic stays on 127.0.0.1.

# Options, read by the scripts from the environment (make exports command-line variables):
# BENCH_ROUNDS (3), BENCH_SECONDS (10), BENCH_QUICK=1, BENCH_QUIET_WAIT (600 s), BENCH_TOKENS
# (token pool per algorithm, 160000), BENCH_FILL (10000), BENCH_MEMORY=0 (skip memory part).
BENCH_PYTHON = $(CURDIR)/$(VENV)/bin/python

.PHONY: bench bench-micro bench-tools bench-noop bench-micro-build

# wrk from Debian; `apt-get update` only when it is missing.
bench-tools:
	command -v wrk >/dev/null || { apt-get update && apt-get install -y wrk; }
	command -v taskset >/dev/null

bench-noop: toolchain
	cd bench/noop-filter && cargo build --release --target $(WASM_TARGET)

# The micro module goes through the same wasm-opt step as the shipped one (mk/wasm-opt.mk).
MICRO_WASM = $(or $(CARGO_TARGET_DIR),bench/micro/target)/$(WASM_TARGET)/release/jwt_edge_bench_micro.wasm

bench-micro-build: toolchain wasm-opt-tool
	cd bench/micro && cargo build --release --target $(WASM_TARGET) --lib
	$(call wasm_optimise,$(MICRO_WASM))
	cd bench/micro && cargo build --release --bin micro-native

bench: venv build bench-tools bench-noop bench-micro-build
	cd bench && $(BENCH_PYTHON) run_bench.py
	@# The throughput runs just loaded the machine: no point waiting for the load to drop.
	cd bench && BENCH_QUIET_WAIT=0 $(BENCH_PYTHON) run_micro.py

bench-micro: venv bench-micro-build
	cd bench && $(BENCH_PYTHON) run_micro.py
