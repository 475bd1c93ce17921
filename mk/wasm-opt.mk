# The shipped module goes through binaryen's wasm-opt after rustc (issue #5: under 1 MiB).
# Included by the Makefile; `make build` and `make bench-micro-build` use it.
#
# The passes are -O3's module-level ones without its per-function pipeline. Measured with
# wasm-opt 108 on the shipped module (size) and on the bench-micro module in Envoy 1.40's V8
# (speed: 7 interleaved runs per variant against rustc's output):
#   these passes   1,016,530 bytes; RS256, PS256, ES256, ES384 and EdDSA within 1 % of
#                  rustc's output.
#   -O3            1,000,989 bytes; RS256/PS256 2 % and EdDSA 3 % faster, but ES256 1.5 % and
#                  ES384 5 % slower: the per-function passes slow ES256/ES384 verification
#                  in V8 (so do -O1, -Os, -Oz, and -O3's passes re-run only on the
#                  functions inlining changed).
#   -Oz            990,080 bytes; slower like -O3.
# Most of the gain is duplicate-function elimination: rustc's output holds identical copies of
# functions (71 KB with what becomes unused); inlining (re-optimising only the functions it
# changed), dead-argument elimination and the clean-ups give the rest. The Cargo profile is
# already opt-level 3, fat LTO, one codegen unit, panic=abort, stripped; opt-level "s" or "z"
# there shrinks the module by 13-20 % but slowed ES256 and EdDSA by 25-90 %.
WASM_OPT ?= wasm-opt
WASM_OPT_PASSES ?= --duplicate-function-elimination --remove-unused-module-elements \
	--dae-optimizing --inlining-optimizing --duplicate-function-elimination \
	--remove-unused-module-elements --memory-packing --directize --simplify-globals-optimizing
# wasm-opt validates against the features it is told about. These are the ones rustc enables
# for wasm32-wasip1 (`rustc --print cfg --target wasm32-wasip1`; `strip = true` removes the
# target_features section that --detect-features would read) plus simd128, which
# src/crypto/bigmod.rs turns on for one function. A feature used but missing here makes
# wasm-opt fail with a validation error naming it, not produce a wrong module.
WASM_OPT_FEATURES := --enable-bulk-memory --enable-mutable-globals --enable-sign-ext \
	--enable-nontrapping-float-to-int --enable-multivalue --enable-reference-types \
	--enable-simd
WASM_OPT_FLAGS = $(WASM_OPT_FEATURES) --strip-debug --strip-producers $(WASM_OPT_PASSES)
# Binaryen 108 is Debian 12's; older releases are not tested.
WASM_OPT_MIN_VERSION := 108
WASM_MAX_BYTES := 1048576

.PHONY: wasm-opt-tool wasm-size

# Installs binaryen from Debian when wasm-opt is missing (`apt-get update` only if the install
# fails without it). No fallback to the unoptimised module: it is over the size limit.
wasm-opt-tool:
	@if ! command -v $(WASM_OPT) >/dev/null; then \
		command -v apt-get >/dev/null || { echo "$(WASM_OPT) (binaryen >= $(WASM_OPT_MIN_VERSION)) \
is missing and there is no apt-get to install it: install binaryen, or set WASM_OPT" >&2; exit 1; }; \
		sudo=""; [ "$$(id -u)" = 0 ] || sudo="sudo"; \
		echo "installing binaryen (wasm-opt) with apt-get"; \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y binaryen \
			|| { $$sudo apt-get update && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y binaryen; }; \
	fi; \
	v="$$($(WASM_OPT) --version | sed -n 's/.*version \([0-9][0-9]*\).*/\1/p')"; \
	[ "$${v:-0}" -ge $(WASM_OPT_MIN_VERSION) ] || { echo "$(WASM_OPT) is version '$$v'; \
binaryen $(WASM_OPT_MIN_VERSION) or newer is needed" >&2; exit 1; }

# $(call wasm_optimise,MODULE): replaces MODULE, as Cargo just wrote it, by its wasm-opt form.
# Cargo writes MODULE as a hard link to its own copy under deps/, and writes it again on every
# build, even one with nothing to compile. So the optimised module is renamed into place
# (writing through the link would change Cargo's copy too), and it is kept as MODULE.opt with
# MODULE.opt-key (the input's sha256, the flags, the wasm-opt version): a build where none of
# those changed copies it instead of running wasm-opt again (about 10 s).
define wasm_optimise
	@m="$(1)"; \
	if ! cmp -s "$$m" "$$m.opt"; then \
		key="$$(sha256sum < "$$m" | cut -d' ' -f1) $(WASM_OPT_FLAGS) $$($(WASM_OPT) --version)"; \
		if [ ! -f "$$m.opt" ] || [ "$$(cat "$$m.opt-key" 2>/dev/null)" != "$$key" ]; then \
			echo "$(WASM_OPT) $$m"; \
			$(WASM_OPT) $(WASM_OPT_FLAGS) "$$m" -o "$$m.opt.tmp"; \
			mv -f "$$m.opt.tmp" "$$m.opt"; \
			echo "$$key" > "$$m.opt-key"; \
		fi; \
		cp "$$m.opt" "$$m.tmp"; \
		mv -f "$$m.tmp" "$$m"; \
	fi
endef

# Fails when the shipped module is over the limit (part of `make test`).
wasm-size: build
	@n=$$(stat -c %s $(WASM)); \
	if [ "$$n" -gt $(WASM_MAX_BYTES) ]; then \
		echo "$(WASM): $$n bytes, over the $(WASM_MAX_BYTES)-byte (1 MiB) limit" >&2; exit 1; \
	fi; \
	echo "$(WASM): $$n bytes, $$(( $(WASM_MAX_BYTES) - n )) under the 1 MiB limit"
