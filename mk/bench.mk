# Benchmarks (bench/README.md). Included by the Makefile:
#
#   make bench                  throughput (passthrough / jwt_authn / jwt-edge), memory, module
#                               size, then the micro-benchmark; ~10 min plus up to
#                               BENCH_QUIET_WAIT seconds waiting for a quiet machine
#   make bench BENCH_QUICK=1    one short round: a smoke check (~2 min)
#   make bench-micro            verification alone, in Envoy's V8 and natively
#   make bench-ladder           a cache hit's Envoy CPU per request, one step at a time
#   make bench-memory           Envoy's RSS with one worker, attributed
#   make bench-instructions     instructions per request in Envoy (callgrind): the ladder and
#                               the distinct-token workloads, exact on a busy machine
#   make bench-profile          Envoy's CPU per request by the code it ran (perf): the envoy
#                               binary, the module's code as V8 compiled it, kernel, libc
#   make bench-footprint        the module's machine code one verification runs through, cold,
#                               by function (Node's V8 under callgrind)
#
# Results go to bench/results/ (not committed). Traffic stays on 127.0.0.1.

# Options, read by the scripts from the environment (make exports command-line variables):
# BENCH_ROUNDS (3), BENCH_SECONDS (10), BENCH_QUICK=1, BENCH_QUIET_WAIT (600 s), BENCH_TOKENS
# (token pool per algorithm, 160000), BENCH_FILL (10000), BENCH_MEMORY=0 (skip memory part),
# BENCH_MODES (direct,upstream), BENCH_WORKLOADS (all); bench-ladder: BENCH_LADDER (variants);
# bench-memory: BENCH_MEMORY_REPEAT (3), BENCH_MEMORY_BASELINE_WASM (other modules, same run);
# bench-profile: BENCH_PROFILE (variant:workload runs), BENCH_PROFILE_HZ (2000); bench-instructions:
# BENCH_INSTR_CACHE=1 (simulated L2 misses too), BENCH_INSTR_ONCE (micro /once lines);
# bench-footprint: FOOTPRINT_N, FOOTPRINT_ALGS.
BENCH_PYTHON = $(CURDIR)/$(VENV)/bin/python

.PHONY: bench bench-micro bench-tools bench-noop bench-micro-build bench-ladder bench-memory \
	bench-instructions bench-profile bench-footprint

# wrk and nginx (the upstream of the `upstream` mode) from Debian; `apt-get update` only when
# one is missing.
bench-tools:
	command -v wrk >/dev/null && { command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; } \
		|| { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y wrk nginx-light; }
	command -v taskset >/dev/null

# The do-nothing filter, and the same module trimmed to the exports jwt-edge ships
# (WASM_EXPORTS, mk/wasm-opt.mk): the two floors `make bench` prints.
NOOP_WASM = $(or $(CARGO_TARGET_DIR),bench/noop-filter/target)/$(WASM_TARGET)/release/jwt_edge_bench_noop.wasm
bench-noop: toolchain wasm-opt-tool
	cd bench/noop-filter && cargo build --release --target $(WASM_TARGET)
	# rustc keeps the function names for mk/indirect_calls.py (.cargo/config.toml); the
	# do-nothing filter is measured as shipped modules are, without them.
	python3 mk/wasmbin.py strip $(NOOP_WASM) $(NOOP_WASM).tmp && mv -f $(NOOP_WASM).tmp $(NOOP_WASM)
	echo '$(call metadce_graph,$(WASM_EXPORTS))' > $(NOOP_WASM:.wasm=.graph.json)
	$(WASM_METADCE) $(WASM_OPT_FEATURES) -q --graph-file $(NOOP_WASM:.wasm=.graph.json) \
		$(NOOP_WASM) -o $(NOOP_WASM:.wasm=_min.wasm) > /dev/null

# The micro module goes through the same wasm-opt step as the shipped one (mk/wasm-opt.mk).
MICRO_WASM = $(or $(CARGO_TARGET_DIR),bench/micro/target)/$(WASM_TARGET)/release/jwt_edge_bench_micro.wasm

bench-micro-build: toolchain wasm-opt-tool
	cd bench/micro && cargo build --release --target $(WASM_TARGET) --lib
	$(call wasm_optimise,$(MICRO_WASM),main)
	cd bench/micro && cargo build --release --bin micro-native

bench: venv build bench-tools bench-noop bench-micro-build
	cd bench && $(BENCH_PYTHON) run_bench.py
	@# The throughput runs just loaded the machine: no point waiting for the load to drop.
	cd bench && BENCH_QUIET_WAIT=0 $(BENCH_PYTHON) run_micro.py

# bench-tools: wrk sends the one-call-per-request part (GET /once).
bench-micro: venv bench-tools bench-micro-build
	cd bench && $(BENCH_PYTHON) run_micro.py

# The ablation ladder (bench/README.md): the cache-hit path one step at a time.
bench-ladder: venv build bench-tools bench-noop bench-micro-build
	cd bench && $(BENCH_PYTHON) run_ladder.py

# Envoy's RSS with one worker, attributed (bench/README.md). bench/cpus/cpus.c makes Envoy see
# BENCH_MEMORY_CPUS processors (V8 sizes its compile threads by them): gcc from Debian.
BENCH_CPUS_SHIM = $(or $(CARGO_TARGET_DIR),target)/bench/cpus.so
bench-memory: venv build bench-noop bench-micro-build
	command -v gcc >/dev/null || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y gcc; }
	mkdir -p $(dir $(BENCH_CPUS_SHIM))
	gcc -O2 -Wall -Werror -shared -fPIC -o $(BENCH_CPUS_SHIM) bench/cpus/cpus.c -ldl
	cd bench && BENCH_CPUS_SHIM=$(abspath $(BENCH_CPUS_SHIM)) $(BENCH_PYTHON) run_memory.py

# valgrind from Debian when missing.
bench-instructions: venv build bench-noop bench-micro-build
	command -v valgrind >/dev/null && command -v callgrind_control >/dev/null \
		|| { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y valgrind; }
	cd bench && $(BENCH_PYTHON) run_instructions.py

# perf from Debian (linux-perf) when missing.
bench-profile: venv build bench-tools bench-noop
	command -v perf >/dev/null || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y linux-perf; }
	cd bench && $(BENCH_PYTHON) run_profile.py

# bench/micro/src/bin/footprint.rs as a wasm32-wasip1 command, run by Node (NODE_RELAXED_SIMD:
# mk/unit-wasm.mk) under valgrind. Its own target directory: the micro module's build
# (`--lib`, then wasm-opt in place) stays as it is.
FOOTPRINT_TARGET_DIR = $(abspath $(or $(CARGO_TARGET_DIR),bench/micro/target))/footprint
bench-footprint: venv toolchain
	command -v node >/dev/null || { echo "bench-footprint needs node (Node.js 18+) on PATH" >&2; exit 1; }
	command -v valgrind >/dev/null && command -v callgrind_control >/dev/null \
		|| { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y valgrind; }
	cd bench/micro && cargo build --release --target $(WASM_TARGET) --bin footprint \
		--target-dir $(FOOTPRINT_TARGET_DIR)
	cd bench && NODE_FLAGS="$(NODE_RELAXED_SIMD)" $(BENCH_PYTHON) run_footprint.py
