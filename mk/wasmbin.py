"""Reading a wasm module's binary: sections and the instructions of function bodies.

Shared by the build's post-link steps and checks (mk/relaxed_simd.py, mk/indirect_calls.py,
mk/wasm_imports.py, mk/wasm_exports.py). The decoder
knows the instructions rustc emits for wasm32-wasip1 with the features mk/wasm-opt.mk lists
(MVP, sign extension, saturating conversions, bulk memory, reference types, multi-value,
SIMD and relaxed SIMD); any other opcode stops it with an error naming the byte, never a
guess, since a wrong instruction boundary would make a post-link rewrite patch an immediate.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Callable, Iterator

MAGIC = b"\0asm\x01\0\0\0"
CODE = 10  # the code section's id


class Reader:
    """Reads a module's bytes from `pos` up to `end` (the whole module by default); reading
    past `end` or a malformed LEB128 raises ValueError."""

    def __init__(self, data: bytes | bytearray, pos: int = 0, end: int | None = None) -> None:
        self.data, self.pos = data, pos
        self.end = len(data) if end is None else end

    def byte(self) -> int:
        if self.pos >= self.end:
            raise ValueError(f"unexpected end of data at byte {self.pos}")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def leb(self, signed: bool) -> int:
        result, shift = 0, 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                if signed and b & 0x40:
                    result -= 1 << shift
                return result
            if shift > 63:
                raise ValueError(f"LEB128 too long at byte {self.pos}")

    def uleb(self) -> int:
        return self.leb(False)

    def sleb(self) -> int:
        return self.leb(True)

    def skip(self, n: int) -> None:
        if self.pos + n > self.end:
            raise ValueError(f"unexpected end of data at byte {self.pos}")
        self.pos += n

    def name(self) -> str:
        n = self.uleb()
        self.skip(n)
        return bytes(self.data[self.pos - n:self.pos]).decode("utf-8")

    def memarg(self) -> None:
        align = self.uleb()
        if align & 0x40:  # multi-memory: a memory index follows
            self.uleb()
        self.uleb()  # offset


def uleb(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def sleb(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        if (n == 0 and not b & 0x40) or (n == -1 and b & 0x40):
            out.append(b)
            return bytes(out)
        out.append(b | 0x80)


@dataclass
class Section:
    id: int
    start: int  # the section id byte
    body: int  # the first byte of the payload
    end: int


def sections(data: bytes | bytearray) -> list[Section]:
    if data[:8] != MAGIC:
        raise ValueError("not a wasm module (version 1)")
    out = []
    r = Reader(data, 8)
    while r.pos < len(data):
        start = r.pos
        sid = r.byte()
        size = r.uleb()
        out.append(Section(sid, start, r.pos, r.pos + size))
        r.pos += size
    if r.pos != len(data):
        raise ValueError("the last section runs past the end of the module")
    return out


@dataclass
class Body:
    start: int  # the body's size field
    locals_end: int  # the first instruction
    end: int


def bodies(data: bytes | bytearray, code: Section) -> list[Body]:
    """The function bodies of the code section, in order."""
    out = []
    r = Reader(data, code.body)
    for _ in range(r.uleb()):
        start = r.pos
        size = r.uleb()
        end = r.pos + size
        for _ in range(r.uleb()):  # local declarations: count, type
            r.uleb()
            r.sleb()
        out.append(Body(start, r.pos, end))
        r.pos = end
    if r.pos != code.end:
        raise ValueError("the code section's bodies do not fill it")
    return out


@dataclass
class Instr:
    at: int  # the opcode byte
    op: int
    sub: int | None  # a prefixed (0xfc, 0xfd) instruction's opcode
    sub_at: int  # where `sub` is encoded (LEB128), or -1
    sub_end: int
    end: int  # the byte after the instruction and its immediates


# SIMD (0xfd) opcodes with immediates; all others have none.
SIMD_MEMARG = set(range(0x00, 0x0C)) | {0x5C, 0x5D}
SIMD_LANE = set(range(0x15, 0x23))
SIMD_MEMARG_LANE = set(range(0x54, 0x5C))
RELAXED_SIMD = range(0x100, 0x114)  # final relaxed-SIMD opcodes: no immediates


def instructions(data: bytes | bytearray, body: Body) -> Iterator[Instr]:
    r = Reader(data, body.locals_end)
    while r.pos < body.end:
        at = r.pos
        op = r.byte()
        sub, sub_at, sub_end = None, -1, -1
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
            sub_at = r.pos
            sub = r.uleb()
            sub_end = r.pos
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
            sub_at = r.pos
            sub = r.uleb()
            sub_end = r.pos
            if sub in SIMD_MEMARG:
                r.memarg()
            elif sub in (0x0C, 0x0D):  # v128.const, i8x16.shuffle
                r.skip(16)
            elif sub in SIMD_LANE:
                r.skip(1)
            elif sub in SIMD_MEMARG_LANE:
                r.memarg()
                r.skip(1)
            elif sub > 0xFF and sub not in RELAXED_SIMD:
                raise ValueError(f"unknown SIMD opcode {sub} at byte {at}")
        elif op in (0x12, 0x13) or op in (0x06, 0x07, 0x08, 0x09, 0x18, 0x19, 0x1F) or op > 0xD2:
            raise ValueError(f"unsupported opcode 0x{op:02x} at byte {at}")
        elif 0x45 <= op <= 0xC4 or op in (0x00, 0x01, 0x05, 0x0B, 0x0F, 0x1A, 0x1B, 0xD1):
            pass
        else:
            raise ValueError(f"unknown opcode 0x{op:02x} at byte {at}")
        yield Instr(at, op, sub, sub_at, sub_end, r.pos)
    if r.pos != body.end:
        raise ValueError(f"function body ends at byte {r.pos}, expected {body.end}")


@dataclass
class Import:
    module: str
    name: str
    kind: int  # 0 function, 1 table, 2 memory, 3 global
    type_index: int | None  # a function's type; None for the other kinds


def imports(data: bytes | bytearray, section: Section) -> list[Import]:
    """The entries of an import section, in order."""
    r = Reader(data, section.body, section.end)
    out = []
    for _ in range(r.uleb()):
        module, name, kind = r.name(), r.name(), r.byte()
        type_index = None
        if kind == 0:
            type_index = r.uleb()
        elif kind in (1, 2):  # a table (its reference type first) or a memory: limits
            if kind == 1:
                r.byte()
            flags = r.byte()
            r.uleb()
            if flags & 1:
                r.uleb()
        elif kind == 3:  # a global: value type, mutability
            r.byte()
            r.byte()
        else:
            raise ValueError(f"{module}.{name}: unknown import kind {kind}")
        out.append(Import(module, name, kind, type_index))
    return out


def exports(data: bytes | bytearray, section: Section) -> list[tuple[str, int, int]]:
    """The entries of an export section, in order: (name, kind, index)."""
    r = Reader(data, section.body, section.end)
    return [(r.name(), r.byte(), r.uleb()) for _ in range(r.uleb())]


SECTION_ORDER = (1, 2, 3, 4, 5, 13, 6, 7, 8, 9, 12, 10, 11)  # wasm's order of known sections


def assemble(payloads: dict[int, bytes]) -> bytes:
    """A module from the payloads of its known sections (id -> bytes), in wasm's order."""
    unknown = set(payloads) - set(SECTION_ORDER)
    if unknown:
        raise ValueError(f"unknown section ids {sorted(unknown)}")
    out = bytearray(MAGIC)
    for sid in SECTION_ORDER:
        if sid in payloads:
            out += bytes([sid]) + uleb(len(payloads[sid])) + payloads[sid]
    return bytes(out)


