"""Prints the export names of a WebAssembly module, one per line, sorted (used by
mk/wasm-opt.mk's `wasm-exports` check). Reads only the section headers and the export
section; no dependency beyond the standard library (and mk/wasmbin.py)."""

import sys

from wasmbin import Reader, sections


def exports(data: bytes) -> list[str]:
    names = []
    for section in sections(data):
        if section.id == 7:  # the export section
            r = Reader(data, section.body, section.end)
            for _ in range(r.uleb()):
                names.append(r.name())
                r.byte()  # the kind
                r.uleb()  # the index
    return sorted(names)


if __name__ == "__main__":
    with open(sys.argv[1], "rb") as f:
        print("\n".join(exports(f.read())))
