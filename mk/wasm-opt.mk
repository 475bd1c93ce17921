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
#
# Memory (issue #13): binaryen inlines a function with a single caller whatever its size
# (--one-caller-inline-max-function-size defaults to unlimited), which made FilterState::decide,
# Root::on_configure and provider_result 30-75 KB functions. V8 compiles each function with
# TurboFan in a zone that grows with the function (Node's --trace-wasm-compilation-times: 14.1,
# 9.8, 8.4 MB peaks for the three largest), compile threads run several at once, and Envoy's
# tcmalloc keeps the freed zones. Capped at 200 bytes: largest zone 10.5 MB, the next ones <=
# 5.1 MB; Envoy 1.40 with one worker, 3 rounds, 132.0 -> 121.5 MiB VmRSS (do-nothing filter
# 87.1), for +1.7 KB of module.
# Session 11: most of what remained was V8's own inlining. Without Liftoff's call counts V8
# inlines any direct call that fits twice the caller's size, which nearly doubled the machine
# code (Node 24: 1.43 -> 2.65 MB) and the zone memory of the compilation. mk/indirect_calls.py
# makes the calls of the code that never runs per request (configuration, JWKS and discovery
# reading, regex compilation, the root context) indirect, which V8 does not inline; it reads
# the function names, which -g keeps through wasm-opt and wasm-metadce, and removes them.
WASM_OPT ?= wasm-opt
WASM_OPT_PASSES ?= --one-caller-inline-max-function-size=200 --duplicate-function-elimination --remove-unused-module-elements \
	--dae-optimizing --inlining-optimizing --duplicate-function-elimination \
	--remove-unused-module-elements --memory-packing --directize --simplify-globals-optimizing
# wasm-opt validates against the features it is told about. These are the ones rustc enables
# for wasm32-wasip1 (`rustc --print cfg --target wasm32-wasip1`; listed rather than read from
# the target_features section by --detect-features, which older builds stripped) plus simd128, which
# src/crypto/bigmod.rs turns on for one function, and relaxed SIMD (src/crypto/bigmod_f64.rs).
# A feature used but missing here makes wasm-opt fail with a validation error naming it, not
# produce a wrong module.
WASM_OPT_FEATURES := --enable-bulk-memory --enable-mutable-globals --enable-sign-ext \
	--enable-nontrapping-float-to-int --enable-multivalue --enable-reference-types \
	--enable-simd --enable-relaxed-simd
# -g keeps the function names (the only debug information left: .cargo/config.toml strips the
# rest) through wasm-opt and wasm-metadce for mk/indirect_calls.py, which removes them.
WASM_OPT_FLAGS = $(WASM_OPT_FEATURES) -g --strip-dwarf --strip-producers $(WASM_OPT_PASSES)
# Binaryen before 109 reads relaxed SIMD only in its prototype encoding: mk/relaxed_simd.py
# swaps `f64x2.relaxed_madd` to it before wasm-opt and wasm-metadce, and back after (two
# bytes in place each).
WASM_OPT_RELAXED_SWAP_BELOW := 109
# The exports the module keeps (issue #13): binaryen's wasm-metadce removes the `proxy_on_*`
# the SDK exports that no host this module runs on needs: the network (L4) callbacks, gRPC,
# queues, foreign functions. Kept: what a host needs to run the module at all (_initialize,
# the ABI marker, memory, proxy_on_memory_allocate), the root context's callbacks (vm_start,
# configure, tick, http_call_response), a stream's creation and deletion (the SDK frees a
# stream's context only in proxy_on_delete: without it every request would leak), the
# request callbacks (headers decide; body and trailers hold a paused request), and every
# other HTTP stream callback. proxy-wasm-cpp-host (Envoy) skips a callback the module does not
# export, which would save ~2 us of Envoy CPU per request without the response, log and done
# exports (make bench-ladder); but ngx_wasm_module (3bed278) calls each one it looked up
# without checking it exists (ngx_wavm_instance_call_funcref on a NULL funcref): a module
# without proxy_on_response_headers crashed every nginx worker on its first response
# (SIGSEGV, seen by hand on NGINX 1.27.4). One module serves both hosts, so they stay.
# `make test` checks the shipped module exports exactly this set (`make wasm-exports`).
WASM_EXPORTS := _initialize memory proxy_abi_version_0_2_1 proxy_on_configure \
	proxy_on_context_create proxy_on_delete proxy_on_done proxy_on_http_call_response \
	proxy_on_log proxy_on_memory_allocate proxy_on_request_body proxy_on_request_headers \
	proxy_on_request_trailers proxy_on_response_body proxy_on_response_headers \
	proxy_on_response_trailers proxy_on_tick proxy_on_vm_start
