"""Prints the export names of a WebAssembly module, one per line, sorted (used by
mk/wasm-opt.mk's `wasm-exports` check). Reads only the section headers and the export
section; no dependency beyond the standard library (and mk/wasmbin.py)."""

import sys

import wasmbin


def exports(data: bytes) -> list[str]:
    return sorted(name for section in wasmbin.sections(data) if section.id == 7  # exports
                  for name, _, _ in wasmbin.exports(data, section))


if __name__ == "__main__":
    with open(sys.argv[1], "rb") as f:
        print("\n".join(exports(f.read())))