def rewrite_file(tool: str, rewrite: Callable[[bytes], tuple[bytes, dict]],
                 report: Callable[[dict], str]) -> None:
    """The command line of a post-link step: `tool IN OUT` writes rewrite(IN) to OUT and
    prints report(stats); a module it cannot rewrite exits with `tool IN: why`, writing
    nothing."""
    if len(sys.argv) != 3:
        sys.exit(f"usage: {tool} IN OUT")
    with open(sys.argv[1], "rb") as f:
        data = f.read()
    try:
        out, stats = rewrite(data)
    except (ValueError, IndexError, UnicodeDecodeError) as e:
        sys.exit(f"{tool} {sys.argv[1]}: {e}")
    with open(sys.argv[2], "wb") as f:
        f.write(out)
    print(f"{tool}: {report(stats)}")


def strip_custom(data: bytes | bytearray) -> bytes:
    """The module without its custom sections (names, producers, target features)."""
    out = bytearray(data[:8])
    for s in sections(data):
        if s.id != 0:
            out += data[s.start:s.end]
    return bytes(out)


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "strip":
        sys.exit("usage: wasmbin.py strip IN OUT")
    with open(sys.argv[2], "rb") as f:
        module = f.read()
    try:
        stripped = strip_custom(module)
    except (ValueError, IndexError) as e:
        sys.exit(f"wasmbin.py strip {sys.argv[2]}: {e}")
    with open(sys.argv[3], "wb") as f:
        f.write(stripped)
