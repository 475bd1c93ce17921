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

# final opcode -> legacy (binaryen <= 108) opcode, both after the 0xfd prefix.
FINAL_TO_LEGACY = {263: 207, 264: 208}  # f64x2.relaxed_madd / relaxed_nmadd
LEGACY_TO_FINAL = {v: k for k, v in FINAL_TO_LEGACY.items()}
RELAXED_FINAL = range(0x100, 0x114)  # every final relaxed-SIMD opcode


class Reader:
    def __init__(self, data: bytes | bytearray, pos: int = 0) -> None:
        self.data, self.pos = data, pos

    def byte(self) -> int:
        b = self.data[self.pos]
        self.pos += 1
        return b

    def uleb(self) -> int:
        result, shift = 0, 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                return result

    def sleb(self) -> int:
        result, shift = 0, 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                if b & 0x40:
                    result -= 1 << shift
                return result

    def skip(self, n: int) -> None:
        self.pos += n

    def memarg(self) -> None:
        align = self.uleb()
        if align & 0x40:  # multi-memory: a memory index follows
            self.uleb()
        self.uleb()  # offset


# SIMD (0xfd) opcodes with immediates; all others have none.
SIMD_MEMARG = set(range(0x00, 0x0C)) | {0x5C, 0x5D}
SIMD_LANE = set(range(0x15, 0x23))
SIMD_MEMARG_LANE = set(range(0x54, 0x5C))


def swap_in_body(r: Reader, end: int, table: dict[int, int], out: bytearray) -> int:
    """Walks one function body's instructions; rewrites the opcodes in `table`. Returns how
    many it rewrote."""
    swapped = 0
    while r.pos < end:
        at = r.pos
        op = r.byte()
        if op in (0x02, 0x03, 0x04):  # block, loop, if: block type
            r.sleb()
        elif op in (0x0C, 0x0D, 0x10, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0xD2):
            r.uleb()
        elif op == 0x0E:  # br_table
            for _ in range(r.uleb() + 1):
                r.uleb()
        elif op == 0x11:  # call_indirect
            r.uleb()
            r.uleb()
        elif op == 0x1C:  # select t*
            r.skip(r.uleb())
        elif 0x28 <= op <= 0x3E:
            r.memarg()
        elif op in (0x3F, 0x40):  # memory.size, memory.grow
            r.uleb()
        elif op in (0x41, 0x42):
            r.sleb()
        elif op == 0x43:
            r.skip(4)
        elif op == 0x44:
            r.skip(8)
        elif op == 0xD0:  # ref.null
            r.sleb()
        elif op == 0xFC:
            sub = r.uleb()
            if sub <= 7:
                pass
            elif sub in (9, 11, 13, 15, 16, 17):
                r.uleb()
            elif sub in (8, 10, 12, 14):
                r.uleb()
                r.uleb()
            else:
                raise ValueError(f"unknown 0xfc opcode {sub} at byte {at}")
        elif op == 0xFD:
            code_at = r.pos
            sub = r.uleb()
            if sub in table:
                new = table[sub]
                encoded = bytes([(new & 0x7F) | 0x80, new >> 7])
                if r.pos - code_at != 2 or new >> 14:
                    raise ValueError(f"SIMD opcode {sub} at byte {at} is not a 2-byte LEB128")
                out[code_at:code_at + 2] = encoded
                swapped += 1
            elif sub in RELAXED_FINAL or sub in LEGACY_TO_FINAL or sub in FINAL_TO_LEGACY:
                raise ValueError(f"relaxed SIMD opcode {sub} at byte {at} is not handled here")
            elif sub in SIMD_MEMARG:
                r.memarg()
            elif sub in (0x0C, 0x0D):  # v128.const, i8x16.shuffle
                r.skip(16)
            elif sub in SIMD_LANE:
                r.skip(1)
            elif sub in SIMD_MEMARG_LANE:
                r.memarg()
                r.skip(1)
            elif sub > 0xFF:
                raise ValueError(f"unknown SIMD opcode {sub} at byte {at}")
        elif op in (0x12, 0x13) or op in (0x06, 0x07, 0x08, 0x09, 0x18, 0x19, 0x1F) or op > 0xD2:
            raise ValueError(f"unsupported opcode 0x{op:02x} at byte {at}")
        elif 0x45 <= op <= 0xC4 or op in (0x00, 0x01, 0x05, 0x0B, 0x0F, 0x1A, 0x1B, 0xD1):
            pass
        else:
            raise ValueError(f"unknown opcode 0x{op:02x} at byte {at}")
    if r.pos != end:
        raise ValueError(f"function body ends at byte {r.pos}, expected {end}")
    return swapped


def swap(data: bytes, table: dict[int, int]) -> tuple[bytearray, int]:
    if data[:8] != b"\0asm\x01\0\0\0":
        raise ValueError("not a wasm module (version 1)")
    out = bytearray(data)
    r = Reader(data, 8)
    swapped = 0
    while r.pos < len(data):
        section = r.byte()
        size = r.uleb()
        end = r.pos + size
        if section == 10:  # code
            for _ in range(r.uleb()):
                body_size = r.uleb()
                body_end = r.pos + body_size
                for _ in range(r.uleb()):  # local declarations: count, type
                    r.uleb()
                    r.sleb()
                swapped += swap_in_body(r, body_end, table, out)
        r.pos = end
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