WASM_METADCE ?= wasm-metadce
# $(call metadce_graph,EXPORTS): wasm-metadce's reachability graph, one root reaching EXPORTS.
metadce_graph = [{"name":"root","root":true,"reaches":[$(subst $(eval) ,$(comma),$(foreach e,$(1),"e:$(e)"))]}$(foreach e,$(1),$(comma){"name":"e:$(e)","export":"$(e)"})]
comma := ,
# Binaryen 108 is Debian 12's; older releases are not tested.
WASM_OPT_MIN_VERSION := 108
WASM_MAX_BYTES := 1048576

.PHONY: wasm-opt-tool wasm-size wasm-exports

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

# $(call wasm_optimise,MODULE[,EXTRA_EXPORTS]): replaces MODULE, as Cargo just wrote it, by its
# wasm-opt form, trimmed by wasm-metadce to $(WASM_EXPORTS) plus EXTRA_EXPORTS, its cold code's
# calls made indirect and its names removed by mk/indirect_calls.py, its small memory.copy and
# memory.fill kept out of V8's C calls by mk/bulk_memory.py.
# Cargo writes MODULE as a hard link to its own copy under deps/, and writes it again on every
# build, even one with nothing to compile. So the optimised module is renamed into place
# (writing through the link would change Cargo's copy too), and it is kept as MODULE.opt with
# MODULE.opt-key (the input's sha256, the flags, the wasm-opt version): a build where none of
# those changed copies it instead of running wasm-opt again (about 10 s).
define wasm_optimise
	@m="$(1)"; \
	if ! cmp -s "$$m" "$$m.opt"; then \
		graph='$(call metadce_graph,$(WASM_EXPORTS) $(2))'; \
		key="$$(sha256sum < "$$m" | cut -d' ' -f1) $(WASM_OPT_FLAGS) $$($(WASM_OPT) --version) $$graph \
$$(cat $(CURDIR)/mk/relaxed_simd.py $(CURDIR)/mk/wasmbin.py $(CURDIR)/mk/indirect_calls.py \
$(CURDIR)/mk/bulk_memory.py | sha256sum | cut -d' ' -f1)"; \
		if [ ! -f "$$m.opt" ] || [ "$$(cat "$$m.opt-key" 2>/dev/null)" != "$$key" ]; then \
			echo "$(WASM_OPT) $$m"; \
			v="$$($(WASM_OPT) --version | sed -n 's/.*version \([0-9][0-9]*\).*/\1/p')"; \
			swap=""; if [ "$${v:-0}" -lt $(WASM_OPT_RELAXED_SWAP_BELOW) ]; then swap=1; fi; \
			in="$$m"; \
			if [ -n "$$swap" ]; then \
				python3 $(CURDIR)/mk/relaxed_simd.py to-legacy "$$m" "$$m.legacy.tmp"; \
				in="$$m.legacy.tmp"; \
			fi; \
			$(WASM_OPT) $(WASM_OPT_FLAGS) "$$in" -o "$$m.opt.tmp"; \
			rm -f "$$m.legacy.tmp"; \
			echo "$$graph" > "$$m.graph.json"; \
			$(WASM_METADCE) $(WASM_OPT_FEATURES) -g -q --graph-file "$$m.graph.json" "$$m.opt.tmp" \
				-o "$$m.dce.tmp" > /dev/null; \
			rm -f "$$m.opt.tmp" "$$m.graph.json"; \
			if [ -n "$$swap" ]; then \
				python3 $(CURDIR)/mk/relaxed_simd.py to-final "$$m.dce.tmp" "$$m.dce.tmp"; \
			fi; \
			python3 $(CURDIR)/mk/indirect_calls.py "$$m.dce.tmp" "$$m.ind.tmp"; \
			rm -f "$$m.dce.tmp"; \
			python3 $(CURDIR)/mk/bulk_memory.py "$$m.ind.tmp" "$$m.bulk.tmp"; \
			rm -f "$$m.ind.tmp"; \
			mv -f "$$m.bulk.tmp" "$$m.opt"; \
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

# Fails when the shipped module's exports are not exactly $(WASM_EXPORTS) (part of `make test`).
wasm-exports: build
	@want="$$(printf '%s\n' $(WASM_EXPORTS) | sort)"; \
	have="$$($(PYTHON) mk/wasm_exports.py $(WASM))"; \
	if [ "$$want" != "$$have" ]; then \
		echo "$(WASM) exports differ from WASM_EXPORTS (mk/wasm-opt.mk):" >&2; \
		diff <(echo "$$want") <(echo "$$have") >&2; exit 1; \
	fi; \
	echo "$(WASM): exports exactly the $(words $(WASM_EXPORTS)) in WASM_EXPORTS"
