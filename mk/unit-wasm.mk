# `make unit-wasm`: the core's unit tests, Wycheproof, the RFC vectors, the decision scenarios
# and the real key sets, compiled for wasm32-wasip1 (release, as the filter ships) and run
# under Node's WASI (mk/wasi-runner.mjs), in their own target directory (a test build of
# the cdylib must never replace the shipped target/wasm32-wasip1/release/jwt_edge.wasm).
# The filter's arithmetic has wasm-only code paths (SIMD128 in src/crypto/bigmod.rs); this is
# where they are tested. Needs `node` (18 or newer).
WASM_TESTS := --lib --test wycheproof --test rfc_vectors --test scenarios --test real_jwks

.PHONY: unit-wasm
unit-wasm: toolchain
	@command -v node >/dev/null || { echo "unit-wasm needs node (Node.js 18+) on PATH" >&2; exit 1; }
	CARGO_TARGET_WASM32_WASIP1_RUNNER="node --no-warnings $(CURDIR)/mk/wasi-runner.mjs" \
	CARGO_TARGET_DIR=$(CURDIR)/target/unit-wasm \
		cargo test --release --target $(WASM_TARGET) $(WASM_TESTS)
