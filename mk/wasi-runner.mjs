// Runs a wasm32-wasip1 test binary under Node's WASI (cargo's target runner for
// `make unit-wasm`): jwt-edge's arithmetic is tested in wasm, with the same SIMD code paths
// the filter runs in V8. Imports other than WASI (the proxy-wasm host functions the library
// links) are stubs that fail loudly: no unit test may call the host.
import { readFile } from "node:fs/promises";
import { argv, env, exit } from "node:process";
import { WASI } from "node:wasi";

const [, , wasmPath, ...args] = argv;
const wasi = new WASI({
  version: "preview1",
  args: [wasmPath, ...args],
  env,
  preopens: { "/": "/" },
  returnOnExit: true,
});
const module = await WebAssembly.compile(await readFile(wasmPath));
const imports = { wasi_snapshot_preview1: wasi.wasiImport };
for (const imp of WebAssembly.Module.imports(module)) {
  if (imp.module === "wasi_snapshot_preview1" || imp.kind !== "function") continue;
  imports[imp.module] ??= {};
  imports[imp.module][imp.name] = () => {
    throw new Error(`host function ${imp.module}.${imp.name} called in a unit test`);
  };
}
const instance = await WebAssembly.instantiate(module, imports);
// The library's proxy-wasm entry point exports `_initialize` next to the test harness's
// `_start`; Node's WASI refuses a module with both, so it is handed the command's exports.
const { memory, _start } = instance.exports;
exit(wasi.start({ exports: { memory, _start } }));
