# `make unit-wasm`: the core's unit tests, Wycheproof, the RFC vectors, the decision scenarios
# and the real key sets, compiled for wasm32-wasip1 (release, as the filter ships) and run
# under Node's WASI (mk/wasi-runner.mjs), in their own target directory (a test build of
# the cdylib must never replace the shipped target/wasm32-wasip1/release/jwt_edge.wasm).
# The filter's arithmetic has wasm-only code paths (SIMD128 in src/crypto/bigmod.rs, relaxed
# SIMD in src/crypto/bigmod_f64.rs); this is where they are tested. Needs `node` (18 or newer).
WASM_TESTS := --features rsa-fma --lib --test wycheproof --test rfc_vectors --test scenarios --test real_jwks

# src/crypto/bigmod_f64.rs uses relaxed SIMD: on by default from V8 11.4 (Node 22); Node 20
# needs its experimental flag, which newer Nodes no longer have.
NODE_RELAXED_SIMD = $(shell node --v8-options 2>/dev/null | grep -q -- '--experimental-wasm-relaxed-simd ' && echo --experimental-wasm-relaxed-simd)

.PHONY: unit-wasm
unit-wasm: toolchain
	@command -v node >/dev/null || { echo "unit-wasm needs node (Node.js 18+) on PATH" >&2; exit 1; }
	CARGO_TARGET_WASM32_WASIP1_RUNNER="node --no-warnings $(NODE_RELAXED_SIMD) $(CURDIR)/mk/wasi-runner.mjs" \
	CARGO_TARGET_DIR=$(CURDIR)/target/unit-wasm \
		cargo test --release --target $(WASM_TARGET) $(WASM_TESTS)
