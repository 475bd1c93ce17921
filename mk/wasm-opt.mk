# The shipped module goes through binaryen's wasm-opt after rustc (issue #5: under 1 MiB).
# Included by the Makefile; `make build` and `make bench-micro-build` use it.
#
# -O3 rather than -Oz: -Oz saves about 1 % more, but RS256/PS256 verification in Envoy's V8
# ran about 4 % slower with it; -O3 did not change the speed of any algorithm. The Cargo
# profile is already opt-level 3, fat LTO, one codegen unit, panic=abort, stripped; opt-level
# "s" or "z" there would shrink the module further but slowed ES256 and EdDSA by 25-90 %.

WASM_OPT ?= wasm-opt
WASM_OPT_LEVEL ?= -O3
# wasm-opt validates against the features it is told about. These are the ones rustc enables
# for wasm32-wasip1 (`rustc --print cfg --target wasm32-wasip1`; `strip = true` removes the
# target_features section that --detect-features would read) plus simd128, which
# src/authn/bigmod.rs turns on for one function. A feature used but missing here makes
# wasm-opt fail with a validation error naming it, not produce a wrong module.
WASM_OPT_FEATURES := --enable-bulk-memory --enable-mutable-globals --enable-sign-ext \
	--enable-nontrapping-float-to-int --enable-multivalue --enable-reference-types \
	--enable-simd
WASM_OPT_FLAGS := $(WASM_OPT_FEATURES) --strip-debug --strip-producers $(WASM_OPT_LEVEL)
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
			echo "$(WASM_OPT) $(WASM_OPT_LEVEL) $$m"; \
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
