# Every import of the shipped module must be a host function, with the same signature, of each
# host jwt-edge claims: Envoy (proxy-wasm-cpp-host) and NGINX's ngx_wasm_module. A host refuses
# to instantiate a module with one import it lacks or types differently (ngx_wasm_module did, over
# proxy_get_log_level), so `make build` fails instead. The tables and their sources: mk/host-abi/.
HOST_ABI_TABLES := mk/host-abi/envoy.tsv mk/host-abi/ngx_wasm_module.tsv

.PHONY: wasm-imports
wasm-imports:
	$(PYTHON) mk/wasm_imports.py $(WASM) $(HOST_ABI_TABLES)
