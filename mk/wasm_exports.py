"""Prints the export names of a WebAssembly module, one per line, sorted (used by
mk/wasm-opt.mk's `wasm-exports` check). Reads only the section headers and the export
section; no dependency beyond the standard library."""

import sys


def leb128(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def exports(data: bytes) -> list[str]:
    if data[:4] != b"\0asm":
        raise ValueError("not a wasm module")
    pos, names = 8, []
    while pos < len(data):
        section, pos = data[pos], pos + 1
        size, pos = leb128(data, pos)
        end = pos + size
        if section == 7:  # the export section
            count, p = leb128(data, pos)
            for _ in range(count):
                length, p = leb128(data, p)
                names.append(data[p:p + length].decode())
                p += length + 1  # the name, then the kind byte
                _, p = leb128(data, p)  # the index
        pos = end
    return sorted(names)


if __name__ == "__main__":
    with open(sys.argv[1], "rb") as f:
        print("\n".join(exports(f.read())))
