#!/usr/bin/env python3
"""Swaps the opcodes of wasm's relaxed fused multiply-add between the final relaxed-SIMD
encoding and the prototype one that binaryen 108 (Debian 12's wasm-opt) still reads.

    relaxed_simd.py to-legacy IN OUT   before wasm-opt 108
    relaxed_simd.py to-final  IN OUT   after it

src/authn/bigmod_f64.rs uses `f64x2.relaxed_madd` (0xfd 263; `relaxed_nmadd` is 264). Binaryen
108 predates the renumbering of the relaxed-SIMD opcodes (WebAssembly/relaxed-simd#61,
binaryen b7a93cca, first released in version 109): it reads the same instructions as
`f64x2.relaxed_fma`/`fms` at 207/208 and fails on 263 ("invalid code after SIMD prefix").
Both encodings are two-byte LEB128s, so the swap rewrites two bytes per instruction in place.

Instructions are found by decoding every function body of the code section instruction by
instruction (the byte pattern alone could occur inside an immediate), so any opcode this
decoder does not know, or any other relaxed-SIMD instruction, stops it with an error rather
than risking a wrong patch. What the optimiser did to the instructions is checked where it
matters: the filter runs a known-answer test of the FMA arithmetic at VM start and falls back
to the integer code if it fails (src/authn/bigmod_f64.rs).
"""

from __future__ import annotations

import sys

from wasmbin import RELAXED_SIMD, bodies, instructions, sections, CODE

# final opcode -> legacy (binaryen <= 108) opcode, both after the 0xfd prefix.
FINAL_TO_LEGACY = {263: 207, 264: 208}  # f64x2.relaxed_madd / relaxed_nmadd
LEGACY_TO_FINAL = {v: k for k, v in FINAL_TO_LEGACY.items()}


def swap(data: bytes, table: dict[int, int]) -> tuple[bytearray, int]:
    """Rewrites the SIMD opcodes in `table`; returns the module and how many it rewrote."""
    out = bytearray(data)
    swapped = 0
    for section in sections(data):
        if section.id != CODE:
            continue
        for body in bodies(data, section):
            for ins in instructions(data, body):
                if ins.op != 0xFD:
                    continue
                if ins.sub in table:
                    new = table[ins.sub]
                    if ins.sub_end - ins.sub_at != 2 or new >> 14:
                        raise ValueError(f"SIMD opcode {ins.sub} at byte {ins.at} is not a 2-byte LEB128")
                    out[ins.sub_at:ins.sub_end] = bytes([(new & 0x7F) | 0x80, new >> 7])
                    swapped += 1
                elif ins.sub in RELAXED_SIMD or ins.sub in LEGACY_TO_FINAL or ins.sub in FINAL_TO_LEGACY:
                    raise ValueError(f"relaxed SIMD opcode {ins.sub} at byte {ins.at} is not handled here")
    return out, swapped


def main() -> None:
    if len(sys.argv) != 4 or sys.argv[1] not in ("to-legacy", "to-final"):
        sys.exit("usage: relaxed_simd.py to-legacy|to-final IN OUT")
    table = FINAL_TO_LEGACY if sys.argv[1] == "to-legacy" else LEGACY_TO_FINAL
    with open(sys.argv[2], "rb") as f:
        data = f.read()
    try:
        out, swapped = swap(data, table)
    except (ValueError, IndexError) as e:
        sys.exit(f"relaxed_simd.py {sys.argv[1]} {sys.argv[2]}: {e}")
    with open(sys.argv[3], "wb") as f:
        f.write(out)
    print(f"relaxed_simd.py {sys.argv[1]}: {swapped} instructions in {sys.argv[2]}")


if __name__ == "__main__":
    main()
