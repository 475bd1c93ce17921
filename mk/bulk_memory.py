#!/usr/bin/env python3
"""Keeps small `memory.copy` and `memory.fill` inside the module (issue #13: CPU per request).

    bulk_memory.py IN OUT

OUT is IN with two functions appended, `copy(dst, src, len)` and `fill(dst, byte, len)`, and
every `memory.copy` / `memory.fill` of the other functions replaced in place by a call to
the matching one (`call f` plus a `nop` where the instruction was one byte longer: no body
changes size, no other index moves). Both functions do what the instruction does: a `len` up
to SMALL bytes is copied or filled with 16-byte vector loads and stores in the module's own
code; a larger one, or a copy between overlapping ranges, runs the original instruction.

Why: V8 compiles every `memory.copy` and `memory.fill` to a call of a C function
(`wasm_memory_copy`, `wasm_memory_fill`: TurboFan's and Turboshaft's graph builders and
Liftoff alike), which leaves the module's machine code, saves its registers, checks bounds
and calls libc's `memmove`. rustc emits the instruction for most copies of a value or slice
bigger than a few words: a P-256 point (108 or 168 bytes) on each of an ES256
verification's ~76 additions, key and digest buffers, a request's header strings. In
Envoy's profile that time is counted in the Envoy binary and libc, not in the module's code
(`make bench-profile`).

Semantics kept: the copy and the fill change the same bytes as the instruction (overlapping
copies go to the instruction, which moves bytes as memmove does); a range out of bounds
traps in both (here possibly after part of a copy, which a Rust program never reaches:
every copy it makes is within an allocation).
"""

from __future__ import annotations

from wasmbin import (CODE, Reader, assemble, bodies, imports, instructions, rewrite_file, sections,
                     sleb, uleb)

# Bytes up to which the module's own code copies or fills; past it V8's C call is cheaper
# than a loop of vector stores.
SMALL = 1024
V128 = 0x7B
COPY = b"\xfc\x0a\x00\x00"  # memory.copy 0 0
FILL = b"\xfc\x0b\x00"  # memory.fill 0
SIG = b"\x60\x03\x7f\x7f\x7f\x00"  # (i32, i32, i32) -> ()


def get(i: int) -> bytes:
    return b"\x20" + uleb(i)


def set_(i: int) -> bytes:
    return b"\x21" + uleb(i)


def tee(i: int) -> bytes:
    return b"\x22" + uleb(i)


def const(n: int) -> bytes:
    return b"\x41" + sleb(n)


ADD, SUB, GT_U, GE_U, LT_U, OR, EQZ = b"\x6a", b"\x6b", b"\x4b", b"\x4f", b"\x49", b"\x72", b"\x45"
IF, LOOP, BLOCK, END, BR, BR_IF, RET = b"\x04\x40", b"\x03\x40", b"\x02\x40", b"\x0b", b"\x0c", b"\x0d", b"\x0f"
MEM = b"\x00\x00"  # memarg: alignment hint 1 byte, offset 0
V128_LOAD, V128_STORE, SPLAT = b"\xfd\x00" + MEM, b"\xfd\x0b" + MEM, b"\xfd\x0f"
I64_LOAD, I64_STORE = b"\x29" + MEM, b"\x37" + MEM
I32_LOAD, I32_STORE = b"\x28" + MEM, b"\x36" + MEM
LOAD8, STORE8 = b"\x2d" + MEM, b"\x3a" + MEM


def step(local: int, by: int, *, down: bool = False) -> bytes:
    return get(local) + const(by) + (SUB if down else ADD) + set_(local)


def at_end(base: int, n: int, width: int) -> bytes:
    """base + n - width"""
    return get(base) + get(n) + ADD + const(width) + SUB


def copy_body(small: int) -> bytes:
    d, s, n = 0, 1, 2
    code = (
        # Large, or overlapping: the instruction. The ranges overlap when d is in
        # [s, s + n) or s in [d, d + n), i.e. d - s < n or s - d < n as unsigned differences
        # (no sum that could wrap at the top of memory).
        get(n) + const(small) + GT_U
        + get(d) + get(s) + SUB + get(n) + LT_U
        + get(s) + get(d) + SUB + get(n) + LT_U + OR + OR
        + IF + get(d) + get(s) + get(n) + COPY + RET + END
        # 16 bytes or more: the last 16 first, then 16 at a time while more than 16 remain
        # (the ranges are disjoint, so the order does not matter and the overlap is harmless).
        + get(n) + const(16) + GE_U + IF
        + at_end(d, n, 16) + at_end(s, n, 16) + V128_LOAD + V128_STORE
        + LOOP
        + get(d) + get(s) + V128_LOAD + V128_STORE
        + step(d, 16) + step(s, 16)
        + get(n) + const(16) + SUB + tee(n) + const(16) + GT_U + BR_IF + uleb(0)
        + END + RET + END
        # 8 to 15 bytes, 4 to 7: the first and the last word (overlapping in the middle).
        + get(n) + const(8) + GE_U + IF
        + get(d) + get(s) + I64_LOAD + I64_STORE
        + at_end(d, n, 8) + at_end(s, n, 8) + I64_LOAD + I64_STORE + RET + END
        + get(n) + const(4) + GE_U + IF
        + get(d) + get(s) + I32_LOAD + I32_STORE
        + at_end(d, n, 4) + at_end(s, n, 4) + I32_LOAD + I32_STORE + RET + END
        # 0 to 3 bytes, one at a time.
        + BLOCK + LOOP
        + get(n) + EQZ + BR_IF + uleb(1)
        + get(d) + get(s) + LOAD8 + STORE8
        + step(d, 1) + step(s, 1) + step(n, 1, down=True)
        + BR + uleb(0) + END + END
    )
    return b"\x00" + code + END  # no locals


