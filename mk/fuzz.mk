# Fuzzing the core with cargo-fuzz (libFuzzer, nightly). Included by the Makefile:
#
#   make fuzz                                   every target, FUZZ_SECONDS each; fails on a crash
#   make fuzz FUZZ_TARGETS=token_parse FUZZ_SECONDS=600
#   make fuzz-seeds                             rewrite fuzz/corpus and fuzz/seed-cases
#
# Targets and their checks: fuzz/fuzz_targets/, fuzz/src/oracle.rs. Seeds (committed) are read
# from fuzz/corpus/<target>/; what libFuzzer finds goes to a working corpus under the target
# directory, so the committed seeds stay as made. A crash leaves its input in
# fuzz/artifacts/<target>/ and the run fails after the remaining targets have had their turn;
# save the input under tests/fuzz_regressions/<target>/ (for extract_and_decide, the JSON that
# JWT_EDGE_FUZZ_CASE_OUT writes) so that `cargo test` replays it.

FUZZ_SECONDS ?= 120
FUZZ_TARGETS ?= token_parse extract_and_decide jwks_parse config_parse
FUZZ_TOOLCHAIN ?= nightly
# --debug-assertions: overflow checks are on, so an arithmetic overflow is a crash, not a
# silent wrap (the wasm build is 32-bit, where sizes overflow sooner).
FUZZ_BUILD_ARGS ?= --debug-assertions
# One process (one core). 16 KiB reaches past the 8 KiB token cap; 30 s flags a slow input.
FUZZ_ARGS ?= -max_len=16384 -timeout=30 -rss_limit_mb=2048 -print_final_stats=1
FUZZ_TARGET_DIR ?= $(if $(CARGO_TARGET_DIR),$(CARGO_TARGET_DIR),$(CURDIR)/fuzz/target)
FUZZ_WORK_CORPUS ?= $(FUZZ_TARGET_DIR)/fuzz-corpus

FUZZ_CARGO = cargo +$(FUZZ_TOOLCHAIN) fuzz
FUZZ_HOST = $(shell rustc +$(FUZZ_TOOLCHAIN) -vV 2>/dev/null | sed -n 's/^host: //p')

.PHONY: fuzz fuzz-tools fuzz-build fuzz-seeds

# Idempotent: installs only what is missing.
fuzz-tools:
	rustup run $(FUZZ_TOOLCHAIN) rustc --version >/dev/null 2>&1 \
		|| rustup toolchain install $(FUZZ_TOOLCHAIN) --profile minimal
	$(FUZZ_CARGO) --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked

fuzz-build: fuzz-tools
	CARGO_TARGET_DIR=$(FUZZ_TARGET_DIR) $(FUZZ_CARGO) build $(FUZZ_BUILD_ARGS)

fuzz: fuzz-build
	failed=""; \
	for t in $(FUZZ_TARGETS); do \
		mkdir -p "$(FUZZ_WORK_CORPUS)/$$t" "$(CURDIR)/fuzz/artifacts/$$t"; \
		echo "== fuzz $$t ($(FUZZ_SECONDS)s)"; \
		CARGO_TARGET_DIR=$(FUZZ_TARGET_DIR) $(FUZZ_CARGO) run $(FUZZ_BUILD_ARGS) $$t \
			"$(FUZZ_WORK_CORPUS)/$$t" "$(CURDIR)/fuzz/corpus/$$t" -- \
			-max_total_time=$(FUZZ_SECONDS) -dict="$(CURDIR)/fuzz/jose.dict" $(FUZZ_ARGS) \
			|| failed="$$failed $$t"; \
	done; \
	if [ -n "$$failed" ]; then \
		echo "fuzz: crash in:$$failed (inputs in fuzz/artifacts/)"; exit 1; \
	fi

# Seeds are made by a script, not by hand; the extract_and_decide seeds are also decoded into
# fuzz/seed-cases/, which `cargo test` replays (tests/fuzz_regressions.rs).
fuzz-seeds: fuzz-tools
	python3 fuzz/make_seeds.py
	CARGO_TARGET_DIR=$(FUZZ_TARGET_DIR) $(FUZZ_CARGO) build $(FUZZ_BUILD_ARGS) extract_and_decide
	python3 fuzz/make_seeds.py --cases "$(FUZZ_TARGET_DIR)/$(FUZZ_HOST)/release/extract_and_decide"