def fill_body(small: int) -> bytes:
    d, v, n, splat = 0, 1, 2, 3
    code = (
        get(n) + const(small) + GT_U
        + IF + get(d) + get(v) + get(n) + FILL + RET + END
        + get(n) + const(16) + GE_U + IF
        + get(v) + SPLAT + set_(splat)
        + at_end(d, n, 16) + get(splat) + V128_STORE
        + LOOP
        + get(d) + get(splat) + V128_STORE
        + step(d, 16)
        + get(n) + const(16) + SUB + tee(n) + const(16) + GT_U + BR_IF + uleb(0)
        + END + RET + END
        + BLOCK + LOOP
        + get(n) + EQZ + BR_IF + uleb(1)
        + get(d) + get(v) + STORE8
        + step(d, 1) + step(n, 1, down=True)
        + BR + uleb(0) + END + END
    )
    return b"\x01\x01" + bytes([V128]) + code + END  # one v128 local


def rewrite(data: bytes, small: int = SMALL) -> tuple[bytes, dict[str, int]]:
    secs = sections(data)
    if any(s.id == 0 for s in secs):
        raise ValueError("a custom section: run this after the names are removed")
    ids = [s.id for s in secs]
    if len(ids) != len(set(ids)):
        raise ValueError("a known section appears twice")
    by_id = {s.id: s for s in secs}
    for sid in (1, 3, CODE):
        if sid not in by_id:
            raise ValueError(f"the module has no section {sid}")
    # Types: reuse (i32, i32, i32) -> () or append it.
    r = Reader(data, by_id[1].body, by_id[1].end)
    ntypes = r.uleb()
    sig = None
    for t in range(ntypes):
        start = r.pos
        if r.byte() != 0x60:
            raise ValueError("a type that is not a function type")
        for _ in range(r.uleb()):
            r.byte()
        for _ in range(r.uleb()):
            r.byte()
        if data[start:r.pos] == SIG and sig is None:
            sig = t
    type_payload = data[by_id[1].body:by_id[1].end]
    if sig is None:
        sig = ntypes
        rest = Reader(data, by_id[1].body)
        rest.uleb()
        type_payload = uleb(ntypes + 1) + data[rest.pos:by_id[1].end] + SIG
    # Functions: imports first, then the function section's.
    imported = sum(1 for i in imports(data, by_id[2]) if i.kind == 0) if 2 in by_id else 0
    r = Reader(data, by_id[3].body, by_id[3].end)
    defined = r.uleb()
    func_payload = uleb(defined + 2) + data[r.pos:by_id[3].end] + uleb(sig) + uleb(sig)
    copy_f, fill_f = imported + defined, imported + defined + 1
    calls = {COPY: b"\x10" + uleb(copy_f), FILL: b"\x10" + uleb(fill_f)}
    for op, call in calls.items():
        if len(call) > len(op):
            raise ValueError(f"function index {copy_f} too large to patch in place")
    # Bodies: each instruction replaced in place, padded with `nop`.
    out = bytearray(data)
    counts = {COPY: 0, FILL: 0}
    code = by_id[CODE]
    body_list = bodies(data, code)
    if len(body_list) != defined:
        raise ValueError("the function and code sections disagree")
    for body in body_list:
        for ins in instructions(data, body):
            if ins.op != 0xFC or ins.sub not in (10, 11):
                continue
            raw = bytes(data[ins.at:ins.end])
            if raw not in calls:
                raise ValueError(f"unexpected encoding {raw.hex()} at byte {ins.at}")
            call = calls[raw]
            out[ins.at:ins.end] = call + b"\x01" * (len(raw) - len(call))
            counts[raw] += 1
    r = Reader(data, code.body)
    r.uleb()
    new_bodies = [copy_body(small), fill_body(small)]
    code_payload = (uleb(defined + 2) + bytes(out[r.pos:code.end])
                    + b"".join(uleb(len(b)) + b for b in new_bodies))
    payloads = {s.id: bytes(out[s.body:s.end]) for s in secs}
    payloads[1], payloads[3], payloads[CODE] = type_payload, func_payload, code_payload
    return assemble(payloads), {"copy": counts[COPY], "fill": counts[FILL], "copy_index": copy_f}


def main() -> None:
    rewrite_file("bulk_memory.py", rewrite, lambda stats: (
        f"{stats['copy']} memory.copy and {stats['fill']} memory.fill now call functions "
        f"{stats['copy_index']} and {stats['copy_index'] + 1} (up to {SMALL} bytes in the "
        f"module's own code)"))


if __name__ == "__main__":
    main()
